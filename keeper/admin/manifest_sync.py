"""The manifest as a cache of the chain: rewritten from what the vault reads back."""

from __future__ import annotations

from pathlib import Path

from web3 import Web3

from keeper.admin.abi import FeedAdmin
from keeper.admin.chain_io import call1
from keeper.admin.errors import AdminError
from keeper.admin.state import VENUE_NAMES, VaultState
from keeper.manifest import AssetEntry, Manifest, PinnedVenueEntry


def refreshed(manifest: Manifest, state: VaultState, w3: Web3) -> Manifest:
    """`manifest` with everything the vault holds replaced by what it holds now."""
    if [a.token for a in manifest.assets] != [a.token for a in state.assets]:
        raise AdminError(
            "the manifest's assets are not the vault's (tokens or their order differ); "
            "was the manifest written for another vault?"
        )
    assets: list[AssetEntry] = []
    for entry, onchain in zip(manifest.assets, state.assets, strict=True):
        feed_decimals = entry.feed_decimals
        if onchain.feed != entry.feed:
            feed_decimals = int(call1(w3, onchain.feed, FeedAdmin.decimals))
        assets.append(
            entry.model_copy(
                update={
                    "feed": onchain.feed,
                    "feed_decimals": feed_decimals,
                    "heartbeat_s": onchain.heartbeat_s,
                    "target_bps": onchain.target_bps,
                }
            )
        )
    pinned = pinned_entries(state, {a.token: a.symbol for a in manifest.assets})
    data = manifest.model_dump()
    data.update(
        assets=[a.model_dump() for a in assets],
        keeper=state.keeper,
        guardian=state.guardian,
        owner=state.owner,
        quote_asset=state.quote_asset,
        pinned_venues=[p.model_dump() for p in pinned],
    )
    return Manifest.model_validate(data)


def write_manifest(manifest: Manifest, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    tmp.replace(path)  # atomic: a running keeper never reads half a manifest


def pinned_entries(state: VaultState, symbol_of: dict[str, str]) -> list[PinnedVenueEntry]:
    """The vault's pinned venues as the manifest lists them (the chain is the source)."""
    return [
        PinnedVenueEntry(
            venue=VENUE_NAMES[p.venue],
            router=p.router,
            pool=p.pool,
            token0=p.token0,
            token1=p.token1,
            fee=p.fee,
            symbols=[symbol_of[p.token0], symbol_of[p.token1]],
        )
        for p in state.pinned
    ]
