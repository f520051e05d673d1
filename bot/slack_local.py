"""A local stand-in for Slack, for the console: it receives the app's Web API calls and `respond()` posts on
loopback and hands each message to the console, which shows it as text. The app itself is the real one."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class Posted:
    """One thing the app showed: a message, an ephemeral reply, a modal, or the home tab."""

    kind: str  # "message" | "update" | "ephemeral" | "response" | "modal" | "home"
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    view: dict[str, Any] = field(default_factory=dict)


def _decode(raw: bytes, content_type: str) -> dict[str, Any]:
    if "json" in content_type:
        data = json.loads(raw or b"{}")
        return data if isinstance(data, dict) else {}
    args: dict[str, Any] = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    for key in ("blocks", "view", "attachments"):
        if isinstance(args.get(key), str):
            args[key] = json.loads(args[key])
    return args


class LocalSlack:
    """Loopback Web API + response_url sink; ``on_post`` is called for everything the app shows."""

    def __init__(self, on_post: Callable[[Posted], None]) -> None:
        self.on_post = on_post
        self._ts = itertools.count(1)
        local = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                args = _decode(self.rfile.read(length), self.headers.get("Content-Type", ""))
                reply = local.handle(self.path, args)
                payload = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> LocalSlack:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def handle(self, path: str, args: dict[str, Any]) -> dict[str, Any]:
        if path.startswith("/response/"):
            kind = "response"
            self.on_post(Posted(kind, path.rsplit("/", 1)[-1], "", str(args.get("text") or ""),
                                list(args.get("blocks") or []), view={"delete": bool(args.get("delete_original"))}))
            return {"ok": True}
        method = path.removeprefix("/api/")
        channel = str(args.get("channel") or args.get("user_id") or "")
        ts = str(args.get("ts") or self.next_ts())
        shown = {"chat.postMessage": "message", "chat.update": "update", "chat.postEphemeral": "ephemeral",
                 "views.open": "modal", "views.update": "modal", "views.push": "modal", "views.publish": "home"}
        if method in shown:
            view = args.get("view") or {}
            self.on_post(Posted(shown[method], channel, ts, str(args.get("text") or ""),
                                list(args.get("blocks") or view.get("blocks") or []), view))
        canned: dict[str, dict[str, Any]] = {
            "conversations.replies": {"messages": []},
            "usergroups.users.list": {"users": []},
            "chat.getPermalink": {"permalink": ""},
            "auth.test": {"user_id": "UKB", "bot_id": "BKB", "team_id": "TLOCAL"},
        }
        extra = canned.get(method, {})
        return {"ok": True, "channel": channel, "ts": ts, "message_ts": ts, "view": {"id": "VLOCAL"}, **extra}
