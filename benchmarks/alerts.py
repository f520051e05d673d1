"""How often an alert gets its runbook: the prometheus-operator runbooks' alerts, posted the way Alertmanager posts
them to Slack, parsed and looked up like the bot does.

    python benchmarks/alerts.py [--corpus PATH] [--data-dir DIR] [--port N --grpc-port N] [--quick] [--json-out F]

The corpus (JSONL: id, title, text, lang) is imported as approved entries through the service layer, as in
benchmarks/quality.py (re-importing unchanged documents is free; embeddings are cached by text). Every document
whose id starts with ``prometheus-operator/runbooks:`` is the runbook of the alert its file is named after
(``.../KubePodCrashLooping.md``); its title is usually that name too, and the run lists where it is not. For each
alert, ``tests/fakes/alert_messages.alertmanager_message`` builds the Slack message Alertmanager's receiver posts
with the community template: the alert's realistic labels for its kind (namespace, pod or job, node, instance,
severity...) and a generic summary made from the alert's name alone (``Kube pod crash looping.``), nothing taken
from the runbook. ``bot.alerts.parse_alert`` reads it back and ``KnowledgeService.runbook_for_alert`` answers.

Scores, per alert group (the runbooks' folders) and overall: parsed (the parser read the alert's name back),
found (the match is that alert's runbook), split by how it was found (title, alias, search), wrong (another entry)
and none (no approved match, so no reply).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality import import_corpus, open_service, read_jsonl  # noqa: E402
from bot.alerts import parse_alert, split_name  # noqa: E402
from bot.services import KnowledgeService  # noqa: E402
from tests.fakes.alert_messages import alertmanager_message  # noqa: E402

PREFIX = "prometheus-operator/runbooks:"
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "corpus.jsonl"
QUICK_ALERTS = ("KubePodCrashLooping", "CPUThrottlingHigh", "etcdNoLeader", "TargetDown",
                "NodeFilesystemSpaceFillingUp")
QUICK_DISTRACTORS = 2
HOWS = ("title", "alias", "search")


@dataclass
class Case:
    doc_id: str
    alert: str  # the alert name: the runbook's file name
    title: str
    group: str  # the runbook's folder: kubernetes, node, etcd, ...


@dataclass
class Result:
    case: Case
    parsed: bool
    how: str | None = None  # title / alias / search, None when no match
    matched: str | None = None  # the matched entry's source (a corpus id)

    @property
    def found(self) -> bool:
        return self.matched == self.case.doc_id

    @property
    def outcome(self) -> str:
        return "none" if self.how is None else ("found" if self.found else "wrong")


@dataclass
class Figures:
    n: int = 0
    parsed: float = 0.0
    found: float = 0.0
    found_title: float = 0.0
    found_alias: float = 0.0
    found_search: float = 0.0
    wrong: float = 0.0
    none: float = 0.0
    misses: list[str] = field(default_factory=list)


# --- the alerts -------------------------------------------------------------------------------------------------
def cases(documents: list[dict[str, Any]]) -> list[Case]:
    found = []
    for doc in documents:
        doc_id = str(doc["id"])
        if not doc_id.startswith(PREFIX):
            continue
        path = Path(doc_id[len(PREFIX):])
        found.append(Case(doc_id, path.stem, str(doc.get("title") or ""), path.parent.name))
    return sorted(found, key=lambda c: (c.group, c.alert))


CLUSTER = {"cluster": "prod-eu-1", "prometheus": "monitoring/k8s"}
POD = {"namespace": "payments", "pod": "checkout-7d9f8b6c5-x2x4q", "container": "checkout",
       "job": "kube-state-metrics"}
NODE = {"node": "ip-10-0-3-17.eu-west-1.compute.internal"}
NODE_EXPORTER = {"instance": "10.0.3.17:9100", "job": "node-exporter", "namespace": "monitoring",
                 "pod": "node-exporter-x7k2p"}
GROUP_LABELS = {
    "alertmanager": {"namespace": "monitoring", "service": "alertmanager-main", "pod": "alertmanager-main-0",
                     "job": "alertmanager-main", "instance": "10.2.1.14:9093"},
    "etcd": {"job": "etcd", "instance": "10.0.1.10:2379", "endpoint": "http-metrics"},
    "kube-state-metrics": {"namespace": "monitoring", "job": "kube-state-metrics", "instance": "10.2.4.7:8443"},
    "prometheus": {"namespace": "monitoring", "pod": "prometheus-k8s-0", "job": "prometheus-k8s",
                   "service": "prometheus-k8s", "instance": "10.2.1.20:9090"},
    "prometheus-operator": {"namespace": "monitoring", "job": "prometheus-operator", "controller": "prometheus",
                            "pod": "prometheus-operator-6c9d5b7f4-kq2vd"},
}
# Kubernetes alerts, by what they are about (the first matching word of the name).
KUBE_KINDS: list[tuple[str, dict[str, str]]] = [
    ("Kubelet", {**NODE, "job": "kubelet", "metrics_path": "/metrics"}),
    ("Deployment", {"namespace": "payments", "deployment": "checkout", "job": "kube-state-metrics"}),
    ("StatefulSet", {"namespace": "payments", "statefulset": "postgres", "job": "kube-state-metrics"}),
    ("DaemonSet", {"namespace": "kube-system", "daemonset": "fluent-bit", "job": "kube-state-metrics"}),
    ("Hpa", {"namespace": "payments", "horizontalpodautoscaler": "checkout", "job": "kube-state-metrics"}),
    ("Job", {"namespace": "batch", "job_name": "nightly-report-28311440", "job": "kube-state-metrics"}),
    ("Quota", {"namespace": "payments", "resourcequota": "payments-quota", "resource": "requests.cpu",
               "job": "kube-state-metrics"}),
    ("PersistentVolume", {"namespace": "payments", "persistentvolumeclaim": "data-postgres-0",
                          "job": "kubelet", "metrics_path": "/metrics"}),
    ("Pod", POD), ("Container", POD), ("CPUThrottling", POD),
    ("Node", {**NODE, "job": "kube-state-metrics"}),
    ("ControllerManager", {"job": "kube-controller-manager"}),
    ("Scheduler", {"job": "kube-scheduler"}),
    ("Proxy", {"job": "kube-proxy"}),
    ("Client", {"job": "apiserver", "instance": "10.0.1.10:6443"}),
    ("API", {"job": "apiserver"}),
    ("Overcommit", {}),
    ("Version", {}),
]
CRITICAL = re.compile(r"Down|NoLeader|Insufficient|Crashloop|CrashLoop|OutOfSpace|OutOfFiles|Failed|Expiration")


def labels_for(case: Case) -> dict[str, str]:
    """Labels like the alert's upstream rule gives it, for its kind of target."""
    name = case.alert
    if case.group == "kubernetes":
        labels = next((dict(v) for word, v in KUBE_KINDS if word in name), {})
    elif case.group == "node":
        labels = dict(NODE_EXPORTER)
        if "Filesystem" in name:
            labels.update(device="/dev/nvme0n1p1", fstype="ext4", mountpoint="/")
        elif "Network" in name or "RAID" in name:
            labels["device"] = "md0" if "RAID" in name else "eth0"
    elif case.group == "general":
        labels = {"TargetDown": {"namespace": "payments", "job": "checkout", "service": "checkout"},
                  "NodeNetworkInterfaceFlapping": {**NODE_EXPORTER, "device": "eth0"}}.get(name, {})
    else:
        labels = dict(GROUP_LABELS.get(case.group, {}))
    severity = "none" if name in ("Watchdog", "InfoInhibitor") else \
        "critical" if CRITICAL.search(name) else "warning"
    return {**CLUSTER, **labels, "severity": severity}


