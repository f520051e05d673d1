"""The alert benchmark's --quick mode: a few alerts looked up end to end, every figure printed (shape only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.weaviate
def test_alerts_quick_prints_the_table(tmp_path: Path) -> None:
    if not CORPUS.exists():
        pytest.skip("no shared corpus")
    out = tmp_path / "alerts.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "alerts.py"), "--quick", "--corpus", str(CORPUS),
         "--data-dir", str(tmp_path / "data"), "--json-out", str(out), "--port", str(free_port()),
         "--grpc-port", str(free_port())], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert {"overall", "kubernetes", "node", "etcd", "general"} <= set(figures)
    overall = figures["overall"]
    assert overall["n"] == 5
    shares = ("parsed", "found", "found_title", "found_alias", "found_search", "wrong", "none")
    assert all(0.0 <= overall[k] <= 1.0 for k in shares)
    assert overall["found"] + overall["wrong"] + overall["none"] == pytest.approx(1.0)
    assert overall["found_title"] + overall["found_alias"] + overall["found_search"] == pytest.approx(overall["found"])
    assert len(overall["misses"]) == round((1 - overall["found"]) * overall["n"])
    header = next(line for line in result.stdout.splitlines() if line.startswith("group"))
    assert header.split()[:3] == ["group", "n", "|"]
    assert header.split()[3:] == ["parsed", "found", "title", "alias", "search", "wrong", "none"]
    assert "5 prometheus-operator runbooks posted as Alertmanager alerts" in result.stdout
