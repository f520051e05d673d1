"""Capture knowledge from a thread: the "Propose to KB" message shortcut and the propose modal."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.roles.curator import Source
from bot.services import KnowledgeService
from handlers import blocks, ids
from handlers.errors import reports_errors
from handlers.proposals import draft_from_view, proposal_stored, send_for_approval
from handlers.values import DraftContext, decode_draft_context, encode_draft_context
from store.errors import KbError
from store.models import Origin

MAX_THREAD_MESSAGES = 200


def thread_source(messages: list[dict[str, Any]]) -> Source:
    """The thread as the Curator's source, each message attributed to its author (a user id, else a bot id)."""
    return Source.thread([(str(m.get("user") or m.get("bot_id") or "someone"), (m.get("text") or "").strip())
                          for m in messages[:MAX_THREAD_MESSAGES]])


def open_from_message(ack: Ack, shortcut: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    """A modal opens at once (trigger ids expire in 3 s); ``fill_draft`` then has the Curator draft from the whole
    thread, for the proposer to preview and edit before submitting."""
    ack()
    opened = client.views_open(trigger_id=shortcut["trigger_id"], view=blocks.drafting_modal("Propose to KB"))
    context["drafting_view"] = str((opened.get("view") or {}).get("id") or "")


@reports_errors
def fill_draft(shortcut: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    view_id = context.get("drafting_view")
    if not view_id:  # the modal did not open (an expired trigger): there is nothing to fill
        return
    service: KnowledgeService = context["kb"]
    message = shortcut.get("message") or {}
    channel = (shortcut.get("channel") or {}).get("id", "")
    root = message.get("thread_ts") or message.get("ts") or shortcut.get("message_ts", "")
    replies = client.conversations_replies(channel=channel, ts=root, limit=MAX_THREAD_MESSAGES)
    messages = list(replies.get("messages") or [message])
    permalink = str(client.chat_getPermalink(channel=channel, message_ts=root).get("permalink") or "")
    curated = service.draft(thread_source(messages), actor=shortcut["user"]["id"])
    metadata = encode_draft_context(DraftContext(channel=channel, thread_ts=root, permalink=permalink))
    client.views_update(view_id=view_id, view=blocks.draft_modal(
        ids.View.PROPOSE, "Propose to KB", draft_title=curated.draft.title, body=curated.draft.body,
        tags=curated.draft.tags, private_metadata=metadata, submit="Submit", notes=curated.notes))


def submit_proposal(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
    """Stored before Slack's 3 s are up (errors shown in the modal); the Reviewer then checks it, and only then
    does the approval card go out (``send_for_approval``)."""
    service: KnowledgeService = context["kb"]
    origin = decode_draft_context(view.get("private_metadata", ""))
    user = body["user"]["id"]
    try:
        proposal = service.propose(
            draft_from_view(view), proposer=user,
            origin=Origin.THREAD if origin.thread_ts else Origin.GAP if origin.question else Origin.COMMAND,
            origin_ref=origin.permalink or None, review=False)
    except KbError as exc:
        ack(response_action="errors", errors={f"{ids.Block.BODY}_0": str(exc)[:150]})
        return
    proposal_stored(context, proposal.id or 0,
                    notice=f"Your proposal #{proposal.id} \"{proposal.title}\" is waiting for an approver.")
    ack()


def register(app: App) -> None:
    app.shortcut(ids.Shortcut.PROPOSE_THREAD)(ack=open_from_message, lazy=[fill_draft])
    app.view(ids.View.PROPOSE)(ack=submit_proposal, lazy=[send_for_approval])
