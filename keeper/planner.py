"""Target weights -> the netted swap batch the vault v2 accepts, with oracle floors (pure).

Routing. Every asset other than the hub (the quote asset) trades at most once, and in one
direction: assets over target sell their excess to the hub, the hub buys each under-target
asset's deficit, all through venues the vault pinned (keeper/routes.py). That is at most N-1
legs and its turnover is the minimum possible. A seller and a buyer are swapped directly
instead, one leg in place of two, when the seller's excess and the buyer's deficit match
to within `min_trade_usd` and a pinned direct venue quotes better than the route via the hub,
or, on quotes, when one of them has no pinned venue to the hub whose quote is in the band
(as much as both need).
On quotes (`require_quotes`, the decision's second plan), each leg takes the path of
keeper/routing.py with the most output net of gas: one pinned venue, a split over the pair's
pinned venues, or two hops through another vault asset (a KEEP step on it, so it ends where
it was); a leg no quote covers is skipped with its reason, never planned blind.
Size to fit (keeper/fit.py) holds on that path: the leg takes the largest size of its ladder
at which some path's every step is quoted to cover its floor by `fit_margin_bps`, else it is
`leg_unfillable`; a simulation revert's `drop`/`shrink` applies to the leg's asset whatever its
path (a dropped asset is no intermediate either).

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from keeper.fit import covers, fit_amount, ladder
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
from keeper.routes import (
    PlanAsset,
    Route,
    best_quote,
    direct_route,
    hub_route,
    scaled_out,
    skip,
    venue_probes,
    within,
)
from keeper.routing import Hop, Path, candidate_paths, net_usd18, quoted_direct, single
from keeper.slots_init import slots_init
from keeper.vault_rules import (
    RuleAsset,
    RuleLimits,
    Violation,
    Worst,
    replay_corners,
    vault_min_out,
    worst_corner,
    zero_floor,
)


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
    # Routing over quotes (keeper/routing.py): set by the decision for the plan made on quotes.
    step_gas_usd18: int = 0  # what one more swap step costs in gas: a split or a hop must beat it
    require_quotes: bool = False  # a leg no quote covers is skipped, never planned blind
    # False: the plan only sizes the quote call (the decision's first plan), so its
    # `worst_drift_bps` may be a lower bound; which legs, sizes and refusals are unchanged.
    exact_worst_drift: bool = True


@slots_init
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
    path: Path
    upside_bps: int  # the best fill the planner allows, in bps above the oracle-implied output
    cap_usd18: int  # the most the leg may spend: its size-to-fit limit (keeper/fit.py)


@slots_init
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
    fitted = _fit_to_rules(ctx, intents, skipped)
    hops = [i for i in intents if i.path.via is not None]
    if fitted.refusal is None or not hops:
        return fitted
    # A two-hop leg adds gross turnover the vault counts: if the batch cannot pass with it, the
    # rest of the batch goes ahead without it (and says why) rather than the whole tick stalling.
    why = f"its two-hop path could not pass the vault's rules in this batch ({fitted.refusal.code})"
    dropped = [skip(i.src, i.dst, i.value_usd18, SkipReason.NO_ROUTE, why) for i in hops]
    return _fit_to_rules(ctx, [i for i in intents if i not in hops], skipped + dropped)


def _fit_to_rules(ctx: _Context, intents: Sequence[_Intent], skipped: list[SkippedLeg]) -> Plan:
    """The largest of full, 1/2, 1/4... size whose every allowed execution passes the vault's rules."""
    scale = Fraction(1)
    first_violation: Violation | None = None
    for _ in range(ctx.params.max_shrink_rounds + 1):
        legs, dust, notes = _materialise(ctx, intents, scale)
        worst = _worst_case(ctx, legs)
        # Shrinking until every leg is dust is no fix: that case is refused below.
        if isinstance(worst, Worst) and (legs or scale == 1):
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
    diffs = dict(diffs)  # netted below as direct legs take parts of them

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
                    path = single(s, b, direct)
                    up = _path_upside(value, path, params)
                    intents.append(_Intent(LegKind.DIRECT, s, b, value, _room(b, diffs), path, up, value))
                    paired.update((s.symbol, b.symbol))
                    break

    if params.require_quotes:
        netted_off, unfit = _net_off_hub(
            sellers, buyers, hub, diffs, paired, quotes, pinned, params, dust_usd18, min_leg_usd18
        )
        intents += netted_off
        skipped += unfit
    netted = {s for i in intents if i.kind is LegKind.DIRECT for s in (i.src.symbol, i.dst.symbol)}

    # A two-hop path's second hop is a KEEP step on the intermediate: it spends what the first
    # hop brought and leaves what the intermediate surely held. Sells run first in the batch,
    # before any fill lands in a bought asset; buys run after the sells and directs. Neither
    # passes through an asset the hub still buys: that is a round trip, which the vault's
    # turnover rule refuses (and a buy's KEEP would find that balance moving under it).
    # Nor through an asset a simulation revert dropped (its pools are what reverted).
    via_sell = {a.symbol: a is not hub and diffs[a.symbol] >= 0 and a.symbol not in dropped for a in assets}
    via_buy = {
        a.symbol: a is not hub and diffs[a.symbol] >= 0 and a.symbol not in netted and a.symbol not in dropped
        for a in assets
    }
    for kind, src, dst, wanted, room in [
        *((LegKind.SELL_TO_HUB, s, hub, diffs[s.symbol], 0) for s in sellers if s.symbol not in paired),
        *(
            (LegKind.BUY_FROM_HUB, hub, b, -diffs[b.symbol], _room(b, diffs))
            for b in buyers
            if b.symbol not in paired
        ),
    ]:
        if wanted <= 0 and (src.symbol in netted or dst.symbol in netted):
            continue  # wholly traded by its direct legs
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
        if params.require_quotes:
            # On quotes: the best path (keeper/routing.py), cut to the largest size it fits.
            via = via_sell if kind is LegKind.SELL_TO_HUB else via_buy
            chosen = _quoted_path(src, dst, value, assets, quotes, pinned, params, via, min_leg_usd18)
            if isinstance(chosen, SkippedLeg):
                skipped.append(chosen)
                continue
            path, value = chosen
        else:
            fitted = _fit_cap(src, dst, value, quotes, pinned, params, min_leg_usd18)
            if isinstance(fitted, SkippedLeg):
                skipped.append(fitted)
                continue
            value = fitted
            route = hub_route(src, dst, hub, value, quotes, pinned, dev, params.default_v3_router)
            if isinstance(route, SkippedLeg):
                skipped.append(route)
                continue
            path = single(src, dst, route)
        intents.append(_Intent(kind, src, dst, value, room, path, _path_upside(value, path, params), value))
    return intents, skipped


