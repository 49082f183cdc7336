"""Tests of one implementation against its real engine, one folder per technology."""
