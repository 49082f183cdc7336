"""In-process fakes of the ports, for unit tests."""
