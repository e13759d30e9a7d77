"""Target weights -> the netted swap batch, with oracle-derived minimum outputs (pure).

Routing. Every asset other than the hub (the quote asset) trades at most once, and in one
direction: assets over target sell their excess to the hub, the hub buys each under-target
asset's deficit. That is at most N-1 swaps and its turnover is the minimum possible, half the
sum of |value - target value| (the hub's own difference nets out between the two sides). A
seller and a buyer are swapped directly instead, one leg in place of two, only when the
seller's excess and the buyer's deficit match to within `min_trade_usd` (the residue is dust
that would not be traded anyway) and a direct quote beats the route through the hub. Any
other direct pairing would make an asset trade twice.

Hub-leg sizing. Sells run before buys in the batch, and the vault only guarantees each sell's
`min_amount_out`. Buys are sized at oracle value and then, if needed, scaled down pro rata so
their total `amount_in` never exceeds the hub balance plus the sells' *minimum* outputs: no
buy can fail for lack of hub tokens whatever the execution within tolerance. The hub then
ends slightly over target in the worst case, which the drift check below accounts for.

Never asking the vault to revert. The vault reverts if its drift after the batch exceeds the
drift before (both at the oracle prices it read at the start) or if value falls below
`before * (1 - max_loss)`. The planner replays both guards with the vault's integer math for
every execution it allows: each leg's output anywhere between `min_amount_out` and
`implied * (1 + max_quote_deviation)`. Drift after is a ratio of a convex function of the
outputs to a positive affine one (quasiconvex), so up to the vault's own floor divisions its
maximum over that box is at a corner; the planner
checks every corner (2**legs, all of them up to `max_vertex_legs`). If a guard could fail,
all legs are halved and checked again; if that never passes, the plan is refused.

Prices. The vault reads every feed in `rebalance()`, so one rejected price, even of an asset
the plan would not touch, means the vault cannot value itself and would revert: refuse all.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from keeper.model import (
    BPS,
    USD18,
    V3_FEE_TIERS,
    Address,
    LegKind,
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
    Venue,
)
from keeper.portfolio import (
    implied_amount_out,
    min_amount_out,
    tokens_for_usd18,
    value_usd18,
    vault_drift_bps,
)


@dataclass(frozen=True, slots=True)
class PlannerParams:
    slippage_bps: int  # keeper tolerance for min_amount_out; must be <= the vault's max
    max_quote_deviation_bps: int  # skip a leg whose best quote is further than this from oracle
    min_trade_usd: Decimal  # legs worth less are dust
    default_v3_router: Address | None = None  # route for hub legs without any quote
    allow_direct: bool = True
    max_shrink_rounds: int = 6
    max_vertex_legs: int = 12


@dataclass(frozen=True, slots=True)
class _Asset:
    symbol: str
    token: Address
    decimals: int
    price: ValidPrice
    balance: int
    pool_fee: int


@dataclass(frozen=True, slots=True)
class _Route:
    venue: Venue
    router: Address
    fee: int
    quote: Quote | None


@dataclass(frozen=True, slots=True)
class _Intent:
    """A leg chosen at full size; amounts are derived per shrink round from `value_usd18`."""

    kind: LegKind
    src: _Asset
    dst: _Asset
    value_usd18: int
    route: _Route


@dataclass(frozen=True, slots=True)
class _Outcome:
    worst_drift_bps: int
    expected_drift_bps: int
    worst_value_usd18: int


def plan(
    snapshot: Snapshot,
    prices: Mapping[str, PriceResult],
    target_weights_bps: Mapping[str, int],
    params: PlannerParams,
) -> Plan:
    """Plan the batch that moves `snapshot`'s vault to `target_weights_bps` at oracle prices."""
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

    assets = [
        _Asset(
            a.symbol,
            a.config.token,
            a.config.decimals,
            _valid(prices[a.symbol]),
            a.balance,
            a.config.pool_fee,
        )
        for a in snapshot.assets
    ]
    config_targets = [a.config.target_bps for a in snapshot.assets]
    values = [value_usd18(a.balance, a.decimals, a.price) for a in assets]
    total = sum(values)
    drift_before = vault_drift_bps(values, config_targets)
    if total <= 0:
        return _refused(RefusalCode.EMPTY_VAULT, "vault holds no value", drift_before=drift_before)

    # Signed difference to the decision's target value: > 0 is excess to sell.
    diffs = {
        a.symbol: v - total * target_weights_bps[a.symbol] // BPS for a, v in zip(assets, values, strict=True)
    }
    min_turnover = sum(abs(d) for d in diffs.values()) // 2
    hub = next(a for a in assets if a.symbol == snapshot.quote_symbol)
    dust_usd18 = int(params.min_trade_usd * USD18)
    intents, skipped = _choose_intents(assets, hub, diffs, snapshot.quotes, params, dust_usd18)
    intents, capped = _cap_steps(intents, limits.max_steps)
    skipped += capped

    min_value_after = total * (BPS - limits.max_loss_bps) // BPS  # the vault's ValueLoss floor
    guards = _Guards(tuple(config_targets), drift_before, min_value_after, total, min_turnover)
    return _fit_to_guards(assets, hub, intents, skipped, guards, params, dust_usd18)


