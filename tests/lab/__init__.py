"""Tests of the two-host KVM lab (deploy/lab) and its test helpers (tests/labkit.py)."""
