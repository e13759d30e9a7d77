"""The Kubernetes manifests under test, rendered, and the few lookups the tests share."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from kustomize_lite import Obj, pod_spec, render

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
BASE_DIR = KUBERNETES_DIR / "base"
EXAMPLE_DIR = KUBERNETES_DIR / "overlays" / "example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"


def rendered(directory: Path) -> list[Obj]:
    return render(directory)


def only(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def keeper_pod(objects: list[Obj]) -> Obj:
    """The pod spec of the keeper Deployment."""
    spec = pod_spec(only(objects, "Deployment", "keeper"))
    assert spec is not None
    return spec


def keeper_container(objects: list[Obj]) -> Obj:
    spec = keeper_pod(objects)
    containers = [c for c in spec["containers"] if c["name"] == "keeper"]
    assert len(containers) == 1
    return containers[0]


def volume_of_mount(objects: list[Obj], mount_path: str) -> tuple[Obj, Obj]:
    """(the container's volumeMount at mount_path, the pod volume it mounts)."""
    spec = keeper_pod(objects)
    mounts = [m for m in keeper_container(objects)["volumeMounts"] if m["mountPath"] == mount_path]
    assert len(mounts) == 1, f"nothing mounted at {mount_path}"
    volumes = [v for v in spec["volumes"] if v["name"] == mounts[0]["name"]]
    assert len(volumes) == 1
    return mounts[0], volumes[0]


def fleet_config_map(objects: list[Obj]) -> Obj:
    _, volume = volume_of_mount(objects, "/etc/keeper")
    return only(objects, "ConfigMap", volume["configMap"]["name"])


def fleet_file(objects: list[Obj]) -> dict[str, Any]:
    return tomllib.loads(fleet_config_map(objects)["data"]["fleet.toml"])


def image_environment() -> dict[str, str]:
    """The ENV of the Dockerfile's `keeper` stage: every pod starts with it, under the Deployment's env."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    stage = text.split(" AS keeper", 1)[1]
    environment: dict[str, str] = {}
    for line in stage.splitlines():
        if line.startswith("ENV "):
            environment |= dict(re.findall(r"(\w+)=(\S+)", line))
    return environment
