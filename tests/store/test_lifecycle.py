"""Lifecycle transitions on real SQLite and PostgreSQL: the legal ones, and the refusals."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, func, select
from weaviate.exceptions import WeaviateClosedClientError

from bot.services import KnowledgeService
from store import lifecycle
from store.errors import AlreadyDecided, BadInput, IndexUnavailable, NotAllowed, NotFound, StaleProposal
from store.lifecycle import Draft
from store.models import (
    AuditLog,
    Decision,
    Entry,
    EntryStatus,
    EntryVersion,
    OutboxEvent,
    OutboxOp,
    Proposal,
    ProposalKind,
    ProposalRevision,
    ProposalStatus,
    aware_utc,
    utcnow,
)

DRAFT = Draft(title="Disk full on the runner", body="## Symptoms\nJobs fail.\n\n## Fix\nRun `docker system prune`.",
              tags=["ci", "disk"])


def _propose(service: KnowledgeService, by: str = "alice", draft: Draft = DRAFT, **kwargs: object) -> int:
    proposal = service.propose(draft, proposer=by, **kwargs)  # type: ignore[arg-type]
    assert proposal.id is not None
    return proposal.id


def _count(service: KnowledgeService, model: type, *where: object) -> int:
    with service.db.session() as session:
        return int(session.exec(select(func.count()).select_from(model).where(*where)).one())


def test_approve_writes_version_decision_audit_and_outbox_together(sql_service: KnowledgeService) -> None:
    pid = _propose(sql_service)
    decided = sql_service.approve(pid, by="bob")

    assert decided.indexed is False  # the index is unreachable here, so the change waits in the outbox
    with sql_service.db.session() as session:
        entry = session.exec(select(Entry)).one()
        version = session.exec(select(EntryVersion)).one()
        event = session.exec(select(OutboxEvent)).one()
        proposal = session.get(Proposal, pid)
        assert proposal is not None and proposal.status == ProposalStatus.APPROVED
    assert (entry.title, entry.current_version, entry.owner, entry.tags) == (DRAFT.title, 1, "alice", ["ci", "disk"])
    assert entry.review_after is not None
    assert (version.version, version.proposed_by, version.approved_by, version.body) == (1, "alice", "bob", DRAFT.body)
    assert (event.entry_id, event.version, event.op, event.applied_at) == (entry.id, 1, OutboxOp.UPSERT, None)
    assert event.attempts == 1 and "Cannot reach the search index" in (event.last_error or "")
    assert event.next_attempt_at is not None
    actions = [a.action for a in sql_service.show_entry(entry.id or 0).audit]
    assert actions == ["proposal.submitted", "proposal.approved"]


def test_decided_proposal_cannot_be_decided_again(sql_service: KnowledgeService) -> None:
    pid = _propose(sql_service)
    sql_service.approve(pid, by="bob", sync=False)
    with pytest.raises(AlreadyDecided) as again:
        sql_service.approve(pid, by="carol", sync=False)
    assert again.value.decided_by == "bob" and again.value.outcome == "approved"
    assert "bob" in str(again.value)
    with pytest.raises(AlreadyDecided):
        sql_service.reject(pid, by="carol", reason="too late")
    assert _count(sql_service, Decision) == 1
    assert _count(sql_service, EntryVersion) == 1


def test_rejected_proposal_creates_nothing_and_needs_a_reason(sql_service: KnowledgeService) -> None:
    pid = _propose(sql_service)
    with pytest.raises(BadInput, match="why"):
        sql_service.reject(pid, by="bob", reason="   ")
    decision = sql_service.reject(pid, by="bob", reason="duplicate of #3")
    assert decision.reason == "duplicate of #3"
    assert _count(sql_service, Entry) == 0
    with pytest.raises(AlreadyDecided, match="rejected by bob"):
        sql_service.approve(pid, by="carol", sync=False)


def test_author_cannot_approve_own_proposal_and_the_attempt_is_audited(sql_service: KnowledgeService) -> None:
    pid = _propose(sql_service, by="alice")
    with pytest.raises(NotAllowed, match="someone else"):
        sql_service.approve(pid, by="alice", sync=False)
    assert _count(sql_service, Entry) == 0
    assert _count(sql_service, AuditLog, col(AuditLog.action) == "proposal.approve_refused") == 1
    assert sql_service.show_proposal(pid).proposal.status == ProposalStatus.PENDING


def test_self_approval_when_configured(sql_service: KnowledgeService) -> None:
    sql_service.settings.allow_self_approval = True
    pid = _propose(sql_service, by="alice")
    sql_service.approve(pid, by="alice", sync=False)
    assert _count(sql_service, Entry) == 1


def test_update_made_against_an_old_version_cannot_overwrite_a_newer_one(sql_service: KnowledgeService) -> None:
    entry_id = sql_service.approve(_propose(sql_service), by="bob", sync=False).result.entry.id
    first = _propose(sql_service, by="carol", kind=ProposalKind.UPDATE, entry_id=entry_id,
                     draft=Draft(title=DRAFT.title, body=DRAFT.body + "\nAlso clear /tmp."))
    second = _propose(sql_service, by="dave", kind=ProposalKind.UPDATE, entry_id=entry_id,
                      draft=Draft(title=DRAFT.title, body=DRAFT.body + "\nReboot the runner."))
    sql_service.approve(first, by="bob", sync=False)

    with pytest.raises(StaleProposal, match="version 2"):
        sql_service.approve(second, by="bob", sync=False)
    detail = sql_service.show_entry(entry_id or 0)
    assert detail.entry.current_version == 2
    assert "clear /tmp" in detail.versions[-1].body
    assert sql_service.show_proposal(second).proposal.status == ProposalStatus.PENDING

    sql_service.edit(second, Draft(title=DRAFT.title, body=DRAFT.body + "\nAlso clear /tmp.\nReboot."),
                     by="dave", rebase=True)
    sql_service.approve(second, by="bob", sync=False)
    detail = sql_service.show_entry(entry_id or 0)
    assert [v.version for v in detail.versions] == [1, 2, 3]
    assert [v.proposed_by for v in detail.versions] == ["alice", "carol", "dave"]


def test_edit_keeps_the_previous_draft_as_a_revision(sql_service: KnowledgeService) -> None:
    pid = _propose(sql_service)
    sql_service.edit(pid, Draft(title="Runner disk full", body="Prune images."), by="bob")
    detail = sql_service.show_proposal(pid)
    assert (detail.proposal.title, detail.proposal.revision) == ("Runner disk full", 2)
    assert [(r.revision, r.title, r.edited_by) for r in detail.revisions] == [(1, DRAFT.title, "bob")]
    with pytest.raises(StaleProposal, match="edited"):
        sql_service.approve(pid, by="carol", sync=False, expected_revision=1)
    sql_service.approve(pid, by="carol", sync=False, expected_revision=2)
    with pytest.raises(AlreadyDecided):
        sql_service.edit(pid, Draft(title="x", body="y"), by="bob")
    with sql_service.db.session() as session:
        assert session.exec(select(func.count()).select_from(ProposalRevision)).one() == 1


def test_withdraw_only_by_the_proposer(sql_service: KnowledgeService) -> None:
    pid = _propose(sql_service, by="alice")
    with pytest.raises(NotAllowed, match="alice"):
        sql_service.withdraw(pid, by="mallory")
    sql_service.withdraw(pid, by="alice")
    with pytest.raises(AlreadyDecided, match="withdrawn"):
        sql_service.approve(pid, by="bob", sync=False)


def test_deprecation_marks_the_entry_and_queues_its_removal(sql_service: KnowledgeService) -> None:
    entry_id = sql_service.approve(_propose(sql_service), by="bob", sync=False).result.entry.id
    pid = _propose(sql_service, by="carol", kind=ProposalKind.DEPRECATE, entry_id=entry_id,
                   draft=Draft(title=DRAFT.title, body="Runners are ephemeral now."))
    sql_service.approve(pid, by="bob", sync=False)
    detail = sql_service.show_entry(entry_id or 0)
    assert detail.entry.status == EntryStatus.DEPRECATED and detail.entry.current_version == 1
    with sql_service.db.session() as session:
        ops = [e.op for e in session.exec(select(OutboxEvent).order_by(col(OutboxEvent.id)))]
    assert ops == [OutboxOp.UPSERT, OutboxOp.DELETE]
    with pytest.raises(BadInput, match="deprecated"):
        _propose(sql_service, kind=ProposalKind.UPDATE, entry_id=entry_id)


@pytest.mark.parametrize(
    ("draft", "message"),
    [
        (Draft(title="", body="text"), "title"),
        (Draft(title="t", body="  "), "body"),
        (Draft(title="x" * 301, body="b"), "300"),
        (Draft(title="t", body="b" * 100_001), "split"),
    ],
)
def test_bad_drafts_are_refused_with_a_reason(sql_service: KnowledgeService, draft: Draft, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        sql_service.propose(draft, proposer="alice")
    assert _count(sql_service, Proposal) == 0


def test_unknown_ids_say_so(sql_service: KnowledgeService) -> None:
    with pytest.raises(NotFound, match="#404"):
        sql_service.approve(404, by="bob")
    with pytest.raises(NotFound, match="#405"):
        sql_service.show_entry(405)


def test_concurrent_approvals_give_exactly_one_decision(sql_service: KnowledgeService) -> None:
    pid = _propose(sql_service)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def click(approver: str) -> None:
        barrier.wait()
        try:
            sql_service.approve(pid, by=approver, sync=False)
            outcomes.append("approved")
        except AlreadyDecided:
            outcomes.append("already")

    threads = [threading.Thread(target=click, args=(f"approver{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["already", "already", "already", "approved"]
    assert _count(sql_service, Decision) == 1
    assert _count(sql_service, EntryVersion) == 1
    assert _count(sql_service, OutboxEvent) == 1


def test_lifecycle_functions_refuse_without_the_service(sql_service: KnowledgeService) -> None:
    """The lifecycle module is usable on its own session (the CLI and handlers share it)."""
    with sql_service.db.session() as session:
        proposal = lifecycle.submit_proposal(session=session, draft=DRAFT, proposer="alice")
        result = lifecycle.approve(session=session, proposal_id=proposal.id or 0, by="bob")
        assert result.version is not None and result.version.version == 1


def test_secrets_in_a_proposal_are_redacted_before_they_are_stored(sql_service: KnowledgeService) -> None:
    secret = "Tr0ub4dor&3xyz"
    token = "xoxb-" + "1234567890-0987654321-" + "AbCdEfGhIjKlMnOpQrStUvWx"
    draft = Draft(title="DB failover", body=f"Connect as admin; the admin password is {secret}.\nBot token {token}")
    pid = _propose(sql_service, draft=draft)
    stored = sql_service.show_proposal(pid).proposal
    assert secret not in stored.body and token not in stored.body
    assert "the admin password is [REDACTED:password]" in stored.body and "[REDACTED:slack_token]" in stored.body
    assert stored.review_notes == ["Redacted before storing: password, slack token. Check nothing else leaked."]
    with sql_service.db.session() as session:
        assert all(secret not in str(a.detail) for a in session.exec(select(AuditLog)))


def test_work_running_at_shutdown_cannot_reconnect_the_index(sql_service: KnowledgeService,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A lazy answer still running when the bot stops must not start a second embedded Weaviate (an orphan)."""
    connected: list[object] = []

    class StubIndex:
        def close(self) -> None:
            connected.append("closed")

    def connect() -> StubIndex:
        connected.append("connected")
        return StubIndex()

    monkeypatch.setattr(sql_service, "_connect_index", connect)
    assert isinstance(sql_service.index, StubIndex)
    sql_service.close()
    with pytest.raises(IndexUnavailable, match="shutting down"):
        _ = sql_service.index
    assert connected == ["connected", "closed"]


