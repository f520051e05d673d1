"""Read models for people: what the App Home shows, and the facts behind each citation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, func, select

from bot.roles.answerer import Citation
from store.db import Database
from store.models import Entry, EntryStatus, EntryVersion, Proposal, ProposalStatus, Task, aware_utc, utcnow


@dataclass
class CitationDetail:
    entry_id: int
    version: int
    title: str
    source_ref: str | None
    approved_by: str
    approved_at: datetime | None
    review_after: datetime | None

    @property
    def overdue(self) -> bool:
        return self.review_after is not None and aware_utc(self.review_after) < utcnow()


@dataclass
class HomeSummary:
    waiting_for_me: list[Proposal]
    my_proposals: list[Proposal]
    my_due_entries: list[Entry]
    active_entries: int
    pending_proposals: int
    answers_7d: int
    grounded_7d: int


def citation_details(db: Database, citations: list[Citation]) -> list[CitationDetail]:
    """Two queries for all of an answer's citations (they render while Slack's other requests wait for the
    interpreter lock; two per citation cost ~1 ms each)."""
    if not citations:
        return []
    entry_ids = {c.entry_id for c in citations}
    with db.session() as session:
        approvals = {(entry_id, version): (by, at) for entry_id, version, by, at in session.exec(
            select(EntryVersion.entry_id, EntryVersion.version, EntryVersion.approved_by, EntryVersion.approved_at)
            .where(col(EntryVersion.entry_id).in_(entry_ids)))}
        reviews = dict(session.exec(select(Entry.id, Entry.review_after).where(col(Entry.id).in_(entry_ids))).all())
    details = []
    for citation in citations:
        approved_by, approved_at = approvals.get((citation.entry_id, citation.version), ("?", None))
        details.append(CitationDetail(
            entry_id=citation.entry_id, version=citation.version, title=citation.title,
            source_ref=citation.source_ref, approved_by=approved_by or "?", approved_at=approved_at,
            review_after=reviews.get(citation.entry_id)))
    return details


def home_summary(db: Database, *, user: str, is_approver: bool, limit: int = 10) -> HomeSummary:
    now = utcnow()
    with db.session() as session:
        waiting: list[Proposal] = []
        if is_approver:
            waiting = list(session.exec(select(Proposal).where(
                Proposal.status == ProposalStatus.PENDING, Proposal.proposer != user)
                .order_by(col(Proposal.created_at)).limit(limit)))
        mine = list(session.exec(select(Proposal).where(Proposal.proposer == user)
                                 .order_by(col(Proposal.id).desc()).limit(limit)))
        due = list(session.exec(select(Entry).where(
            Entry.owner == user, Entry.status == EntryStatus.ACTIVE, col(Entry.review_after) <= now)
            .order_by(col(Entry.review_after)).limit(limit)))
        active = session.exec(select(func.count()).select_from(Entry).where(Entry.status == EntryStatus.ACTIVE)).one()
        pending = session.exec(select(func.count()).select_from(Proposal)
                               .where(Proposal.status == ProposalStatus.PENDING)).one()
        answers = list(session.exec(select(Task).where(Task.role == "answerer",
                                                       col(Task.started_at) >= now - timedelta(days=7))))
    return HomeSummary(waiting, mine, due, int(active), int(pending), len(answers),
                       sum(1 for t in answers if t.result.get("grounded")))
