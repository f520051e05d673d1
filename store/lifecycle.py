"""Every state change of proposals and entries, and nothing else writes them.

Each transition is one transaction (the caller's session commits): approval writes the entry version, the
decision, the audit row and the outbox row together. Races are settled by the database, with conditional
updates on the pending state and a unique decision per proposal, never by memory, since replicas share only
the database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Update, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.errors import AlreadyDecided, BadInput, NotAllowed, NotFound, StaleProposal
from store.models import (
    AuditLog,
    Decision,
    Entry,
    EntryStatus,
    EntryVersion,
    Origin,
    OutboxEvent,
    OutboxOp,
    Proposal,
    ProposalKind,
    ProposalRevision,
    ProposalStatus,
    aware_utc,
    utcnow,
)
from store.text import content_hash, detect_language

MAX_TITLE_CHARS = 300
MAX_BODY_CHARS = 100_000
MAX_TAGS = 20


@dataclass
class Draft:
    """The editable part of a proposal."""

    title: str
    body: str
    tags: list[str] = field(default_factory=list)
    language: str | None = None
    source_ref: str | None = None
    change_note: str = ""

    def validated(self) -> Draft:
        title = " ".join(self.title.split())
        body = self.body.strip()
        if not title:
            raise BadInput("A proposal needs a title: give it one line that names the problem or the task.")
        if len(title) > MAX_TITLE_CHARS:
            raise BadInput(f"The title is {len(title)} characters; keep it under {MAX_TITLE_CHARS}.")
        if not body:
            raise BadInput("A proposal needs a body: write the symptoms and the steps that resolve them.")
        if len(body) > MAX_BODY_CHARS:
            raise BadInput(
                f"The text is {len(body):,} characters, over the {MAX_BODY_CHARS:,} limit: split it into "
                "several entries."
            )
        tags = sorted({t.strip().lower() for t in self.tags if t.strip()})
        if len(tags) > MAX_TAGS:
            raise BadInput(f"At most {MAX_TAGS} tags, please.")
        language = self.language or detect_language(f"{title}\n{body}")
        return Draft(title, body, tags, language, self.source_ref, self.change_note.strip())


def audit(session: Session, *, actor: str, action: str, subject_type: str, subject_id: int | None,
          **detail: Any) -> None:
    session.add(AuditLog(actor=actor, action=action, subject_type=subject_type, subject_id=subject_id,
                         detail=detail))


def _rows_updated(session: Session, statement: Update) -> int:
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def _get_proposal(session: Session, proposal_id: int) -> Proposal:
    proposal = session.get(Proposal, proposal_id)
    if proposal is None:
        raise NotFound(f"There is no proposal #{proposal_id}. `kb list --proposals` shows the pending ones.")
    return proposal


def get_entry(session: Session, entry_id: int) -> Entry:
    entry = session.get(Entry, entry_id)
    if entry is None:
        raise NotFound(f"There is no entry #{entry_id}. `kb list` shows the entries.")
    return entry


def submit_proposal(
    *,
    session: Session,
    draft: Draft,
    proposer: str,
    origin: Origin = Origin.COMMAND,
    origin_ref: str | None = None,
    kind: ProposalKind = ProposalKind.NEW,
    entry_id: int | None = None,
) -> Proposal:
    clean = draft.validated() if kind != ProposalKind.DEPRECATE else draft
    base_version = None
    if kind != ProposalKind.NEW:
        if entry_id is None:
            raise BadInput(f"A {kind.value} proposal must name the entry it changes.")
        entry = get_entry(session, entry_id)
        if entry.status != EntryStatus.ACTIVE:
            raise BadInput(f"Entry #{entry_id} is deprecated; propose a new entry instead.")
        base_version = entry.current_version
    proposal = Proposal(
        kind=kind, entry_id=entry_id, base_version=base_version, title=clean.title, body=clean.body,
        tags=clean.tags, language=clean.language or "en", source_ref=clean.source_ref, proposer=proposer,
        origin=origin, origin_ref=origin_ref, change_note=clean.change_note,
    )
    session.add(proposal)
    session.flush()
    audit(session, actor=proposer, action="proposal.submitted", subject_type="proposal",
          subject_id=proposal.id, kind=kind.value, origin=origin.value, entry_id=entry_id,
          base_version=base_version)
    return proposal


def _refuse_if_decided(session: Session, proposal: Proposal) -> None:
    if proposal.status == ProposalStatus.PENDING:
        return
    decision = session.exec(select(Decision).where(Decision.proposal_id == proposal.id)).first()
    by = decision.decided_by if decision else "its proposer"
    at = decision.decided_at.isoformat(timespec="seconds") if decision else proposal.updated_at.isoformat()
    raise AlreadyDecided(
        f"Proposal #{proposal.id} was already {proposal.status.value} by {by} at {at}.",
        decided_by=by, decided_at=at, outcome=proposal.status.value,
    )


def _claim(session: Session, proposal: Proposal, status: ProposalStatus, *, expected_revision: int | None
           ) -> None:
    """Move a pending proposal to ``status``; a concurrent decision makes the conditional update miss."""
    conditions = [col(Proposal.id) == proposal.id, col(Proposal.status) == ProposalStatus.PENDING]
    if expected_revision is not None:
        conditions.append(col(Proposal.revision) == expected_revision)
    if _rows_updated(session, update(Proposal).where(*conditions).values(status=status, updated_at=utcnow())) != 1:
        session.refresh(proposal)
        _refuse_if_decided(session, proposal)
        raise StaleProposal(
            f"Proposal #{proposal.id} was edited (now revision {proposal.revision}) while you decided; "
            "look at the new draft and decide again."
        )
    session.refresh(proposal)


def _record_decision(session: Session, proposal: Proposal, outcome: ProposalStatus, by: str, reason: str,
                     version: int | None) -> Decision:
    decision = Decision(proposal_id=proposal.id or 0, outcome=outcome, decided_by=by, reason=reason,
                        resulting_version=version)
    session.add(decision)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        session.refresh(proposal)
        _refuse_if_decided(session, proposal)
        raise
    return decision


@dataclass
class ApprovalResult:
    proposal: Proposal
    decision: Decision
    entry: Entry
    version: EntryVersion | None


def approve(
    *,
    session: Session,
    proposal_id: int,
    by: str,
    allow_self_approval: bool = False,
    review_interval_days: int = 90,
    review_interval_by_tag: dict[str, int] | None = None,
    expected_revision: int | None = None,
    owner: str | None = None,
    stagger_review: bool = False,
) -> ApprovalResult:
    """``stagger_review`` (a bulk import): the review date falls anywhere within the interval, by a hash of the
    source, so that the imported entries come due a few a day rather than all on the same day."""
    proposal = _get_proposal(session, proposal_id)
    _refuse_if_decided(session, proposal)
    if proposal.proposer == by and not allow_self_approval:
        raise NotAllowed(
            f"You proposed #{proposal_id}, so someone else has to approve it (four eyes on every entry)."
        )
    _claim(session, proposal, ProposalStatus.APPROVED, expected_revision=expected_revision)
    now = utcnow()
    override = get_entry(session, proposal.entry_id).review_interval_days if proposal.entry_id else None
    tagged = [d for tag, d in (review_interval_by_tag or {}).items() if tag in proposal.tags]
    days = override or (min(tagged) if tagged else review_interval_days)
    share = _review_share(proposal.source_ref or proposal.title) if stagger_review else 1.0
    review_after = now + timedelta(days=days * share)
    if proposal.kind == ProposalKind.NEW:
        entry = Entry(title=proposal.title, owner=owner or proposal.proposer, tags=proposal.tags,
                      language=proposal.language, source_ref=proposal.source_ref, review_after=review_after)
        session.add(entry)
        session.flush()
        version_no = 1
    else:
        assert proposal.entry_id is not None and proposal.base_version is not None
        entry = get_entry(session, proposal.entry_id)
        version_no = proposal.base_version + (0 if proposal.kind == ProposalKind.DEPRECATE else 1)
        _advance_entry(session, proposal, entry, version_no, review_after, now)
    version = None
    if proposal.kind != ProposalKind.DEPRECATE:
        version = EntryVersion(
            entry_id=entry.id or 0, version=version_no, title=proposal.title, body=proposal.body,
            tags=proposal.tags, language=proposal.language,
            content_hash=content_hash(proposal.title, proposal.body, ",".join(proposal.tags)),
            proposal_id=proposal.id, proposed_by=proposal.proposer, approved_by=by, approved_at=now,
            change_note=proposal.change_note,
        )
        session.add(version)
    decision = _record_decision(session, proposal, ProposalStatus.APPROVED, by, "", version_no)
    op = OutboxOp.DELETE if proposal.kind == ProposalKind.DEPRECATE else OutboxOp.UPSERT
    session.add(OutboxEvent(entry_id=entry.id or 0, version=version_no, op=op))
    audit(session, actor=by, action="proposal.approved", subject_type="proposal", subject_id=proposal.id,
          entry_id=entry.id, version=version_no, kind=proposal.kind.value)
    session.flush()
    return ApprovalResult(proposal, decision, entry, version)


def _review_share(key: str) -> float:
    """A share of the review interval in (0, 1], the same for the same key, spread evenly over keys."""
    return (int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") + 1) / 2**64


def _advance_entry(session: Session, proposal: Proposal, entry: Entry, version_no: int,
                   review_after: datetime, now: datetime) -> None:
    """Apply an update or deprecation only if the entry is still at the version the proposal was made on."""
    values: dict[str, Any] = {"updated_at": now}
    if proposal.kind == ProposalKind.DEPRECATE:
        values["status"] = EntryStatus.DEPRECATED
    else:
        values.update(current_version=version_no, title=proposal.title, tags=proposal.tags,
                      language=proposal.language, review_after=review_after)
    statement = (
        update(Entry)
        .where(col(Entry.id) == entry.id, col(Entry.current_version) == proposal.base_version,
               col(Entry.status) == EntryStatus.ACTIVE)
        .values(**values)
    )
    if _rows_updated(session, statement) != 1:
        session.refresh(entry)
        raise StaleProposal(
            f"Entry #{entry.id} is at version {entry.current_version} ({entry.status.value}) now, but "
            f"proposal #{proposal.id} was made against version {proposal.base_version}. Rebase it "
            f"(`kb edit {proposal.id} --rebase`) and review the changes again."
        )
    session.refresh(entry)


def reject(*, session: Session, proposal_id: int, by: str, reason: str,
           expected_revision: int | None = None) -> Decision:
    reason = reason.strip()
    if not reason:
        raise BadInput("Say why the proposal is rejected, so that its author can fix it.")
    proposal = _get_proposal(session, proposal_id)
    _refuse_if_decided(session, proposal)
    _claim(session, proposal, ProposalStatus.REJECTED, expected_revision=expected_revision)
    decision = _record_decision(session, proposal, ProposalStatus.REJECTED, by, reason, None)
    audit(session, actor=by, action="proposal.rejected", subject_type="proposal", subject_id=proposal_id,
          reason=reason)
    return decision


def withdraw(*, session: Session, proposal_id: int, by: str) -> Proposal:
    proposal = _get_proposal(session, proposal_id)
    _refuse_if_decided(session, proposal)
    if proposal.proposer != by:
        raise NotAllowed(f"Only {proposal.proposer}, who proposed #{proposal_id}, can withdraw it.")
    _claim(session, proposal, ProposalStatus.WITHDRAWN, expected_revision=None)
    audit(session, actor=by, action="proposal.withdrawn", subject_type="proposal", subject_id=proposal_id)
    return proposal


def edit_proposal(*, session: Session, proposal_id: int, by: str, draft: Draft, rebase: bool = False
                  ) -> Proposal:
    """Replace a pending draft, keeping the old one as a revision. ``rebase`` moves an update to the
    entry's current version."""
    proposal = _get_proposal(session, proposal_id)
    _refuse_if_decided(session, proposal)
    clean = draft.validated()
    session.add(ProposalRevision(proposal_id=proposal_id, revision=proposal.revision, title=proposal.title,
                                 body=proposal.body, tags=proposal.tags, edited_by=by))
    values: dict[str, Any] = dict(title=clean.title, body=clean.body, tags=clean.tags,
                                  language=clean.language, revision=proposal.revision + 1, updated_at=utcnow())
    if clean.change_note:
        values["change_note"] = clean.change_note
    if rebase and proposal.entry_id is not None:
        values["base_version"] = get_entry(session, proposal.entry_id).current_version
    statement = (
        update(Proposal)
        .where(col(Proposal.id) == proposal_id, col(Proposal.status) == ProposalStatus.PENDING,
               col(Proposal.revision) == proposal.revision)
        .values(**values)
    )
    if _rows_updated(session, statement) != 1:
        session.rollback()
        proposal = _get_proposal(session, proposal_id)
        _refuse_if_decided(session, proposal)
        raise StaleProposal(f"Proposal #{proposal_id} changed while you edited it; open it again.")
    session.refresh(proposal)
    audit(session, actor=by, action="proposal.edited", subject_type="proposal", subject_id=proposal_id,
          revision=proposal.revision, rebased_to=values.get("base_version"))
    return proposal


