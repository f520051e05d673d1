"""A loopback fake of the Anthropic Messages API (``POST /v1/messages``), for the real ``anthropic`` SDK.

    with FakeAnthropic() as fake:
        fake.script(Message([text_block("Rotate keys with `kb rotate`.", [search_result_citation(0, "kb://42", ...)])]))
        client = anthropic.Anthropic(api_key=fake.api_key, base_url=fake.base_url)  # or env ANTHROPIC_BASE_URL
        reply = client.messages.create(model="claude-sonnet-4-6", max_tokens=512, messages=[...])
        [request] = fake.message_requests()
        assert request.body["messages"][0]["role"] == "user"

It is a real HTTP server (``http.server.ThreadingHTTPServer``) on 127.0.0.1 and a free port, in a daemon thread.
Every request is recorded as a :class:`ReceivedRequest` (rejected ones too), then answered:

* like the real API, it first checks ``Authorization: Bearer <api_key>`` or ``x-api-key: <api_key>`` (401
  ``authentication_error``), the ``anthropic-version`` header and a JSON body with ``model``, ``max_tokens`` and
  ``messages`` (400 ``invalid_request_error``); other paths get 404 ``not_found_error``. These consume no reply.
* then with the next reply queued by :meth:`FakeAnthropic.script`, else the responder's
  (:meth:`FakeAnthropic.set_responder`), else a 500 ``api_error`` saying nothing was scripted. That one carries
  ``x-should-retry: false`` so the SDK raises at once instead of retrying a test's mistake.

Replies: :class:`Message` (JSON, or Server-Sent Events when the body has ``"stream": true``), :class:`Error`
(the API's error JSON) and :class:`Hang` (sleep first; ends early when the client hangs up or the fake stops).

How the SDK (anthropic 2.x on httpx2) talks, and what the wire format here follows:

* The key goes out as ``Authorization: Bearer <key>`` (not ``x-api-key``), with ``anthropic-version``.
* SSE events must carry an ``event:`` line: the SDK drops events without one and skips ``ping``. The stream is
  ``message_start`` (``usage.input_tokens``), per block ``content_block_start`` / ``content_block_delta``... /
  ``content_block_stop``, then ``message_delta`` (``stop_reason``, cumulative ``usage.output_tokens``) and
  ``message_stop``. The SDK accumulates ``text_delta``, ``citations_delta`` (a cited text block starts with
  ``citations: []``), ``input_json_delta`` (``partial_json`` pieces, parsed as they come), ``thinking_delta``
  and ``signature_delta``.
* ``retry-after-ms`` overrides the SDK's backoff only when it is above 0: ``0`` means the default backoff
  (about 0.5 s, then 1 s), hence :class:`Error`'s default of 1 ms.
* Responses are HTTP/1.0, one request per connection: a stream's body ends when the connection closes, and no
  keep-alive connection holds a handler thread when the fake stops.
"""

from __future__ import annotations

import copy
import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from tests.fakes.loopback import LoopbackServer

DEFAULT_API_KEY = "sk-ant-test-key"
MESSAGES_PATH = "/v1/messages"
#: Characters per ``text_delta`` / ``thinking_delta`` and per ``input_json_delta`` piece when streaming.
CHUNK_CHARS = 20

_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
#: On the fake's own 500s (nothing scripted, responder crashed): the SDK raises at once instead of retrying.
_NO_RETRY = {"x-should-retry": "false"}

_DEFAULT_ERROR_MESSAGES = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of requests has exceeded your per-minute rate limit.",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}


# ---------------------------------------------------------------------- replies and content blocks


@dataclass
class Message:
    """An assistant message: JSON, or the SSE event sequence when the request streams. ``model`` defaults to
    the request's."""

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    input_tokens: int = 100
    output_tokens: int = 50
    model: str | None = None


@dataclass
class Error:
    """The API's error JSON with HTTP ``status``; ``retry_after_ms`` (when not None) becomes ``retry-after-ms``.

    An empty ``message`` is replaced by the real API's usual wording for ``error_type``.
    """

    status: int
    error_type: str
    message: str = ""
    retry_after_ms: int | None = 1


@dataclass
class Hang:
    """Sleep ``seconds`` before answering with ``then``; with ``then=None`` the connection is closed unanswered.

    The sleep ends early, without answering, when the client disconnects (e.g. its timeout fired) or the fake stops.
    """

    seconds: float
    then: Reply | None = None


Reply: TypeAlias = Message | Error | Hang
Responder: TypeAlias = Callable[[dict[str, Any]], Reply]
"""Answers a request the script has no reply for; gets (a copy of) the parsed request body."""


