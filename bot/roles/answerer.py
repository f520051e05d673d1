"""The Answerer's extractive mode: quote the most relevant lines of the best passages, each cited.

Used when no LLM is configured, and as the fallback when Claude fails. It answers only from retrieved,
approved passages, and says it does not know when retrieval is not confident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.retrieval import EntryHit
from store.text import collapse_whitespace, detect_language, shorten

DONT_KNOW = {
    "en": "I don't know: no approved entry answers this. The question is logged as a knowledge gap; "
    "if you find the answer, propose it with `kb propose`.",
    "ko": "모르겠습니다. 이 질문에 답하는 승인된 문서가 없습니다. 질문은 지식 공백으로 기록되었습니다. "
    "답을 찾으시면 `kb propose`로 제안해 주세요.",
}
INTRO = {"en": "From the approved runbooks:", "ko": "승인된 런북에서 찾은 내용입니다:"}

_TOKEN = re.compile(r"[a-z0-9]+|[\uac00-\ud7a3]+")


@dataclass
class Citation:
    entry_id: int
    source_ref: str | None
    title: str
    version: int
    heading_path: str = ""

    def as_json(self) -> dict[str, object]:
        return {"entry_id": self.entry_id, "source_ref": self.source_ref, "title": self.title,
                "version": self.version}


@dataclass
class Answer:
    text: str
    citations: list[Citation]
    grounded: bool
    language: str = "en"
    degraded: bool = False
    mode: str = "extractive"
    hits: list[EntryHit] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"answer": self.text, "citations": [c.as_json() for c in self.citations],
                "grounded": self.grounded}


def _terms(text: str) -> set[str]:
    terms: set[str] = set()
    for token in _TOKEN.findall(text.lower()):
        if token[0] >= "\uac00":
            terms.update(token[i : i + 2] for i in range(max(1, len(token) - 1)))
        elif len(token) > 2:
            terms.add(token)
    return terms


def key_lines(question: str, passage: str, *, limit: int = 4, max_chars: int = 600) -> str:
    """The lines of a passage that share the most terms with the question, kept in their original order."""
    wanted = _terms(question)
    lines = [line.strip() for line in passage.splitlines() if len(line.strip()) > 3]
    if not lines:
        return shorten(passage, max_chars)
    ranked = sorted(range(len(lines)), key=lambda i: (-len(_terms(lines[i]) & wanted), i))
    chosen = sorted(ranked[:limit])
    return shorten(" … ".join(collapse_whitespace(lines[i]) for i in chosen), max_chars)


def confidence(hits: list[EntryHit]) -> float:
    """The best cosine similarity between the question and any retrieved passage. Rank fusion decides the
    order of the hits, but only the embedding similarity says whether anything is about the question at all."""
    return max((hit.similarity for hit in hits), default=0.0)


def is_confident(hits: list[EntryHit], min_similarity: float) -> bool:
    return bool(hits) and confidence(hits) >= min_similarity


def dont_know(question: str, hits: list[EntryHit] | None = None) -> Answer:
    language = detect_language(question)
    return Answer(text=DONT_KNOW[language], citations=[], grounded=False, language=language, hits=hits or [])


def extractive_answer(question: str, hits: list[EntryHit], *, min_similarity: float,
                      max_passages: int = 3) -> Answer:
    if not is_confident(hits, min_similarity):
        return dont_know(question, hits)
    language = detect_language(question)
    top = hits[0].score
    chosen = [h for h in hits[:max_passages] if h.similarity >= min_similarity and h.score >= 0.5 * top]
    chosen = chosen or hits[:1]
    parts = [INTRO[language]]
    citations = []
    for number, hit in enumerate(chosen, start=1):
        where = f" › {hit.heading_path}" if hit.heading_path else ""
        parts.append(f"[{number}] {hit.title}{where} (entry #{hit.entry_id} v{hit.version})\n"
                     f"> {key_lines(question, hit.passage)}")
        citations.append(Citation(hit.entry_id, hit.source_ref or None, hit.title, hit.version, hit.heading_path))
    return Answer(text="\n\n".join(parts), citations=citations, grounded=True, language=language, hits=hits)
