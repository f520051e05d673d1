"""Alert notifications in Slack: which messages are alerts, and the alert's name, status and labels.

Pure: a Slack ``message`` event (the dict of the Events API) in, an :class:`Alert` out; no Slack SDK, no I/O.

Recognized (their default Slack output, and the templates most teams use):

- **Alertmanager**'s Slack receiver (an incoming webhook, ``subtype: bot_message``): one attachment whose title is
  ``[FIRING:2] KubePodCrashLooping (default my-pod-7d9f prometheus)`` or ``[RESOLVED] ...`` (the group labels'
  values, then the other common labels' values in parentheses). The default text is empty; the common community
  template adds per alert ``*Alert:* <summary> - `critical```, ``*Description:* ...`` and ``*Details:*`` with one
  ``• *label:* `value``` bullet per label. Templates that list ``Labels:`` / `` - name = value`` lines (Alertmanager's
  ``__text_alert_list``) are read too.
- **Grafana** alerting's Slack contact point: the same ``[FIRING:1] ...`` title (``[FIRING:1, RESOLVED:1]`` when
  mixed; group labels are ``alertname`` and ``grafana_folder``), a ``Grafana v..`` footer, and the default text
  ``**Firing**`` / ``**Resolved**``, then per alert ``Value: ...``, ``Labels:`` and ``Annotations:`` with
  `` - name = value`` lines, ``Source:`` / ``Silence:`` / ``Dashboard:`` links.
- **PagerDuty**'s Slack app: ``Triggered: #1234 <incident title>`` (or ``Acknowledged`` / ``Resolved`` /
  ``Escalated`` ...; ``[#1234] <title>`` with a ``Status:`` field in the newer layout). An incident created by
  Alertmanager is titled with its subject, so ``[FIRING:1] KubePodCrashLooping ...`` inside the title still names
  the alert; the status comes from PagerDuty's word (an incident title never changes once created).
- **Opsgenie**'s Slack app: ``New alert: #123: <message>``, ``Alert acknowledged by Jane: ...``, ``Alert closed
  by ...``, ``[Opsgenie] ...``; ``Priority:`` and ``Tags:`` fields (``key:value`` / ``key=value`` tags become
  labels, bare tags are dropped).

Slack's mrkdwn is undone first: ``&lt;`` ``&gt;`` ``&amp;`` are unescaped, ``<https://x|label>`` becomes
``label`` (a bare ``<https://x>`` its URL), user, channel and group mentions their id or name.

Labels are those common to every alert of the notification (Alertmanager's ``CommonLabels``): a notification
for two crash-looping pods has ``namespace`` but not ``pod``. The ``alertname`` label wins over the title.

A message is not an alert (``parse_alert`` returns None) unless an alert subject (``[FIRING...]``), a PagerDuty
or Opsgenie notification line, or an ``alertname`` label is found: deploy notices, our own replies and chatter
from other bots stay None.

The **fingerprint** names "the same alert for the same target", so a re-fire within the repeat window is not
answered twice: sha256 of the name and the *identity* labels only (:data:`IDENTITY_LABELS`: cluster, namespace,
job, service, instance, node, workload names, container, device...). Volatile labels are left out on purpose:
``pod`` (a crash-looping deployment's pods are renamed on every reschedule), ``severity`` (warning escalating to
critical is the same problem), ``prometheus``/replica labels (HA pairs), ``endpoint``, ``uid``, ``alertstate``
and anything source-specific. It is source-independent: the same name and identity labels give the same
fingerprint whether Alertmanager or Grafana posted them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

AlertStatus = Literal["firing", "resolved"]
AlertSource = Literal["alertmanager", "grafana", "pagerduty", "opsgenie", "unknown"]

#: Labels that identify *what* is alerting; the fingerprint uses these and the name, nothing else.
IDENTITY_LABELS = frozenset({
    "cluster", "namespace", "job", "service", "instance", "node", "host", "hostname", "container",
    "deployment", "statefulset", "daemonset", "replicaset", "job_name", "cronjob", "horizontalpodautoscaler",
    "persistentvolumeclaim", "persistentvolume", "device", "mountpoint", "interface", "controller", "env",
    "environment", "region", "datacenter", "pagerduty_service",
})
MAX_SUMMARY = 500

# --- Slack mrkdwn ----------------------------------------------------------------------------------------------
_ANGLE = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_EMPHASIS = re.compile(r"(?<![\w\\])([_~])(?=\S)(.+?)(?<=\S)\1(?!\w)")
_SPACES = re.compile(r"[ \t\u00a0]+")


def _angle(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    if target.startswith("!"):  # <!here>, <!channel>, <!subteam^S1|@sre>, <!date^...^fallback|text>
        if label:
            return label if label.startswith("@") or target.startswith("!date") else f"@{label}"
        return "@" + target[1:].split("^")[0]
    if target.startswith(("@", "#")):  # <@U123|jane>, <#C123|alerts>
        return target[0] + label if label else target
    return label if label else target


def unescape_mrkdwn(text: str) -> str:
    """Slack mrkdwn as a person reads it: links and mentions replaced by their label, entities unescaped.
    Emphasis (``*bold*``, backticks) is kept: the parser reads structure from it (see :func:`plain`)."""
    text = _ANGLE.sub(_angle, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def plain(text: str) -> str:
    """Without mrkdwn emphasis: ``*``, backticks, ``_italic_`` and ``~strike~`` (underscores inside words stay)."""
    text = text.replace("*", "").replace("`", "")
    text = _EMPHASIS.sub(r"\2", text)
    return _SPACES.sub(" ", text).strip()


# --- collecting the text of a message -------------------------------------------------------------------------
def _rich_text(element: Mapping[str, Any]) -> str:
    """A rich_text element tree as text (rich text is not escaped: its text is literal)."""
    kind = element.get("type")
    if kind == "text":
        return str(element.get("text") or "")
    if kind == "link":
        return str(element.get("text") or element.get("url") or "")
    if kind in ("user", "usergroup"):
        return "@" + str(element.get("user_id") or element.get("usergroup_id") or "")
    if kind == "channel":
        return "#" + str(element.get("channel_id") or "")
    if kind == "emoji":
        return f":{element.get('name') or ''}:"
    if kind == "broadcast":
        return "@" + str(element.get("range") or "")
    children = [c for c in element.get("elements") or [] if isinstance(c, Mapping)]
    if kind == "rich_text_list":
        return "\n".join("• " + _rich_text(c) for c in children)
    joiner = "\n" if kind == "rich_text" else ""
    return joiner.join(_rich_text(c) for c in children)


def _text_object(obj: Any) -> str:
    if not isinstance(obj, Mapping):
        return ""
    return unescape_mrkdwn(str(obj.get("text") or ""))


def _block_texts(blocks: Any) -> Iterator[str]:
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "rich_text":
            yield _rich_text(block)
        elif kind in ("section", "header"):
            yield _text_object(block.get("text"))
            for item in block.get("fields") or []:
                # a two-line field "*Status:*\nTriggered" reads as "Status: Triggered"
                yield re.sub(r"^([^\n]{1,40}?:\**)\s*\n", r"\1 ", _text_object(item))
        elif kind == "context":
            yield from (_text_object(e) for e in block.get("elements") or [] if isinstance(e, Mapping)
                        and e.get("type") in ("mrkdwn", "plain_text"))
        # actions (buttons), images, dividers: no alert text


def _attachment_texts(attachment: Mapping[str, Any]) -> Iterator[str]:
    for key in ("pretext", "author_name", "title", "text"):
        yield unescape_mrkdwn(str(attachment.get(key) or ""))
    for item in attachment.get("fields") or []:
        if isinstance(item, Mapping):
            title = unescape_mrkdwn(str(item.get("title") or "")).strip()
            value = unescape_mrkdwn(str(item.get("value") or "")).strip()
            yield f"{title}: {value}" if title else value
    yield from _block_texts(attachment.get("blocks"))
    yield unescape_mrkdwn(str(attachment.get("fallback") or ""))


def _attachments(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in event.get("attachments") or [] if isinstance(a, Mapping)]


def message_lines(event: Mapping[str, Any]) -> list[str]:
    """Every line of text in the message, unescaped, in reading order: ``text``, ``blocks``, then each
    attachment's pretext, title, text, fields, blocks and fallback. A repeated chunk (the fallback is usually the
    title again) is kept once."""
    chunks: list[str] = [unescape_mrkdwn(str(event.get("text") or ""))]
    chunks.extend(_block_texts(event.get("blocks")))
    for attachment in _attachments(event):
        chunks.extend(_attachment_texts(attachment))
    seen: set[str] = set()
    lines: list[str] = []
    for chunk in chunks:
        key = chunk.strip()
        if not key or key in seen:
            continue
        seen.add(key)
        lines.extend(line.rstrip() for line in chunk.splitlines())
    return lines


def _identity(event: Mapping[str, Any]) -> str:
    """Who posted it, lowercased: bot name, webhook username, footers, authors and link hosts."""
    parts = [str(event.get("username") or "")]
    profile = event.get("bot_profile")
    if isinstance(profile, Mapping):
        parts.append(str(profile.get("name") or ""))
    for attachment in _attachments(event):
        parts.extend(str(attachment.get(k) or "") for k in ("footer", "author_name", "service_name", "title_link",
                                                             "author_link", "from_url"))
    return " ".join(parts).lower()


# --- the alert ------------------------------------------------------------------------------------------------
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def split_name(name: str) -> str:
    """``KubePodCrashLooping`` -> ``Kube Pod Crash Looping``; ``etcdHighFsyncDurations`` -> ``etcd High Fsync
    Durations``; ``NodeRAIDDegraded`` -> ``Node RAID Degraded``; ``node_disk_full`` -> ``node disk full``."""
    words = _CAMEL.sub(" ", name)
    return _SPACES.sub(" ", re.sub(r"[_\-.:/]+", " ", words)).strip()


@dataclass(frozen=True)
class Alert:
    """One alert notification. ``labels`` are excluded from the hash (a dict is not hashable) but compared."""

    name: str
    status: AlertStatus
    labels: dict[str, str] = field(hash=False)
    source: AlertSource
    count: int = 1
    summary: str = ""

    @property
    def fingerprint(self) -> str:
        """sha256 (hex, 64 characters) of the name and the identity labels: see the module docstring."""
        identity = sorted((k, v) for k, v in self.labels.items() if k in IDENTITY_LABELS)
        payload = json.dumps([self.name, identity], ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    @property
    def search_text(self) -> str:
        """For retrieval: the name split into words (and the name itself when that differs), then the summary."""
        words = self.name if " " in self.name.strip() else split_name(self.name)
        head = words if words == self.name else f"{words} ({self.name})"
        return f"{head}: {self.summary}" if self.summary else head


def is_alert_message(event: Mapping[str, Any], *, ignore_bot_ids: Collection[str] = ()) -> bool:
    """A new top-level message posted by a bot or integration: ``bot_id`` set or ``subtype == "bot_message"``,
    no other subtype (edits, deletions, thread broadcasts, joins), not a reply in a thread (``thread_ts`` absent
    or equal to ``ts``), and not from one of ``ignore_bot_ids`` (pass our own bot id)."""
    if event.get("type", "message") != "message":
        return False
    subtype = event.get("subtype")
    if subtype not in (None, "bot_message"):
        return False
    bot_id = event.get("bot_id")
    if not bot_id and subtype != "bot_message":
        return False
    if bot_id and bot_id in ignore_bot_ids:
        return False
    thread_ts = event.get("thread_ts")
    return not thread_ts or thread_ts == event.get("ts")


# --- subjects: [FIRING:2] Name (values) -----------------------------------------------------------------------
_SUBJECT = re.compile(r"\[\s*(FIRING|RESOLVED)\s*(?::\s*(\d+))?\s*(?:,\s*RESOLVED\s*(?::\s*(\d+))?\s*)?\]\s*(.*)",
                      re.IGNORECASE)
_IDENT = re.compile(r"[A-Za-z_][\w:.\-]*")
_LABEL_KEY = r"[A-Za-z_][\w.\-/]*"
_PAREN_PAIR = re.compile(rf"({_LABEL_KEY})\s*=\s*\"?([^,\"]*)\"?")


@dataclass
class _Subject:
    status: AlertStatus
    count: int
    name: str
    labels: dict[str, str]


def _name_score(token: str) -> int:
    """How much a title token looks like an alert name: camel humps or acronyms (KubeAPIDown, etcdNoLeader) 2,
    capitalized identifiers (Watchdog) 1, anything else (namespaces, pods, severities) 0."""
    if not _IDENT.fullmatch(token):
        return 0
    if re.search(r"[a-z][A-Z]|[A-Z]{2}[a-z]", token):
        return 2
    return 1 if token[0].isupper() else 0


def _best(tokens: list[str]) -> tuple[int, str]:
    """The most name-like token and its score, the first on ties."""
    if not tokens:
        return -1, ""
    best = max(range(len(tokens)), key=lambda i: (_name_score(tokens[i]), -i))
    return _name_score(tokens[best]), tokens[best]


def _pick_name(group: list[str], common: list[str]) -> str:
    """The alert's name among the title's values: the group labels' values (sorted by label name, so
    ``alertname`` is usually first), else the other common labels' values in parentheses. A route grouped by
    ``namespace`` titles ``[FIRING:1] monitoring (KubePodCrashLooping ...)``: a name-like value of the group wins,
    then a camel-case value in parentheses, then the first value."""
    group = [t.strip(",;:") for t in group if t.strip(",;:")]
    common = [t.strip(",;:") for t in common if t.strip(",;:")]
    group_score, group_name = _best(group)
    if group_score >= 1:
        return group_name
    common_score, common_name = _best(common)
    if common_score >= 2 or not group:
        return common_name
    return group[0]


def _parse_subject(line: str) -> _Subject | None:
    match = _SUBJECT.search(plain(line))
    if match is None:
        return None
    word, firing, resolved, rest = match.groups()
    status: AlertStatus = "firing" if word.upper() == "FIRING" else "resolved"
    count = int(firing or 0) if status == "firing" else int(resolved or 0)
    rest = rest.split(" | ")[0].strip()  # the fallback appends " | <alertmanager url>"
    group_part, _, paren = rest.partition("(")
    paren = paren.rsplit(")", 1)[0]
    labels = {k: v.strip() for k, v in _PAREN_PAIR.findall(paren)} if "=" in paren else {}
    # "[FIRING:1]  (HighCPUUsage Infra host1)": no group labels, only common ones
    name = _pick_name(group_part.split(), [] if labels else paren.split())
    return _Subject(status, max(count, 1), name, labels)


def _name_from_title(title: str) -> str:
    """A PagerDuty incident or Opsgenie alert title without an Alertmanager subject: its first word when that is
    an identifier-like alert name (``KubePodCrashLooping on prod-eu``), else the whole title."""
    title = title.strip().strip('"').strip()
    tokens = title.split()
    if not tokens:
        return ""
    first = tokens[0].strip(",;:")
    if len(tokens) == 1 or (_IDENT.fullmatch(first) and re.search(r"[a-z][A-Z]|[A-Z]{2}[a-z]|_", first)):
        return first
    return title[:200]


# --- the body: label and annotation lines ---------------------------------------------------------------------
_BULLET = re.compile(rf"^\s*[•◦▪‣·]\s*({_LABEL_KEY})\s*:\s*(.*?)\s*$")
_DASH_CODE = re.compile(rf"^\s*[-*]\s+\**({_LABEL_KEY})\**\s*:\**\s*`([^`]*)`\s*$")
_KV = re.compile(rf"^\s*-\s+({_LABEL_KEY})\s*=\s*(.*?)\s*$")
_KEYED = re.compile(r"^\s*(Alert|Summary|Description|Message)\s*:\s*(.+?)\s*$", re.IGNORECASE)
_SEVERITY_SUFFIX = re.compile(r"\s+-\s+`[^`]*`\s*$")
_HEADING = re.compile(r"^\s*(?:\[\d+\]\s*)?(?:Alerts\s+)?(Firing|Resolved)\s*:?\s*$", re.IGNORECASE)
_GRAFANA_LINK = re.compile(r"^\s*(Value|Source|Silence|Dashboard|Panel|Graph|Runbook|Details|Labels|Annotations)"
                           r"\s*:", re.IGNORECASE)
_FIELD = re.compile(r"^\s*[A-Z][A-Za-z ]{1,24}:\s+\S")


@dataclass
class _Group:
    """One alert of the notification."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    state: AlertStatus | None = None

    def empty(self) -> bool:
        return not self.labels and not self.annotations


