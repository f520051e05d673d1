"""The running app over HTTP (Starlette + uvicorn, as in production), a loopback Slack Web API, real stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from bot.app import create_app
from bot.config import Settings
from bot.http import create_http_app
from bot.services import KnowledgeService
from bot.wiring import build_service
from store.weaviate_conn import WeaviateTarget
from tests.conftest import free_port, make_settings
from tests.fakes.slack_api import FakeSlackApi

SECRET = "test-signing-secret"
APPROVAL_CHANNEL = "CAPPROVALS"
APPROVERS = ("UAPPROVER1", "UAPPROVER2")


@dataclass
class RunningApp:
    url: str
    fake: FakeSlackApi
    service: KnowledgeService
    settings: Settings


@pytest.fixture
def fake_slack() -> Iterator[FakeSlackApi]:
    with FakeSlackApi() as fake:
        yield fake


def serve(settings: Settings, fake: FakeSlackApi, *, lazy_executor: Executor | None = None) -> Iterator[RunningApp]:
    service = build_service(settings)
    http_app = create_http_app(create_app(settings, service, lazy_executor=lazy_executor), service)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(http_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield RunningApp(f"http://127.0.0.1:{port}", fake, service, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.close()


def app_settings(tmp_path: Path, database_url: str, target: WeaviateTarget, fake: FakeSlackApi,
                 **overrides: object) -> Settings:
    values: dict[str, object] = {
        "slack_signing_secret": SECRET, "slack_bot_token": "xoxb-test", "slack_api_url": fake.api_url,
        "approval_channel": APPROVAL_CHANNEL, "approvers": ",".join(APPROVERS), **overrides}
    return make_settings(tmp_path, database_url, target, **values)


@pytest.fixture
def running(tmp_path: Path, weaviate_target: WeaviateTarget, fake_slack: FakeSlackApi) -> Iterator[RunningApp]:
    """SQLite; the PostgreSQL runs are in the tests that are about the database (duplicate clicks)."""
    settings = app_settings(tmp_path, f"sqlite:///{tmp_path / 'kb.sqlite3'}", weaviate_target, fake_slack)
    yield from serve(settings, fake_slack)
