"""Encode and decode what rides in button values and private_metadata (Slack caps both)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from store.errors import BadInput

MAX_BUTTON_VALUE = 2000
MAX_PRIVATE_METADATA = 3000


@dataclass(frozen=True)
class ProposalRef:
    proposal_id: int
    revision: int


@dataclass(frozen=True)
class EntryRef:
    entry_id: int
    version: int


@dataclass(frozen=True)
class AnswerRef:
    task_id: str


@dataclass(frozen=True)
class DraftContext:
    """What a propose modal needs to remember between opening and submission."""

    channel: str = ""
    thread_ts: str = ""
    permalink: str = ""
    question: str = ""


def _encode(value: object, limit: int) -> str:
    text = json.dumps(asdict(value), separators=(",", ":"))  # type: ignore[call-overload]
    if len(text) > limit:
        raise ValueError(f"encoded value is {len(text)} characters, over Slack's {limit}")
    return text


def encode_proposal(ref: ProposalRef) -> str:
    return _encode(ref, MAX_BUTTON_VALUE)


def encode_entry(ref: EntryRef) -> str:
    return _encode(ref, MAX_BUTTON_VALUE)


def decode_entry(raw: str) -> EntryRef:
    data = _load(raw)
    try:
        return EntryRef(int(data["entry_id"]), int(data["version"]))  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        raise BadInput("That entry button is malformed; use the latest reminder.") from None


def encode_answer(ref: AnswerRef) -> str:
    return _encode(ref, MAX_BUTTON_VALUE)


def encode_draft_context(context: DraftContext) -> str:
    trimmed = DraftContext(context.channel, context.thread_ts, context.permalink[:500], context.question[:1500])
    return _encode(trimmed, MAX_PRIVATE_METADATA)


def _load(raw: str) -> dict[str, object]:
    try:
        data = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        raise BadInput("That button or form came with a value this app did not make; reopen it and retry.") from None
    if not isinstance(data, dict):
        raise BadInput("That button or form came with a value this app did not make; reopen it and retry.")
    return data


def decode_proposal(raw: str) -> ProposalRef:
    data = _load(raw)
    try:
        return ProposalRef(int(data["proposal_id"]), int(data["revision"]))  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError):
        raise BadInput("That approval button is malformed; use the buttons on the latest card.") from None


def decode_answer(raw: str) -> AnswerRef:
    data = _load(raw)
    if not isinstance(data.get("task_id"), str):
        raise BadInput("That answer button is malformed; ask again.")
    return AnswerRef(str(data["task_id"]))


def decode_draft_context(raw: str) -> DraftContext:
    if not raw:
        return DraftContext()
    data = _load(raw)
    return DraftContext(**{k: str(v) for k, v in data.items() if k in DraftContext.__dataclass_fields__})
