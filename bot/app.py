"""The composition root: build the Bolt app, wire the service in, register every handler module once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.config import Settings
from bot.lazy_work import AcksFirstExecutor
from bot.metrics import Timer
from bot.scheduler import KbScheduler
from bot.services import KnowledgeService
from handlers import answers, capture, channel, commands, home, proposals, verification
from handlers.errors import SlackApiGate, global_error_handler
from handlers.notify import SlackNotifier

LAZY_WORKERS = 8  # answers, proposals, cards: the embedder and Claude are the bottleneck, not threads
HANDLER_MODULES = (commands, proposals, answers, capture, home, verification, channel)
log = logging.getLogger(__name__)


def web_client(settings: Settings) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    base_url = settings.slack_api_url or WebClient.BASE_URL
    return WebClient(token=token, base_url=base_url if base_url.endswith("/") else base_url + "/")


def create_app(settings: Settings, service: KnowledgeService, *, client: WebClient | None = None,
               lazy_executor: Executor | None = None) -> App:
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    app = App(
        client=client or web_client(settings),
        signing_secret=signing_secret,
        # Socket Mode needs no signature; HTTP mode verifies every request (Bolt's RequestVerification).
        request_verification_enabled=signing_secret is not None,
        token_verification_enabled=False,
        raise_error_for_unhandled_request=False,
        before_authorize=SlackApiGate(),
        logger=logging.getLogger("slack_bolt"),
        # Every listener is an ack function that returns at once (inline, in the request's thread) plus lazy
        # listeners for the work. Bolt's other mode runs ack functions on a thread of their own and polls for
        # the ack every 10 ms: 13.6 ms per ack instead of 3.4 (benchmarks/speed.py), and under a burst (an
        # incident: 50 people at once) acks used to queue behind answers on the one executor.
        process_before_response=True,
        # Lazy work waits for a burst's acks (bot/lazy_work.py).
        listener_executor=lazy_executor or AcksFirstExecutor(
            ThreadPoolExecutor(max_workers=LAZY_WORKERS, thread_name_prefix="kb-work")),
    )

    @app.middleware
    def provide_service(context: BoltContext, next: Callable[[], Any]) -> Any:
        """The service for every listener, and the time until Slack's request is acknowledged (the chain
        returns once the ack function has; lazy work goes on afterwards)."""
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
