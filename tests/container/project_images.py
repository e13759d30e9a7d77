"""The project's images for tests/container: base images made from Debian packages (cached),
then the keeper and deployer targets built from the real Dockerfile; and the measured figures
(build times, sizes) the run prints at its end."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import base_images
from podman_cli import REPO_ROOT, image_inspect, podman

KEEPER_TAG = "localhost/keeper:container-test"
DEPLOYER_TAG = "localhost/keeper-deployer:container-test"

# Host files a build needs to reach the package registries here (this machine's CA bundle, pip's
# and npm's settings), mounted read-only into RUN steps only: never copied into a layer.
_NPMRC_ON_HOST = ("/usr/etc/npmrc", "/etc/npmrc")
_BUILD_MOUNTS = (
    ("/etc/ssl/certs", "/etc/ssl/certs"),
    ("/etc/pip.conf", "/etc/pip.conf"),
    ("/etc/xdg/pip", "/etc/xdg/pip"),
)


def build_mounts() -> list[str]:
    args: list[str] = []
    for host, inside in _BUILD_MOUNTS:
        if Path(host).exists():
            args += ["-v", f"{host}:{inside}:ro"]
    for npmrc in _NPMRC_ON_HOST:
        if Path(npmrc).is_file():
            args += ["-v", f"{npmrc}:/etc/npmrc:ro"]  # Debian's npm reads its global config there
            break
    return args


@dataclass(frozen=True)
class Images:
    keeper: str
    deployer: str
    prometheus: str


def _build(target: str, tag: str, build_args: dict[str, str]) -> float:
    started = time.monotonic()
    args = ["build", "--format", "docker", "--target", target, "-t", tag, *build_mounts()]
    for name, value in build_args.items():
        args += ["--build-arg", f"{name}={value}"]
    podman(*args, str(REPO_ROOT), timeout_s=1500)
    return time.monotonic() - started


def _size_mb(tag: str) -> float:
    return int(image_inspect(tag)["Size"]) / 1e6


FIGURES: list[str] = []


def figure(line: str) -> None:
    """A measured figure (build time, image size, ...) for the run's closing summary."""
    FIGURES.append(line)
    print(line, flush=True)


def build_all() -> Images:
    """The base images (cached), then the keeper and deployer images built from the Dockerfile.

    The keeper image is built as soon as the python base is there, while the node base (the
    slowest to make: Debian's npm is some 400 packages) may still be on its way.
    """
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(base_images.ALL)) as pool:
        bases = {image.name: pool.submit(base_images.ensure, image) for image in base_images.ALL}
        python = bases["python"].result()
        keeper_s = _build("keeper", KEEPER_TAG, {"PYTHON_IMAGE": python})
        figure(f"keeper image built in {keeper_s:.0f} s, size {_size_mb(KEEPER_TAG):.0f} MB")
        node = bases["node"].result()
        deployer_s = _build("deployer", DEPLOYER_TAG, {"PYTHON_IMAGE": python, "NODE_IMAGE": node})
        figure(f"deployer image built in {deployer_s:.0f} s, size {_size_mb(DEPLOYER_TAG):.0f} MB")
        prometheus = bases["prometheus"].result()
    figure(
        f"base python image {_size_mb(python):.0f} MB (stands in for python:3.11-slim), node "
        f"{_size_mb(node):.0f} MB, prometheus {_size_mb(prometheus):.0f} MB; "
        f"all images ready {time.monotonic() - started:.0f} s after the start"
    )
    return Images(KEEPER_TAG, DEPLOYER_TAG, prometheus)
