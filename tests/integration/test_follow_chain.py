"""The keeper follows on-chain changes without a restart (issue 13, item 2): the manifest is a
cache, the vault's own answers (feeds, heartbeats, targets, pinned venues, keeper) are read in
every tick's snapshot and win. The owner switches WETH's feed while `keeper run` is running;
the next ticks price WETH from the new feed and rebalance on it, and the stale manifest field
is logged once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from keeper_helpers import (
    KEEPER_KEY,
    clear_keeper_env,
    nonce,
    rebalanced_events,
    run_keeper,
    runtime,
    vault_drift_bps,
    vault_weights,
)
from keeper_process import Daemon, fork_manifest, keeper_env
from structlog.testing import capture_logs

from deploy import artifacts
from deploy.accounts import KEEPER, OWNER
from deploy.chain import Sender
from deploy.market import move_price
from keeper.manifest import Manifest

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration

NEW_WETH_USD = 4200  # the old feed stays at the world's 3000


def _ticks(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("keeper_ticks_total{"))


def _with_feed(manifest: Manifest, symbol: str, feed: str) -> Manifest:
    data = manifest.model_dump()
    for a in data["assets"]:
        if a["symbol"] == symbol:
            a["feed"] = feed
    return Manifest.model_validate(data)


def test_owner_switches_a_feed_and_the_running_keeper_trades_on_the_new_one(
    local_world: Chain, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    chain = local_world
    w3, m = chain.w3, chain.manifest
    weth = m.asset("WETH")
    owner = Sender(w3, OWNER)
    new_feed = owner.deploy(
        artifacts.contract("MockV3Aggregator"),
        weth.feed_decimals,
        3000 * 10**weth.feed_decimals,
        gas=2_000_000,
    )
    owner.settle()
    # The market moves to 4200 as the NEW feed says (its answer and every WETH pool); the old
    # feed, which the manifest names, still says 3000, so on it the vault is on target.
    move_price(w3, _with_feed(m, "WETH", new_feed), "WETH", NEW_WETH_USD)
    keeper_nonce = nonce(chain, KEEPER.address)
    daemon = start_daemon(KEEPER_PRIVATE_KEY=KEEPER_KEY)
    daemon.wait_for(
        lambda s: s.get('keeper_skips_total{reason="policy_within_bands"}', 0) >= 2, "two idle ticks"
    )
    assert nonce(chain, KEEPER.address) == keeper_nonce, "the keeper traded on the old feed"
    switch_block = w3.eth.block_number

    index = m.symbols.index("WETH")
    owner.call(chain.vault().functions.setAssetFeed(index, new_feed, weth.heartbeat_s), gas=1_000_000)
    owner.settle()

    samples = daemon.wait_for(
        lambda s: (
            s.get('keeper_rebalances_total{outcome="mined"}') == 1
            and s.get('keeper_skips_total{reason="policy_within_bands"}', 0) >= 3
        ),
        "a mined rebalance on the new feed, then an idle tick",
    )
    assert samples["keeper_total_drift_bps"] <= 50
    code, _ = daemon.terminate()
    assert code == 0, daemon.logs_text()

    # On chain: one rebalance, after the switch, and the vault (which prices WETH from the new
    # feed too) is back on target.
    assert len(rebalanced_events(chain, switch_block + 1)) == 1
    assert nonce(chain, KEEPER.address) == keeper_nonce + 1
    assert vault_drift_bps(chain) <= 50

    logs = daemon.log_lines()
    warnings = [line for line in logs if line.get("event") == "manifest_out_of_date"]
    assert [(w["field"], w["manifest"], w["chain"]) for w in warnings] == [
        ("assets[WETH].feed", weth.feed, new_feed)
    ], warnings
    assert all(w["level"] == "warning" for w in warnings)
    errors = [line for line in logs if line.get("event") == "tick" and line.get("result") == "error"]
    assert errors == [], errors  # the switch costs no tick

    # The decision records: the rebalance priced WETH at the new feed's 4200.
    records = _decision_records(tmp_path)
    traded = [r for r in records if r["report"]["result"] == "rebalanced"]
    assert len(traded) == 1, [r["report"]["result"] for r in records]
    assert traded[0]["report"]["prices"]["WETH"]["price_usd"].startswith(str(NEW_WETH_USD))
    idle_before = [r for r in records if r["report"]["result"] != "rebalanced" and r["id"] < traded[0]["id"]]
    assert idle_before and all(
        r["report"]["prices"]["WETH"]["price_usd"].startswith("3000") for r in idle_before
    )


def _decision_records(directory: Path) -> list[dict[str, Any]]:
    env = keeper_env(directory / "manifest.json")
    done = run_keeper(env, "decisions", "--json", "--limit", "1000")
    assert done.returncode == 0, done.stderr
    records: list[dict[str, Any]] = json.loads(done.stdout)
    return records


def test_owner_changes_targets_and_keeper_the_next_tick_follows_and_warns_once(
    local_world: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_keeper_env(monkeypatch)
    chain = local_world
    w3, m = chain.w3, chain.manifest
    manifest_path = fork_manifest(chain, tmp_path)
    rt = runtime(manifest_path, private_key=KEEPER_KEY)
    owner, vault = Sender(w3, OWNER), chain.vault()
    new_targets = {"WETH": 3000, "WBTC": 3000, "LINK": 3000, "USDC": 1000}
    assert new_targets != {a.symbol: a.target_bps for a in m.assets}
    owner.call(vault.functions.setTargets([new_targets[s] for s in m.symbols]), gas=1_000_000)
    owner.settle()

    with capture_logs() as logs:
        first = rt.keeper.tick()
        second = rt.keeper.tick()

    # The chain's targets were used: the vault now sits on them, by one rebalance.
    assert (first.result, second.result) == ("rebalanced", "skipped"), (first.message, second.message)
    assert first.targets_bps == new_targets
    weights = vault_weights(chain)
    assert all(abs(weights[s] - t) <= 50 for s, t in new_targets.items()), weights
    changed = [("assets[WETH].target_bps", "4000", "3000"), ("assets[LINK].target_bps", "2000", "3000")]
    assert _warned(logs) == changed  # once each, not once per tick

    # The owner hands the keeper role to another address: the next tick refuses to send.
    owner.call(vault.functions.setKeeper(OWNER.address), gas=1_000_000)
    owner.settle()
    chain.rpc("evm_increaseTime", [_cooldown_s(chain) + 1])  # past the vault's cooldown
    move_price(w3, m, "WETH", 4200)  # mines, with fresh feed answers
    with capture_logs() as logs:
        third = rt.keeper.tick()
    rt.close()
    assert (third.result, third.reason) == ("skipped", "not_keeper"), third.message
    assert _warned(logs) == [("keeper", KEEPER.address, OWNER.address)]


def _cooldown_s(chain: Chain) -> int:
    return int(chain.vault().functions.getLimits().call()[3])


def _warned(logs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["field"], e["manifest"], e["chain"]) for e in logs if e["event"] == "manifest_out_of_date"]
