"""Acknowledgements shared by listeners whose work runs lazily."""

from __future__ import annotations

from slack_bolt import Ack


def ack_only(ack: Ack) -> None:
    """Acknowledge at once; the lazy listener that follows does the work and reports back."""
    ack()
