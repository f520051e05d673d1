"""Capture knowledge from a thread: the "Propose to KB" message shortcut and the propose modal."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.services import KnowledgeService
from handlers import blocks, ids
from handlers.proposals import draft_from_view, post_card
from handlers.values import DraftContext, decode_draft_context, encode_draft_context
from store.errors import KbError
from store.models import Origin

MAX_THREAD_MESSAGES = 200


def thread_text(messages: list[dict[str, Any]]) -> str:
    """The thread as a transcript, each message attributed to its author (`<@U…>` kept as the id)."""
    lines = []
    for message in messages[:MAX_THREAD_MESSAGES]:
        who = message.get("user") or message.get("bot_id") or "someone"
        text = (message.get("text") or "").strip()
        if text:
            lines.append(f"{who}: {text}")
    return "\n\n".join(lines)


def open_from_message(ack: Ack, shortcut: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    """Draft from the whole thread, then let the proposer preview and edit before submitting."""
    ack()
    message = shortcut.get("message") or {}
    channel = (shortcut.get("channel") or {}).get("id", "")
    root = message.get("thread_ts") or message.get("ts") or shortcut.get("message_ts", "")
    replies = client.conversations_replies(channel=channel, ts=root, limit=MAX_THREAD_MESSAGES)
    messages = list(replies.get("messages") or [message])
    permalink = str(client.chat_getPermalink(channel=channel, message_ts=root).get("permalink") or "")
    first_line = (messages[0].get("text") or "Knowledge from a thread").strip().splitlines()[0]
    metadata = encode_draft_context(DraftContext(channel=channel, thread_ts=root, permalink=permalink))
    client.views_open(trigger_id=shortcut["trigger_id"], view=blocks.draft_modal(
        ids.View.PROPOSE, "Propose to KB", draft_title=first_line[:300], body=thread_text(messages), tags=[],
        private_metadata=metadata, submit="Submit"))


def submit_proposal(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext,
                    client: WebClient) -> None:
    service: KnowledgeService = context["kb"]
    origin = decode_draft_context(view.get("private_metadata", ""))
    user = body["user"]["id"]
    try:
        proposal = service.propose(
            draft_from_view(view), proposer=user,
            origin=Origin.THREAD if origin.thread_ts else Origin.GAP if origin.question else Origin.COMMAND,
            origin_ref=origin.permalink or None)
    except KbError as exc:
        ack(response_action="errors", errors={f"{ids.Block.BODY}_0": str(exc)[:150]})
        return
    ack()
    post_card(service, client, proposal)
    client.chat_postMessage(channel=user, text=f"Your proposal #{proposal.id} \"{proposal.title}\" is waiting "
                            "for an approver.")


def register(app: App) -> None:
    app.shortcut(ids.Shortcut.PROPOSE_THREAD)(open_from_message)
    app.view(ids.View.PROPOSE)(submit_proposal)
