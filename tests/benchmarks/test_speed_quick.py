"""The speed benchmark's --quick mode runs and prints every figure (shape only: timings are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import Settings
from store import e5_engine
from store.weaviate_conn import WeaviateTarget
from tests.conftest import CORPUS

ROOT = Path(__file__).resolve().parents[2]
LATENCY = {"n", "median_ms", "p95_ms", "max_ms"}


@pytest.mark.weaviate
def test_speed_quick_prints_every_figure(tmp_path: Path, weaviate_target: WeaviateTarget) -> None:
    if not CORPUS.exists():
        pytest.skip("no shared corpus")
    env = {**os.environ, "KB_WEAVIATE_PORT": str(weaviate_target.port),
           "KB_WEAVIATE_GRPC_PORT": str(weaviate_target.grpc_port), "KB_INDEX_NAME": "SpeedQuick"}
    out, plot = tmp_path / "speed.json", tmp_path / "latency.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--quick", "--data-dir", str(tmp_path / "data"),
         "--json-out", str(out), "--plot", str(plot)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["machine"]["cores"] == os.cpu_count() and figures["machine"]["mode"] == "fresh"
    assert {"load_average_1m_start", "load_average_1m_end", "revision"} <= set(figures["machine"])

    # import, rebuild and the model's own speed
    assert figures["import"]["entries"] == 20 and figures["import"]["chunks"] >= 20
    assert {"embedding_seconds", "entries_per_s", "chunks_per_s"} <= set(figures["import"])
    assert figures["reindex_cached"]["chunks"] == figures["import"]["chunks"]
    assert figures["reindex_cached"]["embedding_seconds"] == 0.0  # every vector came from the cache
    model = figures["embedding_model"]
    assert model["chunks"] == 8 and "chunks_per_s" in model
    built = e5_engine.built_engine(Settings().embed_engine_dir)  # what setup.sh built, if it could
    assert model["engine"] == (built.name if built else "wheel")
    assert ("wheel_engine_chunks_per_s" in model) == (built is not None)
    assert model.get("vnni_kernel") == (e5_engine.vnni_kernel_active(built) if built else None)

    # retrieval at corpus size, with where its time goes
    search = figures["search"]
    assert LATENCY | {"p99_ms", "entries", "chunks"} <= set(search) and search["n"] == 5
    assert {"embed_query", "vector_search", "keyword_search", "rest"} <= set(search["mean_breakdown_ms"])
    assert figures["approval_to_searchable"]["n"] == 2

    # ack latency in HTTP mode: the answers all came, none was lost
    ack = figures["ack"]
    for run, n in (("sequential", 5), ("concurrent", 5)):
        assert LATENCY | {"p99_ms"} <= set(ack[run]["ack"]) and ack[run]["ack"]["n"] == n
        assert LATENCY | {"p99_ms"} <= set(ack[run]["answer"]) and ack[run]["answer"]["n"] == n
        assert ack[run]["unanswered"] == 0 and sum(ack[run]["http_status"].values()) == n
    assert ack["concurrent"]["waves"] == 1 and len(ack["concurrent"]["wave_drain_s"]) == 1

    # memory of the bot, its search worker, Weaviate and the benchmark's own process (which runs service.search)
    memory = figures["memory_mb"]
    for process in ("bot", "search_worker"):
        assert {"idle_bot_started", "idle_bot_warm", "peak_ack_sequential", "peak_ack_concurrent",
                "lifetime_peak"} <= set(memory[process])
    assert {"idle", "peak_search", "peak_ack_concurrent", "lifetime_peak"} <= set(memory["weaviate"])
    assert {"idle", "peak_search"} <= set(memory["bench"])

    # scale: copies of the corpus up to 35 and 60 entries, all vectors from the cache, and the plot
    assert [point["entries"] for point in figures["scale"]] == [35, 60]
    for point in figures["scale"]:
        assert point["chunks"] > search["chunks"] and point["import"]["embedded_chunks"] == 0
        assert {"entries_per_s", "chunks_per_s", "store_seconds", "index_seconds"} <= set(point["import"])
        assert LATENCY | {"p99_ms"} <= set(point["search"])
        # and from a new process sharing the server, which found the same index
        fresh = point["search_new_process"]
        assert set(fresh) >= LATENCY
        assert (fresh["entries"], fresh["chunks"]) == (point["entries"], point["chunks"])
        assert {"weaviate_idle", "weaviate_peak_search"} <= set(point["memory_mb"])
        assert point["weaviate_quiet_after_s"] >= 0  # searched once the server was quiet
    assert figures["scale_import_total"]["entries"] == sum(point["import"]["entries"] for point in figures["scale"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figures["plot"] == str(plot)

    for line in ("machine: ", "import ", "reindex_cached ", "embedding_model ", "search ", "approval_to_searchable ",
                 "ack.sequential.ack ", "ack.concurrent.ack ", "ack.concurrent.answer ", "memory_mb.bot ",
                 "memory_mb.search_worker ", "memory_mb.weaviate ", "scale: entries", "scale_import_total ", "plot: ",
                 "wall time: "):
        assert line in result.stdout

    # --ack-only on the same store: the index matches it, so nothing is rebuilt; the waves start once Weaviate is quiet
    alone = tmp_path / "ack.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--quick", "--ack-only", "--data-dir",
         str(tmp_path / "data"), "--json-out", str(alone)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    only = json.loads(alone.read_text())
    assert not {"import", "reindex_cached", "search", "approval_to_searchable", "scale"} & set(only)
    assert "building the index" not in result.stderr and isinstance(only["weaviate_quiet_after_s"], float)
    assert only["ack"]["concurrent"]["ack"]["n"] == 5 and only["ack"]["concurrent"]["unanswered"] == 0
    assert {"bot", "search_worker", "weaviate"} <= set(only["memory_mb"])
    assert "weaviate_quiet_after_s " in result.stdout and "ack.concurrent.ack " in result.stdout
