"""alembic is the only thing that creates the schema, and its migrations match the SQLModel tables."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import store.models  # noqa: F401
from store.db import make_engine, migrate


def test_migrations_create_every_table_and_match_the_models(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)  # idempotent: safe on every start
    engine = make_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"entries", "entry_versions", "proposals", "proposal_revisions", "decisions", "audit_log", "tasks",
                "index_outbox", "embedding_cache", "alembic_version"} <= tables
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
        assert diff == [], f"models and migrations differ; autogenerate a new revision: {diff}"
    finally:
        engine.dispose()