@dataclass(frozen=True, slots=True)
class _Guards:
    """What the vault judges the batch against, computed before it (vault targets, not the decision's)."""

    config_targets_bps: tuple[int, ...]
    drift_before_bps: int
    min_value_after_usd18: int
    value_before_usd18: int
    min_turnover_usd18: int

    def pass_(self, outcome: _Outcome) -> bool:
        return (
            outcome.worst_drift_bps <= self.drift_before_bps
            and outcome.worst_value_usd18 >= self.min_value_after_usd18
        )


def _fit_to_guards(
    assets: Sequence[_Asset],
    hub: _Asset,
    intents: Sequence[_Intent],
    skipped: list[SkippedLeg],
    guards: _Guards,
    params: PlannerParams,
    dust_usd18: int,
) -> Plan:
    """The largest of full, 1/2, 1/4... size whose every allowed execution passes the vault's guards."""
    base = {a.symbol: a.balance for a in assets}
    scale = Fraction(1)
    full_size: _Outcome | None = None
    for _ in range(params.max_shrink_rounds + 1):
        legs, dust, hub_note = _materialise(intents, scale, hub, params, dust_usd18)
        outcome = _replay(assets, base, legs, guards.config_targets_bps, params)
        # Shrinking until every leg is dust is no fix: that case is refused below.
        if guards.pass_(outcome) and (legs or scale == 1):
            scaled = None if scale == 1 else f"legs scaled to {scale} of full size to pass the vault guards"
            return Plan(
                legs=legs,
                skipped=tuple(skipped + dust),
                turnover_usd18=_turnover(legs),
                min_turnover_usd18=guards.min_turnover_usd18,
                value_before_usd18=guards.value_before_usd18,
                worst_value_after_usd18=outcome.worst_value_usd18,
                drift_before_bps=guards.drift_before_bps,
                expected_drift_bps=outcome.expected_drift_bps,
                worst_drift_bps=outcome.worst_drift_bps,
                notes=tuple(n for n in (hub_note, scaled) if n is not None),
            )
        full_size = full_size or outcome
        scale /= 2
    assert full_size is not None  # the loop runs at least once
    if full_size.worst_drift_bps > guards.drift_before_bps:
        code = RefusalCode.DRIFT_WOULD_INCREASE
        why = f"worst-case drift after {full_size.worst_drift_bps} bps > before {guards.drift_before_bps} bps"
    else:
        code = RefusalCode.VALUE_LOSS_OVER_LIMIT
        why = (
            f"worst-case value after {full_size.worst_value_usd18} < the vault's floor "
            f"{guards.min_value_after_usd18}; lower slippage_bps or raise the vault's max_loss_bps"
        )
    return _refused(
        code,
        f"{why} at full size, and batches down to {scale * 2} of it failed too or were dust; "
        "not asking the vault to revert",
        drift_before=guards.drift_before_bps,
        value_before=guards.value_before_usd18,
        min_turnover=guards.min_turnover_usd18,
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
    assets: Sequence[_Asset],
    hub: _Asset,
    diffs: Mapping[str, int],
    quotes: Sequence[Quote],
    params: PlannerParams,
    dust_usd18: int,
) -> tuple[list[_Intent], list[SkippedLeg]]:
    sellers = sorted(
        (a for a in assets if a is not hub and diffs[a.symbol] > 0), key=lambda a: -diffs[a.symbol]
    )
    buyers = [a for a in assets if a is not hub and diffs[a.symbol] < 0]
    intents: list[_Intent] = []
    skipped: list[SkippedLeg] = []

    paired: set[str] = set()
    if params.allow_direct:
        for s in sellers:
            for b in sorted(buyers, key=lambda b: abs(diffs[s.symbol] + diffs[b.symbol])):
                if b.symbol in paired or abs(diffs[s.symbol] + diffs[b.symbol]) >= max(dust_usd18, 1):
                    continue
                value = min(diffs[s.symbol], -diffs[b.symbol])
                direct = _direct_route(s, b, hub, value, quotes, params)
                if direct is not None and value >= dust_usd18:
                    intents.append(_Intent(LegKind.DIRECT, s, b, value, direct))
                    paired.update((s.symbol, b.symbol))
                    break

    for kind, src, dst, value in [
        *((LegKind.SELL_TO_HUB, s, hub, diffs[s.symbol]) for s in sellers if s.symbol not in paired),
        *((LegKind.BUY_FROM_HUB, hub, b, -diffs[b.symbol]) for b in buyers if b.symbol not in paired),
    ]:
        if value < dust_usd18 or value <= 0:
            skipped.append(
                _skip(src, dst, value, SkipReason.DUST, f"worth less than {params.min_trade_usd} USD")
            )
            continue
        route = _hub_route(src, dst, hub, value, quotes, params)
        if isinstance(route, SkippedLeg):
            skipped.append(route)
        else:
            intents.append(_Intent(kind, src, dst, value, route))
    return intents, skipped


