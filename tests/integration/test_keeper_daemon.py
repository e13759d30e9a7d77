"""`keeper run` as operators run it: a subprocess on the fork, ticking every second, scraped over
HTTP, stopped with SIGTERM. However many ticks run, a drift is corrected by one transaction.

The daemon talks to the same fork as the test, so the `chain` fixture's evm_revert undoes its
work after the test like any other; the daemon is stopped before that revert runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
from keeper_helpers import (
    KEEPER_KEY,
    Observed,
    nonce,
    rebalanced_events,
    vault_drift_bps,
)
from keeper_process import STOP_WITHIN_S, Daemon

from deploy.accounts import KEEPER
from deploy.any_market import move_price

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration

MIN_TICKS = 3  # "several": the ticks after the rebalance must find nothing to do


def _ticks(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("keeper_ticks_total{"))


def test_daemon_rebalances_once_exports_metrics_and_stops_on_sigterm(
    any_chain: Chain, start_any_daemon: Callable[..., Daemon]
) -> None:
    chain, start_daemon = any_chain, start_any_daemon
    move_price(chain.w3, chain.manifest, "WETH", 4200)
    assert vault_drift_bps(chain) > 1000
    before = Observed.now(chain)
    daemon = start_daemon(KEEPER_PRIVATE_KEY=KEEPER_KEY)

    samples = daemon.wait_for(
        lambda s: s.get('keeper_rebalances_total{outcome="mined"}') == 1 and _ticks(s) >= MIN_TICKS,
        f"one mined rebalance and {MIN_TICKS} ticks",
    )
    status, body = daemon.get("/healthz")
    assert status == 200, body
    chain_label = str(chain.manifest.chain_id)
    (vault,) = json.loads(body)["vaults"]
    assert (vault["chain"], vault["vault"], vault["state"]) == (chain_label, "default", "ok"), body
    assert daemon.get("/healthz?vault=default")[0] == 200
    assert daemon.get("/healthz?vault=other")[0] == 404
    assert daemon.get("/nope")[0] == 404
    # A fleet of one: every series is labelled with the chain id and the vault "default"; the
    # endpoint pool's (RPC requests, endpoint health) with vault="".
    raw = daemon.raw_scrape()
    assert raw and {labels.get("chain") for _, labels, _ in raw} == {chain_label}
    rpc = {name for name, labels, _ in raw if labels["vault"] == ""}
    assert rpc == {"keeper_rpc_requests_total", "keeper_rpc_requests_created", "keeper_rpc_endpoint_healthy"}
    assert {labels["vault"] for name, labels, _ in raw if name not in rpc} == {"default"}

    symbols = [a.symbol for a in chain.manifest.assets]
    for symbol in symbols:
        assert f'keeper_asset_weight_bps{{asset="{symbol}"}}' in samples, symbol
        assert (
            samples[f'keeper_asset_target_bps{{asset="{symbol}"}}'] == chain.manifest.asset(symbol).target_bps
        )
        assert samples[f'keeper_oracle_valid{{asset="{symbol}"}}'] == 1, symbol
    assert samples['keeper_paused{source="env"}'] == 0
    assert samples['keeper_paused{source="vault"}'] == 0
    assert samples["keeper_total_drift_bps"] <= 50  # the ticks after the rebalance see it on target
    assert samples["keeper_block_number"] > before.block
    assert samples['keeper_ticks_total{result="rebalanced"}'] == 1
    assert samples['keeper_skips_total{reason="policy_within_bands"}'] >= MIN_TICKS - 1
    assert samples["keeper_gas_used_total"] > 0

    code, took_s = daemon.terminate()
    assert code == 0, daemon.logs_text()
    assert took_s < STOP_WITHIN_S, f"took {took_s:.1f}s to stop"

    # Several ticks, one transaction.
    assert nonce(chain, KEEPER.address) == before.keeper_nonce + 1
    assert len(rebalanced_events(chain, before.block + 1)) == 1

    logs = daemon.log_lines()
    tick_lines = [line for line in logs if line.get("event") in ("tick", "rebalance_sent")]
    assert len([line for line in tick_lines if line["event"] == "tick"]) >= MIN_TICKS
    for line in tick_lines:
        assert isinstance(line.get("tick_id"), int), line
        assert isinstance(line.get("block"), int), line
    assert [line["event"] for line in logs][-1] == "daemon_stopped"
    assert KEEPER_KEY.removeprefix("0x") not in daemon.logs_text()


def test_paused_daemon_keeps_metrics_fresh_and_sends_nothing(
    any_chain: Chain, start_any_daemon: Callable[..., Daemon]
) -> None:
    chain, start_daemon = any_chain, start_any_daemon
    move_price(chain.w3, chain.manifest, "WETH", 4200)
    before = Observed.now(chain)
    daemon = start_daemon(KEEPER_PRIVATE_KEY=KEEPER_KEY, KEEPER_PAUSED="true")

    samples = daemon.wait_for(
        lambda s: s.get('keeper_skips_total{reason="paused"}', 0) >= 2, "two paused ticks"
    )

    assert samples['keeper_paused{source="env"}'] == 1
    assert samples["keeper_total_drift_bps"] > 1000
    assert samples.get('keeper_rebalances_total{outcome="mined"}', 0) == 0
    assert daemon.get("/healthz")[0] == 200  # paused is not broken: the ticks still complete
    code, _ = daemon.terminate()
    assert code == 0, daemon.logs_text()
    before.assert_nothing_sent(chain)
