"""The App Home tab: what needs the viewer, and a few numbers about the knowledge base."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.services import KnowledgeService
from handlers import blocks
from handlers.acks import ack_only
from handlers.errors import reports_errors
from handlers.proposals import is_approver


@reports_errors
def publish_home(event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    if event.get("tab", "home") != "home":
        return
    service: KnowledgeService = context["kb"]
    user = event["user"]
    summary = service.home(user=user, is_approver=is_approver(service, client, user))
    modes = {channel: mode.value for channel, mode in service.channel_modes().items()}
    client.views_publish(user_id=user, view=blocks.home_view(summary, modes))


def register(app: App) -> None:
    app.event("app_home_opened")(ack=ack_only, lazy=[publish_home])
