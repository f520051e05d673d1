"""A local console that speaks the `/kb` commands, for trying the bot without a Slack workspace."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import IO

from bot import render
from bot.services import KnowledgeService
from store.errors import KbError
from store.lifecycle import Draft

HELP = """Commands:
  /kb ask <question>          answer from approved entries, with citations
  /kb search <query>          the best matching entries
  /kb propose <title>\\n<body>  propose an entry (first line is the title; end the body with a line '.')
  /kb pending                 proposals waiting for a decision
  /kb approve <id>            approve a proposal (not your own)
  /kb reject <id> <reason>    reject a proposal, saying why
  /kb show <id>               an entry and its history
  /kb trace <task-id>         what a command did, step by step
  /as <user>                  act as another user (to approve someone else's proposal)
  quit                        leave"""


class Console:
    def __init__(self, service: KnowledgeService, *, user: str, stdin: IO[str], stdout: IO[str]) -> None:
        self.service = service
        self.user = user
        self.stdin = stdin
        self.stdout = stdout
        self.commands: dict[str, Callable[[str], str]] = {
            "ask": self.ask, "search": self.search, "propose": self.propose, "pending": self.pending,
            "approve": self.approve, "reject": self.reject, "show": self.show, "trace": self.trace,
            "help": lambda _: HELP,
        }

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def run(self) -> None:
        self.say(f"kb console, acting as {self.user}. Type /kb help.")
        while True:
            self.stdout.write("kb> ")
            self.stdout.flush()
            line = self.stdin.readline()
            if not line or line.strip() in {"quit", "exit"}:
                return
            if line.strip():
                self.say(self.handle(line.strip()))

    def handle(self, line: str) -> str:
        if line.startswith("/as "):
            self.user = line[4:].strip() or self.user
            return f"Now acting as {self.user}."
        if not line.startswith("/kb"):
            return "Commands start with /kb. " + HELP
        sub, _, rest = line[3:].strip().partition(" ")
        handler = self.commands.get(sub.lower())
        if handler is None:
            return (f"Unknown command {sub!r}.\n" if sub else "") + HELP
        try:
            return handler(rest.strip())
        except KbError as exc:
            return f"Sorry: {exc}"

    def ask(self, rest: str) -> str:
        answer, task_id = self.service.ask(rest, actor=self.user)
        return render.answer(answer, task_id)

    def search(self, rest: str) -> str:
        return render.hits(self.service.search(rest, actor=self.user))

    def propose(self, rest: str) -> str:
        lines = [rest] if rest else []
        while True:
            line = self.stdin.readline()
            if not line or line.strip() == ".":
                break
            lines.append(line.rstrip("\n"))
        title, _, body = "\n".join(lines).strip().partition("\n")
        proposal = self.service.propose(Draft(title=title, body=body), proposer=self.user)
        return (f"Proposal #{proposal.id} submitted. Approval card:\n  [{proposal.title}] by {self.user}\n"
                f"  approve: /kb approve {proposal.id}   reject: /kb reject {proposal.id} <reason>")

    def pending(self, _: str) -> str:
        rows = [render.proposal_json(p) for p in self.service.list_proposals()]
        return render.table(rows) if rows else "No proposals are waiting."

    def approve(self, rest: str) -> str:
        return render.decided(render.decided_json(self.service.approve(_id(rest), by=self.user)))

    def reject(self, rest: str) -> str:
        number, _, reason = rest.partition(" ")
        self.service.reject(_id(number), by=self.user, reason=reason)
        return f"Proposal #{number} rejected."

    def show(self, rest: str) -> str:
        return render.detail(render.entry_detail_json(self.service.show_entry(_id(rest))))

    def trace(self, rest: str) -> str:
        return render.detail(render.task_json(self.service.trace(rest)))


def _id(text: str) -> int:
    token = shlex.split(text)[0] if text.strip() else ""
    if not token.lstrip("#").isdigit():
        raise KbError(f"expected a number, got {token!r}")
    return int(token.lstrip("#"))
