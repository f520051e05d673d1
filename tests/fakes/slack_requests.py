"""Requests exactly as Slack sends them to an app, signed with Slack's v0 scheme, and a way to serve a Bolt app.

    with FakeSlackApi() as fake, BoltServer(app) as server:
        body = slash_command("how do I rotate keys", response_url=fake.response_url("r1"))
        assert post(server.url, body, "secret").status_code == 200
        [reply] = fake.wait_for("response_url:r1")

Body builders return the raw body string (what gets signed). Interactivity payloads (block actions, view
submissions, shortcuts) are ``application/x-www-form-urlencoded`` with a single ``payload=<json>`` field; slash
commands are plain form fields; Events API requests are JSON. :func:`sign` picks the Content-Type from the body.

Signing (https://api.slack.com/authentication/verifying-requests-from-slack): ``X-Slack-Request-Timestamp: ts``
and ``X-Slack-Signature: "v0=" + hex(HMAC-SHA256(secret, f"v0:{ts}:{body}"))``. Bolt rejects (401) a bad
signature and a timestamp more than 5 minutes from now, either way.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Mapping
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import urlencode, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from tests.fakes.loopback import LoopbackServer

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"

DEFAULT_TEAM_ID = "T1"
DEFAULT_TEAM_DOMAIN = "example"
DEFAULT_APP_ID = "A1"
DEFAULT_BOT_USER_ID = "UBOT"
VERIFICATION_TOKEN = "verification-token"  # the deprecated per-app token Slack still puts in every payload
#: Default response_url: a closed local port, so a test that forgot ``fake.response_url(...)`` fails fast instead of
#: reaching hooks.slack.com.
UNSET_RESPONSE_URL = "http://127.0.0.1:9/response_url/unset"

_seq = itertools.count(1)


def _unique() -> int:
    return next(_seq)


def _now_ts() -> str:
    """A Slack-style ``seconds.micros`` timestamp for action_ts / event_ts."""
    return f"{time.time():.6f}"


def _trigger_id() -> str:
    return f"{_unique()}.{int(time.time())}.{uuid.uuid4().hex}"


def _team(team_id: str, team_domain: str) -> dict[str, Any]:
    return {"id": team_id, "domain": team_domain}


def _user(user_id: str, user_name: str, team_id: str) -> dict[str, Any]:
    return {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id}


def _payload_body(payload: Mapping[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


# ---------------------------------------------------------------------- slash commands


def slash_command(
    text: str,
    *,
    command: str = "/kb",
    user_id: str = "U1",
    user_name: str = "alice",
    channel_id: str = "C1",
    channel_name: str = "general",
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = DEFAULT_APP_ID,
    response_url: str = UNSET_RESPONSE_URL,
    trigger_id: str | None = None,
) -> str:
    """A slash command invocation: form-encoded fields, in the order Slack sends them."""
    return urlencode(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": team_id,
            "team_domain": team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or _trigger_id(),
        }
    )


# ---------------------------------------------------------------------- interactivity


def block_action(
    action_id: str,
    value: str | None = None,
    *,
    user_id: str = "U1",
    user_name: str = "alice",
    channel_id: str = "C1",
    channel_name: str = "general",
    message_ts: str = "1700000000.000100",
    block_id: str | None = None,
    response_url: str | None = None,
    trigger_id: str | None = None,
    message: Mapping[str, Any] | None = None,
    view: Mapping[str, Any] | None = None,
    action_type: str = "button",
    action: Mapping[str, Any] | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = DEFAULT_APP_ID,
    is_ephemeral: bool = False,
) -> str:
    """A ``block_actions`` payload: a click on an interactive element in a message (or, with ``view``, a modal).

    ``message`` defaults to a bot message with that ts and no blocks; ``action`` is merged into the action
    object (e.g. ``{"selected_option": {...}}`` for a select, with ``action_type="static_select"``).
    """
    the_action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id or f"{action_id}-block",
        "type": action_type,
        "action_ts": _now_ts(),
    }
    if action_type == "button":
        the_action["text"] = {"type": "plain_text", "text": action_id, "emoji": True}
    if value is not None:
        the_action["value"] = value
    the_action.update(action or {})
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or _trigger_id(),
        "team": _team(team_id, team_domain),
        "enterprise": None,
        "is_enterprise_install": False,
    }
    if view is not None:
        view_dict = {"id": "V1", "team_id": team_id, "type": "modal", "state": {"values": {}}, **view}
        payload["container"] = {"type": "view", "view_id": view_dict["id"]}
        payload["view"] = view_dict
    else:
        payload["container"] = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        }
        payload["channel"] = {"id": channel_id, "name": channel_name}
        payload["message"] = (
            dict(message)
            if message is not None
            else {
                "type": "message",
                "user": DEFAULT_BOT_USER_ID,
                "bot_id": "BBOT",
                "app_id": api_app_id,
                "team": team_id,
                "text": "",
                "ts": message_ts,
                "blocks": [],
            }
        )
        payload["state"] = {"values": {}}
        payload["response_url"] = response_url or UNSET_RESPONSE_URL
    payload["actions"] = [the_action]
    return _payload_body(payload)


def view_submission(
    callback_id: str,
    values: Mapping[str, Mapping[str, Any]],
    *,
    user_id: str = "U1",
    user_name: str = "alice",
    private_metadata: str = "",
    view_id: str = "V1",
    trigger_id: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
    api_app_id: str = DEFAULT_APP_ID,
    blocks: list[dict[str, Any]] | None = None,
) -> str:
    """A modal's ``view_submission``; ``values`` is ``{block_id: {action_id: value}}``.

    A ``str`` (or ``None``) value becomes a ``plain_text_input`` state; a dict is used as the element state as is,
    e.g. ``{"type": "static_select", "selected_option": {"text": {...}, "value": "x"}}``. ``blocks`` defaults to
    one input block per state entry.
    """
    state: dict[str, dict[str, Any]] = {}
    default_blocks: list[dict[str, Any]] = []
    for block_id, by_action in values.items():
        state[block_id] = {}
        for action_id, value in by_action.items():
            element_state = dict(value) if isinstance(value, Mapping) else {"type": "plain_text_input", "value": value}
            state[block_id][action_id] = element_state
            default_blocks.append(
                {
                    "type": "input",
                    "block_id": block_id,
                    "label": {"type": "plain_text", "text": block_id, "emoji": True},
                    "element": {"type": element_state.get("type", "plain_text_input"), "action_id": action_id},
                    "optional": False,
                    "dispatch_action": False,
                }
            )
    payload = {
        "type": "view_submission",
        "team": _team(team_id, team_domain),
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or _trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": blocks if blocks is not None else default_blocks,
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": state},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "title": {"type": "plain_text", "text": "kb", "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": {"type": "plain_text", "text": "Cancel", "emoji": True},
            "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": api_app_id,
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": "BBOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return _payload_body(payload)


def message_shortcut(
    callback_id: str,
    *,
    user_id: str = "U1",
    user_name: str = "alice",
    channel_id: str = "C1",
    channel_name: str = "general",
    message_ts: str = "1700000000.000100",
    thread_ts: str | None = None,
    text: str = "",
    message_user: str = "U2",
    message: Mapping[str, Any] | None = None,
    trigger_id: str | None = None,
    response_url: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
) -> str:
    """A message shortcut (``type: message_action``) on the message ``message_ts`` in ``channel_id``."""
    the_message: dict[str, Any] = {"type": "message", "user": message_user, "ts": message_ts, "text": text}
    if thread_ts is not None:
        the_message["thread_ts"] = thread_ts
    the_message.update(message or {})
    payload = {
        "type": "message_action",
        "token": VERIFICATION_TOKEN,
        "action_ts": _now_ts(),
        "team": _team(team_id, team_domain),
        "user": _user(user_id, user_name, team_id),
        "channel": {"id": channel_id, "name": channel_name},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id or _trigger_id(),
        "response_url": response_url or UNSET_RESPONSE_URL,
        "message_ts": message_ts,
        "message": the_message,
    }
    return _payload_body(payload)


def global_shortcut(
    callback_id: str,
    *,
    user_id: str = "U1",
    user_name: str = "alice",
    trigger_id: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    team_domain: str = DEFAULT_TEAM_DOMAIN,
) -> str:
    """A global shortcut (``type: shortcut``): no channel, no message, no response_url."""
    payload = {
        "type": "shortcut",
        "token": VERIFICATION_TOKEN,
        "action_ts": _now_ts(),
        "team": _team(team_id, team_domain),
        "user": _user(user_id, user_name, team_id),
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id or _trigger_id(),
    }
    return _payload_body(payload)


# ---------------------------------------------------------------------- Events API


def event_callback(
    event: Mapping[str, Any],
    *,
    event_id: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
    api_app_id: str = DEFAULT_APP_ID,
    bot_user_id: str = DEFAULT_BOT_USER_ID,
    event_time: int | None = None,
) -> str:
    """An Events API envelope (JSON) around ``event``; ``event_id`` defaults to a fresh unique ``Ev...``."""
    body = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": event_time if event_time is not None else int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }
    return json.dumps(body)


def url_verification(challenge: str) -> str:
    """The handshake Slack sends when the Request URL is set; Bolt answers with the challenge."""
    return json.dumps({"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"})


def app_mention_event(
    text: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
) -> dict[str, Any]:
    """An ``app_mention`` event (for :func:`event_callback`); ``text`` should contain ``<@UBOT>``."""
    ts = ts or _now_ts()
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "team": team_id,
        "channel": channel,
        "event_ts": ts,
        "client_msg_id": str(uuid.uuid4()),
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def message_event(
    text: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    channel_type: str = "channel",
    ts: str | None = None,
    thread_ts: str | None = None,
    team_id: str = DEFAULT_TEAM_ID,
) -> dict[str, Any]:
    """A plain user ``message`` event (``channel_type`` ``"im"`` for a DM to the bot)."""
    ts = ts or _now_ts()
    event: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "team": team_id,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
        "client_msg_id": str(uuid.uuid4()),
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


# ---------------------------------------------------------------------- signing and posting


def signature(body: str, secret: str, timestamp: int) -> str:
    """``"v0=" + hex HMAC-SHA256(secret, f"v0:{timestamp}:{body}")``."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def sign(body: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with ``body``: Content-Type (JSON for a JSON body, else form), timestamp, signature."""
    ts = int(time.time()) if timestamp is None else timestamp
    content_type = JSON if body.lstrip().startswith("{") else FORM
    return {
        "Content-Type": content_type,
        "User-Agent": USER_AGENT,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature(body, secret, ts),
    }


