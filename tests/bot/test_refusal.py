"""When the bot says "I don't know": the refusal policy and the names it checks against the index."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bot.retrieval import Confidence, EntryHit, Retriever
from bot.roles.answerer import RefusalPolicy, extractive_answer, name_terms
from store.index import LanguageProfile
from store.text import detect_language

POLICY = RefusalPolicy(min_relevance=0.27, min_relevance_unknown=0.33, min_similarity=0.855)


def _hit(relevance: float, similarity: float = 0.9) -> EntryHit:
    return EntryHit(entry_id=1, version=1, source_ref="doc", title="Patroni failover", score=1.0,
                    snippet="", passage="Switch the patroni leader with patronictl switchover.",
                    heading_path="", language="en", similarity=similarity, relevance=relevance)


@pytest.mark.parametrize(("question", "names"), [
    ("Kong 게이트웨이에서 upstream 502가 계속 나요", ["kong", "upstream"]),
    ("사내 WireGuard VPN이 10분마다 끊겨요", ["wireguard", "vpn"]),
    ("Our ClickHouse inserts fail on k3s", ["clickhouse", "k3s"]),
    ("Why does Nomad keep a job pending?", ["nomad"]),
    ("the nic on a bare metal node is racking up receive errors", []),  # everyday words are not names
    ("Pods restart. The operator complains", []),  # a capital at a sentence start is not a name
])
def test_name_terms(question: str, names: list[str]) -> None:
    assert name_terms(question) == names


def test_refusal_policy_thresholds() -> None:
    hits = [_hit(0.30)]
    assert POLICY.refuse(hits, Confidence(0.20, centred=True), [])
    assert not POLICY.refuse(hits, Confidence(0.30, centred=True), [])
    assert POLICY.refuse(hits, Confidence(0.30, centred=True), ["nomad"])  # an unknown name, moderately close
    assert not POLICY.refuse(hits, Confidence(0.40, centred=True), ["nomad"])  # close enough all the same
    assert POLICY.refuse([], Confidence(0.90, centred=True), [])
    # a small index has no reliable language centres: plain cosine, old threshold
    assert POLICY.refuse(hits, Confidence(0.80, centred=False), [])
    assert not POLICY.refuse(hits, Confidence(0.90, centred=False), [])
    assert POLICY.needs_terms(Confidence(0.30, centred=True))
    assert not POLICY.needs_terms(Confidence(0.40, centred=True))
    assert not POLICY.needs_terms(Confidence(0.30, centred=False))


def test_extractive_answer_reports_confidence() -> None:
    refused = extractive_answer("how do i move the patroni leader", [_hit(0.2)], policy=POLICY,
                                best=Confidence(0.2, centred=True))
    assert not refused.grounded and refused.confidence == 0.2
    answered = extractive_answer("how do i move the patroni leader", [_hit(0.4)], policy=POLICY,
                                 best=Confidence(0.4, centred=True))
    assert answered.grounded and answered.citations[0].title == "Patroni failover"


def test_the_best_passage_gets_most_of_an_extractive_answer() -> None:
    steps = "\n".join(f"{n}. Run patronictl step {n} for the patroni leader switch." for n in range(1, 11))
    first, second = (replace(_hit(0.4), entry_id=n, passage=steps, title=f"Runbook {n}") for n in (1, 2))
    answer = extractive_answer("patroni leader switch", [first, second], policy=POLICY,
                               best=Confidence(0.4, centred=True))
    quoted = [part.split("\n> ", 1)[1] for part in answer.text.split("\n\n") if "\n> " in part]
    assert [quote.count("patronictl") for quote in quoted] == [8, 2]  # 8 lines of the best, 2 of the next


def test_centred_query_uses_its_language_query_centre() -> None:
    en = LanguageProfile(centroid=np.array([1.0, 0.0, 0.0], dtype=np.float32), headings=[],
                         query_centroid=np.array([0.5, 0.0, 0.0], dtype=np.float32))
    ko = LanguageProfile(centroid=np.array([0.0, 1.0, 0.0], dtype=np.float32), headings=[],
                         query_centroid=np.array([0.0, 0.5, 0.0], dtype=np.float32))
    vector = np.array([0.5, 0.0, 0.5], dtype=np.float32)
    centred = Retriever.centred_query(detect_language("how do i fix it"), vector, {"en": en, "ko": ko})
    assert np.allclose(centred, [0.0, 0.0, 1.0])
    centred_ko = Retriever.centred_query(detect_language("어떻게 고쳐요"), vector, {"en": en, "ko": ko})
    assert np.isclose(np.linalg.norm(centred_ko), 1.0) and centred_ko[1] < 0
