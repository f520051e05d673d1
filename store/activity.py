"""What people do around the knowledge: answer feedback, and where a proposal's approval card lives."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from store.errors import NotFound
from store.lifecycle import audit, bring_review_forward
from store.models import Entry, Feedback, Proposal, Task, utcnow


def record_feedback(*, session: Session, task_id: str, user: str, helpful: bool) -> Feedback:
    """One vote per user and answer; voting again changes the vote."""
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"There is no answer {task_id!r} to give feedback on.")
    entry_ids = [int(pair[0]) for pair in task.result.get("citations", [])]
    vote = session.exec(select(Feedback).where(Feedback.task_id == task_id, Feedback.user == user)).first()
    if vote is None:
        vote = Feedback(task_id=task_id, user=user, helpful=helpful, entry_ids=entry_ids)
    else:
        vote.helpful, vote.at = helpful, utcnow()
    session.add(vote)
    session.flush()
    audit(session, actor=user, action="answer.feedback", subject_type="task", subject_id=None, task_id=task_id,
          helpful=helpful, entry_ids=entry_ids)
    return vote


def review_if_unhelpful(*, session: Session, entry_ids: list[int], threshold: int) -> list[int]:
    """Entries with ``threshold`` or more "not helpful" votes since they were last approved or re-verified
    become due for review now. Returns the entries brought forward."""
    forward = []
    for entry_id in entry_ids:
        entry = session.get(Entry, entry_id)
        if entry is None:
            continue
        votes = session.exec(select(Feedback).where(Feedback.helpful == False, Feedback.at >= entry.updated_at))  # noqa: E712
        if sum(entry_id in vote.entry_ids for vote in votes) >= threshold and bring_review_forward(
                session, entry_id=entry_id, reason=f"{threshold}+ 'not helpful' votes"):
            forward.append(entry_id)
    return forward


def record_card(*, session: Session, proposal_id: int, channel: str, ts: str) -> None:
    session.execute(update(Proposal).where(col(Proposal.id) == proposal_id).values(card_channel=channel, card_ts=ts))
