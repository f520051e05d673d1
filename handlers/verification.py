"""The owner's re-verification DM: Re-verify, Edit (an update proposal) or Deprecate (a deprecation proposal)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.services import KnowledgeService
from handlers import blocks, ids
from handlers.acks import ack_only
from handlers.errors import reports_errors
from handlers.proposals import draft_from_view, is_approver, proposal_stored, send_for_approval
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


def _submit(ack: Ack, context: BoltContext, user: str, draft: Draft, *, kind: ProposalKind, entry_id: int,
            error_block: str) -> None:
    """Stored before the modal closes (errors shown in it); ``send_for_approval`` then has the Reviewer check
    it and sends the card to the approvers."""
    service: KnowledgeService = context["kb"]
    try:
        proposal = service.propose(draft, proposer=user, kind=kind, entry_id=entry_id, review=False)
    except KbError as exc:
        ack(response_action="errors", errors={error_block: str(exc)[:150]})
        return
    proposal_stored(context, proposal.id or 0, notice=f"Your proposal #{proposal.id} ({kind.value} of entry "
                    f"#{entry_id}) is waiting for an approver.")
    ack()


def submit_update(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
    ref = decode_entry(view["private_metadata"])
    _submit(ack, context, body["user"]["id"], draft_from_view(view), kind=ProposalKind.UPDATE,
            entry_id=ref.entry_id, error_block=f"{ids.Block.BODY}_0")


def submit_deprecate(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
    service: KnowledgeService = context["kb"]
    ref = decode_entry(view["private_metadata"])
    reason = (view["state"]["values"][ids.Block.REASON][ids.Field.REASON].get("value") or "").strip()
    entry = service.show_entry(ref.entry_id).entry
    _submit(ack, context, body["user"]["id"], Draft(title=entry.title, body=reason, change_note=reason),
            kind=ProposalKind.DEPRECATE, entry_id=ref.entry_id, error_block=ids.Block.REASON)


def register(app: App) -> None:
    app.action(ids.ReviewAction.REVERIFY)(ack=ack_only, lazy=[reverify])
    app.action(ids.ReviewAction.EDIT)(open_update)
    app.action(ids.ReviewAction.DEPRECATE)(open_deprecate)
    app.view(ids.View.UPDATE_ENTRY)(ack=submit_update, lazy=[send_for_approval])
    app.view(ids.View.DEPRECATE_ENTRY)(ack=submit_deprecate, lazy=[send_for_approval])
