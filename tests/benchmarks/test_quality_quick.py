"""The quality benchmark's --quick mode: every figure is printed, ours beside plain BM25 (shape, not values)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.weaviate
def test_quality_quick_prints_ours_beside_bm25(tmp_path: Path) -> None:
    if not CORPUS.exists():
        pytest.skip("no shared corpus")
    out = tmp_path / "quality.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "quality.py"), str(CORPUS.parent / "dev.jsonl"), "--quick",
         "--data-dir", str(tmp_path / "data"), "--json-out", str(out), "--port", str(free_port()),
         "--grpc-port", str(free_port())], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    expected = {"questions", "answerable", "unanswerable", "recall5", "mrr10", "bm25_recall5", "bm25_mrr10",
                "refused_unanswerable", "wrongly_refused"}
    assert {"overall", "lang=en", "kind=unanswerable"} <= set(figures)
    assert expected <= set(figures["overall"])
    assert figures["overall"]["questions"] == figures["overall"]["answerable"] + figures["overall"]["unanswerable"]
    assert all(0.0 <= figures["overall"][k] <= 1.0 for k in ("recall5", "mrr10", "bm25_recall5"))
    header = next(line for line in result.stdout.splitlines() if line.startswith("group"))
    assert "R@5" in header and "bm25" in header and "MRR" in header
