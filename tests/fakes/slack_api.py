"""A loopback fake of the Slack Web API, for the real ``slack_sdk.WebClient`` (and so for Bolt) to talk to.

    with FakeSlackApi() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.api_url)   # == f"{fake.url}/api/"
        client.chat_postMessage(channel="C1", text="hi", blocks=[...])
        [call] = fake.calls_to("chat.postMessage")
        assert call.args["blocks"][0]["type"] == "section" and call.token == "xoxb-test"

It is a real HTTP server (``http.server.ThreadingHTTPServer``) on 127.0.0.1 and a free port, in a daemon thread.

What it serves:

* ``/api/<method>``: every request is recorded as a :class:`Call` (failed ones too) and answered with a canned,
  Slack-shaped response (see ``_canned``), a test's own (:meth:`FakeSlackApi.respond_with`) or a scripted failure
  (:meth:`FakeSlackApi.fail`); methods without a canned answer get ``{"ok": true}``.
* ``/response_url/<id>``: where Bolt's ``respond()`` posts its JSON; recorded as ``Call("response_url:<id>", ...)``.
  Put :meth:`FakeSlackApi.response_url` into request payloads.
* ``/upload/<file_id>``: the upload URL that ``files.getUploadURLExternal`` hands out (``files_upload_v2``);
  recorded as ``Call("upload:<file_id>", {"content": bytes})``.

How slack_sdk 3.x sends requests (what the decoding here undoes):

* Always ``POST`` (``http_verb="GET"`` is ignored by the sync client), with ``Authorization: Bearer <token>``.
* Methods that may carry Block Kit (``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``, ``views.*``,
  ``assistant.threads.*``, ...) send a JSON body (``application/json;charset=utf-8``): booleans stay booleans.
* The rest send ``application/x-www-form-urlencoded``: every value is a string, booleans become ``"1"``/``"0"``,
  and structured arguments (``blocks``, ``attachments``, ``view``, ``files``, ...) are JSON strings; those named
  in :data:`JSON_ENCODED_FIELDS` are decoded back to Python objects in :attr:`Call.args`.
* ``files.upload`` (v1) sends ``multipart/form-data``; file parts come back as ``bytes``.
* Nothing is gzipped on the way out (only ``admin.analytics.getFile`` *responses* are gzip); a gzip body is
  still accepted.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.fakes.loopback import LoopbackServer

#: Form fields that slack_sdk serialises as JSON strings; decoded back in ``Call.args`` (also when they arrive as
#: a JSON string inside a JSON body).
JSON_ENCODED_FIELDS = frozenset(
    {
        "attachments",
        "blocks",
        "chunks",
        "dialog",
        "files",
        "metadata",
        "option_groups",
        "options",
        "outputs",
        "prompts",
        "unfurls",
        "user_auth_blocks",
        "view",
    }
)

Responder = Callable[["Call"], Mapping[str, Any]]
"""A test's own answer for a method: gets the recorded call, returns the JSON response (``ok`` defaults to true)."""


