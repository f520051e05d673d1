"""kb-bot: wiring, the service layer, the CLI and the agent roles."""
