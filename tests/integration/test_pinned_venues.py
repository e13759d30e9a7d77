"""Vault v2 pins the venues; the keeper quotes and routes only over them.

A stranger's V3 pool at a tier nobody pinned, priced better than the oracle (the bait that
used to win "the best quote within the band"), is never chosen: the vault trades only through
pinned pools and the stranger's pool is left untouched. An asset no pinned venue reaches is
named by `keeper check`.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from keeper_helpers import KEEPER_KEY, clear_keeper_env, nonce, rebalanced_events, run_keeper, runtime
from keeper_process import fork_manifest, keeper_env

from deploy.accounts import KEEPER, OWNER
from deploy.chain import Sender
from deploy.market import move_price
from deploy.rogue_pools import create_offset_v3_pool, token_balance

if TYPE_CHECKING:
    from conftest import Chain

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_keeper_env(monkeypatch)


@pytest.fixture
def manifest_path(chain: Chain, tmp_path: Path) -> Path:
    return fork_manifest(chain, tmp_path)


def test_a_strangers_better_pool_at_an_unused_tier_is_never_chosen(
    local_world: Chain, manifest_path: Path
) -> None:
    w3, m = local_world.w3, local_world.manifest
    move_price(w3, m, "WETH", 4200)  # the keeper will sell WETH for USDC
    # The stranger's WETH/USDC pool at tier 500 pays 0.9% more for WETH than the oracle.
    bait = create_offset_v3_pool(w3, m, "WETH", "USDC", 500, 90, Decimal(50_000_000))
    weth, usdc = m.asset("WETH").token, m.quote.token
    bait_before = (token_balance(w3, weth, bait), token_balance(w3, usdc, bait))
    pinned_pools = {p.pool for p in m.pinned_venues}
    assert bait not in pinned_pools
    before_block, before_nonce = w3.eth.block_number, nonce(local_world, KEEPER.address)

    report = runtime(manifest_path, private_key=KEEPER_KEY).keeper.tick()

    assert (report.result, report.reason) == ("rebalanced", "rebalanced"), report.message
    assert nonce(local_world, KEEPER.address) == before_nonce + 1
    assert len(rebalanced_events(local_world, before_block + 1)) == 1
    # End state: the bait is untouched, and every swap went through a pinned pool.
    assert (token_balance(w3, weth, bait), token_balance(w3, usdc, bait)) == bait_before
    receipt = w3.eth.get_transaction_receipt(report.tx["hash"])  # type: ignore[index]
    swap_topic = w3.keccak(text="Swap(address,address,int256,int256,uint160,uint128,int24)")
    v2_swap_topic = w3.keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)")
    pools_swapped = {
        log["address"] for log in receipt["logs"] if log["topics"][0] in (swap_topic, v2_swap_topic)
    }
    assert pools_swapped, "no pool swapped"
    assert pools_swapped <= pinned_pools, pools_swapped - pinned_pools
    assert report.plan is not None
    assert all(leg["fee"] in (0, 3000) for leg in report.plan["steps"]), report.plan["steps"]


def test_check_names_an_asset_no_pinned_venue_reaches(local_world: Chain, manifest_path: Path) -> None:
    w3, m = local_world.w3, local_world.manifest
    vault = local_world.vault()
    owner = Sender(w3, OWNER)
    link = m.asset("LINK")
    # Unpin every venue that touches LINK: nothing links it to USDC any more.
    for p in m.pinned_venues:
        if "LINK" in p.symbols:
            venue = 0 if p.venue == "V3" else 1
            owner.call(vault.functions.unpinVenue(venue, p.router, p.token0, p.token1, p.fee), gas=3_000_000)
    owner.settle()

    done = run_keeper(keeper_env(manifest_path, KEEPER_PRIVATE_KEY=KEEPER_KEY), "check")

    assert done.returncode != 0, done.stdout
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1, done.stdout
    assert "LINK is unreachable" in failed[0] and link.symbol in failed[0]
    assert "WETH reachable from USDC through a pinned venue" in done.stdout
    assert "loss budget left 300.00 of 300.00 bps" in done.stdout
    assert "300 bps per window" in done.stdout
    assert "Traceback" not in done.stderr
