"""docker-compose.yml: valid against the Compose Specification, and a deployment that can actually come up."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from bot.config import DEFAULT_WEAVIATE_VERSION
from tests.deploy.helpers import ROOT, known_env_names

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"  # schemas/README.md

# Compose interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error},
# ${VAR:+alt}, ${VAR+alt} (https://docs.docker.com/reference/compose-file/interpolation/).
VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)|"
                      r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})")


class MissingVariable(ValueError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["plain"] or match["name"]
        op, arg = match["op"] or "", match["arg"] or ""
        present = name in env and (env[name] != "" or not op.startswith(":"))
        if op.endswith("-"):
            return env[name] if present else arg
        if op.endswith("?"):
            if not present:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op.endswith("+"):
            return arg if present else ""
        return env.get(name, "")

    return VARIABLE.sub(substitute, value)


def variables(value: Any) -> list[re.Match[str]]:
    if isinstance(value, dict):
        return [m for item in value.values() for m in variables(item)]
    if isinstance(value, list):
        return [m for item in value for m in variables(item)]
    return list(VARIABLE.finditer(value)) if isinstance(value, str) else []


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as compose reads an env file (comments and blank lines skipped)."""
    result = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not KEY=VALUE: {line!r}"
            result[key.strip()] = value.strip()
    return result


def commented_keys(path: Path) -> set[str]:
    return {m[1] for m in re.finditer(r"^#\s*([A-Z][A-Z0-9_]*)=", path.read_text(encoding="utf-8"), re.M)}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    # The example's values are blank placeholders; fill them as a user would.
    return {key: value or f"example-{key.lower()}" for key, value in parse_env_file(ENV_EXAMPLE).items()}


@pytest.fixture(scope="module")
def resolved(compose: dict[str, Any], example_env: dict[str, str]) -> dict[str, Any]:
    return dict(interpolate(compose, example_env))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    data = SCHEMA.read_bytes()
    assert hashlib.sha256(data).hexdigest() == COMPOSE_SCHEMA_SHA256, "the vendored schema changed: see its README"
    return dict(json.loads(data))


