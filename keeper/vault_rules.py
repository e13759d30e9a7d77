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

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keeper.model import BPS, LOSS_ONE, USD18, RefusalCode, Step, ValidPrice
from keeper.portfolio import implied_amount_out, value_usd18, vault_drift_bps
from keeper.slots_init import slots_init


@slots_init
@dataclass(frozen=True, slots=True)
class RuleAsset:
    symbol: str
    token: str
    decimals: int
    price: ValidPrice
    balance: int
    target_bps: int  # the vault's configured target (what its rules use)


@slots_init
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
    result = replay_corners(assets, steps, [fills], limits, upside_bps=upside_bps, symbols_of=symbols_of)
    return result if isinstance(result, Violation) else result[0]


# The state before a step: balances by symbol, what each earlier step spent, gross value so far.
_State = tuple[dict[str, int], tuple[int, ...], int]


def replay_corners(
    assets: Sequence[RuleAsset],
    steps: Sequence[Step],
    corners: Sequence[Sequence[bool]],
    limits: RuleLimits,
    *,
    upside_bps: Sequence[int],
    symbols_of: Mapping[str, str],
) -> list[Execution] | Violation:
    """`replay` of each corner (fills) in order, up to the first violation, which is returned.

    The same answers as one `replay` per corner: a step's outcome depends only on the fills
    before it, so a prefix shared with the previous corner is not executed again, and the
    "before" side of the rules is computed once (the planner checks up to 2**n corners a plan).
    """
    by_symbol = {a.symbol: a for a in assets}
    hops = [
        (by_symbol[symbols_of[step.token_in.lower()]], by_symbol[symbols_of[step.token_out.lower()]])
        for step in steps
    ]
    rules = BatchRules(assets, limits)
    states: list[_State] = [({a.symbol: a.balance for a in assets}, (), 0)]  # states[k]: before step k
    path: list[bool] = []
    out: list[Execution] = []
    if len(upside_bps) != len(steps) or any(len(fills) != len(steps) for fills in corners):
        raise ValueError("replay_corners: one fill and one upside per step")
    for fills in corners:
        common = 0
        while common < len(path) and path[common] == fills[common]:
            common += 1
        del path[common:]
        del states[common + 1 :]
        for k in range(common, len(steps)):
            src, dst = hops[k]
            after = _execute(k, steps[k], src, dst, fills[k], upside_bps[k], states[k], limits)
            if isinstance(after, Violation):
                return after
            path.append(fills[k])
            states.append(after)
        bal, inputs, gross = states[len(steps)]
        verdict = rules.judge(dict(bal), gross, inputs)
        if isinstance(verdict, Violation):
            return verdict
        out.append(verdict)
    return out


# The drift bound maximises |.| of this many sign-mixed terms exactly (2**k linear maximisations).
MAX_MIXED_TERMS = 3
# Per asset: its target t in bps, 10000 - t, and whether t is in 0..10000 (the drift bounds).
_Term = tuple[int, int, bool]


@slots_init
@dataclass(frozen=True, slots=True)
class Worst:
    """The least favourable figures over every corner of an execution box."""

    drift_bps: int  # the highest drift after (floored, as driftBps() shows it)
    value_usd18: int  # the lowest value after
    loss_fraction: int  # the largest loss fraction


