"""`/kb <subcommand>`: one router maps each subcommand to the role that serves it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond

from bot.roles.curator import Source
from bot.roles.registry import COMMAND_ROLES
from bot.services import KnowledgeService
from handlers import blocks, ids
from handlers.errors import reports_errors
from handlers.proposals import is_approver, post_card
from store.errors import BadInput, NotAllowed
from store.models import ChannelMode

MAX_COMMAND_TEXT = 4000


@dataclass(frozen=True)
class Subcommand:
    role: str
    progress: str  # what the user sees while the work runs
    run: Callable[..., None]


def _parse(text: str) -> tuple[str, str]:
    """The subcommand, and the rest with its line breaks kept (a proposal's body needs them)."""
    parts = text.strip().split(None, 1)
    return (parts[0].lower() if parts else ""), (parts[1].strip() if len(parts) > 1 else "")


def _number(rest: str, what: str) -> int:
    match = re.fullmatch(r"#?(\d+)", rest.strip())
    if not match:
        raise BadInput(f"Give the {what} number, e.g. `/kb {what.split()[0]} 12`.")
    return int(match.group(1))


class StreamToResponse:
    """Shows a long answer growing in the ephemeral reply. A response_url takes 5 posts in 30 minutes, so at most
    ``max_updates`` partial posts, ``interval`` seconds apart, leaving room for the final answer."""

    def __init__(self, respond: Respond, *, interval: float = 1.0, max_updates: int = 3) -> None:
        self.respond = respond
        self.interval = interval
        self.max_updates = max_updates
        self.updates = 0
        self._last = time.monotonic()

    def __call__(self, text: str) -> None:
        now = time.monotonic()
        if self.updates >= self.max_updates or now - self._last < self.interval:
            return
        self.updates += 1
        self._last = now
        self.respond(text=text[:3000], blocks=blocks.streaming_blocks(text), response_type="ephemeral",
                     replace_original=True)


def ask(service: KnowledgeService, rest: str, user: str, respond: Respond, **_: Any) -> None:
    if not rest:
        raise BadInput("Ask something: `/kb ask how do I drain a node?`")
    answer, task_id = service.ask(rest, actor=user, on_text=StreamToResponse(respond))
    respond(text=answer.text[:3000], blocks=blocks.answer_blocks(answer, service.citations(answer), task_id),
            response_type="ephemeral", replace_original=True)


def propose(service: KnowledgeService, rest: str, user: str, respond: Respond, client: Any, **_: Any) -> None:
    title, _newline, body = rest.partition("\n")
    if not body.strip():
        raise BadInput("Write the title on the first line and the text below it: `/kb propose Disk full⏎Run ...`")
    proposal = service.propose_note(Source.note(body, author=user, title=title.strip()), proposer=user)
    post_card(service, client, proposal)
    note = f"\n:lock: {proposal.review_notes[0]}" if proposal.review_notes else ""
    respond(text=f"Proposal #{proposal.id} is waiting for an approver. You will hear back here.{note}",
            response_type="ephemeral", replace_original=True)


def show(service: KnowledgeService, rest: str, respond: Respond, **_: Any) -> None:
    detail = service.show_entry(_number(rest, "show entry"))
    respond(blocks=blocks.entry_detail_blocks(detail), text=detail.entry.title, response_type="ephemeral",
            replace_original=True)


def pending(service: KnowledgeService, user: str, respond: Respond, client: Any, **_: Any) -> None:
    if not is_approver(service, client, user):
        raise NotAllowed("`/kb pending` is for approvers (KB_APPROVERS); your own proposals are on the App Home tab.")
    respond(blocks=blocks.pending_blocks(service.list_proposals()), text="Pending proposals",
            response_type="ephemeral", replace_original=True)


def trace(service: KnowledgeService, rest: str, respond: Respond, **_: Any) -> None:
    if not rest:
        raise BadInput("Give the task id printed under an answer: `/kb trace 3f2a9c1b7d4e`.")
    respond(blocks=blocks.trace_blocks(service.trace(rest)), text="Task trace", response_type="ephemeral",
            replace_original=True)


def channel(service: KnowledgeService, rest: str, user: str, respond: Respond, client: Any, channel_id: str = "",
            **_: Any) -> None:
    """`/kb channel` shows this channel's mode; `/kb channel off|answer|alert|both` sets it (approvers)."""
    wanted = rest.strip().lower()
    if wanted:
        try:
            mode = ChannelMode(wanted)
        except ValueError:
            raise BadInput("Modes: `off`, `answer` (questions), `alert` (runbooks on alerts) or `both`.") from None
        if not is_approver(service, client, user):
            raise NotAllowed("Only approvers (KB_APPROVERS) change a channel's mode.")
        service.set_channel_mode(channel_id, mode, by=user)
    text = blocks.channel_mode_text(channel_id, service.channel_mode(channel_id).value)
    respond(text=text, response_type="ephemeral" if not wanted else "in_channel", replace_original=True)


ROUTES: dict[str, Subcommand] = {  # the role serving each subcommand comes from the one registry
    "ask": Subcommand(COMMAND_ROLES["ask"], "Searching the approved runbooks…", ask),
    "propose": Subcommand(COMMAND_ROLES["propose"], "Drafting and checking your proposal…", propose),
    "show": Subcommand(COMMAND_ROLES["show"], "Looking it up…", show),
    "pending": Subcommand(COMMAND_ROLES["pending"], "Looking it up…", pending),
    "trace": Subcommand(COMMAND_ROLES["trace"], "Looking it up…", trace),
    "channel": Subcommand(COMMAND_ROLES["channel"], "Looking it up…", channel),
}


def ack_command(ack: Ack, command: dict[str, Any]) -> None:
    """Within Slack's 3 seconds: help and bad input answered at once, slow work shown as in progress."""
    text = command.get("text") or ""
    sub, _ = _parse(text)
    if len(text) > MAX_COMMAND_TEXT:
        ack(response_type="ephemeral",
            text=f"That is {len(text):,} characters; keep it under {MAX_COMMAND_TEXT:,}, or use the "
                 "*Propose to KB* shortcut on a message for long text.")
    elif sub in ROUTES:
        ack(response_type="ephemeral", blocks=blocks.progress_blocks(ROUTES[sub].progress),
            text=ROUTES[sub].progress)
    else:
        prefix = f"I don't know the subcommand `{sub}`." if sub and sub != "help" else ""
        ack(response_type="ephemeral", blocks=blocks.help_blocks(prefix), text="kb help")


@reports_errors
def run_command(command: dict[str, Any], respond: Respond, client: Any, context: BoltContext) -> None:
    text = command.get("text") or ""
    sub, rest = _parse(text)
    route = ROUTES.get(sub)
    if route is None or len(text) > MAX_COMMAND_TEXT:
        return
    service: KnowledgeService = context["kb"]
    run = partial(route.run, service=service, rest=rest, user=command["user_id"], respond=respond, client=client,
                  channel_id=command.get("channel_id", ""))
    if route.role == "librarian":  # the other roles' service calls record their own, richer tasks
        with service.task(sub, actor=command["user_id"], input=rest):
            run()
    else:
        run()


def register(app: App) -> None:
    app.command(ids.COMMAND)(ack=ack_command, lazy=[run_command])
