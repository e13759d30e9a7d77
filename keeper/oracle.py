"""Chainlink-style price validation: round data + now -> ValidPrice or PriceRejection (pure).

Every function here is total: any integers in a FeedRound give a result, never an exception,
because a feed is adversarial input (a shut-down feed reverts, a broken one answers zero).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from keeper.model import (
    AssetConfig,
    AssetState,
    FeedRound,
    PriceRejection,
    PriceResult,
    RejectionReason,
    SequencerUp,
    Snapshot,
    ValidPrice,
    scaled_decimal,
)

SEQUENCER = "L2_SEQUENCER"


@dataclass(frozen=True, slots=True)
class OracleRules:
    """Keeper-side validation knobs.

    `staleness_margin_s` is added to each feed's own heartbeat. It may be negative, and in
    production it should be: the vault re-checks `now - updatedAt <= heartbeat` when the
    transaction lands, some seconds after the snapshot, so a negative margin keeps the
    keeper from planning on a price that will be stale by then.
    """

    staleness_margin_s: int = 0
    require_sequencer: bool = False
    sequencer_grace_period_s: int = 3600


def _reject(symbol: str, reason: RejectionReason, message: str) -> PriceRejection:
    return PriceRejection(symbol=symbol, reason=reason, message=message)


def _fmt_usd(answer: int, decimals: int) -> str:
    return f"{scaled_decimal(answer, decimals):f}"


def validate_price(rnd: FeedRound, cfg: AssetConfig, now_s: int, rules: OracleRules) -> PriceResult:
    """Check one feed round against the asset's config; the first failed check wins."""
    sym = cfg.symbol
    if not rnd.call_ok:
        return _reject(
            sym,
            RejectionReason.CALL_REVERTED,
            f"{sym}: latestRoundData() on feed {cfg.feed} reverted (feed shut down?); not trading it",
        )
    # Checked before any arithmetic on the answer: a decimals change re-scales every price.
    if rnd.decimals != cfg.feed_decimals:
        return _reject(
            sym,
            RejectionReason.DECIMALS_MISMATCH,
            f"{sym}: feed {cfg.feed} reports {rnd.decimals} decimals but {cfg.feed_decimals} are "
            "configured; the feed changed, review it and update feed_decimals",
        )
    if rnd.answer <= 0:
        return _reject(sym, RejectionReason.NON_POSITIVE_ANSWER, f"{sym}: feed answer {rnd.answer} <= 0")
    if rnd.updated_at <= 0:  # 0 on chain; negative only from a broken decoder or simulator
        return _reject(
            sym,
            RejectionReason.NEVER_UPDATED,
            f"{sym}: feed updatedAt is {rnd.updated_at} (round not complete)",
        )
    if rnd.updated_at > now_s:
        return _reject(
            sym,
            RejectionReason.FUTURE_TIMESTAMP,
            f"{sym}: feed updatedAt {rnd.updated_at} is after now {now_s}",
        )
    age_s = now_s - rnd.updated_at
    max_age_s = cfg.heartbeat_s + rules.staleness_margin_s
    if age_s > max_age_s:
        return _reject(
            sym,
            RejectionReason.STALE,
            f"{sym}: price is {age_s}s old, more than heartbeat {cfg.heartbeat_s}s "
            f"+ margin {rules.staleness_margin_s}s",
        )
    # Exact comparison: answer / 10**decimals against the configured Decimal bounds.
    if cfg.min_price_usd is not None and _versus(rnd.answer, rnd.decimals, cfg.min_price_usd) < 0:
        return _reject(
            sym,
            RejectionReason.BELOW_MIN_PRICE,
            f"{sym}: price {_fmt_usd(rnd.answer, rnd.decimals)} USD below configured min "
            f"{cfg.min_price_usd} (capped or broken feed?)",
        )
    if cfg.max_price_usd is not None and _versus(rnd.answer, rnd.decimals, cfg.max_price_usd) > 0:
        return _reject(
            sym,
            RejectionReason.ABOVE_MAX_PRICE,
            f"{sym}: price {_fmt_usd(rnd.answer, rnd.decimals)} USD above configured max {cfg.max_price_usd}",
        )
    return ValidPrice(
        symbol=sym,
        answer=rnd.answer,
        decimals=rnd.decimals,
        updated_at=rnd.updated_at,
        round_id=rnd.round_id,
    )


