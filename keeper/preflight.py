"""The judgements of `keeper check` (pure): plain data in, one CheckLine per fact out.

Each line is OK, FAIL (the keeper cannot work safely until someone changes what the line
says) or WARN (the manifest is out of date, but the keeper follows the chain). The reads
that feed these functions are in keeper/preflight_reads.py; the printing is in cli.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from keeper.chain.depth import PoolDepth
from keeper.manifest import AssetEntry, Manifest
from keeper.manifest_drift import Difference
from keeper.model import BPS, PriceResult, Snapshot, ValidPrice, VaultLimits
from keeper.portfolio import portfolio_state, value_usd18
from keeper.routes import reachability

Status = Literal["ok", "fail", "warn"]
USD18 = 10**18


@dataclass(frozen=True, slots=True)
class CheckLine:
    status: Status
    name: str  # a stable id for machines: "chain_id", "code:vault", "depth:WETH", ...
    message: str

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def as_json(self) -> dict[str, str]:
        return {"status": self.status, "name": self.name, "message": self.message}


def line(ok: bool, name: str, message: str) -> CheckLine:
    return CheckLine("ok" if ok else "fail", name, message)


@dataclass(frozen=True, slots=True)
class VaultCaps:
    """The vault's MAX_* constants, as it answers them."""

    max_slippage_bps: int
    max_loss_bps: int
    max_loss_bps_per_window: int


def _usd(value_usd18: int) -> str:
    return f"${Decimal(value_usd18) / USD18:,.0f}"


def decimals_lines(
    manifest: Manifest,
    token_decimals: Sequence[int | None],
    feeds: Sequence[str],
    feed_decimals: Sequence[int | None],
) -> list[CheckLine]:
    """Token and feed decimals as the contracts answer them, against the manifest. `feeds` are
    the feeds the vault names now (a feed the owner replaced has its own decimals)."""
    out: list[CheckLine] = []
    for entry, tdec, feed, fdec in zip(manifest.assets, token_decimals, feeds, feed_decimals, strict=True):
        out += [_token_decimals_line(entry, tdec), _feed_decimals_line(entry, feed, fdec)]
    return out


def _token_decimals_line(entry: AssetEntry, answered: int | None) -> CheckLine:
    sym, name = entry.symbol, f"token_decimals:{entry.symbol}"
    if answered is None:
        return line(
            False,
            name,
            f"{sym} token {entry.token} has no working decimals(); is the manifest's token address right?",
        )
    if answered != entry.decimals:
        return line(
            False,
            name,
            f"{sym} token decimals: the manifest says {entry.decimals}, token {entry.token} says {answered}; "
            f"fix the manifest's decimals for {sym}",
        )
    return line(True, name, f"{sym} token decimals {answered} match the manifest")


def _feed_decimals_line(entry: AssetEntry, feed: str, answered: int | None) -> CheckLine:
    sym, name = entry.symbol, f"feed_decimals:{entry.symbol}"
    if answered is None:
        return line(
            False,
            name,
            f"{sym} feed {feed} has no working decimals(); it is not an aggregator: the owner must set a live "
            "feed (setAssetFeed)",
        )
    if feed.lower() != entry.feed.lower():
        # The owner replaced the feed: the manifest's figure belongs to the old one.
        return CheckLine(
            "warn",
            name,
            f"{sym} feed {feed} (set on the vault, not in the manifest) has {answered} decimals; the "
            "keeper uses them",
        )
    if answered != entry.feed_decimals:
        return line(
            False,
            name,
            f"{sym} feed decimals: the manifest says {entry.feed_decimals}, feed {feed} says {answered}; review the "
            f"feed and fix feed_decimals for {sym}",
        )
    return line(True, name, f"{sym} feed decimals {answered} match the manifest")


