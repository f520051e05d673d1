"""The Weaviate index: chunks of the current version of every active entry, and nothing else.

Search reads an alias; a rebuild fills a fresh collection and swaps the alias when it is complete, so a
schema change (a tokenizer, say) never needs an in-place migration.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import psutil
from weaviate.classes.aggregate import GroupByAggregate
from weaviate.classes.config import Configure, DataType, Property, Reconfigure, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.client import WeaviateClient
from weaviate.collections import Collection

from store.errors import IndexUnavailable
from store.text import has_hangul, korean_keywords
from store.weaviate_conn import server_exited

# 2: keyword title fields also hold the title with identifiers split into words; 3: latin_ko; 4: one vector space
# (HNSW graph) per language; 5: entry vectors; 6: rebuilt once so that BM25 runs by WAND, not BlockMax-WAND (set by
# the server: USE_INVERTED_SEARCHABLE, see store/weaviate_conn.py)
SCHEMA_VERSION = 6
_UUID_NAMESPACE = uuid.UUID("8f4d7a52-44c1-4c8e-9f0b-6f1f2b0a9e11")
_RANKING_PROPERTIES = ["entry_id", "version", "chunk_no", "language"]  # enough to rank; the rest fetched for few
_RETURN_PROPERTIES = [
    "entry_id", "version", "chunk_no", "source_ref", "title", "heading_path", "text", "language", "content_hash",
]
# The keyword fields of each tokenization: English text under the word tokenizer, Korean under the Korean one.
KEYWORD_FIELDS = {"en": ["title_en^2", "body_en"], "ko": ["title_ko^2", "body_ko"]}
# A query without Hangul searches Korean chunks through their Latin words only (title included): the Korean tokenizer
# cuts an English word into pieces that match Korean text everywhere (`pressure` found the title `리스(Lease)`),
# which cost 18.6 of a search's ~50 ms at 50,000 entries and ranked no better on dev.jsonl (docs/benchmarks.md).
LATIN_QUERY_FIELDS = {**KEYWORD_FIELDS, "ko": ["latin_ko"]}
# One HNSW graph per language, not one graph searched with a language filter: a Korean question's neighbourhood in
# a shared graph is Korean, and finding English chunks from there took 86 ms median, 357 ms worst at 50,000
# entries (5 ms in a graph of their own).
VECTOR_SPACES = ("en", "ko")
# HNSW's candidate list per search (dynamic ef: factor x limit, within min..max). For the chunk graphs Weaviate's
# default (8 x limit, 100..500) walks 500 nodes for our 100 candidates; 2 x limit within 100..200 ranks the dev
# questions the same and cut the p50 at 50,000 entries by 6-11 ms in an A/B. The entry graphs keep the default:
# below 250 their 50 candidates changed and MRR@10 fell 0.739 -> 0.726 (docs/benchmarks.md). Mutable:
# tune_search() brings older collections to them.
class HnswEf(NamedTuple):
    """Weaviate's dynamic ef of one vector space, named as its HNSW config names them."""

    dynamic_ef_factor: int
    dynamic_ef_min: int
    dynamic_ef_max: int


CHUNK_HNSW_EF = HnswEf(2, 100, 200)
ENTRY_HNSW_EF = HnswEf(8, 100, 500)
LANGUAGE_SPACES_SCHEMA = 4  # the first schema with VECTOR_SPACES
# Each entry's first chunk also holds the entry's vector (the mean of its chunks' vectors) in a space per language:
# a whole-runbook similarity that finds the runbook a question is about when no single chunk says it all.
ENTRY_SPACES_SCHEMA = 5
CENTROID_SAMPLE = 2000
COUNTS_MAX_AGE = 10.0  # seconds; writes through this object forget the counts at once
# Seconds a search may use the alias's last resolution (a REST request per search: 0.7 ms of the median at 50,000
# entries). Writes always resolve it afresh; a search that finds the collection gone resolves it again.
SEARCH_ALIAS_MAX_AGE = 5.0
# Counts older than COUNTS_MAX_AGE are checked here, behind the search that found them old (3 s at 300k chunks).
_COUNT_REFRESH = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-index-counts")
log = logging.getLogger(__name__)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9]+")
# Where a term counts as mentioned by the index: the word-tokenized fields. (The Korean tokenizer splits an
# unknown Latin word into pieces that match anything, so Korean chunks' Latin words get a field of their own.)
TERM_FIELDS = ["title_en", "body_en", "latin_ko"]


