"""The Slack surface: parse a payload, call the service layer, render Block Kit."""