@dataclass
class _Body:
    groups: list[_Group] = field(default_factory=list)
    grafana: bool = False
    bullets: bool = False
    free: list[str] = field(default_factory=list)

    def common_labels(self, status: AlertStatus) -> dict[str, str]:
        with_labels = [g for g in self.groups if g.labels]
        matching = [g for g in with_labels if g.state == status] or with_labels
        if not matching:
            return {}
        common = dict(matching[0].labels)
        for group in matching[1:]:
            common = {k: v for k, v in common.items() if group.labels.get(k) == v}
        return common

    def annotation(self, *keys: str) -> str:
        for key in keys:
            for group in self.groups:
                if group.annotations.get(key):
                    return group.annotations[key]
        return ""

    def alert_count(self, status: AlertStatus) -> int:
        return len([g for g in self.groups if not g.empty() and (g.state in (None, status))])


def _clean_value(value: str) -> str:
    return plain(value).strip().strip('"').strip()


def _parse_body(lines: Iterable[str]) -> _Body:
    body = _Body(groups=[_Group()])
    section = "labels"
    state: AlertStatus | None = None

    def current() -> _Group:
        return body.groups[-1]

    def start(force: bool = False) -> _Group:
        if force or not current().empty():
            body.groups.append(_Group(state=state))
        current().state = state
        return current()

    for raw in lines:
        text = plain(raw)
        if not text:
            continue
        if _SUBJECT.search(text):
            continue
        heading = _HEADING.match(text)
        if heading:
            state = "firing" if heading.group(1).lower() == "firing" else "resolved"
            body.grafana = body.grafana or "**" in raw
            start()
            continue
        lowered = text.lower().rstrip(":").strip()
        if lowered == "labels":
            section = "labels"
            if current().labels:
                start()
            continue
        if lowered == "annotations":
            section = "annotations"
            continue
        if lowered.startswith("value:"):
            body.grafana = True
            if current().labels:
                start()
            continue
        kv = _KV.match(raw.replace("*", "")) or _KV.match(text)
        if kv:
            target = current().annotations if section == "annotations" else current().labels
            if section == "labels" and kv.group(1) in target:
                start()
                target = current().labels
            target[kv.group(1)] = _clean_value(kv.group(2))
            continue
        bullet = _BULLET.match(text) or _DASH_CODE.match(raw)
        if bullet:
            body.bullets = True
            key, value = bullet.group(1), _clean_value(bullet.group(2))
            if key in current().labels:
                start()
            current().labels[key] = value
            continue
        keyed = _KEYED.match(_SEVERITY_SUFFIX.sub("", raw).replace("*", ""))
        if keyed and ("*" in raw or keyed.group(1).lower() != "alert"):
            key = keyed.group(1).lower()
            key = "summary" if key == "alert" else key
            if key == "summary" and (current().labels or current().annotations.get("summary")):
                start()
            current().annotations[key] = _clean_value(keyed.group(2))
            continue
        if _GRAFANA_LINK.match(text):
            continue
        if _FIELD.match(text) or re.fullmatch(r"https?://\S+", text):
            continue
        body.free.append(text)
    body.groups = [g for g in body.groups if not g.empty()]
    return body


