"""The second chain for tests: a stand-in for a real chain (deploy/standin_chain.py, not the world
deployer), its vault deployed by `keeper vault deploy` from the spec the stand-in writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deploy.accounts import OWNER

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_tool(*args: str, env: dict[str, str] | None = None, timeout_s: float = 180) -> str:
    """A repo command (`python -m ...`) that must succeed; its stdout."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    done = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
        env={**clean, **(env or {})},
        check=False,
    )
    assert done.returncode == 0, f"{args} exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def deploy_standin_vault(rpc_url: str, directory: Path, skip_pins_of: str = "") -> Path:
    """Stand-in chain + `keeper vault deploy` + the first deposit; returns the manifest path."""
    spec, manifest = directory / "vault-spec.json", directory / "manifest.json"
    run_tool(
        "deploy.standin_chain",
        "deploy",
        "--rpc-url",
        rpc_url,
        "--spec",
        str(spec),
        "--skip-pins-of",
        skip_pins_of,
    )
    run_tool(
        "keeper",
        "vault",
        "deploy",
        "--spec",
        str(spec),
        "--rpc-url",
        rpc_url,
        "--manifest",
        str(manifest),
        "--yes",
        env={"KEEPER_PRIVATE_KEY": OWNER.private_key},
    )
    run_tool("deploy.standin_chain", "fund", "--manifest", str(manifest))
    return manifest
