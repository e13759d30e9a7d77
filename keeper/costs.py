"""Cost gate: is a plan worth its gas and price impact? (pure)

Gas is priced at what the keeper is prepared to pay, `base_fee * headroom + priority_fee`
(the maxFeePerGas it will sign), so the gate errs on the expensive side. Price impact is the
quoted shortfall against the oracle; an unquoted leg is charged its whole slippage allowance
(implied - min_amount_out), the most the vault lets it lose.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from functools import cache
from pathlib import Path

from keeper.model import BPS, USD18, GasInfo, Plan, PlannedLeg, ValidPrice, format_usd18, usd18_to_decimal
from keeper.portfolio import value_usd18

# The vault's rebalance gas measured on Anvil by bench/calibrate_gas.py: the one gas model of
# the policy, the decision's cost gate, the send gate and the backtester.
GAS_CALIBRATION_FILE = Path(__file__).with_name("gas_calibration.json")


@dataclass(frozen=True, slots=True)
class GasModel:
    """gas ~= base + per_swap * n, fitted to real rebalances (keeper/gas_calibration.json)."""

    base_units: int
    per_swap_units: int

    def units(self, n_swaps: int) -> int:
        return self.base_units + self.per_swap_units * n_swaps


@cache
def calibrated_gas_model() -> GasModel:
    """The committed fit (read once per process)."""
    gas = json.loads(GAS_CALIBRATION_FILE.read_text(encoding="utf-8"))["gas"]
    return GasModel(int(gas["base_units"]), int(gas["per_swap_units"]))


@dataclass(frozen=True, slots=True)
class CostBudget:
    max_cost_usd: Decimal  # absolute cap per rebalance
    max_cost_bps: int  # cap as a share of the traded value (turnover)
    base_fee_headroom: Decimal = Decimal(2)  # base fee may double before inclusion


class CostVerdict(StrEnum):
    OK = "ok"
    NOTHING_TO_TRADE = "nothing_to_trade"
    OVER_USD_BUDGET = "over_usd_budget"
    OVER_BPS_BUDGET = "over_bps_budget"


@dataclass(frozen=True, slots=True)
class CostEstimate:
    gas_units: int
    wei_per_gas: int
    gas_cost_usd18: int
    impact_usd18: int
    total_usd18: int
    traded_usd18: int
    verdict: CostVerdict
    reason: str

    @property
    def ok(self) -> bool:
        return self.verdict is CostVerdict.OK

    @property
    def total_usd(self) -> Decimal:
        return usd18_to_decimal(self.total_usd18)

    @property
    def cost_bps(self) -> Decimal | None:
        if self.traded_usd18 <= 0:
            return None
        return Decimal(round(Fraction(self.total_usd18 * BPS * 100, self.traded_usd18))).scaleb(-2)


def gas_cost_usd18(
    gas_units: int, gas: GasInfo, headroom: Decimal, native_price: ValidPrice, native_decimals: int = 18
) -> tuple[int, int]:
    """(wei per gas, USD18 cost): ceil(base_fee * headroom) + priority, valued like a token."""
    wei_per_gas = gate_wei_per_gas(gas, headroom)
    return wei_per_gas, value_usd18(gas_units * wei_per_gas, native_decimals, native_price)


def gate_wei_per_gas(gas: GasInfo, headroom: Decimal) -> int:
    """ceil(base_fee * headroom) + priority, exactly (the headroom as its integer ratio)."""
    num, den = headroom.as_integer_ratio()
    return -(-gas.base_fee_wei * num // den) + gas.priority_fee_wei


def leg_impact_usd18(leg: PlannedLeg) -> int:
    """Oracle-implied minus expected output of one leg, in USD18, never negative."""
    expected = leg.quoted_out if leg.quoted_out is not None else leg.step.min_amount_out
    shortfall = max(0, leg.implied_out - expected)
    return value_usd18(shortfall, leg.decimals_out, leg.price_out)


def estimate_costs(
    plan: Plan,
    gas: GasInfo,
    native_price: ValidPrice,
    gas_model: GasModel,
    budget: CostBudget,
    native_decimals: int = 18,
) -> CostEstimate:
    units = gas_model.units(len(plan.legs))
    wei_per_gas, gas_usd18 = gas_cost_usd18(
        units, gas, budget.base_fee_headroom, native_price, native_decimals
    )
    impact = sum(leg_impact_usd18(leg) for leg in plan.legs)
    total = gas_usd18 + impact
    traded = plan.turnover_usd18

    def verdict(v: CostVerdict, reason: str) -> CostEstimate:
        return CostEstimate(units, wei_per_gas, gas_usd18, impact, total, traded, v, reason)

    cost = f"cost {format_usd18(total)} USD (gas {format_usd18(gas_usd18)} + impact {format_usd18(impact)})"
    if not plan.legs or traded <= 0:
        return verdict(CostVerdict.NOTHING_TO_TRADE, "plan has no legs; nothing to pay for")
    if total > int(budget.max_cost_usd * USD18):
        return verdict(CostVerdict.OVER_USD_BUDGET, f"{cost} > max_cost_usd {budget.max_cost_usd}")
    if total * BPS > budget.max_cost_bps * traded:
        return verdict(
            CostVerdict.OVER_BPS_BUDGET,
            f"{cost} is more than {budget.max_cost_bps} bps of {format_usd18(traded)} USD traded",
        )
    return verdict(CostVerdict.OK, f"{cost} for {format_usd18(traded)} USD traded is within budget")


@dataclass(frozen=True, slots=True)
class CostView:
    """The one cost model as a policy sees it at one tick: the same gas model, the live base
    fee and tip, the gate's budget and its way of pricing gas, each asset's venue fee.

    `wei_per_gas` is what a mined rebalance is expected to pay (base fee + tip); the gate prices
    the same gas at `gate_wei_per_gas` (base fee with headroom + tip), so a policy that sizes its
    trades to pass `fits_budget` is refused by the gate only when the market moved in between.
    """

    gas_model: GasModel
    wei_per_gas: int
    gate_wei_per_gas: int
    native_usd: Decimal
    budget: CostBudget
    fee_ppm: Mapping[str, int]  # per non-hub asset: its venue's fee to the hub (a hub route pays two)
    hub: str
    min_trade_usd: Decimal

    def gas_usd(self, n_swaps: int, gate: bool = False) -> float:
        wei = self.gate_wei_per_gas if gate else self.wei_per_gas
        return self.gas_model.units(n_swaps) * wei * 1e-18 * float(self.native_usd)

    def batch_cost_usd(
        self, trades_usd: Mapping[str, float], depth_usd: Mapping[str, float]
    ) -> tuple[float, float, int]:
        """(gate's cost, traded value, legs) of moving each non-hub asset by `trades_usd` via the
        hub: the gas at the gate's price, each leg's venue fee and, with a depth, its impact.

        Traded value is the gate's (the planner's turnover): half the sum of every asset's value
        change, the hub's included, so value moved between two assets through the hub counts
        once while its two legs each pay a fee.
        """
        dust = float(self.min_trade_usd)
        moves = [(s, v) for s, v in trades_usd.items() if s != self.hub and abs(v) >= dust]
        legs = [(s, abs(v)) for s, v in moves]
        traded = (sum(v for _, v in legs) + abs(sum(v for _, v in moves))) / 2
        impact = 0.0
        for s, v in legs:
            impact += v * self.fee_ppm.get(s, 3000) / 1e6
            depth = depth_usd.get(s)
            if depth:
                impact += v * v / depth
        return self.gas_usd(len(legs), gate=True) + impact, traded, len(legs)

    def fits_budget(self, cost_usd: float, traded_usd: float, margin: float = 0.9) -> bool:
        """Within the gate's budget with `margin` to spare (the planner may trade a little less)."""
        if traded_usd <= 0:
            return False
        return (
            cost_usd <= float(self.budget.max_cost_usd) * margin
            and cost_usd * BPS <= self.budget.max_cost_bps * traded_usd * margin
        )


def cost_view(
    gas: GasInfo,
    gas_model: GasModel,
    budget: CostBudget,
    native_usd: Decimal,
    fee_ppm: Mapping[str, int],
    hub: str,
    min_trade_usd: Decimal,
) -> CostView:
    expected = gas.base_fee_wei + gas.priority_fee_wei
    gate = gate_wei_per_gas(gas, budget.base_fee_headroom)
    return CostView(gas_model, expected, gate, native_usd, budget, fee_ppm, hub, min_trade_usd)
