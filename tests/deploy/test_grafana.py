"""deploy/grafana/kb-bot.json: a Grafana dashboard whose every panel queries metrics the bot exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.helpers import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "kb-bot.json"

# The metrics kb-bot exports (bot/metrics.py), with their labels. Histograms by their _bucket series.
METRICS: dict[str, set[str]] = {
    "kb_commands_total": {"role", "command", "outcome"},
    "kb_command_seconds_bucket": {"role", "command", "le"},
    "kb_ack_seconds_bucket": {"le"},
    "kb_retrieval_seconds_bucket": {"le"},
    "kb_llm_seconds_bucket": {"role", "model", "le"},
    "kb_llm_tokens_total": {"role", "model", "direction"},
    "kb_answers_total": {"outcome"},
    "kb_feedback_total": {"helpful"},
    "kb_proposals": {"state"},
    "kb_approval_lead_seconds_bucket": {"le"},
    "kb_outbox_depth": set(),
    "kb_outbox_oldest_seconds": set(),
    "kb_index_drift": {"kind"},
    "kb_channel_events_total": {"channel", "action"},
}
GAUGES = {"kb_proposals", "kb_outbox_depth", "kb_outbox_oldest_seconds", "kb_index_drift"}
TARGET_LABELS = {"job", "instance", "namespace", "pod"}  # added by Prometheus or the scrape config
GRAFANA_VARIABLES = {"__rate_interval", "__range", "__interval"}

METRIC_NAME = re.compile(r"\bkb_[a-z0-9_]+")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"\{([^}]*)\}")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target.get("expr", "")


def test_dashboard_is_grafana_39_or_newer(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] and dashboard["title"]
    ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in all_panels(dashboard["panels"]):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]


def test_every_panel_has_a_promql_target(dashboard: dict[str, Any]) -> None:
    panels = [p for p in all_panels(dashboard["panels"]) if p["type"] != "row"]
    assert len(panels) >= 10
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("targets"), f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert METRIC_NAME.search(target.get("expr", "")), f"{panel['title']}: no kb_ metric in {target}"
            assert target["refId"]


def test_every_metric_used_is_exported(dashboard: dict[str, Any]) -> None:
    used = {name for _, expr in queries(dashboard) for name in METRIC_NAME.findall(expr)}
    assert used <= set(METRICS), f"not exported by kb-bot: {sorted(used - set(METRICS))}"
    assert used == set(METRICS), f"exported but not on the dashboard: {sorted(set(METRICS) - used)}"


def expression_problems(expr: str) -> list[str]:
    """What is wrong with a PromQL expression over kb-bot's metrics (shared with test_operations_doc.py)."""
    problems = []
    names = METRIC_NAME.findall(expr)
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        return [f"not exported by kb-bot: {unknown}"]
    allowed = set().union(*(METRICS[name] for name in names)) | TARGET_LABELS
    labels = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}
    for selector in SELECTOR.findall(expr):
        labels |= {m.group(1) for m in re.finditer(r"(\w+)\s*(?:=~|!~|!=|=)", selector)}
    if not labels <= allowed:
        problems.append(f"labels {sorted(labels - allowed)} are not on {sorted(set(names))}")
    for match in METRIC_NAME.finditer(expr):
        name = match.group()
        if name.endswith(("_total", "_bucket")) and not expr[:match.start()].rstrip().endswith(("rate(", "increase(")):
            problems.append(f"{name} is a counter: rate() or increase() it")
        if name in GAUGES and re.search(r"\bsum\b", expr):
            problems.append(f"every replica reports {name}: take the max, not the sum")
    for quantile in re.finditer(r"histogram_quantile\(\s*[\d.]+\s*,\s*(\w+)\s*by\s*\(([^)]*)\)", expr):
        if "le" not in {label.strip() for label in quantile.group(2).split(",")}:
            problems.append("histogram_quantile needs the le label kept")
    for le in re.findall(r'\ble="([^"]+)"', expr):
        if le != "+Inf" and "." not in le:
            problems.append(f'le="{le}": prometheus_client writes buckets as floats (le="10.0")')
    return problems


def test_every_query_is_sound(dashboard: dict[str, Any]) -> None:
    for title, expr in queries(dashboard):
        assert not expression_problems(expr), f"{title}: {expression_problems(expr)} in {expr}"


def test_the_query_checks_catch_mistakes() -> None:
    assert expression_problems("sum(kb_commands_total)")  # a counter without rate()
    assert expression_problems("sum(kb_outbox_depth)")  # a gauge summed over replicas
    assert expression_problems('sum by (model) (rate(kb_answers_total[5m]))')  # a label the metric lacks
    assert expression_problems('histogram_quantile(0.9, sum by (command) (rate(kb_command_seconds_bucket[5m])))')
    assert expression_problems('rate(kb_ack_seconds_bucket{le="3"}[5m])')
    assert not expression_problems('histogram_quantile(0.9, sum by (le) (rate(kb_ack_seconds_bucket[5m])))')


def test_template_variables_are_defined(dashboard: dict[str, Any]) -> None:
    defined = {variable["name"] for variable in dashboard["templating"]["list"]} | GRAFANA_VARIABLES
    assert "datasource" in defined
    for title, expr in queries(dashboard):
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= defined, f"{title}: undefined variables {sorted(used - defined)}"


def test_the_metric_check_rejects_an_unknown_metric(dashboard: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(dashboard))
    panel = next(p for p in all_panels(broken["panels"]) if p["type"] != "row")
    panel["targets"][0]["expr"] = "rate(kb_typo_total[5m])"
    with pytest.raises(AssertionError, match="kb_typo_total"):
        test_every_metric_used_is_exported(broken)