def split_identifiers(text: str) -> str:
    """``KubePodCrashLooping`` also as ``Kube Pod Crash Looping``, so a keyword search can match its words."""
    split = _CAMEL.sub(" ", text)
    return text if split == text else f"{text} {split}"


def chunk_uuid(entry_id: int, version: int, chunk_no: int) -> str:
    """A chunk's object id in Weaviate: derived from what it is, so rewriting a chunk replaces it."""
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{entry_id}:{version}:{chunk_no}"))


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
    entry_vector: np.ndarray | None = None  # on chunk 0 only: the entry's vector (see ENTRY_SPACES_SCHEMA)

    @property
    def uuid(self) -> str:
        return chunk_uuid(self.entry_id, self.version, self.chunk_no)

    def properties(self) -> dict[str, Any]:
        korean = self.language == "ko"
        headings = " > ".join(self.heading_path)
        title = split_identifiers(self.title)
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
            "title_en": "" if korean else title,
            "title_ko": title if korean else "",
            "body_en": "" if korean else f"{headings}\n{self.text}",
            "body_ko": f"{headings}\n{self.text}" if korean else "",
            "latin_ko": " ".join(_LATIN.findall(f"{title}\n{headings}\n{self.text}")) if korean else "",
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
    vector: np.ndarray | None = None  # the stored vector, when the search asked for it
    relevance: float | None = None  # similarity measured from the language centres (set by the retriever)
    entry_vector: np.ndarray | None = None  # chunk 0's details only: its entry's vector (ENTRY_SPACES_SCHEMA)


@dataclass
class LanguageProfile:
    """What the index knows about one language's chunks: their mean vector, and a sample of their titles and
    headings (short texts phrased like questions' topics, embedded as queries to find where queries of that
    language sit in the embedding space)."""

    centroid: np.ndarray
    headings: list[str]
    chunks: int = 0
    query_centroid: np.ndarray | None = None  # filled in by the retriever, which has the embedder


@dataclass
class IndexedEntry:
    entry_id: int
    version: int
    content_hash: str
    chunks: int = 0
    versions: set[int] = field(default_factory=set)


