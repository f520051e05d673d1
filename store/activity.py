"""What people do around the knowledge: answer feedback, and where a proposal's approval card lives."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from store.errors import NotFound
from store.lifecycle import audit
from store.models import Feedback, Proposal, Task, utcnow


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


def record_card(*, session: Session, proposal_id: int, channel: str, ts: str) -> None:
    session.execute(update(Proposal).where(col(Proposal.id) == proposal_id).values(card_channel=channel, card_ts=ts))
