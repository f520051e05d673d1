"""Scheduled jobs against the real store and index, their messages on the loopback Slack API, and the buttons
in them driven through the running app; the election of one scheduler among replicas; /metrics."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from bot.app import web_client
from bot.notify import NoNotifier
from bot.scheduler import Jobs, KbScheduler
from bot.services import IMPORT_ACTOR, KnowledgeService
from bot.wiring import build_service
from handlers import ids
from handlers.notify import SlackNotifier
from store.index import ChunkRecord
from store.lifecycle import Draft
from store.models import AuditLog, Entry, Proposal, Task, utcnow
from store.weaviate_conn import WeaviateTarget
from tests.fakes.slack_requests import block_action, post, view_submission
from tests.handlers.conftest import APPROVAL_CHANNEL, SECRET, RunningApp, app_settings
from tests.handlers.test_slack_scenarios import APPROVER, all_text, buttons, command

pytestmark = pytest.mark.weaviate
OWNER = "UOWNER1"


def _entry(app: RunningApp, title: str, body: str, *, owner: str = OWNER) -> int:
    proposal = app.service.propose(Draft(title=title, body=body), proposer=owner, review=False)
    decided = app.service.approve(proposal.id or 0, by=APPROVER)
    assert decided.indexed
    return decided.result.entry.id or 0


def _make_due(service: KnowledgeService, entry_id: int) -> None:
    with service.db.session() as session:
        session.execute(update(Entry).where(col(Entry.id) == entry_id)
                        .values(review_after=utcnow() - timedelta(days=1)))


def _jobs(app: RunningApp) -> Jobs:
    return Jobs(app.service, SlackNotifier(web_client(app.settings), app.settings))


def _click(app: RunningApp, action_id: str, value: str, *, user: str, reply: str) -> None:
    body = block_action(action_id, value, user_id=user, channel_id=user, response_url=app.fake.response_url(reply))
    assert post(app.url, body, SECRET).status_code == 200


def test_a_due_entry_asks_its_owner_once_and_reverify_moves_the_date(running: RunningApp) -> None:
    entry_id = _entry(running, "Rotate the TLS certificate", "Run `certbot renew` on the edge hosts.")
    _make_due(running.service, entry_id)
    jobs = _jobs(running)
    jobs.verification()
    jobs.verification()  # idempotent: one DM per due date
    [dm] = [c for c in running.fake.calls_to("chat.postMessage") if c.args["channel"] == OWNER]
    assert "Is this still true?" in all_text(dm.args["blocks"]) and "certbot renew" in all_text(dm.args["blocks"])
    assert "You own it." in all_text(dm.args["blocks"])
    choices = buttons(dm.args["blocks"])
    assert set(choices) == {ids.ReviewAction.REVERIFY, ids.ReviewAction.EDIT, ids.ReviewAction.DEPRECATE}

    _click(running, ids.ReviewAction.REVERIFY, choices[ids.ReviewAction.REVERIFY], user="USTRANGER", reply="no")
    assert "owner or an approver" in running.fake.wait_for("response_url:no")[-1].args["text"]
    _click(running, ids.ReviewAction.REVERIFY, choices[ids.ReviewAction.REVERIFY], user=OWNER, reply="yes")
    assert "re-verified by <@UOWNER1>" in running.fake.wait_for("response_url:yes")[-1].args["text"]
    entry = running.service.show_entry(entry_id).entry
    assert entry.review_after is not None and entry.review_after.replace(tzinfo=None) > utcnow().replace(
        tzinfo=None) + timedelta(days=80)
    assert running.service.due_for_review() == []
    with running.service.db.session() as session:
        assert session.exec(select(AuditLog).where(AuditLog.action == "entry.reverified")).one().actor == OWNER


def test_an_imported_entry_due_for_review_is_asked_about_in_the_approval_channel(running: RunningApp) -> None:
    entry_id = _entry(running, "Drain a node", "Cordon it, then `kubectl drain --ignore-daemonsets`.",
                      owner=IMPORT_ACTOR)
    _make_due(running.service, entry_id)
    _jobs(running).verification()
    [post_] = [c for c in running.fake.calls_to("chat.postMessage") if "Is entry" in c.args["text"]]
    assert post_.args["channel"] == APPROVAL_CHANNEL
    text = all_text(post_.args["blocks"])
    assert "Drain a node" in text and "kb-import" in text and "an approver re-verifies it" in text
    assert "You own it." not in text
    assert ids.ReviewAction.REVERIFY in buttons(post_.args["blocks"])


def test_deprecate_from_the_reminder_removes_the_entry_from_search_once_approved(running: RunningApp) -> None:
    entry_id = _entry(running, "Restart the legacy queue", "Restart the legacy queue worker with `svc restart lq`.")
    assert entry_id in [h.entry_id for h in running.service.search("restart the legacy queue worker")]
    _make_due(running.service, entry_id)
    _jobs(running).verification()
    dm = next(c for c in running.fake.calls_to("chat.postMessage") if c.args["channel"] == OWNER)
    _click(running, ids.ReviewAction.DEPRECATE, buttons(dm.args["blocks"])[ids.ReviewAction.DEPRECATE], user=OWNER,
           reply="dep")
    modal = running.fake.wait_for("views.open")[-1].args["view"]
    assert modal["callback_id"] == ids.View.DEPRECATE_ENTRY
    submission = view_submission(ids.View.DEPRECATE_ENTRY, {
        ids.Block.REASON: {ids.Field.REASON: "The legacy queue was shut down."}}, user_id=OWNER,
        private_metadata=modal["private_metadata"])
    assert post(running.url, submission, SECRET).status_code == 200
    card = next(c for c in running.fake.wait_for("chat.postMessage", count=2, timeout=30)
                if c.args["channel"] == APPROVAL_CHANNEL)
    assert f"Deprecation of entry #{entry_id}" in all_text(card.args["blocks"])
    value = buttons(card.args["blocks"])[ids.ApprovalAction.APPROVE]
    body = block_action(ids.ApprovalAction.APPROVE, value, user_id=APPROVER, channel_id=APPROVAL_CHANNEL,
                        response_url=running.fake.response_url("ok"))
    assert post(running.url, body, SECRET).status_code == 200
    running.fake.wait_for("chat.update", timeout=30)
    assert entry_id not in [h.entry_id for h in running.service.search("restart the legacy queue worker")]


def test_repeated_not_helpful_brings_the_review_forward_and_answers_say_it_is_overdue(running: RunningApp) -> None:
    entry_id = _entry(running, "Clear the runner disk", "CI jobs fail with no space left on device. "
                      "Run `docker system prune -af` on the runner.")
    for voter in ("UV1", "UV2", "UV3"):
        answer, task_id = running.service.ask("ci jobs fail with no space left on device on the runner",
                                              actor=voter)
        assert answer.citations[0].entry_id == entry_id
        running.service.record_feedback(task_id, user=voter, helpful=False)
    assert [d.entry.id for d in running.service.due_for_review()] == [entry_id]
    reply = command(running, "ask ci jobs fail with no space left on device on the runner", reply="overdue")
    assert "overdue for re-verification" in all_text(reply.args["blocks"])


def test_reminders_and_gaps_digest_go_to_the_approval_channel_once(running: RunningApp) -> None:
    waiting = running.service.propose(Draft(title="Old proposal", body="Nobody looked at this."), proposer="UX",
                                      review=False)
    running.service.propose(Draft(title="New proposal", body="Just proposed."), proposer="UX", review=False)
    with running.service.db.session() as session:
        session.execute(update(Proposal).where(col(Proposal.id) == waiting.id)
                        .values(created_at=utcnow() - timedelta(days=3)))
    unanswered, _ = running.service.ask("how do I rotate the kafka consumer group offsets for billing", actor="UQ")
    assert not unanswered.grounded
    jobs = _jobs(running)
    for _ in range(2):
        jobs.approval_reminders()
        jobs.gaps_digest()
    posts = [c for c in running.fake.calls_to("chat.postMessage") if c.args["channel"] == APPROVAL_CHANNEL]
    assert len(posts) == 2
    digest, gaps = (all_text(c.args["blocks"]) for c in posts)
    assert "Old proposal" in digest and "New proposal" not in digest
    assert "kafka consumer group offsets" in gaps
    [accessory] = [b["accessory"] for b in posts[1].args["blocks"] if "accessory" in b]
    assert accessory["action_id"] == ids.AnswerAction.PROPOSE


def test_reconcile_repairs_planted_drift_and_reports_it(running: RunningApp, caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    kept = _entry(running, "Vacuum the orders table", "Run `VACUUM ANALYZE orders;` when bloat passes 30%.")
    lost = _entry(running, "Drain a node", "Cordon then `kubectl drain NODE --ignore-daemonsets`.")
    running.service.index.delete_entry(lost)
    running.service.index.write_chunks([ChunkRecord(
        entry_id=999, version=1, chunk_no=0, title="Unapproved shortcut", heading_path=[], text="never approved",
        language="en", tags=[], source_ref=None, content_hash="x")])
    with caplog.at_level(logging.ERROR):
        report = running.service.reconcile()
    assert report.missing == [lost] and report.unapproved == [999] and report.repaired
    # An ERROR log line reaches Sentry through its logging integration (see tests/bot/test_telemetry.py).
    assert any("unapproved entries were searchable" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)
    assert 999 not in [h.entry_id for h in running.service.search("unapproved shortcut never approved")]
    assert running.service.reconcile().clean
    assert lost in [h.entry_id for h in running.service.search("drain a node ignore daemonsets")]
    assert kept in [h.entry_id for h in running.service.search("vacuum analyze orders bloat")]
    with running.service.db.session() as session:
        task = session.exec(select(Task).where(Task.command == "reconcile")).first()
    assert task is not None and task.role == "scheduler" and task.result["missing"] == [lost]


def test_metrics_are_scraped_from_the_running_app(running: RunningApp) -> None:
    _entry(running, "Clear the runner disk", "CI jobs fail with no space left on device. Run `docker system "
           "prune -af` on the runner.")
    command(running, "ask ci jobs fail with no space left on device on the runner", reply="m")
    running.service.propose(Draft(title="Waiting", body="A pending proposal."), proposer="UX", review=False)
    text = httpx.get(f"{running.url}/metrics", timeout=10).text

    def value(pattern: str) -> float:
        match = re.search(rf"^{pattern} ([0-9.e+-]+)$", text, re.MULTILINE)
        assert match, f"{pattern} not in /metrics"
        return float(match.group(1))

    assert value(r'kb_commands_total\{command="ask",outcome="succeeded",role="answerer"\}') == 1
    assert value(r"kb_ack_seconds_count") >= 1
    assert value(r"kb_retrieval_seconds_count") >= 1
    assert value(r'kb_answers_total\{outcome="cited"\}') == 1
    assert value(r'kb_proposals\{state="approved"\}') == 1 and value(r'kb_proposals\{state="pending"\}') == 1
    assert value(r"kb_outbox_depth") == 0
    assert value(r"kb_approval_lead_seconds_count") == 1


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_two_schedulers_elect_one_and_each_job_runs_once(tmp_path: Path, weaviate_target: WeaviateTarget,
                                                         fake_slack: Any, database: str) -> None:
    from tests.conftest import POSTGRES_URL, _postgres_database

    if database == "postgres" and POSTGRES_URL is None:
        pytest.skip("KB_TEST_DATABASE_URL is not set (make test starts PostgreSQL and sets it)")
    urls = _postgres_database() if database == "postgres" else iter([f"sqlite:///{tmp_path / 'kb.sqlite3'}"])
    url = next(urls)
    settings = app_settings(tmp_path, url, weaviate_target, fake_slack, outbox_sync_seconds=0.2,
                            scheduler_lease_seconds=1.0)
    replicas = [build_service(settings), build_service(settings)]
    schedulers = [KbScheduler(s, NoNotifier(), holder=h).start() for s, h in zip(replicas, "AB", strict=True)]
    try:
        time.sleep(2.5)
        leaders = [s for s in schedulers if s.is_leader]
        assert len(leaders) == 1
        leader, follower = leaders[0], next(s for s in schedulers if s is not leaders[0])
        assert leader.runs.count("outbox_sync") >= 3 and follower.runs == []
        leader.stop()  # the leader goes away; the other takes over once the lease expires
        time.sleep(2.5)
        assert follower.is_leader and follower.runs.count("outbox_sync") >= 2
        with replicas[1].db.session() as session:
            actors = {t.actor for t in session.exec(select(Task).where(Task.command == "outbox_sync"))}
        assert actors == {f"kb-scheduler:{leader.holder}", f"kb-scheduler:{follower.holder}"}
    finally:
        for scheduler in schedulers:
            if scheduler.scheduler.running:
                scheduler.stop()
        for service in replicas:
            service.close()
        for _ in urls:  # drops the PostgreSQL database
            pass