def worst_corner(
    assets: Sequence[RuleAsset],
    steps: Sequence[Step],
    limits: RuleLimits,
    *,
    upside_bps: Sequence[int],
    symbols_of: Mapping[str, str],
    exact_drift: bool = True,
) -> Worst | Violation:
    """What `replay_corners` over all 2**n corners of the box answers (in the order
    `itertools.product((False, True), repeat=n)` lists them), without replaying them all:
    its first violation, else the worst drift, value and loss over the corners.

    With `exact_drift` False the answer is the same violation, or a `Worst` whose drift is only
    a lower bound of the worst (the extreme corners' and those searched): for a caller that
    asks only whether the box passes, a subtree no corner of which breaks the drift rule is
    skipped without looking for its highest drift.

    Why the answer is the same. Every step's output is non-decreasing in its input (the floor
    is a ceiling of a fraction linear in the input, the best fill a floor of one) and its best
    fill is at least its low fill; a fixed step spends a constant, a KEEP step the balance above
    its keep. By induction over the steps, every balance after a prefix of steps, every input
    and the gross traded are non-decreasing in each fill (the product order on corners). So the
    all-low corner has the least of every final balance and the all-high corner the most, and:
    - a step's revert (nothing to spend, more than held, a zero floor) is worst at all-low:
      a fixed step's balance, a KEEP step's spend and each floor only grow with the fills;
    - ValueLoss, LossBudgetExceeded (the value after grows with each balance) are worst at
      all-low, and their figures (lowest value, largest loss) are the all-low corner's;
    - ExcessTurnover is worst at all-high: the gross G grows and the net outflow N shrinks;
    - NotTowardTarget: each asset's value lies between its all-low and all-high values.
    If either extreme corner breaks any rule, the corners are enumerated (`replay_corners`), so
    the violation named is the enumeration's. Drift is not monotone in the fills: it is searched
    depth-first in the enumeration's order, and a subtree (a prefix of fills fixed) is skipped
    only when interval bounds prove that none of its corners breaks DriftIncreased or exceeds
    the highest drift found so far. Its corners' final values lie in [v_lo_i, v_hi_i] (the
    prefix then all-low / all-high), their total T in [T_lo, T_hi]. Each term
    v_i * 10000 - t_i * T = v_i * (10000 - t_i) - t_i * (T - v_i) grows with v_i and falls
    with every other value (0 <= t_i <= 10000), so its absolute value is at most
    max(|v_hi_i * (10000 - t_i) - t_i * (T_lo - v_lo_i)|, |v_lo_i * (10000 - t_i) - t_i * (T_hi - v_hi_i)|)
    (a target outside 0..10000: each of v_i's and the rest's parts at whichever end makes the
    term largest, and smallest), and the sum D_hi of these bounds every corner's d_after. Where
    that bound does not settle the subtree, a tighter D_hi is tried: d_after's largest value
    over the box of values itself (`tight_drift_bound`: d_after is convex in the values, the
    most over sign choices of linear functions). Either way drift <= D_hi // T_lo, and
    d_after * total_before <= D_hi * total_before <= d_before * T_lo <= d_before * total_after
    passes the rule. A corner reached is judged exactly, and every corner before it in the
    enumeration's order passed, so a drift violation found is the enumeration's first.
    """
    n = len(steps)
    if len(upside_bps) != n:
        raise ValueError("worst_corner: one upside per step")
    rules = BatchRules(assets, limits)
    position = {a.symbol: i for i, a in enumerate(assets)}
    answers = [a.price.answer for a in assets]
    scales = [10 ** (a.decimals + a.price.decimals) for a in assets]  # raw units -> feed units
    keep_bps = BPS - limits.max_slippage_bps
    # Each step as plain integers (the arithmetic of `_execute`, its constants taken once):
    # (src, dst, keep, amount_in, min_out, floor num/den per unit in, implied num/den, upside,
    # the source's value per unit num/den).
    table = []
    for step, up in zip(steps, upside_bps, strict=True):
        i_in = position[symbols_of[step.token_in.lower()]]
        i_out = position[symbols_of[step.token_out.lower()]]
        implied_num = answers[i_in] * scales[i_out]
        implied_den = answers[i_out] * scales[i_in]
        table.append(
            (
                i_in,
                i_out,
                step.keep,
                step.amount_in,
                step.min_amount_out,
                implied_num * keep_bps,
                implied_den * BPS,
                implied_num,
                implied_den,
                BPS + up,
                answers[i_in] * USD18,
                scales[i_in],
            )
        )
    unit_value = [(answer * USD18, scale) for answer, scale in zip(answers, scales, strict=True)]

    def run(bal: list[int], gross: int, k: int, high: bool) -> tuple[list[int], int] | None:
        """Steps k.. at all-low or all-high fills from (bal, gross), as `_execute` does them;
        None where a step would revert."""
        bal = list(bal)
        for j in range(k, n):
            i_in, i_out, keep, amount_in, min_out, f_num, f_den, i_num, i_den, up_bps, v_num, v_den = table[j]
            spend = bal[i_in] - keep if keep is not None else amount_in
            if spend <= 0 or spend > bal[i_in] or spend * f_num < f_den:
                return None
            out = max(-(-(spend * f_num) // f_den), min_out)
            if high:
                out = max(out, spend * i_num // i_den * up_bps // BPS)
            bal[i_in] -= spend
            bal[i_out] += out
            gross += spend * v_num // v_den + 1
        return bal, gross

    def values(bal: list[int]) -> list[int]:
        return [b * num // den for b, (num, den) in zip(bal, unit_value, strict=True)]

    def enumerate_all() -> Worst | Violation:
        corners = list(itertools.product((False, True), repeat=n))
        executions = replay_corners(
            assets, steps, corners, limits, upside_bps=upside_bps, symbols_of=symbols_of
        )
        if isinstance(executions, Violation):
            return executions
        return Worst(
            max(e.drift_after_bps for e in executions),
            min(e.value_after_usd18 for e in executions),
            max(e.loss_fraction for e in executions),
        )

    balances = [a.balance for a in assets]
    low = run(balances, 0, 0, False)
    high = run(balances, 0, 0, True)
    if low is None or high is None:
        # A step reverts at an extreme corner: the enumeration names the first corner's revert.
        return enumerate_all()
    values_low, values_high = values(low[0]), values(high[0])
    judged_low = rules.judge_values(values_low, low[1])
    judged_high = rules.judge_values(values_high, high[1])
    if isinstance(judged_low, Violation) or isinstance(judged_high, Violation):
        return enumerate_all()
    best = max(judged_low[1], judged_high[1])
    total_b, d_before = rules.total_b, rules.d_before
    # Per asset (t, 10000 - t, whether t is in 0..10000), for the drift bound below.
    terms = [(t, BPS - t, 0 <= t <= BPS) for t in rules.targets]

    def search(bal: list[int], gross: int, k: int, v_lo: list[int], v_hi: list[int]) -> Violation | None:
        """The corners below (bal, gross) (steps before k done): v_lo and v_hi are the final
        values of its all-low and all-high continuations (a child shares one with its parent)."""
        nonlocal best
        t_lo = sum(v_lo)
        if k == n:
            # A corner (v_lo is its values): every rule but drift holds at every corner, so
            # when its drift rule holds, judge would pass it with drift d_after // total_after.
            if t_lo > 0:
                d_after = sum(abs(v * BPS - t * t_lo) for v, (t, _, _) in zip(v_lo, terms, strict=True))
                if d_after * total_b <= d_before * t_lo:
                    best = max(best, d_after // t_lo)
                    return None
            verdict = rules.judge_values(v_lo, gross)  # judged in full: the Violation judge names
            if isinstance(verdict, Violation):
                return verdict
            best = max(best, verdict[1])
            return None
        if t_lo > 0:
            t_hi = sum(v_hi)
            for bound in (drift_bound, tight_drift_bound):
                d_hi = bound(terms, v_lo, v_hi, t_lo, t_hi)
                if d_hi * total_b <= d_before * t_lo and (not exact_drift or d_hi // t_lo <= best):
                    return None  # no corner below breaks the drift rule (or beats the worst drift)
        for fill in (False, True):
            child = one_step(bal, gross, k, fill)
            other = run(*child, k + 1, not fill)
            assert other is not None  # the all-low corner ran every step: none reverts
            lo, hi = (v_lo, values(other[0])) if not fill else (values(other[0]), v_hi)
            if (found := search(*child, k + 1, lo, hi)) is not None:
                return found
        return None

    def one_step(bal: list[int], gross: int, k: int, high: bool) -> tuple[list[int], int]:
        """Step k alone, as `run` does it (no step reverts below the root: not checked)."""
        i_in, i_out, keep, amount_in, min_out, f_num, f_den, i_num, i_den, up_bps, v_num, v_den = table[k]
        spend = bal[i_in] - keep if keep is not None else amount_in
        out = max(-(-(spend * f_num) // f_den), min_out)
        if high:
            out = max(out, spend * i_num // i_den * up_bps // BPS)
        after = list(bal)
        after[i_in] -= spend
        after[i_out] += out
        return after, gross + spend * v_num // v_den + 1

    found = search(balances, 0, 0, values_low, values_high)
    if found is not None:
        return found
    return Worst(best, judged_low[0], judged_low[2])


def _term_range(vl: int, vh: int, t: int, rest: int, t_lo: int, t_hi: int) -> tuple[int, int]:
    """The least and the most of v * 10000 - t * T = v * (10000 - t) - t * R over the box, with
    v in [vl, vh] and the other values' sum R in [t_lo - vl, t_hi - vh]: each part at its ends
    (for t in 0..10000, v at its top and R at its bottom give the most; `worst_corner` inlines
    that case)."""
    r_lo, r_hi = t_lo - vl, t_hi - vh
    v_part = (rest * vl, rest * vh) if rest >= 0 else (rest * vh, rest * vl)
    r_part = (-t * r_hi, -t * r_lo) if t >= 0 else (-t * r_lo, -t * r_hi)
    return v_part[0] + r_part[0], v_part[1] + r_part[1]


def drift_bound(
    terms: Sequence[_Term], v_lo: Sequence[int], v_hi: Sequence[int], t_lo: int, t_hi: int
) -> int:
    """At least d_after = sum_i |v_i * 10000 - t_i * T| for all values v_lo <= v <= v_hi (T = their
    sum, t_lo and t_hi the sums of v_lo and v_hi): the sum of each term's own largest |.|.
    `terms`: per asset (t_i, 10000 - t_i, whether t_i is in 0..10000) (`worst_corner`)."""
    d_hi = 0
    for vl, vh, (t, rest, in_range) in zip(v_lo, v_hi, terms, strict=True):
        if in_range:
            low, high = vl * rest - t * (t_hi - vh), vh * rest - t * (t_lo - vl)
        else:
            low, high = _term_range(vl, vh, t, rest, t_lo, t_hi)
        d_hi += max(-low, high)
    return d_hi


def tight_drift_bound(
    terms: Sequence[_Term], v_lo: Sequence[int], v_hi: Sequence[int], t_lo: int, t_hi: int
) -> int:
    """`drift_bound`, tighter: the largest d_after over the box of values itself, when few
    terms change sign in it. d_after is the most, over a sign s_i for each term, of the
    linear sum_i s_i (v_i * 10000 - t_i * T) = sum_j v_j (10000 s_j - sum_i s_i t_i), whose
    largest value over the box has each value at the end its coefficient favours; a term
    whose sign the box fixes takes only that sign (the other is never the larger). Terms
    past MAX_MIXED_TERMS that change sign keep their own bound."""
    signs = [0] * len(v_lo)  # 0: a term left to its own bound (`loose`)
    signed = 0  # sum of s_i * t_i over the terms of fixed sign
    mixed: list[int] = []
    loose = 0
    for i, (vl, vh, (t, rest, in_range)) in enumerate(zip(v_lo, v_hi, terms, strict=True)):
        if in_range:
            low, high = vl * rest - t * (t_hi - vh), vh * rest - t * (t_lo - vl)
        else:
            low, high = _term_range(vl, vh, t, rest, t_lo, t_hi)
        if low >= 0 or high <= 0:
            signs[i] = 1 if low >= 0 else -1
            signed += signs[i] * t
        elif len(mixed) < MAX_MIXED_TERMS:
            mixed.append(i)
        else:
            loose += max(-low, high)
    most = None
    for pattern in range(1 << len(mixed)):
        total_signed = signed
        for bit, i in enumerate(mixed):
            signs[i] = -1 if pattern >> bit & 1 else 1
            total_signed += signs[i] * terms[i][0]
        linear = 0
        for s, vl, vh in zip(signs, v_lo, v_hi, strict=True):
            c = BPS * s - total_signed
            linear += c * vh if c > 0 else c * vl
        most = linear if most is None or linear > most else most
    assert most is not None
    return most + loose


def _execute(
    k: int,
    step: Step,
    src: RuleAsset,
    dst: RuleAsset,
    high: bool,
    up: int,
    state: _State,
    limits: RuleLimits,
) -> _State | Violation:
    """One step of `replay` from `state` (not modified): the state after it, or its revert."""
    held, inputs, gross = state
    keep = step.keep
    spend = held[src.symbol] - keep if keep is not None else step.amount_in
    if spend <= 0:
        return Violation(
            RefusalCode.UNFUNDED_STEP, f"step {k} ({src.symbol}->{dst.symbol}) would spend nothing"
        )
    if spend > held[src.symbol]:
        return Violation(
            RefusalCode.UNFUNDED_STEP,
            f"step {k} spends {spend} {src.symbol} but the vault would hold {held[src.symbol]}",
        )
    # vault_min_out and zero_floor of the same exact fraction, taken once.
    num, den = _floor_fraction(
        spend, src.decimals, src.price, dst.decimals, dst.price, limits.max_slippage_bps
    )
    if num < den:
        return Violation(RefusalCode.UNFUNDED_STEP, f"step {k}: its oracle floor rounds to 0 (ZeroFloor)")
    low_out = max(ceil_div(num, den), step.min_amount_out)
    implied = implied_amount_out(spend, src.decimals, src.price, dst.decimals, dst.price)
    out = max(low_out, implied * (BPS + up) // BPS) if high else low_out
    bal = dict(held)
    bal[src.symbol] -= spend
    bal[dst.symbol] += out
    # +1: a per-step floor either way
    return bal, (*inputs, spend), gross + value_usd18(spend, src.decimals, src.price) + 1


def judge(
    assets: Sequence[RuleAsset],
    after: dict[str, int],
    gross_usd18: int,
    inputs: tuple[int, ...],
    limits: RuleLimits,
) -> Execution | Violation:
    """The batch rules in the order the vault's `_judge` applies them (value loss, turnover,
    drift, toward target, budget), so the first violation is the one the vault would name."""
    return BatchRules(assets, limits).judge(after, gross_usd18, inputs)


class BatchRules:
    """The vault's batch rules for one vault state: what depends only on the state before
    (values, drift, each asset's toward-target band) computed once for many executions."""

    def __init__(self, assets: Sequence[RuleAsset], limits: RuleLimits) -> None:
        self.assets, self.limits = assets, limits
        self.before_v = [value_usd18(a.balance, a.decimals, a.price) for a in assets]
        self.total_b = sum(self.before_v)
        self.targets = [a.target_bps for a in assets]
        total_b = self.total_b
        self.d_before = sum(
            abs(v * BPS - t * total_b) for v, t in zip(self.before_v, self.targets, strict=True)
        )
        self.bands: list[tuple[int, int]] = []
        for a, b in zip(assets, self.before_v, strict=True):
            t_exact = a.target_bps * total_b  # t_i * BPS, exact
            # Stricter of "t floored" and "t exact": the band [min(b, t), max(b, t)] both agree on.
            self.bands.append(
                (min(b * BPS, ceil_div(t_exact, BPS) * BPS), max(b * BPS, t_exact // BPS * BPS))
            )

    def judge(
        self, after: dict[str, int], gross_usd18: int, inputs: tuple[int, ...]
    ) -> Execution | Violation:
        after_v = [value_usd18(after[a.symbol], a.decimals, a.price) for a in self.assets]
        verdict = self.judge_values(after_v, gross_usd18)
        if isinstance(verdict, Violation):
            return verdict
        total_a, drift_after, loss = verdict
        return Execution(after, inputs, self.total_b, total_a, drift_after, loss)

    def judge_values(self, after_v: Sequence[int], gross_usd18: int) -> Violation | tuple[int, int, int]:
        """`judge` on the values after (USD18, in the assets' order): its violation, or (value
        after, drift after in bps floored, loss fraction)."""
        limits, before_v, total_b = self.limits, self.before_v, self.total_b
        total_a = sum(after_v)
        if total_a * BPS < total_b * (BPS - limits.max_loss_bps):
            return Violation(
                RefusalCode.VALUE_LOSS_OVER_LIMIT,
                f"value after {total_a} < {BPS - limits.max_loss_bps}/{BPS} of {total_b} (usd18)",
            )
        net = sum(max(0, b - v) for b, v in zip(before_v, after_v, strict=True))
        if gross_usd18 * (BPS - limits.max_slippage_bps) > 2 * net * BPS:
            return Violation(
                RefusalCode.EXCESS_TURNOVER,
                f"gross {gross_usd18} traded for a net {net} (usd18): ExcessTurnover",
            )
        targets = self.targets
        d_after = sum(abs(v * BPS - t * total_a) for v, t in zip(after_v, targets, strict=True))
        if total_a > 0 and d_after * total_b > self.d_before * total_a:
            return Violation(
                RefusalCode.DRIFT_WOULD_INCREASE,
                f"drift would rise from {vault_drift_bps(before_v, targets)} to "
                f"{vault_drift_bps(after_v, targets)} bps",
            )
        for a, (lo, hi), v in zip(self.assets, self.bands, after_v, strict=True):
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
                f"worst-case loss {loss / LOSS_ONE * BPS:.2f} bps > the "
                f"{limits.budget_remaining / LOSS_ONE * BPS:.2f} bps left in the vault's rolling loss budget",
            )
        # vault_drift_bps(after_v, targets), from the sum already taken
        return total_a, (d_after // total_a if total_a > 0 else 0), loss
