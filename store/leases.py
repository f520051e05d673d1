"""Leader election and once-only marks for scheduled jobs, on the SQL store (SQLite and PostgreSQL alike).

APScheduler 3 has no coordination between schedulers that share a job store (both would run every job), so
each replica competes for a lease row; only the holder runs jobs. A lease is taken when free or expired, and
renewed by its holder. Jobs also mark what they did (a digest for a day) so that even two runs do it once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.models import JobMark, SchedulerLease, aware_utc, utcnow


def acquire(session: Session, *, name: str, holder: str, ttl: timedelta, now: datetime | None = None) -> bool:
    """Take or renew the lease; True when ``holder`` holds it afterwards."""
    now = now or utcnow()
    taken = session.execute(
        update(SchedulerLease)
        .where(col(SchedulerLease.name) == name,
               (col(SchedulerLease.holder) == holder) | (col(SchedulerLease.expires_at) < now))
        .values(holder=holder, expires_at=now + ttl)
    )
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        return True
    if session.get(SchedulerLease, name) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(SchedulerLease(name=name, holder=holder, expires_at=now + ttl))
    except IntegrityError:  # another replica created it first
        return False
    return True


def release(session: Session, *, name: str, holder: str) -> None:
    session.execute(update(SchedulerLease).where(col(SchedulerLease.name) == name,
                                                 col(SchedulerLease.holder) == holder)
                    .values(expires_at=utcnow() - timedelta(seconds=1)))


def holder_of(session: Session, name: str) -> str | None:
    lease = session.exec(select(SchedulerLease).where(SchedulerLease.name == name)).first()
    return lease.holder if lease is not None and aware_utc(lease.expires_at) > utcnow() else None


def mark_once(session: Session, *, job: str, key: str) -> bool:
    """True the first time ``(job, key)`` is marked; False ever after, whoever asks."""
    try:
        with session.begin_nested():
            session.add(JobMark(job=job, key=key[:200]))
    except IntegrityError:
        return False
    return True

