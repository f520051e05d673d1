"""The owner's re-verification DM: Re-verify, Edit (an update proposal) or Deprecate (a deprecation proposal)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.services import KnowledgeService
from handlers import blocks, ids
from handlers.acks import ack_only
from handlers.errors import reports_errors
from handlers.proposals import draft_from_view, is_approver, post_card, review_quietly
from handlers.values import decode_entry
from store.errors import KbError, NotAllowed, NotFound
from store.lifecycle import Draft
from store.models import ProposalKind


def _owner_or_approver(service: KnowledgeService, client: WebClient, user: str, owner: str) -> None:
    if user != owner and not is_approver(service, client, user):
        raise NotAllowed("Only the entry's owner or an approver can re-verify it.")


@reports_errors
def reverify(body: dict[str, Any], action: dict[str, Any], context: BoltContext, client: WebClient,
             respond: Respond) -> None:
    service: KnowledgeService = context["kb"]
    ref = decode_entry(action["value"])
    user = body["user"]["id"]
    _owner_or_approver(service, client, user, service.show_entry(ref.entry_id).entry.owner)
    entry = service.reverify(ref.entry_id, by=user)
    respond(text=f":white_check_mark: Entry #{entry.id} \"{entry.title}\" re-verified by <@{user}>; next review on "
                 f"{entry.review_after:%Y-%m-%d}.", replace_original=True)


def open_update(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    ack()
    service: KnowledgeService = context["kb"]
    detail = service.show_entry(decode_entry(action["value"]).entry_id)
    current = detail.current
    if current is None:
        raise NotFound(f"Entry #{detail.entry.id} has no current version to edit.")
    client.views_open(trigger_id=body["trigger_id"], view=blocks.draft_modal(
        ids.View.UPDATE_ENTRY, "Update entry", draft_title=current.title, body=current.body, tags=current.tags,
        private_metadata=action["value"], submit="Propose"))


def open_deprecate(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext,
                   client: WebClient) -> None:
    ack()
    service: KnowledgeService = context["kb"]
    entry = service.show_entry(decode_entry(action["value"]).entry_id).entry
    client.views_open(trigger_id=body["trigger_id"], view=blocks.deprecate_modal(entry, action["value"]))


def _submit(ack: Ack, service: KnowledgeService, client: WebClient, user: str, draft: Draft, *,
            kind: ProposalKind, entry_id: int, error_block: str) -> None:
    """Stored before the modal closes; the Reviewer then checks it, and the card goes to the approvers."""
    try:
        proposal = service.propose(draft, proposer=user, kind=kind, entry_id=entry_id, review=False)
    except KbError as exc:
        ack(response_action="errors", errors={error_block: str(exc)[:150]})
        return
    ack()
    review_quietly(service, proposal.id or 0)
    post_card(service, client, service.show_proposal(proposal.id or 0).proposal)
    client.chat_postMessage(channel=user, text=f"Your proposal #{proposal.id} ({kind.value} of entry #{entry_id}) "
                            "is waiting for an approver.")


def submit_update(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext,
                  client: WebClient) -> None:
    ref = decode_entry(view["private_metadata"])
    _submit(ack, context["kb"], client, body["user"]["id"], draft_from_view(view), kind=ProposalKind.UPDATE,
            entry_id=ref.entry_id, error_block=f"{ids.Block.BODY}_0")


def submit_deprecate(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext,
                     client: WebClient) -> None:
    service: KnowledgeService = context["kb"]
    ref = decode_entry(view["private_metadata"])
    reason = (view["state"]["values"][ids.Block.REASON][ids.Field.REASON].get("value") or "").strip()
    entry = service.show_entry(ref.entry_id).entry
    _submit(ack, service, client, body["user"]["id"], Draft(title=entry.title, body=reason, change_note=reason),
            kind=ProposalKind.DEPRECATE, entry_id=ref.entry_id, error_block=ids.Block.REASON)


def register(app: App) -> None:
    app.action(ids.ReviewAction.REVERIFY)(ack=ack_only, lazy=[reverify])
    app.action(ids.ReviewAction.EDIT)(open_update)
    app.action(ids.ReviewAction.DEPRECATE)(open_deprecate)
    app.view(ids.View.UPDATE_ENTRY)(submit_update)
    app.view(ids.View.DEPRECATE_ENTRY)(submit_deprecate)
