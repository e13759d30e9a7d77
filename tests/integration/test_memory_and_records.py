"""What survives a restart, and what can be re-derived: the policy's memory persisted in the
journal (the adaptive policy's volatility estimate, the calendar's last firing), and decision
records that `keeper replay` runs through the decision core again, on a real Anvil world."""

from __future__ import annotations

import json
import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from deploy.accounts import KEEPER
from deploy.any_market import move_price
from deploy.world import write_manifest
from keeper.cli import main
from keeper.policy.adaptive import VolMemory
from keeper.policy.calendar import CalendarMemory
from keeper.policy.memory import memory_from_plain
from keeper.records import RecordStore
from keeper.replay import replay
from keeper.runtime import Runtime, build_runtime
from keeper.settings import load_settings

if TYPE_CHECKING:
    from conftest import Chain
    from keeper_process import Daemon

pytestmark = pytest.mark.integration

START = {"WETH": 3000.0, "WBTC": 60000.0, "LINK": 15.0}
ADAPTIVE = {
    "kind": "adaptive",
    "base_band_bps": 150,
    "max_band_bps": 200,
    "warmup_samples": 2,
    "halflife_s": 600,
}
CALENDAR = {"kind": "calendar", "period_s": 200}


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KEEPER_"):
            monkeypatch.delenv(name)


def _runtime(chain: Chain, tmp_path: Path, policy: dict[str, Any]) -> Runtime:
    manifest = tmp_path / "manifest.json"
    write_manifest(chain.manifest, manifest)
    return build_runtime(
        load_settings(
            manifest=manifest,
            metrics_port=0,
            private_key=KEEPER.private_key,
            policy=policy,
            log_level="error",
            journal_path=tmp_path / "journal.sqlite3",
        )
    )


def _tick_on_moving_market(chain: Chain, rt: Runtime, rng: random.Random, prices: dict[str, float]) -> None:
    chain.rpc("evm_increaseTime", [120])  # past the local vault's 60 s cooldown
    chain.rpc("evm_mine")
    symbol = rng.choice(sorted(prices))
    prices[symbol] *= 1.0 + rng.uniform(-0.06, 0.06)
    move_price(chain.w3, chain.manifest, symbol, f"{prices[symbol]:.6f}")
    rt.keeper.tick()


@pytest.mark.parametrize(("policy", "kind"), [(ADAPTIVE, VolMemory), (CALENDAR, CalendarMemory)])
def test_policy_memory_is_the_same_after_a_restart(
    any_chain: Chain, tmp_path: Path, policy: dict[str, Any], kind: type
) -> None:
    local_world = any_chain  # runs on the world and on the second chain alike
    rng, prices = random.Random(3), dict(START)
    first = _runtime(local_world, tmp_path, policy)
    assert first.keeper.policy_memory == first.keeper.policy.initial_memory()
    for _ in range(6):
        _tick_on_moving_market(local_world, first, rng, prices)
    before = first.keeper.policy_memory
    first.close()  # what SIGTERM does once the running tick is over
    assert isinstance(before, kind) and before != first.keeper.policy.initial_memory()
    if isinstance(before, VolMemory):
        assert before.samples >= 5 and any(v > 0 for v in before.var_per_s)
    else:
        assert before.last_fired_s is not None

    again = _runtime(local_world, tmp_path, policy)
    assert again.keeper.policy_memory == before  # to the last bit of every float
    again.close()
    # Another policy config on the same journal starts afresh instead of reading it.
    other = _runtime(local_world, tmp_path, {**policy, "kind": policy["kind"], **_tweak(policy)})
    assert other.keeper.policy_memory == other.keeper.policy.initial_memory()
    other.close()


def _tweak(policy: dict[str, Any]) -> dict[str, Any]:
    return {"halflife_s": 601} if policy["kind"] == "adaptive" else {"period_s": 201}


def _ticks(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("keeper_ticks_total{"))


def test_a_daemon_stopped_with_sigterm_restarts_with_its_estimate(
    local_world: Chain, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon = start_daemon(KEEPER_PRIVATE_KEY=KEEPER.private_key, KEEPER_POLICY=json.dumps(ADAPTIVE))
    daemon.wait_for(lambda s: _ticks(s) >= 1, "a first tick")
    for price in (3100, 3050, 3170, 3120):
        local_world.rpc("evm_increaseTime", [30])
        move_price(local_world.w3, local_world.manifest, "WETH", price)
        n = _ticks(daemon.scrape())
        daemon.wait_for(lambda s, n=n: _ticks(s) >= n + 2, "two more ticks")
    # No block is mined from here on (Anvil mines on transactions), so the daemon's estimate
    # stands still: what the journal holds now is what the process holds.
    journal = tmp_path / "journal.sqlite3"
    store = RecordStore(journal)
    policy_key = json.dumps(ADAPTIVE, sort_keys=True)
    stored = store.load_memory(local_world.manifest.vault, policy_key)
    store.close()
    code, _ = daemon.terminate()
    assert code == 0, daemon.logs_text()
    assert stored is not None

    rt = _runtime(local_world, tmp_path, ADAPTIVE)
    memory = rt.keeper.policy_memory
    rt.close()
    assert isinstance(memory, VolMemory) and memory.samples >= 3, memory
    assert memory == memory_from_plain(rt.keeper.policy, stored)


def test_one_hundred_recorded_ticks_replay_to_identical_decisions(
    local_world: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rng, prices = random.Random(11), dict(START)
    rt = _runtime(local_world, tmp_path, ADAPTIVE)
    reasons = []
    for _ in range(100):
        _tick_on_moving_market(local_world, rt, rng, prices)
    assert rt.keeper.records is not None
    rows = rt.keeper.records.decisions(limit=1000)
    rt.close()
    assert len(rows) == 100
    replayed = 0
    for row in rows:
        reasons.append(row.reason)
        assert row.inputs is not None, row.summary()
        result = replay(row.inputs)
        assert result.matches, (row.summary(), result.recorded, result.replayed)
        if result.decision.stop is not None:  # a decision not to trade is the tick's reason
            assert result.decision.stop.reason == row.reason, row.summary()
        replayed += 1
    assert replayed == 100
    assert "rebalanced" in reasons and "policy_within_bands" in reasons, reasons

    # `keeper replay ID` says so, and exits 1 when the record no longer derives.
    monkeypatch.setenv("KEEPER_JOURNAL_PATH", str(tmp_path / "journal.sqlite3"))
    monkeypatch.setenv("KEEPER_MANIFEST", str(tmp_path / "manifest.json"))
    trade = next(r for r in rows if r.reason == "rebalanced")
    assert main(["replay", str(trade.id)]) == 0
    assert "replay MATCHES" in capsys.readouterr().out
    assert main(["decisions", "--reason", "rebalanced"]) == 0
    assert f"{trade.id:>7}" in capsys.readouterr().out
    tampered = dict(trade.inputs or {})
    tampered["outcome"] = {**tampered["outcome"], "reason": "policy_within_bands"}
    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        db.execute("UPDATE decisions SET inputs = ? WHERE id = ?", (json.dumps(tampered), trade.id))
    assert main(["replay", str(trade.id)]) == 1
    assert "replay DIFFERS" in capsys.readouterr().out
