"""Thin helpers over the `podman` and `podman-compose` CLIs for tests/container: run a command,
read `podman inspect`, evaluate a healthcheck (nothing runs them on a timer here: no systemd),
wait for a state."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


# podman-compose from PyPI, pinned in the dev extra (next to this Python): Debian's 1.0.3 cannot
# read the compose file (the `env_file` long syntax with `required: false`) and ignores
# `stop_grace_period`.
VENV_COMPOSE = Path(sys.executable).parent / "podman-compose"


def compose_command() -> list[str]:
    return [str(VENV_COMPOSE)]


def available() -> str | None:
    """None when podman and podman-compose can be used, else why not."""
    if shutil.which("podman") is None:
        return "`podman` is not installed (`make test-container` installs it)"
    if not VENV_COMPOSE.exists():
        return f"{VENV_COMPOSE} is missing (`make install` installs the dev extra)"
    return None


def run(
    args: Sequence[str],
    *,
    timeout_s: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path = REPO_ROOT,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout_s, check=False, env=env, cwd=cwd
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {done.returncode}\n--- stdout\n{done.stdout[-4000:]}"
            f"\n--- stderr\n{done.stderr[-4000:]}"
        )
    return done


def podman(*args: str, timeout_s: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["podman", *args], timeout_s=timeout_s, check=check)


def inspect(container: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(podman("inspect", container).stdout)
    return found[0]


def image_inspect(image: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(podman("image", "inspect", image).stdout)
    return found[0]


def health_status(container: str) -> str:
    """Evaluate the container's healthcheck once now, then report what podman recorded."""
    podman("healthcheck", "run", container, check=False, timeout_s=60)
    state = inspect(container)["State"]
    health = state.get("Health") or state.get("Healthcheck") or {}
    return str(health.get("Status", "none"))


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float, every_s: float = 1.0) -> T:
    """Poll `probe` until it returns something other than None (or False); fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None and last is not False:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


def wait_healthy(container: str, timeout_s: float) -> None:
    def healthy() -> bool:
        if inspect(container)["State"]["Status"] != "running":
            return False
        return health_status(container) == "healthy"

    try:
        wait_for(f"{container} to be healthy", healthy, timeout_s, every_s=2.0)
    except AssertionError:
        logs = podman("logs", "--tail", "40", container, check=False)
        raise AssertionError(
            f"{container} never became healthy: {inspect(container)['State']}\n{logs.stdout}{logs.stderr}"
        ) from None
