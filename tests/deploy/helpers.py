"""Shared by the deployment tests: paths, the generator script, and the environment variables kb-bot reads."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]

# Variables kb-bot reads from the environment outside `Settings`, and the file that reads each. The tests check
# that the file still reads it, so a manifest never sets a variable nobody reads.
PROCESS_ENV: dict[str, str] = {"KB_LOG_LEVEL": "bot/cli.py"}


@cache
def gen_settings_doc() -> ModuleType:
    """scripts/gen_settings_doc.py as a module (scripts/ is not a package)."""
    path = ROOT / "scripts" / "gen_settings_doc.py"
    spec = importlib.util.spec_from_file_location("gen_settings_doc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def settings_env_names() -> set[str]:
    """Every environment variable `Settings` reads: KB_<FIELD> or the field's aliases."""
    from bot.config import Settings

    gen = gen_settings_doc()
    prefix = str(Settings.model_config.get("env_prefix") or "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        names.update(gen.env_names(name, field, prefix))
    return names


def known_env_names() -> set[str]:
    """What a deployment may set for the bot: the settings, plus the variables read outside `Settings`."""
    for name, path in PROCESS_ENV.items():
        source = (ROOT / path).read_text(encoding="utf-8")
        assert f'"{name}"' in source, f"{path} no longer reads {name}: remove it from the manifests and PROCESS_ENV"
    return settings_env_names() | set(PROCESS_ENV)


def secret_env_names() -> set[str]:
    """The environment variables of the secret settings (SecretStr fields)."""
    from bot.config import Settings

    gen = gen_settings_doc()
    prefix = str(Settings.model_config.get("env_prefix") or "")
    return {env for name, field in Settings.model_fields.items() if gen.is_secret(field.annotation)
            for env in gen.env_names(name, field, prefix)}
