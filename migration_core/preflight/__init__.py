"""Preflight checks: one module per family; each check is a pure function over gathered facts."""
