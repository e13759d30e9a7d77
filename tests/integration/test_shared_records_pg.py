"""Two hosts on one PostgreSQL journal: what `keeper run` on host A records (policy memory,
decision records) is what host B reads back (`keeper decisions --json`, the adaptive policy's
memory at start), with no file at either host's KEEPER_JOURNAL_PATH. This is what lets a
replica that takes a vault over continue where the previous holder stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from keeper_process import REPO_ROOT, keeper_env

from deploy.accounts import KEEPER
from deploy.any_market import move_price
from deploy.world import write_manifest
from keeper.execution.pg_store import PgJournal
from keeper.policy.adaptive import VolMemory
from keeper.policy.memory import memory_from_plain
from keeper.records import RecordStore
from keeper.runtime import build_runtime
from keeper.settings import load_settings
from keeper.sql_tables import PgTables

if TYPE_CHECKING:
    from conftest import Chain
    from keeper_process import Daemon

pytestmark = pytest.mark.integration

ADAPTIVE = {
    "kind": "adaptive",
    "base_band_bps": 150,
    "max_band_bps": 200,
    "warmup_samples": 2,
    "halflife_s": 600,
}


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KEEPER_"):
            monkeypatch.delenv(name)


def _ticks(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("keeper_ticks_total{"))


def test_a_second_host_reads_the_memory_and_decisions_a_daemon_wrote_to_postgresql(
    local_world: Chain, start_daemon: Callable[..., Daemon], pg_url: str, tmp_path: Path
) -> None:
    host_a = tmp_path / "host-a" / "journal.sqlite3"
    host_b = tmp_path / "host-b" / "journal.sqlite3"
    daemon = start_daemon(
        KEEPER_PRIVATE_KEY=KEEPER.private_key,
        KEEPER_POLICY=json.dumps(ADAPTIVE),
        KEEPER_JOURNAL_URL=pg_url,
        KEEPER_JOURNAL_PATH=str(host_a),
    )
    daemon.wait_for(lambda s: _ticks(s) >= 1, "a first tick")
    for price in (3100, 3050, 3170, 3120):
        local_world.rpc("evm_increaseTime", [30])
        move_price(local_world.w3, local_world.manifest, "WETH", price)
        n = _ticks(daemon.scrape())
        daemon.wait_for(lambda s, n=n: _ticks(s) >= n + 2, "two more ticks")
    ticked = _ticks(daemon.scrape())
    code, _ = daemon.terminate()
    assert code == 0, daemon.logs_text()

    # Host B, another process: the decisions host A recorded, one per tick.
    manifest = tmp_path / "manifest.json"
    listed = subprocess.run(
        [sys.executable, "-m", "keeper", "decisions", "--json", "--limit", "1000"],
        env=keeper_env(manifest, KEEPER_JOURNAL_URL=pg_url, KEEPER_JOURNAL_PATH=str(host_b)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) >= ticked >= 9, (len(rows), ticked)
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)  # newest first
    assert {r["reason"] for r in rows} & {"policy_within_bands", "rebalanced"}, rows[:3]

    # Host B's keeper starts with the estimate host A learned, to the last bit.
    journal = PgJournal(pg_url)
    try:
        stored = RecordStore(PgTables(journal, owns_journal=False)).load_memory(
            local_world.manifest.vault, json.dumps(ADAPTIVE, sort_keys=True)
        )
    finally:
        journal.close()
    assert stored is not None
    b_manifest = tmp_path / "host-b" / "manifest.json"
    b_manifest.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(local_world.manifest, b_manifest)
    rt = build_runtime(
        load_settings(
            manifest=b_manifest,
            metrics_port=0,
            private_key=KEEPER.private_key,
            policy=ADAPTIVE,
            log_level="error",
            journal_path=host_b,
            journal_url=pg_url,
        )
    )
    try:
        memory = rt.keeper.policy_memory
        assert isinstance(memory, VolMemory) and memory.samples >= 3, memory
        assert memory == memory_from_plain(rt.keeper.policy, stored)
    finally:
        rt.close()
    # Neither host wrote a local SQLite file: everything went to the shared database.
    assert not host_a.exists() and not host_b.exists()
