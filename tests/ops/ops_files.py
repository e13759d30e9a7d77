"""The operations files under test, parsed: alert rules, dashboard, compose files, Dockerfile; and
the metric names the keeper exports, as Prometheus sees them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest

from keeper.metrics import KeeperMetrics

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
ALERTS_FILE = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS_FILE = PROMETHEUS_DIR / "tests" / "alerts_test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "keeper.json"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
EXTERNAL_NODE_FILE = REPO_ROOT / "docker-compose.external-node.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
ENV_EXAMPLE = REPO_ROOT / ".env.example"

# Names a PromQL expression may use that the keeper does not export.
PROMETHEUS_BUILTINS = frozenset({"up", "ALERTS"})
_KEEPER_NAME = re.compile(r"\bkeeper_[a-z0-9_]+\b")


def exported_metric_names() -> set[str]:
    """Every series name family the keeper exports, as scraped (counters `_total`, Info `_info`).

    Read from the `# TYPE` lines of the exposition, so labelled metrics that have no sample yet
    count too.
    """
    text = generate_latest(KeeperMetrics().registry).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def keeper_names(promql: str) -> set[str]:
    return set(_KEEPER_NAME.findall(promql))


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    for_: str | None
    labels: dict[str, str]
    annotations: dict[str, str]


def alert_rules(path: Path = ALERTS_FILE) -> list[AlertRule]:
    doc = yaml.safe_load(path.read_text())
    return [
        AlertRule(
            rule["alert"],
            rule["expr"],
            rule.get("for"),
            rule.get("labels", {}),
            rule.get("annotations", {}),
        )
        for group in doc["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and templating query."""
    queries = [
        (f"panel {p['title']!r} target {t['refId']}", t["expr"])
        for p in dashboard_panels()
        for t in p["targets"]
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            queries.append((f"variable ${variable['name']}", variable["definition"]))
    return queries


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags: `!reset` (drop the inherited value), `!override` (replace it)."""


def _tagged(tag: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            value: Any = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_scalar(node)  # type: ignore[arg-type]
        return ComposeTag(tag, value)

    return construct


@dataclass(frozen=True)
class ComposeTag:
    tag: str
    value: Any


for _tag in ("!reset", "!override"):
    _ComposeLoader.add_constructor(_tag, _tagged(_tag))


def compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_ComposeLoader)  # noqa: S506 - SafeLoader subclass
    return loaded


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, list[Instruction]]:
    """Instructions per stage name (backslash continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else f"stage{len(stages)}"
            current = stages.setdefault(name, [])
        if current is not None:
            current.append(Instruction(keyword, args.strip()))
    return stages


def dockerfile_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """Global ARG defaults (before the first FROM)."""
    defaults: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.upper().startswith("FROM "):
            break
        if line.upper().startswith("ARG ") and "=" in line:
            name, _, value = line[4:].strip().partition("=")
            defaults[name] = value
    return defaults