def post(
    app_url: str,
    body: str,
    secret: str,
    *,
    timestamp: int | None = None,
    bad_signature: bool = False,
    retry_num: int | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> httpx.Response:
    """Sign ``body`` and POST it to the app; returns the (fully read) response.

    ``app_url`` is the events URL, or a bare ``http://host:port`` to which ``/slack/events`` is added.
    ``bad_signature`` signs with the wrong secret; ``retry_num`` adds Slack's ``X-Slack-Retry-Num`` /
    ``X-Slack-Retry-Reason`` (as on redeliveries); ``headers`` override anything.
    """
    if urlsplit(app_url).path in ("", "/"):
        app_url = app_url.rstrip("/") + "/slack/events"
    all_headers = sign(body, secret + "-wrong" if bad_signature else secret, timestamp)
    if retry_num is not None:
        all_headers["X-Slack-Retry-Num"] = str(retry_num)
        all_headers["X-Slack-Retry-Reason"] = "http_timeout"
    all_headers.update(headers or {})
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        return client.post(app_url, content=body.encode(), headers=all_headers)


# ---------------------------------------------------------------------- serving a Bolt app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class BoltServer(LoopbackServer):
    """Serve a Bolt ``App`` over real HTTP (Bolt's WSGI adapter in a threaded ``wsgiref`` server on 127.0.0.1).

    ``url`` is ``http://127.0.0.1:<port>/slack/events``. Context manager, or ``start()`` / ``stop()``.
    """

    thread_name = "bolt-test-server"

    def __init__(self, app: App, *, path: str = "/slack/events") -> None:
        self.app = app
        self.path = path
        super().__init__()

    def _make_server(self) -> _ThreadingWSGIServer:
        server = make_server(
            "127.0.0.1",
            0,
            SlackRequestHandler(self.app, path=self.path),
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        assert isinstance(server, _ThreadingWSGIServer)
        return server

    @property
    def url(self) -> str:
        return self.base_url + self.path
