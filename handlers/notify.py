"""The scheduled jobs' messages, on Slack: owner DMs, the approvers' digest, the weekly gaps digest."""

from __future__ import annotations

import logging
import re

from slack_sdk import WebClient

from bot.config import Settings
from bot.services import EntryDetail
from handlers import blocks
from store.models import Proposal, Task

log = logging.getLogger(__name__)


class SlackNotifier:
    def __init__(self, client: WebClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def review_due(self, detail: EntryDetail) -> None:
        """A DM to the owner; an owner with no Slack account (an import) is asked in the approval channel."""
        entry = detail.entry
        current = detail.current
        owner_is_user = re.fullmatch(r"[UW][A-Z0-9]{2,}", entry.owner) is not None
        channel = entry.owner if owner_is_user else self.settings.approval_channel
        if not channel:
            log.warning("entry #%s is due for review but its owner %r has no DM and no approval channel is set",
                        entry.id, entry.owner)
            return
        self.client.chat_postMessage(channel=channel, text=f"Is entry #{entry.id} \"{entry.title}\" still true?",
                                     blocks=blocks.review_due_blocks(entry, current.body if current else "",
                                                                     to_owner=owner_is_user),
                                     unfurl_links=False)

    def approval_digest(self, proposals: list[Proposal]) -> None:
        if self.settings.approval_channel:
            hours = self.settings.approval_reminder_hours
            self.client.chat_postMessage(channel=self.settings.approval_channel,
                                         text=f"{len(proposals)} proposals waiting for an approver",
                                         blocks=blocks.approval_digest_blocks(proposals, older_than_hours=hours))

    def gaps_digest(self, gaps: list[Task]) -> None:
        channel = self.settings.gaps_channel or self.settings.approval_channel
        if channel:
            self.client.chat_postMessage(channel=channel, text=f"{len(gaps)} unanswered questions this week",
                                         blocks=blocks.gaps_digest_blocks(gaps))
