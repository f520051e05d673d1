"""`kb serve` searches in worker processes: the same results as in the bot's process, from another process, and
the bot's own search when the workers fail. Real embedded Weaviate, real model."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.search_workers import SearchWorkers
from bot.services import KnowledgeService
from bot.wiring import build_service, weaviate_target
from store.errors import IndexUnavailable
from store.weaviate_conn import WeaviateTarget, connect
from tests.conftest import corpus_documents, free_port, make_settings

DOCUMENTS = [
    "prometheus-operator/runbooks:content/runbooks/kubernetes/KubePodCrashLooping.md",
    "prometheus-operator/runbooks:content/runbooks/kubernetes/KubeProxyDown.md",
    "gitlab-com/runbooks:docs/sidekiq/sidekiq-queue-not-being-processed.md",
]
QUESTION = "pods keep restarting in a crash loop"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory, weaviate_target: WeaviateTarget
             ) -> Iterator[tuple[Settings, KnowledgeService]]:
    tmp = tmp_path_factory.mktemp("workers")
    documents = {d["id"]: d for d in corpus_documents()}
    source = tmp / "docs.jsonl"
    source.write_text("\n".join(json.dumps(documents[i], ensure_ascii=False) for i in DOCUMENTS), encoding="utf-8")
    settings = make_settings(tmp, f"sqlite:///{tmp / 'kb.sqlite3'}", weaviate_target)
    service = build_service(settings)
    assert service.import_paths([source], approved_by="eval").created == len(DOCUMENTS)
    yield settings, service
    service.close()


@pytest.fixture
def workers(imported: tuple[Settings, KnowledgeService]) -> Iterator[SearchWorkers]:
    settings, service = imported
    pool = SearchWorkers(settings, 1)
    service.search_workers = pool
    yield pool
    service.search_workers = None
    pool.close()


def _in_process(service: KnowledgeService, query: str) -> list[tuple[int, str]]:
    return [(h.entry_id, h.passage) for h in service.retriever.search_with_confidence(query, k=3)[0]]


def test_a_worker_process_finds_what_the_bot_would(imported: tuple[Settings, KnowledgeService],
                                                   workers: SearchWorkers, monkeypatch: pytest.MonkeyPatch) -> None:
    _, service = imported
    expected = _in_process(service, QUESTION)
    assert expected[0][1] and "CrashLooping" in service.show_entry(expected[0][0]).entry.title
    assert workers.worker_pid() != os.getpid()

    def not_here(self: KnowledgeService) -> None:
        raise AssertionError("searched in the bot's process")

    monkeypatch.setattr(KnowledgeService, "retriever", property(not_here))
    hits = service.search(QUESTION, k=3)
    assert [(h.entry_id, h.passage) for h in hits] == expected
    answer, _task = service.ask(QUESTION)
    assert answer.grounded and answer.citations[0].entry_id == expected[0][0]


def test_the_worker_embeds_without_spinning_beside_the_acks(workers: SearchWorkers) -> None:
    in_worker = [workers._executor.submit(os.getenv, name).result()  # the worker's own environment
                 for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")]
    assert in_worker == ["PASSIVE", "0"]


def test_a_dead_worker_fails_over_to_the_bot_and_is_replaced(imported: tuple[Settings, KnowledgeService],
                                                               workers: SearchWorkers,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    _, service = imported
    expected = [h.entry_id for h in service.search(QUESTION, k=3)]
    dead = workers.worker_pid()
    os.kill(dead, signal.SIGKILL)
    time.sleep(0.5)
    with caplog.at_level(logging.WARNING):
        assert [h.entry_id for h in service.search(QUESTION, k=3)] == expected  # the bot searched itself
    assert "search worker failed" in caplog.text
    assert workers.worker_pid() not in (dead, os.getpid())  # and a new worker serves the next search
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert [h.entry_id for h in service.search(QUESTION, k=3)] == expected
    assert "search worker failed" not in caplog.text


def test_a_worker_never_starts_an_embedded_server_of_its_own(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, weaviate_port=free_port(), weaviate_grpc_port=free_port())  # type: ignore[call-arg]
    with pytest.raises(IndexUnavailable, match="not running"):
        connect(weaviate_target(settings), start_embedded=False)
    assert not (tmp_path / "weaviate").exists()


def test_a_worker_outlives_no_bot_killed_outright(tmp_path: Path) -> None:
    """SIGKILL (the OOM killer) gives the bot no chance to stop its workers: they notice and exit."""
    script = ("import sys; from bot.config import Settings; from bot.search_workers import SearchWorkers\n"
              f"workers = SearchWorkers(Settings(data_dir={str(tmp_path)!r}), 1)\n"
              "print(workers.worker_pid(), flush=True); sys.stdin.read()\n")
    bot = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           cwd=Path(__file__).resolve().parents[2])
    try:
        assert bot.stdout is not None
        worker = int(bot.stdout.readline())
        assert Path(f"/proc/{worker}").exists()
        bot.kill()
        bot.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker):
            assert time.monotonic() < deadline, "the search worker outlived its bot"
            time.sleep(0.2)
    finally:
        if bot.poll() is None:
            bot.kill()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _heap() -> tuple[int, int]:
    """(objects frozen out of the collector's view, objects a full collection still walks)"""
    return gc.get_freeze_count(), len(gc.get_objects())


def test_a_warm_worker_keeps_full_collections_short(workers: SearchWorkers) -> None:
    assert all(f.result(timeout=300) for f in workers.warm_up())
    frozen, walked = workers._executor.submit(_heap).result()
    assert frozen > 100_000 and walked < frozen / 5
