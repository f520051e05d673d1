"""Retrieval in worker processes, for `kb serve`.

A search holds the interpreter lock for ~11 ms of Python (weaviate-client turning results into objects, the
fusion), and in the bot's own process Slack's acks wait behind it: a burst of 50 asks gave an ack p99 of 148 ms,
against 55 ms with no searches at all. In a worker process, at a lower CPU priority, a search competes with an
ack for neither the lock nor the CPU. The worker is one more Weaviate client: it shares the embedded server the
bot started (it never starts one of its own) or the cluster, as another replica would.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from bot.config import Settings
from bot.heap import freeze_loaded_objects
from bot.retrieval import Confidence, EntryHit, Retriever
from store.db import Database
from store.embeddings import CachedEmbedder, default_embedder
from store.index import KnowledgeIndex
from store.weaviate_conn import connect

log = logging.getLogger("kb.search")

WORKER_NICENESS = 10  # below the bot's acks, which must answer Slack within 3 s whatever the searches do
WARM_UP_QUERY = "warm up 준비"  # Hangul too: the Korean analyser (store/text.py) loads during the warm-up
PARENT_CHECK_SECONDS = 1.0

_settings: Settings | None = None
_retriever: Retriever | None = None


class SearchWorkers:
    """``processes`` spawned workers, each with its own model and Weaviate client, connected on first use."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.processes = processes
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.processes, mp_context=get_context("spawn"),
                                   initializer=_start_worker, initargs=(self.settings,))

    def warm_up(self) -> list[Future[bool]]:
        """Load the model, connect and compute the query centres now, not in the first user's search."""
        return [self._executor.submit(_warm_up) for _ in range(self.processes)]

    def search_with_confidence(self, query: str, *, k: int) -> tuple[list[EntryHit], Confidence]:
        executor = self._executor
        try:
            return executor.submit(_search, query, k).result()
        except BrokenProcessPool:
            # A worker died (the OOM killer, say): new workers for the next search; this one fails over.
            if self._executor is executor:
                log.warning("a search worker died; starting new ones")
                self._executor = self._start()
            executor.shutdown(wait=False, cancel_futures=True)
            raise

    def worker_pid(self) -> int:
        """The process id of a worker (of the only one, with one)."""
        return self._executor.submit(os.getpid).result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _start_worker(settings: Settings) -> None:
    global _settings
    _settings = settings
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the bot ends us
    os.nice(WORKER_NICENESS)
    # The embedding's OpenMP threads sleep at once here: even the bot's short spin (GOMP_SPINCOUNT, inherited)
    # beside its acks raised their burst p99 by ~20 ms (docs/benchmarks.md). Set before the engine loads.
    os.environ.update(OMP_WAIT_POLICY="PASSIVE", GOMP_SPINCOUNT="0")
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="kb-search-parent", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A bot killed outright (SIGKILL, the OOM killer) cannot stop its workers, and a worker waiting for work never
    notices: its pipe stays open at both ends. Orphaned, it exits."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _worker_retriever() -> Retriever:
    global _retriever
    if _retriever is None:
        from bot.wiring import weaviate_target

        assert _settings is not None, "not a search worker"
        index = KnowledgeIndex(connect(weaviate_target(_settings), start_embedded=False),
                               alias=_settings.index_name, korean_tokenizer=_settings.korean_tokenizer)
        embedder = CachedEmbedder(default_embedder(_settings.embed_engine_dir),
                                  Database(_settings.effective_database_url))
        _retriever = Retriever(index=index, embedder=embedder, alpha=_settings.search_alpha)
    return _retriever


def _search(query: str, k: int) -> tuple[list[EntryHit], Confidence]:
    return _worker_retriever().search_with_confidence(query, k=k)


def _warm_up() -> bool:
    _search(WARM_UP_QUERY, 5)
    freeze_loaded_objects()  # the model, the clients, the query centres: a full collection took ~155 ms here
    return True
