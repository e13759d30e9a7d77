"""`keeper once` end to end, on the world's fork and on the second chain (`any_chain`): a
drifted vault is brought back to target in exactly one transaction, and every fault that must stop the keeper stops it before anything is sent.

Each no-send case starts from the same drifted vault as the rebalance case (WETH +40%), so the
only thing between the keeper and a trade is the fault under test. Verdicts come from the
chain (the keeper's nonce, the vault's balances, weights and Rebalanced events); the JSON is
checked for the reason the operator would read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from keeper_helpers import (
    KEEPER_KEY,
    NOT_KEEPER,
    Observed,
    clear_keeper_env,
    nonce,
    once_json,
    rebalanced_events,
    run_keeper,
    runtime,
    unpin_pair,
    vault_drift_bps,
    vault_weights,
)
from keeper_process import fork_manifest, keeper_env
from web3 import Web3

from deploy.accounts import GUARDIAN, KEEPER
from deploy.any_market import break_feed, make_feed_stale, manipulate_pool, move_price, set_feed_answer
from deploy.chain import Sender
from keeper.manifest import Manifest

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration

MOVED_PRICE_USD = 4200  # WETH from 3000: +40%, total drift about 1650 bps
# After the rebalance each weight must be back within 25 bps of its target. What legitimately
# remains: the 0.3% pool fee on roughly 8% of the vault traded (about 2.5 bps of value), price
# impact within the keeper's 50 bps slippage on the traded legs (at most 4 bps of value) and
# integer rounding of weights (1 bps). 25 bps is several times that, yet 15x smaller than the
# 400-800 bps the losing and winning assets sit off target before the trade.
WEIGHT_TOLERANCE_BPS = 25
DRIFT_AFTER_MAX_BPS = 50  # the sum over 4 assets; the trade must remove at least 97% of the drift


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_keeper_env(monkeypatch)


@pytest.fixture
def manifest_path(any_chain: Chain, tmp_path: Path) -> Path:
    return fork_manifest(any_chain, tmp_path)


@pytest.fixture
def drifted(any_chain: Chain) -> Chain:
    """The chain with WETH moved +40% (feed and pools): the threshold policy wants to trade."""
    move_price(any_chain.w3, any_chain.manifest, "WETH", MOVED_PRICE_USD)
    assert vault_drift_bps(any_chain) > 1000, "precondition: the vault must be far off target"
    return any_chain


def _targets(manifest: Manifest) -> dict[str, int]:
    return {a.symbol: a.target_bps for a in manifest.assets}


def _as_json(report: Any) -> dict[str, Any]:
    """The report exactly as `keeper once --json` prints it."""
    data: dict[str, Any] = json.loads(json.dumps(report.as_json(), default=str))
    return data


def _assert_would_trade(report: dict[str, Any]) -> None:
    """The policy wanted a trade and the planner produced one: only the guard under test said no."""
    assert report["policy"]["should_rebalance"] is True, report["policy"]
    assert report["plan"]["steps"], report["plan"]


# ------------------------------------------------------------------ the rebalance


def test_one_tick_returns_weights_to_target_in_exactly_one_transaction(
    drifted: Chain, manifest_path: Path
) -> None:
    chain = drifted
    drift_before = vault_drift_bps(chain)
    before = Observed.now(chain)
    env = keeper_env(manifest_path, KEEPER_PRIVATE_KEY=KEEPER_KEY)

    report = once_json(env)

    assert (report["result"], report["reason"]) == ("rebalanced", "rebalanced"), report["message"]
    assert nonce(chain, KEEPER.address) == before.keeper_nonce + 1
    events = rebalanced_events(chain, before.block + 1)
    assert len(events) == 1
    assert events[0]["transactionHash"].to_0x_hex() == report["tx"]["hash"]
    assert report["tx"]["status"] == 1
    assert events[0]["args"]["driftBefore"] == drift_before
    drift_after = vault_drift_bps(chain)
    assert events[0]["args"]["driftAfter"] == drift_after
    assert drift_after <= DRIFT_AFTER_MAX_BPS, f"drift {drift_before} -> {drift_after} bps"
    weights, targets = vault_weights(chain), _targets(chain.manifest)
    off = {s: weights[s] - targets[s] for s in targets}
    assert all(abs(d) <= WEIGHT_TOLERANCE_BPS for d in off.values()), off

    # Right after: the policy sees the vault within its bands and nothing is sent.
    after = Observed.now(chain)
    second = once_json(env)
    assert (second["result"], second["reason"]) == ("skipped", "policy_within_bands"), second["message"]
    after.assert_nothing_sent(chain)
    # The keeper's view of the weights is the vault's own (to rounding).
    assert all(abs(second["weights_bps"][s] - w) <= 1 for s, w in weights.items()), second["weights_bps"]


def test_no_drift_sends_nothing(any_chain: Chain, manifest_path: Path) -> None:
    before = Observed.now(any_chain)
    rt = runtime(manifest_path, private_key=KEEPER_KEY)

    report = rt.keeper.tick()

    assert (report.result, report.reason) == ("skipped", "policy_within_bands"), report.message
    assert report.policy is not None and report.policy["should_rebalance"] is False
    assert report.plan is None
    before.assert_nothing_sent(any_chain)


# ------------------------------------------------------------------ faults: nothing is sent


FeedFault = Callable[[Web3, Manifest], None]
FEED_FAULTS: dict[str, tuple[FeedFault, str, str]] = {
    # name: (fault, asset it hits, the oracle's rejection reason)
    "stale": (lambda w3, m: make_feed_stale(w3, m, "WETH"), "WETH", "stale"),
    "zero_answer": (lambda w3, m: set_feed_answer(w3, m, "WBTC", 0), "WBTC", "non_positive_answer"),
    "negative_answer": (lambda w3, m: set_feed_answer(w3, m, "LINK", -1), "LINK", "non_positive_answer"),
    "reverted": (lambda w3, m: break_feed(w3, m, "WETH"), "WETH", "call_reverted"),
}


@pytest.mark.parametrize("fault", list(FEED_FAULTS))
def test_bad_feed_sends_nothing(drifted: Chain, manifest_path: Path, fault: str) -> None:
    inject, symbol, rejection = FEED_FAULTS[fault]
    inject(drifted.w3, drifted.manifest)
    before = Observed.now(drifted)
    rt = runtime(manifest_path, private_key=KEEPER_KEY)

    report = _as_json(rt.keeper.tick())

    assert (report["result"], report["reason"]) == ("skipped", "price_rejected"), report["message"]
    assert report["prices"][symbol]["valid"] is False
    assert report["prices"][symbol]["reason"] == rejection
    assert symbol in report["message"]
    assert all(p["valid"] for s, p in report["prices"].items() if s != symbol), report["prices"]
    assert report["plan"] is None and report["tx"] is None
    before.assert_nothing_sent(drifted)


def test_manipulated_pool_on_the_needed_leg_sends_nothing(drifted: Chain, manifest_path: Path) -> None:
    # WETH is the asset to sell, and the only way to sell it is to the hub (USDC) once its pool
    # with WBTC is unpinned (else the keeper routes around: test_routes.py): push both of its
    # WETH/USDC pools back to the old price while the feed says 4200 (a 29% gap).
    unpin_pair(drifted, "WETH", "WBTC")
    for venue in ("v3", "v2"):
        manipulate_pool(drifted.w3, drifted.manifest, "WETH", 3000, venue)
    before = Observed.now(drifted)
    rt = runtime(manifest_path, private_key=KEEPER_KEY)

    report = _as_json(rt.keeper.tick())

    assert report["result"] == "skipped", report["message"]
    # Without the WETH sale the hub (under its target) may not pay for the buys: nothing is left.
    assert report["reason"] == "plan_empty", report["message"]
    skipped = {(s["symbol_in"], s["symbol_out"]): s["reason"] for s in report["plan"]["skipped"]}
    assert skipped[("WETH", "USDC")] == "quote_deviation", skipped
    assert "quote" in report["message"]
    assert report["tx"] is None
    before.assert_nothing_sent(drifted)


def test_keeper_paused_plans_but_sends_nothing(drifted: Chain, manifest_path: Path) -> None:
    before = Observed.now(drifted)
    rt = runtime(manifest_path, private_key=KEEPER_KEY, paused=True)

    report = _as_json(rt.keeper.tick())

    assert (report["result"], report["reason"]) == ("skipped", "paused"), report["message"]
    _assert_would_trade(report)
    assert report["tx"] is None
    before.assert_nothing_sent(drifted)


def test_vault_paused_by_guardian_sends_nothing(drifted: Chain, manifest_path: Path) -> None:
    guardian = Sender(drifted.w3, GUARDIAN)
    guardian.call(drifted.vault().functions.pause(), gas=100_000, label="guardian pauses the vault")
    guardian.settle()
    before = Observed.now(drifted)
    rt = runtime(manifest_path, private_key=KEEPER_KEY)

    report = _as_json(rt.keeper.tick())

    assert (report["result"], report["reason"]) == ("skipped", "vault_paused"), report["message"]
    assert report["vault_paused"] is True
    assert report["tx"] is None
    before.assert_nothing_sent(drifted)


def test_key_without_the_keeper_role_sends_nothing(drifted: Chain, manifest_path: Path) -> None:
    before = Observed.now(drifted)
    other_nonce = nonce(drifted, NOT_KEEPER.address)
    rt = runtime(manifest_path, private_key=NOT_KEEPER.private_key)

    report = _as_json(rt.keeper.tick())

    assert (report["result"], report["reason"]) == ("skipped", "not_keeper"), report["message"]
    assert NOT_KEEPER.address in report["message"]
    _assert_would_trade(report)
    assert nonce(drifted, NOT_KEEPER.address) == other_nonce
    before.assert_nothing_sent(drifted)


def test_no_key_is_dry_mode(drifted: Chain, manifest_path: Path) -> None:
    before = Observed.now(drifted)

    report = once_json(keeper_env(manifest_path))

    assert (report["result"], report["reason"]) == ("dry_run", "no_key"), report["message"]
    assert report["send_enabled"] is True  # not asked to dry-run: it is the missing key that stops it
    _assert_would_trade(report)
    assert report["tx"] is None
    before.assert_nothing_sent(drifted)


def test_dry_run_flag_simulates_and_sends_nothing(drifted: Chain, manifest_path: Path) -> None:
    before = Observed.now(drifted)

    report = once_json(keeper_env(manifest_path, KEEPER_PRIVATE_KEY=KEEPER_KEY), "--dry-run")

    assert (report["result"], report["reason"]) == ("dry_run", "dry_run"), report["message"]
    assert "simulation passed" in report["message"]
    assert report["send_enabled"] is False
    _assert_would_trade(report)
    # Simulated and estimated, never signed: gas numbers but no hash.
    assert report["tx"]["gas_estimate"] > 0
    assert "hash" not in report["tx"]
    assert report["cost"]["verdict"] == "ok"
    before.assert_nothing_sent(drifted)


# ------------------------------------------------------------------ check and status


def test_check_passes_with_the_keeper_key(any_chain: Chain, manifest_path: Path) -> None:
    done = run_keeper(keeper_env(manifest_path, KEEPER_PRIVATE_KEY=KEEPER_KEY), "check")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert f"key {KEEPER.address} is the vault's keeper" in done.stdout


def test_check_fails_with_a_key_lacking_the_role(any_chain: Chain, manifest_path: Path) -> None:
    done = run_keeper(keeper_env(manifest_path, KEEPER_PRIVATE_KEY=NOT_KEEPER.private_key), "check")

    assert done.returncode != 0, done.stdout
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1, done.stdout
    assert f"key {NOT_KEEPER.address} is NOT the vault's keeper" in failed[0]
    assert "Traceback" not in done.stderr


def test_status_prints_a_row_per_asset(drifted: Chain, manifest_path: Path) -> None:
    done = run_keeper(keeper_env(manifest_path), "status")

    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    for asset in drifted.manifest.assets:
        assert asset.symbol in rows, done.stdout
        assert rows[asset.symbol].rstrip().endswith("ok"), rows[asset.symbol]
    assert f"{MOVED_PRICE_USD:,}.0000" in rows["WETH"]
    assert "total drift" in done.stdout
    assert "loss budget left 300.00 of 300.00 bps (rolling 86400 s window)" in done.stdout


# ------------------------------------------------------------------ bad input: exit 2, one message


def _assert_usage_error(done: Any) -> str:
    assert done.returncode == 2, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("keeper: "), done.stderr
    message: str = done.stderr
    return message


def test_manifest_pointing_nowhere_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "manifest.json"

    message = _assert_usage_error(run_keeper(keeper_env(missing), "once"))

    assert str(missing) in message
    assert "does not exist" in message


def test_wrong_chain_id_is_a_usage_error_naming_both(any_chain: Chain, manifest_path: Path) -> None:
    chain = any_chain
    before = Observed.now(chain)
    actual = chain.manifest.chain_id
    wrong = 1 if actual != 1 else 5

    message = _assert_usage_error(
        run_keeper(
            keeper_env(manifest_path, KEEPER_PRIVATE_KEY=KEEPER_KEY, KEEPER_CHAIN_ID=str(wrong)), "once"
        )
    )

    assert f"node reports chain id {actual} " in message
    assert re.search(rf"expects {wrong}\b", message), message
    before.assert_nothing_sent(chain)


@pytest.mark.parametrize("interval", ["0", "soon"])
def test_invalid_interval_is_a_usage_error_naming_the_variable(manifest_path: Path, interval: str) -> None:
    message = _assert_usage_error(
        run_keeper(keeper_env(manifest_path, KEEPER_INTERVAL_S=interval), "run", timeout_s=30)
    )

    assert "KEEPER_INTERVAL_S" in message
    assert len([line for line in message.splitlines() if line.startswith("  ")]) == 1, message