# --- PagerDuty and Opsgenie -----------------------------------------------------------------------------------
_PD_WORDS = "Triggered|Acknowledged|Unacknowledged|Resolved|Escalated|Reassigned|Delegated"
_PD_LEAD = re.compile(rf"^\s*(?:\[PagerDuty\]\s*)?({_PD_WORDS})\b(?:\s+by\s+[^:#]+?)?\s*(:)?\s*(?:Incident\s+)?"
                      r"\[?#(\d+)\]?\s*:?\s*(.*)$", re.IGNORECASE)
_PD_NUMBERED = re.compile(r"^\s*\[#(\d+)\]\s*:?\s*(.+)$")
_PD_STATUS = re.compile(rf"^\s*Status\s*:\s*({_PD_WORDS})\b", re.IGNORECASE)
_OG_WORDS = ("New alert|Alert (?:created|closed|acknowledged|unacknowledged|escalated|snoozed|deleted|assigned|"
             "reopened|updated)|Closed|Acknowledged|Created")
_OG_LEAD = re.compile(rf"^\s*(\[Opsgenie\])?\s*({_OG_WORDS})\b(?:\s+by\s+[^:]+?)?\s*:\s*(.*)$", re.IGNORECASE)
_OG_TAGGED = re.compile(r"^\s*\[Opsgenie\]\s*(.+)$", re.IGNORECASE)
_OG_NUMBERED = re.compile(r"^\s*\"?#(\d+)\s*:\s*(.+?)\"?\s*$")
_TAG_PAIR = re.compile(rf"^({_LABEL_KEY})\s*[:=]\s*(.+)$")