def _net_off_hub(
    sellers: Sequence[PlanAsset],
    buyers: Sequence[PlanAsset],
    hub: PlanAsset,
    diffs: dict[str, int],
    paired: set[str],
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    params: PlannerParams,
    dust_usd18: int,
    min_leg_usd18: int,
) -> tuple[list[_Intent], list[SkippedLeg]]:
    """Direct legs for assets that cannot trade with the hub (no pinned venue, or none whose
    quote is within the band: drained or manipulated), against counterparties they do have a
    quoted pinned venue with, for as much as both sides need (cut to fit, and to a simulation
    revert's shrink); `diffs` is netted by what they take.

    Why not only two hops: the vault counts every step's input in its turnover rule (gross G
    against net outflow N), so selling X via M to the hub and then buying M with the hub pays
    the round trip twice and fails ExcessTurnover in any batch that also buys; X -> M direct
    is the same trade without it. What is left goes two hops through the hub's side after.
    A pair whose quotes fit no size is skipped with that reason (leg_unfillable).
    """
    dropped = dict(params.drop)
    shrink = dict(params.shrink)
    intents: list[_Intent] = []
    unfit: list[SkippedLeg] = []
    # Whether each side trades with the hub, asked once per asset (not once per pair).
    sells_to_hub: dict[str, bool] = {}
    buys_from_hub: dict[str, bool] = {}
    for s in sellers:
        for b in sorted(buyers, key=lambda b: diffs[b.symbol]):
            if s.symbol in paired or b.symbol in paired or s.symbol in dropped or b.symbol in dropped:
                continue
            whole = min(diffs[s.symbol], -diffs[b.symbol])
            if whole < max(dust_usd18, 1):
                continue
            if s.symbol not in sells_to_hub:
                sells_to_hub[s.symbol] = _hub_quoted(s, hub, quotes, pinned, params)
            if sells_to_hub[s.symbol]:
                if b.symbol not in buys_from_hub:
                    buys_from_hub[b.symbol] = _hub_quoted(hub, b, quotes, pinned, params)
                if buys_from_hub[b.symbol]:
                    continue  # both trade with the hub: the hub legs are the plan, as before
            value = whole * min(shrink.get(s.symbol, BPS), shrink.get(b.symbol, BPS)) // BPS
            if value < max(dust_usd18, 1):
                continue
            chosen = _quoted_path(s, b, value, [], quotes, pinned, params, {}, min_leg_usd18)
            if isinstance(chosen, SkippedLeg):
                if chosen.reason is SkipReason.LEG_UNFILLABLE:
                    unfit.append(chosen)
                continue
            path, value = chosen
            room = min(_room(b, diffs), value)
            intents.append(
                _Intent(LegKind.DIRECT, s, b, value, room, path, _path_upside(value, path, params), value)
            )
            # A shrunk side does not trade the rest this tick either (the revert's remedy).
            taken = whole if value < whole and (s.symbol in shrink or b.symbol in shrink) else value
            diffs[s.symbol] -= taken
            diffs[b.symbol] += taken
    return intents, unfit


