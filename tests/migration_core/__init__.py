"""Tests of migration_core (mirrors the package)."""
