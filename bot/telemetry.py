"""Sentry, when SENTRY_DSN is set: events carry the task id, and secrets are scrubbed from every value."""

from __future__ import annotations

from typing import Any

import sentry_sdk

from bot.config import Settings
from bot.redaction import scrub
from bot.tasks import current_task_id


def _before_send(event: Any, _hint: Any) -> Any:
    """Sentry's own scrubber hides secret-looking keys only; secrets inside strings are scrubbed here."""
    task_id = current_task_id.get()
    if task_id:
        event.setdefault("tags", {})["task_id"] = task_id
    return scrub(event)


def init_sentry(settings: Settings, *, release: str = "kb-bot") -> bool:
    if settings.sentry_dsn is None:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        release=release,
        # PII collection stays at the SDK's default (off): no prompts from its Anthropic integration.
        include_local_variables=False,
        before_send=_before_send,
        before_send_transaction=_before_send,
        traces_sample_rate=0.0,
    )
    return True
