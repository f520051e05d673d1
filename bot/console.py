"""`kb serve` without Slack credentials: a terminal that speaks the `/kb` commands to the real Bolt app.

Like Hubot's shell adapter, it turns what you type into the payloads Slack would send (slash commands, button
clicks, modal submissions), dispatches them through the same handlers and service layer, and shows what the
app posts back (via a loopback stand-in for Slack's Web API) as text.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any
from urllib.parse import urlencode

from pydantic import SecretStr
from slack_bolt.request import BoltRequest

from bot.app import create_app
from bot.config import Settings
from bot.services import KnowledgeService
from bot.slack_local import LocalSlack, Posted
from handlers.errors import user_message

CHANNEL = "CCONSOLE"
INTRO = ("kb console: type /kb help. Click buttons by typing their label and the proposal number "
         "(approve 3, edit 3, reject 3) or, under an answer, share / helpful / not helpful / propose. "
         "/as <user> switches who you are; quit leaves.")


class TrackingExecutor(ThreadPoolExecutor):
    """Bolt runs lazy listeners here; the console waits until they are done before the next prompt."""

    def __init__(self) -> None:
        super().__init__(max_workers=4, thread_name_prefix="kb-lazy")
        self._running = 0
        self._lock = threading.Lock()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self._running += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._running -= 1

    def wait_idle(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            time.sleep(0.02)


def text_of(blocks: list[dict[str, Any]], fallback: str = "") -> str:
    """Block Kit as plain lines, with buttons shown as [Label]."""
    lines: list[str] = []
    for block in blocks:
        if block.get("type") in ("section", "header"):
            lines.append(str(block.get("text", {}).get("text", "")))
        elif block.get("type") == "context":
            lines.append("  " + " ".join(str(e.get("text", "")) for e in block.get("elements", [])))
        elif block.get("type") == "actions":
            lines.append("  " + " ".join(f"[{e['text']['text']}]" for e in block.get("elements", [])))
        elif block.get("type") == "divider":
            lines.append("  ---")
    text = "\n".join(lines) if lines else fallback
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class Console:
    def __init__(self, settings: Settings, service: KnowledgeService, *, user: str, stdin: IO[str],
                 stdout: IO[str]) -> None:
        self.user = user
        self.stdin = stdin
        self.stdout = stdout
        self._ids = itertools.count(1)
        self._print_lock = threading.Lock()
        self.buttons: dict[str, dict[str, Any]] = {}  # "approve 3" / "helpful" -> the button and its message
        self.modals: list[dict[str, Any]] = []
        self.slack = LocalSlack(self.show).start()
        self.executor = TrackingExecutor()
        local = settings.model_copy(update={
            "slack_api_url": f"{self.slack.url}/api/", "slack_signing_secret": None,
            "slack_bot_token": SecretStr("xoxb-local-console"),
            "approval_channel": settings.approval_channel or "CAPPROVALS",
            "approvers": settings.approvers or "*",
        })
        service.settings = local  # the console is this process's composition root: it owns the settings
        self.app = create_app(local, service, lazy_executor=self.executor)
        self._buffer: list[Posted] | None = None

    # --- what the app shows ------------------------------------------------------------------------
    def say(self, text: str) -> None:
        with self._print_lock:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def show(self, posted: Posted) -> None:
        with self._print_lock:
            if self._buffer is not None:  # a command is running: shown after its acknowledgement
                self._buffer.append(posted)
                return
        self.render(posted)

    def render(self, posted: Posted) -> None:
        if posted.kind == "modal":
            self.modals.append(posted.view)
            return
        if posted.kind == "response" and posted.view.get("delete"):
            return
        self.remember_buttons(posted)
        where = {"message": f"(#{posted.channel}) ", "update": f"(#{posted.channel}, updated) ",
                 "home": "(App Home) "}.get(posted.kind, "")
        self.say(where + text_of(posted.blocks, posted.text))

    def remember_buttons(self, posted: Posted) -> None:
        for block in posted.blocks:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                label = str(element["text"]["text"]).lower()
                try:
                    number = json.loads(element.get("value") or "{}").get("proposal_id")
                except json.JSONDecodeError:
                    number = None
                key = f"{label.split()[0]} {number}" if number else label
                self.buttons[key] = {"element": element, "block_id": block.get("block_id", ""),
                                     "channel": posted.channel or CHANNEL, "ts": posted.ts}

    # --- what the user does ------------------------------------------------------------------------
    def dispatch(self, body: str, content_type: str) -> None:
        with self._print_lock:
            self._buffer = []
        response = self.app.dispatch(BoltRequest(body=body, headers={"content-type": [content_type]}))
        if response.body and response.status == 200:
            try:
                data = json.loads(response.body)
            except json.JSONDecodeError:
                data = {"text": response.body}
            if data.get("errors"):
                self.say("Not saved: " + "; ".join(map(str, data["errors"].values())))
            elif data.get("text") or data.get("blocks"):
                self.say(text_of(data.get("blocks") or [], str(data.get("text") or "")))
        self.executor.wait_idle()
        with self._print_lock:
            shown, self._buffer = self._buffer or [], None
        for posted in shown:
            self.render(posted)
        while self.modals:
            self.fill_modal(self.modals.pop(0))

    def _envelope(self) -> dict[str, Any]:
        n = next(self._ids)
        return {"user": {"id": self.user, "username": self.user, "name": self.user, "team_id": "TLOCAL"},
                "team": {"id": "TLOCAL"}, "api_app_id": "ALOCAL", "token": "local", "trigger_id": f"trigger{n}",
                "response_url": f"{self.slack.url}/response/{n}"}

    def slash(self, text: str) -> None:
        envelope = self._envelope()
        self.dispatch(urlencode({
            "command": "/kb", "text": text, "user_id": self.user, "user_name": self.user, "channel_id": CHANNEL,
            "channel_name": "console", "team_id": "TLOCAL", "api_app_id": "ALOCAL",
            "response_url": envelope["response_url"], "trigger_id": envelope["trigger_id"]}),
            "application/x-www-form-urlencoded")

    def click(self, key: str) -> None:
        found = self.buttons[key]
        element = found["element"]
        payload = {**self._envelope(), "type": "block_actions",
                   "container": {"type": "message", "message_ts": found["ts"], "channel_id": found["channel"]},
                   "channel": {"id": found["channel"]}, "message": {"ts": found["ts"]},
                   "actions": [{"action_id": element["action_id"], "block_id": found["block_id"],
                                "value": element.get("value", ""), "type": "button", "action_ts": "0"}]}
        self.dispatch(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def fill_modal(self, view: dict[str, Any]) -> None:
        if not any(block.get("type") == "input" for block in view.get("blocks", [])):
            self.say(text_of(view.get("blocks", []), ""))  # a view with nothing to fill in (drafting…) is shown
            return
        self.say(f"== {view.get('title', {}).get('text', 'Form')} == (Enter keeps the value in brackets)")
        values: dict[str, dict[str, Any]] = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                continue
            element = block["element"]
            current = str(element.get("initial_value") or "")
            label = block["label"]["text"]
            if element.get("multiline"):
                self.say(f"{label} [{current[:200]}{'…' if len(current) > 200 else ''}]: end with a line '.'")
                typed = self.read_until_dot()
            else:
                self.say(f"{label} [{current}]:")
                typed = self.stdin.readline().rstrip("\n")
            values[block["block_id"]] = {element["action_id"]: {"type": "plain_text_input",
                                                                 "value": typed or current}}
        payload = {**self._envelope(), "type": "view_submission",
                   "view": {"id": "VLOCAL", "type": view.get("type", "modal"), "callback_id": view.get("callback_id"),
                            "private_metadata": view.get("private_metadata", ""), "state": {"values": values}}}
        self.dispatch(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def read_until_dot(self) -> str:
        lines = []
        while (line := self.stdin.readline()) and line.strip() != ".":
            lines.append(line.rstrip("\n"))
        return "\n".join(lines)

    def find_button(self, typed: str) -> str | None:
        """The button a typed label names: exactly (`approve 3`) or by its first word (`share`)."""
        if typed in self.buttons:
            return typed
        matches = [key for key in self.buttons if key.startswith(typed + " ") and not key[len(typed) + 1:].isdigit()]
        return matches[0] if len(matches) == 1 else None

    def handle(self, line: str) -> None:
        if line.startswith("/as "):
            self.user = line[4:].strip() or self.user
            self.say(f"Now acting as {self.user}.")
        elif line.startswith("/kb"):
            text = line[3:].strip()
            if text.split(" ", 1)[0] == "propose" and "\n" not in text:
                self.say("Now the text of the entry; end with a line '.'")
                text = f"{text}\n{self.read_until_dot()}"
            self.slash(text)
        elif button := self.find_button(line.lower()):
            self.click(button)
        else:
            self.say(f"Nothing to do with {line!r}. " + INTRO)

    def run(self) -> None:
        self.say(INTRO)
        try:
            while True:
                with self._print_lock:
                    self.stdout.write("kb> ")
                    self.stdout.flush()
                line = self.stdin.readline()
                if not line or line.strip() in {"quit", "exit"}:
                    return
                if line.strip():
                    try:
                        self.handle(line.strip())
                    except Exception as exc:  # one bad turn must not end the session
                        self.say(user_message(exc))
        finally:
            self.executor.shutdown(wait=True)
            self.slack.stop()
