"""Sentry events reach a loopback DSN with the task id, and without the secrets in them."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk

from bot.config import Settings
from bot.tasks import current_task_id
from bot.telemetry import init_sentry

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
