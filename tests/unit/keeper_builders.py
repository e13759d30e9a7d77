"""Small builders for unit tests: a four-asset world with the vault's decimal mix.

USDC (6 decimals, 8-decimal feed) is the hub; WETH (18/8), WBTC (8/8) and LINK (18 with an
18-decimal feed, as some feeds have) around it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from decimal import Decimal

from keeper.model import (
    AssetConfig,
    AssetState,
    FeedRound,
    PinnedVenue,
    Quote,
    Snapshot,
    ValidPrice,
    VaultLimits,
    Venue,
)

NOW = 1_700_000_000
V3_ROUTER = "0x00000000000000000000000000000000000000A3"
V2_ROUTER = "0x00000000000000000000000000000000000000A2"

# symbol -> (token, decimals, feed_decimals, target_bps, price USD)
WORLD: dict[str, tuple[str, int, int, int, Decimal]] = {
    "USDC": ("0x000000000000000000000000000000000000C0DE", 6, 8, 2000, Decimal("1")),
    "WETH": ("0x000000000000000000000000000000000000E7E7", 18, 8, 4000, Decimal("2000")),
    "WBTC": ("0x000000000000000000000000000000000000B7C0", 8, 8, 3000, Decimal("40000")),
    "LINK": ("0x0000000000000000000000000000000000001111", 18, 18, 1000, Decimal("20")),
}


def config(
    symbol: str,
    *,
    token: str | None = None,
    decimals: int = 18,
    feed_decimals: int = 8,
    target_bps: int = 0,
    heartbeat_s: int = 3600,
    min_price_usd: Decimal | None = None,
    max_price_usd: Decimal | None = None,
) -> AssetConfig:
    return AssetConfig(
        symbol=symbol,
        token=token or "0x" + symbol.encode().hex().rjust(40, "0")[-40:],
        decimals=decimals,
        feed="0xfeed" + symbol.encode().hex().rjust(36, "0")[-36:],
        feed_decimals=feed_decimals,
        heartbeat_s=heartbeat_s,
        target_bps=target_bps,
        pool_fee=3000,
        min_price_usd=min_price_usd,
        max_price_usd=max_price_usd,
    )


def answer_for(price_usd: Decimal, feed_decimals: int) -> int:
    return int(price_usd.scaleb(feed_decimals))


def fresh_round(answer: int, decimals: int, updated_at: int = NOW - 60) -> FeedRound:
    return FeedRound(
        round_id=1, answer=answer, started_at=updated_at, updated_at=updated_at, decimals=decimals
    )


def world_asset(symbol: str, usd_value: Decimal, price: Decimal | None = None) -> AssetState:
    token, dec, fdec, target, base_price = WORLD[symbol]
    px = base_price if price is None else price
    cfg = config(symbol, token=token, decimals=dec, feed_decimals=fdec, target_bps=target)
    balance = int((usd_value / px).scaleb(dec))
    return AssetState(cfg, balance, fresh_round(answer_for(px, fdec), fdec))


def pins_for(
    assets: tuple[AssetState, ...], fees: tuple[int, ...] = (100, 500, 3000, 10_000), v2: bool = True
) -> tuple[PinnedVenue, ...]:
    """Pinned venues between every two assets: V3 at `fees` and (if `v2`) a V2 pair."""
    pins: list[PinnedVenue] = []
    for a, b in itertools.combinations(assets, 2):
        t0, t1 = sorted((a.config.token, b.config.token), key=lambda t: int(t, 16))
        pins += [PinnedVenue(Venue.V3, V3_ROUTER, V3_ROUTER, t0, t1, fee) for fee in fees]
        if v2:
            pins.append(PinnedVenue(Venue.V2, V2_ROUTER, V2_ROUTER, t0, t1, 0))
    return tuple(pins)


def snapshot(
    assets: tuple[AssetState, ...],
    *,
    hub: str = "USDC",
    quotes: tuple[Quote, ...] = (),
    limits: VaultLimits | None = None,
    paused: bool = False,
    pinned: tuple[PinnedVenue, ...] | None = None,
) -> Snapshot:
    return Snapshot(
        block_number=100,
        timestamp=NOW,
        chain_id=31337,
        assets=assets,
        quote_symbol=hub,
        limits=limits or VaultLimits(max_slippage_bps=100, max_loss_bps=200, cooldown_s=3600, max_steps=8),
        vault_paused=paused,
        last_rebalance_ts=NOW - 86_400,
        quotes=quotes,
        pinned_venues=pins_for(assets) if pinned is None else pinned,
    )


def prices_of(snap: Snapshot) -> dict[str, ValidPrice]:
    return {
        a.symbol: ValidPrice(a.symbol, a.round.answer, a.round.decimals, a.round.updated_at, a.round.round_id)
        for a in snap.assets
    }


def fair_quote(
    snap: Snapshot,
    sym_in: str,
    sym_out: str,
    amount_in: int,
    *,
    bps_off: int = -30,
    venue: Venue = Venue.V3,
    fee: int = 3000,
) -> Quote:
    """A quote at the oracle price moved by `bps_off` (default: a 0.3% pool fee)."""
    a_in, a_out = snap.asset(sym_in), snap.asset(sym_out)
    p = prices_of(snap)
    usd = amount_in * p[sym_in].answer * 10**18 // 10 ** (a_in.config.decimals + p[sym_in].decimals)
    out = usd * 10 ** (a_out.config.decimals + p[sym_out].decimals) // (p[sym_out].answer * 10**18)
    return Quote(
        venue=venue,
        router=V3_ROUTER if venue is Venue.V3 else V2_ROUTER,
        fee=fee if venue is Venue.V3 else 0,
        token_in=a_in.config.token,
        token_out=a_out.config.token,
        amount_in=amount_in,
        amount_out=out * (10_000 + bps_off) // 10_000,
    )


def four_asset_after_weth_rally(rally: Decimal = Decimal("1.4")) -> Snapshot:
    """$1M at target (40/30/10/20), then WETH +40%: WETH over target, the rest under."""
    weth_px = WORLD["WETH"][4] * rally
    weth = world_asset("WETH", Decimal(400_000), WORLD["WETH"][4])
    fdec = WORLD["WETH"][2]
    weth = AssetState(weth.config, weth.balance, fresh_round(answer_for(weth_px, fdec), fdec))
    return snapshot(
        (
            weth,
            world_asset("WBTC", Decimal(300_000)),
            world_asset("LINK", Decimal(100_000)),
            world_asset("USDC", Decimal(200_000)),
        )
    )


def quotes_to_and_from_hub(
    snap: Snapshot, probe_usd: Decimal = Decimal(50_000), **kw: object
) -> tuple[Quote, ...]:
    """Fair V3 quotes for every asset <-> hub pair at a probe size of `probe_usd`."""
    out: list[Quote] = []
    p = prices_of(snap)
    for a in snap.assets:
        if a.symbol == snap.quote_symbol:
            continue
        amt_a = int((probe_usd / p[a.symbol].usd).scaleb(a.config.decimals))
        amt_h = int((probe_usd / p[snap.quote_symbol].usd).scaleb(snap.hub.config.decimals))
        out.append(fair_quote(snap, a.symbol, snap.quote_symbol, amt_a, **kw))  # type: ignore[arg-type]
        out.append(fair_quote(snap, snap.quote_symbol, a.symbol, amt_h, **kw))  # type: ignore[arg-type]
    return tuple(out)


def with_quotes(snap: Snapshot, quotes: tuple[Quote, ...]) -> Snapshot:
    return snapshot(
        snap.assets,
        hub=snap.quote_symbol,
        quotes=quotes,
        limits=snap.limits,
        paused=snap.vault_paused,
        pinned=snap.pinned_venues,
    )


def targets_of(snap: Snapshot) -> Mapping[str, int]:
    return snap.config_targets_bps
