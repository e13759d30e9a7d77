"""Cost gate: is a plan worth its gas and price impact? (pure)

Gas is priced at what the keeper is prepared to pay, `base_fee * headroom + priority_fee`
(the maxFeePerGas it will sign), so the gate errs on the expensive side. Price impact is the
quoted shortfall against the oracle; an unquoted leg is charged its whole slippage allowance
(implied - min_amount_out), the most the vault lets it lose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from keeper.model import BPS, USD18, GasInfo, Plan, PlannedLeg, ValidPrice, format_usd18, usd18_to_decimal
from keeper.portfolio import value_usd18


@dataclass(frozen=True, slots=True)
class GasModel:
    """gas ~= base + per_swap * n; calibrate from receipts (about 128k per V3 swap on Anvil)."""

    base_units: int = 120_000
    per_swap_units: int = 140_000

    def units(self, n_swaps: int) -> int:
        return self.base_units + self.per_swap_units * n_swaps


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
    wei_per_gas = math.ceil(Fraction(gas.base_fee_wei) * Fraction(headroom)) + gas.priority_fee_wei
    return wei_per_gas, value_usd18(gas_units * wei_per_gas, native_decimals, native_price)


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
