"""Render a kustomization the way `kustomize build` does, for the subset deploy/kubernetes uses.

kustomize is a Go binary that no package registry reachable here ships (kubectl carries one, where
it is installed), so the tests render with this. It supports exactly: `resources` (files and
directories), `components`, `namespace`, `images`, `configMapGenerator` (files, behavior create)
and `patches` that are JSON 6902 operation lists with a kind/name target; plus the name reference
a generated ConfigMap's hashed name needs in pod templates. Any other field or form is refused, so
an overlay that outgrows the subset fails the tests instead of rendering something else.
When kubectl is installed, tests/deploy compare this renderer's output with `kubectl kustomize`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FIELDS = frozenset(
    {"apiVersion", "kind", "resources", "components", "namespace", "images", "configMapGenerator", "patches"}
)
GENERATOR_FIELDS = frozenset({"name", "files"})
CLUSTER_SCOPED = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}
)
POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})


class UnsupportedKustomizationError(ValueError):
    """The kustomization uses something this renderer does not implement."""


def render(directory: Path) -> list[Obj]:
    """Every object `kustomize build DIRECTORY` would print (order aside)."""
    objects, _ = _build(Path(directory), expect_kind="Kustomization")
    return objects


def _load(directory: Path, expect_kind: str) -> Obj:
    path = directory / "kustomization.yaml"
    spec: Obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    unknown = set(spec) - KUSTOMIZATION_FIELDS
    if unknown:
        raise UnsupportedKustomizationError(f"{path}: fields {sorted(unknown)} are not implemented")
    if spec.get("kind") != expect_kind:
        raise UnsupportedKustomizationError(f"{path}: kind {spec.get('kind')!r}, expected {expect_kind}")
    return spec


def _build(directory: Path, expect_kind: str) -> tuple[list[Obj], dict[str, str]]:
    """(objects, generated ConfigMap names: plain -> hashed) of one kustomization or component."""
    spec = _load(directory, expect_kind)
    objects: list[Obj] = []
    renamed: dict[str, str] = {}
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            sub_objects, sub_renamed = _build(path, "Kustomization")
            objects += sub_objects
            renamed |= sub_renamed
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    for generator in spec.get("configMapGenerator", []):
        config_map = _generate_config_map(directory, generator)
        renamed[generator["name"]] = config_map["metadata"]["name"]
        objects.append(config_map)
    for entry in spec.get("components", []):
        objects, renamed = _apply_component(directory / entry, objects, renamed)
    _transform(spec, objects, directory)
    _rename_references(objects, renamed)
    return objects, renamed


def _apply_component(
    directory: Path, objects: list[Obj], renamed: dict[str, str]
) -> tuple[list[Obj], dict[str, str]]:
    # A component's resources join the parent's, then its transformers run over all of them.
    spec = _load(directory, "Component")
    added, component_renamed = _build_resources_only(directory, spec)
    objects = objects + added
    _transform(spec, objects, directory)
    return objects, renamed | component_renamed


def _build_resources_only(directory: Path, spec: Obj) -> tuple[list[Obj], dict[str, str]]:
    if spec.get("components") or spec.get("configMapGenerator"):
        raise UnsupportedKustomizationError(f"{directory}: components or generators inside a component")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            raise UnsupportedKustomizationError(f"{path}: a directory resource inside a component")
        objects += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return objects, {}


def _transform(spec: Obj, objects: list[Obj], directory: Path) -> None:
    for patch in spec.get("patches", []):
        _apply_patch(patch, objects, directory)
    if "namespace" in spec:
        _set_namespace(objects, spec["namespace"])
    for image in spec.get("images", []):
        _set_image(objects, image)


# ------------------------------------------------------------------ configMapGenerator


def _generate_config_map(directory: Path, generator: Obj) -> Obj:
    unknown = set(generator) - GENERATOR_FIELDS
    if unknown:
        raise UnsupportedKustomizationError(f"configMapGenerator {generator.get('name')}: {sorted(unknown)}")
    data = {}
    for entry in generator["files"]:
        if "=" in entry:
            raise UnsupportedKustomizationError(
                f"configMapGenerator file {entry!r}: key=path is not implemented"
            )
        data[Path(entry).name] = (directory / entry).read_text(encoding="utf-8")
    name = generator["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-{config_map_hash(data)}"},
        "data": data,
    }


def config_map_hash(data: dict[str, str]) -> str:
    """kustomize's content hash suffix: sha256 of {kind, name, data} encoded as Go's json.Marshal
    does (sorted keys, no spaces, <, > and & escaped), its first 10 hex digits with 0 1 3 a e
    swapped for g h k m t (so the suffix never reads as a number or a word). The name hashed is
    empty, as kustomize v5 hashes a generated ConfigMap (checked against kubectl's v5.5.0)."""
    encoded = json.dumps(
        {"data": data, "kind": "ConfigMap", "name": ""},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        encoded = encoded.replace(char, escape)
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


# ------------------------------------------------------------------ transformers


def _matches(obj: Obj, target: Obj) -> bool:
    unknown = set(target) - {"kind", "name"}
    if unknown:
        raise UnsupportedKustomizationError(f"patch target fields {sorted(unknown)} are not implemented")
    return all(
        (obj.get("kind") if key == "kind" else obj["metadata"].get("name")) == value
        for key, value in target.items()
    )


def _apply_patch(patch: Obj, objects: list[Obj], directory: Path) -> None:
    if set(patch) != {"target", "patch"}:
        raise UnsupportedKustomizationError(f"{directory}: only inline patches with a target are implemented")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise UnsupportedKustomizationError(f"{directory}: strategic merge patches are not implemented")
    targets = [obj for obj in objects if _matches(obj, patch["target"])]
    if not targets:
        raise UnsupportedKustomizationError(f"{directory}: patch target {patch['target']} matches nothing")
    for obj in targets:
        for operation in operations:
            json_patch(obj, operation)


def json_patch(document: Obj, operation: Obj) -> None:
    """One RFC 6902 operation (add, replace, remove) applied in place."""
    op, path = operation["op"], operation["path"]
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    parent: Any = document
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(parent, list):
        if op == "add":
            parent.insert(len(parent) if last == "-" else int(last), value)
        elif op == "replace":
            parent[int(last)] = value
        elif op == "remove":
            del parent[int(last)]
        else:
            raise UnsupportedKustomizationError(f"JSON patch op {op!r} is not implemented")
        return
    if op == "replace" and last not in parent:
        raise KeyError(f"JSON patch replace {path}: no such member")
    if op in ("add", "replace"):
        parent[last] = value
    elif op == "remove":
        del parent[last]
    else:
        raise UnsupportedKustomizationError(f"JSON patch op {op!r} is not implemented")


def _set_namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace
        elif obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace


def pod_spec(obj: Obj) -> Obj | None:
    if obj["kind"] in POD_TEMPLATE_KINDS:
        spec: Obj = obj["spec"]["template"]["spec"]
        return spec
    return None


def _set_image(objects: list[Obj], image: Obj) -> None:
    unknown = set(image) - {"name", "newName", "newTag"}
    if unknown:
        raise UnsupportedKustomizationError(f"images entry {image.get('name')}: {sorted(unknown)}")
    for obj in objects:
        spec = pod_spec(obj)
        for container in [] if spec is None else spec.get("containers", []) + spec.get("initContainers", []):
            name, _, tag = container["image"].partition(":")
            if "@" in name or name != image["name"]:
                continue
            tag = image.get("newTag", tag)
            container["image"] = image.get("newName", name) + (f":{tag}" if tag else "")


def _rename_references(objects: list[Obj], renamed: dict[str, str]) -> None:
    """Point pod templates at the generated (hashed) ConfigMap names."""
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for volume in spec.get("volumes", []):
            refs = [volume.get("configMap")] + [
                s.get("configMap") for s in volume.get("projected", {}).get("sources", [])
            ]
            for ref in refs:
                if ref is not None and ref.get("name") in renamed:
                    ref["name"] = renamed[ref["name"]]
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            refs = [e.get("valueFrom", {}).get("configMapKeyRef") for e in container.get("env", [])]
            refs += [e.get("configMapRef") for e in container.get("envFrom", [])]
            for ref in refs:
                if ref is not None and ref.get("name") in renamed:
                    ref["name"] = renamed[ref["name"]]
