"""Typed errors. Each carries a message a user can act on; the surfaces render them, never a traceback."""

from __future__ import annotations


class KbError(Exception):
    """Base of every error meant for a user."""


class BadInput(KbError):
    pass


class NotFound(KbError):
    pass


class NotAllowed(KbError):
    pass


class AlreadyDecided(KbError):
    def __init__(self, message: str, *, decided_by: str, decided_at: str, outcome: str) -> None:
        super().__init__(message)
        self.decided_by = decided_by
        self.decided_at = decided_at
        self.outcome = outcome


class StaleProposal(KbError):
    pass


class IndexUnavailable(KbError):
    pass
