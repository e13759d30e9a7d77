"""Target weights -> the netted swap batch the vault v2 accepts, with oracle floors (pure).

Routing. Every asset other than the hub (the quote asset) trades at most once, and in one
direction: assets over target sell their excess to the hub, the hub buys each under-target
asset's deficit, all through venues the vault pinned (keeper/routes.py). That is at most N-1
swaps and its turnover is the minimum possible. A seller and a buyer are swapped directly
instead, one leg in place of two, only when the seller's excess and the buyer's deficit match
to within `min_trade_usd` and a pinned direct venue quotes better than the route via the hub.

Sizing for the vault's rules (keeper/vault_rules.py). Fills vary between a step's floor and
the best fill the planner allows: the expected fill (the pinned venue's quote, or the oracle
when that is higher or there is no quote) plus as much again as the floor lies below the oracle
(`slippage_bps`): the pool may move either way by the keeper's tolerance before the batch is
mined. A fill better than that is a pool pushed in the vault's favour; the batch may then
revert (a wasted fee, no loss), which the simulation before sending catches when it is
already so. So:
- a sell sells at most its excess (the seller ends at or above its target, never past it);
- a fixed buy (or direct leg) is sized so that even its best fill leaves the bought asset at
  or below its target;
- the hub can only land inside its band [before, target] whatever the sells fetch through a
  KEEP step: the last buy spends the hub's balance above `keep` (amountIn = KEEP_FLAG + keep),
  so the hub ends at exactly `keep` and the fills' variance lands in the asset that buy gets,
  whose deficit must have room for it;
- with no buy to absorb it, sells into the hub are capped so the hub stays at or under target.
The planner then replays the vault's rules (toward target, turnover, value loss, exact drift,
the rolling loss budget, floors, funded steps) at every corner of the allowed execution box
(2**legs, all of them up to `max_vertex_legs`). If a rule could fail, every leg is halved and
checked again; if that never passes, the plan is refused with the rule's reason code.

Prices. The vault reads every feed in `rebalance()`, so one rejected price, even of an asset
the plan would not touch, means the vault cannot value itself and would revert: refuse all.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from keeper.fit import fit_amount
from keeper.model import (
    BPS,
    KEEP_FLAG,
    USD18,
    Address,
    LegKind,
    PinnedVenue,
    Plan,
    PlannedLeg,
    PriceRejection,
    PriceResult,
    Quote,
    Refusal,
    RefusalCode,
    SkippedLeg,
    SkipReason,
    Snapshot,
    Step,
    ValidPrice,
    format_usd18,
)
from keeper.portfolio import implied_amount_out, tokens_for_usd18, value_usd18, vault_drift_bps
from keeper.routes import PlanAsset, Route, direct_route, hub_route, scaled_out, skip, within
from keeper.vault_rules import Execution, RuleAsset, RuleLimits, Violation, replay, vault_min_out, zero_floor


@dataclass(frozen=True, slots=True)
class PlannerParams:
    slippage_bps: int  # keeper tolerance for min_amount_out; must be <= the vault's max
    max_quote_deviation_bps: int  # skip a leg whose best pinned quote is further than this from oracle
    min_trade_usd: Decimal  # legs worth less are dust
    default_v3_router: Address | None = None  # preferred router among pinned venues for unquoted legs
    allow_direct: bool = True
    max_shrink_rounds: int = 6
    max_vertex_legs: int = 12
    # Size to fit (keeper/fit.py): a quoted leg is cut to what covers its floor by this margin,
    # and dropped (leg_unfillable) when that is worth less than `min_leg_usd` (None: min_trade_usd).
    fit_margin_bps: int = 5
    min_leg_usd: Decimal | None = None
    # Per-asset adjustments after a simulation revert named a step (keeper/sim_revert.py):
    # (symbol, why) assets left out, (symbol, bps) assets whose leg is capped to that share.
    drop: tuple[tuple[str, str], ...] = ()
    shrink: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class _Intent:
    """A leg chosen at full size; amounts are derived per shrink round.

    `value_usd18` is what the source should give up; `room_usd18` how far the destination may
    rise before it passes its target (0 for the hub, whose landing is the KEEP step's job).
    """

    kind: LegKind
    src: PlanAsset
    dst: PlanAsset
    value_usd18: int
    room_usd18: int
    route: Route
    upside_bps: int  # the best fill the planner allows, in bps above the oracle-implied output
    cap_usd18: int  # the most the leg may spend: its size-to-fit limit (keeper/fit.py)


@dataclass(frozen=True, slots=True)
class _Context:
    assets: tuple[PlanAsset, ...]
    hub: PlanAsset
    hub_goal_usd18: int  # where the decision wants the hub, inside its band
    band_usd18: Mapping[str, tuple[int, int]]  # per asset: the values the vault lets it end at
    params: PlannerParams
    rule_limits: RuleLimits
    dust_usd18: int
    value_before_usd18: int
    drift_before_bps: int
    min_turnover_usd18: int


def plan(
    snapshot: Snapshot,
    prices: Mapping[str, PriceResult],
    target_weights_bps: Mapping[str, int],
    params: PlannerParams,
) -> Plan:
    """Plan the batch that moves `snapshot`'s vault toward `target_weights_bps` at oracle prices."""
    limits = snapshot.limits
    if snapshot.vault_paused:
        return _refused(RefusalCode.VAULT_PAUSED, "vault is paused by its guardian; nothing can trade")
    if not 0 <= params.slippage_bps <= limits.max_slippage_bps:
        return _refused(
            RefusalCode.SLIPPAGE_ABOVE_VAULT_LIMIT,
            f"keeper slippage_bps={params.slippage_bps} must be in 0..{limits.max_slippage_bps} "
            "(the vault's max_slippage_bps); lower it in the keeper config",
        )
    symbols = [a.symbol for a in snapshot.assets]
    if (bad := _check_targets(symbols, target_weights_bps)) is not None:
        return _refused(RefusalCode.BAD_TARGETS, bad)
    rejected = [r for s in symbols if isinstance(r := prices.get(s), PriceRejection) or r is None]
    if rejected:
        detail = "; ".join(
            r.message if isinstance(r, PriceRejection) else "a price is missing" for r in rejected
        )
        return _refused(
            RefusalCode.PRICE_REJECTED,
            f"not trading: the vault values every asset in rebalance(), so it would revert: {detail}",
        )
    budget = snapshot.loss_budget
    if budget is not None and budget.remaining <= 0:
        return _refused(
            RefusalCode.LOSS_BUDGET_EXHAUSTED,
            f"the vault's rolling loss budget ({budget.limit_bps:.0f} bps per {budget.window_s} s) is used "
            "up; any trade loses something to fees, so none can pass until the window rolls on",
        )

    assets = tuple(
        PlanAsset(
            a.symbol,
            a.config.token,
            a.config.decimals,
            _valid(prices[a.symbol]),
            a.balance,
            a.config.pool_fee,
            a.config.target_bps,
        )
        for a in snapshot.assets
    )
    values = [value_usd18(a.balance, a.decimals, a.price) for a in assets]
    total = sum(values)
    drift_before = vault_drift_bps(values, [a.target_bps for a in assets])
    if total <= 0:
        return _refused(RefusalCode.EMPTY_VAULT, "vault holds no value", drift_before=drift_before)

    # Each asset may only end between its value now and its configured target (the vault's
    # rule); a decision target outside that band (a policy's own weights) is clamped into it.
    band: dict[str, tuple[int, int]] = {}
    goal: dict[str, int] = {}
    for a, v in zip(assets, values, strict=True):
        t_floor, t_ceil = a.target_bps * total // BPS, -(-a.target_bps * total // BPS)
        lo, hi = min(v, t_ceil), max(v, t_floor)
        band[a.symbol] = (lo, hi)
        goal[a.symbol] = min(max(total * target_weights_bps[a.symbol] // BPS, lo), hi)
    diffs = {a.symbol: v - goal[a.symbol] for a, v in zip(assets, values, strict=True)}
    # What must change hands: all the excess sold, or all the deficit bought, whichever is more
    # (half the sum of |diff| when they balance; clamping to the vault's bands can unbalance them).
    min_turnover = max(sum(d for d in diffs.values() if d > 0), -sum(d for d in diffs.values() if d < 0))
    hub = next(a for a in assets if a.symbol == snapshot.quote_symbol)
    dust_usd18 = int(params.min_trade_usd * USD18)
    intents, skipped = _choose_intents(
        assets, hub, diffs, snapshot.quotes, snapshot.pinned_venues, params, dust_usd18
    )
    intents, capped = _cap_steps(intents, limits.max_steps)
    skipped += capped
    ctx = _Context(
        assets=assets,
        hub=hub,
        hub_goal_usd18=goal[hub.symbol],
        band_usd18=band,
        params=params,
        rule_limits=RuleLimits(
            limits.max_slippage_bps, limits.max_loss_bps, None if budget is None else budget.remaining
        ),
        dust_usd18=dust_usd18,
        value_before_usd18=total,
        drift_before_bps=drift_before,
        min_turnover_usd18=min_turnover,
    )
    return _fit_to_rules(ctx, intents, skipped)


def _fit_to_rules(ctx: _Context, intents: Sequence[_Intent], skipped: list[SkippedLeg]) -> Plan:
    """The largest of full, 1/2, 1/4... size whose every allowed execution passes the vault's rules."""
    scale = Fraction(1)
    first_violation: Violation | None = None
    for _ in range(ctx.params.max_shrink_rounds + 1):
        legs, dust, notes = _materialise(ctx, intents, scale)
        worst = _worst_case(ctx, legs)
        # Shrinking until every leg is dust is no fix: that case is refused below.
        if isinstance(worst, _Worst) and (legs or scale == 1):
            if scale != 1:
                notes.append(f"legs scaled to {scale} of full size to pass the vault's rules")
            return Plan(
                legs=legs,
                skipped=tuple(skipped + dust),
                turnover_usd18=_turnover(legs),
                min_turnover_usd18=ctx.min_turnover_usd18,
                value_before_usd18=ctx.value_before_usd18,
                worst_value_after_usd18=worst.value_usd18,
                drift_before_bps=ctx.drift_before_bps,
                expected_drift_bps=_expected_drift(ctx, legs),
                worst_drift_bps=worst.drift_bps,
                notes=tuple(notes),
                worst_loss_fraction=worst.loss_fraction,
            )
        if isinstance(worst, Violation):
            first_violation = first_violation or worst
        scale /= 2
    code, why = (
        (first_violation.code, first_violation.message)
        if first_violation is not None
        else (RefusalCode.VALUE_LOSS_OVER_LIMIT, "every leg became dust")
    )
    return _refused(
        code,
        f"{why} at full size, and batches down to {scale * 2} of it failed too or were dust; "
        "not asking the vault to revert",
        drift_before=ctx.drift_before_bps,
        value_before=ctx.value_before_usd18,
        min_turnover=ctx.min_turnover_usd18,
        skipped=tuple(skipped),
    )


def _valid(result: PriceResult | None) -> ValidPrice:
    assert isinstance(result, ValidPrice)  # plan() refused every other case above
    return result


def _check_targets(symbols: Sequence[str], targets: Mapping[str, int]) -> str | None:
    if set(targets) != set(symbols):
        return f"target weights are for {sorted(targets)} but the vault holds {sorted(symbols)}"
    if any(not 0 <= t <= BPS for t in targets.values()):
        return f"every target weight must be in 0..{BPS} bps, got {dict(targets)}"
    if (total := sum(targets.values())) != BPS:
        return f"target weights must sum to {BPS} bps, got {total}"
    return None


def _refused(
    code: RefusalCode,
    message: str,
    *,
    drift_before: int = 0,
    value_before: int = 0,
    min_turnover: int = 0,
    skipped: tuple[SkippedLeg, ...] = (),
) -> Plan:
    return Plan(
        legs=(),
        skipped=skipped,
        turnover_usd18=0,
        min_turnover_usd18=min_turnover,
        value_before_usd18=value_before,
        worst_value_after_usd18=value_before,
        drift_before_bps=drift_before,
        expected_drift_bps=drift_before,
        worst_drift_bps=drift_before,
        refusal=Refusal(code, message),
    )


# --- choosing legs ------------------------------------------------------------------------


def _choose_intents(
    assets: Sequence[PlanAsset],
    hub: PlanAsset,
    diffs: Mapping[str, int],
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    params: PlannerParams,
    dust_usd18: int,
) -> tuple[list[_Intent], list[SkippedLeg]]:
    sellers = sorted(
        (a for a in assets if a is not hub and diffs[a.symbol] > 0), key=lambda a: -diffs[a.symbol]
    )
    buyers = [a for a in assets if a is not hub and diffs[a.symbol] < 0]
    dev = params.max_quote_deviation_bps
    intents: list[_Intent] = []
    skipped: list[SkippedLeg] = []

    dropped = dict(params.drop)
    shrink = dict(params.shrink)
    paired: set[str] = set()
    min_leg_usd18 = int(
        (params.min_leg_usd if params.min_leg_usd is not None else params.min_trade_usd) * USD18
    )
    if params.allow_direct:
        for s in sellers:
            if s.symbol in dropped:  # a dropped asset takes no direct leg either
                continue
            for b in sorted(buyers, key=lambda b: abs(diffs[s.symbol] + diffs[b.symbol])):
                if (
                    b.symbol in paired
                    or b.symbol in dropped
                    or abs(diffs[s.symbol] + diffs[b.symbol]) >= max(dust_usd18, 1)
                ):
                    continue
                value = min(diffs[s.symbol], -diffs[b.symbol])
                direct = direct_route(s, b, hub, value, quotes, pinned, dev)
                if (
                    direct is not None
                    and value >= dust_usd18
                    and _fits_whole(s, b, value, quotes, pinned, params)
                ):
                    up = _route_upside(s, b, value, direct, params)
                    intents.append(_Intent(LegKind.DIRECT, s, b, value, _room(b, diffs), direct, up, value))
                    paired.update((s.symbol, b.symbol))
                    break

    for kind, src, dst, wanted, room in [
        *((LegKind.SELL_TO_HUB, s, hub, diffs[s.symbol], 0) for s in sellers if s.symbol not in paired),
        *(
            (LegKind.BUY_FROM_HUB, hub, b, -diffs[b.symbol], _room(b, diffs))
            for b in buyers
            if b.symbol not in paired
        ),
    ]:
        asset = dst if src is hub else src
        if asset.symbol in dropped:
            skipped.append(skip(src, dst, wanted, SkipReason.SIMULATION_REVERT, dropped[asset.symbol]))
            continue
        value = wanted * shrink.get(asset.symbol, BPS) // BPS
        if value < dust_usd18 or value <= 0:
            skipped.append(
                skip(src, dst, value, SkipReason.DUST, f"worth less than {params.min_trade_usd} USD")
            )
            continue
        fitted = _fit_cap(src, dst, value, quotes, pinned, params, min_leg_usd18)
        if isinstance(fitted, SkippedLeg):
            skipped.append(fitted)
            continue
        value = fitted
        route = hub_route(src, dst, hub, value, quotes, pinned, dev, params.default_v3_router)
        if isinstance(route, SkippedLeg):
            skipped.append(route)
        else:
            up = _route_upside(src, dst, value, route, params)
            intents.append(_Intent(kind, src, dst, value, room, route, up, value))
    return intents, skipped


def _fits_whole(
    src: PlanAsset,
    dst: PlanAsset,
    value: int,
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    params: PlannerParams,
) -> bool:
    """A direct leg is taken only at its full size (else its two assets go via the hub)."""
    amount_in = tokens_for_usd18(value, src.decimals, src.price)
    fit = fit_amount(quotes, pinned, src, dst, amount_in, params.slippage_bps, params.fit_margin_bps)
    return fit is None or fit.amount_in == amount_in


def _fit_cap(
    src: PlanAsset,
    dst: PlanAsset,
    value: int,
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    params: PlannerParams,
    min_leg_usd18: int,
) -> int | SkippedLeg:
    """The leg's value cut to the largest size its quotes cover (keeper/fit.py), or the reason
    it is unfillable. Unquoted (the first plan): the value as it is."""
    amount_in = tokens_for_usd18(value, src.decimals, src.price)
    fit = fit_amount(quotes, pinned, src, dst, amount_in, params.slippage_bps, params.fit_margin_bps)
    if fit is None or amount_in <= 0:
        return value
    if fit.amount_in is not None:
        cap = value if fit.amount_in >= amount_in else value_usd18(fit.amount_in, src.decimals, src.price)
        if cap >= min_leg_usd18:
            return cap
        why = (
            f"quotes cover the minimum output only up to {format_usd18(cap)} USD in ({fit.venue}), "
            f"below the minimum leg of {format_usd18(min_leg_usd18)} USD"
        )
    elif fit.quoted_out > 0 and not within(
        fit.quoted_out,
        implied_amount_out(fit.probe_in, src.decimals, src.price, dst.decimals, dst.price),
        params.max_quote_deviation_bps,
    ):
        return value  # even its best size is off the oracle band: a manipulated pool (hub_route says so)
    elif fit.quoted_out == 0:
        why = f"every pinned venue's quote failed (no liquidity?), last {fit.venue} at {fit.probe_in} in"
    else:
        why = (
            f"quoted {fit.quoted_out} vs minimum {fit.floor} out for {fit.probe_in} in on {fit.venue} "
            f"({fit.shortfall_bps} bps short, the best of the sizes quoted)"
        )
    return skip(src, dst, value, SkipReason.LEG_UNFILLABLE, f"unfillable: {why}")


def _room(buyer: PlanAsset, diffs: Mapping[str, int]) -> int:
    """How far the buyer may rise, less one raw unit of it: a floor rounded up (the vault's
    minimum) can deliver one unit more than the oracle-implied output."""
    return max(0, -diffs[buyer.symbol] - value_usd18(1, buyer.decimals, buyer.price) - 1)


def _upside(quoted_out: int | None, implied: int, params: PlannerParams) -> int:
    """Bps above the implied output of the best fill allowed: the quote's premium, if any, plus
    the keeper's slippage tolerance (the pool may move as far up as down)."""
    premium = 0
    if quoted_out is not None and implied > 0 and quoted_out > implied:
        premium = -(-(quoted_out - implied) * BPS // implied)
    return premium + params.slippage_bps


def _route_upside(src: PlanAsset, dst: PlanAsset, value: int, route: Route, params: PlannerParams) -> int:
    amount_in = tokens_for_usd18(value, src.decimals, src.price)
    implied = implied_amount_out(amount_in, src.decimals, src.price, dst.decimals, dst.price)
    quoted = scaled_out(route.quote, amount_in) if route.quote is not None and amount_in > 0 else None
    return _upside(quoted, implied, params)


def _leg_upside(leg: PlannedLeg, params: PlannerParams) -> int:
    return _upside(leg.quoted_out, leg.implied_out, params)


def _cap_steps(intents: list[_Intent], max_steps: int) -> tuple[list[_Intent], list[SkippedLeg]]:
    """Keep the largest legs when the vault's max_steps is below the leg count."""
    if len(intents) <= max_steps:
        return intents, []
    ranked = sorted(intents, key=lambda i: -i.value_usd18)
    dropped = [
        skip(i.src, i.dst, i.value_usd18, SkipReason.MAX_STEPS, f"vault allows {max_steps} steps per batch")
        for i in ranked[max_steps:]
    ]
    return [i for i in intents if i in ranked[:max_steps]], dropped


# --- sizing -------------------------------------------------------------------------------


def _times(value: int, scale: Fraction) -> int:
    return value * scale.numerator // scale.denominator


def _best_fill_fits(room_usd18: int, dev_bps: int) -> int:
    """The input value whose best allowed fill (implied * (1 + upside)) still fits in `room`."""
    return room_usd18 * BPS // (BPS + dev_bps)


def _tokens(asset: PlanAsset, value_usd18: int) -> int:
    """Raw units worth at most `value_usd18`, one unit under so the seller's floored value stays
    at or above what the vault compares it with."""
    return max(0, tokens_for_usd18(value_usd18, asset.decimals, asset.price) - 1)


def _materialise(
    ctx: _Context, intents: Sequence[_Intent], scale: Fraction
) -> tuple[tuple[PlannedLeg, ...], list[SkippedLeg], list[str]]:
    """Amounts for each intent at `scale`, in execution order: sells, directs, fixed buys, KEEP."""
    p, hub = ctx.params, ctx.hub
    sells = [i for i in intents if i.kind is LegKind.SELL_TO_HUB]
    directs = [i for i in intents if i.kind is LegKind.DIRECT]
    buys = sorted((i for i in intents if i.kind is LegKind.BUY_FROM_HUB), key=lambda i: i.room_usd18)
    notes: list[str] = []
    dust: list[SkippedLeg] = []

    sell_values = [_times(i.value_usd18, scale) for i in sells]
    hub_lo, hub_hi = ctx.band_usd18[hub.symbol]
    hub_value = value_usd18(hub.balance, hub.decimals, hub.price)
    # What the hub can take in at the sells' best fills: its own room, plus (with buys) what
    # the buys can spend without passing their targets. Sells beyond that are cut pro rata.
    room = sum(_best_fill_fits(_times(i.room_usd18, scale), i.upside_bps) for i in buys)
    room += max(0, hub_hi - hub_value)
    room -= room // BPS  # a basis point to spare for the floors of token conversions
    best_in = sum(v * (BPS + i.upside_bps) // BPS for i, v in zip(sells, sell_values, strict=True))
    if best_in > room:
        sell_values = [v * room // best_in for v in sell_values]
        notes.append("sells cut so the hub and the buys stay within their targets at the sells' best fills")
    legs = _keep_legs(ctx, [(i, _tokens(i.src, v)) for i, v in zip(sells, sell_values, strict=True)], dust)
    legs += _keep_legs(
        ctx,
        [
            (
                i,
                _tokens(
                    i.src,
                    min(
                        _times(i.value_usd18, scale),
                        _best_fill_fits(_times(i.room_usd18, scale), i.upside_bps),
                        i.cap_usd18,
                    ),
                ),
            )
            for i in directs
        ],
        dust,
    )
    if not buys:
        return tuple(legs), dust, notes

    sold = [leg for leg in legs if leg.kind is LegKind.SELL_TO_HUB]
    hub_in_lo = hub.balance + sum(leg.step.min_amount_out for leg in sold)
    hub_in_hi = hub.balance + sum(leg.implied_out * (BPS + _leg_upside(leg, p)) // BPS for leg in sold)
    hub_in_exp = hub.balance + sum(_expected_out(leg) for leg in sold)
    keep_lo = hub.balance if hub_lo == hub_value else tokens_for_usd18(hub_lo, hub.decimals, hub.price) + 1
    keep_hi = hub.balance if hub_hi == hub_value else tokens_for_usd18(hub_hi, hub.decimals, hub.price)
    # The KEEP step must spend something whose floor is not zero: at least a cent's worth.
    margin = tokens_for_usd18(USD18 // 100, hub.decimals, hub.price) + 1

    *fixed, absorber = buys
    fixed_amounts = [
        _tokens(hub, min(_best_fill_fits(_times(i.room_usd18, scale), i.upside_bps), i.cap_usd18))
        for i in fixed
    ]
    spendable = hub_in_lo - keep_lo - margin
    if sum(fixed_amounts) > max(spendable, 0):
        fixed_amounts = [a * max(spendable, 0) // sum(fixed_amounts) for a in fixed_amounts]
        notes.append("buys scaled to what the hub holds even at the sells' minimum outputs")
    fixed_legs = _keep_legs(ctx, list(zip(fixed, fixed_amounts, strict=True)), dust)
    legs += fixed_legs
    spent = sum(leg.amount_in for leg in fixed_legs)

    cap = _tokens(
        hub, min(_best_fill_fits(_times(absorber.room_usd18, scale), absorber.upside_bps), absorber.cap_usd18)
    )
    goal_value = hub_value + _times(ctx.hub_goal_usd18 - hub_value, scale)
    goal_keep = tokens_for_usd18(goal_value, hub.decimals, hub.price)
    low = max(keep_lo, hub_in_hi - spent - cap)
    high = min(keep_hi, hub_in_lo - spent - margin)
    if low <= high:
        keep = min(max(goal_keep, low), high)
        expected_in = hub_in_exp - spent - keep
        min_in = hub_in_lo - spent - keep
        leg = _leg(absorber, expected_in, p, keep=keep, min_in=min_in)
        floorless = min_in <= 0 or zero_floor(
            min_in,
            hub.decimals,
            hub.price,
            absorber.dst.decimals,
            absorber.dst.price,
            ctx.rule_limits.max_slippage_bps,
        )
        # Like a fixed leg: nothing to spend, or a floor of zero (ZeroFloor), is no leg.
        if expected_in > 0 and not floorless and leg.value_in_usd18 >= ctx.dust_usd18:
            legs.append(leg)
        else:
            dust.append(
                skip(hub, absorber.dst, leg.value_in_usd18, SkipReason.DUST, "too small after sizing")
            )
    else:
        notes.append(
            f"no KEEP step: {absorber.dst.symbol}'s deficit has no room for the sells' fill variance; "
            "buying it with a fixed amount"
        )
        legs += _keep_legs(ctx, [(absorber, min(cap, max(0, hub_in_lo - spent - keep_lo)))], dust)
    return tuple(legs), dust, notes


def _keep_legs(
    ctx: _Context, sized: Sequence[tuple[_Intent, int]], dust: list[SkippedLeg]
) -> list[PlannedLeg]:
    """Fixed-amount legs that are worth trading; the rest go to `dust` with the reason."""
    kept: list[PlannedLeg] = []
    for intent, amount_in in sized:
        leg = _leg(intent, amount_in, ctx.params)
        src, dst = intent.src, intent.dst
        floorless = zero_floor(
            amount_in, src.decimals, src.price, dst.decimals, dst.price, ctx.rule_limits.max_slippage_bps
        )
        if amount_in <= 0 or floorless or leg.value_in_usd18 < ctx.dust_usd18:
            # A zero floor would hand the router a free option on the vault's tokens (ZeroFloor).
            dust.append(
                skip(intent.src, intent.dst, leg.value_in_usd18, SkipReason.DUST, "too small after sizing")
            )
        elif leg.quoted_out is not None and not within(
            leg.quoted_out, leg.implied_out, ctx.params.max_quote_deviation_bps
        ):
            # The route was checked at full size; a scaled-down leg is re-checked at its own size.
            dust.append(
                skip(
                    intent.src,
                    intent.dst,
                    leg.value_in_usd18,
                    SkipReason.QUOTE_DEVIATION,
                    f"quote {leg.deviation_bps} bps from the oracle at the scaled-down size",
                )
            )
        else:
            kept.append(leg)
    return kept


def _leg(
    intent: _Intent,
    amount_in: int,
    params: PlannerParams,
    *,
    keep: int | None = None,
    min_in: int | None = None,
) -> PlannedLeg:
    """A leg spending `amount_in` (expected, for a KEEP step); its floor is taken at the least
    a KEEP step can spend (`min_in`), as the vault enforces its own floor on the actual input."""
    src, dst, route = intent.src, intent.dst, intent.route
    implied = implied_amount_out(amount_in, src.decimals, src.price, dst.decimals, dst.price)
    quoted_out: int | None = None
    deviation: Decimal | None = None
    if route.quote is not None:
        quoted_out = scaled_out(route.quote, amount_in)
        if implied > 0:
            # Exact to 0.01 bps; Decimal division would trap on a wild quote.
            deviation = Decimal(round(Fraction((quoted_out - implied) * BPS * 100, implied))).scaleb(-2)
    floor_in = amount_in if min_in is None else min_in
    step = Step(
        venue=route.venue,
        router=route.router,
        token_in=src.token,
        token_out=dst.token,
        fee=route.fee,
        amount_in=amount_in if keep is None else KEEP_FLAG + keep,
        min_amount_out=vault_min_out(
            floor_in, src.decimals, src.price, dst.decimals, dst.price, params.slippage_bps
        ),
    )
    return PlannedLeg(
        kind=intent.kind,
        step=step,
        symbol_in=src.symbol,
        symbol_out=dst.symbol,
        amount_in=amount_in,
        value_in_usd18=value_usd18(amount_in, src.decimals, src.price),
        implied_out=implied,
        price_in=src.price,
        price_out=dst.price,
        decimals_out=dst.decimals,
        quote=route.quote,
        quoted_out=quoted_out,
        deviation_bps=deviation,
    )


def _expected_out(leg: PlannedLeg) -> int:
    return leg.quoted_out if leg.quoted_out is not None else leg.implied_out


# --- checking -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Worst:
    drift_bps: int
    value_usd18: int
    loss_fraction: int


def _worst_case(ctx: _Context, legs: Sequence[PlannedLeg]) -> _Worst | Violation:
    """The vault's rules at every corner of the execution box: the first violation, or the
    worst drift, value and loss over all corners."""
    rule_assets = [
        RuleAsset(a.symbol, a.token, a.decimals, a.price, a.balance, a.target_bps) for a in ctx.assets
    ]
    symbols_of = {a.token.lower(): a.symbol for a in ctx.assets}
    steps = [leg.step for leg in legs]
    upside = [_leg_upside(leg, ctx.params) for leg in legs]
    n = len(steps)
    if n <= ctx.params.max_vertex_legs:
        corners: list[tuple[bool, ...]] = list(itertools.product((False, True), repeat=n))
    else:  # too many corners to enumerate: the two uniform extremes
        corners = [(False,) * n, (True,) * n]
    executions: list[Execution] = []
    for fills in corners:
        result = replay(
            rule_assets,
            steps,
            fills,
            ctx.rule_limits,
            upside_bps=upside,
            symbols_of=symbols_of,
        )
        if isinstance(result, Violation):
            return result
        executions.append(result)
    return _Worst(
        drift_bps=max(e.drift_after_bps for e in executions),
        value_usd18=min(e.value_after_usd18 for e in executions),
        loss_fraction=max(e.loss_fraction for e in executions),
    )


def _expected_drift(ctx: _Context, legs: Sequence[PlannedLeg]) -> int:
    """Drift after the batch at the fills the quotes predict (oracle-implied where unquoted)."""
    bal = {a.symbol: a.balance for a in ctx.assets}
    for leg in legs:
        bal[leg.symbol_in] -= leg.amount_in
        bal[leg.symbol_out] += _expected_out(leg)
    values = [value_usd18(bal[a.symbol], a.decimals, a.price) for a in ctx.assets]
    return vault_drift_bps(values, [a.target_bps for a in ctx.assets])


def _turnover(legs: Sequence[PlannedLeg]) -> int:
    """Half the sum over assets of |value change| at oracle prices: hub legs count once."""
    delta: dict[str, int] = {}
    for leg in legs:
        delta[leg.symbol_in] = delta.get(leg.symbol_in, 0) - leg.value_in_usd18
        out_value = value_usd18(leg.implied_out, leg.decimals_out, leg.price_out)
        delta[leg.symbol_out] = delta.get(leg.symbol_out, 0) + out_value
    return sum(abs(d) for d in delta.values()) // 2
