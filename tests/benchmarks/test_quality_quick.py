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
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), str(CORPUS.parent / "dev.jsonl"), "--quick",
         "--data-dir", str(tmp_path / "data"), "--json-out", str(out), "--plot", str(chart),
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
