"""docs/operations.md: its PromQL and alert rules query only what kb-bot exports, soundly."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.helpers import ROOT
from tests.deploy.test_grafana import METRIC_NAME, METRICS, expression_problems

DOC = ROOT / "docs" / "operations.md"


def code_blocks(language: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(rf"```{language}\n(.*?)```", text, re.S)]


def promql_expressions() -> list[str]:
    """Each expression of the promql blocks (comments dropped, continued lines joined)."""
    expressions: list[str] = []
    for block in code_blocks("promql"):
        for line in block.splitlines():
            code = line.split("#")[0].rstrip()
            if not code:
                continue
            if code.startswith("  ") and expressions:
                expressions[-1] += " " + code.strip()
            else:
                expressions.append(code.strip())
    return expressions


def alert_rules() -> list[dict[str, Any]]:
    (block,) = code_blocks("yaml")
    groups = yaml.safe_load(block)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_slo_queries_are_sound() -> None:
    expressions = promql_expressions()
    assert len(expressions) >= 8
    for expr in expressions:
        assert not expression_problems(expr), f"{expression_problems(expr)} in {expr}"


def test_alert_rules_are_sound_and_cover_the_slos() -> None:
    rules = alert_rules()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert not expression_problems(rule["expr"]), f"{rule['alert']}: {expression_problems(rule['expr'])}"
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
    used = {name for rule in rules for name in METRIC_NAME.findall(rule["expr"])}
    for slo_metric in ("kb_ack_seconds_bucket", "kb_command_seconds_bucket", "kb_outbox_oldest_seconds",
                       "kb_index_drift", "kb_answers_total"):
        assert slo_metric in used, f"no alert on {slo_metric}"


def test_metrics_table_lists_every_metric() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in METRICS:
        base = name.removesuffix("_bucket")
        assert f"| `{base}` |" in text, f"{base} is not in the metrics table"


def test_runbooks_are_there() -> None:
    text = DOC.read_text(encoding="utf-8")
    for heading in ("### Weaviate down", "### PostgreSQL down", "### Claude down", "### Slack retries"):
        assert heading in text
    for command in ("kb doctor --repair", "kb reindex", "kb sync"):
        assert f"`{command}`" in text