def _cap_steps(intents: list[_Intent], max_steps: int) -> tuple[list[_Intent], list[SkippedLeg]]:
    """Keep the largest legs when the vault's max_steps is below the leg count."""
    if len(intents) <= max_steps:
        return intents, []
    ranked = sorted(intents, key=lambda i: -i.value_usd18)
    dropped = [
        _skip(i.src, i.dst, i.value_usd18, SkipReason.MAX_STEPS, f"vault allows {max_steps} steps per batch")
        for i in ranked[max_steps:]
    ]
    return [i for i in intents if i in ranked[:max_steps]], dropped


def _skip(src: _Asset, dst: _Asset, value: int, reason: SkipReason, message: str) -> SkippedLeg:
    return SkippedLeg(src.symbol, dst.symbol, value, reason, f"{src.symbol}->{dst.symbol}: {message}")


def _best_quote(
    quotes: Sequence[Quote], src: _Asset, dst: _Asset, amount_in: int, params: PlannerParams
) -> tuple[Quote | None, int, Fraction | None]:
    """(best in-bound quote, its output scaled to amount_in, the deviation closest to the oracle
    in bps among all usable quotes, None when there are none).

    Per venue/fee, the probe nearest to `amount_in` is used and scaled linearly; the best of
    those whose price is within `max_quote_deviation_bps` of the oracle wins.
    """
    t_in, t_out = src.token.lower(), dst.token.lower()
    nearest: dict[tuple[Venue, str, int], Quote] = {}
    for q in quotes:
        if (
            q.token_in.lower() != t_in
            or q.token_out.lower() != t_out
            or q.amount_out is None
            or q.amount_in <= 0
        ):
            continue
        if q.venue is Venue.V3 and q.fee not in V3_FEE_TIERS:
            continue  # the vault would revert the step with BadFeeTier
        key = (q.venue, q.router.lower(), q.fee)
        held = nearest.get(key)
        if held is None or abs(q.amount_in - amount_in) < abs(held.amount_in - amount_in):
            nearest[key] = q
    implied = implied_amount_out(amount_in, src.decimals, src.price, dst.decimals, dst.price)
    best: Quote | None = None
    best_out = 0
    closest: Fraction | None = None
    for q in nearest.values():
        out = _scaled_out(q, amount_in)
        if implied > 0:
            dev = Fraction((out - implied) * BPS, implied)
            closest = dev if closest is None or abs(dev) < abs(closest) else closest
        if _within(out, implied, params.max_quote_deviation_bps) and (best is None or out > best_out):
            best, best_out = q, out
    return best, best_out, closest if nearest else None