def _versus(answer: int, decimals: int, bound: Decimal) -> int:
    """The sign of answer / 10**decimals - bound, exactly (the bound as its integer ratio)."""
    num, den = bound.as_integer_ratio()
    diff: int = answer * den - num * 10**decimals
    return (diff > 0) - (diff < 0)


def validate_sequencer(rnd: FeedRound, now_s: int, grace_period_s: int) -> SequencerUp | PriceRejection:
    """L2 sequencer uptime feed: answer 0 = up, 1 = down; `started_at` is when status changed.

    After a restart prices may be stale-but-fresh-looking, so require the sequencer to have
    been up for strictly more than the grace period.
    """
    sym = SEQUENCER
    if not rnd.call_ok:
        return _reject(sym, RejectionReason.SEQUENCER_CALL_REVERTED, "sequencer uptime feed call reverted")
    if rnd.answer == 1:
        return _reject(sym, RejectionReason.SEQUENCER_DOWN, f"L2 sequencer is down (since {rnd.started_at})")
    if rnd.answer != 0:
        return _reject(
            sym,
            RejectionReason.SEQUENCER_BAD_STATUS,
            f"sequencer feed answered {rnd.answer}, expected 0 or 1",
        )
    # started_at == 0 marks an invalid round on some L2s; in the future is equally unusable.
    if rnd.started_at <= 0 or rnd.started_at > now_s:
        return _reject(
            sym,
            RejectionReason.SEQUENCER_BAD_STATUS,
            f"sequencer feed startedAt {rnd.started_at} is invalid at now {now_s}",
        )
    up_for_s = now_s - rnd.started_at
    if up_for_s <= grace_period_s:
        return _reject(
            sym,
            RejectionReason.SEQUENCER_GRACE_PERIOD,
            f"L2 sequencer up for {up_for_s}s, inside the {grace_period_s}s grace period",
        )
    return SequencerUp(up_since_s=rnd.started_at)


def validate_assets(
    assets: Iterable[AssetState],
    now_s: int,
    rules: OracleRules,
    sequencer: FeedRound | None = None,
) -> dict[str, PriceResult]:
    """Validate every asset's feed; a bad sequencer rejects all of them (every price is suspect)."""
    assets = tuple(assets)
    seq_problem: PriceRejection | None = None
    if sequencer is not None:
        seq = validate_sequencer(sequencer, now_s, rules.sequencer_grace_period_s)
        if isinstance(seq, PriceRejection):
            seq_problem = seq
    elif rules.require_sequencer:
        seq_problem = _reject(
            SEQUENCER,
            RejectionReason.SEQUENCER_MISSING,
            "rules require an L2 sequencer uptime feed but the snapshot has none; configure its address",
        )
    if seq_problem is not None:
        return {
            a.symbol: _reject(a.symbol, seq_problem.reason, f"{a.symbol}: {seq_problem.message}")
            for a in assets
        }
    return {a.symbol: validate_price(a.round, a.config, now_s, rules) for a in assets}


def validate_snapshot(snapshot: Snapshot, rules: OracleRules) -> dict[str, PriceResult]:
    """`validate_assets` at the snapshot's own block time (the vault checks against block time)."""
    return validate_assets(snapshot.assets, snapshot.timestamp, rules, snapshot.sequencer)


def split_results(
    results: dict[str, PriceResult],
) -> tuple[dict[str, ValidPrice], dict[str, PriceRejection]]:
    valid = {s: r for s, r in results.items() if isinstance(r, ValidPrice)}
    rejected = {s: r for s, r in results.items() if isinstance(r, PriceRejection)}
    return valid, rejected
