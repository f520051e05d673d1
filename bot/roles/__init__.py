"""Agent roles: what each command does, independent of Slack and of the CLI."""
