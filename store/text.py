"""Small text helpers shared by the store and the roles: language, hashing, snippets."""

from __future__ import annotations

import hashlib
import re
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mecab import MeCab

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LETTER = re.compile(r"[^\W\d_]")


def hangul_ratio(text: str) -> float:
    letters = len(_LETTER.findall(text))
    if not letters:
        return 0.0
    return len(_HANGUL.findall(text)) / letters


def has_hangul(text: str) -> bool:
    return _HANGUL.search(text) is not None


# What a Korean keyword query keeps, by mecab-ko-dic's part of speech: nouns, roots, numbers and foreign words.
# Particles, endings and punctuation match nearly every Korean chunk: they made the Korean BM25 of a Korean question
# the slowest query of a search (45 ms p50 at 50,000 entries, 19 ms without them) and ranked no better.
KOREAN_CONTENT_TAGS = frozenset({"NNG", "NNP", "NR", "XR", "SL", "SH", "SN"})


@cache
def _korean_analyzer() -> MeCab:
    """One tagger per process (its dictionary memory-mapped, ~70 MB), made when a Korean query first needs it; it
    parses each text in a lattice of its own, so threads share it."""
    from mecab import MeCab

    return MeCab()


def korean_keywords(text: str) -> str:
    """The content words of ``text`` (KOREAN_CONTENT_TAGS), space-separated, for a keyword search through the
    Korean tokenizer; ``text`` itself when it has none. mecab-ko-dic is the dictionary of Weaviate's ``kagome_kr``
    tokenizer too, so the words kept are cut as the index cut them."""
    words = [surface for surface, tag in _korean_analyzer().pos(text)
             if tag.split("+", 1)[0] in KOREAN_CONTENT_TAGS]
    return " ".join(words) or text


def detect_language(text: str) -> str:
    """'ko' when a noticeable share of the letters are Hangul (Korean prose mixes in English terms)."""
    return "ko" if hangul_ratio(text) >= 0.2 else "en"


def content_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


_LINK = re.compile(r"https?://\S+|\[[^\]]*\]\([^)]*\)")  # a bare URL, or a markdown link with its text


def link_share(text: str) -> float:
    """The share of ``text``'s characters that are links (URLs, markdown links with their text)."""
    return sum(len(m.group(0)) for m in _LINK.finditer(text)) / len(text) if text else 0.0


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
