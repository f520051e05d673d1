"""Rank fusion and the centred relevance, without a server: the arithmetic the search's answers rest on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from bot.retrieval import (
    COUNTERPART_WEIGHT,
    RankedList,
    Retriever,
    _best,
    _set_relevance,
    fuse,
    tally,
    with_main_language,
)
from store.index import IndexHit, LanguageProfile


def _chunk(entry_id: int, chunk_no: int = 0, *, language: str = "en", vector: np.ndarray | None = None) -> IndexHit:
    return IndexHit(entry_id=entry_id, version=1, chunk_no=chunk_no, source_ref=f"doc-{entry_id}",
                    title=f"Entry {entry_id}", heading_path="", text=f"text of entry {entry_id}",
                    language=language, score=0.0, vector=vector)


def test_fusion_ranks_by_weighted_reciprocal_rank_and_builds_only_the_best() -> None:
    vector_list = RankedList(0.65, [_chunk(1), _chunk(2), _chunk(3)])
    keyword_list = RankedList(0.35, [_chunk(3), _chunk(3, 1), _chunk(2), _chunk(4)])
    everything = fuse([vector_list, keyword_list])
    # entry 2: 0.65/62 + 0.35/62 beats entry 1 (0.65/61) and entry 3 (0.65/63 + 0.35/61)
    assert [h.entry_id for h in everything] == [2, 3, 1, 4]
    assert everything[0].score < 1.0 < everything[0].score + 0.02  # near the top on both lists: close to 1
    top_two = fuse([vector_list, keyword_list], limit=2)
    assert [(h.entry_id, h.score) for h in top_two] == [(h.entry_id, h.score) for h in everything[:2]]


def test_fusion_counts_an_entry_once_per_list_however_many_chunks_it_has() -> None:
    long_entry = [_chunk(1, n) for n in range(5)]
    fused = fuse([RankedList(1.0, [*long_entry, _chunk(2)])])
    assert [h.entry_id for h in fused] == [1, 2]
    assert fused[1].score == (1 / 62) / (1 / 61)  # entry 2 is the second *entry*, not the sixth chunk


def test_relevance_is_the_cosine_seen_from_the_chunk_languages_centre() -> None:
    rng = np.random.default_rng(7)
    profiles = {lang: LanguageProfile(centroid=rng.normal(size=8).astype(np.float32), headings=[], chunks=500)
                for lang in ("en", "ko")}
    query = rng.normal(size=8).astype(np.float32)
    query /= np.linalg.norm(query)
    hits = [_chunk(n, language=lang, vector=rng.normal(size=8).astype(np.float32))
            for n, lang in enumerate(["en", "ko", "en", "ko"])]
    hits.append(_chunk(9))  # no vector yet (keyword-first import): the lowest relevance
    _set_relevance(hits, query, profiles)
    for hit in hits[:4]:
        assert hit.vector is not None
        offset = hit.vector - profiles[hit.language].centroid
        assert hit.relevance is not None
        assert abs(hit.relevance - float(offset @ query / np.linalg.norm(offset))) < 1e-5
    assert hits[4].relevance == -1.0
    _set_relevance(hits, None, profiles)  # an index too small for centres: no centred relevance at all
    assert all(h.relevance is None for h in hits)


def test_an_entry_list_votes_for_entries_but_neither_adds_candidates_nor_picks_passages() -> None:
    chunks = RankedList(0.65, [_chunk(1, 2), _chunk(2, 1)])
    entries = RankedList(0.2, [_chunk(7), _chunk(2), _chunk(1)], entry_level=True)  # chunk 0 stands for the entry
    fused = fuse([entries, chunks])  # the order of the lists does not matter
    assert [h.entry_id for h in fused] == [1, 2]  # entry 7, in no chunk list, is no candidate
    # ranks in the entry list count entry 7: entry 2 is second, entry 1 third
    scale = (0.65 + 0.2) / 61
    assert [h.score for h in fused] == [(0.65 / 61 + 0.2 / 63) / scale, (0.65 / 62 + 0.2 / 62) / scale]
    votes = tally([entries, chunks])
    assert [votes[e].best_chunk().chunk_no for e in (1, 2)] == [2, 1]  # passages from chunk lists only
    assert [len(votes[e].hits) for e in (1, 2)] == [1, 1]  # and only their chunks get details


def test_the_passage_is_not_a_list_of_links_when_the_entry_has_prose_ranked() -> None:
    reading = replace(_chunk(1, 3), heading_path="More reading",
                      text="- [Vacuuming](https://www.postgresql.org/docs/current/routine-vacuuming.html)\n"
                           "- https://www.interdb.jp/pg/pgsql05.html")
    steps = replace(_chunk(1, 1), text="Kill the oldest transactions, then VACUUM the oldest tables first. "
                                       "See [the dashboard](https://dashboards.example/xid) for progress.")
    fused = fuse([RankedList(1.0, [reading, steps, _chunk(2)])])
    assert fused[0].entry_id == 1 and fused[0].passage == steps.text  # ranked below the links, still the passage

    only_links = fuse([RankedList(1.0, [replace(reading, entry_id=3)])])
    assert only_links[0].passage == reading.text  # nothing else of the entry ranked: the links it is


def test_a_counterpart_in_the_other_language_is_voted_up_but_never_above_the_first() -> None:
    # English runbooks 1-6 ranked by the chunk lists; Korean page 7 last; page 8 (Korean) resembles nothing.
    english = [_chunk(n) for n in range(1, 7)]
    korean = [_chunk(7, language="ko"), _chunk(8, language="ko"), _chunk(9, language="ko")]
    pool = _best(tally([RankedList(1.0, [*english, *korean])]), 20)
    assert [entry for entry, _ in pool] == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    axis = np.eye(4, dtype=np.float32)
    profiles = {lang: LanguageProfile(centroid=np.zeros(4, dtype=np.float32), headings=[], chunks=500)
                for lang in ("en", "ko")}
    vectors = {1: axis[0], 2: axis[1], 3: axis[2], 4: axis[2], 5: axis[2], 6: axis[2],
               7: axis[0] + 0.1 * axis[3],  # the Korean page on the first runbook's topic
               8: axis[3],
               9: axis[1] + 2 * axis[3]}  # partly on the second runbook's topic
    fused = {entry: votes.score for entry, votes in pool}
    ranked = Retriever.with_counterparts(pool, profiles, vectors)
    assert [entry for entry, _ in ranked][:5] == [1, 7, 2, 3, 4]  # lifted into the top five, under the first
    scores = {entry: votes.score for entry, votes in ranked}
    cosine = 1 / np.sqrt(1.01)
    assert fused[7] + COUNTERPART_WEIGHT * fused[1] * cosine > fused[1]  # so its vote is capped at the first's score
    assert scores[7] == scores[1] == fused[1]
    assert scores[8] == fused[8]  # resembles no leading entry
    assert abs(scores[9] - (fused[9] + COUNTERPART_WEIGHT * fused[2] / np.sqrt(5))) < 1e-8
    assert [entry for entry, _ in ranked][5:] == [5, 9, 6, 8]  # past 6, not into the top five
    assert all(scores[e] == fused[e] for e in range(2, 7))  # English like the sources: no vote from its own language

    # An entry without an entry vector neither gives nor gets a vote; a pool of one is left alone.
    assert [e for e, _ in Retriever.with_counterparts(
        _best(tally([RankedList(1.0, [*english, *korean])]), 20), profiles, {7: vectors[7]})] == list(range(1, 10))
    assert Retriever.with_counterparts(pool[:1], profiles, vectors) == pool[:1]


def test_a_question_in_another_language_sees_the_best_entry_of_the_main_one_within_five() -> None:
    profiles = {"en": LanguageProfile(centroid=np.zeros(4, dtype=np.float32), headings=[], chunks=900),
                "ko": LanguageProfile(centroid=np.zeros(4, dtype=np.float32), headings=[], chunks=300)}
    languages = ["ko"] * 7 + ["en", "ko", "en"]  # entries 1-7 Korean, 8 English, 9 Korean, 10 English
    pool = _best(tally([RankedList(1.0, [_chunk(n, language=lang) for n, lang in enumerate(languages, 1)])]), 20)

    def ranked(k: int, question: str = "ko") -> list[int]:
        return [entry for entry, _ in with_main_language(pool, k, question, profiles)]

    assert ranked(5) == [1, 2, 3, 4, 8]  # the best English entry takes the fifth place
    assert ranked(10) == [1, 2, 3, 4, 8, 5, 6, 7, 9, 10]  # the rest one down, none lost
    assert ranked(3) == [1, 2, 8]
    assert ranked(2) == [1, 2]  # one or two results: the best ones
    assert ranked(5, "en") == [1, 2, 3, 4, 5]  # a question in the main language: as ranked
    assert with_main_language(pool[:6], 5, "ko", profiles) == pool[:5]  # no English entry near enough
    english_fourth = _best(tally([RankedList(1.0, [_chunk(n, language="en" if n == 4 else "ko")
                                                   for n in range(1, 9)])]), 20)
    assert with_main_language(english_fourth, 5, "ko", profiles) == english_fourth[:5]  # one is there already