def _scaled_out(q: Quote, amount_in: int) -> int:
    assert q.amount_out is not None and q.amount_in > 0
    return q.amount_out * amount_in // q.amount_in


def _within(out: int, implied: int, max_dev_bps: int) -> bool:
    return implied > 0 and abs(out - implied) * BPS <= max_dev_bps * implied


def _route_of(q: Quote) -> _Route:
    # The vault rejects a non-zero fee on a V2 step (BadFeeTier).
    return _Route(q.venue, q.router, 0 if q.venue is Venue.V2 else q.fee, q)


def _hub_route(
    src: _Asset, dst: _Asset, hub: _Asset, value: int, quotes: Sequence[Quote], params: PlannerParams
) -> _Route | SkippedLeg:
    amount_in = tokens_for_usd18(value, src.decimals, src.price)
    best, _, closest = _best_quote(quotes, src, dst, amount_in, params)
    if best is not None:
        return _route_of(best)
    if closest is not None:
        return _skip(
            src,
            dst,
            value,
            SkipReason.QUOTE_DEVIATION,
            f"the closest quote is {float(closest):+.1f} bps from the oracle, beyond "
            f"max_quote_deviation_bps={params.max_quote_deviation_bps} (pool manipulated or drained?)",
        )
    if params.default_v3_router is None:
        return _skip(src, dst, value, SkipReason.NO_ROUTE, "no quote and no default_v3_router configured")
    other = dst if src is hub else src
    return _Route(Venue.V3, params.default_v3_router, other.pool_fee, None)


def _direct_route(
    src: _Asset, dst: _Asset, hub: _Asset, value: int, quotes: Sequence[Quote], params: PlannerParams
) -> _Route | None:
    """A direct route if a sane direct quote exists and beats seller->hub->buyer.

    An unquoted hub path cannot be compared; the quoted direct leg is preferred then, as it
    also pays the slippage tolerance once instead of twice.
    """
    amount_in = tokens_for_usd18(value, src.decimals, src.price)
    direct, direct_out, _ = _best_quote(quotes, src, dst, amount_in, params)
    if direct is None:
        return None
    to_hub, hub_out, _ = _best_quote(quotes, src, hub, amount_in, params)
    if to_hub is not None:
        from_hub, via_out, _ = _best_quote(quotes, hub, dst, hub_out, params)
        if from_hub is not None and via_out > direct_out:
            return None
    return _route_of(direct)


# --- sizing and checking ------------------------------------------------------------------


