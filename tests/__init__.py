"""SKR's tests."""
