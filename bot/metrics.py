"""Prometheus metrics: what the bot did (counters, histograms) and the state of its store (read at scrape time).

One registry per service, so that several apps in one process (tests) never share a counter. Served on
``/metrics`` in HTTP mode, and on ``KB_METRICS_PORT`` in Socket Mode (``serve_metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import col, select

from store.db import Database
from store.models import OutboxEvent, Proposal, aware_utc, utcnow

if TYPE_CHECKING:
    from bot.tasks import TaskRun

FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 5.0)  # SLOs at 0.15, 2 and 3 s
SLOW = (0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
LEAD = (60.0, 600.0, 3600.0, 4 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0, 30 * 86400.0)


class StoreCollector(Collector):
    """Gauges read from the SQL store on each scrape: proposals by state, the outbox's depth and age."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        proposals = GaugeMetricFamily("kb_proposals", "Proposals by state.", labels=["state"])
        depth = GaugeMetricFamily("kb_outbox_depth", "Index changes waiting in the outbox.")
        oldest = GaugeMetricFamily("kb_outbox_oldest_seconds", "Age of the oldest waiting index change.")
        with self.db.session() as session:
            counts = dict(session.exec(select(Proposal.status, func.count()).group_by(Proposal.status)).all())
            for state, count in sorted(counts.items()):
                proposals.add_metric([state.value if hasattr(state, "value") else str(state)], float(count))
            waiting = session.exec(select(func.count(), func.min(OutboxEvent.created_at))
                                   .where(col(OutboxEvent.applied_at).is_(None))).one()
        depth.add_metric([], float(waiting[0] or 0))
        first = waiting[1]
        oldest.add_metric([], (utcnow() - aware_utc(first)).total_seconds() if first else 0.0)
        yield from (proposals, depth, oldest)


class Metrics:
    def __init__(self, db: Database | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter("kb_commands", "Commands run, by role and outcome.", ["role", "command", "outcome"],
                                registry=r)
        self.command_seconds = Histogram("kb_command_seconds", "Command duration by role.", ["role", "command"],
                                         buckets=SLOW, registry=r)
        self.ack_seconds = Histogram("kb_ack_seconds", "Time from a Slack request to its acknowledgement.",
                                     buckets=FAST, registry=r)
        self.retrieval_seconds = Histogram("kb_retrieval_seconds", "Retrieval latency, query embedding included.",
                                           buckets=FAST, registry=r)
        self.llm_seconds = Histogram("kb_llm_seconds", "Claude call latency, retries included.", ["role", "model"],
                                     buckets=SLOW, registry=r)
        self.llm_tokens = Counter("kb_llm_tokens", "Claude tokens.", ["role", "model", "direction"], registry=r)
        self.answers = Counter("kb_answers", "Answers by outcome: cited, dont_know, degraded.", ["outcome"],
                               registry=r)
        self.feedback = Counter("kb_feedback", "Answer feedback.", ["helpful"], registry=r)
        self.approval_lead = Histogram("kb_approval_lead_seconds", "From proposal to approval.", buckets=LEAD,
                                       registry=r)
        self.index_drift = Gauge("kb_index_drift", "Drift found by the last reconcile, by kind.", ["kind"],
                                 registry=r)
        self.channel_events = Counter("kb_channel_events", "Channel messages the bot replied to or skipped.",
                                      ["channel", "action"], registry=r)
        self.jobs = Counter("kb_scheduler_jobs", "Scheduled job runs by outcome.", ["job", "outcome"], registry=r)
        if db is not None:
            r.register(StoreCollector(db))

    def task_finished(self, run: TaskRun, outcome: str, seconds: float) -> None:
        task = run.task
        self.commands.labels(task.role, task.command, outcome).inc()
        self.command_seconds.labels(task.role, task.command).observe(seconds)

    def llm_call(self, role: str, record: dict[str, Any]) -> None:
        model = str(record.get("model") or "unknown")
        self.llm_seconds.labels(role, model).observe(float(record.get("llm_ms") or 0.0) / 1000)
        for direction in ("input", "output"):
            tokens = record.get(f"{direction}_tokens")
            if tokens:
                self.llm_tokens.labels(role, model, direction).inc(float(tokens))

    def answered(self, *, grounded: bool, degraded: bool) -> None:
        self.answers.labels("degraded" if degraded else "cited" if grounded else "dont_know").inc()


class Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def serve_metrics(metrics: Metrics, port: int, host: str = "0.0.0.0") -> None:
    """Socket Mode has no HTTP server of its own: expose /metrics on a port of its own."""
    start_http_server(port, addr=host, registry=metrics.registry)
