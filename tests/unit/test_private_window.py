"""Private submission's part of the lifecycle (pure): trust the relay inside its window, go
public at the fallback, call it dropped after the drop window, back off a rate limit; and what
a relay's answers mean."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_lifecycle import GWEI, NONCE, RULES, attempt, intent, known, obs, receipt, unknown

from keeper.chain.relay_status import relay_gave_up as status_page_gave_up
from keeper.chain.send_errors import SendVerdict, classify_relay_http, classify_send_error
from keeper.execution.journal import DROPPED_BY_RELAY, AttemptState, IntentState
from keeper.execution.lifecycle import (
    RATE_LIMIT_BACKOFF_BLOCKS,
    Finalize,
    MarkMined,
    NoteNonceSpent,
    Rebroadcast,
    Wait,
    decide,
)
from keeper.execution.private_window import PrivateRules, channel, relay_max_block

SENT = 100  # the block the first attempt went out at (test_lifecycle's default)
PRIVATE = replace(
    RULES, replace_after_blocks=1000, private=PrivateRules(drop_blocks=25, fallback_blocks=None)
)
FALLBACK = replace(PRIVATE, private=PrivateRules(drop_blocks=25, fallback_blocks=10))


def test_accepted_by_the_relay_and_unseen_in_public_waits_inside_the_window() -> None:
    action = decide(intent(attempt()), obs(head=SENT + 24, seen=unknown()), PRIVATE)
    assert action == Wait("private_pending")  # no rebroadcast: the public pool's silence is no evidence


def test_past_the_drop_window_with_the_nonce_unused_it_is_dropped() -> None:
    action = decide(intent(attempt()), obs(head=SENT + 25, seen=unknown()), PRIVATE)
    assert action == Finalize(IntentState.EXPIRED, DROPPED_BY_RELAY, None)


def test_a_copy_in_a_public_pool_is_not_a_drop() -> None:
    action = decide(intent(attempt()), obs(head=SENT + 40, seen=known()), PRIVATE)
    assert not isinstance(action, Finalize)


def test_a_receipt_past_the_window_is_a_landing_not_a_drop() -> None:
    seen = {0: replace(unknown()[0], receipt=receipt(block=SENT + 30))}
    assert isinstance(decide(intent(attempt()), obs(head=SENT + 30, seen=seen), PRIVATE), MarkMined)


def test_a_spent_nonce_past_the_window_is_never_a_drop() -> None:
    action = decide(intent(attempt()), obs(head=SENT + 30, nonce_latest=NONCE + 1, seen=unknown()), PRIVATE)
    assert action == NoteNonceSpent(SENT + 30)  # settled by the nonce rules, never re-planned


def test_the_window_runs_from_the_first_attempt_not_the_latest_repricing() -> None:
    # A re-pricing at block 120 does not push the drop out: the fresh plan outbids it anyway.
    repriced = intent(
        attempt(0, state=AttemptState.REPLACED),
        attempt(1, max_fee=30 * GWEI, sent_block=120, last_broadcast_block=120),
    )
    assert decide(repriced, obs(head=SENT + 25, seen=unknown(1)), PRIVATE) == Finalize(
        IntentState.EXPIRED, DROPPED_BY_RELAY, None
    )


def test_at_the_fallback_the_same_bytes_go_public_once_then_the_public_rules_apply() -> None:
    first = intent(attempt())
    assert decide(first, obs(head=SENT + 9, seen=unknown()), FALLBACK) == Wait("private_pending")
    assert decide(first, obs(head=SENT + 10, seen=unknown()), FALLBACK) == Rebroadcast(0, "private_fallback")
    sent = intent(attempt(last_broadcast_block=SENT + 10))
    assert decide(sent, obs(head=SENT + 10, seen=known()), FALLBACK) == Wait("pending")
    # Public from now on: never dropped, even far past the drop window.
    assert decide(sent, obs(head=SENT + 60, seen=unknown()), FALLBACK) == Rebroadcast(0, "not_in_pool")


def test_an_unanswered_private_send_is_offered_to_the_relay_again() -> None:
    unsettled = intent(attempt(state=AttemptState.SIGNED), state=IntentState.SIGNED)
    assert decide(unsettled, obs(head=SENT + 1, seen=unknown()), PRIVATE) == Rebroadcast(0, "not_in_pool")


def test_a_rate_limit_is_backed_off_before_the_bytes_are_offered_again() -> None:
    limited = intent(
        replace(attempt(state=AttemptState.SIGNED), error="rate_limited: HTTP 429 from the relay")
    )
    for head in range(SENT, SENT + RATE_LIMIT_BACKOFF_BLOCKS):
        assert decide(limited, obs(head=head, seen=unknown()), PRIVATE) == Wait("relay_rate_limited")
    assert decide(
        limited, obs(head=SENT + RATE_LIMIT_BACKOFF_BLOCKS, seen=unknown()), PRIVATE
    ) == Rebroadcast(0, "not_in_pool")


@given(st.integers(0, 200), st.integers(1, 50), st.one_of(st.none(), st.integers(1, 50)))
def test_channel_is_private_until_the_fallback_and_public_after(
    offset: int, drop: int, fallback: int | None
) -> None:
    if fallback is not None and fallback > drop:
        with pytest.raises(ValueError):
            PrivateRules(drop, fallback)
        return
    rules = PrivateRules(drop, fallback)
    it = intent(attempt())
    expected = "public" if fallback is not None and offset >= fallback else "private"
    assert channel(it, SENT + offset, rules) == expected
    assert channel(it, SENT + offset, None) == "public"
    assert relay_max_block(it, SENT + offset, rules) == SENT + drop


@pytest.mark.parametrize(
    ("message", "verdict"),
    [
        ("transaction would revert", SendVerdict.WOULD_REVERT),
        ("execution reverted: Too little received", SendVerdict.WOULD_REVERT),
        ("rate limit exceeded", SendVerdict.RATE_LIMITED),
        ("Too Many Requests", SendVerdict.RATE_LIMITED),
        ("invalid API key", SendVerdict.RELAY_CONFIG),
        ("unauthorized", SendVerdict.RELAY_CONFIG),
        ("missing or invalid X-Flashbots-Signature header", SendVerdict.RELAY_CONFIG),
        ("the method eth_sendPrivateTransaction does not exist/is not available", SendVerdict.RELAY_CONFIG),
        ("Method not found", SendVerdict.RELAY_CONFIG),
        # The public node's answers keep their meaning.
        ("nonce too low", SendVerdict.NONCE_TOO_LOW),
        ("replacement transaction underpriced", SendVerdict.REPLACEMENT_UNDERPRICED),
        ("already known", SendVerdict.ALREADY_KNOWN),
    ],
)
def test_relay_answers_are_classified(message: str, verdict: SendVerdict) -> None:
    assert classify_send_error(message) is verdict


@pytest.mark.parametrize(
    ("transport", "verdict"),
    [
        ("HTTP 401", SendVerdict.RELAY_CONFIG),
        ("HTTP 403", SendVerdict.RELAY_CONFIG),
        ("HTTP 429", SendVerdict.RATE_LIMITED),
        ("HTTP 500", None),  # the bytes may have arrived: unknown, settled by hash and nonce
        ("HTTP 502", None),
        ("no answer within 2 s", None),
        ("connection refused", None),
    ],
)
def test_relay_http_answers_are_answers_and_outages_are_not(
    transport: str, verdict: SendVerdict | None
) -> None:
    assert classify_relay_http(transport) is verdict


def test_the_relays_own_word_that_it_gave_up_is_a_drop_inside_the_window() -> None:
    gave_up = replace(obs(head=SENT + 2, seen=unknown()), relay_dropped=True)
    assert decide(intent(attempt()), gave_up, PRIVATE) == Finalize(
        IntentState.EXPIRED, DROPPED_BY_RELAY, None
    )
    # ... but not when a copy is in a public pool, nor once the intent has gone public.
    assert not isinstance(decide(intent(attempt()), replace(gave_up, attempts=known()), PRIVATE), Finalize)
    public = replace(obs(head=SENT + 12, seen=unknown()), relay_dropped=True)
    assert not isinstance(decide(intent(attempt()), public, FALLBACK), Finalize)


def test_a_status_page_that_does_not_answer_says_nothing() -> None:
    assert status_page_gave_up("http://127.0.0.1:9/tx/{hash}", "0xab", 0.5) is False