def _hub_quoted(
    src: PlanAsset,
    dst: PlanAsset,
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    params: PlannerParams,
) -> bool:
    """A pinned venue of the pair has a quote within the band (then a direct path exists at
    any size: routing.quoted_direct)."""
    return quoted_direct(src, dst, quotes, pinned, params.max_quote_deviation_bps)


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


def _quoted_path(
    src: PlanAsset,
    dst: PlanAsset,
    value: int,
    assets: Sequence[PlanAsset],
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    params: PlannerParams,
    via_allowed: Mapping[str, bool],
    min_leg_usd18: int,
) -> tuple[Path, int] | SkippedLeg:
    """The leg's path and value on quotes: at the largest size of its ladder (keeper/fit.py),
    the quoted path (keeper/routing.py) with the most output net of gas among those whose
    every step's quote covers its floor by the fit margin; or the reason there is none
    (leg_unfillable when paths are quoted but none fits above the minimum leg)."""
    dev = params.max_quote_deviation_bps
    amount_in = tokens_for_usd18(value, src.decimals, src.price)
    short: Path | None = None  # the best path at full size, when it does not fit
    for size in ladder(amount_in):
        paths = candidate_paths(
            src, dst, size, assets, quotes, pinned, dev, params.step_gas_usd18, via_allowed
        )
        # Ties go to fewer steps (fewer things to go wrong, less turnover counted by the vault).
        ranked = sorted(paths, key=lambda p: (-net_usd18(p, dst, params.step_gas_usd18), p.steps))
        fitting = next((p for p in ranked if _path_covers(p, quotes, pinned, params)), None)
        if fitting is not None:
            cap = value if size == amount_in else value_usd18(size, src.decimals, src.price)
            if cap >= min_leg_usd18:
                return fitting, cap
            why = (
                f"quotes cover the minimum output only up to {format_usd18(cap)} USD in "
                f"({fitting.describe()}), below the minimum leg of {format_usd18(min_leg_usd18)} USD"
            )
            return skip(src, dst, value, SkipReason.LEG_UNFILLABLE, f"unfillable: {why}")
        if short is None and ranked:
            short = ranked[0]
    fit = fit_amount(quotes, pinned, src, dst, amount_in, params.slippage_bps, params.fit_margin_bps)
    if short is not None:
        if fit is not None and fit.amount_in is None and fit.quoted_out > 0:
            why = (
                f"quoted {fit.quoted_out} vs minimum {fit.floor} out for {fit.probe_in} in on {fit.venue} "
                f"({fit.shortfall_bps} bps short, the best of the sizes quoted), and no other pinned path fits"
            )
        else:
            why = f"no pinned path's quotes cover the minimum output at any size quoted (best {short.describe()})"
        return skip(src, dst, value, SkipReason.LEG_UNFILLABLE, f"unfillable: {why}")
    if fit is not None and fit.quoted_out == 0:
        why = f"every pinned venue's quote failed (no liquidity?), last {fit.venue} at {fit.probe_in} in"
        return skip(src, dst, value, SkipReason.LEG_UNFILLABLE, f"unfillable: {why}")
    _, _, closest = best_quote(quotes, pinned, src, dst, amount_in, dev)
    if closest is not None:
        return skip(
            src,
            dst,
            value,
            SkipReason.QUOTE_DEVIATION,
            f"the closest quote on a pinned venue is {float(closest):+.1f} bps from the oracle, beyond "
            f"max_quote_deviation_bps={dev} (pool manipulated or drained?), and no other pinned path quoted",
        )
    return skip(
        src,
        dst,
        value,
        SkipReason.NO_ROUTE,
        "no pinned path (direct, or two hops via a vault asset the batch does not buy) has a quote; "
        "not trading it blind (see keeper check)",
    )


