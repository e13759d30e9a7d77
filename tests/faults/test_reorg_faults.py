"""Reorg after the receipt (matrix row 9): the receipt's block and those after it are replaced
with `anvil_reorg`; the keeper sees the receipt gone, sends the same signed bytes again (never
a new plan), and counts the rebalance only once it is `confirmations` deep.

These run on a plain Anvil holding the world (the `plain_chain` fixture): on a fork, Anvil's
reorg rolls back the keeper's nonce but not the forked vault's storage, so the first
rebalance would still look done and its replay would revert on the cooldown.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fault_helpers import MOVED_PRICE_USD, Baseline, build_keeper, events, intents, metric, mine
from keeper_process import fork_manifest
from structlog.testing import capture_logs

from deploy.market import move_price
from keeper.execution.journal import IntentState

if TYPE_CHECKING:
    from conftest import Chain


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_reorg_after_the_receipt_rebroadcasts_the_same_bytes_never_a_second_rebalance(
    plain_chain: Chain, tmp_path: Path, depth: int
) -> None:
    chain = plain_chain
    move_price(chain.w3, chain.manifest, "WETH", MOVED_PRICE_USD)
    manifest_path = fork_manifest(chain, tmp_path)
    rt = build_keeper(manifest_path, confirmations=depth + 1)
    before = Baseline(chain)
    try:
        first = rt.keeper.tick()
        assert first.result == "rebalanced", first.message
        (intent,) = intents(manifest_path)
        assert intent.state is IntentState.MINED  # not yet depth + 1 deep
        original = intent.attempts[0].tx_hash
        mine(chain, depth - 1)

        chain.rpc("anvil_reorg", [depth, []])  # the receipt's block and those after it are replaced
        assert before.rebalances(chain) == [] and before.sent(chain) == 0
        with capture_logs() as logs:
            report = rt.keeper.tick()

        assert report.reason == "tx_reorged", report.message
        assert len(events(logs, "reorg_receipt_gone")) == 1
        assert metric(rt, "keeper_reorgs_total") == 1
        assert before.rebalances(chain) == [original]  # back on chain: the same transaction
        assert rt.keeper.tick().reason == "tx_awaiting_confirmations"
        mine(chain, depth)
        assert rt.keeper.tick().reason == "policy_within_bands"

        assert before.rebalances(chain) == [original]
        assert before.sent(chain) == 1
        (intent,) = intents(manifest_path)
        assert intent.state is IntentState.CONFIRMED and len(intent.attempts) == 1
        assert metric(rt, "keeper_rebalances_total", outcome="confirmed") == 1
    finally:
        rt.close()