@dataclass
class _Incident:
    status: AlertStatus
    title: str
    labels: dict[str, str]


def _field(lines: list[str], name: str) -> str:
    pattern = re.compile(rf"^\s*{name}\s*:\s*(.*?)\s*$", re.IGNORECASE)
    for line in lines:
        match = pattern.match(plain(line))
        if match and match.group(1):
            return match.group(1)
    return ""


def _pagerduty(lines: list[str], identity: str) -> _Incident | None:
    from_pd = "pagerduty" in identity
    word, title = "", ""
    for line in lines:
        text = plain(line)
        lead = _PD_LEAD.match(text)
        if lead and (from_pd or text.lower().startswith("[pagerduty]")
                     or (lead.group(2) and _SUBJECT.search(lead.group(4)))):
            word, title = word or lead.group(1), title or lead.group(4)
            continue
        numbered = _PD_NUMBERED.match(text)
        if numbered and from_pd and not title:
            title = numbered.group(2)
        status = _PD_STATUS.match(text)
        if status and (from_pd or title):
            word = status.group(1)  # the status field is the current one; a lead line may be older
    if not word or not title.strip():
        return None
    labels: dict[str, str] = {}
    for key, label in (("Urgency", "urgency"), ("Service", "pagerduty_service"), ("Priority", "priority")):
        value = _field(lines, key)
        if value:
            labels[label] = value
    return _Incident("resolved" if word.lower() == "resolved" else "firing", title.strip(), labels)