def generic_summary(alert: str) -> str:
    """A summary from the name alone, shaped like an upstream annotation: ``Kube pod crash looping.``"""
    words = split_name(alert).split()
    words = [w if (w.isupper() or w == words[0]) else w.lower() for w in words]
    text = " ".join(words)
    return text[:1].upper() + text[1:] + "."


# --- the service ------------------------------------------------------------------------------------------------
def run(service: KnowledgeService, items: list[Case]) -> list[Result]:
    sources: dict[int, str | None] = {}
    results = []
    for case in items:
        event = alertmanager_message(case.alert, labels_for(case), summary=generic_summary(case.alert))
        alert = parse_alert(event)
        if alert is None:
            results.append(Result(case, parsed=False))
            continue
        match = service.runbook_for_alert(alert)
        if match is None:
            results.append(Result(case, parsed=alert.name == case.alert))
            continue
        if match.entry_id not in sources:
            sources[match.entry_id] = match.source_ref or service.show_entry(match.entry_id).entry.source_ref
        results.append(Result(case, parsed=alert.name == case.alert, how=match.how,
                              matched=sources[match.entry_id]))
    return results


# --- figures ----------------------------------------------------------------------------------------------------
def figures(results: list[Result]) -> Figures:
    n = len(results)

    def share(count: int) -> float:
        return count / n if n else 0.0

    return Figures(
        n=n, parsed=share(sum(r.parsed for r in results)), found=share(sum(r.found for r in results)),
        found_title=share(sum(r.found and r.how == "title" for r in results)),
        found_alias=share(sum(r.found and r.how == "alias" for r in results)),
        found_search=share(sum(r.found and r.how == "search" for r in results)),
        wrong=share(sum(r.outcome == "wrong" for r in results)),
        none=share(sum(r.outcome == "none" for r in results)),
        misses=[f"{r.case.alert}: {r.outcome}" + (f" ({r.how} -> {r.matched})" if r.how else "")
                for r in results if not r.found],
    )


