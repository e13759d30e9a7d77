"""The vault v2's batch rules, replayed in exact integer math (pure).

contracts/src/interfaces/IRebalancingVault.sol states them; the planner must never ask the
vault to revert, so it replays each one for every execution it allows:

- each step's floor: its oracle-implied output less maxSlippageBps, at full precision, rounded
  up (`vault_min_out`); a step whose floor rounded down is 0 reverts (ZeroFloor);
- a KEEP step spends the balance of tokenIn above `keep` (nothing to spend: ZeroAmount);
- toward target: every asset ends between its value before and its target value
  t_i = targetBps_i * sum(before) / 10000 (NotTowardTarget);
- turnover: G * (10000 - maxSlippageBps) <= 2 * N * 10000, G the gross oracle value of the
  actual inputs, N the sum of every asset's decrease (ExcessTurnover);
- value after >= value before * (1 - maxLossBps) (ValueLoss), drift after <= drift before,
  compared exactly (DriftIncreased), and the loss fraction within the budget left
  (LossBudgetExceeded).

Where a rounding is not pinned by the interface (t_i floored or not, a step's value floored),
the replay takes the stricter reading, so a batch it accepts passes either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keeper.model import BPS, LOSS_ONE, RefusalCode, Step, ValidPrice
from keeper.portfolio import implied_amount_out, value_usd18, vault_drift_bps


@dataclass(frozen=True, slots=True)
class RuleAsset:
    symbol: str
    token: str
    decimals: int
    price: ValidPrice
    balance: int
    target_bps: int  # the vault's configured target (what its rules use)


@dataclass(frozen=True, slots=True)
class RuleLimits:
    max_slippage_bps: int  # the vault's, not the keeper's tolerance
    max_loss_bps: int
    budget_remaining: int | None  # loss fraction (1e18 = 100%) still allowed; None: unchecked


@dataclass(frozen=True, slots=True)
class Violation:
    code: RefusalCode
    message: str


@dataclass(frozen=True, slots=True)
class Execution:
    """Balances and figures after one replayed execution of a batch."""

    after: dict[str, int]
    inputs: tuple[int, ...]  # what each step actually spent
    value_before_usd18: int
    value_after_usd18: int
    drift_after_bps: int  # floored, as the vault's driftBps() shows it
    loss_fraction: int  # (before - after) / before in 1e18 units, rounded up; 0 on a gain


def _floor_fraction(
    amount_in: int,
    decimals_in: int,
    price_in: ValidPrice,
    decimals_out: int,
    price_out: ValidPrice,
    slippage_bps: int,
) -> tuple[int, int]:
    """(numerator, denominator) of a step's exact oracle floor: implied output less
    `slippage_bps`, in raw units of the output token (VaultMath.floors)."""
    scale_out: int = 10 ** (decimals_out + price_out.decimals)
    scale_in: int = 10 ** (decimals_in + price_in.decimals)
    return (
        amount_in * price_in.answer * scale_out * (BPS - slippage_bps),
        price_out.answer * scale_in * BPS,
    )


def vault_min_out(
    amount_in: int,
    decimals_in: int,
    price_in: ValidPrice,
    decimals_out: int,
    price_out: ValidPrice,
    slippage_bps: int,
) -> int:
    """The oracle floor of a step: implied output less `slippage_bps`, exact, rounded up."""
    num, den = _floor_fraction(amount_in, decimals_in, price_in, decimals_out, price_out, slippage_bps)
    return ceil_div(num, den)


def zero_floor(
    amount_in: int,
    decimals_in: int,
    price_in: ValidPrice,
    decimals_out: int,
    price_out: ValidPrice,
    slippage_bps: int,
) -> bool:
    """The vault's ZeroFloor test: the floor rounded *down* is 0 (VaultMath.floors' floorDown)."""
    num, den = _floor_fraction(amount_in, decimals_in, price_in, decimals_out, price_out, slippage_bps)
    return num < den


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def replay(
    assets: Sequence[RuleAsset],
    steps: Sequence[Step],
    fills: Sequence[bool],
    limits: RuleLimits,
    *,
    upside_bps: Sequence[int],
    symbols_of: Mapping[str, str],
) -> Execution | Violation:
    """Execute `steps` in order; step k fills at its best allowed output when `fills[k]`
    (implied * (10000 + upside_bps[k]) / 10000), else at its minimum (the larger of the step's
    minAmountOut and the vault's floor); then judge the vault's rules.

    `symbols_of` maps lower-case token addresses to symbols.
    """
    by_symbol = {a.symbol: a for a in assets}
    bal = {a.symbol: a.balance for a in assets}
    inputs: list[int] = []
    gross = 0
    for k, (step, high, up) in enumerate(zip(steps, fills, upside_bps, strict=True)):
        src = by_symbol[symbols_of[step.token_in.lower()]]
        dst = by_symbol[symbols_of[step.token_out.lower()]]
        keep = step.keep
        spend = bal[src.symbol] - keep if keep is not None else step.amount_in
        if spend <= 0:
            return Violation(
                RefusalCode.UNFUNDED_STEP, f"step {k} ({src.symbol}->{dst.symbol}) would spend nothing"
            )
        if spend > bal[src.symbol]:
            return Violation(
                RefusalCode.UNFUNDED_STEP,
                f"step {k} spends {spend} {src.symbol} but the vault would hold {bal[src.symbol]}",
            )
        floor = vault_min_out(
            spend, src.decimals, src.price, dst.decimals, dst.price, limits.max_slippage_bps
        )
        if zero_floor(spend, src.decimals, src.price, dst.decimals, dst.price, limits.max_slippage_bps):
            return Violation(RefusalCode.UNFUNDED_STEP, f"step {k}: its oracle floor rounds to 0 (ZeroFloor)")
        low_out = max(floor, step.min_amount_out)
        implied = implied_amount_out(spend, src.decimals, src.price, dst.decimals, dst.price)
        out = max(low_out, implied * (BPS + up) // BPS) if high else low_out
        bal[src.symbol] -= spend
        bal[dst.symbol] += out
        inputs.append(spend)
        gross += value_usd18(spend, src.decimals, src.price) + 1  # +1: a per-step floor either way
    return judge(assets, bal, gross, tuple(inputs), limits)


def judge(
    assets: Sequence[RuleAsset],
    after: dict[str, int],
    gross_usd18: int,
    inputs: tuple[int, ...],
    limits: RuleLimits,
) -> Execution | Violation:
    """The batch rules in the order the vault's `_judge` applies them (value loss, turnover,
    drift, toward target, budget), so the first violation is the one the vault would name."""
    before_v = [value_usd18(a.balance, a.decimals, a.price) for a in assets]
    after_v = [value_usd18(after[a.symbol], a.decimals, a.price) for a in assets]
    total_b, total_a = sum(before_v), sum(after_v)
    if total_a * BPS < total_b * (BPS - limits.max_loss_bps):
        return Violation(
            RefusalCode.VALUE_LOSS_OVER_LIMIT,
            f"value after {total_a} < {BPS - limits.max_loss_bps}/{BPS} of {total_b} (usd18)",
        )
    net = sum(max(0, b - v) for b, v in zip(before_v, after_v, strict=True))
    if gross_usd18 * (BPS - limits.max_slippage_bps) > 2 * net * BPS:
        return Violation(
            RefusalCode.EXCESS_TURNOVER, f"gross {gross_usd18} traded for a net {net} (usd18): ExcessTurnover"
        )
    targets = [a.target_bps for a in assets]
    d_before = sum(abs(v * BPS - t * total_b) for v, t in zip(before_v, targets, strict=True))
    d_after = sum(abs(v * BPS - t * total_a) for v, t in zip(after_v, targets, strict=True))
    if total_a > 0 and d_after * total_b > d_before * total_a:
        return Violation(
            RefusalCode.DRIFT_WOULD_INCREASE,
            f"drift would rise from {vault_drift_bps(before_v, targets)} to {vault_drift_bps(after_v, targets)} bps",
        )
    for a, b, v in zip(assets, before_v, after_v, strict=True):
        t_exact = a.target_bps * total_b  # t_i * BPS, exact
        # Stricter of "t floored" and "t exact": the band [min(b, t), max(b, t)] both agree on.
        lo = min(b * BPS, ceil_div(t_exact, BPS) * BPS)
        hi = max(b * BPS, t_exact // BPS * BPS)
        if not lo <= v * BPS <= hi:
            return Violation(
                RefusalCode.NOT_TOWARD_TARGET,
                f"{a.symbol} would end at {v} (usd18), outside [{lo // BPS}, {hi // BPS}] between its "
                "value before and its target",
            )
    loss = ceil_div((total_b - total_a) * LOSS_ONE, total_b) if total_a < total_b and total_b > 0 else 0
    if limits.budget_remaining is not None and loss > limits.budget_remaining:
        return Violation(
            RefusalCode.LOSS_BUDGET_EXHAUSTED,
            f"worst-case loss {loss / LOSS_ONE * BPS:.2f} bps > the {limits.budget_remaining / LOSS_ONE * BPS:.2f} "
            "bps left in the vault's rolling loss budget",
        )
    return Execution(after, inputs, total_b, total_a, vault_drift_bps(after_v, targets), loss)