def test_closing_with_the_index_server_gone_still_releases_the_database(sql_service: KnowledgeService,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bot stopping after its embedded Weaviate died: closing the client raises, the database must close anyway."""
    disposed: list[bool] = []

    class DeadServerIndex:
        def server_gone(self) -> bool:
            return False

        def close(self) -> None:
            raise WeaviateClosedClientError()

    monkeypatch.setattr(sql_service, "_index", DeadServerIndex())
    monkeypatch.setattr(sql_service.db, "dispose", lambda: disposed.append(True))
    sql_service.close()
    assert disposed == [True]
    with pytest.raises(IndexUnavailable, match="shutting down"):
        _ = sql_service.index


def test_an_import_spreads_its_entries_review_dates_over_the_interval(sql_service: KnowledgeService,
                                                                      tmp_path: Path) -> None:
    # Approved together, they would all come due on one day: 90 reminders in the approval channel at once.
    folder = tmp_path / "runbooks"
    folder.mkdir()
    for n in range(90):
        (folder / f"runbook-{n}.md").write_text(f"# Runbook {n}\n\nRestart service number {n} and watch its logs.\n")
    started = utcnow()
    assert sql_service.import_paths([folder], approved_by="alice", sync=False).created == 90
    interval = timedelta(days=sql_service.settings.review_interval_days)
    with sql_service.db.session() as session:
        due = [aware_utc(e.review_after) for e in session.exec(select(Entry)) if e.review_after is not None]
    assert len(due) == 90
    assert all(started < when <= utcnow() + interval for when in due)
    per_day = Counter(when.date() for when in due)
    assert max(per_day.values()) <= 5, per_day.most_common(3)
    assert max(due) - min(due) > interval * 0.8

    # Unchanged on a re-import; and an entry approved by hand is due a whole interval later, as before.
    sql_service.import_paths([folder], approved_by="alice", sync=False)
    with sql_service.db.session() as session:
        assert sorted(aware_utc(e.review_after) for e in session.exec(select(Entry)) if e.review_after) == sorted(due)
    by_hand = sql_service.approve(_propose(sql_service), by="bob").result.entry
    assert by_hand.review_after is not None
    assert abs(aware_utc(by_hand.review_after) - (utcnow() + interval)) < timedelta(minutes=1)

