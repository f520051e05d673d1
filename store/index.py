"""The Weaviate index: chunks of the current version of every active entry, and nothing else.

Search reads an alias; a rebuild fills a fresh collection and swaps the alias when it is complete, so a
schema change (a tokenizer, say) never needs an in-place migration.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, HybridFusion, MetadataQuery
from weaviate.client import WeaviateClient
from weaviate.collections import Collection

from store.errors import IndexUnavailable

SCHEMA_VERSION = 1
_UUID_NAMESPACE = uuid.UUID("8f4d7a52-44c1-4c8e-9f0b-6f1f2b0a9e11")
_RETURN_PROPERTIES = [
    "entry_id", "version", "chunk_no", "source_ref", "title", "heading_path", "text", "language", "content_hash",
]


@dataclass
class ChunkRecord:
    entry_id: int
    version: int
    chunk_no: int
    title: str
    heading_path: list[str]
    text: str
    language: str
    tags: list[str]
    source_ref: str | None
    content_hash: str
    vector: np.ndarray | None = None

    @property
    def uuid(self) -> str:
        return str(uuid.uuid5(_UUID_NAMESPACE, f"{self.entry_id}:{self.version}:{self.chunk_no}"))

    def properties(self) -> dict[str, object]:
        korean = self.language == "ko"
        headings = " > ".join(self.heading_path)
        return {
            "entry_id": self.entry_id,
            "version": self.version,
            "chunk_no": self.chunk_no,
            "source_ref": self.source_ref or "",
            "title": self.title,
            "heading_path": headings,
            "text": self.text,
            "language": self.language,
            "tags": self.tags,
            "content_hash": self.content_hash,
            # Searchable copies, each under the tokenizer that suits its language.
            "title_en": "" if korean else self.title,
            "title_ko": self.title if korean else "",
            "body_en": "" if korean else f"{headings}\n{self.text}",
            "body_ko": f"{headings}\n{self.text}" if korean else "",
        }


@dataclass
class IndexHit:
    entry_id: int
    version: int
    chunk_no: int
    source_ref: str
    title: str
    heading_path: str
    text: str
    language: str
    score: float
    similarity: float | None = None


@dataclass
class IndexedEntry:
    entry_id: int
    version: int
    content_hash: str
    chunks: int = 0
    versions: set[int] = field(default_factory=set)


class KnowledgeIndex:
    def __init__(self, client: WeaviateClient, *, alias: str, korean_tokenizer: str = "kagome_kr") -> None:
        self.client = client
        self.alias = alias
        self.korean_tokenizer = Tokenization(korean_tokenizer)

    # --- schema and alias -------------------------------------------------------------------------
    def ensure(self) -> str:
        """The collection behind the alias, created on first use."""
        target = self.current_collection()
        if target is not None:
            return target
        name = self.create_collection()
        self.client.alias.create(alias_name=self.alias, target_collection=name)
        return name

    def current_collection(self) -> str | None:
        found = self.client.alias.get(alias_name=self.alias)
        return found.collection if found is not None else None

    def schema_version(self) -> int | None:
        name = self.current_collection()
        if name is None:
            return None
        marker = name.removeprefix(f"{self.alias}_s").split("_", 1)[0]
        return int(marker) if marker.isdigit() else None

    def create_collection(self) -> str:
        name = f"{self.alias}_s{SCHEMA_VERSION}_{int(time.time() * 1000)}"
        word, korean = Tokenization.WORD, self.korean_tokenizer
        self.client.collections.create(
            name,
            vector_config=Configure.Vectors.self_provided(
                vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
            ),
            inverted_index_config=Configure.inverted_index(index_null_state=False),
            properties=[
                Property(name="entry_id", data_type=DataType.INT),
                Property(name="version", data_type=DataType.INT),
                Property(name="chunk_no", data_type=DataType.INT),
                Property(name="source_ref", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                Property(name="title", data_type=DataType.TEXT, index_searchable=False),
                Property(name="heading_path", data_type=DataType.TEXT, index_searchable=False),
                Property(name="text", data_type=DataType.TEXT, index_searchable=False),
                Property(name="language", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                Property(name="tags", data_type=DataType.TEXT_ARRAY, tokenization=Tokenization.FIELD),
                Property(name="content_hash", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                Property(name="title_en", data_type=DataType.TEXT, tokenization=word),
                Property(name="title_ko", data_type=DataType.TEXT, tokenization=korean),
                Property(name="body_en", data_type=DataType.TEXT, tokenization=word),
                Property(name="body_ko", data_type=DataType.TEXT, tokenization=korean),
            ],
        )
        return name

    def swap_alias(self, new_collection: str) -> str | None:
        """Point the alias at ``new_collection``; returns the collection it pointed at before."""
        old = self.current_collection()
        if old is None:
            self.client.alias.create(alias_name=self.alias, target_collection=new_collection)
        else:
            self.client.alias.update(alias_name=self.alias, new_target_collection=new_collection)
        return old

    def drop_collection(self, name: str) -> None:
        if self.client.collections.exists(name):
            self.client.collections.delete(name)

    def _collection(self, name: str | None = None) -> Collection:
        return self.client.collections.use(name or self.ensure())

    # --- writes -----------------------------------------------------------------------------------
    def replace_entries(
        self, entry_ids: Sequence[int], chunks: Sequence[ChunkRecord], *, collection: str | None = None
    ) -> None:
        """Make the index hold exactly ``chunks`` for these entries. Idempotent: uuids derive from
        entry id, version and chunk number, so writing twice overwrites, and leftovers are deleted."""
        target = self._collection(collection)
        self.write_chunks(chunks, collection=collection)
        keep = {c.uuid for c in chunks}
        stale: list[uuid.UUID] = []
        for start in range(0, len(entry_ids), 100):
            found = target.query.fetch_objects(
                filters=Filter.by_property("entry_id").contains_any(list(entry_ids[start : start + 100])),
                limit=10_000,
                return_properties=[],
            )
            stale.extend(obj.uuid for obj in found.objects if str(obj.uuid) not in keep)
        for start in range(0, len(stale), 1000):
            target.data.delete_many(where=Filter.by_id().contains_any(stale[start : start + 1000]))

    def write_chunks(self, chunks: Iterable[ChunkRecord], *, collection: str | None = None) -> None:
        target = self._collection(collection)
        objects = [
            DataObject(
                properties=c.properties(),
                uuid=c.uuid,
                vector=c.vector.tolist() if c.vector is not None else None,
            )
            for c in chunks
        ]
        for start in range(0, len(objects), 500):
            result = target.data.insert_many(objects[start : start + 500])
            if result.has_errors:
                first = next(iter(result.errors.values()))
                raise IndexUnavailable(f"Weaviate refused {len(result.errors)} chunk(s): {first.message}")

    def delete_entry(self, entry_id: int, *, collection: str | None = None) -> None:
        self._collection(collection).data.delete_many(where=Filter.by_property("entry_id").equal(entry_id))

    # --- reads ------------------------------------------------------------------------------------
    def search(
        self, query: str, vector: np.ndarray | None, *, limit: int, alpha: float, collection: str | None = None
    ) -> list[IndexHit]:
        """Hybrid (BM25 + vector) chunk search; each hit carries the cosine similarity to the query."""
        target = self._collection(collection)
        response = target.query.hybrid(
            query=query,
            vector=vector.tolist() if vector is not None else None,
            alpha=alpha if vector is not None else 0.0,
            query_properties=["title_en^2", "title_ko^2", "body_en", "body_ko"],
            fusion_type=HybridFusion.RELATIVE_SCORE,
            limit=limit,
            return_metadata=MetadataQuery(score=True),
            return_properties=_RETURN_PROPERTIES,
            include_vector=vector is not None,
        )
        hits = []
        for obj in response.objects:
            props = obj.properties
            similarity = None
            stored = obj.vector.get("default") if obj.vector else None
            if vector is not None and stored:
                similarity = float(np.dot(np.asarray(stored, dtype=np.float32), vector))
            hits.append(
                IndexHit(
                    entry_id=int(props["entry_id"]),  # type: ignore[arg-type]
                    version=int(props["version"]),  # type: ignore[arg-type]
                    chunk_no=int(props["chunk_no"]),  # type: ignore[arg-type]
                    source_ref=str(props.get("source_ref") or ""),
                    title=str(props["title"]),
                    heading_path=str(props.get("heading_path") or ""),
                    text=str(props["text"]),
                    language=str(props["language"]),
                    score=float(obj.metadata.score or 0.0),
                    similarity=similarity,
                )
            )
        return hits

    def indexed_entries(self, *, collection: str | None = None) -> dict[int, IndexedEntry]:
        """Every entry the index holds, with its version(s) and content hash: what `kb doctor` compares."""
        found: dict[int, IndexedEntry] = {}
        for obj in self._collection(collection).iterator(
            return_properties=["entry_id", "version", "content_hash"]
        ):
            entry_id = int(obj.properties["entry_id"])  # type: ignore[arg-type]
            version = int(obj.properties["version"])  # type: ignore[arg-type]
            item = found.setdefault(
                entry_id, IndexedEntry(entry_id, version, str(obj.properties["content_hash"]))
            )
            item.chunks += 1
            item.versions.add(version)
            item.version = max(item.versions)
        return found

    def count(self, *, collection: str | None = None) -> int:
        return int(self._collection(collection).aggregate.over_all(total_count=True).total_count or 0)

    def close(self) -> None:
        self.client.close()
