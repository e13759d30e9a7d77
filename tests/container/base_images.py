"""Local stand-ins for the registry images the Dockerfile and compose file name, made from Debian
packages with mmdebstrap (no image registry is reachable here) and cached.

Each image is keyed by what goes into it (suite, package list, podman settings, recipe version):
the rootfs tarball is kept in KEEPER_IMAGE_CACHE (default /var/cache/keeper-images, outside the
clone so a fresh CI clone reuses it), and podman's own store keeps the imported image under a tag
carrying the key. A second run finds the tag and does nothing; a new machine with the tarball
only imports it; only a change of the recipe runs mmdebstrap again.

Run as a script it makes them all and prints their tags: `python tests/container/base_images.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

RECIPE_VERSION = 1  # bump when the way an image is made changes without its package list changing
PYTHON_SUITE = "bookworm"  # bookworm's python3 is 3.11, as python:3.11-slim
# Foundry's npm packages need node >= 20 (npm skips their platform binaries on an older node,
# silently: they are optional dependencies); bookworm has 18, trixie 20.
NODE_SUITE = "trixie"
DEFAULT_CACHE = Path("/var/cache/keeper-images")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# mmdebstrap's own hook: dpkg under eatmydata while the rootfs is made (no fsync per file; it
# roughly halved the node image's time here). Speed only, so not part of an image's key.
EATMYDATA_HOOKS = Path("/usr/share/mmdebstrap/hooks/eatmydata")

# Docs, man pages and translations are not needed to run anything; they are about a fifth of a rootfs.
_SLIM = [
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
]


@dataclass(frozen=True)
class BaseImage:
    """One base image: what it stands in for, the Debian packages, and image config for `import`."""

    name: str
    stands_in_for: str
    suite: str
    packages: tuple[str, ...]
    changes: tuple[str, ...]  # `podman import --change` lines (ENV, USER, ENTRYPOINT, ...)
    hooks: tuple[str, ...] = ()  # extra mmdebstrap --customize-hook commands
    excludes: tuple[str, ...] = ()  # extra dpkg path-exclude globs

    @property
    def key(self) -> str:
        recipe = json.dumps(
            [RECIPE_VERSION, self.suite, self.packages, self.changes, self.hooks, self.excludes, _SLIM],
            sort_keys=True,
        )
        return hashlib.sha256(recipe.encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"localhost/keeper-base-{self.name}:{self.key}"


PYTHON = BaseImage(
    name="python",
    stands_in_for="python:3.11-slim-bookworm",
    suite=PYTHON_SUITE,
    # The official image has `python` and `useradd`; Debian's minbase has neither without these.
    packages=("python3", "python3-venv", "python-is-python3", "ca-certificates", "passwd"),
    changes=("ENV LANG=C.UTF-8", 'CMD ["python3"]'),
)
NODE = BaseImage(
    name="node",
    stands_in_for="node:22-bookworm-slim",
    suite=NODE_SUITE,
    packages=("nodejs", "npm", "ca-certificates"),
    changes=("ENV LANG=C.UTF-8", 'CMD ["node"]'),
)
PROMETHEUS = BaseImage(
    name="prometheus",
    stands_in_for="prom/prometheus",
    suite=PYTHON_SUITE,
    # wget: the compose healthcheck probes /-/ready with it, as in the official (busybox) image.
    packages=("prometheus", "wget", "ca-certificates"),
    # As the official image: `prometheus` is the entrypoint, runs as nobody, data in /prometheus.
    changes=(
        "USER 65534:65534",
        "WORKDIR /prometheus",
        'ENTRYPOINT ["/usr/bin/prometheus"]',
        'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]',
    ),
    hooks=('install -d -o 65534 -g 65534 -m 0755 "$1/prometheus"',),
    # Every past release of the time-zone database as JSON for the web UI's date picker: 250 MB
    # of the image's 470, and nothing the scrape, the API or the rules use.
    excludes=("/usr/share/javascript/moment-timezone/data/unpacked/*",),
)
ALL = (PYTHON, NODE, PROMETHEUS)


def cache_dir() -> Path:
    return Path(os.environ.get("KEEPER_IMAGE_CACHE", str(DEFAULT_CACHE)))


def debian_mirror() -> str:
    """The mirror this machine's apt uses (deb822 `URIs:` of the debian suite), else the default."""
    try:
        for line in DEBIAN_SOURCES.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1].rstrip("/")
    except OSError:
        pass
    return DEFAULT_MIRROR


