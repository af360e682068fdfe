"""Block Kit renderers: pure functions from core objects to Block Kit dicts (no I/O)."""
