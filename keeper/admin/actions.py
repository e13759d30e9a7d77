"""The owner actions as Changes: each computes the vault's state after it, refusing unsafe ones.

Pure over the Context's reads, except where a check must ask the chain (a new feed's answer,
a pool's address from the router's factory, a token's decimals).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal, InvalidOperation

from eth_utils.address import is_hex_address, to_checksum_address

from keeper.admin.abi import VaultAdmin
from keeper.admin.chain_io import call1
from keeper.admin.checks import check_limits, parse_targets, read_feed
from keeper.admin.errors import AdminError
from keeper.admin.flow import Change, Context
from keeper.admin.state import Limits
from keeper.admin.venues import VENUE_INDEX, ZERO, resolve_pin
from keeper.chain.abi import Erc20

# A replacement feed whose price is further than this from the current feed's is refused:
# pointing an asset at the wrong pair (ETH/BTC for ETH/USD, say) is the mistake this catches.
MAX_FEED_PRICE_CHANGE = Decimal("0.10")


def address(text: str, what: str) -> str:
    if not is_hex_address(text):
        raise AdminError(f"{what} {text!r} is not an address (0x and 40 hex digits)")
    return to_checksum_address(text)


def _asset_index(ctx: Context, symbol: str) -> int:
    if symbol not in ctx.symbols:
        raise AdminError(f"unknown asset {symbol!r}; the vault has {', '.join(ctx.symbols)}")
    return ctx.symbols.index(symbol)


def set_targets(ctx: Context, text: str) -> Change:
    targets = parse_targets(text, ctx.symbols)
    becomes = ctx.state
    for i, bps in enumerate(targets):
        becomes = becomes.with_asset(i, target_bps=bps)
    return Change("set-targets", becomes, VaultAdmin.set_targets.calldata(targets))


def set_limits(ctx: Context, **given: int | None) -> Change:
    now = ctx.state.limits
    limits = Limits(
        **{k: (v if (v := given.get(k)) is not None else getattr(now, k)) for k in now.__dataclass_fields__}
    )
    check_limits(limits, ctx.caps)
    return Change(
        "set-limits", replace(ctx.state, limits=limits), VaultAdmin.set_limits.calldata(limits.as_tuple())
    )


def set_keeper(ctx: Context, text: str) -> Change:
    keeper = address(text, "keeper")
    if keeper == ZERO:
        raise AdminError(
            "keeper: the zero address would stop every rebalance; to stop trading, `keeper vault pause`"
        )
    if keeper in (ctx.state.owner, ctx.state.guardian):
        raise AdminError(f"keeper {keeper} is the vault's owner or guardian; give the keeper its own key")
    return Change("set-keeper", replace(ctx.state, keeper=keeper), VaultAdmin.set_keeper.calldata(keeper))


def set_guardian(ctx: Context, text: str) -> Change:
    guardian = address(text, "guardian")
    if guardian == ctx.state.keeper:
        raise AdminError(f"guardian {guardian} is the keeper; a stolen keeper key must not be able to pause")
    return Change(
        "set-guardian", replace(ctx.state, guardian=guardian), VaultAdmin.set_guardian.calldata(guardian)
    )


def _venue_args(
    ctx: Context, venue: str, symbols: list[str], fee: int | None, router: str | None
) -> tuple[str, str, str, str, int]:
    venue = venue.upper()
    if venue not in VENUE_INDEX:
        raise AdminError(f"--venue {venue!r}: use V3 or V2")
    if len(symbols) != 2 or symbols[0] == symbols[1]:
        raise AdminError("give two different asset symbols, e.g. WETH USDC")
    tokens = [ctx.state.assets[_asset_index(ctx, s)].token for s in symbols]
    if venue == "V3" and fee is None:
        raise AdminError("--fee is required for a V3 pool (100, 500, 3000 or 10000)")
    if venue == "V2" and fee not in (None, 0):
        raise AdminError("--fee applies to V3 pools only; drop it for V2")
    default_router = ctx.manifest.uniswap.v3_swap_router if venue == "V3" else ctx.manifest.uniswap.v2_router
    chosen = address(router, "--router") if router else default_router
    return venue, chosen, tokens[0], tokens[1], fee or 0


def pin_pool(ctx: Context, venue: str, symbols: list[str], fee: int | None, router: str | None) -> Change:
    venue, chosen, a, b, f = _venue_args(ctx, venue, symbols, fee, router)
    pin = resolve_pin(ctx.w3, venue, chosen, a, b, f, "pin-pool")
    if pin in ctx.state.pinned:
        raise AdminError(f"pin-pool: that venue is already pinned (pool {pin.pool}); nothing to do")
    becomes = replace(ctx.state, pinned=tuple(sorted((*ctx.state.pinned, pin))))
    return Change("pin-pool", becomes, VaultAdmin.pin_venue.calldata(VENUE_INDEX[venue], chosen, a, b, f))


def unpin_pool(ctx: Context, venue: str, symbols: list[str], fee: int | None, router: str | None) -> Change:
    venue, chosen, a, b, f = _venue_args(ctx, venue, symbols, fee, router)
    t0, t1 = sorted((a, b), key=lambda t: int(t, 16))
    match = [
        p
        for p in ctx.state.pinned
        if (p.venue, p.router, p.token0, p.token1, p.fee) == (VENUE_INDEX[venue], chosen, t0, t1, f)
    ]
    if not match:
        raise AdminError(
            f"unpin-pool: no such pinned venue; `keeper vault show` lists the {len(ctx.state.pinned)} pinned"
        )
    becomes = replace(ctx.state, pinned=tuple(p for p in ctx.state.pinned if p != match[0]))
    return Change("unpin-pool", becomes, VaultAdmin.unpin_venue.calldata(VENUE_INDEX[venue], chosen, a, b, f))


def set_feed(ctx: Context, symbol: str, feed_text: str, heartbeat_s: int | None) -> Change:
    i = _asset_index(ctx, symbol)
    now = ctx.state.assets[i]
    feed = address(feed_text, "feed")
    heartbeat = now.heartbeat_s if heartbeat_s is None else heartbeat_s
    if not 0 < heartbeat <= 2**32 - 1:
        raise AdminError(f"--heartbeat-s {heartbeat} must be a positive number of seconds")
    new = read_feed(ctx.w3, feed, heartbeat, f"set-feed {symbol}")
    try:
        old = read_feed(ctx.w3, now.feed, now.heartbeat_s, "current feed")
    except AdminError:
        old = None  # the feed being replaced may be the broken one: nothing to compare with
    if old is not None and abs(new.price - old.price) > MAX_FEED_PRICE_CHANGE * old.price:
        raise AdminError(
            f"set-feed {symbol}: the new feed prices it at {new.price}, the current one at {old.price} "
            f"(more than {MAX_FEED_PRICE_CHANGE:.0%} apart); is it the right pair and denomination?"
        )
    becomes = ctx.state.with_asset(i, feed=feed, heartbeat_s=heartbeat)
    return Change("set-feed", becomes, VaultAdmin.set_asset_feed.calldata(i, feed, heartbeat))


def pause(ctx: Context) -> Change:
    return Change(
        "pause", replace(ctx.state, paused=True), VaultAdmin.pause.calldata(), who="guardian_or_owner"
    )


def unpause(ctx: Context) -> Change:
    return Change("unpause", replace(ctx.state, paused=False), VaultAdmin.unpause.calldata())


def withdraw(ctx: Context, symbol: str, amount_text: str, to_text: str) -> Change:
    i = _asset_index(ctx, symbol)
    asset = ctx.state.assets[i]
    to = address(to_text, "--to")
    if to == ZERO:
        raise AdminError("--to: the zero address would burn the tokens; give the recipient")
    decimals = int(call1(ctx.w3, asset.token, Erc20.decimals))
    if amount_text == "all":
        amount = asset.balance
    else:
        try:
            whole = Decimal(amount_text)
        except InvalidOperation:
            raise AdminError(
                f"amount {amount_text!r} is not a number; give whole tokens (e.g. 1.5) or 'all'"
            ) from None
        units = whole.scaleb(decimals)
        if not whole.is_finite() or whole <= 0 or units != units.to_integral_value():
            raise AdminError(f"amount {amount_text}: give a positive amount with at most {decimals} decimals")
        amount = int(units)
    if amount > asset.balance:
        raise AdminError(
            f"withdraw {symbol}: the vault holds {Decimal(asset.balance).scaleb(-decimals)}, less than {amount_text}"
        )
    if amount == 0:
        raise AdminError(f"withdraw {symbol}: the vault holds none")
    balance = asset.balance - amount if to != ctx.vault else asset.balance
    return Change(
        "withdraw",
        ctx.state.with_asset(i, balance=balance),
        VaultAdmin.withdraw.calldata(asset.token, to, amount),
    )
