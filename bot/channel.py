"""The bot in channels, without Slack: what counts as a question, what a runbook reply quotes, and the outcome
of each message the bot looked at (replied, or skipped and why: a team tunes thresholds from these)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from bot.roles.answerer import Answer, key_lines
from store.text import shorten

Action = Literal["reply", "skip"]

_MENTION_OR_LINK = re.compile(r"<[@#!][^>]*>|<https?://[^>]*>")
_EN_QUESTION = re.compile(
    r"^(how|what|why|when|where|who|which|is|are|can|could|should|would|does|do|did|has|have|any(one|body)|"
    r"anyone know|is there)\b", re.IGNORECASE)
_KO_QUESTION = re.compile(r"(어떻게|왜|뭐|무엇|무슨|언제|어디|누가|어느|있나|있을까|될까|되나|인가|할까|"
                          r"하나요|나요|까요|습니까|는지|을지|ㄹ까|죠|니)\s*[?？]?\s*$|어떻게|방법")
# Headings of what to do, best first: the fix, then how to find the cause.
_STEPS_HEADINGS = [
    re.compile(r"^\s{0,3}#{1,6}\s*.*(mitigat|remed|resol|fix|steps|procedure|what to do|action|대응|해결|조치|절차)"
               r".*$", re.IGNORECASE | re.MULTILINE),
    re.compile(r"^\s{0,3}#{1,6}\s*.*(diagnos|troubleshoot|investigat|how to|확인|진단|방법).*$",
               re.IGNORECASE | re.MULTILINE),
]
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S")


def looks_like_question(text: str) -> bool:
    """A message that asks something: a question mark, an interrogative opening, or a Korean question form."""
    plain = _MENTION_OR_LINK.sub(" ", text).strip()
    if len(plain) < 8:
        return False
    return plain.rstrip().endswith(("?", "？")) or bool(_EN_QUESTION.match(plain)) or bool(
        _KO_QUESTION.search(plain))


def key_steps(body: str, *, query: str, max_chars: int = 1200) -> str:
    """What to do, from a runbook: its mitigation/steps section if it has one, else its first list, else the
    lines that best match the alert."""
    for pattern in _STEPS_HEADINGS:
        for heading in pattern.finditer(body):
            rest = body[heading.end():]
            following = _HEADING.search(rest)
            section = rest[: following.start()] if following else rest
            if section.strip():
                return _clip_lines(section.strip(), max_chars)
    lines = body.splitlines()
    items = [n for n, line in enumerate(lines) if _LIST_ITEM.match(line)]
    if items:
        start = items[0]
        block = []
        for line in lines[start:]:
            if line.strip() and not _LIST_ITEM.match(line) and not line.startswith((" ", "\t")):
                break
            block.append(line)
        return _clip_lines("\n".join(block).strip(), max_chars)
    return key_lines(query, body, max_chars=max_chars)


def _clip_lines(text: str, max_chars: int) -> str:
    """Whole lines up to ``max_chars`` (the steps keep their line breaks), an ellipsis if cut."""
    if len(text) <= max_chars:
        return text
    kept = text[:max_chars].rsplit("\n", 1)[0]
    return (kept if kept.strip() else shorten(text, max_chars)) + "\n…"


@dataclass
class RunbookMatch:
    entry_id: int
    version: int
    title: str
    how: Literal["title", "alias", "search"]
    steps: str = ""
    source_ref: str | None = None


@dataclass
class ChannelOutcome:
    """What the bot did with one channel message, and why: counted per channel in the metrics and the task."""

    action: Action
    reason: str
    task_id: str | None = None
    answer: Answer | None = None
    runbook: RunbookMatch | None = None
    labels: dict[str, str] = field(default_factory=dict)