def _materialise(
    intents: Sequence[_Intent],
    scale: Fraction,
    hub: _Asset,
    params: PlannerParams,
    dust_usd18: int,
) -> tuple[tuple[PlannedLeg, ...], list[SkippedLeg], str | None]:
    """Amounts for each intent at `scale`, buys fitted to the worst-case hub balance, in order."""
    sized = [
        (
            i,
            tokens_for_usd18(
                i.value_usd18 * scale.numerator // scale.denominator, i.src.decimals, i.src.price
            ),
        )
        for i in intents
    ]
    sells = [(i, a) for i, a in sized if i.kind is LegKind.SELL_TO_HUB]
    directs = [(i, a) for i, a in sized if i.kind is LegKind.DIRECT]
    buys = [(i, a) for i, a in sized if i.kind is LegKind.BUY_FROM_HUB]

    legs: list[PlannedLeg] = []
    dust: list[SkippedLeg] = []  # legs dropped at this size: dust, or a quote no longer in bounds

    def add(batch: Sequence[tuple[_Intent, int]]) -> None:
        for intent, amount_in in batch:
            leg = _leg(intent, amount_in, params)
            if amount_in <= 0 or leg.step.min_amount_out <= 0 or leg.value_in_usd18 < dust_usd18:
                # A zero minimum would hand the router a free option on the vault's tokens.
                dust.append(
                    _skip(
                        intent.src, intent.dst, leg.value_in_usd18, SkipReason.DUST, "too small after sizing"
                    )
                )
            elif leg.quoted_out is not None and not _within(
                leg.quoted_out, leg.implied_out, params.max_quote_deviation_bps
            ):
                # The route was checked at full size; a scaled-down leg is re-checked at its own size.
                dust.append(
                    _skip(
                        intent.src,
                        intent.dst,
                        leg.value_in_usd18,
                        SkipReason.QUOTE_DEVIATION,
                        f"quote {leg.deviation_bps} bps from the oracle at the scaled-down size",
                    )
                )
            else:
                legs.append(leg)

    add(sells)
    add(directs)
    available = hub.balance + sum(leg.step.min_amount_out for leg in legs if leg.kind is LegKind.SELL_TO_HUB)
    needed = sum(a for _, a in buys)
    note = None
    if needed > available:
        buys = [(i, a * available // needed) for i, a in buys]
        note = (
            f"buys scaled to {available}/{needed} of size: the hub holds that much even at sells' min output"
        )
    add(buys)
    return tuple(legs), dust, note


def _leg(intent: _Intent, amount_in: int, params: PlannerParams) -> PlannedLeg:
    src, dst, route = intent.src, intent.dst, intent.route
    implied = implied_amount_out(amount_in, src.decimals, src.price, dst.decimals, dst.price)
    quoted_out: int | None = None
    deviation: Decimal | None = None
    if route.quote is not None:
        quoted_out = _scaled_out(route.quote, amount_in)
        if implied > 0:
            # Exact to 0.01 bps; Decimal division would trap on a wild quote.
            deviation = Decimal(round(Fraction((quoted_out - implied) * BPS * 100, implied))).scaleb(-2)
    step = Step(
        venue=route.venue,
        router=route.router,
        token_in=src.token,
        token_out=dst.token,
        fee=route.fee,
        amount_in=amount_in,
        min_amount_out=min_amount_out(implied, params.slippage_bps),
    )
    return PlannedLeg(
        kind=intent.kind,
        step=step,
        symbol_in=src.symbol,
        symbol_out=dst.symbol,
        value_in_usd18=value_usd18(amount_in, src.decimals, src.price),
        implied_out=implied,
        price_in=src.price,
        price_out=dst.price,
        decimals_out=dst.decimals,
        quote=route.quote,
        quoted_out=quoted_out,
        deviation_bps=deviation,
    )


def _replay(
    assets: Sequence[_Asset],
    base: Mapping[str, int],
    legs: Sequence[PlannedLeg],
    targets: Sequence[int],
    params: PlannerParams,
) -> _Outcome:
    """The vault's post-batch drift and value at the corners of the allowed execution box."""
    after_in = dict(base)
    for leg in legs:
        after_in[leg.symbol_in] -= leg.step.amount_in

    def state(outs: Sequence[int]) -> tuple[int, int]:
        bal = dict(after_in)
        for leg, out in zip(legs, outs, strict=True):
            bal[leg.symbol_out] += out
        values = [value_usd18(bal[a.symbol], a.decimals, a.price) for a in assets]
        return vault_drift_bps(values, targets), sum(values)

    lows = [leg.step.min_amount_out for leg in legs]
    highs = [leg.implied_out * (BPS + params.max_quote_deviation_bps) // BPS for leg in legs]
    if len(legs) <= params.max_vertex_legs:
        corners: list[Sequence[int]] = [list(c) for c in itertools.product(*zip(lows, highs, strict=True))]
    else:  # too many corners to enumerate: the two uniform extremes
        corners = [lows, highs]
    worst_drift = max(state(c)[0] for c in corners)
    expected_drift, _ = state([leg.implied_out for leg in legs])
    _, worst_value = state(lows)  # value rises with every output, so all-minimum is the floor
    return _Outcome(worst_drift, expected_drift, worst_value)


def _turnover(legs: Sequence[PlannedLeg]) -> int:
    """Half the sum over assets of |value change| at oracle prices: hub legs count once."""
    delta: dict[str, int] = {}
    for leg in legs:
        delta[leg.symbol_in] = delta.get(leg.symbol_in, 0) - leg.value_in_usd18
        out_value = value_usd18(leg.implied_out, leg.decimals_out, leg.price_out)
        delta[leg.symbol_out] = delta.get(leg.symbol_out, 0) + out_value
    return sum(abs(d) for d in delta.values()) // 2