class KnowledgeIndex:
    def __init__(self, client: WeaviateClient, *, alias: str, korean_tokenizer: str = "kagome_kr",
                 server: psutil.Process | None = None) -> None:
        self.client = client
        self.server = server  # the embedded server's process (None for a cluster): see server_gone
        self.alias = alias
        self.korean_tokenizer = Tokenization(korean_tokenizer)
        self._profiles: dict[tuple[str, str, int], LanguageProfile] = {}
        self._counts: dict[str, tuple[float, dict[str, int]]] = {}
        self._counts_generation = 0  # one more on every write through this object: older readings are not kept
        self._refreshing: dict[str, Future[None]] = {}
        self._search_target: tuple[float, str] | None = None  # (when resolved, collection): see search_collection

    # --- schema and alias -------------------------------------------------------------------------
    def ensure(self) -> str:
        """The collection behind the alias, created on first use."""
        target = self.current_collection()
        if target is not None:
            return target
        name = self.create_collection()
        self.client.alias.create(alias_name=self.alias, target_collection=name)
        return name

    def tune_search(self) -> list[str]:
        """Bring the alias's collection's HNSW search settings to hnsw_ef() (a collection built before them keeps
        Weaviate's defaults until now); returns the vector spaces it changed."""
        collection = self._collection()
        stale = [name for name, vector in (collection.config.get().vector_config or {}).items()
                 if tuple(getattr(vector.vector_index_config, key, None) for key in HnswEf._fields) != hnsw_ef(name)]
        if stale:
            collection.config.update(vector_config=[
                Reconfigure.Vectors.update(
                    name=name, vector_index_config=Reconfigure.VectorIndex.hnsw(**hnsw_ef(name)._asdict()))
                for name in stale])
        return stale

    def current_collection(self) -> str | None:
        found = self.client.alias.get(alias_name=self.alias)
        return found.collection if found is not None else None

    def search_collection(self, *, max_age: float = SEARCH_ALIAS_MAX_AGE) -> str:
        """The collection behind the alias, for searches: resolved at most every ``max_age`` seconds. Another
        process's rebuild can drop it meanwhile; see ``search_collection_moved``."""
        cached = self._search_target
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        name = self.ensure()
        self._search_target = (time.monotonic(), name)
        return name

    def search_collection_moved(self, searched: str) -> bool:
        """After a search of ``searched`` failed: whether the alias now points elsewhere (resolved afresh), so
        that the search is worth repeating there."""
        self._search_target = None
        return self.search_collection() != searched

    def schema_version(self, collection: str | None = None) -> int | None:
        """The schema a collection was built with (the alias's by default), from its name."""
        name = collection or self.current_collection()
        if name is None:
            return None
        marker = name.removeprefix(f"{self.alias}_s").split("_", 1)[0]
        return int(marker) if marker.isdigit() else None

    def _schema(self, collection: str) -> int:
        """The schema a collection is read and written by: one built by an older schema (before 4 every vector
        shared one space, before 5 there were no entry vectors) is served as it is until the scheduler's reconcile
        rebuilds it (a deploy must not break search in the meantime)."""
        return self.schema_version(collection) or SCHEMA_VERSION

    def create_collection(self) -> str:
        name = f"{self.alias}_s{SCHEMA_VERSION}_{int(time.time() * 1000)}"
        word, korean = Tokenization.WORD, self.korean_tokenizer
        self.client.collections.create(
            name,
            vector_config=[
                Configure.Vectors.self_provided(
                    name=space,
                    vector_index_config=Configure.VectorIndex.hnsw(
                        distance_metric=VectorDistances.COSINE, **hnsw_ef(space)._asdict()))
                for space in (*VECTOR_SPACES, *(entry_space(language) for language in VECTOR_SPACES))
            ],
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
                Property(name="latin_ko", data_type=DataType.TEXT, tokenization=word),
            ],
        )
        return name

    def swap_alias(self, new_collection: str) -> str | None:
        """Point the alias at ``new_collection``; returns the collection it pointed at before."""
        old = self.current_collection()
        self._search_target = None
        if old is None:
            self.client.alias.create(alias_name=self.alias, target_collection=new_collection)
        else:
            self.client.alias.update(alias_name=self.alias, new_target_collection=new_collection)
        return old

    def drop_collection(self, name: str) -> None:
        self._search_target = None
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
        name = collection or self.ensure()
        target = self._collection(name)
        schema = self._schema(name)
        objects = [DataObject(properties=c.properties(), uuid=c.uuid, vector=_vectors_to_store(c, schema))
                   for c in chunks]
        try:
            for start in range(0, len(objects), 500):
                result = target.data.insert_many(objects[start : start + 500])
                if result.has_errors:
                    first = next(iter(result.errors.values()))
                    raise IndexUnavailable(f"Weaviate refused {len(result.errors)} chunk(s): {first.message}")
        finally:
            self._forget_counts()

    def delete_entry(self, entry_id: int, *, collection: str | None = None) -> None:
        try:
            self._collection(collection).data.delete_many(where=Filter.by_property("entry_id").equal(entry_id))
        finally:
            self._forget_counts()

    def _forget_counts(self) -> None:
        """After a write through this object the next search reads the counts again, and waits for them."""
        self._counts_generation += 1
        self._counts.clear()

    # --- reads ------------------------------------------------------------------------------------
    def vector_search(self, vector: np.ndarray, *, limit: int, language: str | None = None,
                      collection: str | None = None, include_vector: bool = False,
                      ranking_only: bool = False) -> list[IndexHit]:
        """The chunks nearest to ``vector`` (of one language when given); each carries its cosine similarity
        to ``vector``, and its stored vector when asked. ``ranking_only``: ids and language, no text (see
        ``chunk_details``)."""
        if language is None:
            hits = [hit for space in VECTOR_SPACES for hit in self.vector_search(
                vector, limit=limit, language=space, collection=collection, include_vector=include_vector,
                ranking_only=ranking_only)]
            return sorted(hits, key=lambda h: h.similarity or 0.0, reverse=True)[:limit]
        name = collection or self.ensure()
        space = vector_space(language) if self._schema(name) >= LANGUAGE_SPACES_SCHEMA else None
        return self._nearest(name, vector, space=space, language=language, limit=limit,
                             include_vector=include_vector and not ranking_only,
                             properties=_RANKING_PROPERTIES if ranking_only else _RETURN_PROPERTIES)

    def entry_search(self, vector: np.ndarray, *, limit: int, language: str,
                     collection: str | None = None) -> list[IndexHit]:
        """The entries of ``language`` whose entry vector is nearest to ``vector``: one hit per entry (its chunk 0,
        ids only). None in collections from before schema 5."""
        name = collection or self.ensure()
        if self._schema(name) < ENTRY_SPACES_SCHEMA:
            return []
        return self._nearest(name, vector, space=entry_space(language), language=language, limit=limit,
                             include_vector=False, properties=_RANKING_PROPERTIES)

    def _nearest(self, collection: str, vector: np.ndarray, *, space: str | None, language: str, limit: int,
                 include_vector: bool, properties: list[str]) -> list[IndexHit]:
        response = self._collection(collection).query.near_vector(
            near_vector=vector.tolist(),
            target_vector=space,
            limit=limit,
            # A language without a space of its own shares one (and is filtered there), as do all in old schemas.
            filters=None if space is not None and vector_space(language) == language else Filter.by_property(
                "language").equal(language),
            return_metadata=MetadataQuery(distance=True),
            return_properties=properties,
            include_vector=include_vector,
        )
        hits = []
        for obj in response.objects:
            similarity = 1.0 - float(obj.metadata.distance or 0.0)  # cosine distance is 1 - cosine similarity
            hit = _hit(obj.properties, score=similarity, similarity=similarity)
            hit.vector = _stored_vector(obj.vector, hit.language)
            hits.append(hit)
        return hits

    def keyword_search(self, query: str, *, fields: str, limit: int, vector: np.ndarray | None = None,
                       collection: str | None = None, include_vector: bool = False,
                       ranking_only: bool = False) -> list[IndexHit]:
        """BM25 over the keyword fields of one tokenization (``en`` or ``ko``; KEYWORD_FIELDS, or
        LATIN_QUERY_FIELDS for a query without Hangul; under ``kagome_kr`` the Korean fields get a Korean query's
        content words only, see ``korean_keywords``); with a query vector, each hit also carries its cosine
        similarity to it (``include_vector``: the stored vectors only, for a caller whose query vector is not ready
        yet). ``ranking_only``: ids and language only."""
        hangul = has_hangul(query)
        # Content words only for the morphological tokenizer; the others (`word`, `trigram`) match whole words or
        # pieces of them, particles included.
        analysed = hangul and fields == "ko" and self.korean_tokenizer == Tokenization.KAGOME_KR
        response = self._collection(collection).query.bm25(
            query=korean_keywords(query) if analysed else query,
            query_properties=(KEYWORD_FIELDS if hangul else LATIN_QUERY_FIELDS)[fields],
            limit=limit,
            return_metadata=MetadataQuery(score=True),
            return_properties=_RANKING_PROPERTIES if ranking_only else _RETURN_PROPERTIES,
            include_vector=(vector is not None or include_vector) and not ranking_only,
        )
        hits = []
        for obj in response.objects:
            stored = _stored_vector(obj.vector, str(obj.properties["language"]))
            similarity = float(np.dot(stored, vector)) if vector is not None and stored is not None else None
            hit = _hit(obj.properties, score=float(obj.metadata.score or 0.0), similarity=similarity)
            hit.vector = stored
            hits.append(hit)
        return hits

    def chunk_details(self, keys: Iterable[tuple[int, int, int]], *, collection: str | None = None
                      ) -> dict[tuple[int, int, int], IndexHit]:
        """Text, title and stored vector of the chunks ``(entry_id, version, chunk_no)`` (and a chunk 0's entry
        vector), in one request: a search ranks hundreds of chunks by id and needs the rest for a few (turning every
        result's vector into Python floats held the interpreter lock for ~10 ms a search)."""
        wanted = [chunk_uuid(*key) for key in set(keys)]
        if not wanted:
            return {}
        response = self._collection(collection).query.fetch_objects_by_ids(
            ids=wanted, limit=len(wanted), return_properties=_RETURN_PROPERTIES, include_vector=True)
        found = {}
        for obj in response.objects:
            hit = _hit(obj.properties, score=0.0, similarity=None)
            hit.vector = _stored_vector(obj.vector, hit.language)
            entry_vector = obj.vector.get(entry_space(hit.language)) if obj.vector else None
            hit.entry_vector = np.asarray(entry_vector, dtype=np.float32) if entry_vector else None
            found[(hit.entry_id, hit.version, hit.chunk_no)] = hit
        return found

    def unknown_terms(self, terms: Sequence[str], *, collection: str | None = None) -> list[str]:
        """The terms (single words) that no indexed chunk contains (one keyword query per term)."""
        target = self._collection(collection)
        return [term for term in terms
                if not target.query.bm25(query=term, query_properties=TERM_FIELDS, limit=1,
                                         return_properties=[]).objects]

    def language_counts(self, *, collection: str | None = None, max_age: float = COUNTS_MAX_AGE) -> dict[str, int]:
        """How many chunks the index holds in each language. Retrieval asks on every search, and the aggregation
        grows with the index (3 s at 300k chunks), so a search gets the counts last read: read at once the first
        time and after a write through this object; once they are ``max_age`` seconds old, read again in the
        background if the collection's size changed (other processes' writes show within about that)."""
        name = collection or self.ensure()
        cached = self._counts.get(name)
        if cached is None:
            return self._count_languages(name, self._counts_generation)
        read_at, counts = cached
        if time.monotonic() - read_at >= max_age and name not in self._refreshing:
            self._refreshing[name] = _COUNT_REFRESH.submit(self._refresh_counts, name, counts)
        return counts

    def _count_languages(self, name: str, generation: int) -> dict[str, int]:
        result = self._collection(name).aggregate.over_all(
            group_by=GroupByAggregate(prop="language"), total_count=True
        )
        counts = {str(group.grouped_by.value): int(group.total_count or 0) for group in result.groups
                  if group.total_count}
        self._keep_counts(name, generation, counts)
        return counts

    def _keep_counts(self, name: str, generation: int, counts: dict[str, int]) -> None:
        if generation == self._counts_generation:  # no write through this object since the reading began
            self._counts[name] = (time.monotonic(), counts)

    def _refresh_counts(self, name: str, last: dict[str, int]) -> None:
        """The counts again, but only when the collection's size changed: the total is a lookup (~1 ms), the
        counts by language an aggregation that takes the server's core for seconds at scale."""
        generation = self._counts_generation
        try:
            if self.count(collection=name) == sum(last.values()):
                self._keep_counts(name, generation, last)
            else:
                self._count_languages(name, generation)
        except Exception as exc:  # the last counts stay; the next search past max_age tries again
            log.warning("language counts of %s not refreshed (%s); searching with the last ones", name, exc)
        finally:
            del self._refreshing[name]

    def language_centroids(self, *, collection: str | None = None) -> dict[str, np.ndarray]:
        """The mean chunk vector of each language (see ``language_profiles``)."""
        return {language: p.centroid for language, p in self.language_profiles(collection=collection).items()}

    def language_profiles(self, *, collection: str | None = None) -> dict[str, LanguageProfile]:
        """Each language's mean chunk vector and a sample of its titles and headings (from at most
        CENTROID_SAMPLE chunks), cached until that language's chunk count changes. Every multilingual embedder
        pulls a query towards passages in the query's own language; measuring similarity from each language's
        centre removes that pull."""
        name = collection or self.ensure()
        profiles: dict[str, LanguageProfile] = {}
        for language, count in self.language_counts(collection=name).items():
            key = (name, language, count)
            if key not in self._profiles:
                self._profiles[key] = self._profile(name, language, count)
            profiles[language] = self._profiles[key]
        return profiles

    def _profile(self, collection: str, language: str, count: int) -> LanguageProfile:
        response = self._collection(collection).query.fetch_objects(
            filters=Filter.by_property("language").equal(language), limit=CENTROID_SAMPLE,
            include_vector=True, return_properties=["title", "heading_path"],
        )
        vectors = [v for v in (_stored_vector(obj.vector, language) for obj in response.objects) if v is not None]
        headings: set[str] = set()
        for obj in response.objects:
            headings.add(str(obj.properties.get("title") or ""))
            path = str(obj.properties.get("heading_path") or "")
            headings.add(path.rsplit(" > ", 1)[-1])
        mean: np.ndarray = np.asarray(vectors, dtype=np.float32).mean(axis=0)
        return LanguageProfile(centroid=mean, headings=sorted(h for h in headings if h.strip()), chunks=count)

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

    def server_gone(self) -> bool:
        """Whether the embedded server has exited. A process sharing a server another kb process started (the bot
        and `kb import`, say) lost the index for good when that process stopped it; it must connect again."""
        return self.server is not None and server_exited(self.server)

    def close(self) -> None:
        self.client.close()


