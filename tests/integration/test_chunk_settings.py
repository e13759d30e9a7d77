"""The chunk settings (KEEPER_MAX_CHUNK_*, KEEPER_CHUNK_COOLOFF_S): parsed into the chunk
planner's caps, and refused with one line, exit code 2 and no traceback when wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from test_manifest_errors import REPO_ROOT, VALID

from keeper.chunking import AssetCap, ChunkCaps
from keeper.manifest import load_manifest
from keeper.runtime import chunk_caps
from keeper.settings import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(VALID))
    return path


def _once(manifest: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    return subprocess.run(
        [sys.executable, "-m", "keeper", "once", "--dry-run"],
        env={**clean, "KEEPER_MANIFEST": str(manifest), "KEEPER_RPC_URL": "http://127.0.0.1:9", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        check=False,
    )


def test_defaults_and_overrides_become_the_caps(manifest: Path) -> None:
    settings = load_settings(
        manifest=manifest,
        max_chunk_usd=Decimal(50_000),
        max_chunk={"LINK": {"depth_bps": 40}},
        chunk_cooloff_s=300,
    )
    caps = chunk_caps(settings, load_manifest(manifest))
    assert caps == ChunkCaps(AssetCap(Decimal(50_000), None), {"LINK": AssetCap(None, 40)}, 300)
    assert caps.enabled and caps.needs_depth
    assert not chunk_caps(load_settings(manifest=manifest), load_manifest(manifest)).enabled


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"KEEPER_MAX_CHUNK": '{"DOGE": {"usd": 1000}}'}, "KEEPER_MAX_CHUNK names ['DOGE']"),
        ({"KEEPER_MAX_CHUNK": '{"USDC": {"usd": 1000}}'}, "caps USDC, the quote asset"),
        ({"KEEPER_MAX_CHUNK": '{"WETH": {"dollars": 1000}}'}, "KEEPER_MAX_CHUNK"),
        ({"KEEPER_MAX_CHUNK_USD": "-5"}, "KEEPER_MAX_CHUNK_USD"),
        ({"KEEPER_MAX_CHUNK_DEPTH_BPS": "0"}, "KEEPER_MAX_CHUNK_DEPTH_BPS"),
        ({"KEEPER_CHUNK_COOLOFF_S": "-1"}, "KEEPER_CHUNK_COOLOFF_S"),
    ],
)
def test_a_bad_chunk_setting_is_one_line_and_exit_2(manifest: Path, env: dict[str, str], says: str) -> None:
    done = _once(manifest, **env)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
    problems = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and "invalid keeper configuration" not in line
    ]
    assert len(problems) == 1, done.stderr
