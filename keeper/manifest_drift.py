"""Where the manifest and the vault disagree (pure): the manifest is a cache, the chain wins.

The owner can change targets, feeds and heartbeats, the pinned venues and the keeper on the
vault at any time (`setTargets`, `setAssetFeed`, `pinVenue`, `setKeeper`). The keeper reads
all of them in every tick's snapshot and decides on what it read; this module only names the
fields a stale manifest still holds, for the once-per-change warning and for `keeper check`.
Limits are not here: the manifest does not hold them, the snapshot is their only source.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.manifest import Manifest, PinnedVenueEntry
from keeper.model import PinnedVenue, Snapshot, Venue


@dataclass(frozen=True, slots=True)
class Difference:
    """One manifest field whose value is not the vault's."""

    field: str  # e.g. "assets[WETH].feed"
    manifest: str
    chain: str

    @property
    def line(self) -> str:
        return f"{self.field}: manifest {self.manifest} -> chain {self.chain}"


def _venue_key(venue: str, router: str, token0: str, token1: str, fee: int) -> str:
    return f"{venue}:{router}:{token0}/{token1}:{fee}"


def _manifest_pin(p: PinnedVenueEntry) -> str:
    return _venue_key(p.venue, p.router, p.token0, p.token1, p.fee)


def _chain_pin(p: PinnedVenue) -> str:
    return _venue_key(Venue(p.venue).name, p.router, p.token0, p.token1, p.fee)


def manifest_differences(manifest: Manifest, snapshot: Snapshot, vault_keeper: str) -> list[Difference]:
    """Every manifest field the chain has changed, in manifest order."""
    diffs: list[Difference] = []
    onchain = {a.config.token.lower(): a.config for a in snapshot.assets}
    for entry in manifest.assets:
        cfg = onchain.get(entry.token.lower())
        if cfg is None:  # a different asset list is refused by the snapshot itself
            continue
        for name, mine, theirs in (
            ("feed", entry.feed, cfg.feed),
            ("heartbeat_s", entry.heartbeat_s, cfg.heartbeat_s),
            ("target_bps", entry.target_bps, cfg.target_bps),
        ):
            if str(mine).lower() != str(theirs).lower():
                diffs.append(Difference(f"assets[{entry.symbol}].{name}", str(mine), str(theirs)))
    if manifest.keeper.lower() != vault_keeper.lower():
        diffs.append(Difference("keeper", manifest.keeper, vault_keeper))
    if manifest.pinned_venues:
        # Listing pinned venues is optional (a hand-written manifest may omit them): compared
        # only when present, as a set (the vault's order is its own).
        listed = sorted(_manifest_pin(p) for p in manifest.pinned_venues)
        pinned = sorted(_chain_pin(p) for p in snapshot.pinned_venues)
        if listed != pinned:
            gone = sorted(set(listed) - set(pinned))
            new = sorted(set(pinned) - set(listed))
            diffs.append(
                Difference(
                    "pinned_venues",
                    f"{len(listed)} venue(s)" + (f", unpinned on chain: {', '.join(gone)}" if gone else ""),
                    f"{len(pinned)} venue(s)" + (f", pinned on chain only: {', '.join(new)}" if new else ""),
                )
            )
    return diffs
