"""The backtester is pinned to the daemon: the same price path, run by `Keeper.tick()` on the
fork (real vault, real Uniswap V2/V3, prices moved with `deploy.market.move_price`, time warped
past the cooldown between ticks) and by `run_backtest`, gives the same decision at every step
and the same trades (symbols, direction, venue, amounts within 1e-6)."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from deploy.accounts import KEEPER
from deploy.market import move_price
from deploy.world import write_manifest
from keeper.backtest.engine import BacktestSetup, run_backtest
from keeper.backtest.history import pools_from_chain
from keeper.backtest.market import GasCosts, load_calibration
from keeper.backtest.paths import from_rows
from keeper.policy import build_policy
from keeper.runtime import Runtime, build_runtime
from keeper.settings import Settings, load_settings

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration

SYMBOLS = ("WETH", "WBTC", "LINK", "USDC")
# WETH, WBTC, LINK, USDC in USD, one row per keeper tick: quiet, a WETH rally, wiggles, a LINK
# slump, a rotation, quiet, a big rotation. Several rebalances, several holds.
PRICES = (
    (3000, 60000, 15, 1),
    (3300, 60000, 15, 1),
    (3320, 60500, Decimal("15.1"), 1),
    (3320, 60500, 12, 1),
    (3000, 66000, Decimal("12.2"), 1),
    (3010, 66100, Decimal("12.2"), 1),
    (3600, 56000, 13, 1),
)
WARP_S = 120  # the local vault's cooldown is 60 s
AMOUNT_REL_TOL = Decimal("1e-6")

POLICIES: dict[str, dict[str, Any]] = {
    "threshold": {"kind": "threshold", "abs_band_bps": 200, "rel_band": "0.25"},
    "cost_aware": {
        "kind": "cost_aware",
        "risk_aversion": 1000,
        "gas_price_gwei": "2",
        "default_depth_usd": 200_000_000,
    },
    # Band = 150 bps x (vol vs the portfolio / 60%), within 25..200 bps; warm after two ticks.
    "adaptive": {
        "kind": "adaptive",
        "base_band_bps": 150,
        "max_band_bps": 200,
        "warmup_samples": 2,
        "halflife_s": 600,
    },
}


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KEEPER_"):
            monkeypatch.delenv(name)


def _runtime(chain: Chain, tmp_path: Path, policy: dict[str, Any]) -> Runtime:
    manifest = tmp_path / "manifest.json"
    write_manifest(chain.manifest, manifest)
    overrides: dict[str, Any] = {
        "manifest": manifest,
        "metrics_port": 0,
        "private_key": KEEPER.private_key,
        "policy": policy,
        "log_level": "error",
    }
    if "journal_path" in Settings.model_fields:
        overrides["journal_path"] = tmp_path / "journal.sqlite3"
    return build_runtime(load_settings(**overrides))


def _daemon_run(chain: Chain, rt: Runtime) -> list[Any]:
    reports = []
    for row in PRICES:
        chain.rpc("evm_increaseTime", [WARP_S])
        chain.rpc("evm_mine")
        for symbol, price in zip(SYMBOLS, row, strict=True):
            move_price(chain.w3, chain.manifest, symbol, price)
        reports.append(rt.keeper.tick())
    return reports


def _setup_like(rt: Runtime, chain: Chain) -> BacktestSetup:
    snap = rt.keeper.reader.read().snapshot
    cfg = rt.keeper.config
    return BacktestSetup(
        assets=tuple(a.config for a in snap.assets),
        quote_symbol=snap.quote_symbol,
        pools=pools_from_chain(chain.w3, chain.manifest),
        gas=GasCosts(
            load_calibration().gas_model,
            base_fee_gwei=1.0,
            priority_fee_gwei=cfg.priority_fee_gwei,
            native_symbol=cfg.native_symbol,
            max_fee_gwei=cfg.max_fee_gwei,
        ),
        limits=snap.limits,
        planner=cfg.planner,
        budget=cfg.budget,
        initial_balances={a.symbol: a.balance for a in snap.assets},
        chain_id=snap.chain_id,
        rules=cfg.rules,
    )


@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_backtest_replays_the_daemon_decision_for_decision_and_trade_for_trade(
    local_world: Chain, tmp_path: Path, kind: str
) -> None:
    chain = local_world
    rt = _runtime(chain, tmp_path, POLICIES[kind])
    setup = _setup_like(rt, chain)  # read before the first tick: the starting vault
    reports = _daemon_run(chain, rt)
    assert all(r.result != "error" for r in reports), [(r.reason, r.message) for r in reports]

    path = from_rows(
        SYMBOLS, [(int(r.timestamp), [float(p) for p in row]) for r, row in zip(reports, PRICES, strict=True)]
    )
    result = run_backtest(setup, path, build_policy(POLICIES[kind]), trace=True)
    assert result.trace is not None
    outcomes = result.trace.outcomes

    rebalances = sum(r.result == "rebalanced" for r in reports)
    assert rebalances >= 2, f"the path must make the daemon trade a few times: {[r.reason for r in reports]}"
    assert result.rebalances == rebalances
    for step, (daemon, sim) in enumerate(zip(reports, outcomes, strict=True)):
        where = f"{kind} step {step}"
        assert daemon.policy is not None, where
        assert (daemon.policy["should_rebalance"], daemon.policy["code"]) == (
            sim.should_rebalance,
            sim.code,
        ), where
        assert daemon.policy["target_weights_bps"] == dict(sim.target_weights_bps), where
        assert daemon.reason == sim.reason, f"{where}: {daemon.message}"
        daemon_legs = daemon.plan["steps"] if daemon.plan else []
        sim_legs = list(sim.plan.legs) if sim.plan else []
        assert [(d["kind"], d["symbol_in"], d["symbol_out"], d["venue"], d["fee"]) for d in daemon_legs] == [
            (str(s.kind), s.symbol_in, s.symbol_out, s.step.venue.name, s.step.fee) for s in sim_legs
        ], where
        for d, s in zip(daemon_legs, sim_legs, strict=True):
            # `amount_in` is what the step is planned to spend (a KEEP step's expected input);
            # both must be KEEP steps (or neither), and keep the same balance.
            on_chain, simulated = Decimal(d["amount_in"]), Decimal(s.amount_in)
            assert abs(on_chain - simulated) <= AMOUNT_REL_TOL * on_chain, f"{where}: {d} vs {s.step}"
            assert (d["keep"] is None) == (s.keep is None), where
            if s.keep is not None:
                assert abs(Decimal(d["keep"]) - s.keep) <= AMOUNT_REL_TOL * max(s.keep, 1), where

    # And the vault ends where the simulation ends.
    final = {a.symbol: a.balance for a in rt.keeper.reader.read().snapshot.assets}
    for symbol, on_chain_balance in final.items():
        simulated_balance = result.final_balances[symbol]
        assert abs(on_chain_balance - simulated_balance) <= AMOUNT_REL_TOL * on_chain_balance, symbol