def price_lines(snapshot: Snapshot, prices: Mapping[str, PriceResult]) -> list[CheckLine]:
    """Every feed live (latestRoundData answers), fresh (within its heartbeat on the vault) and
    within the configured bounds: the oracle's own rules, at the snapshot's block time."""
    out: list[CheckLine] = []
    for asset in snapshot.assets:
        result = prices[asset.symbol]
        if isinstance(result, ValidPrice):
            age = snapshot.timestamp - asset.round.updated_at
            out.append(
                line(
                    True,
                    f"price:{asset.symbol}",
                    f"{asset.symbol} feed {asset.config.feed} live: "
                    f"${result.usd:,.4f}, {age} s old (heartbeat "
                    f"{asset.config.heartbeat_s} s), within bounds",
                )
            )
        else:
            out.append(
                line(
                    False,
                    f"price:{asset.symbol}",
                    f"{result.message} (feed {asset.config.feed}); the owner must fix or replace the "
                    "feed (setAssetFeed), or correct KEEPER_PRICE_BOUNDS if the price is right",
                )
            )
    return out


def quote_asset_line(manifest: Manifest, onchain_quote: str | None) -> CheckLine:
    if onchain_quote is None:
        return line(
            False,
            "quote_asset",
            f"vault {manifest.vault}.quoteAsset() failed: is it a RebalancingVault (v2)?",
        )
    ok = onchain_quote.lower() == manifest.quote_asset.lower()
    if ok:
        return line(
            True, "quote_asset", f"quote asset {manifest.quote.symbol} ({onchain_quote}) matches the vault"
        )
    return line(
        False,
        "quote_asset",
        f"quote asset: the manifest says {manifest.quote_asset}, the vault says "
        f"{onchain_quote}; fix the manifest's quote_asset",
    )


def route_lines(
    snapshot: Snapshot,
    prices: Mapping[str, PriceResult],
    depths: Sequence[PoolDepth],
    trade_share_bps: int,
) -> list[CheckLine]:
    """Every asset reachable from the quote asset through a pinned venue, and the deepest such
    venue deep enough: a trade of `trade_share_bps` of the asset's target value must move the
    pool by at most the vault's maxSlippageBps. For a constant-product pool, selling `d` into a
    reserve `r` fills at `r / (r + d)` of the spot price, so the reserve must be at least
    `d * (10000 - slippage) / slippage` on each side."""
    tokens = {a.symbol: a.config.token for a in snapshot.assets}
    quote = snapshot.quote_symbol
    valid = {s: p for s, p in prices.items() if isinstance(p, ValidPrice)}
    state = portfolio_state(snapshot.assets, valid) if len(valid) == len(snapshot.assets) else None
    slippage = snapshot.limits.max_slippage_bps
    out = [
        CheckLine(
            "ok",
            "pinned_venues",
            f"{len(snapshot.pinned_venues)} pinned venue(s): the only pools the vault trades through",
        )
    ]
    for symbol, how in reachability(tokens, quote, snapshot.pinned_venues).items():
        name = f"route:{symbol}"
        if how is None:
            out.append(
                line(
                    False,
                    name,
                    f"{symbol} is unreachable: no pinned venue links it to {quote}, directly or "
                    "via one other vault asset; the owner must pin one (pinVenue)",
                )
            )
            continue
        if how != "direct":
            # The planner routes through another vault asset in two hops over pinned venues
            # (keeper/routing.py), as long as the batch does not also buy that asset: the asset
            # is tradable, which is worth saying. (Its depth is judged per hop by the quotes.)
            out.append(
                line(
                    True,
                    name,
                    f"{symbol} reachable from {quote} only {how} (two hops over pinned venues; "
                    "not while the same batch buys the intermediate)",
                )
            )
            continue
        if state is None:
            out.append(
                CheckLine(
                    "warn",
                    name,
                    f"{symbol} reachable from {quote} through a pinned venue; depth not "
                    "judged (a price was rejected above)",
                )
            )
            continue
        out.append(_depth_line(snapshot, valid, state.total_usd18, symbol, depths, trade_share_bps, slippage))
    return out