class Headers(dict[str, str]):
    """Request headers, names lower-cased; ``[]``, ``get`` and ``in`` are case-insensitive."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None, /) -> Any:
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class Call:
    """One request the fake received.

    ``method`` is the Web API method (``"chat.postMessage"``), ``"response_url:<id>"`` or ``"upload:<file_id>"``.
    ``args`` holds the decoded parameters: query string and body merged, JSON-encoded form fields decoded (see the
    module docstring for form vs JSON). ``headers`` is a :class:`Headers` (case-insensitive lookups).
    """

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    body: bytes = field(default=b"", repr=False, compare=False)
    received_at: float = field(default_factory=time.monotonic, repr=False, compare=False)

    @property
    def token(self) -> str | None:
        """The bearer token from the ``Authorization`` header, or ``None``."""
        auth = self.headers.get("authorization") or ""
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type") or ""


@dataclass
class ScriptedFailure:
    """The next ``times`` calls to a method fail with ``{"ok": false, "error": error}`` and HTTP ``status``."""

    error: str
    status: int = 200
    times: int = 1
    retry_after: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins the handler threads: no half-closed sockets left behind

    def __init__(self, fake: FakeSlackApi) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection, as urllib (Connection: close) expects

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        status, headers, payload = self.server.fake._handle(self.path, Headers(self.headers.items()), body)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


class FakeSlackApi(LoopbackServer):
    """The fake; use as a context manager or call :meth:`start` / :meth:`stop`. All methods are thread-safe."""

    thread_name = "fake-slack-api"

    def __init__(
        self,
        *,
        team_id: str = "T1",
        team_domain: str = "example",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A1",
        first_ts: int = 1_700_000_000,
    ) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self._first_ts = first_ts
        self._cond = threading.Condition()
        self._calls: list[Call] = []
        self._failures: dict[str, list[ScriptedFailure]] = {}
        self._responders: dict[str, Responder] = {}
        self._threads: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._ts_seq = itertools.count(1)  # never reset: timestamps stay unique for the fake's lifetime
        self._id_seq = itertools.count(1)
        super().__init__()
        self._canned: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": lambda args: {"ok": True, "args": args},
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": lambda args: {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")},
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.replies": self._conversations_replies,
            "conversations.open": self._conversations_open,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "views.open": lambda args: self._view(args, require_trigger=True),
            "views.push": lambda args: self._view(args, require_trigger=True),
            "views.update": lambda args: self._view(args, require_trigger=False),
            "views.publish": lambda args: self._view(args, require_trigger=False, view_type="home"),
            "reactions.add": lambda args: {"ok": True},
            "assistant.threads.setStatus": lambda args: {"ok": True},
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

    # ------------------------------------------------------------------ lifecycle

    def _make_server(self) -> _Server:
        return _Server(self)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash)."""
        return self.base_url

    @property
    def api_url(self) -> str:
        """The ``base_url`` for ``WebClient``; the trailing slash matters (slack_sdk uses ``urljoin``)."""
        return f"{self.url}/api/"

    def response_url(self, response_id: str = "1") -> str:
        """A ``response_url`` for payloads; posts to it are recorded as ``Call("response_url:<id>", ...)``."""
        return f"{self.url}/response_url/{quote(response_id, safe='')}"

    # ------------------------------------------------------------------ recorded calls

    @property
    def calls(self) -> list[Call]:
        """A snapshot of every call so far, in arrival order."""
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [call for call in self._calls if call.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Block until at least ``count`` calls to ``method`` arrived; return all calls to it so far.

        Raises AssertionError, listing every call seen, on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matched = [call for call in self._calls if call.method == method]
                if len(matched) >= count:
                    return matched
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} call(s) to {method!r} within {timeout}s, got {len(matched)}; "
                        f"calls seen: {self._describe_calls()}"
                    )
                self._cond.wait(remaining)

    def clear_calls(self) -> None:
        with self._cond:
            self._calls.clear()

    def reset(self) -> None:
        """Forget calls, scripted failures, custom responders and configured threads, user groups and users."""
        with self._cond:
            self._calls.clear()
            self._failures.clear()
            self._responders.clear()
            self._threads.clear()
            self._usergroups.clear()
            self._users.clear()

    # ------------------------------------------------------------------ scripting

    def fail(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int = 200,
        times: int = 1,
        retry_after: int = 1,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Make the next ``times`` calls to ``method`` fail.

        ``status=200`` gives Slack's usual ``{"ok": false, "error": error}`` (``error`` defaults to
        ``"internal_error"``); ``status=429`` adds ``Retry-After: retry_after`` and defaults ``error`` to
        ``"ratelimited"``. ``extra`` is merged into the error body. Failures queue up in the order scripted.
        ``method`` may be ``"response_url:<id>"`` or ``"upload:<file_id>"`` too (the body is then ``error``).
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        default_error = "ratelimited" if status == 429 else "internal_error"
        failure = ScriptedFailure(
            error=error or default_error,
            status=status,
            times=times,
            retry_after=retry_after if status == 429 else None,
            extra=dict(extra or {}),
        )
        with self._cond:
            self._failures.setdefault(method, []).append(failure)

    def respond_with(self, method: str, response: Mapping[str, Any] | Responder) -> None:
        """Answer ``method`` with ``response`` (a dict, or a function of the :class:`Call`) instead of the canned one.

        ``"ok": true`` is added when the answer has no ``ok``. Scripted failures still take precedence.
        """
        if callable(response):
            responder: Responder = response
        else:
            fixed = dict(response)

            def responder(call: Call) -> Mapping[str, Any]:
                return copy.deepcopy(fixed)

        with self._cond:
            self._responders[method] = responder

    def set_thread(self, channel: str, ts: str, messages: list[dict[str, Any]]) -> None:
        """What ``conversations.replies(channel=channel, ts=ts)`` returns (parent first, as Slack does).

        Messages are returned as given (``type: "message"`` added when missing); unknown threads get
        ``thread_not_found``. Messages the bot posts are not added to threads.
        """
        normalized = [{"type": "message", **message} for message in messages]
        with self._cond:
            self._threads[(channel, ts)] = normalized

    def set_usergroup(self, usergroup_id: str, user_ids: list[str]) -> None:
        """The members ``usergroups.users.list(usergroup=...)`` returns; unknown groups get ``no_such_subteam``."""
        with self._cond:
            self._usergroups[usergroup_id] = list(user_ids)

    def set_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        real_name: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
        is_bot: bool = False,
        deleted: bool = False,
        **fields: Any,
    ) -> None:
        """What ``users.info(user=user_id)`` returns; ``fields`` are merged into the user object.

        Users never configured are synthesised (name = the id lower-cased), so ``users.info`` never fails by default.
        """
        user = self._default_user(user_id)
        if name is not None:
            user["name"] = name
        if real_name is not None:
            user["real_name"] = user["profile"]["real_name"] = real_name
        if display_name is not None:
            user["profile"]["display_name"] = display_name
        if email is not None:
            user["profile"]["email"] = email
        user["is_bot"] = is_bot
        user["deleted"] = deleted
        user.update(fields)
        with self._cond:
            self._users[user_id] = user

    def new_ts(self) -> str:
        """The next message timestamp: ``1700000000.000100``, ``1700000000.000200``, ... (unique, increasing)."""
        micros = next(self._ts_seq) * 100
        return f"{self._first_ts + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def permalink(self, channel: str, ts: str) -> str:
        return f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"

    # ------------------------------------------------------------------ request handling

    def _handle(self, raw_path: str, headers: Headers, body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        path = parts.path
        if path.startswith("/api/") and len(path) > len("/api/"):
            method = unquote(path[len("/api/") :])
        elif path.startswith("/response_url/"):
            method = "response_url:" + unquote(path[len("/response_url/") :])
        elif path.startswith("/upload/"):
            method = "upload:" + unquote(path[len("/upload/") :])
        else:
            return 404, {"Content-Type": "text/plain"}, b"not found"
        try:
            args = _decode_args(parts.query, headers, body, raw=method.startswith("upload:"))
        except ValueError as exc:
            return 400, {"Content-Type": "text/plain"}, f"fake Slack could not decode the request: {exc}".encode()
        call = Call(method=method, args=args, headers=headers, body=body)
        with self._cond:
            self._calls.append(call)
            failure = self._take_failure(method)
            responder = self._responders.get(method)
            self._cond.notify_all()

        if method.startswith(("response_url:", "upload:")):
            if failure is not None:
                return failure.status, {"Content-Type": "text/plain"}, failure.error.encode()
            text = "ok" if method.startswith("response_url:") else f"OK - {len(body)}"
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, text.encode()

        if failure is not None:
            headers_out = dict(_JSON_HEADERS)
            if failure.retry_after is not None:
                headers_out["Retry-After"] = str(failure.retry_after)
            response: dict[str, Any] = {"ok": False, "error": failure.error, **failure.extra}
            return failure.status, headers_out, json.dumps(response).encode()
        try:
            if responder is not None:
                response = {"ok": True, **responder(call)}
            else:
                canned = self._canned.get(method)
                response = canned(copy.deepcopy(args)) if canned is not None else {"ok": True}
        except Exception as exc:  # a bug in a responder: make it visible in the test instead of hanging
            response = {"ok": False, "error": f"fake_slack_responder_crashed: {exc!r}"}
            return 500, dict(_JSON_HEADERS), json.dumps(response).encode()
        return 200, dict(_JSON_HEADERS), json.dumps(response).encode()

    def _take_failure(self, method: str) -> ScriptedFailure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _describe_calls(self) -> str:
        if not self._calls:
            return "(none)"
        lines = []
        for call in self._calls:
            args = json.dumps(call.args, default=repr)
            lines.append(f"\n  {call.method} {args[:300]}{'...' if len(args) > 300 else ''}")
        return "".join(lines)

    # ------------------------------------------------------------------ canned responses

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": "Example Workspace",
            "user": "kb-bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _channel_for(self, channel: str) -> str:
        # posting to a user id lands in the bot's DM with them
        return "D" + channel if channel[:1] in ("U", "W") else channel

    def _bot_message(self, args: dict[str, Any], ts: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": args.get("text", ""),
            "ts": ts,
        }
        for key in ("blocks", "attachments", "thread_ts", "metadata"):
            if key in args:
                message[key] = args[key]
        return message

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            return {"ok": False, "error": "no_text"}
        ts = self.new_ts()
        return {
            "ok": True,
            "channel": self._channel_for(args["channel"]),
            "ts": ts,
            "message": self._bot_message(args, ts),
        }

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("ts"):
            return {"ok": False, "error": "message_not_found"}
        message = self._bot_message(args, args["ts"])
        message.pop("ts")
        return {
            "ok": True,
            "channel": args["channel"],
            "ts": args["ts"],
            "text": args.get("text", ""),
            "message": message,
        }

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self.new_ts()}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel"), args.get("message_ts")
        if not channel or not ts:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": channel, "permalink": self.permalink(channel, ts)}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel", "")), str(args.get("ts", "")))
        with self._cond:
            messages = copy.deepcopy(self._threads.get(key))
        if messages is None:
            return {"ok": False, "error": "thread_not_found"}
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 1000)
        page = messages[start : start + limit]
        more = start + limit < len(messages)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel"):
            return {"ok": True, "channel": {"id": args["channel"]}}
        users = [user for user in str(args.get("users", "")).split(",") if user]
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        channel_id = "D" + users[0] if len(users) == 1 else "G" + "".join(sorted(users))
        return {"ok": True, "channel": {"id": channel_id}}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            users = self._usergroups.get(str(args.get("usergroup", "")))
        if users is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(users)}

    def _default_user(self, user_id: str) -> dict[str, Any]:
        name = user_id.lower()
        return {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": name.title(),
            "deleted": False,
            "is_bot": False,
            "is_admin": False,
            "tz": "Europe/London",
            "profile": {"real_name": name.title(), "display_name": name, "email": f"{name}@example.com"},
        }

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("user", ""))
        if not user_id:
            return {"ok": False, "error": "user_not_found"}
        with self._cond:
            user = copy.deepcopy(self._users.get(user_id))
        return {"ok": True, "user": user or self._default_user(user_id)}

    def _view(self, args: dict[str, Any], *, require_trigger: bool, view_type: str = "modal") -> dict[str, Any]:
        if require_trigger and not (args.get("trigger_id") or args.get("interactivity_pointer")):
            return {
                "ok": False,
                "error": "invalid_arguments",
                "response_metadata": {"messages": ["[ERROR] missing required field: trigger_id"]},
            }
        given = args.get("view")
        if not isinstance(given, dict):
            return {"ok": False, "error": "invalid_arguments"}
        view_id = str(args.get("view_id") or f"V{next(self._id_seq):08d}")
        view: dict[str, Any] = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view_type,
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "state": {"values": {}},
            "hash": f"{self._first_ts}.{next(self._id_seq):08d}",
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": self.app_id,
            "external_id": args.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        view.update(given)
        view["id"] = view_id
        return {"ok": True, "view": view}

    def _files_get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._id_seq):08d}"
        return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "files": [{"id": f.get("id"), "title": f.get("title") or ""} for f in files]}