def _path_covers(
    path: Path, quotes: Sequence[Quote], pinned: Sequence[PinnedVenue], params: PlannerParams
) -> bool:
    """Every step of the path, at its share of the path's input, is quoted to cover its floor
    with the fit margin (a second hop at the first's quoted output)."""
    hop_in = path.amount_in
    for hop in path.hops:
        fixed = 0
        out = 0
        for j, piece in enumerate(hop.pieces):
            part = hop_in - fixed if j == len(hop.pieces) - 1 else _times(hop_in, piece.share)
            fixed += part
            quoted = _quoted_at(quotes, pinned, hop.src, hop.dst, piece.route, part)
            floor = vault_min_out(
                part, hop.src.decimals, hop.src.price, hop.dst.decimals, hop.dst.price, params.slippage_bps
            )
            if part <= 0 or quoted is None or not covers(quoted, floor, params.fit_margin_bps):
                return False
            out += quoted
        hop_in = out
    return True


def _quoted_at(
    quotes: Sequence[Quote],
    pinned: Sequence[PinnedVenue],
    src: PlanAsset,
    dst: PlanAsset,
    route: Route,
    amount_in: int,
) -> int | None:
    """The venue's output at `amount_in`, read from its smallest probe at or above that size
    scaled down (the output per unit only falls with size, so this errs low; a failed or
    off-band probe there counts against it), else from its largest probe scaled up (no
    evidence against the larger size: scaled linearly, as fit.py does). None: not quoted."""
    probes = venue_probes(quotes, pinned, src, dst, (route.venue, route.router.lower(), route.fee))
    above = min((q for q in probes if q.amount_in >= amount_in), key=lambda q: q.amount_in, default=None)
    if above is not None:
        return scaled_out(above, amount_in) if above.amount_out else 0
    below = max(probes, key=lambda q: q.amount_in, default=None)
    if below is None or not below.amount_out:
        return None
    return scaled_out(below, amount_in)


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


