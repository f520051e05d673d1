"""The quality benchmark's --quick mode: every figure is printed, ours beside each peer (plain BM25, vector-only,
LangChain's Weaviate vector store), the JSON holds them all and the plot is a PNG (shape, not values)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, free_port

ROOT = Path(__file__).resolve().parents[2]


PEERS = ("bm25", "vector", "langchain")


@pytest.mark.weaviate
def test_quality_quick_prints_ours_beside_each_peer(tmp_path: Path) -> None:
    if not CORPUS.exists():
        pytest.skip("no shared corpus")
    out = tmp_path / "quality.json"
    chart = tmp_path / "recall.png"
    rows_file = tmp_path / "per-question.jsonl"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), str(CORPUS.parent / "dev.jsonl"), "--quick",
         "--data-dir", str(tmp_path / "data"), "--json-out", str(out), "--plot", str(chart),
         "--per-question", str(rows_file),
         "--port", str(free_port()), "--grpc-port", str(free_port())], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    expected = {"questions", "answerable", "unanswerable", "recall5", "mrr10", "refused_unanswerable",
                "wrongly_refused", *(f"{peer}_{metric}" for peer in PEERS for metric in ("recall5", "mrr10"))}
    assert {"overall", "lang=en", "kind=unanswerable"} <= set(figures)
    assert all(expected <= set(group) for group in figures.values())
    assert figures["overall"]["questions"] == figures["overall"]["answerable"] + figures["overall"]["unanswerable"]
    figures_of_all = ("recall5", "mrr10", *(f"{peer}_{metric}" for peer in PEERS for metric in ("recall5", "mrr10")))
    assert all(0.0 <= figures["overall"][k] <= 1.0 for k in figures_of_all)

    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("group"))
    columns = header.split()
    assert "R@5" in columns and "MRR" in columns and {"bm25", "vec", "lc"} <= set(columns)
    assert columns.count("x") == 2 * len(PEERS)  # ours / each peer, for both figures
    overall = next(line for line in lines if line.startswith("overall"))
    assert len(overall.split()) == len(columns)  # a figure (or "-") under every column
    assert any(line.startswith("- LangChain peer:") and "RecursiveCharacterTextSplitter" in line for line in lines)
    assert any(line.startswith("- vector-only:") for line in lines)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # One line per question, consistent with the figures: its recall@5 from the relevant ranks it lists.
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
    assert len(rows) == figures["overall"]["questions"]
    answerable = [row for row in rows if row["relevant"]]
    assert len(answerable) == figures["overall"]["answerable"]
    for row in answerable:
        ranks = row["relevant"].values()
        assert row["recall5"] == sum(1 for rank in ranks if rank is not None and rank <= 5) / len(ranks)
        assert set(row["peers"]) == set(PEERS)
        assert len(row["top10"]) <= 10 and isinstance(row["refused"], bool)
    assert abs(sum(row["recall5"] for row in answerable) / len(answerable) - figures["overall"]["recall5"]) < 1e-9
    outside = sum(1 for row in answerable for rank in row["relevant"].values() if rank is None or rank > 5)
    total = sum(len(row["relevant"]) for row in answerable)
    summary = next(line for line in lines if line.startswith("relevant documents outside our top 5:"))
    assert summary.split(":")[1].split("(")[0].split() == [str(outside), "of", str(total)]


def test_the_documents_missed_are_counted_by_question_and_document_language() -> None:
    from benchmarks.quality import Outcome, Question, missed, per_question

    questions = [
        Question(qid="q1", text="pods evicted", lang="en", kind="symptom", relevant=["en-a", "ko-b"],
                 relevant_langs={"en-a": "en", "ko-b": "ko"}),
        Question(qid="q2", text="노드 시간", lang="ko", kind="crosslingual", relevant=["en-c"],
                 relevant_langs={"en-c": "en"}),
        Question(qid="q3", text="kafka lag", lang="en", kind="unanswerable", relevant=[]),
    ]
    ours = {"q1": Outcome(ranked=["x1", "en-a", "x2", "x3", "x4", "ko-b"], refused=False),  # ko-b is 6th
            "q2": Outcome(ranked=["en-c"], refused=False),
            "q3": Outcome(ranked=["x1"], refused=True)}
    assert missed(questions, ours) == "relevant documents outside our top 5: 1 of 3 (en->ko 1)"
    assert missed(questions, ours, k=6) == "relevant documents outside our top 6: 0 of 3"

    rows = {row["qid"]: row for row in per_question(questions, ours, {"bm25": {
        "q1": Outcome(ranked=["ko-b"]), "q2": Outcome(ranked=[]), "q3": Outcome(ranked=[])}})}
    assert rows["q1"]["relevant"] == {"en-a": 2, "ko-b": 6}
    assert rows["q1"]["recall5"] == 0.5 and rows["q1"]["rr10"] == 0.5
    assert rows["q1"]["peers"] == {"bm25": {"recall5": 0.5, "rr10": 1.0}}
    assert rows["q2"]["recall5"] == 1.0
    assert rows["q3"]["refused"] is True and "recall5" not in rows["q3"]
