"""docker-compose.yml brought up under podman-compose with a unique project name and free host
ports, and always torn down (`down -v`) whatever happened.

podman-compose creates the containers from the file (`up --no-start`); the harness starts them
in the order compose's `depends_on` conditions ask for, because podman here runs no healthcheck
on a timer (no systemd) and podman-compose ignores `service_healthy` on podman 4.3: anvil until
its healthcheck passes, then the deployer until it has completed with 0, then the keeper and
Prometheus, each judged by `podman healthcheck run` and `podman inspect`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keeper_process import free_port
from podman_cli import REPO_ROOT, compose_command, inspect, podman, run, wait_for, wait_healthy
from project_images import Images, figure

from keeper.manifest import Manifest, load_manifest

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PROJECT_LABEL = "io.podman.compose.project"
GRAFANA_DEFAULT_IMAGE = "grafana/grafana:11.2.2"
HEALTHY_WITHIN_S = 120.0


@dataclass
class Stack:
    images: Images
    workdir: Path
    key: str
    project: str = field(default_factory=lambda: f"keepertest{os.getpid()}{secrets.token_hex(3)}")
    anvil_port: int = field(default_factory=free_port)
    keeper_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    grafana_port: int = field(default_factory=free_port)
    interval_s: int = 2

    def env(self) -> dict[str, str]:
        key_file = self.workdir / "keeper_key"
        key_file.write_text(self.key)
        key_file.chmod(0o644)  # bind-mounted as it is: the keeper's uid 10001 must read it
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
        env.update(
            KEEPER_IMAGE=self.images.keeper,
            DEPLOYER_IMAGE=self.images.deployer,
            PROMETHEUS_IMAGE=self.images.prometheus,
            ANVIL_PORT=str(self.anvil_port),
            KEEPER_METRICS_PUBLISH_PORT=str(self.keeper_port),
            PROMETHEUS_PORT=str(self.prometheus_port),
            GRAFANA_PORT=str(self.grafana_port),
            GRAFANA_ADMIN_PASSWORD=secrets.token_hex(8),
            KEEPER_INTERVAL_S=str(self.interval_s),
            KEEPER_KEY_SECRET_FILE=str(key_file),
            # Absent on purpose: the compose file marks it optional (`required: false`).
            KEEPER_SETTINGS_FILE=str(self.workdir / "keeper.env"),
        )
        return env

    def compose(
        self, *args: str, timeout_s: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [*compose_command(), "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        return run(command, timeout_s=timeout_s, check=check, env=self.env())

    def container(self, service: str) -> str:
        names = podman(
            "ps",
            "-a",
            "--filter",
            f"label={PROJECT_LABEL}={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
            "--format",
            "{{.Names}}",
        ).stdout.split()
        assert len(names) == 1, f"expected one {service} container in {self.project}, found {names}"
        return names[0]

    def volume_dir(self, volume: str) -> Path:
        found: list[dict[str, Any]] = json.loads(
            podman("volume", "inspect", f"{self.project}_{volume}").stdout
        )
        return Path(found[0]["Mountpoint"])

    def manifest(self) -> Manifest:
        """The deployer's manifest from the shared volume, its rpc_url turned to the published port."""
        manifest = load_manifest(self.volume_dir("shared") / "manifest.json")
        return manifest.with_rpc_url(f"http://127.0.0.1:{self.anvil_port}")

    def run_in_deployer_image(self, *command: str) -> subprocess.CompletedProcess[str]:
        """A one-off container of the deployer image on the stack's network with its shared volume
        (as `docker compose run --rm deployer ...` would), e.g. the market helper."""
        return podman(
            "run",
            "--rm",
            "--network",
            f"{self.project}_default",
            "-v",
            f"{self.project}_shared:/shared:ro",
            "--cap-drop=ALL",
            self.images.deployer,
            *command,
            timeout_s=180,
        )

    def logs(self, service: str) -> str:
        done = podman("logs", self.container(service), check=False)
        return done.stdout + done.stderr

    def up(self) -> None:
        services = ["anvil", "deployer", "keeper", "prometheus"]
        grafana_image = self.env().get("GRAFANA_IMAGE", GRAFANA_DEFAULT_IMAGE)
        if podman("image", "exists", grafana_image, check=False).returncode == 0:
            services.append("grafana")
        else:
            figure(
                f"grafana skipped: its image {grafana_image} is not in podman's store and no image "
                "registry is reachable here (Debian has no grafana package to make one from)"
            )
        started = time.monotonic()
        # Created by podman-compose from the file, started here in depends_on order. --no-deps:
        # podman 4.3 cannot start a container whose `--requires` dependencies have their own
        # ("depends on container ... not found in input list").
        self.compose("up", "--no-start", "--no-deps", "--no-build", *services)
        podman("start", self.container("anvil"))
        wait_healthy(self.container("anvil"), HEALTHY_WITHIN_S)
        deployer = self.container("deployer")
        podman("start", deployer)

        def deployer_exit() -> int | None:
            state = inspect(deployer)["State"]
            return None if state["Status"] in ("created", "running", "configured") else int(state["ExitCode"])

        code = wait_for("the deployer to complete", deployer_exit, 300, every_s=2)
        assert code == 0, f"deployer exited {code}:\n{self.logs('deployer')}"
        for service in services[2:]:
            podman("start", self.container(service))
        for service in services[2:]:
            wait_healthy(self.container(service), HEALTHY_WITHIN_S)
        figure(f"compose stack ({', '.join(services)}) up and healthy in {time.monotonic() - started:.0f} s")

    def down(self) -> None:
        self.compose("down", "-v", "-t", "5", check=False, timeout_s=300)
        left = podman("ps", "-a", "-q", "--filter", f"label={PROJECT_LABEL}={self.project}", check=False)
        for container in left.stdout.split():
            podman("rm", "-f", "-v", container, check=False)
        for volume in podman("volume", "ls", "-q", check=False).stdout.split():
            if volume.startswith(f"{self.project}_"):
                podman("volume", "rm", "-f", volume, check=False)
        podman("network", "rm", "-f", f"{self.project}_default", check=False)