def _depth_line(
    snapshot: Snapshot,
    valid: Mapping[str, ValidPrice],
    total_usd18: int,
    symbol: str,
    depths: Sequence[PoolDepth],
    trade_share_bps: int,
    slippage_bps: int,
) -> CheckLine:
    assets = {a.symbol: a for a in snapshot.assets}
    asset, quote = assets[symbol], assets[snapshot.quote_symbol]
    trade = total_usd18 * asset.config.target_bps * trade_share_bps // (BPS * BPS)
    best: tuple[int, PoolDepth] | None = None
    for d in depths:
        if not d.venue.connects(asset.config.token, quote.config.token):
            continue
        r_asset, r_quote = d.reserve_of(asset.config.token), d.reserve_of(quote.config.token)
        if r_asset is None or r_quote is None:
            continue
        side = min(
            value_usd18(r_asset, asset.config.decimals, valid[symbol]),
            value_usd18(r_quote, quote.config.decimals, valid[snapshot.quote_symbol]),
        )
        if best is None or side > best[0]:
            best = (side, d)
    name = f"route:{symbol}"
    if best is None:
        return line(
            False,
            name,
            f"{symbol}: no pinned pool against {snapshot.quote_symbol} answered its reserves "
            "(liquidity/slot0 or getReserves); pin a live pool (pinVenue)",
        )
    side, pool = best
    needed = trade * (BPS - slippage_bps) // slippage_bps if slippage_bps > 0 else None
    where = (
        f"{symbol} reachable from {snapshot.quote_symbol} through a pinned venue; deepest pool "
        f"{pool.venue.pool} ({pool.venue.venue.name}) holds {_usd(side)} per side"
    )
    if needed is not None and side >= needed:
        return line(True, name, f"{where}, enough for a {_usd(trade)} trade within {slippage_bps} bps")
    need = "any trade (maxSlippageBps is 0)" if needed is None else f"{_usd(needed)} per side"
    return line(
        False,
        name,
        f"{where}; a {_usd(trade)} trade ({trade_share_bps / 100:g}% of its target value) "
        f"needs {need} to stay within {slippage_bps} bps: the owner must pin a deeper pool, or "
        "lower KEEPER_CHECK_TRADE_SHARE_BPS",
    )


def limits_lines(limits: VaultLimits, caps: VaultCaps | None) -> list[CheckLine]:
    summary = (
        f"limits: slippage {limits.max_slippage_bps} bps, loss {limits.max_loss_bps} bps per call and "
        f"{limits.max_loss_bps_per_window} bps per window, cooldown {limits.cooldown_s} s, max "
        f"{limits.max_steps} steps"
    )
    if caps is None:
        return [
            line(
                False,
                "limits",
                f"{summary}; the vault's MAX_* caps did not answer: is it a RebalancingVault (v2)?",
            )
        ]
    over = [
        f"{what} {value} > cap {cap}"
        for what, value, cap in (
            ("slippage", limits.max_slippage_bps, caps.max_slippage_bps),
            ("loss per call", limits.max_loss_bps, caps.max_loss_bps),
            ("loss per window", limits.max_loss_bps_per_window, caps.max_loss_bps_per_window),
        )
        if value > cap
    ]
    if limits.max_loss_bps > limits.max_loss_bps_per_window:
        over.append("loss per call above the window budget")
    if limits.max_steps < 1:
        over.append("max steps 0")
    if over:
        return [line(False, "limits", f"{summary}: {'; '.join(over)}; the owner must lower them (setLimits)")]
    return [
        line(
            True,
            "limits",
            f"{summary}, within the vault's caps ({caps.max_slippage_bps}, "
            f"{caps.max_loss_bps}, {caps.max_loss_bps_per_window})",
        )
    ]


def guardian_line(guardian: str | None) -> CheckLine:
    if guardian is None:
        return line(False, "guardian", "vault guardian() failed: is it a RebalancingVault (v2)?")
    if int(guardian, 16) == 0:
        return line(
            False,
            "guardian",
            "no guardian set: nobody but the owner can pause the vault; the owner must set one (setGuardian)",
        )
    return line(True, "guardian", f"guardian {guardian} can pause the vault")


def gas_line(balance_wei: int, minimum_eth: Decimal) -> CheckLine:
    balance = Decimal(balance_wei) / Decimal(USD18)
    if balance >= minimum_eth:
        return line(True, "gas_balance", f"gas balance {balance:.6f} >= minimum {minimum_eth}")
    return line(
        False,
        "gas_balance",
        f"gas balance {balance:.6f} < minimum {minimum_eth}: fund the keeper's "
        "address (or lower KEEPER_MIN_GAS_BALANCE_ETH)",
    )


def difference_lines(diffs: Sequence[Difference]) -> list[CheckLine]:
    return [
        CheckLine(
            "warn", f"manifest:{d.field}", f"{d.line}; the keeper follows the chain: refresh the manifest"
        )
        for d in diffs
    ]
