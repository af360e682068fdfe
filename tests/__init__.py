"""Test suite: mirrors the packages; tests/lab needs the real two-host lab."""
