"""The bot in channels (Events API): @mentions and follow-ups, DMs, questions in answer channels, alerts in alert
channels, and capture by reaction. Silence is the default: the bot speaks only when it has something grounded.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltResponse, Respond
from slack_sdk import WebClient

from bot.alerts import is_alert_message, parse_alert
from bot.channel import looks_like_question
from bot.roles.answerer import Answer
from bot.services import KnowledgeService
from handlers import blocks, ids
from handlers.acks import ack_only
from handlers.capture import MAX_THREAD_MESSAGES, thread_source
from handlers.errors import reports_errors
from handlers.proposals import post_card, review_quietly
from handlers.values import DraftContext, decode_entry, encode_draft_context
from store.errors import BadInput
from store.models import ChannelMode

log = logging.getLogger(__name__)
IGNORED_SUBTYPES = {"message_changed", "message_deleted", "channel_join", "channel_leave", "channel_topic",
                    "channel_purpose", "channel_name", "group_join", "group_leave", "thread_broadcast",
                    "message_replied", "pinned_item", "unpinned_item", "ekm_access_denied", "bot_add", "bot_remove"}
_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")


def once_per_event(body: dict[str, Any], context: BoltContext, next: Any) -> BoltResponse | None:
    """Slack redelivers an event until it is acknowledged in time; each ``event_id`` is handled once (recorded
    in the database, so it holds across replicas)."""
    event_id = body.get("event_id")
    service: KnowledgeService = context["kb"]
    if isinstance(event_id, str) and not service.first_delivery(event_id):
        log.info("event %s already handled: a retry, skipped", event_id)
        return BoltResponse(status=200, body="")
    next()
    return None


def _is_own(event: dict[str, Any], context: BoltContext) -> bool:
    return bool((event.get("bot_id") and event.get("bot_id") == context.bot_id)
                or (event.get("user") and event.get("user") == context.bot_user_id))


def _answer_in_thread(service: KnowledgeService, client: WebClient, *, question: str, channel: str, thread_ts: str,
                      user: str, command: str) -> None:
    history = service.thread_history(channel, thread_ts)
    try:
        answer, task_id = service.ask(question, actor=user, history=history, thread=(channel, thread_ts),
                                      command=command)
    except BadInput as exc:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=f":warning: {exc}")
        return
    _post_answer(service, client, answer, task_id, channel=channel, thread_ts=thread_ts)


def _post_answer(service: KnowledgeService, client: WebClient, answer: Answer, task_id: str, *, channel: str,
                 thread_ts: str) -> None:
    client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=answer.text[:3000], unfurl_links=False,
                            blocks=blocks.answer_blocks(answer, service.citations(answer), task_id, shared=True))


@reports_errors
def on_mention(event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    """`@kb <question>`: answered in the thread, like `/kb ask`, with the thread's earlier answers as context."""
    if _is_own(event, context):
        return
    question = _MENTION.sub(" ", event.get("text") or "").strip()
    channel, thread_ts = event["channel"], event.get("thread_ts") or event["ts"]
    if not question:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                text="Ask me something after the mention: `@kb how do I drain a node?`")
        return
    _answer_in_thread(context["kb"], client, question=question, channel=channel, thread_ts=thread_ts,
                      user=event.get("user", ""), command="mention")