def _path_upside(value: int, path: Path, params: PlannerParams) -> int:
    """The best fill of the whole path in bps above its oracle-implied output: each hop's best
    piece, compounded over the hops (an unquoted path: the slippage tolerance per hop)."""
    hop_in = tokens_for_usd18(value, path.hops[0].src.decimals, path.hops[0].src.price)
    num = den = 1  # the compounded factor, exactly
    for hop in path.hops:
        ups = []
        expected = 0
        for piece in hop.pieces:
            part = _times(hop_in, piece.share)
            implied = implied_amount_out(
                part, hop.src.decimals, hop.src.price, hop.dst.decimals, hop.dst.price
            )
            quoted = (
                scaled_out(piece.route.quote, part) if piece.route.quote is not None and part > 0 else None
            )
            ups.append(_upside(quoted, implied, params))
            expected += quoted if quoted is not None else implied
        num *= BPS + max(ups)
        den *= BPS
        hop_in = expected
    return -(-(num * BPS) // den) - BPS


def _leg_upside(leg: PlannedLeg, params: PlannerParams) -> int:
    return _upside(leg.quoted_out, leg.implied_out, params)


def _cap_steps(intents: list[_Intent], max_steps: int) -> tuple[list[_Intent], list[SkippedLeg]]:
    """Keep the largest legs when the vault's max_steps is below the step count (a split or
    two-hop leg takes more than one step)."""
    if sum(i.path.steps for i in intents) <= max_steps:
        return intents, []
    kept: list[_Intent] = []
    dropped: list[SkippedLeg] = []
    used = 0
    for i in sorted(intents, key=lambda i: -i.value_usd18):
        if used + i.path.steps <= max_steps:
            kept.append(i)
            used += i.path.steps
        else:
            dropped.append(
                skip(
                    i.src,
                    i.dst,
                    i.value_usd18,
                    SkipReason.MAX_STEPS,
                    f"vault allows {max_steps} steps per batch",
                )
            )
    return [i for i in intents if i in kept], dropped


# --- sizing -------------------------------------------------------------------------------


def round_half_even(num: int, den: int) -> int:
    """round(Fraction(num, den)) for den > 0, in integers: to the nearest, ties to even."""
    q, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and q % 2):
        q += 1
    return q


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
    # What each non-hub asset is sure to hold at this point of the batch: fixed inputs come off
    # it; a two-hop path's second hop keeps exactly this much of its intermediate.
    held = {a.symbol: a.balance for a in ctx.assets}

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
    sold = _keep_legs(
        ctx, [(i, _tokens(i.src, v)) for i, v in zip(sells, sell_values, strict=True)], dust, held
    )
    legs = [leg for _, group in sold for leg in group]
    legs += [
        leg
        for _, group in _keep_legs(
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
            held,
        )
        for leg in group
    ]
    if not buys:
        return tuple(legs), dust, notes

    into_hub = [leg for _, group in sold for leg in group if leg.symbol_out == hub.symbol]
    hub_in_lo = hub.balance + sum(leg.step.min_amount_out for leg in into_hub)
    # A step's floor rounds up (the vault's minimum): each step into the hub can deliver one
    # raw unit more than its best fill, which the KEEP step would pass on to its asset.
    hub_in_hi = hub.balance + sum(_best_out(intent, group, p) for intent, group in sold) + len(into_hub)
    hub_in_exp = hub.balance + sum(_expected_out(leg) for leg in into_hub)
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
    fixed_legs = [
        leg
        for _, group in _keep_legs(ctx, list(zip(fixed, fixed_amounts, strict=True)), dust, held)
        for leg in group
    ]
    legs += fixed_legs
    spent = sum(leg.amount_in for leg in fixed_legs if leg.symbol_in == hub.symbol)

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
        group, floorless = _legs(absorber, expected_in, p, held, keep=keep, min_in=min_in, ctx=ctx)
        value_in = sum(leg.value_in_usd18 for leg in group if leg.symbol_in == hub.symbol)
        # Like a fixed leg: nothing to spend, or a floor of zero (ZeroFloor), is no leg.
        if expected_in > 0 and min_in > 0 and not floorless and value_in >= ctx.dust_usd18:
            legs += group
        else:
            dust.append(skip(hub, absorber.dst, value_in, SkipReason.DUST, "too small after sizing"))
    else:
        notes.append(
            f"no KEEP step: {absorber.dst.symbol}'s deficit has no room for the sells' fill variance; "
            "buying it with a fixed amount"
        )
        legs += [
            leg
            for _, group in _keep_legs(
                ctx, [(absorber, min(cap, max(0, hub_in_lo - spent - keep_lo)))], dust, held
            )
            for leg in group
        ]
    return tuple(legs), dust, notes