def _image_exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], check=False).returncode == 0


def _mmdebstrap(image: BaseImage, tarball: Path) -> None:
    mirror = debian_mirror()
    security = mirror.rsplit("/", 1)[0] + "/debian-security"
    suite = image.suite
    sources = [
        f"deb {mirror} {suite} main",
        f"deb {mirror} {suite}-updates main",
        f"deb {security} {suite}-security main",
    ]
    partial = tarball.with_suffix(".partial.tar")
    with tempfile.NamedTemporaryFile("w+", prefix=f"mmdebstrap-{image.name}-", suffix=".log") as log:
        command = [
            "mmdebstrap",
            "--variant=minbase",
            *([f"--hook-dir={EATMYDATA_HOOKS}"] if EATMYDATA_HOOKS.is_dir() else []),
            f"--include={','.join(image.packages)}",
            *_SLIM,
            *(f"--dpkgopt=path-exclude={glob}" for glob in image.excludes),
            *(f"--customize-hook={hook}" for hook in image.hooks),
            suite,
            str(partial),
            *sources,
        ]
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            log.seek(0)
            tail = "".join(log.readlines()[-15:])
            raise RuntimeError(f"mmdebstrap for {image.name} failed ({done.returncode}):\n{tail}")
    partial.rename(tarball)  # only a complete tarball is ever found in the cache


def _prune_superseded(image: BaseImage, directory: Path) -> None:
    """Drop this image's tarballs and tags made by an older recipe: they are never used again."""
    for old in directory.glob(f"{image.name}-*.tar"):
        if old.name != f"{image.name}-{image.key}.tar":
            old.unlink(missing_ok=True)
    listed = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", f"localhost/keeper-base-{image.name}"],
        capture_output=True,
        text=True,
        check=False,
    )
    for tag in listed.stdout.split():
        if tag != image.tag:
            subprocess.run(["podman", "rmi", tag], capture_output=True, check=False)


def ensure(image: BaseImage) -> str:
    """The image's tag in podman's store, made (or imported from the cache) when missing."""
    if _image_exists(image.tag):
        return image.tag
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    tarball = directory / f"{image.name}-{image.key}.tar"
    started = time.monotonic()
    if not tarball.is_file():
        print(f"base image {image.name}: mmdebstrap {image.suite} {' '.join(image.packages)}", flush=True)
        _mmdebstrap(image, tarball)
    command = ["podman", "import", "--quiet"]
    for change in image.changes:
        command += ["--change", change]
    subprocess.run([*command, str(tarball), image.tag], check=True, stdout=subprocess.DEVNULL)
    _prune_superseded(image, directory)
    print(
        f"base image {image.tag} (for {image.stands_in_for}) ready in {time.monotonic() - started:.0f} s; "
        f"rootfs cached at {tarball}",
        flush=True,
    )
    return image.tag


def ensure_all() -> dict[str, str]:
    """Every base image, made concurrently (mmdebstrap mostly waits on the network and dpkg)."""
    with ThreadPoolExecutor(max_workers=len(ALL)) as pool:
        return dict(zip((i.name for i in ALL), pool.map(ensure, ALL), strict=True))


if __name__ == "__main__":
    for name, tag in ensure_all().items():
        print(f"{name}: {tag}")
    sys.exit(0)
