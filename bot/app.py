"""The composition root: build the Bolt app, wire the service in, register every handler module once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.config import Settings
from bot.metrics import Timer
from bot.scheduler import KbScheduler
from bot.services import KnowledgeService
from handlers import answers, capture, channel, commands, home, proposals, verification
from handlers.errors import global_error_handler
from handlers.notify import SlackNotifier

HANDLER_MODULES = (commands, proposals, answers, capture, home, verification, channel)
log = logging.getLogger(__name__)


def web_client(settings: Settings) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    base_url = settings.slack_api_url or WebClient.BASE_URL
    return WebClient(token=token, base_url=base_url if base_url.endswith("/") else base_url + "/")


def create_app(settings: Settings, service: KnowledgeService, *, client: WebClient | None = None,
               listener_executor: Executor | None = None) -> App:
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    app = App(
        client=client or web_client(settings),
        signing_secret=signing_secret,
        # Socket Mode needs no signature; HTTP mode verifies every request (Bolt's RequestVerification).
        request_verification_enabled=signing_secret is not None,
        token_verification_enabled=False,
        raise_error_for_unhandled_request=False,
        logger=logging.getLogger("slack_bolt"),
        listener_executor=listener_executor,
    )

    @app.middleware
    def provide_service(context: BoltContext, next: Callable[[], Any]) -> Any:
        """The service for every listener, and the time until Slack's request is acknowledged (Bolt returns
        from the chain once ``ack()`` is called; lazy work goes on afterwards)."""
        context["kb"] = service
        timer = Timer()
        try:
            return next()
        finally:
            service.metrics.ack_seconds.observe(timer.seconds)

    app.error(global_error_handler)
    for module in HANDLER_MODULES:
        module.register(app)
    return app


def start_scheduler(settings: Settings, service: KnowledgeService, app: App) -> KbScheduler | None:
    """The scheduled jobs, their messages sent through the app's Slack client (one replica is elected)."""
    if not settings.scheduler_enabled:
        return None
    return KbScheduler(service, SlackNotifier(app.client, settings)).start()
