"""The alert parser: which Slack messages are alerts, and each integration's name, status, labels and summary."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.alerts import Alert, is_alert_message, message_lines, parse_alert, split_name
from tests.fakes.alert_messages import (
    ALERTS_CHANNEL,
    alertmanager_message,
    deploy_message,
    grafana_message,
    kb_reply,
    opsgenie_message,
    pagerduty_message,
    subject,
)

POD = {"namespace": "payments", "pod": "checkout-7d9f8b6c5-x2x4q", "container": "checkout",
       "job": "kube-state-metrics", "severity": "critical"}


def parsed(event: dict[str, Any]) -> Alert:
    alert = parse_alert(event)
    assert alert is not None, message_lines(event)
    return alert


# --- which messages ---------------------------------------------------------------------------------------------
def test_bot_messages_are_candidates_whether_webhook_or_app() -> None:
    webhook = alertmanager_message("KubePodCrashLooping", POD)
    assert webhook["subtype"] == "bot_message"
    assert is_alert_message(webhook)
    no_bot_id = {k: v for k, v in webhook.items() if k != "bot_id"}
    assert is_alert_message(no_bot_id)  # the subtype alone is enough
    app = pagerduty_message("KubePodCrashLooping", POD)
    assert "subtype" not in app
    assert is_alert_message(app)


def test_people_edits_and_other_subtypes_are_not_candidates() -> None:
    person = {"type": "message", "user": "U123", "text": "[FIRING:1] KubePodCrashLooping", "ts": "1.1",
              "channel": ALERTS_CHANNEL}
    assert not is_alert_message(person)
    edited = {"type": "message", "subtype": "message_changed", "channel": ALERTS_CHANNEL, "ts": "2.2",
              "message": alertmanager_message("KubePodCrashLooping", POD)}
    assert not is_alert_message(edited)
    broadcast = {**alertmanager_message("KubePodCrashLooping", POD), "subtype": "thread_broadcast"}
    assert not is_alert_message(broadcast)
    assert not is_alert_message({**alertmanager_message("KubePodCrashLooping", POD), "type": "app_mention"})


def test_thread_replies_are_not_candidates_but_a_thread_parent_is() -> None:
    alert = alertmanager_message("KubePodCrashLooping", POD)
    reply = {**alertmanager_message("KubePodCrashLooping", POD), "thread_ts": alert["ts"]}
    assert reply["ts"] != alert["ts"]
    assert not is_alert_message(reply)
    assert is_alert_message({**alert, "thread_ts": alert["ts"]})  # the parent of a thread carries both
    assert not is_alert_message(kb_reply(alert["ts"], "Runbook for KubePodCrashLooping"))


def test_our_own_bot_can_be_ignored_by_id() -> None:
    ours = {**alertmanager_message("KubePodCrashLooping", POD), "bot_id": "BBOT"}
    assert is_alert_message(ours)
    assert not is_alert_message(ours, ignore_bot_ids={"BBOT"})


# --- Alertmanager -----------------------------------------------------------------------------------------------
def test_alertmanager_firing_with_the_community_template() -> None:
    event = alertmanager_message("KubePodCrashLooping", POD, summary="Pod is crash looping.")
    assert event["attachments"][0]["title"].startswith("[FIRING:1] KubePodCrashLooping (")
    alert = parsed(event)
    assert (alert.name, alert.status, alert.source, alert.count) == ("KubePodCrashLooping", "firing",
                                                                     "alertmanager", 1)
    assert alert.labels == {"alertname": "KubePodCrashLooping", **POD}
    assert alert.summary == "Pod is crash looping."


def test_alertmanager_group_of_pods_keeps_only_the_common_labels() -> None:
    alert = parsed(alertmanager_message("KubePodCrashLooping", POD, count=3))
    assert alert.count == 3
    assert "pod" not in alert.labels  # each of the three pods differs
    assert alert.labels["namespace"] == "payments"
    assert alert.labels["container"] == "checkout"


def test_alertmanager_resolved() -> None:
    event = alertmanager_message("KubePodCrashLooping", POD, status="resolved")
    assert event["attachments"][0]["title"].startswith("[RESOLVED] KubePodCrashLooping")
    alert = parsed(event)
    assert (alert.name, alert.status) == ("KubePodCrashLooping", "resolved")
    assert alert.labels["pod"] == POD["pod"]


def test_alertmanager_alertname_label_wins_over_the_title() -> None:
    # a route grouped by namespace: the title starts with the namespace
    event = alertmanager_message("KubePodCrashLooping", POD, group_by=("namespace",))
    assert event["attachments"][0]["title"].startswith("[FIRING:1] payments (")
    assert parsed(event).name == "KubePodCrashLooping"
    # grouped by a cluster whose name looks like an alert name: only the label can tell
    event = alertmanager_message("KubePodCrashLooping", {**POD, "cluster": "ProdEU"}, group_by=("cluster",))
    assert event["attachments"][0]["title"].startswith("[FIRING:1] ProdEU (")
    assert parsed(event).name == "KubePodCrashLooping"


def test_alertmanager_default_template_has_only_the_title() -> None:
    event = alertmanager_message("KubeDeploymentReplicasMismatch", {"namespace": "payments", "deployment": "checkout"},
                                 template="default")
    assert event["attachments"][0]["text"] == ""
    alert = parsed(event)
    assert (alert.name, alert.status, alert.source, alert.labels) == ("KubeDeploymentReplicasMismatch", "firing",
                                                                      "alertmanager", {})
    # grouped by namespace: the name is the alert-like value in parentheses, not the namespace
    grouped = parsed(alertmanager_message("KubeDeploymentReplicasMismatch", {"namespace": "payments"},
                                          template="default", group_by=("namespace",)))
    assert grouped.name == "KubeDeploymentReplicasMismatch"


def test_alertmanager_default_template_with_a_summary_text() -> None:
    event = alertmanager_message("TargetDown", {"job": "node-exporter", "namespace": "monitoring"},
                                 template="default", text="100% of the node-exporter/node-exporter targets in "
                                                          "monitoring namespace are down.")
    alert = parsed(event)
    assert alert.name == "TargetDown"
    assert alert.summary == "100% of the node-exporter/node-exporter targets in monitoring namespace are down."


def test_mrkdwn_escaping_and_links_are_undone() -> None:
    event = alertmanager_message("NodeFilesystemSpaceFillingUp",
                                 {"instance": "10.0.3.17:9100", "mountpoint": "/var/lib/<docker>",
                                  "device": "/dev/nvme0n1p1", "team": "storage & infra"},
                                 summary="Filesystem has < 15% space left & is filling up > 2%/h.")
    text = event["attachments"][0]["text"]
    assert "&lt; 15%" in text and "&amp; is" in text and "`/var/lib/&lt;docker&gt;`" in text
    assert re.search(r"<https?://[^|>]+\|:chart_with_upwards_trend:>", text)
    alert = parsed(event)
    assert alert.summary == "Filesystem has < 15% space left & is filling up > 2%/h."
    assert alert.labels["mountpoint"] == "/var/lib/<docker>"
    assert alert.labels["team"] == "storage & infra"
    lines = message_lines(event)
    assert not any("&amp;" in line or "&lt;" in line or "<http" in line for line in lines)
    assert any("Graph: :chart_with_upwards_trend: Runbook: :spiral_note_pad:" in line.replace("*", "")
               for line in lines)


def test_mentions_and_links_read_as_their_labels() -> None:
    event = {"type": "message", "subtype": "bot_message", "bot_id": "B9", "ts": "5.5", "channel": ALERTS_CHANNEL,
             "text": "<!subteam^S0SRE|@sre-oncall> <!here> [FIRING:1] KubeletDown "
                     "(<https://prom.example.com/targets?job=kubelet&amp;x=1|kubelet> cluster-a) by <@U12|jane>"}
    assert message_lines(event) == ["@sre-oncall @here [FIRING:1] KubeletDown (kubelet cluster-a) by @jane"]
    assert parsed(event).name == "KubeletDown"


# --- Grafana ----------------------------------------------------------------------------------------------------
def test_grafana_firing_with_the_default_title_and_text() -> None:
    event = grafana_message("HighCPUUsage", {"instance": "web-1:9100", "job": "node", "severity": "critical"},
                            summary="CPU usage > 90% on web-1 for 5m")
    attachment = event["attachments"][0]
    assert attachment["title"].startswith("[FIRING:1] HighCPUUsage Infrastructure (")
    assert attachment["footer"].startswith("Grafana v")
    assert "**Firing**" in attachment["text"] and "&amp;matcher=" in attachment["text"]
    alert = parsed(event)
    assert (alert.name, alert.status, alert.source, alert.count) == ("HighCPUUsage", "firing", "grafana", 1)
    assert alert.labels == {"alertname": "HighCPUUsage", "grafana_folder": "Infrastructure",
                            "instance": "web-1:9100", "job": "node", "severity": "critical"}
    assert alert.summary == "CPU usage > 90% on web-1 for 5m"


def test_grafana_resolved_and_grouped() -> None:
    alert = parsed(grafana_message("HighCPUUsage", {"instance": "web-1:9100", "job": "node"}, status="resolved",
                                   count=2))
    assert (alert.status, alert.source, alert.count) == ("resolved", "grafana", 2)
    assert "instance" not in alert.labels and alert.labels["job"] == "node"


def test_grafana_mixed_notification_is_firing_with_the_firing_alerts_labels() -> None:
    text = ("**Firing**\n\nValue: B=95.2\nLabels:\n - alertname = DiskLatencyHigh\n - instance = db-1\n"
            " - severity = critical\nAnnotations:\n - summary = Disk latency &gt; 50ms\n"
            "Source: <https://grafana.example.com/alerting/grafana/x/view?orgId=1>\n\n"
            "**Resolved**\n\nValue: B=12.0\nLabels:\n - alertname = DiskLatencyHigh\n - instance = db-2\n"
            " - severity = critical\nAnnotations:\n - summary = Disk latency &gt; 50ms\n")
    event = {"type": "message", "subtype": "bot_message", "bot_id": "B0GRAFANA1", "ts": "7.7",
             "channel": ALERTS_CHANNEL, "text": "", "attachments": [{
                 "title": "[FIRING:1, RESOLVED:1] DiskLatencyHigh Databases (critical)", "text": text,
                 "footer": "Grafana v11.2.0"}]}
    alert = parsed(event)
    assert (alert.name, alert.status, alert.count, alert.source) == ("DiskLatencyHigh", "firing", 1, "grafana")
    assert alert.labels["instance"] == "db-1"  # the firing one, not db-2
    assert alert.summary == "Disk latency > 50ms"


@pytest.mark.parametrize(("title", "name", "labels"), [
    ("[FIRING:1] HighCPUUsage (instance=web-1:9100, job=node)", "HighCPUUsage",
     {"instance": "web-1:9100", "job": "node"}),
    ("[FIRING:1]  (HighCPUUsage Infrastructure web-1:9100)", "HighCPUUsage", {}),
])
def test_grafana_title_variants(title: str, name: str, labels: dict[str, str]) -> None:
    event = {"type": "message", "subtype": "bot_message", "bot_id": "B0GRAFANA1", "ts": "8.8",
             "channel": ALERTS_CHANNEL, "username": "grafana", "attachments": [{"title": title, "text": ""}]}
    alert = parsed(event)
    assert (alert.name, alert.source, alert.labels) == (name, "grafana", labels)


# --- PagerDuty --------------------------------------------------------------------------------------------------
def test_pagerduty_triggered_incident_from_alertmanager() -> None:
    event = pagerduty_message("KubePodCrashLooping", POD, number=4821)
    assert event["text"].startswith("Triggered: <https://acme.pagerduty.com/incidents/")
    alert = parsed(event)
    assert (alert.name, alert.status, alert.source) == ("KubePodCrashLooping", "firing", "pagerduty")
    assert alert.labels["urgency"] == "High"
    assert alert.labels["pagerduty_service"] == "Kubernetes Production"


@pytest.mark.parametrize(("status", "expected"), [("resolved", "resolved"), ("acknowledged", "firing"),
                                                  ("escalated", "firing")])
def test_pagerduty_status_comes_from_pagerduty_not_the_title(status: str, expected: str) -> None:
    event = pagerduty_message("KubePodCrashLooping", POD, status=status, by="Jane Doe")
    assert "[FIRING:1]" in event["text"]  # the incident keeps its creation title
    alert = parsed(event)
    assert (alert.name, alert.status) == ("KubePodCrashLooping", expected)


def test_pagerduty_incident_titles_not_from_alertmanager() -> None:
    event = pagerduty_message("", title="PostgresReplicationLagHigh on db-2 & db-3")
    assert "db-2 &amp; db-3" in event["text"]
    named = parsed(event)
    assert named.name == "PostgresReplicationLagHigh"
    assert named.summary == "PostgresReplicationLagHigh on db-2 & db-3"
    prose = parsed(pagerduty_message("", title="Checkout error rate above 5%"))
    assert prose.name == "Checkout error rate above 5%"


def test_pagerduty_classic_text_line() -> None:
    event = {"type": "message", "bot_id": "B0PAGERDTY", "ts": "9.9", "channel": ALERTS_CHANNEL,
             "bot_profile": {"name": "PagerDuty"},
             "text": "Resolved by <https://acme.pagerduty.com/users/P1|Jane Doe>: Incident "
                     "<https://acme.pagerduty.com/incidents/Q1|#1234> [FIRING:2] etcdMembersDown (etcd kube-system)"}
    alert = parsed(event)
    assert (alert.name, alert.status, alert.source, alert.count) == ("etcdMembersDown", "resolved", "pagerduty", 2)


def test_pagerduty_messages_that_are_not_incidents() -> None:
    oncall = {"type": "message", "bot_id": "B0PAGERDTY", "ts": "9.1", "channel": ALERTS_CHANNEL,
              "bot_profile": {"name": "PagerDuty"}, "text": "Jane Doe is on call for *Kubernetes Production* "
                                                           "until Monday 09:00"}
    assert parse_alert(oncall) is None
    # the same words from another bot, without an alert in them
    ci = {"type": "message", "bot_id": "B0CI", "ts": "9.2", "channel": ALERTS_CHANNEL,
          "text": "Resolved: #1234 flaky checkout test"}
    assert parse_alert(ci) is None


# --- Opsgenie ---------------------------------------------------------------------------------------------------
def test_opsgenie_new_alert_with_tags_and_priority() -> None:
    event = opsgenie_message("KubePodCrashLooping", POD, number=88, priority="P2")
    assert event["text"].startswith("New alert: <https://acme.app.opsgenie.com/alert/detail/")
    alert = parsed(event)
    assert (alert.name, alert.status, alert.source) == ("KubePodCrashLooping", "firing", "opsgenie")
    assert alert.labels == {**POD, "priority": "P2"}


@pytest.mark.parametrize(("status", "expected"), [("closed", "resolved"), ("acknowledged", "firing")])
def test_opsgenie_actions(status: str, expected: str) -> None:
    event = opsgenie_message("KubeNodeNotReady", {"node": "ip-10-0-3-17"}, status=status)
    assert event["text"].startswith(("Alert closed by", "Alert acknowledged by"))
    alert = parsed(event)
    assert (alert.name, alert.status, alert.labels["node"]) == ("KubeNodeNotReady", expected, "ip-10-0-3-17")


def test_opsgenie_plain_message_and_bracketed_variant() -> None:
    prose = parsed(opsgenie_message("", message="Kafka consumer lag on orders", tags=["kafka", "team=data"],
                                    description="Lag > 10k for 15m"))
    assert (prose.name, prose.summary) == ("Kafka consumer lag on orders", "Lag > 10k for 15m")
    assert prose.labels == {"team": "data", "priority": "P1"}  # the bare tag "kafka" is dropped
    bracketed = {"type": "message", "bot_id": "B0OPS", "ts": "3.3", "channel": ALERTS_CHANNEL,
                 "text": "[Opsgenie] #612: RabbitMQQueueBacklog on broker-2"}
    alert = parsed(bracketed)
    assert (alert.name, alert.status, alert.source) == ("RabbitMQQueueBacklog", "firing", "opsgenie")


def test_opsgenie_description_from_alertmanagers_default_template_gives_labels() -> None:
    description = ("Pod payments/checkout is crash looping.\nAlerts Firing:\nLabels:\n"
                   " - alertname = KubePodCrashLooping\n - namespace = payments\n - pod = checkout-1\n"
                   "Annotations:\n - summary = Pod is crash looping.\nSource: http://prometheus:9090/graph\n")
    alert = parsed(opsgenie_message("KubePodCrashLooping", {}, tags=[], description=description))
    assert alert.labels == {"alertname": "KubePodCrashLooping", "namespace": "payments", "pod": "checkout-1",
                            "priority": "P1"}
    assert alert.summary == "Pod is crash looping."


# --- other bots -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("event", [
    deploy_message(),
    kb_reply("1700000000.000100", "Runbook for *KubePodCrashLooping*: Pod crash looping (entry #12 v3)"),
    {"type": "message", "subtype": "bot_message", "bot_id": "B0CI", "ts": "4.4", "channel": ALERTS_CHANNEL,
     "text": "", "attachments": [{"title": "Build #5521 passed", "text": "• *branch:* `main`\n• *took:* `4m`",
                                  "fallback": "Build #5521 passed"}]},
    {"type": "message", "subtype": "bot_message", "bot_id": "B0X", "ts": "4.5", "channel": ALERTS_CHANNEL},
], ids=["deploy", "our-reply", "ci", "empty"])
def test_bot_messages_that_are_not_alerts(event: dict[str, Any]) -> None:
    assert parse_alert(event) is None


def test_blocks_from_an_unknown_bot() -> None:
    event = {"type": "message", "bot_id": "B0CUSTOM", "ts": "6.6", "channel": ALERTS_CHANNEL, "text": "alert",
             "blocks": [
                 {"type": "header", "text": {"type": "plain_text", "text": "[FIRING:3] RedisDown"}},
                 {"type": "rich_text", "elements": [{"type": "rich_text_list", "style": "bullet", "elements": [
                     {"type": "rich_text_section", "elements": [{"type": "text", "text": "alertname: RedisDown"}]},
                     {"type": "rich_text_section", "elements": [{"type": "text", "text": "cluster: eu-1"}]},
                 ]}]},
                 {"type": "section", "text": {"type": "mrkdwn", "text": "*Summary:* Redis &lt;cache-2&gt; is down"}},
                 {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text",
                                                                              "text": "Resolve"}}]},
             ]}
    alert = parsed(event)
    assert (alert.name, alert.status, alert.count) == ("RedisDown", "firing", 3)
    assert alert.labels == {"alertname": "RedisDown", "cluster": "eu-1"}
    assert alert.summary == "Redis <cache-2> is down"


def test_labels_without_a_title_are_an_alert_of_unknown_source() -> None:
    event = {"type": "message", "bot_id": "B0CUSTOM", "ts": "6.7", "channel": ALERTS_CHANNEL,
             "text": "Labels:\n - alertname = QueueStuck\n - queue = orders"}
    alert = parsed(event)
    assert (alert.name, alert.source, alert.labels) == ("QueueStuck", "unknown",
                                                        {"alertname": "QueueStuck", "queue": "orders"})


# --- fingerprint and search text --------------------------------------------------------------------------------
def test_fingerprint_is_stable_across_refires_of_the_same_target() -> None:
    first = parsed(alertmanager_message("KubePodCrashLooping", POD))
    refire = parsed(alertmanager_message("KubePodCrashLooping", {**POD, "pod": "checkout-7d9f8b6c5-zz9k1",
                                                                 "severity": "warning"}, count=2))
    resolved = parsed(alertmanager_message("KubePodCrashLooping", POD, status="resolved"))
    assert re.fullmatch(r"[0-9a-f]{64}", first.fingerprint)
    assert first.fingerprint == refire.fingerprint == resolved.fingerprint
    # source-independent: Grafana's folder label and Opsgenie's priority are not part of it
    grafana = parsed(grafana_message("KubePodCrashLooping", POD))
    opsgenie = parsed(opsgenie_message("KubePodCrashLooping", POD))
    assert grafana.fingerprint == first.fingerprint == opsgenie.fingerprint


def test_fingerprint_differs_across_targets_and_names() -> None:
    base = parsed(alertmanager_message("KubePodCrashLooping", POD)).fingerprint
    other_namespace = parsed(alertmanager_message("KubePodCrashLooping", {**POD, "namespace": "search"}))
    other_container = parsed(alertmanager_message("KubePodCrashLooping", {**POD, "container": "sidecar"}))
    other_alert = parsed(alertmanager_message("KubePodNotReady", POD))
    assert len({base, other_namespace.fingerprint, other_container.fingerprint, other_alert.fingerprint}) == 4
    node_a = parsed(grafana_message("HighCPUUsage", {"instance": "web-1:9100", "job": "node"}))
    node_b = parsed(grafana_message("HighCPUUsage", {"instance": "web-2:9100", "job": "node"}))
    assert node_a.fingerprint != node_b.fingerprint


def test_alert_is_hashable_and_compares_labels() -> None:
    one = Alert("TargetDown", "firing", {"job": "node"}, "alertmanager")
    same = Alert("TargetDown", "firing", {"job": "node"}, "alertmanager")
    other = Alert("TargetDown", "firing", {"job": "api"}, "alertmanager")
    assert one == same and hash(one) == hash(same)
    assert one != other
    assert len({one, same, other}) == 2


@pytest.mark.parametrize(("name", "words"), [
    ("KubePodCrashLooping", "Kube Pod Crash Looping"),
    ("KubeAPIDown", "Kube API Down"),
    ("etcdHighFsyncDurations", "etcd High Fsync Durations"),
    ("NodeRAIDDegraded", "Node RAID Degraded"),
    ("CPUThrottlingHigh", "CPU Throttling High"),
    ("node_disk_full", "node disk full"),
])
def test_split_name(name: str, words: str) -> None:
    assert split_name(name) == words


def test_search_text_is_the_words_and_the_summary() -> None:
    alert = parsed(alertmanager_message("KubePodCrashLooping", POD, summary="Pod is crash looping."))
    assert alert.search_text == "Kube Pod Crash Looping (KubePodCrashLooping): Pod is crash looping."
    assert Alert("Checkout error rate high", "firing", {}, "pagerduty").search_text == "Checkout error rate high"


def test_subject_matches_alertmanagers_template() -> None:
    # values sorted by label name; group values first, the other common ones in parentheses
    assert subject("KubePodCrashLooping", {"namespace": "default", "pod": "p-1"}) == \
        "[FIRING:1] KubePodCrashLooping (default p-1)"
    assert subject("Watchdog", {}) == "[FIRING:1] Watchdog "
    assert subject("KubePodCrashLooping", {"namespace": "default"}, status="resolved",
                   group_by=("namespace",)) == "[RESOLVED] default (KubePodCrashLooping)"