def _decode_args(query: str, headers: Headers, body: bytes, *, raw: bool) -> dict[str, Any]:
    args: dict[str, Any] = _form(query) if query else {}
    if headers.get("content-encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    content_type = headers.get("content-type", "")
    mime = content_type.split(";", 1)[0].strip().lower()
    if raw:
        args["content"] = body
    elif mime == "application/json" or (not mime and body.lstrip().startswith(b"{")):
        decoded = json.loads(body.decode("utf-8")) if body.strip() else {}
        if not isinstance(decoded, dict):
            raise ValueError("a JSON body must be an object")
        args.update(decoded)
    elif mime == "multipart/form-data":
        args.update(_multipart(content_type, body))
    elif body:
        args.update(_form(body.decode("utf-8")))
    for key in JSON_ENCODED_FIELDS & args.keys():
        value = args[key]
        if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return args


def _form(text: str) -> dict[str, Any]:
    parsed = parse_qs(text, keep_blank_values=True, strict_parsing=False)
    return {key: values[0] if len(values) == 1 else values for key, values in parsed.items()}


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    message = BytesParser(policy=HTTP_POLICY).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    args: dict[str, Any] = {}
    for part in message.walk():
        if part.is_multipart():
            continue
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        args[name] = data if part.get_filename() else data.decode("utf-8")
    return args
