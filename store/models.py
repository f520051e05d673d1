"""SQLModel tables: the single source of truth. Only ``store.lifecycle`` writes state changes."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, Text, UniqueConstraint
from sqlalchemy import Enum as SAEnum
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware_utc(moment: datetime) -> datetime:
    """``moment`` with its time zone: SQLite hands back naive datetimes, and everything is stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ts(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow if not nullable else None,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index),
    )


def _enum(enum_cls: type[StrEnum], default: StrEnum, *, index: bool = False) -> Any:
    """Stored as its value in a VARCHAR (not a native enum), so new values need no ALTER TYPE."""
    column_type = SAEnum(
        enum_cls, native_enum=False, create_constraint=False, length=20,
        values_callable=lambda members: [member.value for member in members],
    )
    return Field(default=default, sa_column=Column(column_type, nullable=False, index=index))


class EntryStatus(StrEnum):
    ACTIVE = "active"
    DEPRECATED = "deprecated"


class ProposalKind(StrEnum):
    NEW = "new"
    UPDATE = "update"
    DEPRECATE = "deprecate"


class ProposalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Origin(StrEnum):
    COMMAND = "command"
    THREAD = "thread"
    IMPORT = "import"
    GAP = "gap"


class OutboxOp(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"
    VECTORIZE = "vectorize"  # the entry is searchable by keyword already; its vectors are still to be computed


class TaskStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Entry(SQLModel, table=True):
    __tablename__ = "entries"

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(sa_column=Column(Text, nullable=False))
    current_version: int = 1
    owner: str
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    language: str = "en"
    source_ref: str | None = Field(default=None, unique=True, index=True)
    review_after: datetime | None = _ts(nullable=True, index=True)
    review_interval_days: int | None = None  # this entry's own interval; else by tag, else the default
    review_notified_at: datetime | None = _ts(nullable=True)  # when the owner was last asked to re-verify
    status: EntryStatus = _enum(EntryStatus, EntryStatus.ACTIVE, index=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class EntryVersion(SQLModel, table=True):
    """Immutable history: one row per approved version of an entry."""

    __tablename__ = "entry_versions"
    __table_args__ = (UniqueConstraint("entry_id", "version", name="uq_entry_version"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="entries.id", index=True)
    version: int
    title: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    language: str = "en"
    content_hash: str
    proposal_id: int | None = Field(default=None, foreign_key="proposals.id")
    proposed_by: str
    approved_by: str
    approved_at: datetime = _ts()
    change_note: str = ""


class Proposal(SQLModel, table=True):
    __tablename__ = "proposals"

    id: int | None = Field(default=None, primary_key=True)
    kind: ProposalKind = _enum(ProposalKind, ProposalKind.NEW)
    entry_id: int | None = Field(default=None, foreign_key="entries.id", index=True)
    base_version: int | None = None
    title: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    language: str = "en"
    source_ref: str | None = None
    proposer: str = Field(index=True)
    origin: Origin = _enum(Origin, Origin.COMMAND)
    origin_ref: str | None = None
    change_note: str = ""
    review_notes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    review: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # the Reviewer's
    card_channel: str | None = None
    card_ts: str | None = None
    status: ProposalStatus = _enum(ProposalStatus, ProposalStatus.PENDING, index=True)
    revision: int = 1
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ProposalRevision(SQLModel, table=True):
    """Each edit of a pending proposal keeps the draft it replaced."""

    __tablename__ = "proposal_revisions"
    __table_args__ = (UniqueConstraint("proposal_id", "revision", name="uq_proposal_revision"),)

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposals.id", index=True)
    revision: int
    title: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    edited_by: str
    edited_at: datetime = _ts()


class Decision(SQLModel, table=True):
    """At most one decision per proposal: the unique key is what makes double clicks harmless."""

    __tablename__ = "decisions"

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposals.id", unique=True)
    outcome: ProposalStatus = _enum(ProposalStatus, ProposalStatus.APPROVED)
    decided_by: str
    decided_at: datetime = _ts()
    reason: str = ""
    resulting_version: int | None = None


class AuditLog(SQLModel, table=True):
    """Append-only: one row per state change or refused attempt."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    actor: str
    action: str = Field(index=True)
    subject_type: str
    subject_id: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Task(SQLModel, table=True):
    """One row per command run: what was asked, the plan, each step, and how it ended."""

    __tablename__ = "tasks"

    id: str = Field(primary_key=True, max_length=32)
    role: str = Field(index=True)
    command: str
    actor: str
    input: str = Field(sa_column=Column(Text, nullable=False))
    plan: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    steps: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: TaskStatus = _enum(TaskStatus, TaskStatus.RUNNING)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    started_at: datetime = _ts(index=True)
    finished_at: datetime | None = _ts(nullable=True)
    duration_ms: float | None = None


class OutboxEvent(SQLModel, table=True):
    """What the index still has to learn. Applied by ``store.outbox``; a failure stays here with its error."""

    __tablename__ = "index_outbox"
    __table_args__ = (Index("ix_outbox_pending", "applied_at", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="entries.id", index=True)
    version: int
    op: OutboxOp = _enum(OutboxOp, OutboxOp.UPSERT)
    created_at: datetime = _ts()
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    next_attempt_at: datetime | None = _ts(nullable=True)
    applied_at: datetime | None = _ts(nullable=True)


class EmbeddingCache(SQLModel, table=True):
    """Vectors keyed by model and content hash, so no text is embedded twice."""

    __tablename__ = "embedding_cache"

    key: str = Field(primary_key=True, max_length=80)
    dim: int
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Feedback(SQLModel, table=True):
    """Helpful / not helpful on an answer, one vote per user per task (a second click changes the vote)."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("task_id", "user", name="uq_feedback_task_user"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(foreign_key="tasks.id", index=True, max_length=32)
    user: str
    helpful: bool
    entry_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    at: datetime = _ts()


class SchedulerLease(SQLModel, table=True):
    """Leader election among replicas: the holder runs the scheduled jobs until its lease expires."""

    __tablename__ = "scheduler_leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    expires_at: datetime = _ts()


class JobMark(SQLModel, table=True):
    """A scheduled job's "done once" marks (a digest for a day, a reminder for a due date): idempotent jobs."""

    __tablename__ = "job_marks"
    __table_args__ = (UniqueConstraint("job", "key", name="uq_job_mark"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=64)
    key: str = Field(max_length=200)
    at: datetime = _ts()


class ChannelMode(StrEnum):
    OFF = "off"
    ANSWER = "answer"  # answer questions asked in the channel, when grounded and confident
    ALERT = "alert"  # reply to alerts with their runbook
    BOTH = "both"


class ChannelSetting(SQLModel, table=True):
    """A channel's mode, set at run time with `/kb channel`; channels without a row use the settings' defaults."""

    __tablename__ = "channel_settings"

    channel: str = Field(primary_key=True, max_length=32)
    mode: ChannelMode = _enum(ChannelMode, ChannelMode.OFF)
    set_by: str
    set_at: datetime = _ts()


class SlackEvent(SQLModel, table=True):
    """Events API deliveries already handled: Slack retries an event until acknowledged, same ``event_id``."""

    __tablename__ = "slack_events"

    event_id: str = Field(primary_key=True, max_length=64)
    received_at: datetime = _ts(index=True)


class BotThread(SQLModel, table=True):
    """A thread the bot answered in: follow-ups there are answered with its earlier questions as context."""

    __tablename__ = "bot_threads"
    __table_args__ = (Index("ix_bot_threads_thread", "channel", "thread_ts"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    thread_ts: str = Field(max_length=32)
    task_id: str = Field(foreign_key="tasks.id", max_length=32)
    kind: str = Field(default="answer", max_length=16)  # answer | alert
    fingerprint: str | None = Field(default=None, max_length=64, index=True)  # alerts: the same alert re-firing
    at: datetime = _ts()


class CaptureDraft(SQLModel, table=True):
    """A Curator draft of a thread captured by reaction, waiting for the reactor to preview and submit it."""

    __tablename__ = "capture_drafts"

    id: int | None = Field(default=None, primary_key=True)
    user: str = Field(index=True)
    title: str = Field(sa_column=Column(Text, nullable=False))
    body: str = Field(sa_column=Column(Text, nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    language: str = "en"
    channel: str = ""
    thread_ts: str = ""
    permalink: str = ""
    notes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    proposal_id: int | None = Field(default=None, foreign_key="proposals.id")
    created_at: datetime = _ts()
