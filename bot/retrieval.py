"""Hybrid retrieval over the index of approved entries: best chunk per entry, with a confidence signal."""

from __future__ import annotations

from dataclasses import dataclass

from store.embeddings import Embedder
from store.index import IndexHit, KnowledgeIndex
from store.text import shorten


@dataclass
class EntryHit:
    entry_id: int
    version: int
    source_ref: str
    title: str
    score: float
    snippet: str
    passage: str
    heading_path: str
    language: str
    similarity: float

    def as_json(self) -> dict[str, object]:
        return {"entry_id": self.entry_id, "source_ref": self.source_ref or None, "title": self.title,
                "score": round(self.score, 4), "snippet": self.snippet, "version": self.version}


class Retriever:
    def __init__(self, *, index: KnowledgeIndex, embedder: Embedder, alpha: float = 0.5,
                 candidates: int = 60) -> None:
        self.index = index
        self.embedder = embedder
        self.alpha = alpha
        self.candidates = candidates

    def search(self, query: str, *, k: int = 5) -> list[EntryHit]:
        vector = self.embedder.embed_query(query)
        chunks = self.index.search(query, vector, limit=max(self.candidates, k * 8), alpha=self.alpha)
        return self.group_by_entry(chunks)[:k]

    @staticmethod
    def group_by_entry(chunks: list[IndexHit]) -> list[EntryHit]:
        """One hit per entry: its best chunk's score and passage, and its best similarity."""
        best: dict[int, EntryHit] = {}
        for chunk in chunks:
            similarity = chunk.similarity if chunk.similarity is not None else 0.0
            hit = best.get(chunk.entry_id)
            if hit is None:
                best[chunk.entry_id] = EntryHit(
                    entry_id=chunk.entry_id, version=chunk.version, source_ref=chunk.source_ref,
                    title=chunk.title, score=chunk.score, snippet=shorten(chunk.text, 300), passage=chunk.text,
                    heading_path=chunk.heading_path, language=chunk.language, similarity=similarity,
                )
            else:
                hit.similarity = max(hit.similarity, similarity)
        return sorted(best.values(), key=lambda h: h.score, reverse=True)
