"""The --quick modes' sample of a question set: small enough for the test suite, still scored like the real run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar


class _Question(Protocol):
    @property
    def relevant(self) -> list[str]: ...


Doc = TypeVar("Doc")
Q = TypeVar("Q", bound=_Question)


def quick_subset(documents: Mapping[str, Doc], questions: Sequence[Q], *, limit: int) -> tuple[list[Doc], list[Q]]:
    """The documents the first answerable questions point at (about ``limit``), those questions, and the first
    unanswerable one."""
    chosen: dict[str, Doc] = {}
    kept: list[Q] = []
    for question in questions:
        if len(chosen) >= limit:
            break
        if question.relevant and all(ref in documents for ref in question.relevant):
            kept.append(question)
            chosen.update((ref, documents[ref]) for ref in question.relevant)
    kept.extend([q for q in questions if not q.relevant][:1])
    return list(chosen.values()), kept
