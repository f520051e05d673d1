"""Kubernetes manifests: each overlay rendered, validated against the Kubernetes schemas, and checked for the
properties a deployment needs (probes, limits, selectors and ports that resolve, real settings, real secrets)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bot.config import DEFAULT_WEAVIATE_VERSION
from tests.deploy import kustomize_lite
from tests.deploy.helpers import ROOT, known_env_names, secret_env_names
from tests.deploy.test_dockerfile import parse_dockerfile

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["production", "staging"]
NAMESPACES = {"production": "kb", "staging": "kb-staging"}
KUBERNETES_VERSIONS = ["1.30", "1.37"]  # the oldest and newest minor releases the manifests are checked against
CRD_KINDS = {"ServiceMonitor"}  # no schema bundled: checked structurally below
WORKLOADS = {"Deployment", "StatefulSet"}
Doc = dict[str, Any]


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    """The Kubernetes JSON schemas (1.25 to 1.37, plain and strict) of the dev dependency kubernetes-validate."""
    return pytest.importorskip("kubernetes_validate", reason="the dev dependency kubernetes-validate is not installed: "
                               "pip install kubernetes-validate==1.37.0 (the Kubernetes schemas come from it)")


def render(overlay: str) -> list[Doc]:
    return kustomize_lite.build(K8S / "overlays" / overlay)


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def docs(overlay: str) -> list[Doc]:
    return render(overlay)


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(workload: Doc) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def bot_container(docs: list[Doc]) -> dict[str, Any]:
    return dict(pod_spec(one(docs, "Deployment", "kb-bot"))["containers"][0])


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def secret_example() -> list[Doc]:
    return [d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text(encoding="utf-8")) if d]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def container_port(workload: Doc, port: int | str) -> int:
    for container in pod_spec(workload)["containers"]:
        for item in container.get("ports", []):
            if port in (item.get("name"), item["containerPort"]):
                return int(item["containerPort"])
    raise AssertionError(f"{workload['metadata']['name']} has no container port {port!r}")


def workloads(docs: list[Doc]) -> Iterator[Doc]:
    return (d for d in docs if d["kind"] in WORKLOADS)


# --- rendering and schemas ---------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed: cannot compare with "
                    "`kubectl kustomize` (the pure-Python rendering is still checked by every other test)")
def test_python_rendering_equals_kubectl_kustomize(overlay: str, docs: list[Doc]) -> None:
    result = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    theirs = {kustomize_lite.identity(d): d for d in yaml.safe_load_all(result.stdout) if d}
    mine = {kustomize_lite.identity(d): d for d in docs}
    assert sorted(mine) == sorted(theirs)
    for key, doc in mine.items():
        assert doc == theirs[key], f"{key} differs from kubectl kustomize"


def test_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {a: b}\n", encoding="utf-8")
    with pytest.raises(kustomize_lite.KustomizeError, match="commonLabels"):
        kustomize_lite.build(tmp_path)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_are_valid_against_the_kubernetes_schemas(docs: list[Doc], version: str,
                                                             kubernetes_validate: Any) -> None:
    for doc in docs + secret_example():
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {path}: {exc.message}")


def test_schema_validation_catches_a_typo(kubernetes_validate: Any) -> None:
    deployment = one(render("production"), "Deployment", "kb-bot")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_everything_is_in_the_overlay_namespace(overlay: str, docs: list[Doc]) -> None:
    assert {d["metadata"].get("namespace") for d in docs} == {NAMESPACES[overlay]}


# --- workloads ---------------------------------------------------------------------------------------------


def test_every_container_has_probes_and_resource_limits(docs: list[Doc]) -> None:
    for workload in workloads(docs):
        for container in pod_spec(workload)["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container and "livenessProbe" in container, f"{where}: probes"
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: {kind} for cpu and memory"
            assert container["image"].rpartition(":")[2] not in ("", "latest"), f"{where}: pin the image tag"


def test_bot_serves_http_mode_with_probes_on_healthz(docs: list[Doc]) -> None:
    deployment = one(docs, "Deployment", "kb-bot")
    container = bot_container(docs)
    args = container["args"]
    assert args[:2] == ["kb", "serve"] and args[args.index("--host") + 1] == "0.0.0.0"
    port = int(args[args.index("--port") + 1])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz"
        assert container_port(deployment, http["port"]) == port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_bot_runs_like_the_image_expects(docs: list[Doc]) -> None:
    deployment = one(docs, "Deployment", "kb-bot")
    spec = pod_spec(deployment)
    container = bot_container(docs)
    image_user = parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))[-1].last("USER")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == image_user.split(":")[0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    config = one(docs, "ConfigMap", "kb-bot-config")["data"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {config["KB_DATA_DIR"], "/tmp"} <= mounts, "a read-only root needs writable KB_DATA_DIR and /tmp"


def test_bot_has_replicas_and_safe_rollouts(docs: list[Doc]) -> None:
    deployment = one(docs, "Deployment", "kb-bot")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_every_variable_the_bot_gets_is_a_setting(docs: list[Doc]) -> None:
    known = known_env_names()
    container = bot_container(docs)
    names = set(env_map(container))
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "envFrom only from ConfigMaps: secrets are listed key by key"
        names |= set(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    assert names <= known, f"not settings of bot/config.py: {sorted(names - known)}"
    assert "SLACK_APP_TOKEN" not in names and "KB_SLACK_APP_TOKEN" not in names, "it would select Socket Mode"


def test_secrets_come_from_the_documented_secret(docs: list[Doc]) -> None:
    container = bot_container(docs)
    env = env_map(container)
    documented = {(d["metadata"]["name"], key) for d in secret_example() for key in d["stringData"]}
    from_secrets = {}
    for name, item in env.items():
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert (ref["name"], ref["key"]) in documented, f"{name}: {ref} is not in secret.example.yaml"
            from_secrets[name] = ref.get("optional", False)
    secret_settings = secret_env_names()
    config = set(one(docs, "ConfigMap", "kb-bot-config")["data"])
    assert not config & secret_settings, f"secrets in the ConfigMap: {config & secret_settings}"
    assert not {n for n, item in env.items() if "value" in item} & secret_settings, "secret values inline"
    assert from_secrets.keys() >= {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "KB_DATABASE_URL"}
    assert {n for n, optional in from_secrets.items() if optional} == {"ANTHROPIC_API_KEY", "SENTRY_DSN"}


# --- services, ingress, disruption budgets, monitoring -----------------------------------------------------


def test_every_service_selects_pods_and_targets_their_ports(docs: list[Doc]) -> None:
    for service in find(docs, "Service"):
        selector = service["spec"]["selector"]
        targets = [w for w in workloads(docs) if selects(selector, w["spec"]["template"]["metadata"]["labels"])]
        assert targets, f"Service {service['metadata']['name']} selects no pods"
        for port in service["spec"]["ports"]:
            for workload in targets:
                container_port(workload, port.get("targetPort", port["port"]))


def test_the_bot_service_port_matches_the_container_port(docs: list[Doc]) -> None:
    service = one(docs, "Service", "kb-bot")
    (port,) = service["spec"]["ports"]
    args = bot_container(docs)["args"]
    assert container_port(one(docs, "Deployment", "kb-bot"), port["targetPort"]) == int(args[args.index("--port") + 1])


def test_ingress_exposes_only_the_slack_request_url(overlay: str, docs: list[Doc]) -> None:
    ingress = one(docs, "Ingress", "kb-bot")
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/slack/events", "Exact")]
    backend = paths[0]["backend"]["service"]
    service = one(docs, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    if overlay == "production":
        hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
        assert hosts <= {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}, "Slack needs HTTPS"


def test_disruption_budgets_cover_workloads_and_allow_drains(docs: list[Doc]) -> None:
    budgets = find(docs, "PodDisruptionBudget")
    assert {"kb-bot"} <= {b["metadata"]["name"] for b in budgets}
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        (workload,) = [w for w in workloads(docs) if selects(selector, w["spec"]["template"]["metadata"]["labels"])]
        replicas = workload["spec"]["replicas"]
        if "minAvailable" in budget["spec"]:
            assert 0 < budget["spec"]["minAvailable"] < replicas, "a drain must be able to evict a pod"
        else:
            assert 1 <= budget["spec"]["maxUnavailable"] < replicas


def test_service_monitor_scrapes_the_bot_metrics() -> None:
    docs = render("production")
    (monitor,) = find(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(docs, "Service", "kb-bot")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}


# --- the stores --------------------------------------------------------------------------------------------


def helm_values() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "weaviate-values.yaml").read_text(encoding="utf-8")))


def test_bot_reaches_weaviate(overlay: str, docs: list[Doc]) -> None:
    config = one(docs, "ConfigMap", "kb-bot-config")["data"]
    http = urlsplit(config["KB_WEAVIATE_URL"])
    grpc_host, _, grpc_port = config["KB_WEAVIATE_GRPC_URL"].rpartition(":")
    if overlay == "staging":
        service = one(docs, "Service", http.hostname or "")
        assert http.port in {p["port"] for p in service["spec"]["ports"]}
        assert grpc_host == "weaviate"
        assert int(grpc_port) in {p["port"] for p in service["spec"]["ports"]}
    else:  # the Helm release `weaviate` in namespace `weaviate`
        values = helm_values()
        assert http.hostname == f"{values['service']['name']}.weaviate.svc.cluster.local"
        assert (http.port or 80) == values["service"]["ports"][0]["port"]
        assert values["grpcService"]["enabled"] is True
        assert grpc_host == f"{values['grpcService']['name']}.weaviate.svc.cluster.local"
        assert int(grpc_port) == values["grpcService"]["ports"][0]["port"]


def go_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i?B?)?", value).groups()  # type: ignore[union-attr]
    powers = {"K": 1, "M": 2, "G": 3, "T": 4}
    return int(number) * (1024 ** powers[unit[0]] if unit else 1)


def test_weaviate_cluster_is_configured_for_the_bot() -> None:
    docs = render("staging")
    weaviate = one(docs, "StatefulSet", "weaviate")
    (container,) = pod_spec(weaviate)["containers"]
    env: dict[str, Any] = {k: v.get("value") for k, v in env_map(container).items()}
    replicas = weaviate["spec"]["replicas"]
    assert container["image"] == f"semitechnologies/weaviate:{DEFAULT_WEAVIATE_VERSION}"
    assert env["ENABLE_TOKENIZER_KAGOME_KR"] == "true"
    assert env["DEFAULT_VECTORIZER_MODULE"] == "none" and env["ENABLE_MODULES"] == ""
    assert int(env["RAFT_BOOTSTRAP_EXPECT"]) == replicas >= 3
    assert env["RAFT_JOIN"].split(",") == [f"weaviate-{i}" for i in range(replicas)]
    assert env_map(container)["CLUSTER_HOSTNAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert 1 < int(env["REPLICATION_MINIMUM_FACTOR"]) <= replicas
    assert weaviate["spec"]["podManagementPolicy"] == "Parallel"
    headless = one(docs, "Service", weaviate["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and env["CLUSTER_JOIN"] == headless["metadata"]["name"]
    assert go_bytes(env["GOMEMLIMIT"]) < go_bytes(container["resources"]["limits"]["memory"] + "B")
    mount = container["volumeMounts"][0]
    assert mount["mountPath"] == env["PERSISTENCE_DATA_PATH"]
    assert mount["name"] in {t["metadata"]["name"] for t in weaviate["spec"]["volumeClaimTemplates"]}
    key = env_map(container)["AUTHENTICATION_APIKEY_ALLOWED_KEYS"]["valueFrom"]["secretKeyRef"]
    bot_key = env_map(bot_container(docs))["KB_WEAVIATE_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert (key["name"], key["key"]) == (bot_key["name"], bot_key["key"]), "the bot must send a key Weaviate accepts"


def test_postgres_is_16_on_a_volume_and_matches_the_database_url() -> None:
    docs = render("staging")
    postgres = one(docs, "StatefulSet", "postgres")
    (container,) = pod_spec(postgres)["containers"]
    assert container["image"].split(":")[1].split(".")[0] == "16"
    env = env_map(container)
    mount = container["volumeMounts"][0]["mountPath"]
    assert env["PGDATA"]["value"].startswith(mount + "/")
    assert postgres["spec"]["volumeClaimTemplates"]
    url = urlsplit(next(d for d in secret_example() if d["metadata"]["name"] == "kb-bot-secrets")
                   ["stringData"]["KB_DATABASE_URL"])
    service = one(docs, "Service", url.hostname or "")
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    assert (url.username, url.path) == (env["POSTGRES_USER"]["value"], "/" + env["POSTGRES_DB"]["value"])
    assert url.scheme == "postgresql+psycopg"


def test_helm_values_configure_weaviate_for_the_bot() -> None:
    values = helm_values()
    assert values["image"]["repo"] == "semitechnologies/weaviate"
    assert str(values["image"]["tag"]) == DEFAULT_WEAVIATE_VERSION
    assert str(values["env"]["ENABLE_TOKENIZER_KAGOME_KR"]) == "true"
    assert values["modules"]["default_vectorizer_module"] == "none"
    assert int(values["env"]["RAFT_BOOTSTRAP_EXPECT"]) == values["replicas"] >= 3
    assert 1 < int(values["env"]["REPLICATION_MINIMUM_FACTOR"]) <= values["replicas"]
    assert values["authentication"]["anonymous_access"]["enabled"] is False
    assert "AUTHENTICATION_APIKEY_ALLOWED_KEYS" in values["envSecrets"], "the API key comes from a Secret"
    assert "AUTHENTICATION_APIKEY_ALLOWED_KEYS" not in values["env"]
    assert values["service"]["type"] == values["grpcService"]["type"] == "ClusterIP", "not public"
