"""Dockerfile and compose files, read statically (no Docker engine runs here), plus the image's
HEALTHCHECK command run for real against the keeper's /healthz."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ops_files import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    EXTERNAL_NODE_FILE,
    REPO_ROOT,
    ComposeTag,
    Instruction,
    compose,
    dockerfile_args,
    dockerfile_stages,
)

from keeper.metrics import FleetHealth, HealthState, KeeperMetrics, MetricsServer
from keeper.settings import Settings

LONG_RUNNING = ("anvil", "keeper", "prometheus", "grafana")
# Inside a container, listening on every interface is how other containers reach a service.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
_HEX_KEY = re.compile(r"\b(0x)?[0-9a-fA-F]{64}\b")


def _only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


@pytest.fixture(scope="module")
def stages() -> dict[str, list[Instruction]]:
    return dockerfile_stages()


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    loaded: dict[str, Any] = compose()["services"]
    return loaded


# ------------------------------------------------------------------ Dockerfile


def test_final_stage_is_a_slim_python_image_running_the_keeper_as_non_root(
    stages: dict[str, list[Instruction]],
) -> None:
    final_name = list(stages)[-1]
    final = stages[final_name]
    assert final_name == "keeper", "the default build target must be the keeper image"
    base = final[0].args.split()[0]
    assert base == "${PYTHON_IMAGE}"
    assert dockerfile_args()["PYTHON_IMAGE"].startswith("python:3.11-slim")
    user = _only(final, "USER").args
    assert user.split(":")[0] not in ("", "0", "root"), user
    assert json.loads(_only(final, "ENTRYPOINT").args) == ["keeper"]
    assert json.loads(_only(final, "CMD").args) == ["run"]
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert f"KEEPER_METRICS_HOST={ALL_INTERFACES}" in env  # Prometheus scrapes it from another container
    assert "KEEPER_JOURNAL_PATH=/data/journal.sqlite3" in env  # on the volume, not the read-only root
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"], "the final image gets the venv and nothing else"


def test_the_venv_is_built_in_its_own_stage_with_the_pinned_dependencies(
    stages: dict[str, list[Instruction]],
) -> None:
    build = " ".join(i.args for i in stages["build"])
    assert "python -m venv /opt/venv" in build
    assert "pyproject.toml" in build and "requirements.txt" in build
    assert "/opt/venv/bin/pip install --no-deps ." in build


def test_deployer_stage_has_anvil_the_uniswap_artifacts_and_the_built_contracts(
    stages: dict[str, list[Instruction]],
) -> None:
    toolchain = " ".join(i.args for i in stages["toolchain"])
    assert "package-lock.json" in toolchain and "npm install" in toolchain
    assert "forge build" in toolchain
    deployer = stages["deployer"]
    copies = " ".join(i.args for i in deployer if i.keyword == "COPY")
    for needed in ("/usr/local/bin/anvil", "node_modules/@uniswap", "contracts/out", "deploy/", "keeper/"):
        assert needed in copies, needed
    assert _only(deployer, "USER").args.split(":")[0] not in ("0", "root")


def test_healthcheck_probes_healthz_with_python(stages: dict[str, list[Instruction]]) -> None:
    healthcheck = _only(stages["keeper"], "HEALTHCHECK").args
    assert "--interval=" in healthcheck and "--start-period=" in healthcheck
    command = _healthcheck_argv(stages)
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2] and "urllib" in command[2]


def _healthcheck_argv(stages: dict[str, list[Instruction]]) -> list[str]:
    args = _only(stages["keeper"], "HEALTHCHECK").args
    argv: list[str] = json.loads(args[args.index("CMD ") + 4 :])
    return argv


@pytest.fixture
def healthz_server() -> Iterator[tuple[MetricsServer, HealthState]]:
    health = HealthState(max_age_s=300)
    server = MetricsServer(
        KeeperMetrics(), FleetHealth.of_one("31337", "default", health), "127.0.0.1", 0
    ).start()
    try:
        yield server, health
    finally:
        server.stop()


def test_the_healthcheck_command_passes_on_a_healthy_keeper_and_fails_on_a_stuck_one(
    stages: dict[str, list[Instruction]], healthz_server: tuple[MetricsServer, HealthState]
) -> None:
    """The exact HEALTHCHECK command of the image, run by this Python against a real /healthz."""
    server, health = healthz_server
    argv = [sys.executable, *_healthcheck_argv(stages)[1:]]
    env = {**os.environ, "KEEPER_METRICS_PORT": str(server.port)}

    def probe() -> int:
        return subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode

    health.mark_success()
    assert probe() == 0
    health.max_age_s = -1.0  # the last tick is now "too old": /healthz answers 503
    assert probe() != 0
    server.stop()
    assert probe() != 0, "nothing listening must be unhealthy too"


def test_no_key_is_baked_into_the_images_or_the_compose_files() -> None:
    for path in (DOCKERFILE, COMPOSE_FILE, EXTERNAL_NODE_FILE, ENV_EXAMPLE):
        text = path.read_text()
        assert "KEEPER_PRIVATE_KEY=" not in text, path.name
        assert "KEEPER_PRIVATE_KEY:" not in text, path.name
        assert not _HEX_KEY.search(text), f"{path.name} holds something shaped like a private key"
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for secret_place in (".env*", "var/", "secrets/", "*.key", ".git"):
        assert secret_place in ignored, f".dockerignore must exclude {secret_place}"


# ------------------------------------------------------------------ compose


def test_compose_has_the_stack_and_healthchecks(services: dict[str, Any]) -> None:
    assert set(services) == {"anvil", "deployer", "keeper", "prometheus", "grafana"}
    for name in LONG_RUNNING:
        service = services[name]
        assert service.get("restart") == "unless-stopped", name
        if name == "keeper":
            assert "healthcheck" not in service, "the image's HEALTHCHECK on /healthz applies"
        else:
            assert service["healthcheck"]["test"][0] == "CMD", name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert services["deployer"]["restart"] == "no"


def test_compose_wires_anvil_deployer_keeper_in_order(services: dict[str, Any]) -> None:
    anvil, deployer, keeper = services["anvil"], services["deployer"], services["keeper"]
    assert anvil["build"]["target"] == "deployer" and deployer["build"]["target"] == "deployer"
    assert keeper["build"]["target"] == "keeper"
    assert anvil["command"][:5] == ["anvil", "--host", ALL_INTERFACES, "--port", "8545"]
    assert deployer["depends_on"] == {"anvil": {"condition": "service_healthy"}}
    assert keeper["depends_on"] == {"deployer": {"condition": "service_completed_successfully"}}
    assert deployer["environment"]["ANVIL_RPC_URL"] == "http://anvil:8545"
    assert "shared:/shared" in deployer["volumes"]
    script = REPO_ROOT / deployer["command"][1]  # the image's WORKDIR /app holds the repo's deploy/
    assert script.is_file()
    assert 'python -m deploy world --rpc-url "$rpc_url" --manifest "$manifest"' in script.read_text()


def test_compose_keeper_reads_the_manifest_journal_secret_and_pause_flag(services: dict[str, Any]) -> None:
    keeper = services["keeper"]
    env = keeper["environment"]
    assert env["KEEPER_MANIFEST"] == "/shared/manifest.json"
    assert services["deployer"]["environment"]["MANIFEST"] == env["KEEPER_MANIFEST"]
    assert "shared:/shared:ro" in keeper["volumes"]
    assert env["KEEPER_JOURNAL_PATH"] == "/data/journal.sqlite3"
    assert "keeper-data:/data" in keeper["volumes"]
    assert env["KEEPER_PRIVATE_KEY_FILE"] == "/run/secrets/keeper_key"
    assert keeper["secrets"] == ["keeper_key"]
    assert "file" in compose()["secrets"]["keeper_key"]
    assert env["KEEPER_PAUSED"] == "${KEEPER_PAUSED:-false}"
    assert env["KEEPER_METRICS_HOST"] == ALL_INTERFACES
    assert keeper["read_only"] is True
    grace_s = int(keeper["stop_grace_period"].removesuffix("s"))
    assert grace_s > Settings.model_fields["tick_timeout_s"].default, "SIGTERM must let a tick finish"
    declared = set(compose()["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in declared, f"undeclared volume {source}"


def test_compose_keeper_variables_are_keeper_settings(services: dict[str, Any]) -> None:
    settings = {f"KEEPER_{name.upper()}" for name in Settings.model_fields}
    unknown = set(services["keeper"]["environment"]) - settings
    assert unknown == set(), f"the keeper ignores {sorted(unknown)}"


def test_compose_prometheus_loads_the_rules_and_scrapes_the_keeper(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_external_node_override_drops_anvil_and_mounts_the_host_manifest() -> None:
    override = compose(EXTERNAL_NODE_FILE)["services"]
    assert set(override) == {"anvil", "deployer", "keeper"}
    for name in ("anvil", "deployer"):
        assert override[name] == {"profiles": ["local-chain"]}, "not started without the profile"
    keeper = override["keeper"]
    assert keeper["depends_on"] == ComposeTag("!reset", [])
    assert keeper["environment"]["KEEPER_MANIFEST"] == "/config/manifest.json"
    volumes = keeper["volumes"]
    assert volumes.tag == "!override"
    assert "keeper-data:/data" in volumes.value
    (manifest,) = [v for v in volumes.value if v.endswith(":/config/manifest.json:ro")]
    assert manifest.startswith("${KEEPER_MANIFEST_FILE:?")
    assert not any(v.startswith("shared:") for v in volumes.value), "no deployer: no shared volume"


def _variables(node: Any) -> Iterator[str]:
    """${VAR} references in every string compose interpolates (values, not comments)."""
    if isinstance(node, ComposeTag):
        yield from _variables(node.value)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _variables(value)
    elif isinstance(node, list):
        for value in node:
            yield from _variables(value)
    elif isinstance(node, str):
        yield from _VARIABLE.findall(node)


def test_every_compose_variable_is_documented_in_env_example() -> None:
    documented = {
        m.group(1) for m in re.finditer(r"^#?\s*([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    }
    used = {v for path in (COMPOSE_FILE, EXTERNAL_NODE_FILE) for v in _variables(compose(path))}
    assert used, "no variables found: the pattern is broken"
    assert used - documented == set(), f".env.example does not document {sorted(used - documented)}"
    assert documented - used == set(), f".env.example documents unused {sorted(documented - used)}"


def test_compose_files_reference_only_files_that_exist() -> None:
    for path in (COMPOSE_FILE, EXTERNAL_NODE_FILE):
        for service in compose(path)["services"].values():
            volumes = service.get("volumes", [])
            for volume in getattr(volumes, "value", volumes):
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert (REPO_ROOT / source).exists(), f"{path.name} mounts missing {source}"
    assert Path(REPO_ROOT / "deploy/compose/deploy-world.sh").stat().st_size > 0


def test_compose_and_dockerfile_carry_no_podman_settings() -> None:
    """The podman settings this machine needs live in the test harness (tests/container), so the
    same files keep working unchanged where Docker runs."""
    for path in (COMPOSE_FILE, EXTERNAL_NODE_FILE, DOCKERFILE):
        text = path.read_text().lower()
        for podman_only in ("x-podman", "podman", "runc", "ulimit", "/etc/containers"):
            assert podman_only not in text, f"{path.name} mentions {podman_only}"
