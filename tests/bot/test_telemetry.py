"""Sentry events reach a loopback DSN with the task id, and without the secrets in them."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.integrations.anthropic import AnthropicIntegration

from bot.config import Settings
from bot.retrieval import EntryHit
from bot.roles.answerer import claude_answer
from bot.roles.llm import Claude, LlmUnavailable
from bot.roles.registry import ROLES
from bot.tasks import current_task_id, run_task
from bot.telemetry import init_sentry
from store.db import Database, migrate
from tests.fakes.anthropic_api import FakeAnthropic

TOKEN = "xoxb-" + "2468013579-1357924680-" + "ZyXwVuTsRqPoNmLkJiHgFeDc"


@pytest.fixture
def sentry_server() -> Iterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://publickey@127.0.0.1:{server.server_address[1]}/42", received
    server.shutdown()
    server.server_close()


def test_event_is_scrubbed_and_tagged(sentry_server: tuple[str, list[bytes]]) -> None:
    dsn, received = sentry_server
    assert init_sentry(Settings(sentry_dsn=dsn))  # type: ignore[call-arg]
    token = current_task_id.set("task123abc")
    try:
        sentry_sdk.set_extra("request", {"text": f"deploy with {TOKEN}", "password": "hunter2hunter2"})
        sentry_sdk.capture_exception(RuntimeError(f"Slack refused token {TOKEN}; the admin password is S3cr3t!x9"))
        sentry_sdk.flush(timeout=10)
    finally:
        current_task_id.reset(token)
        sentry_sdk.get_client().close()
    envelope = b"".join(received).decode("utf-8", "replace")
    assert "RuntimeError" in envelope and "task123abc" in envelope
    assert TOKEN not in envelope and "S3cr3t!x9" not in envelope and "hunter2hunter2" not in envelope
    assert "[REDACTED:slack_token]" in envelope


def test_no_dsn_no_sentry() -> None:
    assert init_sentry(Settings(sentry_dsn=None)) is False  # type: ignore[call-arg]



def test_claude_failures_reach_sentry_tagged_and_without_the_prompt(
        sentry_server: tuple[str, list[bytes]], tmp_path: Path) -> None:
    """A wrong API key is logged as an error, which Sentry's logging integration sends: with the task's id, role
    and command, and without the question, the passages or the key. The Anthropic integration stays off."""
    dsn, received = sentry_server
    question = "why does the checkout-canary pod restart every 7 minutes"
    passage = EntryHit(entry_id=1, version=1, source_ref="", title="Canary restarts", score=1.0, snippet="",
                       passage="The checkout-canary liveness probe is too strict.", heading_path="",
                       language="en", similarity=0.95)
    url = f"sqlite:///{tmp_path / 'kb.sqlite3'}"
    migrate(url)
    db = Database(url)
    with FakeAnthropic(api_key="sk-ant-the-right-key") as fake:
        settings = Settings(sentry_dsn=dsn, anthropic_api_key="sk-ant-wrong-key-0123456789abcdef",  # type: ignore[call-arg]
                            anthropic_base_url=fake.base_url, llm_max_retries=0)
        assert init_sentry(settings)
        claude = Claude(settings)
        try:
            assert sentry_sdk.get_client().get_integration(AnthropicIntegration) is None
            with run_task(db, role="answerer", command="ask", actor="U1", input=question, plan=["answer"]) as task, \
                    pytest.raises(LlmUnavailable):
                claude_answer(claude, ROLES["answerer"], question, [passage], record={})
            sentry_sdk.flush(timeout=10)
        finally:
            claude.close()
            sentry_sdk.get_client().close()
            db.dispose()
        assert len(fake.message_requests()) == 1  # it did try, with the wrong key
    envelope = b"".join(received).decode("utf-8", "replace")
    assert "Claude unavailable after retries: AuthenticationError 401" in envelope
    assert task.id in envelope and '"role":"answerer"' in envelope and '"command":"ask"' in envelope
    assert question not in envelope and "liveness probe" not in envelope and "sk-ant-wrong" not in envelope


def test_serve_logs_are_json_lines_with_the_task_id(tmp_path: Path) -> None:
    import json
    import logging

    from bot import logs

    log_file = tmp_path / "kb.log"
    logs.configure("json", path=log_file, level="INFO")
    url = f"sqlite:///{tmp_path / 'kb.sqlite3'}"
    migrate(url)
    db = Database(url)
    try:
        with run_task(db, role="answerer", command="ask", actor="U1", input="q", plan=["answer"]) as task:
            logging.getLogger("kb.test").warning("inside the task")
            logging.getLogger("httpx").info("HTTP Request: GET http://localhost:8079/v1/aliases/KbChunks")
        logging.getLogger("kb.test").warning("outside any task")
    finally:
        logs.configure("text", level="WARNING")
        db.dispose()
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    mine = [line for line in lines if line["logger"] == "kb.test"]
    assert [(line["message"], line["task_id"], line["level"]) for line in mine] == [
        ("inside the task", task.id, "WARNING"), ("outside any task", "-", "WARNING")]
    assert not [line for line in lines if line["logger"] == "httpx"]  # a line per Weaviate call is noise at INFO


def test_socket_mode_serves_metrics_on_its_own_port() -> None:
    import httpx

    from bot.metrics import Metrics, serve_metrics
    from tests.conftest import free_port

    metrics = Metrics()
    metrics.answered(grounded=True, degraded=False)
    port = free_port()
    serve_metrics(metrics, port, host="127.0.0.1")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'kb_answers_total{outcome="cited"} 1.0' in text
