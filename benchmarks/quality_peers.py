"""The retrievers the quality benchmark sets beside ours: vector-only search over our own index, and LangChain's
Weaviate vector store as a team would set it up (its defaults, our embedding model, our Weaviate server).

Both rank corpus documents (entries) by their best chunk among the ``PEER_CHUNKS`` nearest chunks, as ours
does among its 100 candidates per list.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from store.embeddings import Embedder

if TYPE_CHECKING:
    from weaviate.client import WeaviateClient

    from store.index import KnowledgeIndex

PEER_CHUNKS = 100  # chunks asked for per question; the same as our retriever's candidates per list
TOP_DOCUMENTS = 10
# The chunking a team would reach for: the RecursiveCharacterTextSplitter of LangChain's RAG tutorial (1000 /
# 200; the class's own constructor defaults are 4000 / 200, which is longer than e5's 512 tokens), its
# default separators ("\n\n", "\n", " ", "") and length function (characters).
LANGCHAIN_CHUNK_SIZE = 1000
LANGCHAIN_CHUNK_OVERLAP = 200
LANGCHAIN_COLLECTION_PREFIX = "LangChainPeer_"
EMBED_BATCH = 32
# langchain-weaviate's math module logs a warning on import about an optional accelerator that only its MMR
# search would use (this benchmark does not): keep it out of the output.
logging.getLogger("langchain_weaviate._math").setLevel(logging.ERROR)


def distinct(ids: Iterable[str], limit: int = TOP_DOCUMENTS) -> list[str]:
    """Document ids in order of their best chunk, each once."""
    ranked: list[str] = []
    for doc_id in ids:
        if doc_id and doc_id not in ranked:
            ranked.append(doc_id)
            if len(ranked) == limit:
                break
    return ranked


# --- vector-only over our index --------------------------------------------------------------------
def vector_only_ranker(index: KnowledgeIndex, embedder: Embedder) -> Callable[[str], list[str]]:
    """Plain ``near_vector`` over our index's chunks with the same embeddings (the query through
    ``embed_query``): no per-language centroid offset, no BM25, no fusion."""

    def rank(query: str) -> list[str]:
        hits = index.vector_search(embedder.embed_query(query), limit=PEER_CHUNKS)
        return distinct(hit.source_ref for hit in hits)

    return rank


# --- LangChain's Weaviate vector store -------------------------------------------------------------
def langchain_missing() -> str | None:
    """Why the LangChain peer cannot run here, or None."""
    missing = []
    for module, package in (("langchain_weaviate", "langchain-weaviate"),
                            ("langchain_text_splitters", "langchain-text-splitters")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    return f"not installed: {', '.join(missing)}" if missing else None


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@dataclass
class LangChainSetup:
    collection: str
    chunks: int
    reused: bool
    embedded: int  # chunks that went through the model (not found in the vector cache)
    seconds: float  # including the settling time after a build

    def describe(self) -> str:
        how = "collection reused" if self.reused else f"collection built, {self.embedded} chunks embedded"
        return (f"LangChain peer: langchain-weaviate {_package_version('langchain-weaviate')}, "
                f"langchain-text-splitters {_package_version('langchain-text-splitters')}; "
                f"RecursiveCharacterTextSplitter(chunk_size={LANGCHAIN_CHUNK_SIZE}, "
                f"chunk_overlap={LANGCHAIN_CHUNK_OVERLAP}) over title + text -> {self.chunks} chunks; "
                f"WeaviateVectorStore.from_documents defaults (own collection {self.collection}, default schema, "
                f"text key 'text'); similarity_search(k={PEER_CHUNKS}), which is Weaviate hybrid (BM25 + vector) "
                f"with alpha and fusion left to the server's defaults; {how} in {self.seconds:.0f}s")


def _embeddings_adapter(embedder: Embedder, progress: Callable[[int, int], None] | None) -> Any:
    """A LangChain ``Embeddings`` around our embedder (which adds e5's ``query: `` / ``passage: `` prefixes).
    Documents go through in batches so the vector cache (our CachedEmbedder) keeps what a killed run did."""
    from langchain_core.embeddings import Embeddings

    class KbEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            vectors: list[list[float]] = []
            for start in range(0, len(texts), EMBED_BATCH):
                batch = np.asarray(embedder.embed_passages(texts[start : start + EMBED_BATCH]), dtype=np.float32)
                vectors.extend(batch.tolist())
                if progress is not None:
                    progress(len(vectors), len(texts))
            return vectors

        def embed_query(self, text: str) -> list[float]:
            vector: list[float] = np.asarray(embedder.embed_query(text), dtype=np.float32).tolist()
            return vector

    return KbEmbeddings()


def _progress_printer() -> Callable[[int, int], None]:
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        if done == total or done % (EMBED_BATCH * 8) == 0:
            rate = done / max(time.monotonic() - started, 1e-6)
            print(f"  LangChain peer: {done}/{total} chunks embedded or found in the cache ({rate:.1f}/s)",
                  file=sys.stderr, flush=True)

    return report


class LangChainPeer:
    """LangChain's ``WeaviateVectorStore`` in its own collection on our Weaviate server. The collection's name
    carries a fingerprint of its chunks, so a second run on the same corpus reuses it instead of rebuilding."""

    def __init__(self, client: WeaviateClient, embedder: Embedder) -> None:
        self.client = client
        self.embedder = embedder
        self.doc_ids: list[str] = []
        self.store: Any = None
        self.setup: LangChainSetup | None = None

    def build(self, documents: list[dict[str, Any]], *, settle_seconds: float = 0.0,
              verbose: bool = True) -> LangChainSetup:
        """Split, embed and store ``documents`` unless the collection of exactly these chunks exists; after
        storing, wait ``settle_seconds`` for the server to flush its memtables (BM25 misses what they hold)."""
        from langchain_core.documents import Document
        from langchain_text_splitters import RecursiveCharacterTextSplitter
        from langchain_weaviate import WeaviateVectorStore

        started = time.monotonic()
        self.doc_ids = [str(d["id"]) for d in documents]
        splitter = RecursiveCharacterTextSplitter(chunk_size=LANGCHAIN_CHUNK_SIZE,
                                                  chunk_overlap=LANGCHAIN_CHUNK_OVERLAP)
        # The document number as metadata maps a chunk back to its corpus id. An integer, so the hybrid
        # search's BM25 (which reads every text property) sees what ours and plain BM25 see: title and text.
        chunks = splitter.split_documents([
            Document(page_content=f"{d.get('title') or ''}\n{d['text']}", metadata={"doc": no})
            for no, d in enumerate(documents)
        ])
        fingerprint = hashlib.sha256()
        fingerprint.update(f"{self.embedder.name}|{LANGCHAIN_CHUNK_SIZE}|{LANGCHAIN_CHUNK_OVERLAP}".encode())
        for chunk in chunks:
            fingerprint.update(f"\x00{self.doc_ids[chunk.metadata['doc']]}\x00{chunk.page_content}".encode())
        name = f"{LANGCHAIN_COLLECTION_PREFIX}{fingerprint.hexdigest()[:16]}"
        embeddings = _embeddings_adapter(self.embedder, _progress_printer() if verbose else None)

        reused = self.client.collections.exists(name) and self._count(name) == len(chunks)
        misses_before = int(getattr(self.embedder, "misses", 0))
        if reused:
            self.store = WeaviateVectorStore(self.client, name, "text", embedding=embeddings, attributes=["doc"])
        else:
            for stale in self.client.collections.list_all(simple=True):  # older corpora, interrupted builds
                if stale.startswith(LANGCHAIN_COLLECTION_PREFIX):
                    self.client.collections.delete(stale)
            self.store = WeaviateVectorStore.from_documents(chunks, embeddings, client=self.client, index_name=name)
            if self._count(name) != len(chunks):
                raise SystemExit(f"LangChain peer: {self._count(name)} of {len(chunks)} chunks stored in {name}")
            time.sleep(settle_seconds)
        self.setup = LangChainSetup(collection=name, chunks=len(chunks), reused=reused,
                                    embedded=int(getattr(self.embedder, "misses", 0)) - misses_before,
                                    seconds=time.monotonic() - started)
        return self.setup

    def _count(self, name: str) -> int:
        total = self.client.collections.get(name).aggregate.over_all(total_count=True).total_count
        return int(total or 0)

    def rank(self, query: str) -> list[str]:
        found = self.store.similarity_search(query, k=PEER_CHUNKS)
        return distinct(self.doc_ids[int(doc.metadata["doc"])] for doc in found)