def _tags(value: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for tag in value.split(","):
        pair = _TAG_PAIR.match(tag.strip())
        if pair:
            labels[pair.group(1)] = pair.group(2).strip()
    return labels


def _opsgenie(lines: list[str], identity: str) -> _Incident | None:
    from_og = "opsgenie" in identity
    action, title = "", ""
    for line in lines:
        text = plain(line)
        lead = _OG_LEAD.match(text)
        if lead and (from_og or lead.group(1) or _OG_NUMBERED.match(lead.group(3))):
            action = action or lead.group(2)
            rest = _OG_NUMBERED.match(lead.group(3))
            title = title or (rest.group(2) if rest else lead.group(3).strip().strip('"'))
            continue
        tagged = _OG_TAGGED.match(text)
        if tagged and not title:
            rest = _OG_NUMBERED.match(tagged.group(1))
            title = rest.group(2) if rest else tagged.group(1)
            action = action or "New alert"
            continue
        numbered = _OG_NUMBERED.match(text)
        if numbered and from_og and not title:
            title = numbered.group(2)
    if not title.strip() or not (action or from_og):
        return None
    lowered = action.lower()
    resolved = "closed" in lowered or "deleted" in lowered
    labels = _tags(_field(lines, "Tags"))
    priority = _field(lines, "Priority")
    if priority:
        labels["priority"] = priority
    return _Incident("resolved" if resolved else "firing", title.strip(), labels)


# --- putting it together --------------------------------------------------------------------------------------
def _summary(body: _Body, *, exclude: Iterable[str] = ()) -> str:
    found = body.annotation("summary", "message", "description")
    if not found:
        skip = [e.strip() for e in exclude if e.strip()]
        found = next((line for line in body.free if not any(s in line for s in skip) and not _SUBJECT.search(line)
                      and not _OG_LEAD.match(line) and not _PD_LEAD.match(line)), "")
    return found[:MAX_SUMMARY]


def parse_alert(event: Mapping[str, Any]) -> Alert | None:
    """The alert in a Slack message event, or None when the message is not an alert notification. It does not
    look at who posted it: check :func:`is_alert_message` first."""
    if not isinstance(event, Mapping):
        return None
    lines = message_lines(event)
    if not lines:
        return None
    identity = _identity(event)
    body = _parse_body(lines)
    subject = next((s for s in map(_parse_subject, lines) if s is not None), None)

    incident = _pagerduty(lines, identity)
    source: AlertSource = "pagerduty"
    if incident is None:
        incident = _opsgenie(lines, identity)
        source = "opsgenie"
    if incident is not None:
        nested = _parse_subject(incident.title)
        labels = {**(nested.labels if nested else {}), **body.common_labels("firing"), **incident.labels}
        name = labels.get("alertname") or (nested.name if nested else _name_from_title(incident.title))
        if not name:
            return None
        title_rest = "" if nested else incident.title
        summary = _summary(body, exclude=[incident.title]) or (title_rest if title_rest != name else "")
        return Alert(name=name, status=incident.status, labels=labels, source=source,
                     count=nested.count if nested else 1, summary=summary[:MAX_SUMMARY])

    if subject is None and not any("alertname" in g.labels for g in body.groups):
        return None
    status: AlertStatus = subject.status if subject else ("resolved" if body.groups and all(
        g.state == "resolved" for g in body.groups) else "firing")
    labels = {**(subject.labels if subject else {}), **body.common_labels(status)}
    name = labels.get("alertname") or (subject.name if subject else "")
    if not name:
        return None
    if "grafana" in identity or body.grafana:
        source = "grafana"
    elif subject is not None or body.bullets or "alertmanager" in identity:
        source = "alertmanager"
    else:
        source = "unknown"
    count = subject.count if subject and subject.status == "firing" else max(1, body.alert_count(status))
    return Alert(name=name, status=status, labels=labels, source=source, count=count, summary=_summary(body))
