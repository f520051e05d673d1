"""Build the service layer from settings: the composition of store, index and embeddings."""

from __future__ import annotations

import logging

from weaviate.exceptions import WeaviateBaseError

from bot.config import Settings
from bot.roles.llm import make_claude
from bot.services import KnowledgeService
from store.db import Database, migrate
from store.embeddings import CachedEmbedder, Embedder, default_embedder
from store.index import KnowledgeIndex
from store.weaviate_conn import WeaviateTarget, connect, embedded_server

log = logging.getLogger(__name__)


def weaviate_target(settings: Settings) -> WeaviateTarget:
    return WeaviateTarget(
        data_dir=settings.data_dir,
        binary_dir=settings.weaviate_binary_dir,
        version=settings.weaviate_version,
        port=settings.weaviate_port,
        grpc_port=settings.weaviate_grpc_port,
        url=settings.weaviate_url,
        grpc_url=settings.weaviate_grpc_url,
        api_key=settings.weaviate_api_key.get_secret_value() if settings.weaviate_api_key else None,
    )


def open_index(settings: Settings) -> KnowledgeIndex:
    target = weaviate_target(settings)
    index = KnowledgeIndex(connect(target), alias=settings.index_name, korean_tokenizer=settings.korean_tokenizer,
                           server=embedded_server(target))
    index.ensure()
    try:
        index.tune_search()
    except WeaviateBaseError as exc:  # e.g. a cluster user without schema rights: search works, a little slower
        log.warning("HNSW search settings not applied (%s); the collection's own serve", exc)
    return index


def build_service(settings: Settings, *, embedder: Embedder | None = None) -> KnowledgeService:
    """The service on this configuration; the schema is migrated and the index connects on first use."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.effective_database_url)
    db = Database(settings.effective_database_url)
    return KnowledgeService(
        settings=settings, db=db, index=None,
        embedder=CachedEmbedder(embedder or default_embedder(settings.embed_engine_dir), db),
        connect_index=lambda: open_index(settings), claude=make_claude(settings),
    )
