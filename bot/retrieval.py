"""Retrieval over the index of approved entries: separate vector and keyword searches, fused by rank.

Three ranked lists of chunks are fused with weighted reciprocal rank fusion (RRF) at the entry level:

* vector search, run per document language, scored by cosine similarity minus the query's similarity to
  that language's centroid. A multilingual embedder pulls a query towards passages in its own language; the
  centroid offset removes that pull, so a Korean question can find an English runbook and the other way round;
* BM25 over the English (word-tokenized) fields, and BM25 over the Korean (Korean-tokenized) fields, as two
  lists: a Korean question's English terms (``etcd``, ``patroni``) still find English runbooks, and neither
  tokenizer's score scale can drown the other.

Each entry keeps its best chunk (by the same fusion at chunk level) as its passage, and its best cosine
similarity to the query as the confidence signal for "I don't know".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from store.embeddings import Embedder
from store.index import KEYWORD_FIELDS, IndexHit, KnowledgeIndex
from store.text import shorten

RRF_K = 60


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


@dataclass
class RankedList:
    """One search's chunks, best first, and the weight of its vote in the fusion."""

    weight: float
    hits: list[IndexHit]


@dataclass
class _Votes:
    score: float = 0.0
    similarity: float = 0.0
    chunk_scores: dict[int, float] = field(default_factory=dict)
    chunks: dict[int, IndexHit] = field(default_factory=dict)

    def best_chunk(self) -> IndexHit:
        return self.chunks[max(self.chunk_scores, key=lambda no: self.chunk_scores[no])]


class Retriever:
    """``alpha`` weighs the vector list against each keyword list (0 keyword only, 1 vector only)."""

    def __init__(self, *, index: KnowledgeIndex, embedder: Embedder, alpha: float = 0.65,
                 candidates: int = 100, rrf_k: int = RRF_K) -> None:
        self.index = index
        self.embedder = embedder
        self.alpha = alpha
        self.candidates = candidates
        self.rrf_k = rrf_k

    def search(self, query: str, *, k: int = 5) -> list[EntryHit]:
        vector = self.embedder.embed_query(query)
        limit = max(self.candidates, k * 8)
        lists = [RankedList(self.alpha, self.vector_hits(vector, limit=limit))]
        lists += [RankedList(1.0 - self.alpha, self.index.keyword_search(query, fields=fields, limit=limit,
                                                                         vector=vector))
                  for fields in KEYWORD_FIELDS]
        return fuse(lists, rrf_k=self.rrf_k)[:k]

    def vector_hits(self, vector: np.ndarray, *, limit: int) -> list[IndexHit]:
        """Nearest chunks of every language, each scored relative to its language's centroid."""
        hits: list[IndexHit] = []
        for language, centroid in self.index.language_centroids().items():
            offset = float(np.dot(centroid, vector))
            for hit in self.index.vector_search(vector, limit=limit, language=language):
                hit.score = (hit.similarity or 0.0) - offset
                hits.append(hit)
        return sorted(hits, key=lambda h: h.score, reverse=True)


def fuse(lists: Sequence[RankedList], *, rrf_k: int = RRF_K) -> list[EntryHit]:
    """Weighted reciprocal rank fusion: an entry earns ``weight / (rrf_k + rank)`` from each list by its best
    chunk's rank among entries, so a long entry gets no more votes than a short one. Scores are scaled so that
    an entry ranked first by every list scores 1."""
    votes: dict[int, _Votes] = {}
    for ranked in lists:
        _vote(votes, ranked, rrf_k)
    top = sum(r.weight for r in lists if r.hits) / (rrf_k + 1) or 1.0
    hits = [_entry_hit(entry_id, v, v.score / top) for entry_id, v in votes.items()]
    return sorted(hits, key=lambda h: h.score, reverse=True)


def _vote(votes: dict[int, _Votes], ranked: RankedList, rrf_k: int) -> None:
    seen: set[int] = set()
    for position, hit in enumerate(ranked.hits):
        entry = votes.setdefault(hit.entry_id, _Votes())
        if hit.entry_id not in seen:
            seen.add(hit.entry_id)
            entry.score += ranked.weight / (rrf_k + len(seen))
        entry.chunks.setdefault(hit.chunk_no, hit)
        entry.chunk_scores[hit.chunk_no] = entry.chunk_scores.get(hit.chunk_no, 0.0) + ranked.weight / (
            rrf_k + position + 1)
        if hit.similarity is not None:
            entry.similarity = max(entry.similarity, hit.similarity)


def _entry_hit(entry_id: int, votes: _Votes, score: float) -> EntryHit:
    chunk = votes.best_chunk()
    return EntryHit(
        entry_id=entry_id, version=chunk.version, source_ref=chunk.source_ref, title=chunk.title, score=score,
        snippet=shorten(chunk.text, 300), passage=chunk.text, heading_path=chunk.heading_path,
        language=chunk.language, similarity=votes.similarity,
    )
