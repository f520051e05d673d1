"""Settings: defaults for the embedded setup, the libraries' own variable names, refusal of nonsense."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import Settings


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("KB_DATA_DIR", "KB_DATABASE_URL", "KB_WEAVIATE_URL", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.data_dir == tmp_path / ".local/share/kb"
    assert settings.effective_database_url == f"sqlite:///{tmp_path}/.local/share/kb/kb.sqlite3"
    assert settings.weaviate_url is None and not settings.llm_enabled


def test_libraries_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "shh")
    monkeypatch.setenv("KB_DATABASE_URL", "postgresql+psycopg://kb@db/kb")
    settings = Settings()
    assert settings.anthropic_api_key is not None and settings.anthropic_api_key.get_secret_value() == "sk-ant-test"
    assert "sk-ant-test" not in repr(settings)
    assert settings.slack_signing_secret is not None
    assert settings.effective_database_url == "postgresql+psycopg://kb@db/kb"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("korean_tokenizer", "klingon", "korean_tokenizer"),
        ("index_name", "lower-case", "capital letter"),
        ("search_alpha", 1.5, "less than or equal"),
        ("weaviate_grpc_url", "db:50051", "KB_WEAVIATE_URL"),
    ],
)
def test_nonsense_is_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ANTHROPIC_API_KEY=` in a .env or a manifest must not turn Claude on with an empty key."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")
    monkeypatch.setenv("KB_APPROVAL_CHANNEL", "")
    settings = Settings()
    assert settings.anthropic_api_key is None and not settings.llm_enabled and settings.approval_channel is None