# --- re-verification ---------------------------------------------------------------------------------------

def review_interval(entry: Entry, *, default_days: int, by_tag: dict[str, int] | None = None) -> int:
    """The entry's own interval, else the shortest of its tags' intervals, else the default (as on approval)."""
    if entry.review_interval_days:
        return entry.review_interval_days
    tagged = [days for tag, days in (by_tag or {}).items() if tag in entry.tags]
    return min(tagged) if tagged else default_days


def due_for_review(session: Session, *, now: datetime | None = None, limit: int = 200) -> list[Entry]:
    """Active entries past their review date whose owner has not been asked since it passed."""
    now = now or utcnow()
    entries = session.exec(select(Entry).where(Entry.status == EntryStatus.ACTIVE,
                                               col(Entry.review_after).is_not(None),
                                               col(Entry.review_after) <= now)
                           .order_by(col(Entry.review_after)).limit(limit))
    return [e for e in entries if e.review_notified_at is None
            or aware_utc(e.review_notified_at) < aware_utc(e.review_after or now)]


def mark_review_requested(session: Session, entry_id: int, *, now: datetime | None = None) -> None:
    session.execute(update(Entry).where(col(Entry.id) == entry_id).values(review_notified_at=now or utcnow()))


def reverify(session: Session, *, entry_id: int, by: str, days: int) -> Entry:
    """The owner (or an approver) confirms the entry is still true: the next review moves ``days`` ahead."""
    entry = get_entry(session, entry_id)
    if entry.status != EntryStatus.ACTIVE:
        raise BadInput(f"Entry #{entry_id} is {entry.status.value}; only active entries are re-verified.")
    now = utcnow()
    entry.review_after, entry.review_notified_at, entry.updated_at = now + timedelta(days=days), None, now
    session.add(entry)
    audit(session, actor=by, action="entry.reverified", subject_type="entry", subject_id=entry_id,
          version=entry.current_version, next_review=entry.review_after.isoformat())
    session.flush()
    return entry


def bring_review_forward(session: Session, *, entry_id: int, reason: str) -> bool:
    """Make an entry due now (repeated "not helpful" feedback); False when it already was."""
    entry = get_entry(session, entry_id)
    now = utcnow()
    if entry.status != EntryStatus.ACTIVE or (entry.review_after and aware_utc(entry.review_after) <= now):
        return False
    entry.review_after = now
    session.add(entry)
    audit(session, actor="kb-feedback", action="entry.review_brought_forward", subject_type="entry",
          subject_id=entry_id, reason=reason)
    return True


def set_review_interval(session: Session, *, entry_id: int, days: int | None, by: str) -> Entry:
    """This entry's own review interval (None: back to its tags' or the default); its next review is counted
    from when it was last approved or re-verified."""
    if days is not None and not 1 <= days <= 3650:
        raise BadInput("A review interval is between 1 and 3650 days.")
    entry = get_entry(session, entry_id)
    entry.review_interval_days = days
    if days is not None:
        entry.review_after = aware_utc(entry.updated_at) + timedelta(days=days)
    session.add(entry)
    audit(session, actor=by, action="entry.review_interval_set", subject_type="entry", subject_id=entry_id,
          days=days)
    session.flush()
    return entry
