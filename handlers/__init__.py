"""Slack <-> core translation: slash commands, buttons, modals, App Home, the progress sink."""
