"""The circuit breaker and the daily budgets: N failed ticks in a row or a used-up budget stop
new rebalances (the keeper keeps observing and says why), `keeper reset-breaker` closes the
breaker from outside, and a transaction that would push gas over the day's budget is not sent.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from fault_helpers import Baseline, intents, journal_path, metric, states
from keeper_process import REPO_ROOT, keeper_env
from proxy import FaultProxy

from deploy.market import move_price, refresh_feeds
from keeper.chain.abi import Vault
from keeper.execution.journal import IntentState
from keeper.runtime import Runtime

if TYPE_CHECKING:
    from conftest import Chain

Build = Callable[..., Runtime]


def _drift_again(chain: Chain) -> None:
    """Past the vault's cooldown, feeds fresh, WETH back to 3000: a second rebalance is due."""
    raw = chain.w3.eth.call({"to": chain.manifest.vault, "data": Vault.get_limits.calldata()})  # type: ignore[typeddict-item]
    ((_, _, _, cooldown_s, _),) = Vault.get_limits.decode_output(bytes(raw))
    chain.rpc("evm_increaseTime", [cooldown_s + 1])
    refresh_feeds(chain.w3, chain.manifest)
    move_price(chain.w3, chain.manifest, "WETH", 3000)


def test_breaker_opens_after_failed_ticks_observes_and_closes_on_operator_reset(
    drifted: Chain, proxy: FaultProxy, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(rpc_urls=[proxy.url], rpc_timeout_s=0.5, rpc_retries=0, breaker_max_failures=2)
    before = Baseline(drifted)
    proxy.inject("http_500", methods={"eth_call"})

    assert [rt.keeper.tick().reason for _ in range(2)] == ["rpc_unavailable", "rpc_unavailable"]
    assert metric(rt, "keeper_breaker_open") == 1

    proxy.clear()  # the node is fine again, but the breaker holds
    held = rt.keeper.tick()
    assert (held.result, held.reason) == ("skipped", "breaker_open"), held.message
    assert "2 consecutive failed ticks" in held.message and "keeper reset-breaker" in held.message
    assert held.policy is not None and held.policy["should_rebalance"] is True  # still observing
    assert before.sent(drifted) == 0

    done = subprocess.run(
        [sys.executable, "-m", "keeper", "reset-breaker"],
        env=keeper_env(manifest_path, KEEPER_JOURNAL_PATH=str(journal_path(manifest_path))),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("breaker closed for 31337/"), done.stdout

    report = rt.keeper.tick()
    assert report.result == "rebalanced", report.message
    assert metric(rt, "keeper_breaker_open") == 0
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1


def test_used_up_slippage_budget_opens_the_breaker(
    drifted: Chain, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(daily_slippage_budget_usd=100)
    before = Baseline(drifted)

    first = rt.keeper.tick()
    assert first.result == "rebalanced", first.message
    (intent,) = intents(manifest_path)
    assert intent.state is IntentState.CONFIRMED
    # Oracle-implied minus received, from the vault's Swapped events: pool fees and impact.
    assert intent.slippage_usd > 100, intent.slippage_usd
    assert metric(rt, "keeper_budget_used_ratio", budget="slippage") > 1

    _drift_again(drifted)
    second = rt.keeper.tick()

    assert (second.result, second.reason) == ("skipped", "budget_slippage"), second.message
    assert metric(rt, "keeper_breaker_open") == 1
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1


def test_gas_budget_stops_a_send_that_would_exceed_it(
    drifted: Chain, keeper: Build, manifest_path: Path
) -> None:
    dry = keeper(dry_run=True).keeper.tick()
    assert dry.tx is not None
    worst_wei = int(dry.tx["gas_limit"]) * int(dry.tx["max_fee_per_gas"])
    budget_eth = Decimal(worst_wei * 3 // 2) / Decimal(10**18)  # one rebalance fits, two do not
    rt = keeper(daily_gas_budget_eth=budget_eth)
    before = Baseline(drifted)

    assert rt.keeper.tick().result == "rebalanced"
    used = metric(rt, "keeper_budget_used_ratio", budget="gas")
    assert 0 < used < 1, used

    _drift_again(drifted)
    second = rt.keeper.tick()

    assert (second.result, second.reason) == ("skipped", "budget_gas"), second.message
    assert "over the daily budget" in second.message
    assert metric(rt, "keeper_breaker_open") == 0  # not used up, just not enough left for this one
    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1
    assert states(manifest_path) == [(IntentState.CONFIRMED, "rebalanced")]
