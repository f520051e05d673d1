"""Sentry, when SENTRY_DSN is set: events carry the task id, and secrets are scrubbed from every value."""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.integrations.anthropic import AnthropicIntegration

from bot.config import Settings
from bot.redaction import scrub
from bot.tasks import current_task_id, current_task_labels


def _before_send(event: Any, _hint: Any) -> Any:
    """Tags from the running task (id, role, command); and secrets inside strings are scrubbed, since Sentry's
    own scrubber hides secret-looking keys only."""
    labels = dict(current_task_labels.get())
    task_id = current_task_id.get()
    if task_id:
        labels["task_id"] = task_id
    if labels:
        event.setdefault("tags", {}).update(labels)
    return scrub(event)


def init_sentry(settings: Settings, *, release: str = "kb-bot") -> bool:
    if settings.sentry_dsn is None:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        release=release,
        # Prompts hold runbook and thread text: the Anthropic integration (which records them when PII is on)
        # stays off, and PII collection stays at the SDK's default (off).
        disabled_integrations=[AnthropicIntegration()],
        include_local_variables=False,
        before_send=_before_send,
        before_send_transaction=_before_send,
        traces_sample_rate=0.0,
    )
    return True
