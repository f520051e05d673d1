"""Approval cards: post them, and the Approve / Edit / Reject buttons and their modals."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltResponse, Respond
from slack_sdk import WebClient

from bot.services import KnowledgeService
from handlers import blocks, ids
from handlers.acks import ack_only
from handlers.errors import reports_errors, user_message
from handlers.values import ProposalRef, decode_proposal, encode_proposal
from store.errors import AlreadyDecided, BadInput, KbError, NotAllowed
from store.lifecycle import Draft
from store.models import Decision, Proposal

log = logging.getLogger(__name__)


def post_card(service: KnowledgeService, client: WebClient, proposal: Proposal) -> None:
    """Post the approval card to the approval channel and remember where it is, to update it in place."""
    channel = service.settings.approval_channel
    if not channel:
        log.warning("KB_APPROVAL_CHANNEL is not set: proposal #%s has no card", proposal.id)
        return
    response = client.chat_postMessage(channel=channel, text=f"Proposal #{proposal.id}: {proposal.title}",
                                       blocks=blocks.card_blocks(proposal, permalink=proposal.origin_ref),
                                       unfurl_links=False)
    service.record_card(proposal.id or 0, channel=str(response["channel"]), ts=str(response["ts"]))


def review_quietly(service: KnowledgeService, proposal_id: int) -> None:
    """Run the Reviewer; if it fails, the card goes out unreviewed rather than not at all."""
    try:
        service.review_proposal(proposal_id)
    except Exception:
        log.exception("the Reviewer failed on proposal #%s; its card shows it unreviewed", proposal_id)


def proposal_stored(context: BoltContext, proposal_id: int, *, notice: str) -> None:
    """Tell ``send_for_approval`` (the lazy listener after a proposal modal's ack) what to send."""
    context["stored_proposal"] = {"id": proposal_id, "notice": notice}


@reports_errors
def send_for_approval(body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    """After a proposal was stored: the Reviewer checks it, then the card goes to the approvers and the
    proposer gets a DM. Nothing to do when the modal showed an error instead."""
    stored = context.get("stored_proposal")
    if not stored:
        return
    service: KnowledgeService = context["kb"]
    review_quietly(service, stored["id"])
    post_card(service, client, service.show_proposal(stored["id"]).proposal)
    client.chat_postMessage(channel=body["user"]["id"], text=stored["notice"])


def refresh_card(service: KnowledgeService, client: WebClient, proposal_id: int) -> None:
    detail = service.show_proposal(proposal_id)
    proposal = detail.proposal
    if not (proposal.card_channel and proposal.card_ts):
        return
    client.chat_update(channel=proposal.card_channel, ts=proposal.card_ts,
                       text=f"Proposal #{proposal.id}: {proposal.title} ({proposal.status.value})",
                       blocks=blocks.card_blocks(proposal, permalink=proposal.origin_ref, decision=detail.decision))


def tell_proposer(client: WebClient, proposal: Proposal, decision: Decision) -> None:
    """A DM to the proposer (a Slack user id); CLI and import proposers have no DM to get."""
    if re.fullmatch(r"[UW][A-Z0-9]{2,}", proposal.proposer):
        client.chat_postMessage(channel=proposal.proposer, text=f"Your proposal #{proposal.id} "
                                f"\"{proposal.title}\": {blocks.decision_line(decision)}")


def is_approver(service: KnowledgeService, client: WebClient, user: str) -> bool:
    """KB_APPROVERS: user ids and user groups (S…, resolved with usergroups.users.list), or `*` for anyone
    (the local console's default). Resolved on every decision, so a change in the group applies at once."""
    for item in (part.strip() for part in service.settings.approvers.split(",")):
        if item in ("*", user):
            return True
        if item.startswith("S") and user in (client.usergroups_users_list(usergroup=item).get("users") or []):
            return True
    return False


def require_approver(body: dict[str, Any], context: BoltContext, client: WebClient, respond: Respond,
                     next: Any) -> BoltResponse | None:  # Bolt injects listener middleware's `next` by name
    """Listener middleware: only approvers get past; anyone else hears why, and the attempt is audited."""
    service: KnowledgeService = context["kb"]
    user = body["user"]["id"]
    if is_approver(service, client, user):
        next()
        return None
    action = (body.get("actions") or [{}])[0]
    try:
        proposal_id = decode_proposal(action.get("value", "")).proposal_id
    except BadInput:
        proposal_id = 0
    service.record_refusal(user, proposal_id, "not an approver")
    respond(text=":no_entry: Only approvers can decide proposals (see KB_APPROVERS). Your click was recorded.",
            response_type="ephemeral", replace_original=False)
    return BoltResponse(status=200, body="")  # acknowledged; the listener does not run


@reports_errors
def approve(body: dict[str, Any], action: dict[str, Any], context: BoltContext, client: WebClient,
            respond: Respond) -> None:
    service: KnowledgeService = context["kb"]
    ref = decode_proposal(action["value"])
    user = body["user"]["id"]
    try:
        decided = service.approve(ref.proposal_id, by=user, expected_revision=ref.revision)
    except AlreadyDecided as exc:
        respond(text=f":information_source: {exc}", response_type="ephemeral", replace_original=False)
        return
    refresh_card(service, client, ref.proposal_id)
    tell_proposer(client, decided.result.proposal, decided.result.decision)
    if not decided.indexed:
        respond(text=":hourglass: Approved. The search index is catching up; it will be searchable shortly.",
                response_type="ephemeral", replace_original=False)


def open_edit(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext,
              client: WebClient) -> None:
    """Edit opens at once (trigger ids expire in 3 s), prefilled with the current draft."""
    ack()
    service: KnowledgeService = context["kb"]
    proposal = service.show_proposal(decode_proposal(action["value"]).proposal_id).proposal
    metadata = encode_proposal(ProposalRef(proposal.id or 0, proposal.revision))
    client.views_open(trigger_id=body["trigger_id"], view=blocks.draft_modal(
        ids.View.EDIT, "Edit proposal", draft_title=proposal.title, body=proposal.body, tags=proposal.tags,
        private_metadata=metadata, submit="Save"))


def open_reject(ack: Ack, body: dict[str, Any], action: dict[str, Any], context: BoltContext,
                client: WebClient) -> None:
    ack()
    service: KnowledgeService = context["kb"]
    proposal = service.show_proposal(decode_proposal(action["value"]).proposal_id).proposal
    client.views_open(trigger_id=body["trigger_id"], view=blocks.reject_modal(proposal, action["value"]))


def draft_from_view(view: dict[str, Any]) -> Draft:
    values = view["state"]["values"]
    title = (values.get(ids.Block.TITLE, {}).get(ids.Field.TITLE, {}).get("value") or "").strip()
    body_blocks = sorted((k for k in values if k.startswith(f"{ids.Block.BODY}_")), key=lambda k: int(k.rsplit("_")[1]))
    body = "\n".join(values[k][ids.Field.BODY].get("value") or "" for k in body_blocks)
    tags = values.get(ids.Block.TAGS, {}).get(ids.Field.TAGS, {}).get("value") or ""
    return Draft(title=title, body=body, tags=[t for t in tags.split(",") if t.strip()])


def submit_edit(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext) -> None:
    """The edit is stored before the modal closes (errors shown in it); ``review_edit`` follows."""
    service: KnowledgeService = context["kb"]
    ref = decode_proposal(view["private_metadata"])
    try:
        service.edit(ref.proposal_id, draft_from_view(view), by=body["user"]["id"], review=False)
    except BadInput as exc:
        ack(response_action="errors", errors={f"{ids.Block.BODY}_0": str(exc)})
        return
    except KbError as exc:
        ack(response_action="errors", errors={ids.Block.TITLE: str(exc)})
        return
    context["edited_proposal"] = ref.proposal_id  # for the lazy listener (Bolt copies the context after the ack)
    ack()


@reports_errors
def review_edit(context: BoltContext, client: WebClient) -> None:
    """After an edit: the Reviewer looks at the new text, and the card shows it."""
    proposal_id = context.get("edited_proposal")
    if proposal_id is None:  # the edit was refused in the modal
        return
    service: KnowledgeService = context["kb"]
    review_quietly(service, proposal_id)
    refresh_card(service, client, proposal_id)


def submit_reject(ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext,
                  client: WebClient) -> None:
    service: KnowledgeService = context["kb"]
    ref = decode_proposal(view["private_metadata"])
    reason = view["state"]["values"][ids.Block.REASON][ids.Field.REASON].get("value") or ""
    user = body["user"]["id"]
    try:
        if not is_approver(service, client, user):
            service.record_refusal(user, ref.proposal_id, "not an approver")
            raise NotAllowed("Only approvers can reject proposals.")
        service.reject(ref.proposal_id, by=user, reason=reason, expected_revision=ref.revision)
    except KbError as exc:
        ack(response_action="errors", errors={ids.Block.REASON: user_message(exc)[:150]})
        return
    context["rejected_proposal"] = ref.proposal_id
    ack()


@reports_errors
def announce_rejection(context: BoltContext, client: WebClient) -> None:
    """After a rejection: the card shows the decision, and the proposer hears of it."""
    proposal_id = context.get("rejected_proposal")
    if proposal_id is None:
        return
    service: KnowledgeService = context["kb"]
    refresh_card(service, client, proposal_id)
    detail = service.show_proposal(proposal_id)
    if detail.decision is not None:
        tell_proposer(client, detail.proposal, detail.decision)


def register(app: App) -> None:
    decide = [require_approver]
    app.action(ids.ApprovalAction.APPROVE, middleware=decide)(ack=ack_only, lazy=[approve])
    app.action(ids.ApprovalAction.EDIT, middleware=decide)(open_edit)
    app.action(ids.ApprovalAction.REJECT, middleware=decide)(open_reject)
    app.view(ids.View.EDIT)(ack=submit_edit, lazy=[review_edit])
    app.view(ids.View.REJECT)(ack=submit_reject, lazy=[announce_rejection])