def text_block(text: str, citations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``text`` content block, with ``citations`` when given."""
    block: dict[str, Any] = {"type": "text", "text": text}
    if citations is not None:
        block["citations"] = list(citations)
    return block


def search_result_citation(
    search_result_index: int,
    source: str,
    title: str | None,
    cited_text: str,
    start_block_index: int = 0,
    end_block_index: int = 1,
) -> dict[str, Any]:
    """A ``search_result_location`` citation (of the ``search_result`` block at that index in the request)."""
    return {
        "type": "search_result_location",
        "search_result_index": search_result_index,
        "source": source,
        "title": title,
        "cited_text": cited_text,
        "start_block_index": start_block_index,
        "end_block_index": end_block_index,
    }


def tool_use_block(name: str, input: dict[str, Any], id: str | None = None) -> dict[str, Any]:
    """A ``tool_use`` content block; ``id`` defaults to a fresh ``toolu_...``."""
    return {"type": "tool_use", "id": id or _new_id("toolu_"), "name": name, "input": copy.deepcopy(input)}


def _new_id(prefix: str) -> str:
    return f"{prefix}01{uuid.uuid4().hex[:22]}"


# ---------------------------------------------------------------------- recorded requests


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the fake received. ``headers`` has lower-cased names; ``body`` is the parsed JSON object, or
    ``{}`` (no body, not JSON, or not an object); ``raw`` is the body as sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class _Response:
    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _error_response(
    status: int, error_type: str, message: str = "", headers: dict[str, str] | None = None
) -> _Response:
    error = {"type": error_type, "message": message or _DEFAULT_ERROR_MESSAGES.get(error_type, error_type)}
    return _Response(status, {"type": "error", "error": error}, dict(headers or {}))


# ---------------------------------------------------------------------- the server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins the handler threads: nothing is left running after stop()

    def __init__(self, fake: FakeAnthropic) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection; an SSE body ends when the connection closes

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
            headers = {key.lower(): value for key, value in self.headers.items()}
            reply, body = self.server.fake._answer(self.command, self.path, headers, raw)
            self._send(reply, body)
        except _CLIENT_GONE:
            pass  # the client hung up (its timeout fired, or it closed a stream early)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, up to the blank line
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, reply: Reply | _Response, body: dict[str, Any]) -> None:
        if isinstance(reply, Hang):
            if self._wait(reply.seconds) and reply.then is not None:
                self._send(reply.then, body)
        elif isinstance(reply, Error):
            headers = {} if reply.retry_after_ms is None else {"retry-after-ms": str(reply.retry_after_ms)}
            self._send_json(_error_response(reply.status, reply.error_type, reply.message, headers))
        elif isinstance(reply, Message):
            message = _message_json(reply, body)
            if body.get("stream") is True:
                self._send_stream(_stream_events(message))
            else:
                self._send_json(_Response(200, message))
        else:
            self._send_json(reply)

    def _send_json(self, response: _Response) -> None:
        payload = response.payload
        if payload.get("type") == "error":
            payload = {**payload, "request_id": _new_id("req_")}
        data = json.dumps(payload).encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("request-id", _new_id("req_"))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: Iterator[tuple[str, dict[str, Any]]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("request-id", _new_id("req_"))
        self.end_headers()
        self.wfile.flush()
        for name, data in events:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False when the client disconnected or the fake is stopping first."""
        deadline = time.monotonic() + seconds
        stopping = self.server.fake._stopping
        while (remaining := deadline - time.monotonic()) > 0:
            if stopping.wait(min(remaining, 0.02)) or self._client_gone():
                return False
        return not stopping.is_set()

    def _client_gone(self) -> bool:
        sock: socket.socket = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""  # readable with nothing to read: EOF
        except OSError:
            return True


# ---------------------------------------------------------------------- wire format


def _message_json(reply: Message, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": reply.model or str(body.get("model", "")),
        "content": copy.deepcopy(reply.content),
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        },
    }


