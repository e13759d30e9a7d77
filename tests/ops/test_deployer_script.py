"""The compose stack's deployer entrypoint (deploy/compose/deploy-world.sh), run for real against
an Anvil: it deploys the world once, keeps it on a restart of the stack, and deploys afresh when
the chain behind the manifest has lost the vault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ops_files import REPO_ROOT

from deploy.anvil import anvil

pytestmark = pytest.mark.integration

SCRIPT = REPO_ROOT / "deploy" / "compose" / "deploy-world.sh"


def _run(manifest: Path, rpc_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")},
        # The image puts the venv's python first on PATH and the sources on PYTHONPATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO_ROOT),
        "MANIFEST": str(manifest),
        "ANVIL_RPC_URL": rpc_url,
    }
    return subprocess.run(
        ["sh", str(SCRIPT)], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_deployer_deploys_once_keeps_the_world_and_redeploys_on_a_fresh_chain(tmp_path: Path) -> None:
    manifest = tmp_path / "shared" / "manifest.json"
    with anvil() as node:
        first = _run(manifest, node.url)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "deploying the local world" in first.stdout
        vault = json.loads(manifest.read_text())["vault"]
        assert json.loads(manifest.read_text())["rpc_url"] == node.url

        again = _run(manifest, node.url)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "keeping that world" in again.stdout
        assert json.loads(manifest.read_text())["vault"] == vault

    with anvil() as fresh:  # a new chain: the manifest's vault has no code there
        redeploy = _run(manifest, fresh.url)
        assert redeploy.returncode == 0, redeploy.stdout + redeploy.stderr
        assert "deploying the local world" in redeploy.stdout
        assert json.loads(manifest.read_text())["rpc_url"] == fresh.url