def _keep_legs(
    ctx: _Context, sized: Sequence[tuple[_Intent, int]], dust: list[SkippedLeg], held: dict[str, int]
) -> list[tuple[_Intent, list[PlannedLeg]]]:
    """Fixed-amount legs (each one or more steps) that are worth trading; the rest go to `dust`
    with the reason. `held` is updated for what the kept steps are sure to spend."""
    kept: list[tuple[_Intent, list[PlannedLeg]]] = []
    for intent, amount_in in sized:
        group, floorless = (
            _legs(intent, amount_in, ctx.params, held, ctx=ctx) if amount_in > 0 else ([], True)
        )
        value_in = value_usd18(max(amount_in, 0), intent.src.decimals, intent.src.price)
        off_band = next(
            (
                leg
                for leg in group
                if leg.quoted_out is not None
                and not within(leg.quoted_out, leg.implied_out, ctx.params.max_quote_deviation_bps)
            ),
            None,
        )
        if amount_in <= 0 or floorless or value_in < ctx.dust_usd18:
            # A zero floor would hand the router a free option on the vault's tokens (ZeroFloor).
            dust.append(skip(intent.src, intent.dst, value_in, SkipReason.DUST, "too small after sizing"))
        elif off_band is not None:
            # The route was checked at full size; a scaled-down leg is re-checked at its own size.
            dust.append(
                skip(
                    intent.src,
                    intent.dst,
                    value_in,
                    SkipReason.QUOTE_DEVIATION,
                    f"quote {off_band.deviation_bps} bps from the oracle at the scaled-down size",
                )
            )
        else:
            for leg in group:
                if leg.keep is None and leg.symbol_in in held:
                    held[leg.symbol_in] -= leg.amount_in
            kept.append((intent, group))
    return kept


def _legs(
    intent: _Intent,
    amount_in: int,
    params: PlannerParams,
    held: Mapping[str, int],
    *,
    keep: int | None = None,
    min_in: int | None = None,
    ctx: _Context,
) -> tuple[list[PlannedLeg], bool]:
    """The steps of an intent spending `amount_in` (expected, when `keep` makes its first hop a
    KEEP step), and whether any step's floor would round to zero (ZeroFloor).

    A split hop's pieces take their shares; when the hop is a KEEP step, all pieces but the last
    are fixed shares of what is sure to be there (`min_in`) and the last spends the rest. A
    second hop is a KEEP step on the intermediate, keeping what it held before the first hop.
    """
    legs: list[PlannedLeg] = []
    floorless = False
    x_exp, x_min = amount_in, amount_in if min_in is None else min_in
    hop_keep = keep
    for n, hop in enumerate(intent.path.hops):
        if n > 0:
            hop_keep = held[hop.src.symbol]
        hop_legs: list[PlannedLeg] = []
        fixed = 0
        for j, piece in enumerate(hop.pieces):
            last = j == len(hop.pieces) - 1
            if hop_keep is not None and last:
                leg_min_in = x_min - fixed
                hop_legs.append(
                    _step_leg(
                        intent, hop, piece.route, x_exp - fixed, params, keep=hop_keep, min_in=leg_min_in
                    )
                )
            else:
                base = x_exp if hop_keep is None else x_min
                part = base - fixed if last else _times(base, piece.share)
                leg_min_in = part
                hop_legs.append(_step_leg(intent, hop, piece.route, part, params))
                fixed += part
            floorless = (
                floorless
                or leg_min_in <= 0
                or zero_floor(
                    leg_min_in,
                    hop.src.decimals,
                    hop.src.price,
                    hop.dst.decimals,
                    hop.dst.price,
                    ctx.rule_limits.max_slippage_bps,
                )
            )
        legs += hop_legs
        x_exp = sum(_expected_out(leg) for leg in hop_legs)
        x_min = sum(leg.step.min_amount_out for leg in hop_legs)
    return legs, floorless


