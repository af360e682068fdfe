"""Everything about migrations: grammar, preflight, planning, execution, verification. Knows nothing of Slack."""
