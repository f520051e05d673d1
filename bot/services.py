"""The service layer: what the CLI and the Slack handlers call. It knows nothing of either."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, cast, func
from sqlmodel import col, select
from weaviate.exceptions import WeaviateBaseError

from bot.channel import ChannelOutcome, RunbookMatch, key_steps
from bot.config import Settings
from bot.home import CitationDetail, HomeSummary, citation_details, home_summary
from bot.importer import read_documents
from bot.metrics import Metrics, Timer
from bot.redaction import redact, redact_text
from bot.retrieval import Confidence, EntryHit, Retriever
from bot.roles import curator, reviewer
from bot.roles.answerer import (
    Answer,
    Citation,
    RefusalPolicy,
    TextListener,
    claude_answer,
    dont_know,
    extractive_answer,
    name_terms,
)
from bot.roles.curator import Curated, Source
from bot.roles.llm import Claude, LlmUnavailable
from bot.roles.registry import ROLES, role_for
from bot.roles.reviewer import Candidate, DraftUnderReview, Review
from bot.tasks import TaskRun, run_task
from store import activity, lifecycle, presence
from store.db import Database
from store.embeddings import Embedder
from store.errors import BadInput, IndexUnavailable, KbError, NotAllowed, NotFound
from store.index import KnowledgeIndex
from store.indexing import DriftReport, EntryIndexer, SyncReport, pending_outbox, record_outbox_attempt
from store.lifecycle import ApprovalResult, Draft
from store.models import (
    AuditLog,
    CaptureDraft,
    ChannelMode,
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
    Task,
    TaskStatus,
    aware_utc,
    utcnow,
)
from store.text import content_hash

if TYPE_CHECKING:
    from bot.alerts import Alert
    from bot.search_workers import SearchWorkers

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
    keyword_ready_seconds: float | None = None  # from the start until every entry was searchable by keyword
    hybrid_ready_seconds: float | None = None  # ... until every chunk had its vector
    vectorized: int = 0  # entries of those indexed whose vectors were computed after the keyword pass


@dataclass
class EntryDetail:
    entry: Entry
    versions: list[EntryVersion]
    proposals: list[Proposal]
    audit: list[AuditLog]

    @property
    def current(self) -> EntryVersion | None:
        """The entry's current version (None only for an entry whose versions are missing)."""
        return next((v for v in self.versions if v.version == self.entry.current_version), None)


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
                 embedder: Embedder, connect_index: Any = None, claude: Claude | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.db = db
        self.metrics = metrics or Metrics(db)
        self.embedder = embedder
        self.claude = claude  # None: every role runs its deterministic fallback
        self._index = index
        self._connect_index = connect_index
        self._index_lock = threading.Lock()  # one connection (and one embedded server start) at a time
        self._closed = False
        self.search_workers: SearchWorkers | None = None  # `kb serve` searches in worker processes

    def _run_task(self, **kwargs: Any) -> AbstractContextManager[TaskRun]:
        return run_task(self.db, on_finish=self.metrics.task_finished, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> KnowledgeService:
        """One shared service per process: Bolt copies the context for lazy listeners, and this must not be."""
        return self

    # --- the derived index, connected on first use --------------------------------------------------
    @property
    def index(self) -> KnowledgeIndex:
        index = self._index
        if index is not None and not index.server_gone():
            return index
        with self._index_lock:
            if self._index is not None and self._index.server_gone():
                log.warning("The embedded Weaviate this process shared has stopped; connecting again (starting one)")
                self._drop_index()
            if self._index is None:
                if self._closed:  # work still running at shutdown must not start a new embedded server
                    raise IndexUnavailable("The bot is shutting down; try again in a moment.")
                if self._connect_index is None:
                    raise IndexUnavailable("No search index is configured.")
                self._index = self._connect_index()
            return self._index

    def _drop_index(self) -> None:
        index, self._index = self._index, None
        if index is not None:
            with suppress(WeaviateBaseError, OSError):  # its server may be gone already
                index.close()

    @property
    def indexer(self) -> EntryIndexer:
        return EntryIndexer(db=self.db, index=self.index, embedder=self.embedder,
                            chunk_max_chars=self.settings.chunk_max_chars,
                            embed_max_chars=self.settings.embed_max_chars)

    @property
    def retriever(self) -> Retriever:
        return Retriever(index=self.index, embedder=self.embedder, alpha=self.settings.search_alpha)

    def close(self) -> None:
        self._closed = True
        with ExitStack() as closing:  # each runs even if one before it raised (a server already gone, say)
            closing.callback(self.db.dispose)
            closing.callback(self._drop_index)
            if self.claude is not None:
                closing.callback(self.claude.close)

    # --- reading ------------------------------------------------------------------------------------
    def search(self, query: str, *, k: int = 5, actor: str = "cli") -> list[EntryHit]:
        query = _clean_query(query)
        if not 1 <= k <= 50:
            raise BadInput("-k must be between 1 and 50.")
        with self._run_task(role="searcher", command="search", actor=actor, input=query,
                      plan=["retrieve"]) as task:
            with task.step("retrieve") as step:
                hits = self._retrieve(query, k=k)
                step["entries"] = [h.entry_id for h in hits]
            return hits

    def ask(self, question: str, *, actor: str = "cli", on_text: TextListener | None = None,
            history: Sequence[tuple[str, str]] = (), thread: tuple[str, str] | None = None, command: str = "ask",
            strict: bool = False, judge: Callable[[Answer], dict[str, Any]] | None = None
            ) -> tuple[Answer, str]:
        """An answer only from approved entries, with citations, or "I don't know". Returns it and the task id.
        With Claude, ``on_text`` receives the growing answer while it is written (once it cites something).
        ``history`` holds a thread's earlier questions and answers: the follow-up is retrieved and answered in
        their light. ``thread`` (channel, ts) records where the answer went, for follow-ups there. ``strict``
        raises the confidence an answer needs (answers nobody asked for). ``judge`` adds what the caller decided
        about the answer to the task's result."""
        question = _clean_query(question)
        role = ROLES["answerer"]
        with self._run_task(role=role.name, command=command, actor=actor, input=question,
                            plan=["retrieve", "answer"]) as task:
            policy = self.refusal_policy(strict=strict)
            with task.step("retrieve") as step:
                query = " ".join([*(q for q, _ in history[-2:]), question])
                hits, best = self._retrieve_with_confidence(query, k=max(5, role.passages(self.settings)))
                unknown = self.index.unknown_terms(name_terms(question)) if policy.needs_terms(best) else []
                step["entries"] = [[h.entry_id, h.version, round(h.relevance, 4)] for h in hits]
                step.update(confidence=round(best.value, 4), centred=best.centred, unknown_terms=unknown)
                if history:
                    step["context_turns"] = len(history)
            with task.step("answer") as step:
                answer = self._answer(question, hits, step, on_text, history=history, policy=policy, best=best,
                                      unknown=unknown)
                self._observe_llm(role.name, step)
            self.metrics.answered(grounded=answer.grounded, degraded=answer.degraded)
            task.result = {"grounded": answer.grounded, "mode": answer.mode, "language": answer.language,
                           "degraded": answer.degraded, "answer": answer.text,
                           "citations": [[c.entry_id, c.version] for c in answer.citations],
                           **{k: step[k] for k in ("model", "input_tokens", "output_tokens") if k in step}}
            if judge is not None:
                task.result.update(judge(answer))
            if thread is not None:
                task.result.update(channel=thread[0], thread_ts=thread[1])
                with self.db.session() as session:
                    presence.record_thread(session, channel=thread[0], thread_ts=thread[1], task_id=task.id)
            return answer, task.id

    def thread_history(self, channel: str, thread_ts: str) -> list[tuple[str, str]]:
        """The questions the bot answered in a thread, with its grounded answers, oldest first."""
        with self.db.session() as session:
            tasks = presence.thread_tasks(session, channel=channel, thread_ts=thread_ts)
        return [(t.input, str(t.result.get("answer", ""))) for t in tasks
                if t.role == "answerer" and t.result.get("grounded")]

    def refusal_policy(self, *, strict: bool = False) -> RefusalPolicy:
        """When to say "I don't know"; ``strict`` (unasked-for answers in a channel) demands a margin more."""
        margin = self.settings.auto_answer_margin if strict else 0.0
        return RefusalPolicy(
            min_relevance=self.settings.answer_min_relevance + margin,
            min_relevance_unknown=self.settings.answer_min_relevance_unknown_term + margin,
            min_similarity=self.settings.auto_answer_min_similarity if strict else self.settings.answer_min_similarity)

    def _retrieve(self, query: str, *, k: int) -> list[EntryHit]:
        return self._retrieve_with_confidence(query, k=k)[0]

    def _retrieve_with_confidence(self, query: str, *, k: int) -> tuple[list[EntryHit], Confidence]:
        timer = Timer()
        hits, best = self._search_in_worker(query, k=k) or self.retriever.search_with_confidence(query, k=k)
        self.metrics.retrieval_seconds.observe(timer.seconds)
        return hits, best

    def _search_in_worker(self, query: str, *, k: int) -> tuple[list[EntryHit], Confidence] | None:
        """The search run by a worker process; None (search here) without workers or when they fail: the
        embedded server not started yet, a worker killed. Searching here is as right, only harder on acks."""
        if self.search_workers is None:
            return None
        try:
            return self.search_workers.search_with_confidence(query, k=k)
        except Exception as exc:  # any failure there: the search here gives the answer or the error
            log.warning("search worker failed, searching in the bot's process: %s: %s", type(exc).__name__, exc)
            return None

    def _observe_llm(self, role: str, step: dict[str, Any]) -> None:
        if "llm_ms" in step:
            self.metrics.llm_call(role, step)

    def _answer(self, question: str, hits: list[EntryHit], step: dict[str, Any], on_text: TextListener | None, *,
                history: Sequence[tuple[str, str]], policy: RefusalPolicy, best: Confidence, unknown: list[str]
                ) -> Answer:
        if policy.refuse(hits, best, unknown):
            step["mode"] = "refused: weak retrieval"
            refusal = dont_know(question, hits)
            refusal.confidence, refusal.unknown_terms = best.value, list(unknown)
            return refusal
        if self.claude is not None:
            try:
                answer = claude_answer(self.claude, ROLES["answerer"], question, hits, record=step, on_text=on_text,
                                       history=history)
                step["mode"] = "claude" if answer.grounded else "refused: no citation"
                return answer
            except LlmUnavailable:
                step["mode"] = "extractive (fallback)"
                return extractive_answer(question, hits, policy=policy, best=best, unknown_terms=unknown,
                                         degraded=True)
        step["mode"] = "extractive"
        return extractive_answer(question, hits, policy=policy, best=best, unknown_terms=unknown)

    @contextmanager
    def task(self, command: str, *, actor: str, input: str) -> Iterator[TaskRun]:
        """A task for a command that has no plan of its own beyond doing one thing (show, pending, trace)."""
        role = role_for(command)
        with self._run_task(role=role.name, command=command, actor=actor, input=input, plan=[command]) as task, \
                task.step(command):
            yield task

    def knowledge_gaps(self, *, limit: int = 50, since: datetime | None = None) -> list[Task]:
        """Questions the bot could not answer from approved entries, newest first."""
        with self.db.session() as session:
            query = select(Task).where(Task.role == "answerer", Task.status == TaskStatus.SUCCEEDED)
            if since is not None:
                query = query.where(col(Task.started_at) >= since)
            asked = session.exec(query.order_by(col(Task.started_at).desc()).limit(limit * 5))
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
    def draft(self, source: Source, *, actor: str) -> Curated:
        """The Curator's draft of a thread or note, for the proposer to preview; nothing is stored but the task."""
        source = redact_source(source)
        role = ROLES["curator"]
        with self._run_task(role=role.name, command="draft", actor=actor, input=source.transcript(),
                      plan=["redact", "draft"]) as task, task.step("draft") as step:
            curated = curator.curate(self.claude, role, source, record=step)
            self._observe_llm(role.name, step)
            curated.draft, kinds = redact_draft(curated.draft)
            if kinds:
                curated.notes.insert(0, redaction_note(kinds))
            task.result = {"mode": curated.mode, "degraded": curated.degraded, "title": curated.draft.title}
            return curated

    def propose_note(self, source: Source, *, proposer: str, origin: Origin = Origin.COMMAND,
                     origin_ref: str | None = None) -> Proposal:
        """``/kb propose``: the Curator drafts, the draft is stored as a proposal, and the Reviewer checks it."""
        curated = self.draft(source, actor=proposer)
        return self.propose(curated.draft, proposer=proposer, origin=origin, origin_ref=origin_ref,
                            notes=curated.notes)

    def propose(self, draft: Draft, *, proposer: str, origin: Origin = Origin.COMMAND,
                origin_ref: str | None = None, kind: ProposalKind = ProposalKind.NEW,
                entry_id: int | None = None, notes: list[str] | None = None, review: bool = True) -> Proposal:
        """Store a proposal; the Reviewer annotates it before any card is posted (``review=False`` leaves that
        to a later ``review_proposal``, for callers that must answer Slack first)."""
        draft, kinds = redact_draft(draft)
        with self._run_task(role="curator", command="propose", actor=proposer, input=draft.title,
                      plan=["redact", "store"]) as task, task.step("store"), self.db.session() as session:
            proposal = lifecycle.submit_proposal(session=session, draft=draft, proposer=proposer, origin=origin,
                                                 origin_ref=origin_ref, kind=kind, entry_id=entry_id)
            proposal.review_notes = ([redaction_note(kinds)] if kinds else []) + list(notes or [])
            session.add(proposal)
            session.flush()
            task.result = {"proposal_id": proposal.id}
        if review:
            self.review_proposal(proposal.id or 0)
            return self.show_proposal(proposal.id or 0).proposal
        return proposal

    def review_proposal(self, proposal_id: int) -> Review:
        """The Reviewer's findings on a pending proposal, stored on it for the approval card."""
        role = ROLES["reviewer"]
        current = self.show_proposal(proposal_id).proposal
        if current.status != ProposalStatus.PENDING:
            raise BadInput(f"Proposal #{proposal_id} is {current.status.value}; only pending proposals are reviewed.")
        under_review = DraftUnderReview(title=current.title, body=current.body, kind=current.kind.value,
                                        entry_id=current.entry_id)
        with self._run_task(role=role.name, command="review", actor="kb-reviewer",
                      input=f"proposal #{proposal_id} revision {current.revision}",
                      plan=["candidates", "review", "annotate"]) as task:
            with task.step("candidates") as step:
                candidates = self._candidates(under_review, limit=role.max_passages, record=step)
            with task.step("review") as step:
                found = reviewer.review(self.claude, role, under_review, candidates, record=step,
                                        duplicate_min_similarity=self.settings.duplicate_min_similarity)
                self._observe_llm(role.name, step)
            with task.step("annotate"), self.db.session() as session:
                row = session.get(Proposal, proposal_id)
                if row is not None and row.revision == current.revision:
                    row.review = {**found.as_json(), "task_id": task.id, "revision": current.revision,
                                  "notes": found.notes()}
                    session.add(row)
            task.result = found.as_json()
            return found

    def _candidates(self, draft: DraftUnderReview, *, limit: int, record: dict[str, Any]) -> list[Candidate]:
        """Approved entries nearest the draft, by the cosine of the draft (embedded like an indexed chunk) and
        each entry's nearest chunk. The index being down leaves the review to its rules, not the proposal lost."""
        text = f"{draft.title}\n{draft.body}"[: self.settings.embed_max_chars]
        try:
            vector = self.embedder.embed_passages([text])[0]
            hits = self.index.vector_search(vector, limit=limit * 6)
        except KbError as exc:
            record["error"] = str(exc)
            return []
        best: dict[int, Candidate] = {}
        for hit in hits:
            if hit.entry_id not in best:
                best[hit.entry_id] = Candidate(hit.entry_id, hit.version, hit.title, hit.similarity or 0.0, hit.text)
        return list(best.values())[:limit]

    def edit(self, proposal_id: int, draft: Draft, *, by: str, rebase: bool = False, review: bool = True
             ) -> Proposal:
        """A new revision of a pending proposal; the Reviewer looks at the new text again."""
        draft, _ = redact_draft(draft)
        with self.db.session() as session:
            edited = lifecycle.edit_proposal(session=session, proposal_id=proposal_id, by=by, draft=draft,
                                             rebase=rebase)
        if review:
            self.review_proposal(proposal_id)
            return self.show_proposal(proposal_id).proposal
        return edited

    def approve(self, proposal_id: int, *, by: str, sync: bool = True, expected_revision: int | None = None
                ) -> Decided:
        with self._run_task(role="approver", command="approve", actor=by, input=f"proposal #{proposal_id}",
                      plan=["decide", "index"]) as task:
            try:
                with task.step("decide"), self.db.session() as session:
                    result = lifecycle.approve(
                        session=session, proposal_id=proposal_id, by=by, expected_revision=expected_revision,
                        allow_self_approval=self.settings.allow_self_approval,
                        review_interval_days=self.settings.review_interval_days,
                        review_interval_by_tag=self.settings.review_interval_by_tag,
                    )
            except NotAllowed as exc:
                self._audit_refusal(by, "proposal.approve_refused", proposal_id, str(exc))
                raise
            task.result = {"entry_id": result.entry.id, "version": result.decision.resulting_version}
            self.metrics.approval_lead.observe(
                (aware_utc(result.decision.decided_at) - aware_utc(result.proposal.created_at)).total_seconds())
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
        with self._run_task(role="approver", command="reject", actor=by, input=f"proposal #{proposal_id}",
                      plan=["decide"]) as task, task.step("decide"), self.db.session() as session:
            return lifecycle.reject(session=session, proposal_id=proposal_id, by=by, reason=reason,
                                    expected_revision=expected_revision)

    def withdraw(self, proposal_id: int, *, by: str) -> Proposal:
        with self.db.session() as session:
            return lifecycle.withdraw(session=session, proposal_id=proposal_id, by=by)

    # --- around the knowledge: feedback, approval cards, the home view ---------------------------------
    def record_feedback(self, task_id: str, *, user: str, helpful: bool) -> list[int]:
        """Record a vote; returns the entries whose review it brought forward (repeated "not helpful")."""
        with self.db.session() as session:
            vote = activity.record_feedback(session=session, task_id=task_id, user=user, helpful=helpful)
            forward = [] if helpful else activity.review_if_unhelpful(
                session=session, entry_ids=vote.entry_ids, threshold=self.settings.not_helpful_review_threshold)
        self.metrics.feedback.labels("true" if helpful else "false").inc()
        return forward

    # --- in channels: modes, auto-answers, runbooks on alerts, capture by reaction ------------------------
    def channel_mode(self, channel: str) -> ChannelMode:
        with self.db.session() as session:
            return presence.channel_mode(session, channel, answer_channels=self.settings.answer_channel_ids,
                                         alert_channels=self.settings.alert_channel_ids)

    def set_channel_mode(self, channel: str, mode: ChannelMode, *, by: str) -> None:
        with self.db.session() as session:
            presence.set_channel_mode(session, channel=channel, mode=mode, by=by)

    def channel_modes(self) -> dict[str, ChannelMode]:
        """Every channel with a mode other than off: the settings' defaults, overridden by `/kb channel`."""
        modes = {c: self.channel_mode(c) for c in self.settings.answer_channel_ids | self.settings.alert_channel_ids}
        with self.db.session() as session:
            modes.update({s.channel: s.mode for s in presence.channel_settings(session)})
        return {c: m for c, m in sorted(modes.items()) if m != ChannelMode.OFF}

    def first_delivery(self, event_id: str) -> bool:
        with self.db.session() as session:
            return presence.first_delivery(session, event_id)

    def answer_in_channel(self, question: str, *, channel: str, ts: str, user: str) -> ChannelOutcome:
        """An unasked-for answer to a channel question: only when grounded, confident and within the channel's
        hourly budget. Every reply and skip is a task and a metric, per channel."""
        hour_ago = utcnow() - timedelta(hours=1)
        with self.db.session() as session:
            slot = presence.reserve_auto_answer(session, channel=channel, budget=self.settings.auto_answers_per_hour,
                                                since=hour_ago)
        if slot is None:
            outcome = ChannelOutcome("skip", "rate limited")
            with self._run_task(role="answerer", command="channel_answer", actor=user, input=question,
                                plan=["budget"]) as task:
                task.result = {"channel": channel, "action": "skip", "reason": outcome.reason}
                outcome.task_id = task.id
        else:
            def judge(answer: Answer) -> dict[str, Any]:
                # An unconfident answer is no knowledge gap: nobody asked the bot.
                return {"channel": channel, "action": "reply", "reason": "grounded"} if answer.grounded else \
                    {"channel": channel, "action": "skip", "reason": "not confident or not cited", "grounded": None}

            try:
                answer, task_id = self.ask(question, actor=user, command="channel_answer", judge=judge, strict=True)
                verdict = judge(answer)
                outcome = ChannelOutcome(verdict["action"], verdict["reason"], task_id=task_id, answer=answer)
                if answer.grounded:
                    with self.db.session() as session:
                        presence.record_thread(session, channel=channel, thread_ts=ts, task_id=task_id,
                                               kind="auto")
            finally:
                with self.db.session() as session:
                    presence.release_auto_answer(session, slot)
        self.metrics.channel_events.labels(channel, f"answer_{outcome.action}").inc()
        return outcome

    def runbook_for_alert(self, alert: Alert) -> RunbookMatch | None:
        """The approved runbook of an alert: an entry titled with the alert's name (or tagged ``alert:<name>``),
        else the best search hit if retrieval is confident."""
        name = alert.name.strip()
        with self.db.session() as session:
            active = select(Entry).where(Entry.status == EntryStatus.ACTIVE)
            titled = list(session.exec(active.where(func.lower(Entry.title) == name.lower())))
            entry, how = (titled[0] if titled else None), "title"
            if len(titled) > 1:  # several runbooks share the title: the one search ranks first for the alert
                ranks = {h.entry_id: n for n, h in enumerate(self._retrieve(alert.search_text, k=20))}
                entry = min(titled, key=lambda e: ranks.get(e.id or 0, len(ranks)))
            if entry is None:
                alias = json.dumps(f"alert:{name}".lower())
                entry = session.exec(active.where(func.lower(cast(Entry.tags, String)).contains(alias))).first()
                how = "alias"
        if entry is not None:
            detail = self.show_entry(entry.id or 0)
            body = detail.current.body if detail.current else ""
            return RunbookMatch(entry.id or 0, entry.current_version, entry.title, how,  # type: ignore[arg-type]
                                key_steps(body, query=alert.search_text), entry.source_ref)
        hits = self._retrieve(alert.search_text, k=3)
        if hits and hits[0].similarity >= self.settings.auto_answer_min_similarity:
            top = hits[0]
            body = next(v.body for v in self.show_entry(top.entry_id).versions if v.version == top.version)
            steps = key_steps(body, query=alert.search_text)
            return RunbookMatch(top.entry_id, top.version, top.title, "search", steps, top.source_ref or None)
        return None

    def respond_to_alert(self, alert: Alert, *, channel: str, ts: str) -> ChannelOutcome:
        """An alert's runbook for its thread, or silence: a resolved notice, a repeat within the window, or no
        approved runbook (then the alert is a knowledge gap)."""
        question = f"Alert {alert.name} " + " ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
        with self._run_task(role="answerer", command="alert", actor=f"alert:{alert.source}", input=question,
                            plan=["dedupe", "match"]) as task:
            since = utcnow() - timedelta(minutes=self.settings.alert_repeat_minutes)
            with task.step("dedupe") as step, self.db.session() as session:
                repeat = presence.alert_answered_since(session, channel=channel, fingerprint=alert.fingerprint,
                                                       since=since)
                step.update(status_seen=alert.status, repeat=repeat)
            outcome = ChannelOutcome("skip", "", task_id=task.id, labels=dict(alert.labels))
            if alert.status == "resolved":
                outcome.reason = "resolved"
            elif repeat:
                outcome.reason = "repeat within the window"
            else:
                with task.step("match") as step:
                    outcome.runbook = self.runbook_for_alert(alert)
                    step["match"] = [outcome.runbook.entry_id, outcome.runbook.version, outcome.runbook.how] \
                        if outcome.runbook else None
                outcome.action, outcome.reason = ("reply", "runbook found") if outcome.runbook else \
                    ("skip", "no approved runbook")
                with self.db.session() as session:
                    presence.record_thread(session, channel=channel, thread_ts=ts, task_id=task.id,
                                           kind="alert", fingerprint=alert.fingerprint)
            task.result = {"channel": channel, "alert": alert.name, "action": outcome.action,
                           "reason": outcome.reason,
                           "grounded": bool(outcome.runbook) if outcome.reason in ("runbook found",
                                                                                   "no approved runbook") else None,
                           "citations": [[outcome.runbook.entry_id, outcome.runbook.version]]
                           if outcome.runbook else []}
        self.metrics.channel_events.labels(channel, f"alert_{outcome.action}").inc()
        return outcome

    def capture(self, source: Source, *, user: str, channel: str, thread_ts: str, permalink: str) -> CaptureDraft:
        """A thread captured by reaction: the Curator's draft, kept for the reactor to preview and submit."""
        curated = self.draft(source, actor=user)
        with self.db.session() as session:
            draft = CaptureDraft(user=user, title=curated.draft.title, body=curated.draft.body,
                                 tags=curated.draft.tags, language=curated.draft.language or "en", channel=channel,
                                 thread_ts=thread_ts, permalink=permalink, notes=curated.notes)
            session.add(draft)
            session.flush()
            return draft

    def capture_draft(self, draft_id: int, *, user: str) -> CaptureDraft:
        with self.db.session() as session:
            return presence.get_capture(session, draft_id, user=user)

    def submit_capture(self, draft_id: int, *, by: str) -> Proposal:
        with self.db.session() as session:
            draft = presence.get_capture(session, draft_id, user=by)
            if draft.proposal_id is not None:
                raise BadInput(f"This draft was already submitted as proposal #{draft.proposal_id}.")
            values = Draft(title=draft.title, body=draft.body, tags=list(draft.tags), language=draft.language)
            notes, permalink = list(draft.notes), draft.permalink
        proposal = self.propose(values, proposer=by, origin=Origin.THREAD, origin_ref=permalink or None,
                                notes=notes, review=False)
        with self.db.session() as session:
            row = session.get(CaptureDraft, draft_id)
            if row is not None:
                row.proposal_id = proposal.id
                session.add(row)
        return proposal

    # --- keeping knowledge true: re-verification --------------------------------------------------------
    def due_for_review(self) -> list[EntryDetail]:
        """Entries past their review date whose owner has not been asked yet, with their current text."""
        with self.db.session() as session:
            ids = [e.id or 0 for e in lifecycle.due_for_review(session)]
        return [self.show_entry(entry_id) for entry_id in ids]

    def mark_review_requested(self, entry_id: int) -> None:
        with self.db.session() as session:
            lifecycle.mark_review_requested(session, entry_id)

    def set_review_interval(self, entry_id: int, days: int | None, *, by: str) -> Entry:
        with self.db.session() as session:
            return lifecycle.set_review_interval(session, entry_id=entry_id, days=days, by=by)

    def reverify(self, entry_id: int, *, by: str) -> Entry:
        with self._run_task(role="librarian", command="reverify", actor=by, input=f"entry #{entry_id}",
                            plan=["reverify"]) as task, task.step("reverify"), self.db.session() as session:
            entry = lifecycle.get_entry(session, entry_id)
            days = lifecycle.review_interval(entry, default_days=self.settings.review_interval_days,
                                             by_tag=self.settings.review_interval_by_tag)
            return lifecycle.reverify(session, entry_id=entry_id, by=by, days=days)

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
        timer = Timer()
        documents = list(read_documents(paths))
        with self._run_task(role="librarian", command="import", actor=approved_by or proposer,
                      input=" ".join(map(str, paths)), plan=["read", "store", "index"]) as task:
            with task.step("store", documents=len(documents)):
                for document in documents:
                    try:
                        self._import_one(document, approved_by=approved_by, proposer=proposer, report=report)
                    except BadInput as exc:  # one bad document must not stop the others
                        report.failed.append(f"{document.source_ref}: {exc}")
            if approved_by and sync:
                # Keyword-first: every entry is searchable by BM25 within seconds (vectors from the cache
                # only), then the missing vectors are computed and the entries become fully hybrid.
                with task.step("index_keyword") as step:
                    report.sync = self._sync_all(embed=False)
                    report.keyword_ready_seconds = step["seconds"] = round(timer.seconds, 2)
                with task.step("index_vectors") as step:
                    vectors = self.fill_vectors()
                    step["applied"] = report.vectorized = vectors.applied  # the same entries, written again
                    report.sync.errors += vectors.errors
                    self._settle_index()
                    report.hybrid_ready_seconds = step["seconds"] = round(timer.seconds, 2)
            task.result = {"created": report.created, "updated": report.updated,
                           "unchanged": report.unchanged, "proposed": report.proposed,
                           "failed": report.failed, "keyword_ready_seconds": report.keyword_ready_seconds,
                           "hybrid_ready_seconds": report.hybrid_ready_seconds}
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
                              allow_self_approval=True, review_interval_days=self.settings.review_interval_days,
                              review_interval_by_tag=self.settings.review_interval_by_tag, stagger_review=True)
            if kind == ProposalKind.NEW:
                report.created += 1
            else:
                report.updated += 1

    # --- the index ----------------------------------------------------------------------------------
    def sync_outbox(self, *, embed: bool = True) -> SyncReport:
        return self.indexer.sync_outbox(embed=embed)

    def _sync_all(self, *, embed: bool) -> SyncReport:
        """Apply the outbox until nothing due is left (one pass takes at most 1,000 events)."""
        total = SyncReport()
        while True:
            report = self.sync_outbox_safely(embed=embed)
            total.applied += report.applied
            total.failed += report.failed
            total.errors += report.errors
            total.vectors_pending += report.vectors_pending
            waiting = [e for e in pending_outbox(self.db, due_only=True) if embed or e.op != OutboxOp.VECTORIZE]
            if report.errors or not report.applied or not waiting:
                return total

    def fill_vectors(self) -> SyncReport:
        """Apply the outbox, vectorize events included, until no entry waits for its vectors (or the index
        refuses)."""
        return self._sync_all(embed=True)

    def sync_outbox_safely(self, *, embed: bool = True) -> SyncReport:
        """Apply the outbox now if the index is reachable; if not, the events wait for the next sync."""
        try:
            return self.sync_outbox(embed=embed)
        except KbError as exc:
            log.warning("index not updated yet: %s", exc)
            due = pending_outbox(self.db, due_only=True)
            record_outbox_attempt(self.db, due, error=str(exc))
            return SyncReport(failed=len(due), errors=[str(exc)])

    def pending_outbox(self) -> list[OutboxEvent]:
        return pending_outbox(self.db)

    def reindex(self) -> int:
        with self._run_task(role="librarian", command="reindex", actor="cli", input="",
                      plan=["rebuild"]) as task, task.step("rebuild") as step:
            step["chunks"] = self.indexer.rebuild()
            self._settle_index()
            return int(step["chunks"])

    def _settle_index(self) -> None:
        """Weaviate 1.35's BM25 (BlockMax-WAND) misses postings still in a memtable (weaviate#11780); the
        server flushes them two seconds after a write. After a bulk write, wait that out before answering."""
        time.sleep(self.settings.index_settle_seconds)

    def reconcile(self, *, actor: str = "kb-scheduler") -> DriftReport:
        """Compare the index with the SQL store (entry id, version, content hash) and repair what drifted.
        Anything searchable that is not approved is removed at once and reported as an error (to Sentry)."""
        with self._run_task(role="scheduler", command="reconcile", actor=actor, input="",
                            plan=["compare", "repair"]) as task:
            with task.step("compare") as step:
                report = self.indexer.drift()
                step.update(report.as_dict())
            for kind in ("missing", "stale", "unapproved"):
                self.metrics.index_drift.labels(kind).set(len(getattr(report, kind)))
            if report.unapproved:
                log.error("unapproved entries were searchable and are removed now: %s", report.unapproved)
            if not report.clean:
                with task.step("repair"):
                    self.indexer.repair(report)
                log.warning("reconcile repaired drift: %s", report.as_dict())
            task.result = report.as_dict()
            return report

    def approval_backlog(self, *, older_than: timedelta) -> list[Proposal]:
        cutoff = utcnow() - older_than
        return [p for p in self.list_proposals(status=ProposalStatus.PENDING, limit=500)
                if aware_utc(p.created_at) <= cutoff]

    def doctor(self, *, repair: bool = False) -> DriftReport:
        indexer = self.indexer
        report = indexer.drift()
        if repair and not report.clean:
            indexer.repair(report)
            self._settle_index()
        return report


def redact_draft(draft: Draft) -> tuple[Draft, list[str]]:
    """Secrets never get past here: not into the store, the approval card, the index or a prompt."""
    title, body = redact(draft.title), redact(draft.body)
    kinds = sorted(set(title.kinds()) | set(body.kinds()))
    return replace(draft, title=title.text, body=body.text), kinds


def redact_source(source: Source) -> Source:
    """A thread or note with its secrets redacted, before the Curator or anyone else reads it."""
    return replace(source, messages=tuple(replace(m, text=redact_text(m.text)) for m in source.messages),
                   title_hint=redact_text(source.title_hint))


def redaction_note(kinds: list[str]) -> str:
    return f"Redacted before storing: {', '.join(k.replace('_', ' ') for k in kinds)}. Check nothing else leaked."


def _clean_query(text: str) -> str:
    text = redact_text(" ".join(text.split()))
    if not text:
        raise BadInput("Ask something: the question is empty.")
    if len(text) > MAX_QUERY_CHARS:
        raise BadInput(f"The question is {len(text):,} characters; keep it under {MAX_QUERY_CHARS:,}.")
    return text
