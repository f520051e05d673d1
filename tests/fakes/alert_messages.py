"""Slack ``message`` events as alerting integrations post them, for parser units and Events API scenarios.

    event = alertmanager_message("KubePodCrashLooping", {"namespace": "default", "pod": "api-7d9f"})
    body = event_callback(event)          # wrap for the Events API (see below)

Each builder returns the ``event`` dict of an Events API ``event_callback`` the way Slack delivers it:

- **Alertmanager** posts through an incoming webhook: ``subtype: bot_message``, ``bot_id``, the receiver's
  ``username`` ("AlertManager" by default), empty ``text`` and one attachment (``title`` = the subject
  ``[FIRING:n] <group values> (<other common values>)``, ``title_link``, ``fallback`` = ``title | link``,
  ``color`` ``a30200`` (danger) or ``2eb886`` (good), ``mrkdwn_in``). ``template="community"`` is the widely copied
  text (``*Alert:* summary - `severity```, ``*Description:*``, ``*Graph:*``/``*Runbook:*`` links, ``*Details:*``
  and ``• *label:* `value``` bullets); ``template="default"`` leaves the text empty (Alertmanager's own default)
  or ``text="..."`` sets it.
- **Grafana** (contact point with a webhook URL): ``bot_message``, one attachment with the same subject as title
  (grouped by ``alertname`` and ``grafana_folder``), the default text (``**Firing**``, ``Value:``, ``Labels:``,
  ``Annotations:``, ``Source:``/``Silence:``/``Dashboard:``/``Panel:`` links), footer ``Grafana v..``.
- **PagerDuty** and **Opsgenie** are Slack apps: ``bot_id``, ``app_id``, ``bot_profile`` and the bot ``user``, no
  subtype. PagerDuty: ``text`` ``Triggered: <link|#1234> <title>`` and an attachment of blocks (linked
  ``[#1234] <title>``, ``Status``/``Urgency``/``Service``/``Assigned`` fields, buttons). Opsgenie: ``text`` ``New
  alert: <link|#123>: <message>`` (``Alert acknowledged by ...`` / ``Alert closed by ...``) and an attachment
  (title ``#123: <message>``, the description, ``Priority``/``Tags``/``Routed Teams`` fields, buttons). Both
  incidents' titles default to the Alertmanager subject, as Alertmanager's PagerDuty and Opsgenie receivers set.

Text is escaped as Slack stores mrkdwn (``&`` ``<`` ``>`` as entities, URLs as ``<url>`` or ``<url|label>``).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

ALERTS_CHANNEL = "C0ALERTS1"
TEAM_ID = "T1"
ALERTMANAGER_BOT_ID = "B0ALERTMGR"
GRAFANA_BOT_ID = "B0GRAFANA1"
PAGERDUTY_BOT_ID = "B0PAGERDTY"
PAGERDUTY_APP_ID = "A0PAGERDTY"
OPSGENIE_BOT_ID = "B0OPSGENIE"
OPSGENIE_APP_ID = "A0OPSGENIE"
DEPLOY_BOT_ID = "B0DEPLOYER"

_seq = itertools.count(1)


def _ts() -> str:
    """A unique Slack ``ts`` (seconds.micros), increasing."""
    return f"{int(time.time())}.{next(_seq):06d}"


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: the three control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str | None = None) -> str:
    """A link as Slack stores it (``&`` in URLs is escaped too)."""
    return f"<{escape(url)}|{escape(label)}>" if label else f"<{escape(url)}>"


def _message(*, bot_id: str, channel: str, ts: str | None, text: str = "", subtype: str | None = None,
             **extra: Any) -> dict[str, Any]:
    ts = ts or _ts()
    event: dict[str, Any] = {"type": "message"}
    if subtype:
        event["subtype"] = subtype
    event.update({"text": text, "ts": ts, "bot_id": bot_id, **extra, "channel": channel, "event_ts": ts,
                  "channel_type": "channel", "team": TEAM_ID})
    return event


def event_callback(event: Mapping[str, Any], *, team_id: str = TEAM_ID, api_app_id: str = "A1") -> dict[str, Any]:
    """The Events API envelope around an event (JSON-encode it for the request body)."""
    return {"token": "verification-token", "team_id": team_id, "api_app_id": api_app_id, "event": dict(event),
            "type": "event_callback", "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(float(event.get("ts") or time.time())), "authorizations": [
                {"enterprise_id": None, "team_id": team_id, "user_id": "UBOT", "is_bot": True,
                 "is_enterprise_install": False}],
            "is_ext_shared_channel": False}


# --- Alertmanager's notification model: alerts, group labels, common labels, the subject ------------------------
def _alerts(labels: Mapping[str, str], alertname: str, count: int) -> list[dict[str, str]]:
    """``count`` alerts sharing ``labels``; from the second on, ``pod`` (or ``instance``) differs, as when several
    replicas fire together."""
    base = {"alertname": alertname, **labels}
    varying = next((k for k in ("pod", "instance") if k in base), None)
    alerts = []
    for i in range(max(count, 1)):
        one = dict(base)
        if varying and i:
            one[varying] = f"{base[varying]}-{i + 1}" if varying == "pod" else f"{base[varying]}.{i + 1}"
        alerts.append(dict(sorted(one.items())))
    return alerts


def _common(alerts: list[dict[str, str]]) -> dict[str, str]:
    common = dict(alerts[0])
    for alert in alerts[1:]:
        common = {k: v for k, v in common.items() if alert.get(k) == v}
    return common


def subject(alertname: str, labels: Mapping[str, str] | None = None, *, status: str = "firing", count: int = 1,
            group_by: tuple[str, ...] = ("alertname",)) -> str:
    """Alertmanager's (and Grafana's) ``__subject``: ``[FIRING:n] <group values> (<other common values>)``,
    values sorted by label name."""
    alerts = _alerts(labels or {}, alertname, count)
    common = _common(alerts)
    group = {k: v for k, v in sorted(common.items()) if k in group_by}
    rest = {k: v for k, v in sorted(common.items()) if k not in group}
    head = f"[FIRING:{len(alerts)}]" if status == "firing" else "[RESOLVED]"
    line = f"{head} {' '.join(group.values())} "
    if len(common) > len(group):
        line += f"({' '.join(rest.values())})"
    return line


def _severity(labels: Mapping[str, str]) -> str:
    return labels.get("severity", "warning")


def alertmanager_message(alertname: str, labels: Mapping[str, str] | None = None, status: str = "firing",
                         count: int = 1, summary: str = "Something is wrong.", *, description: str = "",
                         template: Literal["community", "default"] = "community", text: str | None = None,
                         group_by: tuple[str, ...] = ("alertname",), runbook_url: str | None = None,
                         external_url: str = "http://alertmanager.example.com:9093",
                         prometheus_url: str = "http://prometheus.example.com:9090",
                         receiver: str = "slack-alerts", username: str = "AlertManager",
                         channel: str = ALERTS_CHANNEL, ts: str | None = None,
                         bot_id: str = ALERTMANAGER_BOT_ID) -> dict[str, Any]:
    """Alertmanager's Slack receiver (incoming webhook). ``labels`` are one alert's labels besides
    ``alertname``; ``count`` alerts are generated (see :func:`_alerts`)."""
    alerts = _alerts(labels or {}, alertname, count)
    title = subject(alertname, labels, status=status, count=count, group_by=group_by)
    title_link = f"{external_url}/#/alerts?receiver={receiver}"
    if text is None and template == "community":
        parts = []
        for alert in alerts:
            graph = f"{prometheus_url}/graph?g0.expr=ALERTS%7Balertname%3D%22{alertname}%22%7D&g0.tab=1"
            runbook = runbook_url or f"https://runbooks.example.com/{alertname.lower()}"
            lines = [f"*Alert:* {escape(summary)} - `{_severity(alert)}`"]
            if description:
                lines.append(f"*Description:* {escape(description)}")
            lines.append(f"*Graph:* {link(graph, ':chart_with_upwards_trend:')} "
                         f"*Runbook:* {link(runbook, ':spiral_note_pad:')}")
            lines.append("*Details:*")
            lines.extend(f"  • *{k}:* `{escape(v)}`" for k, v in alert.items())
            parts.append("\n".join(lines))
        body = "\n\n".join(parts)
    else:
        body = escape(text or "")
    attachment = {
        "id": 1, "color": "a30200" if status == "firing" else "2eb886",
        "fallback": f"{escape(title)} | {link(title_link)}",
        "title": escape(title), "title_link": title_link, "text": body,
        "mrkdwn_in": ["fallback", "pretext", "text"],
    }
    return _message(bot_id=bot_id, channel=channel, ts=ts, subtype="bot_message", username=username,
                    icons={"emoji": ":fire:"} if status == "firing" else {"emoji": ":white_check_mark:"},
                    attachments=[attachment])


def grafana_message(alertname: str, labels: Mapping[str, str] | None = None, status: str = "firing",
                    count: int = 1, summary: str = "Something is wrong.", *, description: str = "",
                    folder: str = "Infrastructure", value: str = "B=97.31, C=1",
                    grafana_url: str = "https://grafana.example.com", grafana_version: str = "10.4.1",
                    rule_uid: str = "bdk2x9v8m1ce8a", username: str = "grafana",
                    channel: str = ALERTS_CHANNEL, ts: str | None = None,
                    bot_id: str = GRAFANA_BOT_ID) -> dict[str, Any]:
    """Grafana alerting's Slack contact point with its default title and text. Grafana sends the text as is;
    Slack turns the bare URLs into ``<url>`` and escapes the rest."""
    alerts = _alerts({"grafana_folder": folder, **(labels or {})}, alertname, count)
    title = subject(alertname, {"grafana_folder": folder, **(labels or {})}, status=status, count=count,
                    group_by=("alertname", "grafana_folder"))
    annotations = {"summary": summary, **({"description": description} if description else {})}
    rule_url = f"{grafana_url}/alerting/grafana/{rule_uid}/view?orgId=1"
    blocks = []
    for alert in alerts:
        silence = (f"{grafana_url}/alerting/silence/new?alertmanager=grafana&matcher=alertname%3D{alertname}"
                   f"&matcher=grafana_folder%3D{folder}&orgId=1")
        lines = [f"Value: {value}", "Labels:"]
        lines.extend(f" - {k} = {escape(v)}" for k, v in alert.items())
        lines.append("Annotations:")
        lines.extend(f" - {k} = {escape(v)}" for k, v in sorted(annotations.items()))
        lines.append(f"Source: {link(rule_url)}")
        lines.append(f"Silence: {link(silence)}")
        lines.append(f"Dashboard: {link(f'{grafana_url}/d/rYdddlPWk?orgId=1')}")
        lines.append(f"Panel: {link(f'{grafana_url}/d/rYdddlPWk?orgId=1&viewPanel=3')}")
        blocks.append("\n".join(lines))
    heading = "**Firing**" if status == "firing" else "**Resolved**"
    text = heading + "\n\n" + "\n\n".join(blocks) + "\n"
    attachment = {
        "id": 1, "color": "D63232" if status == "firing" else "36A64F", "ts": int(time.time()),
        "fallback": escape(title), "title": escape(title), "title_link": rule_url, "text": text,
        "footer": f"Grafana v{grafana_version}",
        "footer_icon": "https://grafana.com/static/assets/img/fav32.png",
    }
    return _message(bot_id=bot_id, channel=channel, ts=ts, subtype="bot_message", username=username,
                    attachments=[attachment])


_PD_STATUS = {"triggered": "Triggered", "firing": "Triggered", "acknowledged": "Acknowledged",
              "resolved": "Resolved", "escalated": "Escalated"}
_PD_COLOR = {"Triggered": "E01E5A", "Acknowledged": "ECB22E", "Resolved": "2EB67D", "Escalated": "E01E5A"}


def pagerduty_message(alertname: str, labels: Mapping[str, str] | None = None, status: str = "triggered", *,
                      number: int = 1234, title: str | None = None, service: str = "Kubernetes Production",
                      urgency: str = "High", assignee: str = "Jane Doe", by: str | None = None,
                      domain: str = "acme.pagerduty.com", channel: str = ALERTS_CHANNEL, ts: str | None = None,
                      bot_id: str = PAGERDUTY_BOT_ID) -> dict[str, Any]:
    """The PagerDuty Slack app's incident notification. The incident title defaults to the subject
    Alertmanager's PagerDuty receiver sends; the status is PagerDuty's (triggered, acknowledged, resolved)."""
    word = _PD_STATUS[status.lower()]
    title = title if title is not None else subject(alertname, labels).strip()
    incident_id = f"Q{uuid.uuid5(uuid.NAMESPACE_URL, f'{domain}/{number}').hex[:13].upper()}"
    url = f"https://{domain}/incidents/{incident_id}"
    lead = f"{word} by {by}" if by else word
    fields = [f"*Status:*\n{word}", f"*Urgency:*\n{urgency}",
              f"*Service:*\n{link(f'https://{domain}/service-directory/PSV1X2Y', service)}",
              f"*Assigned:*\n{link(f'https://{domain}/users/PUS3R42', assignee)}"]
    attachment = {
        "id": 1, "color": _PD_COLOR[word], "fallback": f"{lead}: #{number} {escape(title)}",
        "blocks": [
            {"type": "section", "block_id": "title", "text": {
                "type": "mrkdwn", "text": f"*{link(url, f'[#{number}] {title}')}*", "verbatim": False}},
            {"type": "section", "block_id": "fields",
             "fields": [{"type": "mrkdwn", "text": f, "verbatim": False} for f in fields]},
            {"type": "actions", "block_id": "actions", "elements": [
                {"type": "button", "action_id": "acknowledge", "text": {"type": "plain_text", "text": "Acknowledge"},
                 "value": incident_id},
                {"type": "button", "action_id": "resolve", "text": {"type": "plain_text", "text": "Resolve"},
                 "value": incident_id},
            ]},
        ],
    }
    user = "U0PAGERDTY"
    return _message(bot_id=bot_id, channel=channel, ts=ts, text=f"{lead}: {link(url, f'#{number}')} {escape(title)}",
                    user=user, app_id=PAGERDUTY_APP_ID, attachments=[attachment],
                    bot_profile={"id": bot_id, "app_id": PAGERDUTY_APP_ID, "name": "PagerDuty", "deleted": False,
                                 "team_id": TEAM_ID, "updated": 1700000000,
                                 "icons": {"image_36": "https://avatars.slack-edge.com/pagerduty_36.png"}})


_OG_ACTION = {"created": "New alert", "firing": "New alert", "acknowledged": "Alert acknowledged",
              "closed": "Alert closed", "resolved": "Alert closed"}
_OG_PRIORITY_COLOR = {"P1": "D00000", "P2": "FF7F00", "P3": "FFB900", "P4": "3BA5E6", "P5": "808080"}


def opsgenie_message(alertname: str, labels: Mapping[str, str] | None = None, status: str = "created", *,
                     number: int = 123, message: str | None = None, description: str = "",
                     priority: str = "P1", tags: list[str] | None = None, teams: str = "SRE",
                     by: str = "Jane Doe", domain: str = "acme.app.opsgenie.com", channel: str = ALERTS_CHANNEL,
                     ts: str | None = None, bot_id: str = OPSGENIE_BOT_ID) -> dict[str, Any]:
    """The Opsgenie Slack app's alert notification. ``message`` defaults to the subject Alertmanager's Opsgenie
    receiver sends; ``tags`` default to ``key:value`` per label (a common receiver setting)."""
    action = _OG_ACTION[status.lower()]
    message = message if message is not None else subject(alertname, labels).strip()
    tags = tags if tags is not None else [f"{k}:{v}" for k, v in sorted((labels or {}).items())]
    alert_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{domain}/{number}")
    url = f"https://{domain}/alert/detail/{alert_id}-{int(time.time() * 1000)}/details"
    lead = action if action == "New alert" else f"{action} by {by}"
    attachment: dict[str, Any] = {
        "id": 1, "color": "2EB67D" if action == "Alert closed" else _OG_PRIORITY_COLOR.get(priority, "808080"),
        "fallback": f"{lead}: #{number}: {escape(message)}",
        "title": f"#{number}: {escape(message)}", "title_link": url, "text": escape(description),
        "fields": [{"title": "Priority", "value": priority, "short": True},
                   {"title": "Tags", "value": escape(", ".join(tags)), "short": True},
                   {"title": "Routed Teams", "value": teams, "short": True}],
        "callback_id": f"alert-{alert_id}", "mrkdwn_in": ["text", "pretext"],
        "actions": [{"id": "1", "name": "action", "text": "Ack", "type": "button", "value": "ack"},
                    {"id": "2", "name": "action", "text": "Close", "type": "button", "value": "close"}],
    }
    return _message(bot_id=bot_id, channel=channel, ts=ts, text=f"{lead}: {link(url, f'#{number}')}: "
                    f"{escape(message)}", user="U0OPSGENIE", app_id=OPSGENIE_APP_ID, attachments=[attachment],
                    bot_profile={"id": bot_id, "app_id": OPSGENIE_APP_ID, "name": "Opsgenie", "deleted": False,
                                 "team_id": TEAM_ID, "updated": 1700000000,
                                 "icons": {"image_36": "https://avatars.slack-edge.com/opsgenie_36.png"}})


# --- messages from bots that are not alerts -------------------------------------------------------------------
def deploy_message(service: str = "checkout-api", version: str = "v2.14.1", *, environment: str = "production",
                   by: str = "jane", channel: str = ALERTS_CHANNEL, ts: str | None = None,
                   bot_id: str = DEPLOY_BOT_ID) -> dict[str, Any]:
    """A CD bot's deploy notice (an app with blocks): not an alert."""
    text = f":rocket: Deployed *{service}* `{version}` to *{environment}* by {by}"
    return _message(bot_id=bot_id, channel=channel, ts=ts, text=text, user="U0DEPLOYER", app_id="A0DEPLOYER",
                    blocks=[{"type": "section", "block_id": "d1", "text": {"type": "mrkdwn", "text": text}},
                            {"type": "context", "block_id": "d2", "elements": [
                                {"type": "mrkdwn", "text": f"• *commit:* `3f9c2ab` • *pipeline:* "
                                 f"{link('https://ci.example.com/p/8812', '#8812')} "
                                 "&lt;2 min&gt; &amp; healthy"}]}],
                    bot_profile={"id": bot_id, "app_id": "A0DEPLOYER", "name": "Deploybot", "deleted": False,
                                 "team_id": TEAM_ID})


def kb_reply(thread_ts: str, text: str, *, channel: str = ALERTS_CHANNEL, bot_id: str = "BBOT",
             ts: str | None = None) -> dict[str, Any]:
    """Our own bot's reply in an alert's thread."""
    return _message(bot_id=bot_id, channel=channel, ts=ts, text=text, user="UBOT", app_id="A1", thread_ts=thread_ts,
                    parent_user_id="UBOT")
