"""Small builders for backtest tests: synthetic setups and hand-made paths."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from keeper.backtest.config import simple_setup
from keeper.backtest.engine import BacktestSetup
from keeper.backtest.paths import PricePath, from_rows
from keeper.costs import CostBudget, GasModel
from keeper.model import VaultLimits
from keeper.policy import PolicyContext
from keeper.portfolio import PortfolioState

T0 = 1_700_000_000
FOUR = {"WETH": 4000, "WBTC": 3000, "LINK": 2000, "USDC": 1000}
START = {"WETH": 3000.0, "WBTC": 60000.0, "LINK": 15.0, "USDC": 1.0}
OPEN_GATE = CostBudget(max_cost_usd=Decimal(10**9), max_cost_bps=10_000)


def setup4(**kw: Any) -> BacktestSetup:
    """The local world's shape: WETH/WBTC/LINK around a USDC hub, $1M, pools of $200M a side."""
    gas_model = kw.pop("gas_model", GasModel(200_000, 100_000))
    budget = kw.pop("budget", OPEN_GATE)
    setup = simple_setup(
        kw.pop("targets", FOUR),
        "USDC",
        depth_usd=kw.pop("depth_usd", 200_000_000.0),
        gas_model=gas_model,
        limits=kw.pop("limits", VaultLimits(100, 150, 60, 8)),
        **kw,
    )
    return replace(setup, budget=budget)


def path_of(
    rows: Sequence[Sequence[float]], step_s: int = 300, symbols: Sequence[str] = tuple(FOUR)
) -> PricePath:
    return from_rows(symbols, [(T0 + i * step_s, list(r)) for i, r in enumerate(rows)])


def flat(steps: int, prices: dict[str, float] = START) -> list[list[float]]:
    return [[prices[s] for s in FOUR] for _ in range(steps)]


def pf(values: Sequence[int], targets: Sequence[int]) -> PortfolioState:
    return PortfolioState(tuple("ABCDEFGH"[: len(values)]), tuple(values), tuple(targets))


def ctx(
    portfolio: PortfolioState,
    memory: Any = None,
    *,
    now: int = T0,
    last: int = 0,
    cooldown: int = 60,
    prices: dict[str, Decimal] | None = None,
) -> PolicyContext[Any]:
    return PolicyContext(now, last, cooldown, portfolio, memory, prices or {})


def decisions(result: Any) -> tuple[Any, ...]:
    """What two runs must agree on to have decided the same: every reason count, every trade
    to the token unit (step, legs), and the final balances."""
    trades = [
        (r.step, [(leg.symbol_in, leg.symbol_out, leg.amount_in, leg.amount_out) for leg in r.legs])
        for r in result.records
    ]
    return result.reasons, trades, dict(result.final_balances)