def _best_out(intent: _Intent, group: Sequence[PlannedLeg], params: PlannerParams) -> int:
    """The most the intent's last hop can deliver at the best fills the planner allows."""
    best = 0
    for n, hop in enumerate(intent.path.hops):
        hop_legs = [
            leg for leg in group if leg.symbol_in == hop.src.symbol and leg.symbol_out == hop.dst.symbol
        ]
        if n == 0:
            best = sum(leg.implied_out * (BPS + _leg_upside(leg, params)) // BPS for leg in hop_legs)
        else:
            up = max((_leg_upside(leg, params) for leg in hop_legs), default=params.slippage_bps)
            implied = implied_amount_out(
                best, hop.src.decimals, hop.src.price, hop.dst.decimals, hop.dst.price
            )
            best = implied * (BPS + up) // BPS
    return best


def _step_leg(
    intent: _Intent,
    hop: Hop,
    route: Route,
    amount_in: int,
    params: PlannerParams,
    *,
    keep: int | None = None,
    min_in: int | None = None,
) -> PlannedLeg:
    """A step spending `amount_in` (expected, for a KEEP step); its floor is taken at the least
    a KEEP step can spend (`min_in`), as the vault enforces its own floor on the actual input."""
    src, dst = hop.src, hop.dst
    implied = implied_amount_out(amount_in, src.decimals, src.price, dst.decimals, dst.price)
    quoted_out: int | None = None
    deviation: Decimal | None = None
    if route.quote is not None and amount_in > 0:
        quoted_out = scaled_out(route.quote, amount_in)
        if implied > 0:
            # Exact to 0.01 bps; Decimal division would trap on a wild quote.
            deviation = Decimal(round_half_even((quoted_out - implied) * BPS * 100, implied)).scaleb(-2)
    floor_in = amount_in if min_in is None else min_in
    step = Step(
        venue=route.venue,
        router=route.router,
        token_in=src.token,
        token_out=dst.token,
        fee=route.fee,
        amount_in=amount_in if keep is None else KEEP_FLAG + keep,
        min_amount_out=vault_min_out(
            max(floor_in, 0), src.decimals, src.price, dst.decimals, dst.price, params.slippage_bps
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
        asset=intent.src.symbol if intent.kind is LegKind.SELL_TO_HUB else intent.dst.symbol,
    )


def _expected_out(leg: PlannedLeg) -> int:
    return leg.quoted_out if leg.quoted_out is not None else leg.implied_out


# --- checking -----------------------------------------------------------------------------


def _worst_case(ctx: _Context, legs: Sequence[PlannedLeg]) -> Worst | Violation:
    """The vault's rules at every corner of the execution box: the first violation, or the
    worst drift, value and loss over all corners (keeper/vault_rules.py's `worst_corner`
    answers that without replaying every corner)."""
    rule_assets = [
        RuleAsset(a.symbol, a.token, a.decimals, a.price, a.balance, a.target_bps) for a in ctx.assets
    ]
    symbols_of = {a.token.lower(): a.symbol for a in ctx.assets}
    steps = [leg.step for leg in legs]
    upside = [_leg_upside(leg, ctx.params) for leg in legs]
    n = len(steps)
    if n <= ctx.params.max_vertex_legs:
        return worst_corner(
            rule_assets,
            steps,
            ctx.rule_limits,
            upside_bps=upside,
            symbols_of=symbols_of,
            exact_drift=ctx.params.exact_worst_drift,
        )
    # too many corners to enumerate: the two uniform extremes
    executions = replay_corners(
        rule_assets,
        steps,
        [(False,) * n, (True,) * n],
        ctx.rule_limits,
        upside_bps=upside,
        symbols_of=symbols_of,
    )
    if isinstance(executions, Violation):
        return executions  # the first corner, in this order, the vault would revert
    return Worst(
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
