"""Retrieval over the index of approved entries: separate vector and keyword searches, fused by rank.

Ranked lists are fused with weighted reciprocal rank fusion (RRF) at the entry level:

* vector search, run per document language, scored by cosine similarity minus the query's similarity to
  that language's centroid. A multilingual embedder pulls a query towards passages in its own language; the
  centroid offset removes that pull, so a Korean question can find an English runbook and the other way round;
* BM25 over the English (word-tokenized) fields, and BM25 over the Korean (Korean-tokenized) fields, as two
  lists: a Korean question's English terms (``etcd``, ``patroni``) still find English runbooks, and neither
  tokenizer's score scale can drown the other;
* and, per language, whole entries by their entry vector (the mean of their chunks' vectors) against the query
  seen from its language's query centre: a vote for the runbook a question is about when no single chunk says
  it all. These lists add no candidates and choose no passage.

Then two steps across the languages: the leading entries vote for the entries of the other language they resemble
(a topic's English runbook for its Korean concept page; never above the first), and a question in a language the
index holds less of sees the index's main language in its first five (see COUNTERPART_WEIGHT, MAIN_LANGUAGE_POOL).

Each entry keeps its best chunk (by the same fusion at chunk level) as its passage, and its best *centred*
similarity to the query (``relevance``) as the confidence signal for "I don't know": the chunk vector measured
from its language's mean chunk vector, the query vector from the mean query vector of its own language
(estimated by embedding a sample of the index's titles and headings as queries). A multilingual embedder gives
every text a large language-specific (and query- or passage-specific) component that says nothing about the
topic; without it the similarity separates "about this" from "about something else" much better.

The searches return ids only; text and stored vectors are fetched afterwards, in one request, for the chunks
that need them (the returned entries' and the head of each list): turning hundreds of results with their
vectors into Python objects held the interpreter lock that concurrent Slack acks were waiting for.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from weaviate.exceptions import WeaviateBaseError

from store.embeddings import Embedder
from store.index import KEYWORD_FIELDS, IndexHit, KnowledgeIndex, LanguageProfile
from store.text import detect_language, link_share, shorten

RRF_K = 60
_QUERIES = ThreadPoolExecutor(max_workers=6, thread_name_prefix="kb-search")  # Weaviate queries of one search
HEADING_SAMPLE = 256  # titles and headings per language embedded as queries to find that language's query centre
# A language's centre is only meaningful over many chunks (over one chunk, that chunk *is* the centre): below
# this many in any language, confidence falls back to the plain cosine similarity.
MIN_CENTRE_CHUNKS = 200
DETAILED = 30  # per ranked list: the head whose chunks get text and vectors (the confidence is read there)
# The vote of each language's entry-vector list (whole runbooks by their mean chunk vector; read off dev.jsonl:
# 0.2 and 0.35 both raised MRR@10 on each half, 0.2 kept recall@5 on both).
ENTRY_WEIGHT = 0.2
# Entries per entry list: 50 ranked as 100 did on dev.jsonl (30 lost a page from a top 5), and the graph search is
# cheaper (Weaviate's dynamic ef follows the limit): +2 ms median at 50,000 entries, not +7.
ENTRY_CANDIDATES = 50
# A passage with this share of its characters in links is a list of links: another chunk of its entry is shown.
LINK_HEAVY = 0.4
# Counterparts: a bilingual knowledge base often holds a topic twice, an English runbook and a Korean concept page.
# Each of the top COUNTERPART_POOL entries gets a vote from each of the top COUNTERPART_SOURCES entries *in the
# other language* that it resembles (centred entry vectors, cosine above COUNTERPART_MIN_SIMILARITY): that entry's
# score times the cosine times COUNTERPART_WEIGHT, never lifting it above the first. Read off dev.jsonl (recall@5
# 0.727 -> 0.748, four English questions found their Korean page, none lost one; docs/benchmarks.md), on a
# plateau: 47 of 48 settings of 1-5 sources, cosine above 0-0.3 and weight 0.05-0.3 gained, neither half lost; a
# pool of 12 did as well as 20 or 100, with fewer first chunks fetched for their entry vectors.
COUNTERPART_POOL = 12
COUNTERPART_SOURCES = 3
COUNTERPART_MIN_SIMILARITY = 0.2
COUNTERPART_WEIGHT = 0.1
# A question in a language the index holds less of is often answered in the language it holds most of (here
# Korean questions by English runbooks): when none of a question's first MAIN_LANGUAGE_WITHIN results is in the
# index's main language, the best-ranked one of it among the first MAIN_LANGUAGE_POOL is moved up to the last of
# them (not for fewer than MAIN_LANGUAGE_MIN_K results: a single answer is the best one). On dev.jsonl it was the
# runbook asked about in 2 of the 10 Korean questions it changed, and the result it displaced was relevant in none
# (recall@5 of Korean questions on English runbooks 0.633 -> 0.783).
MAIN_LANGUAGE_WITHIN = 5
MAIN_LANGUAGE_MIN_K = 3
MAIN_LANGUAGE_POOL = 20


@dataclass
class Confidence:
    """The best similarity of any candidate chunk to the query; ``centred`` tells which scale it is on."""

    value: float
    centred: bool


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
    relevance: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {"entry_id": self.entry_id, "source_ref": self.source_ref or None, "title": self.title,
                "score": round(self.score, 4), "snippet": self.snippet, "version": self.version}


@dataclass
class RankedList:
    """One search's chunks, best first, and the weight of its vote in the fusion. An ``entry_level`` list ranks
    whole entries: it votes for them, not for any of their chunks as the passage."""

    weight: float
    hits: list[IndexHit]
    entry_level: bool = False


@dataclass
class _Votes:
    score: float = 0.0
    chunk_scores: dict[int, float] = field(default_factory=dict)
    chunks: dict[int, IndexHit] = field(default_factory=dict)
    hits: list[IndexHit] = field(default_factory=list)  # every list's hits of this entry

    def best_chunk(self) -> IndexHit:
        """The best-scored chunk that is not mostly links: a "More reading" list answers nothing (shown only when
        nothing else of its entry ranked)."""
        ranked = sorted(self.chunk_scores, key=lambda no: self.chunk_scores[no], reverse=True)
        return self.chunks[next((no for no in ranked if link_share(self.chunks[no].text) < LINK_HEAVY), ranked[0])]


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
        return self.search_with_confidence(query, k=k)[0]

    def search_with_confidence(self, query: str, *, k: int = 5) -> tuple[list[EntryHit], Confidence]:
        """The best ``k`` entries, and the best centred similarity of the chunks near the top (the returned
        entries' and the head of every ranked list): how much anything in the index is about the query at all
        (the signal for "I don't know")."""
        collection = self.index.search_collection()
        try:
            return self._search(query, k, collection)
        except WeaviateBaseError:
            # Another process's rebuild may have swapped the alias and dropped the collection resolved before.
            if not self.index.search_collection_moved(collection):
                raise
            return self._search(query, k, self.index.search_collection())

    def _search(self, query: str, k: int, collection: str) -> tuple[list[EntryHit], Confidence]:
        limit = max(self.candidates, k * 8)
        # The query is embedded first, on every core; then all of Weaviate's searches run at once. BM25 running
        # during the embedding (it needs no vector) took a core from it: with the AVX2 engine 26 ms instead of 13,
        # search p50 +10 ms; with the VNNI engine (3 ms) either order measures the same.
        # They return ids only: the text and stored vectors are fetched below for the few chunks that need them.
        vector = self.embedder.embed_query(query)
        keyword_lists = [_QUERIES.submit(self.index.keyword_search, query, fields=fields, limit=limit,
                                         ranking_only=True, collection=collection) for fields in KEYWORD_FIELDS]
        profiles = self.index.language_profiles(collection=collection)
        centres = bool(profiles) and all(p.chunks >= MIN_CENTRE_CHUNKS for p in profiles.values())
        language = detect_language(query)
        centred = self.centred_query(language, vector, self.with_query_centres(profiles)) if centres else None
        vector_lists = {language: _QUERIES.submit(self.index.vector_search, vector, limit=limit, language=language,
                                                  ranking_only=True, collection=collection)
                        for language in profiles}
        # Whole entries, per language, searched with the centred query (their stored vectors are plain means;
        # the raw query ranked them worse than no entry list at all). Without centres: none.
        entry_lists = [_QUERIES.submit(self.index.entry_search, centred, limit=ENTRY_CANDIDATES, language=language,
                                       collection=collection)
                       for language in profiles if centred is not None]
        vector_list = RankedList(self.alpha, self.vector_hits(
            vector, profiles, {lang: f.result() for lang, f in vector_lists.items()}))
        # Details for every ranked chunk of the returned entries (their passage, and their best similarity) and
        # for the head of every chunk list: the confidence is the best centred similarity among them. The vector
        # list's head is fetched while the keyword searches, the slowest, still run (-3 ms p50 at 50,000 entries).
        early_keys = {_key(h) for h in vector_list.hits[:DETAILED]}
        early_details = _QUERIES.submit(self.index.chunk_details, early_keys, collection=collection)
        chunk_lists = [vector_list, *(RankedList(1.0 - self.alpha, future.result()) for future in keyword_lists)]
        lists = chunk_lists + [RankedList(ENTRY_WEIGHT, f.result(), entry_level=True) for f in entry_lists]
        pool = _best(tally(lists, rrf_k=self.rrf_k), max(k, COUNTERPART_POOL, MAIN_LANGUAGE_POOL))
        # Details for the entries returned as things stand (the votes below seldom change which they are).
        wanted = {_key(h) for _, v in with_main_language(pool, k, language, profiles) for h in v.hits} | {
            _key(h) for r in chunk_lists for h in r.hits[:DETAILED]}
        # The pool's first chunks come along for their entry vectors (the counterpart votes), not as details.
        counterparts = centred is not None and COUNTERPART_WEIGHT > 0
        firsts = {(entry_id, votes.hits[0].version, 0) for entry_id, votes in pool[:COUNTERPART_POOL]
                  } if counterparts else set()
        details = self.index.chunk_details((wanted | firsts) - early_keys, collection=collection)
        details.update(early_details.result())
        entry_vectors = {key[0]: d.entry_vector for key, d in details.items() if d.entry_vector is not None}
        if counterparts:
            pool = self.with_counterparts(pool[:COUNTERPART_POOL], profiles, entry_vectors) + pool[COUNTERPART_POOL:]
        top = with_main_language(pool, k, language, profiles)
        returned = {_key(h) for _, v in top for h in v.hits}
        for key in firsts - wanted - early_keys - returned:
            details.pop(key, None)
        if missing := returned - details.keys():  # an entry moved up by the votes or to the main-language place
            details.update(self.index.chunk_details(missing, collection=collection))
        detailed = self._with_details(chunk_lists, details, vector)
        _set_relevance(detailed, centred, profiles)
        if centres:
            best = max((h.relevance for h in detailed if h.relevance is not None), default=-1.0)
        else:
            best = max((h.similarity for h in detailed if h.similarity is not None), default=0.0)
        return _entry_hits(top, lists, self.rrf_k), Confidence(best, centred=centres)

    @staticmethod
    def _with_details(lists: Sequence[RankedList], details: dict[tuple[int, int, int], IndexHit],
                      vector: np.ndarray) -> list[IndexHit]:
        """Fill in text and stored vector of every ranked hit that has details; returns those hits."""
        filled = [h for r in lists for h in r.hits if _key(h) in details]
        for hit in filled:
            found = details[_key(hit)]
            hit.title, hit.heading_path, hit.text = found.title, found.heading_path, found.text
            hit.source_ref, hit.vector = found.source_ref, found.vector
        with_vectors = [h for h in filled if h.vector is not None]
        if with_vectors:
            similarities = np.stack([h.vector for h in with_vectors if h.vector is not None]) @ vector
            for hit, similarity in zip(with_vectors, similarities, strict=True):
                hit.similarity = float(similarity)
        return filled

    @staticmethod
    def with_counterparts(ranked: list[tuple[int, _Votes]], profiles: dict[str, LanguageProfile],
                          entry_vectors: dict[int, np.ndarray]) -> list[tuple[int, _Votes]]:
        """``ranked`` with each entry's vote from the leading entries of the other language it resembles (see
        COUNTERPART_WEIGHT), re-ranked; the first stays first. An entry without an entry vector neither gives nor
        gets a vote."""
        if len(ranked) < 2:
            return ranked
        centred = {entry_id: _unit(entry_vectors[entry_id] - profiles[votes.hits[0].language].centroid)
                   for entry_id, votes in ranked if entry_id in entry_vectors and votes.hits[0].language in profiles}
        sources = [(entry_id, votes.score, votes.hits[0].language) for entry_id, votes in ranked[:COUNTERPART_SOURCES]
                   if entry_id in centred]  # their scores as fused, before any vote of this step
        ceiling = ranked[0][1].score
        for entry_id, votes in ranked[1:]:
            if entry_id not in centred:
                continue
            language = votes.hits[0].language
            similarities = [(score, float(centred[source_id] @ centred[entry_id]))
                            for source_id, score, source_language in sources if source_language != language]
            bonus = COUNTERPART_WEIGHT * sum(score * cosine for score, cosine in similarities
                                             if cosine > COUNTERPART_MIN_SIMILARITY)
            votes.score = max(votes.score, min(votes.score + bonus, ceiling))
        order = {entry_id: n for n, (entry_id, _) in enumerate(ranked)}  # ties keep their order: the first stays
        return sorted(ranked, key=lambda item: (-item[1].score, order[item[0]]))

    def with_query_centres(self, profiles: dict[str, LanguageProfile]) -> dict[str, LanguageProfile]:
        """The index's languages, each with its passage centre and (computed here, once) its query centre."""
        for profile in profiles.values():
            if profile.query_centroid is None:
                step = max(1, len(profile.headings) // HEADING_SAMPLE)
                sample = profile.headings[::step][:HEADING_SAMPLE]
                vectors = self.embedder.embed_queries(sample) if sample else np.zeros((0, len(profile.centroid)))
                profile.query_centroid = (np.asarray(vectors, dtype=np.float32).mean(axis=0) if len(vectors)
                                          else np.zeros_like(profile.centroid))
        return profiles

    @staticmethod
    def centred_query(query_language: str, vector: np.ndarray, profiles: dict[str, LanguageProfile]) -> np.ndarray:
        """The query vector seen from the centre of its language's queries, as a unit vector."""
        if not profiles:
            return vector
        profile = profiles.get(query_language)
        origin = (profile.query_centroid if profile is not None and profile.query_centroid is not None
                  else np.mean([p.query_centroid for p in profiles.values() if p.query_centroid is not None], axis=0))
        return _unit(vector - origin)

    @staticmethod
    def vector_hits(vector: np.ndarray, profiles: dict[str, LanguageProfile], found: dict[str, list[IndexHit]]
                    ) -> list[IndexHit]:
        """The nearest chunks ``found`` for each language, ranked together by cosine minus the query's similarity
        to that language's centre (the ranking measured fully from the centres was no better on the
        benchmark)."""
        hits: list[IndexHit] = []
        for language, profile in profiles.items():
            offset = float(np.dot(profile.centroid, vector))
            nearest = found[language]
            for hit in nearest:
                hit.score = (hit.similarity or 0.0) - offset
            hits.extend(nearest)
        return sorted(hits, key=lambda h: h.score, reverse=True)


def with_main_language(ranked: list[tuple[int, _Votes]], k: int, question_language: str,
                       profiles: dict[str, LanguageProfile]) -> list[tuple[int, _Votes]]:
    """The first ``k`` of ``ranked``; when the question is in another language than the index's main one (the one
    with most chunks) and none of the first five (or of all ``k``, if fewer) is in the main language, its
    best-ranked entry is moved up to the fifth (last) place (see MAIN_LANGUAGE_POOL)."""
    within = min(k, MAIN_LANGUAGE_WITHIN)
    if within < MAIN_LANGUAGE_MIN_K or not profiles:
        return ranked[:k]
    main = max(profiles, key=lambda language: profiles[language].chunks)
    if question_language == main or any(votes.hits[0].language == main for _, votes in ranked[:within]):
        return ranked[:k]
    best = next((item for item in ranked[within:MAIN_LANGUAGE_POOL] if item[1].hits[0].language == main), None)
    if best is None:
        return ranked[:k]
    return [*ranked[:within - 1], best, *(item for item in ranked[within - 1:] if item is not best)][:k]


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _set_relevance(hits: Sequence[IndexHit], centred_query: np.ndarray | None,
                   profiles: dict[str, LanguageProfile]) -> None:
    """Each hit's cosine between its chunk vector, seen from its language's centre, and the centred query
    vector (None while the index is too small for centres; -1 for a chunk without a vector yet). One matrix
    product per language: a search scores hundreds of chunks, and per-hit numpy calls held the GIL for
    milliseconds that concurrent acks were waiting for."""
    for hit in hits:
        hit.relevance = None if centred_query is None else -1.0
    if centred_query is None:
        return
    for language, profile in profiles.items():
        scored = [h for h in hits if h.language == language and h.vector is not None]
        if not scored:
            continue
        offsets = np.stack([h.vector for h in scored if h.vector is not None]) - profile.centroid
        norms = np.linalg.norm(offsets, axis=1)
        cosines = (offsets @ centred_query) / np.where(norms > 0, norms, 1.0)
        for hit, cosine in zip(scored, cosines, strict=True):
            hit.relevance = float(cosine)


def fuse(lists: Sequence[RankedList], *, rrf_k: int = RRF_K, limit: int | None = None) -> list[EntryHit]:
    """Weighted reciprocal rank fusion: an entry earns ``weight / (rrf_k + rank)`` from each list by its best
    chunk's rank among entries, so a long entry gets no more votes than a short one. Scores are scaled so that
    an entry ranked first by every list scores 1. Only the best ``limit`` entries are built into hits."""
    return _entry_hits(_best(tally(lists, rrf_k=rrf_k), limit), lists, rrf_k)


def tally(lists: Sequence[RankedList], *, rrf_k: int = RRF_K) -> dict[int, _Votes]:
    """Each entry's fused score and its chunks' (see ``fuse``)."""
    votes: dict[int, _Votes] = {}
    for ranked in sorted(lists, key=lambda r: r.entry_level):  # chunk lists first: they make the candidates
        _vote(votes, ranked, rrf_k)
    return votes


def _best(votes: dict[int, _Votes], limit: int | None) -> list[tuple[int, _Votes]]:
    return sorted(votes.items(), key=lambda item: item[1].score, reverse=True)[:limit]


def _entry_hits(top: list[tuple[int, _Votes]], lists: Sequence[RankedList], rrf_k: int) -> list[EntryHit]:
    """The ranked entries as hits, their scores divided by that of an entry ranked first by every list."""
    scale = sum(r.weight for r in lists if r.hits) / (rrf_k + 1) or 1.0
    return [_entry_hit(entry_id, votes, votes.score / scale) for entry_id, votes in top]


def _key(hit: IndexHit) -> tuple[int, int, int]:
    return hit.entry_id, hit.version, hit.chunk_no


def _vote(votes: dict[int, _Votes], ranked: RankedList, rrf_k: int) -> None:
    seen: set[int] = set()
    for position, hit in enumerate(ranked.hits):
        if ranked.entry_level:
            seen.add(hit.entry_id)
            if hit.entry_id in votes:  # only chunk lists make candidates: an entry needs a passage to show
                votes[hit.entry_id].score += ranked.weight / (rrf_k + len(seen))
            continue
        entry = votes.setdefault(hit.entry_id, _Votes())
        if hit.entry_id not in seen:
            seen.add(hit.entry_id)
            entry.score += ranked.weight / (rrf_k + len(seen))
        entry.chunks.setdefault(hit.chunk_no, hit)
        entry.chunk_scores[hit.chunk_no] = entry.chunk_scores.get(hit.chunk_no, 0.0) + ranked.weight / (
            rrf_k + position + 1)
        entry.hits.append(hit)


def _entry_hit(entry_id: int, votes: _Votes, score: float) -> EntryHit:
    """The entry's best chunk as its passage; its best similarity and centred similarity over all its chunks
    that have them (read now: a search fills details in after ranking)."""
    chunk = votes.best_chunk()
    similarity = max((h.similarity for h in votes.hits if h.similarity is not None), default=0.0)
    relevance = max((h.relevance for h in votes.hits if h.relevance is not None), default=-1.0)
    return EntryHit(
        entry_id=entry_id, version=chunk.version, source_ref=chunk.source_ref, title=chunk.title, score=score,
        snippet=shorten(chunk.text, 300), passage=chunk.text, heading_path=chunk.heading_path,
        language=chunk.language, similarity=max(similarity, 0.0), relevance=relevance,
    )