def validate(document: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_compose_file_is_valid_against_the_compose_specification(
        compose: dict[str, Any], resolved: dict[str, Any], schema: dict[str, Any]) -> None:
    validate(compose, schema)
    validate(resolved, schema)  # docker compose validates after interpolation


def test_the_schema_check_catches_a_mistake(compose: dict[str, Any], schema: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["bot"]["depends_on"]["db"]["condition"] = "service_ready"
    with pytest.raises(AssertionError, match="depends_on"):
        validate(broken, schema)


def test_required_variables_are_in_the_example_env(compose: dict[str, Any], example_env: dict[str, str]) -> None:
    required = {m["name"] for m in variables(compose) if (m["op"] or "").endswith("?")}
    assert required >= {"POSTGRES_PASSWORD", "KB_WEAVIATE_API_KEY"}
    assert required <= set(example_env), f"not in deploy/env.example: {sorted(required - set(example_env))}"
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(compose, {k: v for k, v in example_env.items() if k != "POSTGRES_PASSWORD"})


def test_every_service_has_a_healthcheck_and_a_named_volume(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == {"bot", "weaviate", "db"}
    declared = set(resolved.get("volumes") or {})
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        named = {v.split(":")[0] for v in service.get("volumes", []) if not v.startswith((".", "/"))}
        assert named, f"{name} has no named volume"
        assert named <= declared, f"{name} mounts undeclared volumes {named - declared}"
    assert len(declared) == 3


def test_bot_waits_for_healthy_stores(resolved: dict[str, Any]) -> None:
    depends = resolved["services"]["bot"]["depends_on"]
    assert depends == {"db": {"condition": "service_healthy"}, "weaviate": {"condition": "service_healthy"}}


def test_bot_runs_the_image_in_http_mode(resolved: dict[str, Any]) -> None:
    bot = resolved["services"]["bot"]
    assert bot["build"] == "."
    assert "command" not in bot and "entrypoint" not in bot, "the Dockerfile's HTTP-mode CMD must stay in force"
    assert bot["env_file"] == [".env"]
    assert any(p.endswith(":8080") for p in bot["ports"])
    check = " ".join(bot["healthcheck"]["test"])
    assert "http://127.0.0.1:8080/healthz" in check
    assert "/var/lib/kb" in {v.split(":")[1] for v in bot["volumes"]}
    assert bot["environment"]["KB_DATA_DIR"] == "/var/lib/kb"


def test_bot_reaches_the_stores_it_depends_on(resolved: dict[str, Any], example_env: dict[str, str]) -> None:
    services = resolved["services"]
    env = services["bot"]["environment"]
    db_env = services["db"]["environment"]
    url = urlsplit(env["KB_DATABASE_URL"])
    assert url.scheme == "postgresql+psycopg"
    assert (url.hostname, url.port) == ("db", 5432)
    assert url.username == db_env["POSTGRES_USER"] and url.path == "/" + db_env["POSTGRES_DB"]
    assert url.password == db_env["POSTGRES_PASSWORD"] == example_env["POSTGRES_PASSWORD"]

    weaviate = services["weaviate"]
    http_port = int(weaviate["command"][weaviate["command"].index("--port") + 1])
    assert urlsplit(env["KB_WEAVIATE_URL"])[:2] == ("http", f"weaviate:{http_port}")
    assert env["KB_WEAVIATE_GRPC_URL"] == "weaviate:50051"
    assert weaviate["environment"]["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] == example_env["KB_WEAVIATE_API_KEY"]


def test_weaviate_is_configured_for_the_bot(resolved: dict[str, Any]) -> None:
    weaviate = resolved["services"]["weaviate"]
    assert weaviate["image"] == f"semitechnologies/weaviate:{DEFAULT_WEAVIATE_VERSION}"
    env = weaviate["environment"]
    assert env["ENABLE_TOKENIZER_KAGOME_KR"] == "true"
    assert env["DEFAULT_VECTORIZER_MODULE"] == "none"
    assert env["ENABLE_MODULES"] == ""
    assert env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
    volume = next(v for v in weaviate["volumes"] if v.startswith("weaviate-data:"))
    assert volume.split(":")[1] == env["PERSISTENCE_DATA_PATH"]
    assert env["CLUSTER_HOSTNAME"], "a fixed node name keeps Raft state valid across re-creation"


def test_postgres_is_16_with_its_data_on_the_volume(resolved: dict[str, Any]) -> None:
    db = resolved["services"]["db"]
    assert db["image"].split(":")[1].split(".")[0].split("-")[0] == "16"
    assert "db-data:/var/lib/postgresql/data" in db["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


def test_every_variable_the_bot_gets_is_a_setting(compose: dict[str, Any]) -> None:
    known = known_env_names()
    environment = set(compose["services"]["bot"]["environment"])
    assert environment <= known, f"not settings: {sorted(environment - known)}"
    interpolated = {m["name"] or m["plain"] for m in variables(compose)}
    example = set(parse_env_file(ENV_EXAMPLE)) | commented_keys(ENV_EXAMPLE)
    unknown = example - known - interpolated
    assert not unknown, f"deploy/env.example sets variables that are neither settings nor used by compose: {unknown}"


def test_example_env_is_for_http_mode() -> None:
    active = parse_env_file(ENV_EXAMPLE)
    assert {"SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"} <= set(active)
    assert "SLACK_APP_TOKEN" not in active | dict.fromkeys(commented_keys(ENV_EXAMPLE)), \
        "SLACK_APP_TOKEN switches kb serve to Socket Mode"
    # An empty optional secret counts as set (an empty ANTHROPIC_API_KEY enables Claude with no key).
    assert not {"ANTHROPIC_API_KEY", "SENTRY_DSN"} & set(active)
