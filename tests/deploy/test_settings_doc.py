"""The settings table in docs/deploy.md is exactly what scripts/gen_settings_doc.py generates from Settings."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from pydantic import Field, SecretStr

from bot.config import Settings
from tests.deploy.helpers import ROOT, gen_settings_doc, secret_env_names, settings_env_names

DOC = ROOT / "docs" / "deploy.md"


def table_of(document: str) -> str:
    gen = gen_settings_doc()
    return document.split(gen.BEGIN)[1].split(gen.END)[0].strip()


def test_docs_table_is_what_the_script_generates() -> None:
    gen = gen_settings_doc()
    current = DOC.read_text(encoding="utf-8")
    expected = gen.replace_table(current, gen.render_table())
    diff = "".join(difflib.unified_diff(current.splitlines(True), expected.splitlines(True), "docs/deploy.md",
                                        "generated"))
    assert current == expected, f"{diff}\nRun: .venv/bin/python scripts/gen_settings_doc.py"


def test_table_names_every_variable_settings_reads() -> None:
    table = table_of(DOC.read_text(encoding="utf-8"))
    rows = table.splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)
    for name in settings_env_names():
        assert f"`{name}`" in table, f"{name} is not documented"
    for name in ("ANTHROPIC_API_KEY", "KB_ANTHROPIC_API_KEY", "SLACK_SIGNING_SECRET", "SENTRY_DSN", "KB_DATABASE_URL"):
        assert f"`{name}`" in table


def test_secrets_are_marked_and_never_show_a_value() -> None:
    gen = gen_settings_doc()

    class WithSecretDefault(Settings):
        demo_token: SecretStr = Field(SecretStr("hunter2"), description="A secret with a default.")

    table = gen.render_table(WithSecretDefault)
    row = next(line for line in table.splitlines() if "`KB_DEMO_TOKEN`" in line)
    assert "**secret**" in row and "hunter2" not in table and "*(secret)*" in row
    documented = table_of(DOC.read_text(encoding="utf-8"))
    for name in secret_env_names():
        line = next(line for line in documented.splitlines() if f"`{name}`" in line)
        assert "**secret**" in line, f"{name} is not marked secret"


def test_a_new_setting_makes_the_docs_stale() -> None:
    gen = gen_settings_doc()

    class WithNewSetting(Settings):
        reticulation_level: int = Field(7, ge=1, description="How many splines to reticulate.")

    table = gen.render_table(WithNewSetting)
    assert "| `KB_RETICULATION_LEVEL` | integer (≥ 1) | `7` | How many splines to reticulate. |" in table
    current = DOC.read_text(encoding="utf-8")
    assert gen.replace_table(current, table) != current


def test_defaults_do_not_depend_on_the_machine() -> None:
    table = gen_settings_doc().render_table()
    home = str(Path.home())
    assert home == "/" or home not in table
    assert "`~/.local/share/kb`" in table


def test_check_mode_fails_on_a_stale_document_and_the_script_fixes_it(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    gen = gen_settings_doc()
    doc = tmp_path / "deploy.md"
    doc.write_text(f"# Title\n\n{gen.BEGIN}\n| old | table |\n{gen.END}\n\nAfter.\n", encoding="utf-8")
    assert gen.main(["--check", "--doc", str(doc)]) == 1
    assert "| old | table |" in capsys.readouterr().out
    assert gen.main(["--doc", str(doc)]) == 0
    assert gen.main(["--check", "--doc", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Title\n") and text.endswith("\n\nAfter.\n") and "`KB_DATA_DIR`" in text


def test_markers_are_required() -> None:
    with pytest.raises(ValueError, match="marker"):
        gen_settings_doc().replace_table("no markers here", "| table |")


def test_fallback_descriptions_name_real_fields() -> None:
    gen = gen_settings_doc()
    assert set(gen.UNDESCRIBED) <= set(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert field.description or gen.UNDESCRIBED.get(name), f"{name} has no description anywhere"
