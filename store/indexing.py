"""From the SQL store to the index: chunk, embed and write approved entries; rebuild; find and repair drift."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlmodel import col, select

from store.chunking import chunk_markdown
from store.db import Database
from store.embeddings import Embedder
from store.index import SCHEMA_VERSION, ChunkRecord, IndexedEntry, KnowledgeIndex
from store.models import Entry, EntryStatus, EntryVersion, OutboxEvent, OutboxOp, utcnow

log = logging.getLogger(__name__)


@dataclass
class DriftReport:
    missing: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    unapproved: list[int] = field(default_factory=list)
    schema_outdated: bool = False
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.missing or self.stale or self.unapproved or self.schema_outdated)

    def as_dict(self) -> dict[str, object]:
        return {"missing": self.missing, "stale": self.stale, "unapproved": self.unapproved,
                "schema_outdated": self.schema_outdated, "clean": self.clean, "repaired": self.repaired}


@dataclass
class SyncReport:
    applied: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    vectors_pending: int = 0  # entries written keyword-first, their vectors queued


@dataclass
class _Current:
    entry: Entry
    version: EntryVersion


def pending_outbox(db: Database, *, due_only: bool = False) -> list[OutboxEvent]:
    query = select(OutboxEvent).where(col(OutboxEvent.applied_at).is_(None)).order_by(col(OutboxEvent.id))
    if due_only:
        now = utcnow()
        query = query.where((col(OutboxEvent.next_attempt_at).is_(None)) | (col(OutboxEvent.next_attempt_at) <= now))
    with db.session() as session:
        return list(session.exec(query))


def record_outbox_attempt(db: Database, events: Sequence[OutboxEvent], *, error: str | None) -> None:
    """Mark events applied, or keep them queued with the error and a retry time that backs off."""
    now = utcnow()
    with db.session() as session:
        for event in events:
            row = session.get(OutboxEvent, event.id)
            if row is None:
                continue
            row.attempts += 1
            if error is None:
                row.applied_at = now
                row.last_error = None
            else:
                row.last_error = error[:2000]
                row.next_attempt_at = now + timedelta(seconds=min(300, 2 ** min(row.attempts, 8)))
            session.add(row)


class EntryIndexer:
    """Writes the index from the SQL store alone; every operation here is idempotent."""

    def __init__(self, *, db: Database, index: KnowledgeIndex, embedder: Embedder, chunk_max_chars: int = 1800,
                 embed_max_chars: int = 600) -> None:
        self.db = db
        self.index = index
        self.embedder = embedder
        self.chunk_max_chars = chunk_max_chars
        self.embed_max_chars = embed_max_chars

    # --- building chunks --------------------------------------------------------------------------
    def embedding_text(self, chunk: ChunkRecord) -> str:
        """What gets a vector: title and heading path first, since e5 sees only the start of long text."""
        heading = " > ".join(chunk.heading_path)
        prefix = f"{chunk.title}\n{heading}\n" if heading else f"{chunk.title}\n"
        return (prefix + chunk.text)[: self.embed_max_chars]

    def chunks_for(self, items: Sequence[_Current], *, embed: bool = True) -> list[ChunkRecord]:
        """The chunks of these entry versions with their vectors; with ``embed=False`` only the vectors already
        in the cache (the rest are left without, for keyword search now and vectors later)."""
        records = [
            ChunkRecord(
                entry_id=item.entry.id or 0, version=item.version.version, chunk_no=piece.chunk_no,
                title=item.version.title, heading_path=piece.heading_path, text=piece.text,
                language=item.version.language, tags=item.version.tags, source_ref=item.entry.source_ref,
                content_hash=item.version.content_hash,
            )
            for item in items
            for piece in chunk_markdown(item.version.body, max_chars=self.chunk_max_chars)
        ]
        texts = [self.embedding_text(r) for r in records]
        if embed:
            vectors: Sequence[np.ndarray | None] = list(self.embedder.embed_passages(texts))
        else:
            cached = getattr(self.embedder, "cached", None)
            vectors = cached(texts) if cached is not None else [None] * len(texts)
        for record, vector in zip(records, vectors, strict=True):
            record.vector = vector
        _set_entry_vectors(records)
        return records

    def _load(self, entry_ids: Iterable[int]) -> tuple[list[_Current], list[int]]:
        """Active entries with their current version, and the ids that must not be in the index."""
        ids = list(entry_ids)
        current: list[_Current] = []
        with self.db.session() as session:
            entries = {e.id: e for e in session.exec(select(Entry).where(col(Entry.id).in_(ids)))}
            active = [e for e in entries.values() if e.status == EntryStatus.ACTIVE]
            pairs = [(e.id, e.current_version) for e in active]
            versions = {
                (v.entry_id, v.version): v
                for v in session.exec(select(EntryVersion).where(col(EntryVersion.entry_id).in_([p[0] for p in pairs])))
                if (v.entry_id, v.version) in set(pairs)
            }
            for entry in active:
                current.append(_Current(entry, versions[(entry.id or 0, entry.current_version)]))
        absent = [i for i in ids if i not in {c.entry.id for c in current}]
        return current, absent

    # --- applying ---------------------------------------------------------------------------------
    def apply_entries(self, entry_ids: Iterable[int], *, collection: str | None = None, embed: bool = True
                      ) -> set[int]:
        """Make the index agree with the SQL store for these entries. Returns the entries written with chunks
        still lacking a vector (only with ``embed=False``)."""
        current, absent = self._load(entry_ids)
        for entry_id in absent:
            self.index.delete_entry(entry_id, collection=collection)
        if not current:
            return set()
        records = self.chunks_for(current, embed=embed)
        self.index.replace_entries([c.entry.id or 0 for c in current], records, collection=collection)
        return {r.entry_id for r in records if r.vector is None}

    def sync_outbox(self, *, limit: int = 1000, batch_entries: int = 64, embed: bool = True) -> SyncReport:
        """Apply queued index changes. A failure stays queued, with its error and a later retry time.

        ``embed=False`` is the keyword-first pass: entries are written at once with the vectors the cache
        already has, and a ``vectorize`` event is queued for each entry still missing some; a later pass with
        ``embed=True`` computes them. So a bulk import is searchable by keyword within seconds."""
        report = SyncReport()
        events = [e for e in pending_outbox(self.db, due_only=True)
                  if embed or e.op != OutboxOp.VECTORIZE][:limit]
        entry_ids = list(dict.fromkeys(e.entry_id for e in events))
        for start in range(0, len(entry_ids), batch_entries):
            batch = entry_ids[start : start + batch_entries]
            batch_events = [e for e in events if e.entry_id in set(batch)]
            try:
                unvectorized = self.apply_entries(batch, embed=embed)
                if unvectorized:
                    self._queue_vectors(unvectorized, batch_events)
                    report.vectors_pending += len(unvectorized)
            except Exception as exc:  # Weaviate down, refused write...: keep the events, note why
                log.warning("outbox apply failed for entries %s: %s", batch, exc)
                report.failed += len(batch_events)
                report.errors.append(str(exc))
                record_outbox_attempt(self.db, batch_events, error=str(exc))
            else:
                report.applied += len(batch_events)
                record_outbox_attempt(self.db, batch_events, error=None)
        return report

    def _queue_vectors(self, entry_ids: set[int], events: Sequence[OutboxEvent]) -> None:
        versions = {e.entry_id: e.version for e in events}
        with self.db.session() as session:
            for entry_id in sorted(entry_ids):
                session.add(OutboxEvent(entry_id=entry_id, version=versions.get(entry_id, 0), op=OutboxOp.VECTORIZE))

    # --- rebuild and drift ------------------------------------------------------------------------
    def active_ids(self) -> list[int]:
        with self.db.session() as session:
            return [i for i in session.exec(
                select(Entry.id).where(Entry.status == EntryStatus.ACTIVE).order_by(col(Entry.id))
            ) if i is not None]

    def rebuild(self, *, batch_entries: int = 64) -> int:
        """Fill a new collection from the SQL store alone, then swap the alias to it. Returns its chunk count."""
        started = utcnow()
        name = self.index.create_collection()
        try:
            ids = self.active_ids()
            for start in range(0, len(ids), batch_entries):
                self.apply_entries(ids[start : start + batch_entries], collection=name)
        except Exception:
            self.index.drop_collection(name)
            raise
        old = self.index.swap_alias(name)
        if old and old != name:
            self.index.drop_collection(old)
        self._catch_up_since(started)
        return self.index.count()

    def _catch_up_since(self, started: datetime) -> None:
        """Entries approved while the rebuild ran may have gone to the old collection: apply them again."""
        with self.db.session() as session:
            changed = set(session.exec(select(OutboxEvent.entry_id).where(col(OutboxEvent.created_at) >= started)))
        if changed:
            self.apply_entries(sorted(changed))

    def drift(self) -> DriftReport:
        report = DriftReport()
        report.schema_outdated = self.index.schema_version() not in (None, SCHEMA_VERSION)
        indexed: dict[int, IndexedEntry] = self.index.indexed_entries()
        with self.db.session() as session:
            active = {
                e.id: e for e in session.exec(select(Entry).where(Entry.status == EntryStatus.ACTIVE))
            }
            hashes = {
                v.entry_id: v.content_hash
                for v in session.exec(select(EntryVersion).join(Entry, col(Entry.id) == col(EntryVersion.entry_id))
                                      .where(col(EntryVersion.version) == col(Entry.current_version)))
            }
        for entry_id, entry in active.items():
            seen = indexed.get(entry_id or 0)
            if seen is None:
                report.missing.append(entry_id or 0)
            elif seen.versions != {entry.current_version} or seen.content_hash != hashes.get(entry_id or 0):
                report.stale.append(entry_id or 0)
        report.unapproved = sorted(i for i in indexed if i not in active)
        return report

    def repair(self, report: DriftReport) -> DriftReport:
        if report.schema_outdated:
            self.rebuild()
        else:
            for entry_id in report.unapproved:
                self.index.delete_entry(entry_id)
            todo = report.missing + report.stale
            for start in range(0, len(todo), 64):
                self.apply_entries(todo[start : start + 64])
        report.repaired = True
        return report


def _set_entry_vectors(records: Sequence[ChunkRecord]) -> None:
    """Chunk 0 of each entry version whose chunks all have vectors gets the entry's vector: their mean, unit
    length (a whole-runbook similarity; see store/index.py, ENTRY_SPACES_SCHEMA)."""
    groups: dict[tuple[int, int], list[ChunkRecord]] = {}
    for record in records:
        groups.setdefault((record.entry_id, record.version), []).append(record)
    for chunks in groups.values():
        vectors = [c.vector for c in chunks if c.vector is not None]
        first = min(chunks, key=lambda c: c.chunk_no)
        if len(vectors) == len(chunks) and first.chunk_no == 0:
            mean = np.mean(vectors, axis=0)
            first.entry_vector = (mean / (np.linalg.norm(mean) or 1.0)).astype(np.float32)
