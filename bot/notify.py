"""What the scheduled jobs tell people, as a protocol: the jobs know nothing of Slack; the Slack implementation
(``handlers.notify.SlackNotifier``) renders Block Kit and posts it."""

from __future__ import annotations

from typing import Protocol

from bot.services import EntryDetail
from store.models import Proposal, Task


class Notifier(Protocol):
    def review_due(self, detail: EntryDetail) -> None:
        """Ask the entry's owner to re-verify it (Re-verify / Edit / Deprecate)."""

    def approval_digest(self, proposals: list[Proposal]) -> None:
        """Remind approvers of proposals waiting too long."""

    def gaps_digest(self, gaps: list[Task]) -> None:
        """The questions nobody could answer this week, each with "Propose an answer"."""


class NoNotifier:
    """For the CLI and tests without Slack: nothing is sent, the jobs still mark their work."""

    def review_due(self, detail: EntryDetail) -> None:
        pass

    def approval_digest(self, proposals: list[Proposal]) -> None:
        pass

    def gaps_digest(self, gaps: list[Task]) -> None:
        pass
