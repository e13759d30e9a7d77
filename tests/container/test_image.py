"""The keeper image alone, as an operator runs it beside a node: its CLI, its user, and
`keeper check` against a real Anvil on the host from a read-only root filesystem with no
capabilities (as docker-compose.yml runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from podman_cli import image_inspect, podman
from project_images import Images

from deploy.accounts import KEEPER, OWNER

pytestmark = pytest.mark.container

# As docker-compose.yml's keeper service: read_only, tmpfs /tmp, cap_drop ALL, no-new-privileges,
# and a volume on /data (here an anonymous one, removed with the container).
HARDENED = (
    "--read-only",
    "--tmpfs",
    "/tmp",  # noqa: S108 - a tmpfs inside the container, as compose mounts it
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "-v",
    "/data",
)


def test_help_lists_the_commands(images: Images) -> None:
    done = podman("run", "--rm", images.keeper, "--help")
    for command in ("run", "once", "check", "status", "journal", "reset-breaker"):
        assert command in done.stdout, done.stdout


def test_runs_as_uid_10001_by_default(images: Images) -> None:
    assert image_inspect(images.keeper)["Config"]["User"] == "10001:10001"
    ids = podman("run", "--rm", *HARDENED, "--entrypoint", "id", images.keeper).stdout.split()
    assert ids[:2] == ["uid=10001(keeper)", "gid=10001(keeper)"], ids


def test_root_filesystem_is_read_only_and_the_data_volume_writable(images: Images) -> None:
    script = (
        "import pathlib\n"
        "for path in ('/opt/venv/x', '/etc/x', '/data/x'):\n"
        "    try:\n"
        "        pathlib.Path(path).write_text('x'); print(path, 'writable')\n"
        "    except OSError as exc:\n"
        "        print(path, 'refused', exc.errno)\n"
    )
    out = podman("run", "--rm", *HARDENED, "--entrypoint", "python", images.keeper, "-c", script).stdout
    assert "/opt/venv/x refused" in out and "/etc/x refused" in out, out
    assert "/data/x writable" in out, out


def test_healthcheck_is_in_the_image(images: Images) -> None:
    image = image_inspect(images.keeper)
    # Docker keeps it in Config; podman's inspect shows it at the top (only with --format docker).
    health = image["Config"].get("Healthcheck") or image.get("Healthcheck") or {}
    assert health.get("Test", [])[:2] == ["CMD", "python"], health
    assert "/healthz" in health["Test"][-1], health


def _check(images: Images, manifest: Path, key: str) -> tuple[int, str]:
    done = podman(
        "run",
        "--rm",
        "--network=host",  # the manifest's rpc_url is the host's loopback Anvil
        *HARDENED,
        "-v",
        f"{manifest}:/config/manifest.json:ro",
        "-e",
        "KEEPER_MANIFEST=/config/manifest.json",
        "-e",
        f"KEEPER_PRIVATE_KEY={key}",
        images.keeper,
        "check",
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_keeper_check_passes_against_anvil_on_the_host(images: Images, base_chain: object) -> None:
    manifest = base_chain.manifest_path  # type: ignore[attr-defined]
    code, out = _check(images, manifest, KEEPER.private_key)
    assert code == 0, out
    assert f"key {KEEPER.address} is the vault's keeper" in out, out
    assert "FAIL" not in out, out
    assert KEEPER.private_key.removeprefix("0x") not in out, "the key must never be printed"


def test_keeper_check_fails_with_a_key_that_is_not_the_keeper(images: Images, base_chain: object) -> None:
    code, out = _check(images, base_chain.manifest_path, OWNER.private_key)  # type: ignore[attr-defined]
    assert code != 0, out
    assert f"FAIL key {OWNER.address} is NOT the vault's keeper" in out, out
