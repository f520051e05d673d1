"""Small text helpers shared by the store and the roles: language, hashing, snippets."""

from __future__ import annotations

import hashlib
import re

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LETTER = re.compile(r"[^\W\d_]")


def hangul_ratio(text: str) -> float:
    letters = len(_LETTER.findall(text))
    if not letters:
        return 0.0
    return len(_HANGUL.findall(text)) / letters


def has_hangul(text: str) -> bool:
    return _HANGUL.search(text) is not None


def detect_language(text: str) -> str:
    """'ko' when a noticeable share of the letters are Hangul (Korean prose mixes in English terms)."""
    return "ko" if hangul_ratio(text) >= 0.2 else "en"


def content_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


_WS = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    return _WS.sub(" ", text).strip()


def shorten(text: str, limit: int) -> str:
    text = collapse_whitespace(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut + "…"
