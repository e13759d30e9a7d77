"""`keeper check`'s judgements (pure): pool depth against each asset's target share, limits
against the vault's caps, the guardian, and the manifest fields the chain has changed."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from keeper_builders import pins_for, prices_of, snapshot, world_asset

from keeper.chain.depth import PoolDepth, v3_virtual_reserves
from keeper.manifest import Manifest, parse_manifest
from keeper.manifest_drift import manifest_differences
from keeper.model import Snapshot, VaultLimits
from keeper.preflight import VaultCaps, decimals_lines, guardian_line, limits_lines, route_lines

KEEPER = to_checksum_address("0x" + "11" * 20)


def _two_asset_vault() -> Snapshot:
    """$600k USDC + $400k WETH ($2000), WETH target 40%: a $400k trade at most."""
    assets = (world_asset("USDC", Decimal(600_000)), world_asset("WETH", Decimal(400_000)))
    assets = (
        replace(assets[0], config=replace(assets[0].config, target_bps=6000)),
        replace(assets[1], config=replace(assets[1].config, target_bps=4000)),
    )
    return snapshot(assets, pinned=pins_for(assets, fees=(3000,), v2=False))


def _depth(snap: Snapshot, usd_per_side: int | None) -> list[PoolDepth]:
    (pin,) = snap.pinned_venues
    if usd_per_side is None:
        return [PoolDepth(pin, None, None)]
    reserves = {
        snap.assets[0].config.token: usd_per_side * 10**6,  # USDC at $1
        snap.assets[1].config.token: usd_per_side * 10**18 // 2000,  # WETH at $2000
    }
    return [PoolDepth(pin, reserves[pin.token0], reserves[pin.token1])]


@pytest.mark.parametrize(
    ("usd_per_side", "share_bps", "ok"),
    [
        (39_600_000, 10_000, True),  # 400k * 9900 / 100: exactly enough within 100 bps
        (39_500_000, 10_000, False),
        (19_800_000, 5_000, True),  # half the target share needs half the depth
        (None, 10_000, False),  # the pool did not answer
    ],
)
def test_depth_must_carry_the_target_share_within_the_vaults_slippage(
    usd_per_side: int | None, share_bps: int, ok: bool
) -> None:
    snap = _two_asset_vault()
    lines = route_lines(snap, prices_of(snap), _depth(snap, usd_per_side), share_bps)
    (weth,) = [line for line in lines if line.name == "route:WETH"]
    assert weth.ok is ok, weth.message
    if not ok and usd_per_side is not None:
        assert "needs $39,600,000 per side to stay within 100 bps" in weth.message


def test_an_asset_without_a_pinned_venue_is_named() -> None:
    snap = replace(_two_asset_vault(), pinned_venues=())
    lines = route_lines(snap, prices_of(snap), [], 10_000)
    (weth,) = [line for line in lines if line.name == "route:WETH"]
    assert not weth.ok and "WETH is unreachable" in weth.message and "pinVenue" in weth.message


def test_v3_virtual_reserves_at_price_one() -> None:
    assert v3_virtual_reserves(10**18, 2**96) == (10**18, 10**18)
    assert v3_virtual_reserves(10**18, 0) == (0, 0)


CAPS = VaultCaps(500, 300, 500)


@pytest.mark.parametrize(
    ("limits", "complaint"),
    [
        (VaultLimits(100, 150, 60, 8, 300), None),
        (VaultLimits(600, 150, 60, 8, 300), "slippage 600 > cap 500"),
        (VaultLimits(100, 400, 60, 8, 500), "loss per call 400 > cap 300"),
        (VaultLimits(100, 300, 60, 8, 200), "loss per call above the window budget"),
    ],
)
def test_limits_within_the_vaults_caps(limits: VaultLimits, complaint: str | None) -> None:
    (line,) = limits_lines(limits, CAPS)
    assert line.ok is (complaint is None), line.message
    if complaint:
        assert complaint in line.message and "setLimits" in line.message


def test_a_vault_without_guardian_fails() -> None:
    assert not guardian_line("0x" + "00" * 20).ok
    assert guardian_line(KEEPER).ok


def _manifest_of(snap: Snapshot) -> Manifest:
    assets: list[dict[str, Any]] = [
        {
            "symbol": a.symbol,
            "token": to_checksum_address(a.config.token),
            "decimals": a.config.decimals,
            "feed": to_checksum_address(a.config.feed),
            "feed_decimals": a.config.feed_decimals,
            "heartbeat_s": a.config.heartbeat_s,
            "target_bps": a.config.target_bps,
            "pool_fee": None if a.symbol == snap.quote_symbol else 3000,
        }
        for a in snap.assets
    ]
    addr = to_checksum_address("0x" + "22" * 20)
    uniswap = ["v2_factory", "v2_router", "v3_factory", "v3_swap_router", "v3_quoter", "v3_position_manager"]
    return parse_manifest(
        {
            "chain_id": 31337,
            "rpc_url": "http://127.0.0.1:8545",
            "vault": addr,
            "keeper": KEEPER,
            "guardian": addr,
            "multicall3": addr,
            "uniswap": dict.fromkeys(uniswap, addr),
            "quote_asset": next(a["token"] for a in assets if a["symbol"] == snap.quote_symbol),
            "assets": assets,
        }
    )


def test_manifest_differences_name_each_field_the_owner_changed() -> None:
    snap = _two_asset_vault()
    manifest = _manifest_of(snap)
    assert manifest_differences(manifest, snap, KEEPER) == []

    new_feed = to_checksum_address("0x" + "fe" * 20)
    usdc, weth = snap.assets
    changed = replace(
        snap,
        assets=(
            replace(usdc, config=replace(usdc.config, target_bps=5000)),
            replace(weth, config=replace(weth.config, target_bps=5000, feed=new_feed, heartbeat_s=900)),
        ),
    )
    other_keeper = to_checksum_address("0x" + "33" * 20)
    diffs = manifest_differences(manifest, changed, other_keeper)
    assert [(d.field, d.manifest, d.chain) for d in diffs] == [
        ("assets[USDC].target_bps", "6000", "5000"),
        ("assets[WETH].feed", to_checksum_address(weth.config.feed), new_feed),
        ("assets[WETH].heartbeat_s", "3600", "900"),
        ("assets[WETH].target_bps", "4000", "5000"),
        ("keeper", KEEPER, other_keeper),
    ]


def test_decimals_lines_compare_what_the_contracts_answer_with_the_manifest() -> None:
    manifest = _manifest_of(_two_asset_vault())  # USDC 6/8, WETH 18/8
    usdc = manifest.assets[0]
    other_feed = to_checksum_address("0x" + "fe" * 20)
    lines = decimals_lines(manifest, [6, 8], [usdc.feed, other_feed], [18, None])
    assert [(x.name, x.status) for x in lines] == [
        ("token_decimals:USDC", "ok"),
        ("feed_decimals:USDC", "fail"),
        ("token_decimals:WETH", "fail"),
        ("feed_decimals:WETH", "fail"),
    ]
    assert "the manifest says 8, feed" in lines[1].message and "says 18" in lines[1].message
    assert "the manifest says 18" in lines[2].message and "says 8" in lines[2].message
    assert "no working decimals()" in lines[3].message and "setAssetFeed" in lines[3].message
    # A feed the owner replaced: its own decimals are used, the manifest's are for the old feed.
    (replaced,) = decimals_lines(manifest, [6, 18], [usdc.feed, other_feed], [8, 18])[3:]
    assert replaced.status == "warn" and other_feed in replaced.message
