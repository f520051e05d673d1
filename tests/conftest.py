"""Shared fixtures: a real Weaviate server (embedded, one per test session), real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.services import KnowledgeService
from bot.wiring import build_service
from store.weaviate_conn import WeaviateTarget, connect

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "corpus.jsonl"
POSTGRES_URL = os.environ.get("KB_TEST_DATABASE_URL")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, never one this session handed out before: a server's HTTP and gRPC ports are
    two calls, and the kernel may offer a just-closed port again."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def corpus_documents() -> list[dict[str, str]]:
    if not CORPUS.exists():
        pytest.skip(f"the shared corpus is not at {CORPUS}")
    with CORPUS.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="session")
def weaviate_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeaviateTarget]:
    """One real embedded Weaviate for the session; each test gets its own alias (index) in it."""
    settings = Settings()
    target = WeaviateTarget(
        data_dir=tmp_path_factory.mktemp("weaviate"), binary_dir=settings.weaviate_binary_dir,
        version=settings.weaviate_version, port=free_port(), grpc_port=free_port(),
    )
    client = connect(target)  # starts the server; later connections find it listening and share it
    yield target
    client.close()


def _postgres_database() -> Iterator[str]:
    assert POSTGRES_URL is not None
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"kb_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kb.sqlite3'}"
        return
    if POSTGRES_URL is None:
        if os.environ.get("CI"):
            pytest.fail("KB_TEST_DATABASE_URL is not set: CI must run the PostgreSQL half of the suite")
        pytest.skip("KB_TEST_DATABASE_URL is not set (make test starts PostgreSQL and sets it)")
    yield from _postgres_database()


def make_settings(tmp_path: Path, database_url: str, target: WeaviateTarget, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "weaviate_port": target.port,
        "weaviate_grpc_port": target.grpc_port,
        "index_name": f"T{uuid.uuid4().hex[:12]}",
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str, weaviate_target: WeaviateTarget) -> Settings:
    return make_settings(tmp_path, database_url, weaviate_target)


@pytest.fixture
def service(settings: Settings) -> Iterator[KnowledgeService]:
    svc = build_service(settings)
    yield svc
    svc.close()


@pytest.fixture
def sql_service(tmp_path: Path, database_url: str) -> Iterator[KnowledgeService]:
    """The service with no reachable index: for store tests that must not depend on Weaviate."""
    unreachable = Settings(data_dir=tmp_path / "data", database_url=database_url,  # type: ignore[call-arg]
                           weaviate_url=f"http://127.0.0.1:{free_port()}")
    svc = build_service(unreachable)
    yield svc
    svc.close()
