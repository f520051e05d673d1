"""A small, pure-Python `kustomize build` for the kustomizations in deploy/k8s.

It implements exactly the features those files use, in kustomize's order (resources, components, then the
patches, namespace, replicas and images transformers), and refuses anything else, so a kustomization that grows
a feature this file does not know fails loudly instead of rendering wrong. `test_k8s.py` checks the result against
`kubectl kustomize` wherever kubectl is installed.

Supported: `resources` (files and directories), `components`, `namespace`, `images` (name, newName, newTag,
digest), `replicas`, and `patches` holding RFC 6902 JSON patches (inline or by path) with a `target` of kind,
name, group, version and/or namespace.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "components", "namespace", "images", "replicas", "patches"}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
    "StorageClass", "PriorityClass", "IngressClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "APIService",
}
SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}


class KustomizeError(ValueError):
    """A kustomization this renderer does not support, or one that is wrong."""


def load_documents(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as handle:
        docs = [doc for doc in yaml.safe_load_all(handle) if doc]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise KustomizeError(f"{path}: every document must be a Kubernetes object with kind and metadata")
    return docs


def kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise KustomizeError(f"{directory}: no kustomization file")


def build(directory: Path) -> list[Doc]:
    """Render the kustomization in ``directory``, like `kustomize build directory`."""
    return _build(directory.resolve(), expect_kind="Kustomization")


def _build(directory: Path, *, expect_kind: str, docs: list[Doc] | None = None) -> list[Doc]:
    path = kustomization_file(directory)
    kustomization = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields this renderer does not support: {sorted(unknown)}")
    kind = kustomization.get("kind", "Kustomization")
    if kind != expect_kind:
        raise KustomizeError(f"{path}: expected kind {expect_kind}, found {kind}")

    result: list[Doc] = list(docs or [])
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            result.extend(_build(target, expect_kind="Kustomization"))
        elif target.is_file():
            result.extend(load_documents(target))
        else:
            raise KustomizeError(f"{path}: resource {entry} does not exist")
        _check_unique(result, path)
    for entry in kustomization.get("components", []):
        result = _build((directory / entry).resolve(), expect_kind="Component", docs=result)

    for patch in kustomization.get("patches", []):
        _apply_patch(result, patch, directory, path)
    if "namespace" in kustomization:
        for doc in result:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    for replica in kustomization.get("replicas", []):
        matched = [d for d in result if d["kind"] in SCALABLE and d["metadata"]["name"] == replica["name"]]
        if not matched:
            raise KustomizeError(f"{path}: replicas for {replica['name']} match no workload")
        for doc in matched:
            doc["spec"]["replicas"] = int(replica["count"])
    for image in kustomization.get("images", []):
        for doc in result:
            _set_image(doc, image)
    return result


def _check_unique(docs: list[Doc], path: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for doc in docs:
        key = identity(doc)
        if key in seen:
            raise KustomizeError(f"{path}: {key} is defined twice")
        seen.add(key)


def identity(doc: Doc) -> tuple[str, str, str]:
    """(kind, namespace, name): how kustomize tells resources apart."""
    meta = doc["metadata"]
    return str(doc["kind"]), str(meta.get("namespace", "")), str(meta["name"])


def _matches(doc: Doc, target: dict[str, Any]) -> bool:
    group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
    checks = {
        "kind": doc["kind"], "name": doc["metadata"]["name"], "namespace": doc["metadata"].get("namespace"),
        "group": group, "version": version,
    }
    unknown = set(target) - set(checks)
    if unknown:
        raise KustomizeError(f"patch target fields this renderer does not support: {sorted(unknown)}")
    return all(checks[key] == value for key, value in target.items())


def _apply_patch(docs: list[Doc], patch: dict[str, Any], directory: Path, path: Path) -> None:
    if set(patch) - {"target", "patch", "path"}:
        raise KustomizeError(f"{path}: unsupported patch fields {sorted(set(patch) - {'target', 'patch', 'path'})}")
    text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text(encoding="utf-8")
    operations = yaml.safe_load(text)
    if not isinstance(operations, list):
        raise KustomizeError(f"{path}: only JSON 6902 patches (a list of operations) are supported")
    if "target" not in patch:
        raise KustomizeError(f"{path}: a JSON 6902 patch needs a target")
    targets = [doc for doc in docs if _matches(doc, patch["target"])]
    if not targets:
        raise KustomizeError(f"{path}: patch target {patch['target']} matches nothing")
    for doc in targets:
        for operation in operations:
            json_patch(doc, operation)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json_patch(doc: Doc, operation: dict[str, Any]) -> None:
    """Apply one RFC 6902 operation (add, replace, remove) in place."""
    op = operation["op"]
    *parents, last = _pointer(operation["path"])
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if op == "add":
        value = copy.deepcopy(operation["value"])
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), value)
        else:
            node[last] = value
    elif op == "replace":
        if isinstance(node, list):
            node[int(last)] = copy.deepcopy(operation["value"])
        else:
            if last not in node:
                raise KustomizeError(f"replace: {operation['path']} does not exist")
            node[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        if isinstance(node, list):
            del node[int(last)]
        else:
            del node[last]
    else:
        raise KustomizeError(f"JSON patch operation {op!r} is not supported")


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """'registry:5000/repo/name:tag@sha256:...' -> (name, tag, digest)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest or None


def containers(doc: Doc) -> Iterator[dict[str, Any]]:
    """Every container and init container anywhere in a document."""
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    yield from (c for c in value if isinstance(c, dict))
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def _set_image(doc: Doc, spec: dict[str, Any]) -> None:
    for container in containers(doc):
        if "image" not in container:
            continue
        name, tag, digest = split_image(container["image"])
        if name != spec["name"]:
            continue
        name = spec.get("newName", name)
        if "digest" in spec:
            container["image"] = f"{name}@{spec['digest']}"
            continue
        tag = spec.get("newTag", tag)
        container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
