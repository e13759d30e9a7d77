"""Price and sequencer validation: each rejection at its boundary, and totality."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from keeper_builders import NOW, config

from keeper.model import AssetState, FeedRound, PriceRejection, RejectionReason, SequencerUp, ValidPrice
from keeper.oracle import OracleRules, validate_assets, validate_price, validate_sequencer

CFG = config(
    "WETH", feed_decimals=8, heartbeat_s=3600, min_price_usd=Decimal(100), max_price_usd=Decimal(100_000)
)
RULES = OracleRules(staleness_margin_s=60)
GOOD = FeedRound(round_id=7, answer=2000_00000000, started_at=NOW - 10, updated_at=NOW - 10, decimals=8)


def rnd(**changes: int | bool) -> FeedRound:
    fields = {
        "round_id": GOOD.round_id,
        "answer": GOOD.answer,
        "started_at": GOOD.started_at,
        "updated_at": GOOD.updated_at,
        "decimals": GOOD.decimals,
        "call_ok": GOOD.call_ok,
    }
    fields.update(changes)
    return FeedRound(**fields)  # type: ignore[arg-type]


def reason(result: ValidPrice | PriceRejection) -> RejectionReason | None:
    return result.reason if isinstance(result, PriceRejection) else None


def test_good_round_gives_exact_price() -> None:
    result = validate_price(GOOD, CFG, NOW, RULES)
    assert isinstance(result, ValidPrice)
    assert result.usd == Decimal("2000")
    assert (result.answer, result.decimals, result.updated_at, result.round_id) == (
        2000_00000000,
        8,
        NOW - 10,
        7,
    )


def test_reverted_call_is_rejected() -> None:
    assert reason(validate_price(FeedRound.reverted(), CFG, NOW, RULES)) is RejectionReason.CALL_REVERTED


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(1, None), (0, RejectionReason.NON_POSITIVE_ANSWER), (-1, RejectionReason.NON_POSITIVE_ANSWER)],
)
def test_answer_must_be_positive(answer: int, expected: RejectionReason | None) -> None:
    cfg = config("X", feed_decimals=8)  # no bounds, so 1 wei of answer is fine
    assert reason(validate_price(rnd(answer=answer), cfg, NOW, RULES)) is expected


@pytest.mark.parametrize("updated_at", [0, -1])
def test_updated_at_zero_is_never_updated(updated_at: int) -> None:
    assert (
        reason(validate_price(rnd(updated_at=updated_at), CFG, NOW, RULES)) is RejectionReason.NEVER_UPDATED
    )


def test_updated_at_in_future_boundary() -> None:
    assert reason(validate_price(rnd(updated_at=NOW), CFG, NOW, RULES)) is None
    assert (
        reason(validate_price(rnd(updated_at=NOW + 1), CFG, NOW, RULES)) is RejectionReason.FUTURE_TIMESTAMP
    )


@pytest.mark.parametrize("margin", [0, 60, -600])
def test_staleness_boundary_is_heartbeat_plus_margin(margin: int) -> None:
    rules = OracleRules(staleness_margin_s=margin)
    edge = NOW - (CFG.heartbeat_s + margin)
    assert reason(validate_price(rnd(updated_at=edge), CFG, NOW, rules)) is None
    result = validate_price(rnd(updated_at=edge - 1), CFG, NOW, rules)
    assert reason(result) is RejectionReason.STALE
    assert isinstance(result, PriceRejection)
    assert "heartbeat 3600s" in result.message


def test_staleness_uses_each_feeds_own_heartbeat() -> None:
    fast = config("USDC", feed_decimals=8, heartbeat_s=60)
    assert reason(validate_price(rnd(updated_at=NOW - 61), fast, NOW, OracleRules())) is RejectionReason.STALE
    assert reason(validate_price(rnd(updated_at=NOW - 61), CFG, NOW, OracleRules())) is None


def test_price_bounds_are_inclusive() -> None:
    assert reason(validate_price(rnd(answer=100_00000000), CFG, NOW, RULES)) is None
    assert (
        reason(validate_price(rnd(answer=100_00000000 - 1), CFG, NOW, RULES))
        is RejectionReason.BELOW_MIN_PRICE
    )
    assert reason(validate_price(rnd(answer=100_000_00000000), CFG, NOW, RULES)) is None
    over = validate_price(rnd(answer=100_000_00000000 + 1), CFG, NOW, RULES)
    assert reason(over) is RejectionReason.ABOVE_MAX_PRICE


def test_bounds_compare_exactly_across_feed_decimals() -> None:
    cfg = config("LINK", feed_decimals=18, min_price_usd=Decimal("10.000000000000000001"))
    at_min = rnd(answer=10_000000000000000001, decimals=18)
    below = rnd(answer=10_000000000000000000, decimals=18)
    assert reason(validate_price(at_min, cfg, NOW, RULES)) is None
    assert reason(validate_price(below, cfg, NOW, RULES)) is RejectionReason.BELOW_MIN_PRICE


def test_decimals_change_is_refused() -> None:
    result = validate_price(rnd(decimals=18, answer=2000 * 10**18), CFG, NOW, RULES)
    assert reason(result) is RejectionReason.DECIMALS_MISMATCH
    assert isinstance(result, PriceRejection)
    assert "feed_decimals" in result.message


# --- sequencer -------------------------------------------------------------------------------


def seq(answer: int, started_at: int, call_ok: bool = True) -> FeedRound:
    return FeedRound(
        round_id=1, answer=answer, started_at=started_at, updated_at=started_at, decimals=0, call_ok=call_ok
    )


def test_sequencer_down() -> None:
    assert reason(validate_sequencer(seq(1, NOW - 10_000), NOW, 3600)) is RejectionReason.SEQUENCER_DOWN  # type: ignore[arg-type]


def test_sequencer_grace_period_boundary() -> None:
    inside = validate_sequencer(seq(0, NOW - 3600), NOW, 3600)
    assert isinstance(inside, PriceRejection)
    assert inside.reason is RejectionReason.SEQUENCER_GRACE_PERIOD
    assert validate_sequencer(seq(0, NOW - 3601), NOW, 3600) == SequencerUp(up_since_s=NOW - 3601)


@pytest.mark.parametrize(
    ("round_", "expected"),
    [
        (seq(0, NOW - 9999, call_ok=False), RejectionReason.SEQUENCER_CALL_REVERTED),
        (seq(2, NOW - 9999), RejectionReason.SEQUENCER_BAD_STATUS),
        (seq(0, 0), RejectionReason.SEQUENCER_BAD_STATUS),
        (seq(0, NOW + 1), RejectionReason.SEQUENCER_BAD_STATUS),
    ],
)
def test_sequencer_bad_reads(round_: FeedRound, expected: RejectionReason) -> None:
    result = validate_sequencer(round_, NOW, 3600)
    assert isinstance(result, PriceRejection)
    assert result.reason is expected


def test_validate_assets_maps_each_symbol() -> None:
    assets = [
        AssetState(config("WETH"), 1, GOOD),
        AssetState(config("DEAD"), 1, FeedRound.reverted()),
    ]
    results = validate_assets(assets, NOW, RULES)
    assert isinstance(results["WETH"], ValidPrice)
    assert reason(results["DEAD"]) is RejectionReason.CALL_REVERTED


def test_sequencer_down_rejects_every_asset() -> None:
    assets = [AssetState(config("WETH"), 1, GOOD), AssetState(config("WBTC"), 1, GOOD)]
    results = validate_assets(assets, NOW, RULES, sequencer=seq(1, NOW - 5))
    assert {s: reason(r) for s, r in results.items()} == {
        "WETH": RejectionReason.SEQUENCER_DOWN,
        "WBTC": RejectionReason.SEQUENCER_DOWN,
    }


def test_required_sequencer_missing_rejects_every_asset() -> None:
    assets = [AssetState(config("WETH"), 1, GOOD)]
    results = validate_assets(assets, NOW, OracleRules(require_sequencer=True))
    assert reason(results["WETH"]) is RejectionReason.SEQUENCER_MISSING
    up = validate_assets(assets, NOW, OracleRules(require_sequencer=True), sequencer=seq(0, NOW - 4000))
    assert isinstance(up["WETH"], ValidPrice)


# --- totality ----------------------------------------------------------------------------------

ANY_INT = st.integers(min_value=-(2**256), max_value=2**256)


@given(
    round_id=ANY_INT,
    answer=ANY_INT,
    started_at=ANY_INT,
    updated_at=ANY_INT,
    decimals=st.integers(min_value=-1000, max_value=1000),
    call_ok=st.booleans(),
    now=ANY_INT,
    margin=ANY_INT,
    feed_decimals=st.integers(min_value=0, max_value=77),
    bounds=st.tuples(
        st.none() | st.decimals(min_value=0, max_value=10**30, allow_nan=False, allow_infinity=False),
        st.none() | st.decimals(min_value=0, max_value=10**30, allow_nan=False, allow_infinity=False),
    ),
)
def test_validation_is_total(
    round_id: int,
    answer: int,
    started_at: int,
    updated_at: int,
    decimals: int,
    call_ok: bool,
    now: int,
    margin: int,
    feed_decimals: int,
    bounds: tuple[Decimal | None, Decimal | None],
) -> None:
    lo, hi = bounds
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    cfg = config("X", feed_decimals=feed_decimals, min_price_usd=lo, max_price_usd=hi)
    r = FeedRound(round_id, answer, started_at, updated_at, decimals, call_ok)
    rules = OracleRules(staleness_margin_s=margin, require_sequencer=call_ok)
    result = validate_price(r, cfg, now, rules)
    assert isinstance(result, ValidPrice | PriceRejection)
    if isinstance(result, ValidPrice):
        assert result.answer > 0
        assert 0 < result.updated_at <= now
    assert isinstance(validate_sequencer(r, now, margin), SequencerUp | PriceRejection)
    assert set(validate_assets([AssetState(cfg, 0, r)], now, rules, sequencer=r)) == {"X"}


def test_config_errors_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="heartbeat_s"):
        config("X", heartbeat_s=0)
    with pytest.raises(ValueError, match="exceeds max_price_usd"):
        config("X", min_price_usd=Decimal(2), max_price_usd=Decimal(1))
    with pytest.raises(ValueError, match="finite"):
        config("X", min_price_usd=Decimal("NaN"))