def by_group(results: list[Result]) -> dict[str, Figures]:
    found = {"overall": figures(results)}
    for group in sorted({r.case.group for r in results}):
        found[group] = figures([r for r in results if r.case.group == group])
    return found


COLUMNS = [("parsed", "parsed"), ("found", "found"), ("found_title", "title"), ("found_alias", "alias"),
           ("found_search", "search"), ("wrong", "wrong"), ("none", "none")]


def table(results: dict[str, Figures]) -> str:
    head = f"{'group':20} {'n':>4} | " + " ".join(f"{label:>6}" for _, label in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, f in results.items():
        lines.append(f"{name:20} {f.n:>4} | " + " ".join(f"{getattr(f, key):6.2f}" for key, _ in COLUMNS))
    lines.append("parsed = the parser read the alert's name back; found = the match is the alert's runbook, "
                 "split into title / alias / search by how it was found;")
    lines.append("wrong = another entry was matched; none = no approved match (no reply). found + wrong + none = 1.")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus JSONL")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the benchmark's SQLite and Weaviate live (default: a folder under /tmp)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{len(QUICK_ALERTS)} alerts and {QUICK_DISTRACTORS} other documents: a smoke test")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--port", type=int, default=None, help="embedded Weaviate HTTP port (default: settings)")
    parser.add_argument("--grpc-port", type=int, default=None, help="embedded Weaviate gRPC port")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    documents = read_jsonl(args.corpus)
    items = cases(documents)
    if args.quick:
        items = [c for c in items if c.alert in QUICK_ALERTS]
        wanted = {c.doc_id for c in items}
        others = [d for d in documents if not str(d["id"]).startswith(PREFIX)][:QUICK_DISTRACTORS]
        documents = [d for d in documents if str(d["id"]) in wanted] + others
    data_dir = args.data_dir or Path(tempfile.gettempdir()) / ("kb-alerts-quick" if args.quick else "kb-alerts")
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    service = open_service(data_dir, args.port, args.grpc_port)
    try:
        imported = import_corpus(service, documents, data_dir, approved_by="alerts-benchmark")
        print(imported, f"({len(documents)} documents, data in {data_dir})")
        lookups = time.monotonic()
        results = run(service, items)
        lookup_seconds = time.monotonic() - lookups
    finally:
        service.close()
    renamed = [f"{c.alert} (titled {c.title!r})" for c in items if c.title != c.alert]
    print(f"{len(items)} prometheus-operator runbooks posted as Alertmanager alerts (community template); "
          f"lookups in {lookup_seconds:.1f}s")
    if renamed:
        print(f"runbooks whose title is not their alert's name: {', '.join(renamed)}")
    titles = Counter(c.title.lower() for c in items)
    shared = sorted({c.title for c in items if titles[c.title.lower()] > 1})
    if shared:
        print(f"titles shared by several runbooks (a title match picks one): {', '.join(shared)}")
    print()
    found = by_group(results)
    print(table(found))
    misses = found["overall"].misses
    print(f"\nnot found ({len(misses)}):" + "".join(f"\n  {m}" for m in misses))
    if args.json_out:
        args.json_out.write_text(json.dumps({name: asdict(f) for name, f in found.items()}, indent=2),
                                 encoding="utf-8")
    print(f"wall time {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
