"""The speed benchmark's --quick mode runs and prints every figure (shape only: timings are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from store.weaviate_conn import WeaviateTarget
from tests.conftest import CORPUS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.weaviate
def test_speed_quick_prints_every_figure(tmp_path: Path, weaviate_target: WeaviateTarget) -> None:
    if not CORPUS.exists():
        pytest.skip("no shared corpus")
    env = {**os.environ, "KB_WEAVIATE_PORT": str(weaviate_target.port),
           "KB_WEAVIATE_GRPC_PORT": str(weaviate_target.grpc_port), "KB_INDEX_NAME": "SpeedQuick"}
    out = tmp_path / "speed.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--quick", "--data-dir", str(tmp_path / "data"),
         "--json-out", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["import"]["entries"] == 20 and figures["import"]["chunks"] >= 20
    assert figures["reindex_cached"]["chunks"] == figures["import"]["chunks"]
    assert figures["reindex_cached"]["embedding_seconds"] == 0.0  # every vector came from the cache
    assert {"median_ms", "p95_ms"} <= set(figures["search"]) and figures["search"]["n"] == 5
    assert figures["approval_to_searchable"]["n"] == 2
    for line in ("import ", "reindex_cached ", "search ", "approval_to_searchable "):
        assert line in result.stdout
