"""Rendering: core objects -> the message model (ir.py) -> Block Kit or terminal text. Pure; imports migration_core."""
