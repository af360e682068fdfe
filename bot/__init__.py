"""migrate-bot: the Slack / console front end and wiring."""
