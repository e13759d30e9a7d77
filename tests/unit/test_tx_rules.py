"""The small pure rules around a send: the price bump, the node's answers, the nonce floor, the
breaker, the budgets, endpoint health."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_abi.abi import encode
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.health import HeadSeen, HealthRules, Probe, judge, remember_head
from keeper.chain.rpc import redact
from keeper.chain.send_errors import SendVerdict, classify_send_error
from keeper.execution import breaker, budgets
from keeper.execution.breaker import BreakerRules, BreakerState
from keeper.execution.budgets import BudgetCaps, Swapped
from keeper.execution.fees import Fees, bump, next_fees
from keeper.execution.journal import ExpectedLeg, Spend
from keeper.execution.nonces import next_nonce

GWEI = 10**9

# ------------------------------------------------------------------ fees


@given(st.integers(0, 10**24))
def test_bump_is_at_least_an_eighth_and_always_strictly_more(wei: int) -> None:
    assert bump(wei) * 8 >= wei * 9
    assert bump(wei) > wei


def test_next_fees_stops_at_the_cap() -> None:
    market = Fees(200 * GWEI, 0)  # asks more than the cap allows
    assert next_fees(Fees(88 * GWEI, 2 * GWEI), market, 100 * GWEI) == Fees(100 * GWEI, bump(2 * GWEI))
    assert next_fees(Fees(90 * GWEI, 2 * GWEI), market, 100 * GWEI) is None  # 90 x 1.125 > 100


# ------------------------------------------------------------------ what the node said


@pytest.mark.parametrize(
    ("message", "verdict"),
    [
        ("nonce too low", SendVerdict.NONCE_TOO_LOW),
        ("nonce too low: next nonce 5, tx nonce 4", SendVerdict.NONCE_TOO_LOW),
        ("OldNonce", SendVerdict.NONCE_TOO_LOW),
        ("already known", SendVerdict.ALREADY_KNOWN),
        ("transaction already imported", SendVerdict.ALREADY_KNOWN),  # anvil
        ("Known transaction (0x12)", SendVerdict.ALREADY_KNOWN),
        ("replacement transaction underpriced", SendVerdict.REPLACEMENT_UNDERPRICED),
        ("ReplacementUnderpriced", SendVerdict.REPLACEMENT_UNDERPRICED),
        ("max fee per gas less than block base fee", SendVerdict.FEE_TOO_LOW),  # geth, anvil
        ("transaction underpriced", SendVerdict.FEE_TOO_LOW),
        ("insufficient funds for gas * price + value", SendVerdict.INSUFFICIENT_FUNDS),
        ("Insufficient funds for gas * price + value", SendVerdict.INSUFFICIENT_FUNDS),  # anvil
        ("intrinsic gas too low", SendVerdict.REJECTED),
    ],
)
def test_send_errors_are_classified_never_guessed_as_success(message: str, verdict: SendVerdict) -> None:
    assert classify_send_error(message) is verdict


def test_nonce_floor_is_the_chain_and_the_journal_never_below() -> None:
    assert next_nonce(5, 5, 0).nonce == 5
    assert next_nonce(5, 6, 0).nonce == 6  # someone's transaction waits in the pool at 5
    stale = next_nonce(5, 5, 7)  # the journal has spent up to 6
    assert stale.nonce == 7 and stale.gap is not None and "not sending into the gap" in stale.gap


# ------------------------------------------------------------------ breaker

RULES = BreakerRules(max_failures=3, cooldown_s=100)


def test_breaker_opens_on_the_nth_consecutive_failure_only() -> None:
    s = BreakerState()
    for _ in range(2):
        s = breaker.record_tick(s, True, 0, RULES)
    assert not s.open
    s = breaker.record_tick(s, False, 0, RULES)  # a success clears the count
    for _ in range(3):
        s = breaker.record_tick(s, True, 10, RULES)
    assert s.open and s.open_until == 110 and s.reason == "3 consecutive failed ticks"


def test_breaker_closes_half_open_after_the_cooldown() -> None:
    s = breaker.trip(BreakerState(), "budget_gas", 0, RULES)
    assert breaker.current(s, 99, RULES).open
    half = breaker.current(s, 100, RULES)
    assert not half.open
    assert breaker.record_tick(half, True, 101, RULES).open  # one more failure reopens it


def test_breaker_state_survives_its_json_round_trip() -> None:
    s = breaker.trip(BreakerState(consecutive_failures=2), "x", 5, RULES)
    assert BreakerState.from_dict(s.as_dict()) == s


# ------------------------------------------------------------------ budgets


def test_budgets_used_and_breached() -> None:
    caps = BudgetCaps(gas_eth=Decimal("0.1"), slippage_usd=Decimal(100))
    spend = Spend(gas_wei=5 * 10**16, gas_usd=Decimal(0), slippage_usd=Decimal(100))
    assert budgets.used_ratios(spend, caps) == {"gas": 0.5, "slippage": 1.0}
    assert budgets.breached(spend, caps) == "slippage"
    assert budgets.breached(Spend(), BudgetCaps()) is None


def test_gas_budget_judges_the_worst_case_of_the_next_send() -> None:
    caps = BudgetCaps(gas_eth=Decimal("0.1"), gas_usd=Decimal(300))
    spent = Spend(gas_wei=6 * 10**16, gas_usd=Decimal(200))
    assert budgets.gas_would_exceed(spent, caps, 3 * 10**16, Decimal(1000)) is None
    assert "ETH" in (budgets.gas_would_exceed(spent, caps, 5 * 10**16, Decimal(1000)) or "")
    assert "USD" in (budgets.gas_would_exceed(spent, caps, 3 * 10**16, Decimal(5000)) or "")


def test_slippage_is_oracle_implied_minus_received_never_credited() -> None:
    expected = (
        ExpectedLeg("0x" + "aa" * 20, 1_000 * 10**6, Decimal(1), 6),  # 1000 USDC implied
        ExpectedLeg("0x" + "bb" * 20, 10**18, Decimal(3000), 18),  # 1 WETH implied
    )
    swaps = [Swapped(0, "0x" + "aa" * 20, 990 * 10**6), Swapped(1, "0x" + "bb" * 20, 10**18 + 10**15)]
    assert budgets.slippage_usd(expected, swaps) == Decimal(10)  # the better fill earns no credit


def test_swapped_events_are_decoded_from_receipt_logs() -> None:
    vault = "0x" + "11" * 20
    topic = budgets.SWAPPED_TOPIC
    topics = [
        topic,
        (2).to_bytes(32, "big"),
        bytes(12) + bytes.fromhex("aa" * 20),
        bytes(12) + bytes.fromhex("bb" * 20),
    ]
    data = encode(["address", "uint256", "uint256", "uint256"], ["0x" + "cc" * 20, 5, 7, 6])
    other = ("0x" + "22" * 20, topics, data)  # same event from another contract: ignored
    assert budgets.swapped_events([(vault, topics, data), other], vault) == [Swapped(2, "0x" + "bb" * 20, 7)]


def test_budget_day_starts_at_utc_midnight() -> None:
    assert budgets.day_start(86_400 * 3 + 5) == 86_400 * 3


# ------------------------------------------------------------------ endpoint health

HEALTH = HealthRules(expected_chain_id=1, head_stall_s=30, max_head_age_s=60)


def test_health_verdicts() -> None:
    good = Probe(1, 100, 1_000)
    assert judge(good, HeadSeen(100, 990), 1_010, HEALTH).healthy
    assert judge(Probe(error="HTTP 502"), None, 0, HEALTH).reason == "unreachable: HTTP 502"
    assert judge(Probe(5, 100, 1_000), None, 1_000, HEALTH).reason.startswith(
        "wrong_chain: answers chain id 5"
    )
    stalled = judge(good, HeadSeen(100, 960), 1_000, HEALTH)
    assert not stalled.healthy and stalled.reason.startswith("head_stalled: block 100 for 40s")
    assert judge(good, HeadSeen(100, 990), 1_070, HealthRules(1, None, 60)).reason.startswith("head_stale")


def test_staleness_checks_are_off_unless_configured() -> None:
    assert judge(Probe(1, 100, 0), HeadSeen(100, 0), 10**9, HealthRules(1)).healthy


def test_the_stall_clock_restarts_only_when_the_head_moves_forward() -> None:
    seen = remember_head(None, Probe(1, 100, 0), 10)
    assert remember_head(seen, Probe(1, 100, 0), 20) == HeadSeen(100, 10)
    assert remember_head(seen, Probe(1, 99, 0), 20) == HeadSeen(100, 10)  # a lagging answer
    assert remember_head(seen, Probe(1, 101, 0), 20) == HeadSeen(101, 20)


def test_endpoint_labels_never_carry_the_api_key() -> None:
    assert redact("https://user:secret@eth.example.com/v2/KEY123?x=1") == "https://eth.example.com"
    assert redact("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
