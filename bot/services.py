"""The service layer: what the CLI and the Slack handlers call. It knows nothing of either."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from bot.config import Settings
from bot.home import CitationDetail, HomeSummary, citation_details, home_summary
from bot.importer import read_documents
from bot.redaction import redact, redact_text
from bot.retrieval import EntryHit, Retriever
from bot.roles.answerer import Answer, Citation, RefusalPolicy, extractive_answer, name_terms
from bot.tasks import run_task
from store import activity, lifecycle
from store.db import Database
from store.embeddings import Embedder
from store.errors import BadInput, IndexUnavailable, KbError, NotAllowed, NotFound
from store.index import KnowledgeIndex
from store.indexing import DriftReport, EntryIndexer, SyncReport, pending_outbox, record_outbox_attempt
from store.lifecycle import ApprovalResult, Draft
from store.models import (
    AuditLog,
    Decision,
    Entry,
    EntryStatus,
    EntryVersion,
    Origin,
    OutboxEvent,
    Proposal,
    ProposalKind,
    ProposalRevision,
    ProposalStatus,
    Task,
    TaskStatus,
)
from store.text import content_hash

log = logging.getLogger(__name__)
IMPORT_ACTOR = "kb-import"
MAX_QUERY_CHARS = 2000


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    proposed: int = 0
    failed: list[str] = field(default_factory=list)
    sync: SyncReport | None = None


@dataclass
class EntryDetail:
    entry: Entry
    versions: list[EntryVersion]
    proposals: list[Proposal]
    audit: list[AuditLog]


@dataclass
class ProposalDetail:
    proposal: Proposal
    revisions: list[ProposalRevision]
    decision: Decision | None


@dataclass
class Decided:
    """The outcome of an approval, and whether the index has caught up with it yet."""

    result: ApprovalResult
    indexed: bool
    index_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class KnowledgeService:
    def __init__(self, *, settings: Settings, db: Database, index: KnowledgeIndex | None,
                 embedder: Embedder, connect_index: Any = None) -> None:
        self.settings = settings
        self.db = db
        self.embedder = embedder
        self._index = index
        self._connect_index = connect_index

    def __deepcopy__(self, memo: dict[int, Any]) -> KnowledgeService:
        """One shared service per process: Bolt copies the context for lazy listeners, and this must not be."""
        return self

    # --- the derived index, connected on first use --------------------------------------------------
    @property
    def index(self) -> KnowledgeIndex:
        if self._index is None:
            if self._connect_index is None:
                raise IndexUnavailable("No search index is configured.")
            self._index = self._connect_index()
        return self._index

    @property
    def indexer(self) -> EntryIndexer:
        return EntryIndexer(db=self.db, index=self.index, embedder=self.embedder,
                            chunk_max_chars=self.settings.chunk_max_chars,
                            embed_max_chars=self.settings.embed_max_chars)

    @property
    def retriever(self) -> Retriever:
        return Retriever(index=self.index, embedder=self.embedder, alpha=self.settings.search_alpha)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
        self.db.dispose()

    # --- reading ------------------------------------------------------------------------------------
    def search(self, query: str, *, k: int = 5, actor: str = "cli") -> list[EntryHit]:
        query = _clean_query(query)
        if not 1 <= k <= 50:
            raise BadInput("-k must be between 1 and 50.")
        with run_task(self.db, role="searcher", command="search", actor=actor, input=query,
                      plan=["retrieve"]) as task:
            with task.step("retrieve") as step:
                hits = self.retriever.search(query, k=k)
                step["entries"] = [h.entry_id for h in hits]
            return hits

    def ask(self, question: str, *, actor: str = "cli") -> tuple[Answer, str]:
        """An answer only from approved entries, with citations, or "I don't know". Returns it and the task id."""
        question = _clean_query(question)
        with run_task(self.db, role="answerer", command="ask", actor=actor, input=question,
                      plan=["retrieve", "answer"]) as task:
            policy = RefusalPolicy(min_relevance=self.settings.answer_min_relevance,
                                   min_relevance_unknown=self.settings.answer_min_relevance_unknown_term,
                                   min_similarity=self.settings.answer_min_similarity)
            with task.step("retrieve") as step:
                hits, best = self.retriever.search_with_confidence(question, k=5)
                unknown = self.index.unknown_terms(name_terms(question)) if policy.needs_terms(best) else []
                step["entries"] = [[h.entry_id, h.version, round(h.relevance, 4)] for h in hits]
                step["confidence"], step["centred"], step["unknown_terms"] = round(best.value, 4), best.centred, unknown
            with task.step("answer", mode="extractive"):
                answer = extractive_answer(question, hits, policy=policy, best=best, unknown_terms=unknown)
            task.result = {"grounded": answer.grounded, "mode": answer.mode, "language": answer.language,
                           "degraded": answer.degraded, "answer": answer.text,
                           "citations": [[c.entry_id, c.version] for c in answer.citations]}
            return answer, task.id

    def knowledge_gaps(self, *, limit: int = 50) -> list[Task]:
        """Questions the bot could not answer from approved entries, newest first."""
        with self.db.session() as session:
            asked = session.exec(select(Task).where(Task.role == "answerer", Task.status == TaskStatus.SUCCEEDED)
                                 .order_by(col(Task.started_at).desc()).limit(limit * 5))
            return [t for t in asked if t.result.get("grounded") is False][:limit]

    def list_entries(self, *, status: EntryStatus | None = EntryStatus.ACTIVE, limit: int = 100) -> list[Entry]:
        with self.db.session() as session:
            query = select(Entry).order_by(col(Entry.id)).limit(limit)
            if status is not None:
                query = query.where(Entry.status == status)
            return list(session.exec(query))

    def list_proposals(self, *, status: ProposalStatus | None = ProposalStatus.PENDING, limit: int = 100
                       ) -> list[Proposal]:
        with self.db.session() as session:
            query = select(Proposal).order_by(col(Proposal.id)).limit(limit)
            if status is not None:
                query = query.where(Proposal.status == status)
            return list(session.exec(query))

    def show_entry(self, entry_id: int) -> EntryDetail:
        with self.db.session() as session:
            entry = lifecycle.get_entry(session, entry_id)
            versions = list(session.exec(select(EntryVersion).where(EntryVersion.entry_id == entry_id)
                                         .order_by(col(EntryVersion.version))))
            proposals = list(session.exec(select(Proposal).where(Proposal.entry_id == entry_id)
                                          .order_by(col(Proposal.id))))
            proposal_ids = [v.proposal_id for v in versions if v.proposal_id] + [p.id for p in proposals]
            audit = list(session.exec(
                select(AuditLog).where(
                    ((col(AuditLog.subject_type) == "entry") & (col(AuditLog.subject_id) == entry_id))
                    | ((col(AuditLog.subject_type) == "proposal") & col(AuditLog.subject_id).in_(proposal_ids))
                ).order_by(col(AuditLog.id))
            ))
            return EntryDetail(entry, versions, proposals, audit)

    def show_proposal(self, proposal_id: int) -> ProposalDetail:
        with self.db.session() as session:
            proposal = session.get(Proposal, proposal_id)
            if proposal is None:
                raise NotFound(f"There is no proposal #{proposal_id}.")
            revisions = list(session.exec(select(ProposalRevision)
                                          .where(ProposalRevision.proposal_id == proposal_id)
                                          .order_by(col(ProposalRevision.revision))))
            decision = session.exec(select(Decision).where(Decision.proposal_id == proposal_id)).first()
            return ProposalDetail(proposal, revisions, decision)

    def trace(self, task_id: str) -> Task:
        with self.db.session() as session:
            task = session.get(Task, task_id.strip())
            if task is None:
                raise NotFound(f"There is no task {task_id!r}; task ids are printed with each command's result.")
            return task

    # --- the lifecycle --------------------------------------------------------------------------------
    def propose(self, draft: Draft, *, proposer: str, origin: Origin = Origin.COMMAND,
                origin_ref: str | None = None, kind: ProposalKind = ProposalKind.NEW,
                entry_id: int | None = None) -> Proposal:
        draft, kinds = redact_draft(draft)
        with run_task(self.db, role="curator", command="propose", actor=proposer, input=draft.title,
                      plan=["redact", "validate", "store"]) as task, task.step("store"), self.db.session() as session:
            proposal = lifecycle.submit_proposal(session=session, draft=draft, proposer=proposer, origin=origin,
                                                 origin_ref=origin_ref, kind=kind, entry_id=entry_id)
            if kinds:
                proposal.review_notes = [redaction_note(kinds)]
                session.add(proposal)
            task.result = {"proposal_id": proposal.id}
            return proposal

    def edit(self, proposal_id: int, draft: Draft, *, by: str, rebase: bool = False) -> Proposal:
        draft, _ = redact_draft(draft)
        with self.db.session() as session:
            return lifecycle.edit_proposal(session=session, proposal_id=proposal_id, by=by, draft=draft,
                                           rebase=rebase)

    def approve(self, proposal_id: int, *, by: str, sync: bool = True, expected_revision: int | None = None
                ) -> Decided:
        with run_task(self.db, role="approver", command="approve", actor=by, input=f"proposal #{proposal_id}",
                      plan=["decide", "index"]) as task:
            try:
                with task.step("decide"), self.db.session() as session:
                    result = lifecycle.approve(
                        session=session, proposal_id=proposal_id, by=by, expected_revision=expected_revision,
                        allow_self_approval=self.settings.allow_self_approval,
                        review_interval_days=self.settings.review_interval_days,
                    )
            except NotAllowed as exc:
                self._audit_refusal(by, "proposal.approve_refused", proposal_id, str(exc))
                raise
            task.result = {"entry_id": result.entry.id, "version": result.decision.resulting_version}
            if not sync:
                return Decided(result, indexed=False)
            with task.step("index") as step:
                report = self.sync_outbox_safely()
                step["applied"] = report.applied
            task.result["indexed"] = not report.failed and not report.errors
            return Decided(result, indexed=bool(task.result["indexed"]),
                           index_error=report.errors[0] if report.errors else None)

    def reject(self, proposal_id: int, *, by: str, reason: str, expected_revision: int | None = None
               ) -> Decision:
        with run_task(self.db, role="approver", command="reject", actor=by, input=f"proposal #{proposal_id}",
                      plan=["decide"]) as task, task.step("decide"), self.db.session() as session:
            return lifecycle.reject(session=session, proposal_id=proposal_id, by=by, reason=reason,
                                    expected_revision=expected_revision)

    def withdraw(self, proposal_id: int, *, by: str) -> Proposal:
        with self.db.session() as session:
            return lifecycle.withdraw(session=session, proposal_id=proposal_id, by=by)

    # --- around the knowledge: feedback, approval cards, the home view ---------------------------------
    def record_feedback(self, task_id: str, *, user: str, helpful: bool) -> None:
        with self.db.session() as session:
            activity.record_feedback(session=session, task_id=task_id, user=user, helpful=helpful)

    def record_card(self, proposal_id: int, *, channel: str, ts: str) -> None:
        with self.db.session() as session:
            activity.record_card(session=session, proposal_id=proposal_id, channel=channel, ts=ts)

    def record_refusal(self, actor: str, proposal_id: int, reason: str) -> None:
        self._audit_refusal(actor, "proposal.decide_refused", proposal_id, reason)

    def home(self, *, user: str, is_approver: bool) -> HomeSummary:
        return home_summary(self.db, user=user, is_approver=is_approver)

    def citations(self, answer: Answer) -> list[CitationDetail]:
        return citation_details(self.db, answer.citations)

    def answer_for_task(self, task_id: str) -> Answer:
        """The answer a task gave, as it was given (for sharing it to the channel later)."""
        task = self.trace(task_id)
        if task.role != "answerer" or "answer" not in task.result:
            raise NotFound(f"Task {task_id} is not an answer.")
        with self.db.session() as session:
            citations = [
                Citation(v.entry_id, None, v.title, v.version)
                for entry_id, version in task.result.get("citations", [])
                for v in session.exec(select(EntryVersion).where(EntryVersion.entry_id == entry_id,
                                                                 EntryVersion.version == version))
            ]
        return Answer(text=str(task.result["answer"]), citations=citations, grounded=bool(task.result["grounded"]),
                      language=str(task.result.get("language", "en")), degraded=bool(task.result.get("degraded")))

    def _audit_refusal(self, actor: str, action: str, proposal_id: int, reason: str) -> None:
        with self.db.session() as session:
            lifecycle.audit(session, actor=actor, action=action, subject_type="proposal",
                            subject_id=proposal_id, reason=reason)

    # --- import -------------------------------------------------------------------------------------
    def import_paths(self, paths: list[Path], *, approved_by: str | None, proposer: str = IMPORT_ACTOR,
                     sync: bool = True) -> ImportReport:
        """Import documents; ``approved_by`` makes them approved entries, else pending proposals.
        Re-importing unchanged documents changes nothing; a changed one becomes a new version."""
        report = ImportReport()
        documents = list(read_documents(paths))
        with run_task(self.db, role="librarian", command="import", actor=approved_by or proposer,
                      input=" ".join(map(str, paths)), plan=["read", "store", "index"]) as task:
            with task.step("store", documents=len(documents)):
                for document in documents:
                    try:
                        self._import_one(document, approved_by=approved_by, proposer=proposer, report=report)
                    except BadInput as exc:  # one bad document must not stop the others
                        report.failed.append(f"{document.source_ref}: {exc}")
            if approved_by and sync:
                with task.step("index"):
                    report.sync = self.sync_outbox_safely()
            task.result = {"created": report.created, "updated": report.updated,
                           "unchanged": report.unchanged, "proposed": report.proposed,
                           "failed": report.failed}
        return report

    def _import_one(self, document: Any, *, approved_by: str | None, proposer: str, report: ImportReport
                    ) -> None:
        draft, _ = redact_draft(Draft(title=document.title, body=document.body, tags=document.tags,
                                      language=document.language, source_ref=document.source_ref,
                                      change_note="imported"))
        with self.db.session() as session:
            existing = session.exec(select(Entry).where(Entry.source_ref == document.source_ref)).first()
            kind, entry_id = ProposalKind.NEW, None
            if existing is not None:
                clean = draft.validated()
                current = session.exec(select(EntryVersion).where(
                    EntryVersion.entry_id == existing.id, EntryVersion.version == existing.current_version)).one()
                if current.content_hash == content_hash(clean.title, clean.body, ",".join(clean.tags)):
                    report.unchanged += 1
                    return
                kind, entry_id = ProposalKind.UPDATE, existing.id
            proposal = lifecycle.submit_proposal(session=session, draft=draft, proposer=proposer,
                                                 origin=Origin.IMPORT, origin_ref=document.source_ref,
                                                 kind=kind, entry_id=entry_id)
            if approved_by is None:
                report.proposed += 1
                return
            lifecycle.approve(session=session, proposal_id=proposal.id or 0, by=approved_by,
                              allow_self_approval=True, review_interval_days=self.settings.review_interval_days)
            if kind == ProposalKind.NEW:
                report.created += 1
            else:
                report.updated += 1

    # --- the index ----------------------------------------------------------------------------------
    def sync_outbox(self) -> SyncReport:
        return self.indexer.sync_outbox()

    def sync_outbox_safely(self) -> SyncReport:
        """Apply the outbox now if the index is reachable; if not, the events wait for the next sync."""
        try:
            return self.sync_outbox()
        except KbError as exc:
            log.warning("index not updated yet: %s", exc)
            due = pending_outbox(self.db, due_only=True)
            record_outbox_attempt(self.db, due, error=str(exc))
            return SyncReport(failed=len(due), errors=[str(exc)])

    def pending_outbox(self) -> list[OutboxEvent]:
        return pending_outbox(self.db)

    def reindex(self) -> int:
        with run_task(self.db, role="librarian", command="reindex", actor="cli", input="",
                      plan=["rebuild"]) as task, task.step("rebuild") as step:
            step["chunks"] = self.indexer.rebuild()
            return int(step["chunks"])

    def doctor(self, *, repair: bool = False) -> DriftReport:
        indexer = self.indexer
        report = indexer.drift()
        if repair and not report.clean:
            indexer.repair(report)
        return report


def redact_draft(draft: Draft) -> tuple[Draft, list[str]]:
    """Secrets never get past here: not into the store, the approval card, the index or a prompt."""
    title, body = redact(draft.title), redact(draft.body)
    kinds = sorted(set(title.kinds()) | set(body.kinds()))
    return replace(draft, title=title.text, body=body.text), kinds


def redaction_note(kinds: list[str]) -> str:
    return f"Redacted before storing: {', '.join(k.replace('_', ' ') for k in kinds)}. Check nothing else leaked."


def _clean_query(text: str) -> str:
    text = redact_text(" ".join(text.split()))
    if not text:
        raise BadInput("Ask something: the question is empty.")
    if len(text) > MAX_QUERY_CHARS:
        raise BadInput(f"The question is {len(text):,} characters; keep it under {MAX_QUERY_CHARS:,}.")
    return text
