"""Scheduled jobs, on APScheduler 3 with its job store in the SQL store, run by one elected replica.

Every replica runs a ``KbScheduler``. An elector thread competes for the ``scheduler`` lease row
(``store.leases``); the holder resumes its APScheduler, the others keep theirs paused. A leader that dies stops
renewing, and another takes over when the lease expires. Each job is also idempotent: the outbox and the
reconcile converge, and notifications are marked once per (job, key), so even an overlap sends nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.notify import Notifier
from bot.services import KnowledgeService
from store import leases

log = logging.getLogger(__name__)
LEASE = "scheduler"
JOBS_TABLE = "apscheduler_jobs"

# The leader of each database in this process; persisted jobs name the database, not the (unpicklable) service.
_LEADERS: dict[str, KbScheduler] = {}
_LEADERS_LOCK = threading.Lock()


def run_job(name: str, database: str) -> None:
    """The one callable the job store holds: it runs ``name`` on this process's leader for ``database``."""
    with _LEADERS_LOCK:
        leader = _LEADERS.get(database)
    if leader is None or not leader.is_leader:
        log.info("job %s skipped: this process does not lead", name)
        return
    leader.run(name)


class Jobs:
    """The jobs themselves: each is a function of the service and the notifier, safe to run twice."""

    def __init__(self, service: KnowledgeService, notifier: Notifier) -> None:
        self.service = service
        self.notifier = notifier

    def outbox_sync(self) -> None:
        self.service.sync_outbox_safely()

    def reconcile(self) -> None:
        self.service.reconcile()

    def verification(self) -> None:
        for detail in self.service.due_for_review():
            review_after = detail.entry.review_after
            key = f"{detail.entry.id}@{review_after.isoformat() if review_after else ''}"
            if self._once("verification", key):
                self.notifier.review_due(detail)
                self.service.mark_review_requested(detail.entry.id or 0)

    def approval_reminders(self) -> None:
        waiting = self.service.approval_backlog(
            older_than=timedelta(hours=self.service.settings.approval_reminder_hours))
        if waiting and self._once("approval_reminders", datetime.now(UTC).strftime("%Y-%m-%d")):
            self.notifier.approval_digest(waiting)

    def gaps_digest(self) -> None:
        now = datetime.now(UTC)
        gaps = self.service.knowledge_gaps(since=now - timedelta(days=7))
        year, week, _ = now.isocalendar()
        if gaps and self._once("gaps_digest", f"{year}-W{week:02d}"):
            self.notifier.gaps_digest(gaps)

    def _once(self, job: str, key: str) -> bool:
        with self.service.db.session() as session:
            return leases.mark_once(session, job=job, key=key)


class KbScheduler:
    def __init__(self, service: KnowledgeService, notifier: Notifier, *, holder: str | None = None) -> None:
        self.service = service
        self.jobs = Jobs(service, notifier)
        self.settings = service.settings
        self.holder = holder or f"{uuid.uuid4().hex[:8]}"
        self.database = hashlib.sha256(service.settings.effective_database_url.encode()).hexdigest()[:16]
        self.is_leader = False
        self.runs: list[str] = []  # job names this scheduler ran, for tests and logs
        self._stop = threading.Event()
        self._elector: threading.Thread | None = None
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=service.db.engine, tablename=JOBS_TABLE)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            timezone=UTC,
        )

    def schedule(self) -> None:
        """The job table, kept in the job store (replace_existing: every replica writes the same rows)."""
        s = self.settings
        table: dict[str, Any] = {
            "outbox_sync": IntervalTrigger(seconds=s.outbox_sync_seconds),
            "reconcile": IntervalTrigger(minutes=s.reconcile_minutes),
            "verification": IntervalTrigger(minutes=s.verification_minutes),
            "approval_reminders": IntervalTrigger(hours=1),
            "gaps_digest": CronTrigger(day_of_week=s.gaps_digest_weekday, hour=9, timezone=UTC),
        }
        for name, trigger in table.items():
            self.scheduler.add_job(run_job, trigger, args=[name, self.database], id=name, name=name,
                                   replace_existing=True)

    def start(self) -> KbScheduler:
        self.scheduler.start(paused=True)
        self.schedule()
        self._elector = threading.Thread(target=self._elect_forever, name=f"kb-elector-{self.holder}", daemon=True)
        self._elector.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._elector is not None:
            self._elector.join(timeout=10)
        self._step_down()
        with self.service.db.session() as session:
            leases.release(session, name=LEASE, holder=self.holder)
        self.scheduler.shutdown(wait=True)

    def run(self, name: str) -> bool:
        """Run one job now as a task of the scheduler role; failures are logged and counted, never raised."""
        ok = False
        try:
            with self.service._run_task(role="scheduler", command=name, actor=f"kb-scheduler:{self.holder}",
                                        input="", plan=[name]) as task, task.step(name):
                getattr(self.jobs, name)()
            self.service.metrics.jobs.labels(name, "succeeded").inc()
            ok = True
        except Exception:
            self.service.metrics.jobs.labels(name, "failed").inc()
            log.exception("scheduled job %s failed", name)
        self.runs.append(name)
        return ok

    # --- the election ----------------------------------------------------------------------------------
    def _elect_forever(self) -> None:
        ttl = timedelta(seconds=self.settings.scheduler_lease_seconds)
        while not self._stop.is_set():
            try:
                with self.service.db.session() as session:
                    leading = leases.acquire(session, name=LEASE, holder=self.holder, ttl=ttl)
            except Exception:
                log.exception("the scheduler lease could not be checked; stepping down")
                leading = False
            if leading and not self.is_leader:
                self._step_up()
            elif not leading and self.is_leader:
                self._step_down()
            self._stop.wait(self.settings.scheduler_lease_seconds / 3)

    def _step_up(self) -> None:
        log.info("scheduler %s leads: running jobs", self.holder)
        with _LEADERS_LOCK:
            _LEADERS[self.database] = self
        self.is_leader = True
        self.scheduler.resume()

    def _step_down(self) -> None:
        if not self.is_leader:
            return
        log.info("scheduler %s no longer leads", self.holder)
        self.is_leader = False
        if self.scheduler.running:
            self.scheduler.pause()
        with _LEADERS_LOCK:
            if _LEADERS.get(self.database) is self:
                del _LEADERS[self.database]
