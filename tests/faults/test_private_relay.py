"""Private submission (issue 12, item 6): a relay stub on loopback in front of the fork takes
every send; reads go to the fork directly. The relay swallows (a drop), forwards, refuses.

Blocks only move when a test mines them (a swallowed transaction never reaches Anvil, so
automine makes no block), so every window below is counted exactly, whatever the load.
Each test ends on the chain: the keeper's nonce, the vault's Rebalanced events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fault_helpers import Baseline, events, intents, metric, mine, nonce, states
from proxy import wait_until
from relay_stub import RelayedTx, RelayStub
from structlog.testing import capture_logs

from deploy.accounts import KEEPER
from deploy.market import manipulate_pool
from keeper.execution import crashpoints
from keeper.execution.fees import bump
from keeper.execution.journal import DROPPED_BY_RELAY, SUPERSEDED_BY_DROPPED, AttemptState, IntentState
from keeper.runtime import Runtime

if TYPE_CHECKING:
    from conftest import Chain

Build = Callable[..., Runtime]
DROP_BLOCKS = 5


@pytest.fixture
def relay(drifted: Chain) -> Iterator[RelayStub]:
    with RelayStub(drifted.manifest.rpc_url) as stub:
        yield stub


def _head(chain: Chain) -> int:
    return int(chain.w3.eth.block_number)


def _mined(chain: Chain, keeper_nonce: int) -> None:
    """Wait (on the chain, not a clock) until the keeper's transaction at `keeper_nonce` is
    mined: under load Anvil's automine can lag the tick's short receipt wait."""
    wait_until(lambda: nonce(chain) > keeper_nonce, 60.0, f"a mined transaction at nonce {keeper_nonce}")


def _sent_at(manifest_path: Path) -> int:
    """The block the first intent's first attempt went out at: the private window's start."""
    sent = intents(manifest_path)[0].attempts[0].sent_block
    assert sent is not None
    return sent


# ------------------------------------------------------------------ (a) a drop: re-plan at the same nonce


def test_swallowed_tx_is_replanned_at_the_same_nonce_one_tick_after_the_drop_window(
    drifted: Chain, relay: RelayStub, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(
        private_tx_url=relay.url,
        private_drop_blocks=DROP_BLOCKS,
        replace_after_blocks=1000,  # the drop, not a re-pricing, is under test
        receipt_timeout_s=0.3,
    )
    before = Baseline(drifted)
    relay.set_mode("swallow")

    first = rt.keeper.tick()
    assert (first.result, first.reason) == ("pending", "tx_private_pending"), first.message
    (swallowed,) = relay.received
    assert swallowed.nonce == before.nonce

    # One block short of the window: still trusted to the relay, and not offered again
    # (the public pool's silence says nothing about a private transaction).
    mine(drifted, _sent_at(manifest_path) + DROP_BLOCKS - 1 - _head(drifted))
    waiting = rt.keeper.tick()
    assert (waiting.result, waiting.reason) == ("pending", "tx_private_pending"), waiting.message
    assert len(relay.received) == 1 and before.sent(drifted) == 0

    mine(drifted, 1)  # the window has passed
    relay.set_mode("forward")
    with capture_logs() as logs:
        replanned = rt.keeper.tick()

    # This one tick found the drop and sent the fresh plan at the same nonce.
    assert len(events(logs, "private_tx_dropped")) == 1
    dropped, fresh = relay.received
    if replanned.result != "rebalanced":  # the receipt came after the tick's short wait
        assert (replanned.result, replanned.reason) == ("pending", "tx_private_pending"), replanned.message
        _mined(drifted, before.nonce)
        assert rt.keeper.tick().reason == "policy_within_bands"
    assert dropped.tx_hash == swallowed.tx_hash
    assert fresh.nonce == swallowed.nonce  # the same nonce, not the next one
    assert fresh.tx_hash != swallowed.tx_hash
    # Priced to replace a stray copy of the dropped one, wherever it might still sit.
    assert fresh.max_fee_wei >= bump(swallowed.max_fee_wei)
    assert fresh.max_priority_fee_wei >= bump(swallowed.max_priority_fee_wei)
    # The chain: one transaction at that nonce, and it is the one rebalance.
    assert before.sent(drifted) == 1
    assert before.rebalances(drifted) == [fresh.tx_hash]
    assert states(manifest_path) == [
        (IntentState.EXPIRED, DROPPED_BY_RELAY),
        (IntentState.CONFIRMED, "rebalanced"),
    ]
    # A fresh plan: decided on the snapshot of the tick after the window, not the old bytes.
    old, new = intents(manifest_path)
    assert new.attempts[0].sent_block == old.attempts[0].sent_block + DROP_BLOCKS
    assert metric(rt, "keeper_private_drops_total") == 1
    assert metric(rt, "keeper_tx_sends_total", channel="private", verdict="accepted") == 2

    assert rt.keeper.tick().reason == "policy_within_bands"
    assert before.sent(drifted) == 1 and len(relay.received) == 2


def test_stray_copy_of_a_dropped_tx_landing_first_leaves_one_rebalance(
    drifted: Chain, relay: RelayStub, keeper: Build, manifest_path: Path
) -> None:
    # The relay said nothing, then lets the "dropped" bytes out after the keeper re-planned:
    # both transactions exist, but they share a nonce, so one rebalance at most is mined.
    rt = keeper(
        private_tx_url=relay.url,
        private_drop_blocks=DROP_BLOCKS,
        replace_after_blocks=1000,
        receipt_timeout_s=0.3,
    )
    before = Baseline(drifted)
    relay.set_mode("swallow")
    rt.keeper.tick()
    mine(drifted, _sent_at(manifest_path) + DROP_BLOCKS - _head(drifted))
    replanned = rt.keeper.tick()  # dropped, re-planned, swallowed again
    assert (replanned.result, replanned.reason) == ("pending", "tx_private_pending"), replanned.message
    stray, fresh = relay.received
    assert fresh.nonce == stray.nonce

    relay.deliver(stray)  # automine: the stray copy is mined now
    _mined(drifted, stray.nonce)
    with capture_logs() as logs:
        for _ in range(6):  # the spend is judged on a later look; the reopened intent then confirms
            rt.keeper.tick()
            if states(manifest_path)[0][0] is IntentState.CONFIRMED:
                break

    assert before.sent(drifted) == 1 and nonce(drifted) == stray.nonce + 1
    assert before.rebalances(drifted) == [stray.tx_hash]
    # The journal tells what happened: the "dropped" intent landed, the fresh one never did.
    assert states(manifest_path) == [
        (IntentState.CONFIRMED, "rebalanced"),
        (IntentState.EXPIRED, SUPERSEDED_BY_DROPPED),
    ], [(e.get("event"), e.get("reason"), e.get("message")) for e in logs if e.get("log_level") != "debug"]
    assert intents(manifest_path)[0].final_tx_hash == stray.tx_hash
    assert len(events(logs, "dropped_tx_mined_after_all")) == 1
    assert rt.keeper.tick().reason == "policy_within_bands"
    assert before.sent(drifted) == 1


def test_relay_status_failed_is_a_drop_before_the_window_ends(
    drifted: Chain, relay: RelayStub, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(
        private_tx_url=relay.url,
        private_status_url=relay.url + "/tx/{hash}",
        private_drop_blocks=25,
        replace_after_blocks=1000,
        receipt_timeout_s=0.3,
    )
    before = Baseline(drifted)
    relay.set_mode("swallow")
    assert rt.keeper.tick().reason == "tx_private_pending"
    (swallowed,) = relay.received
    mine(drifted, 1)
    assert rt.keeper.tick().reason == "tx_private_pending"  # the relay says PENDING: trusted
    assert relay.status_queries >= 1 and len(relay.received) == 1

    relay.set_status(swallowed.tx_hash, "FAILED")  # the relay's own word: it gave up
    relay.set_mode("forward")
    mine(drifted, 1)  # 2 blocks after the send: far inside the 25-block window
    with capture_logs() as logs:
        replanned = rt.keeper.tick()

    assert len(events(logs, "private_tx_dropped")) == 1, replanned.message
    dropped, fresh = relay.received
    assert fresh.nonce == dropped.nonce == before.nonce
    _mined(drifted, before.nonce)
    assert before.sent(drifted) == 1 and before.rebalances(drifted) == [fresh.tx_hash]
    assert states(manifest_path)[0] == (IntentState.EXPIRED, DROPPED_BY_RELAY)
    # Asked once per block per transaction (blocks H, H+1, H+2, and the fresh one's first),
    # never once per receipt poll.
    assert relay.status_queries <= 4, relay.status_queries


class _CrashError(Exception):
    """Stands for the process dying at a crash point (the tick is abandoned there)."""


@pytest.mark.parametrize("point", ["before_sign", "after_sign", "after_send"])
def test_a_crash_while_replanning_a_dropped_tx_still_lands_one_rebalance(
    drifted: Chain, relay: RelayStub, keeper: Build, manifest_path: Path, point: str
) -> None:
    settings = {
        "private_tx_url": relay.url,
        "private_drop_blocks": DROP_BLOCKS,
        "replace_after_blocks": 1000,
        "receipt_timeout_s": 0.3,
    }
    rt = keeper(**settings)
    before = Baseline(drifted)
    relay.set_mode("swallow")
    rt.keeper.tick()
    mine(drifted, _sent_at(manifest_path) + DROP_BLOCKS - _head(drifted))
    relay.set_mode("forward")

    def die(reached: str) -> None:
        if reached == point:
            raise _CrashError(reached)

    crashpoints.set_handler(die)
    crashed = rt.keeper.tick()  # the drop is journaled, then the re-plan dies at `point`
    crashpoints.set_handler(None)
    rt.close()
    assert (crashed.result, crashed.reason) == ("error", "tick_error"), crashed.message
    assert states(manifest_path)[0] == (IntentState.EXPIRED, DROPPED_BY_RELAY)

    restarted = keeper(**settings)  # a new process on the same journal
    restarted.keeper.tick()
    _mined(drifted, before.nonce)
    reasons = [restarted.keeper.tick().reason for _ in range(2)]
    assert "policy_within_bands" in reasons, reasons

    assert before.sent(drifted) == 1 and len(before.rebalances(drifted)) == 1
    assert {tx.nonce for tx in relay.received} == {before.nonce}
    assert states(manifest_path)[-1] == (IntentState.CONFIRMED, "rebalanced")
    assert all(s is not IntentState.CONFIRMED for s, _ in states(manifest_path)[:-1])


# ------------------------------------------------------------------ (b) public fallback


def test_fallback_sends_the_same_bytes_publicly_after_the_configured_blocks(
    drifted: Chain, relay: RelayStub, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(
        private_tx_url=relay.url,
        private_fallback_blocks=3,
        private_drop_blocks=DROP_BLOCKS,
        replace_after_blocks=1000,
        receipt_timeout_s=0.3,
    )
    before = Baseline(drifted)
    relay.set_mode("swallow")

    assert rt.keeper.tick().reason == "tx_private_pending"
    (swallowed,) = relay.received
    mine(drifted, _sent_at(manifest_path) + 2 - _head(drifted))
    assert rt.keeper.tick().reason == "tx_private_pending"  # one block short: still private
    assert before.sent(drifted) == 0

    mine(drifted, 1)
    with capture_logs() as logs:
        fallback = rt.keeper.tick()

    assert (fallback.result, fallback.reason) == ("pending", "tx_private_fallback"), fallback.message
    assert len(events(logs, "private_fallback")) == 1
    _mined(drifted, before.nonce)
    # The very bytes the relay sat on, now in a public block; the relay got nothing more.
    assert before.rebalances(drifted) == [swallowed.tx_hash]
    assert len(relay.received) == 1
    assert metric(rt, "keeper_private_fallbacks_total") == 1
    assert metric(rt, "keeper_tx_sends_total", channel="public", verdict="accepted") == 1

    assert rt.keeper.tick().reason == "policy_within_bands"
    assert before.sent(drifted) == 1
    (intent,) = intents(manifest_path)
    assert intent.state is IntentState.CONFIRMED
    assert [a.state for a in intent.attempts] == [AttemptState.MINED]


def test_without_a_fallback_nothing_ever_reaches_the_public_pool(
    drifted: Chain, relay: RelayStub, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(
        private_tx_url=relay.url,
        private_fallback_blocks="none",
        private_drop_blocks=DROP_BLOCKS,
        replace_after_blocks=1000,
        receipt_timeout_s=0.3,
    )
    before = Baseline(drifted)
    relay.set_mode("swallow")
    for _ in range(3):  # three windows: dropped, re-planned, dropped again ...
        rt.keeper.tick()
        mine(drifted, DROP_BLOCKS)
    assert before.sent(drifted) == 0 and drifted.rpc("txpool_content")["pending"] == {}
    assert {tx.nonce for tx in relay.received} == {before.nonce}
    assert metric(rt, "keeper_tx_sends_total", channel="public", verdict="accepted") == 0


def test_eth_send_private_transaction_carries_the_drop_window_as_max_block(
    drifted: Chain, relay: RelayStub, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(
        private_tx_url=relay.url,
        private_tx_method="eth_sendPrivateTransaction",
        private_drop_blocks=DROP_BLOCKS,
    )
    before = Baseline(drifted)

    report = rt.keeper.tick()

    assert report.result == "rebalanced", report.message
    (sent,) = relay.received
    assert sent.method == "eth_sendPrivateTransaction"
    assert sent.params[0]["maxBlockNumber"] == hex(_sent_at(manifest_path) + DROP_BLOCKS)
    assert before.rebalances(drifted) == [sent.tx_hash]


# ------------------------------------------------------------------ (c) refusals


def test_relay_refusing_a_reverting_tx_is_a_skip_with_the_vaults_reason(
    drifted: Chain, relay: RelayStub, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(private_tx_url=relay.url, receipt_timeout_s=0.3)
    before = Baseline(drifted)
    relay.set_mode("simulate", sender=KEEPER.address)

    def market_moves_after_the_keepers_simulation(_tx: RelayedTx) -> None:
        relay.set_before_send(None)
        for venue in ("v3", "v2"):
            manipulate_pool(drifted.w3, drifted.manifest, "WETH", 3000, venue)

    relay.set_before_send(market_moves_after_the_keepers_simulation)
    with capture_logs() as logs:
        report = rt.keeper.tick()

    assert (report.result, report.reason) == ("skipped", "relay_would_revert"), report.message
    (refused,) = events(logs, "tx_refused")
    assert refused["verdict"] == "would_revert"
    (intent,) = intents(manifest_path)
    # The guard that fires, decoded by the keeper's own simulation at the head (the vault's
    # output check on the pool's fill comes first), not the relay's words.
    assert intent.state is IntentState.EXPIRED
    assert intent.reason.startswith("rejected_by_node: would_revert: InsufficientOutput(step_index=0, "), (
        intent.reason
    )
    assert before.sent(drifted) == 0 and before.rebalances(drifted) == []
    assert metric(rt, "keeper_tx_sends_total", channel="private", verdict="would_revert") == 1
    assert metric(rt, "keeper_breaker_open") == 0


def test_relay_rate_limit_backs_off_then_the_same_bytes_land_once(
    drifted: Chain, relay: RelayStub, keeper: Build, manifest_path: Path
) -> None:
    rt = keeper(private_tx_url=relay.url, receipt_timeout_s=0.3, replace_after_blocks=1000)
    before = Baseline(drifted)
    relay.set_mode("http", count=1, status=429, then="forward")

    first = rt.keeper.tick()
    assert (first.result, first.reason) == ("pending", "tx_relay_rate_limited"), first.message
    mine(drifted, 1)
    assert rt.keeper.tick().reason == "tx_relay_rate_limited"  # backing off: not offered again yet
    assert len(relay.received) == 1

    mine(drifted, 2)
    assert rt.keeper.tick().reason == "tx_rebroadcast"
    _mined(drifted, before.nonce)
    assert rt.keeper.tick().reason == "policy_within_bands"

    limited, accepted = relay.received
    assert limited.tx_hash == accepted.tx_hash  # the same signed bytes, not a new plan
    assert before.sent(drifted) == 1 and before.rebalances(drifted) == [accepted.tx_hash]
    assert metric(rt, "keeper_tx_sends_total", channel="private", verdict="rate_limited") == 1
    assert metric(rt, "keeper_breaker_open") == 0


@pytest.mark.parametrize(
    ("mode", "kwargs"),
    [
        ("http", {"status": 401}),
        ("refuse", {"message": "invalid API key"}),
        ("refuse", {"message": "the method eth_sendPrivateTransaction does not exist/is not available"}),
    ],
)
def test_relay_auth_or_config_refusal_is_a_failure_that_opens_the_breaker(
    drifted: Chain,
    relay: RelayStub,
    keeper: Build,
    manifest_path: Path,
    mode: str,
    kwargs: dict[str, object],
) -> None:
    secret = "s3cr3t-relay-key"
    rt = keeper(
        private_tx_url=relay.url_with_credentials("keeper", secret),
        receipt_timeout_s=0.3,
        breaker_max_failures=2,
    )
    before = Baseline(drifted)
    relay.set_mode(mode, **kwargs)  # type: ignore[arg-type]

    with capture_logs() as logs:
        reports = [rt.keeper.tick() for _ in range(2)]

    assert [(r.result, r.reason) for r in reports] == [("error", "relay_config")] * 2, reports[0].message
    assert metric(rt, "keeper_breaker_open") == 1
    held = rt.keeper.tick()
    assert (held.result, held.reason) == ("skipped", "breaker_open"), held.message
    assert len(relay.received) == 2  # one send per failed tick, none once the breaker is open
    assert before.sent(drifted) == 0
    assert [s for s, _ in states(manifest_path)] == [IntentState.EXPIRED] * 2
    assert metric(rt, "keeper_tx_sends_total", channel="private", verdict="relay_config") == 2
    # The relay's credentials appear nowhere: not in the reports, not in the logs.
    assert all(secret not in r.message for r in reports)
    assert secret not in repr(logs)