def _chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _stream_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The SSE events (name, data) the real API sends for ``message``."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        first, deltas = _block_events(block)
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": first}
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _block_events(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A block's ``content_block_start`` block and its deltas."""
    kind = block.get("type")
    if kind == "text":
        citations = block.get("citations") or []
        first: dict[str, Any] = {"type": "text", "text": ""}
        if citations:
            first["citations"] = []
        deltas = [{"type": "citations_delta", "citation": citation} for citation in citations]
        deltas += [{"type": "text_delta", "text": piece} for piece in _chunks(str(block.get("text", "")))]
        return first, deltas
    if kind in ("tool_use", "server_tool_use"):
        pieces = _chunks(json.dumps(block.get("input", {})))
        return {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    if kind == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in _chunks(str(block.get("thinking", "")))]
        deltas.append({"type": "signature_delta", "signature": str(block.get("signature", ""))})
        return {"type": "thinking", "thinking": "", "signature": ""}, deltas
    return copy.deepcopy(block), []  # e.g. redacted_thinking, server tool results: whole in the start event


# ---------------------------------------------------------------------- the fake


class FakeAnthropic(LoopbackServer):
    """The fake; use as a context manager or call :meth:`start` / :meth:`stop`. All methods are thread-safe."""

    thread_name = "fake-anthropic"

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        self._api_key = api_key
        self._cond = threading.Condition()
        self._requests: list[ReceivedRequest] = []
        self._queue: list[Reply] = []
        self._responder: Responder | None = None
        self._stopping = threading.Event()
        super().__init__()

    # ------------------------------------------------------------------ lifecycle

    def _make_server(self) -> _Server:
        self._stopping.clear()
        return _Server(self)

    def _before_stop(self) -> None:
        """Ends pending :class:`Hang` replies."""
        self._stopping.set()

    @property
    def api_key(self) -> str:
        """The only key the fake accepts."""
        return self._api_key

    def env(self) -> dict[str, str]:
        """``ANTHROPIC_BASE_URL`` and ``ANTHROPIC_API_KEY`` for a client built from the environment (or a child
        process)."""
        return {"ANTHROPIC_BASE_URL": self.base_url, "ANTHROPIC_API_KEY": self._api_key}

    # ------------------------------------------------------------------ recorded requests

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of every request so far (rejected ones too), in arrival order."""
        with self._cond:
            return list(self._requests)

    def message_requests(self) -> list[ReceivedRequest]:
        """The ``POST /v1/messages`` requests so far."""
        with self._cond:
            return [r for r in self._requests if r.method == "POST" and r.path == MESSAGES_PATH]

    def last_request(self) -> ReceivedRequest:
        """The latest request; AssertionError when there is none."""
        with self._cond:
            if not self._requests:
                raise AssertionError("FakeAnthropic has received no request")
            return self._requests[-1]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until at least ``n`` requests arrived; return them all. AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [f"{r.method} {r.path}" for r in self._requests]
                    raise AssertionError(f"expected {n} request(s) within {timeout}s, got {len(seen)}: {seen}")
                self._cond.wait(remaining)
            return list(self._requests)

    def reset(self) -> None:
        """Forget requests, scripted replies and the responder."""
        with self._cond:
            self._requests.clear()
            self._queue.clear()
            self._responder = None

    # ------------------------------------------------------------------ scripting

    def script(self, *replies: Reply) -> None:
        """Queue replies, consumed one per accepted ``/v1/messages`` request, first in first out."""
        for reply in replies:
            if not isinstance(reply, Message | Error | Hang):
                raise TypeError(f"not a Reply (Message, Error or Hang): {reply!r}")
        with self._cond:
            self._queue.extend(replies)

    def set_responder(self, fn: Responder | None) -> None:
        """Answer requests with ``fn(body)`` once the scripted queue is empty (``None`` removes it)."""
        with self._cond:
            self._responder = fn

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        with self._cond:
            return len(self._queue)

    # ------------------------------------------------------------------ request handling

    def _answer(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[Reply | _Response, dict[str, Any]]:
        path = urlsplit(target).path
        try:
            parsed: Any = json.loads(raw) if raw.strip() else {}
            valid_json = True
        except ValueError:
            parsed, valid_json = {}, False
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        with self._cond:
            self._requests.append(ReceivedRequest(method, path, headers, copy.deepcopy(body), raw))
            self._cond.notify_all()

        rejection = self._reject(method, path, headers, body, valid_json and isinstance(parsed, dict))
        if rejection is not None:
            return rejection, body
        with self._cond:
            reply: Reply | None = self._queue.pop(0) if self._queue else None
            responder = self._responder
        if reply is None and responder is not None:
            try:
                reply = responder(copy.deepcopy(body))
            except Exception as exc:
                return _error_response(500, "api_error", f"FakeAnthropic responder raised {exc!r}", _NO_RETRY), body
        if reply is None:
            message = "FakeAnthropic has no scripted reply for this request: call script(...) or set_responder(...)"
            return _error_response(500, "api_error", message, _NO_RETRY), body
        return reply, body

    def _reject(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any], is_object: bool
    ) -> _Response | None:
        bearer = headers.get("authorization", "")
        keys = {bearer[len("Bearer ") :] if bearer.startswith("Bearer ") else None, headers.get("x-api-key")}
        if self._api_key not in keys:
            return _error_response(401, "authentication_error", "invalid x-api-key")
        if not headers.get("anthropic-version"):
            return _error_response(400, "invalid_request_error", "anthropic-version: header is required")
        if path != MESSAGES_PATH:
            return _error_response(404, "not_found_error", f"Not found: {method} {path}")
        if method != "POST":
            return _error_response(405, "invalid_request_error", f"Method {method} not allowed for {path}")
        if not is_object:
            return _error_response(400, "invalid_request_error", "The request body is not a valid JSON object.")
        missing = [name for name in ("model", "max_tokens", "messages") if name not in body]
        if missing:
            return _error_response(400, "invalid_request_error", f"{missing[0]}: Field required")
        if not isinstance(body["model"], str) or not body["model"]:
            return _error_response(400, "invalid_request_error", "model: Input should be a non-empty string")
        if not isinstance(body["max_tokens"], int) or isinstance(body["max_tokens"], bool) or body["max_tokens"] < 1:
            return _error_response(400, "invalid_request_error", "max_tokens: Input should be a positive integer")
        if not isinstance(body["messages"], list) or not body["messages"]:
            return _error_response(400, "invalid_request_error", "messages: at least one message is required")
        return None