@reports_errors
def on_message(event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    """Every message the bot can see: most get silence. See the module docstring for when it speaks."""
    subtype = event.get("subtype")
    if subtype in IGNORED_SUBTYPES or _is_own(event, context):
        return
    service: KnowledgeService = context["kb"]
    channel, ts = event.get("channel", ""), event.get("ts", "")
    thread_ts = event.get("thread_ts")
    text = event.get("text") or ""
    from_bot = bool(event.get("bot_id")) or subtype == "bot_message"
    if context.bot_user_id and f"<@{context.bot_user_id}" in text:
        return  # the app_mention event answers it
    if event.get("channel_type") == "im" and not from_bot:
        _answer_in_thread(service, client, question=text, channel=channel, thread_ts=thread_ts or ts,
                          user=event.get("user", ""), command="dm")
        return
    if thread_ts and thread_ts != ts:  # a reply: only in threads the bot answered in
        if not from_bot and service.thread_history(channel, thread_ts):
            _answer_in_thread(service, client, question=text, channel=channel, thread_ts=thread_ts,
                              user=event.get("user", ""), command="follow_up")
        return
    mode = service.channel_mode(channel)
    if mode in (ChannelMode.ALERT, ChannelMode.BOTH) and is_alert_message(event):
        alert = parse_alert(event)
        if alert is None:
            return
        outcome = service.respond_to_alert(alert, channel=channel, ts=ts)
        if outcome.action == "reply" and outcome.runbook is not None:
            client.chat_postMessage(channel=channel, thread_ts=ts, text=f"Runbook for {alert.name}: "
                                    f"{outcome.runbook.title} (entry #{outcome.runbook.entry_id} "
                                    f"v{outcome.runbook.version})", unfurl_links=False,
                                    blocks=blocks.runbook_blocks(outcome.runbook, alert.name))
        return
    if mode in (ChannelMode.ANSWER, ChannelMode.BOTH) and not from_bot and looks_like_question(text):
        outcome = service.answer_in_channel(text, channel=channel, ts=ts, user=event.get("user", ""))
        if outcome.action == "reply" and outcome.answer is not None and outcome.task_id:
            _post_answer(service, client, outcome.answer, outcome.task_id, channel=channel, thread_ts=ts)


@reports_errors
def show_entry(body: dict[str, Any], action: dict[str, Any], context: BoltContext, respond: Respond) -> None:
    service: KnowledgeService = context["kb"]
    detail = service.show_entry(decode_entry(action["value"]).entry_id)
    respond(blocks=blocks.entry_detail_blocks(detail), text=detail.entry.title, response_type="ephemeral",
            replace_original=False)


# --- capture by reaction ----------------------------------------------------------------------------------

@reports_errors
def on_reaction(event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    """Reacting with the capture emoji proposes the message's thread: the Curator drafts, and the reactor gets
    the draft by DM (a reaction opens no modal) to submit, edit or discard."""
    service: KnowledgeService = context["kb"]
    item = event.get("item") or {}
    if event.get("reaction") != service.settings.capture_emoji or item.get("type") != "message":
        return
    user, channel = event.get("user", ""), item.get("channel", "")
    replies = client.conversations_replies(channel=channel, ts=item.get("ts", ""), limit=MAX_THREAD_MESSAGES)
    messages = list(replies.get("messages") or [])
    if not messages:
        return
    root = str(messages[0].get("thread_ts") or messages[0].get("ts") or item.get("ts", ""))
    permalink = str(client.chat_getPermalink(channel=channel, message_ts=root).get("permalink") or "")
    draft = service.capture(thread_source(messages), user=user, channel=channel, thread_ts=root, permalink=permalink)
    client.chat_postMessage(channel=user, text=f"Your capture: {draft.title}", blocks=blocks.capture_blocks(draft),
                            unfurl_links=False)


@reports_errors
def submit_capture(body: dict[str, Any], action: dict[str, Any], context: BoltContext, client: WebClient,
                   respond: Respond) -> None:
    service: KnowledgeService = context["kb"]
    proposal = service.submit_capture(int(action["value"]), by=body["user"]["id"])
    review_quietly(service, proposal.id or 0)
    post_card(service, client, service.show_proposal(proposal.id or 0).proposal)
    respond(text=f":inbox_tray: Submitted as proposal #{proposal.id} \"{proposal.title}\"; it is waiting for an "
                 "approver.", replace_original=True)


def edit_capture(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext,
                 client: WebClient) -> None:
    ack()
    service: KnowledgeService = context["kb"]
    draft = service.capture_draft(int(action["value"]), user=body["user"]["id"])
    metadata = encode_draft_context(DraftContext(channel=draft.channel, thread_ts=draft.thread_ts,
                                                 permalink=draft.permalink))
    client.views_open(trigger_id=body["trigger_id"], view=blocks.draft_modal(
        ids.View.PROPOSE, "Propose to KB", draft_title=draft.title, body=draft.body, tags=draft.tags,
        private_metadata=metadata, submit="Submit", notes=draft.notes))


@reports_errors
def discard_capture(body: dict[str, Any], action: dict[str, Any], context: BoltContext, respond: Respond) -> None:
    service: KnowledgeService = context["kb"]
    service.capture_draft(int(action["value"]), user=body["user"]["id"])  # only the reactor may
    respond(text="Discarded; nothing was proposed.", replace_original=True)


def register(app: App) -> None:
    once = [once_per_event]
    app.event("app_mention", middleware=once)(ack=ack_only, lazy=[on_mention])
    app.event("message", middleware=once)(ack=ack_only, lazy=[on_message])
    app.event("reaction_added", middleware=once)(ack=ack_only, lazy=[on_reaction])
    app.action(ids.ChannelAction.SHOW_ENTRY)(ack=ack_only, lazy=[show_entry])
    app.action(ids.ChannelAction.CAPTURE_SUBMIT)(ack=ack_only, lazy=[submit_capture])
    app.action(ids.ChannelAction.CAPTURE_EDIT)(edit_capture)
    app.action(ids.ChannelAction.CAPTURE_DISCARD)(ack=ack_only, lazy=[discard_capture])
    app.action("entry_source")(ack_only)  # a link button: Slack still sends the click