def vector_space(language: str) -> str:
    """The named vector (HNSW graph) that holds a chunk of ``language``."""
    return language if language in VECTOR_SPACES else VECTOR_SPACES[0]


def hnsw_ef(space: str) -> HnswEf:
    """A vector space's dynamic ef."""
    return CHUNK_HNSW_EF if space in VECTOR_SPACES else ENTRY_HNSW_EF


def entry_space(language: str) -> str:
    """The named vector that holds the entry vectors of ``language``."""
    return f"entry_{vector_space(language)}"


def _vectors_to_store(chunk: ChunkRecord, schema: int) -> dict[str, list[float]] | list[float] | None:
    """A chunk's vector (and on chunk 0 its entry's) as the collection's schema holds them."""
    if chunk.vector is None:
        return None
    own: list[float] = chunk.vector.tolist()
    if schema < LANGUAGE_SPACES_SCHEMA:
        return own
    vectors = {vector_space(chunk.language): own}
    if chunk.entry_vector is not None and schema >= ENTRY_SPACES_SCHEMA:
        vectors[entry_space(chunk.language)] = chunk.entry_vector.tolist()
    return vectors


def _stored_vector(vectors: Any, language: str) -> np.ndarray | None:
    """A chunk's vector: in its language's space (``default`` in collections from before schema 4)."""
    stored = (vectors.get(vector_space(language)) or vectors.get("default")) if vectors else None
    return np.asarray(stored, dtype=np.float32) if stored else None


def _hit(props: Any, *, score: float, similarity: float | None) -> IndexHit:
    return IndexHit(
        entry_id=int(props["entry_id"]),
        version=int(props["version"]),
        chunk_no=int(props["chunk_no"]),
        source_ref=str(props.get("source_ref") or ""),
        title=str(props.get("title") or ""),
        heading_path=str(props.get("heading_path") or ""),
        text=str(props.get("text") or ""),
        language=str(props["language"]),
        score=score,
        similarity=similarity,
    )
