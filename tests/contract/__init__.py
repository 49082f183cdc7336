"""Contract tests: every adapter of a port against the real backend."""
