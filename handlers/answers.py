"""The buttons under an answer: share it, rate it, or propose the missing answer."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.services import KnowledgeService
from handlers import blocks, ids
from handlers.acks import ack_only
from handlers.errors import reports_errors
from handlers.values import DraftContext, decode_answer, encode_draft_context


@reports_errors
def share(body: dict[str, Any], action: dict[str, Any], context: BoltContext, client: WebClient,
          respond: Respond) -> None:
    service: KnowledgeService = context["kb"]
    task_id = decode_answer(action["value"]).task_id
    answer = service.answer_for_task(task_id)
    channel = body.get("channel", {}).get("id") or body["container"]["channel_id"]
    client.chat_postMessage(channel=channel, text=answer.text[:3000], unfurl_links=False,
                            blocks=blocks.answer_blocks(answer, service.citations(answer), task_id, shared=True))
    respond(delete_original=True)


@reports_errors
def feedback(body: dict[str, Any], action: dict[str, Any], context: BoltContext, respond: Respond) -> None:
    service: KnowledgeService = context["kb"]
    helpful = action["action_id"] == ids.AnswerAction.HELPFUL
    service.record_feedback(decode_answer(action["value"]).task_id, user=body["user"]["id"], helpful=helpful)
    respond(text="Thanks, noted." if helpful else "Thanks; the entry's owner will hear about it.",
            response_type="ephemeral", replace_original=False)


def propose_answer(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext,
                   client: WebClient) -> None:
    """Open a proposal modal with the unanswered question as its title."""
    ack()
    service: KnowledgeService = context["kb"]
    task = service.trace(decode_answer(action["value"]).task_id)
    metadata = encode_draft_context(DraftContext(question=task.input))
    client.views_open(trigger_id=body["trigger_id"], view=blocks.draft_modal(
        ids.View.PROPOSE, "Propose an answer", draft_title=task.input[:300], body="", tags=[],
        private_metadata=metadata, submit="Submit"))


def register(app: App) -> None:
    app.action(ids.AnswerAction.SHARE)(ack=ack_only, lazy=[share])
    app.action(ids.AnswerAction.HELPFUL)(ack=ack_only, lazy=[feedback])
    app.action(ids.AnswerAction.NOT_HELPFUL)(ack=ack_only, lazy=[feedback])
    app.action(ids.AnswerAction.PROPOSE)(propose_answer)
