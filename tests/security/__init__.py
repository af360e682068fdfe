"""Security and operations tests against a real `migrate-bot serve` process in HTTP mode (issue 7)."""
