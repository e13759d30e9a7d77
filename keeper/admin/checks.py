"""Refusals before anything is signed: targets, limits against the vault's own caps, feeds.

Each check returns nothing or raises an AdminError whose one line says what to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from web3 import Web3
from web3.exceptions import Web3Exception

from keeper.admin.abi import FeedAdmin
from keeper.admin.chain_io import call, call1, chain_time, has_code
from keeper.admin.errors import AdminError
from keeper.admin.state import Caps, Limits
from keeper.model import BPS

MAX_FEED_DECIMALS = 36  # the vault's own bound; no real Chainlink feed has more than 18


def parse_targets(text: str, symbols: list[str]) -> list[int]:
    """'WETH=4000,WBTC=3000,...' -> bps in asset order; every asset once, whole numbers, sum 10000."""
    targets: dict[str, int] = {}
    example = ",".join(f"{s}={BPS // len(symbols)}" for s in symbols)
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        symbol, sep, value = item.partition("=")
        symbol = symbol.strip()
        if not sep or symbol not in symbols:
            raise AdminError(
                f"targets: cannot read {item!r}; write SYMBOL=BPS for each of {', '.join(symbols)}, e.g. {example}"
            )
        if symbol in targets:
            raise AdminError(f"targets: {symbol} is given twice")
        try:
            bps = int(value.strip())
        except ValueError:
            raise AdminError(f"targets: {symbol}={value.strip()!r} is not a whole number of bps") from None
        if not 0 <= bps <= BPS:
            raise AdminError(f"targets: {symbol}={bps} is outside 0..{BPS}")
        targets[symbol] = bps
    missing = [s for s in symbols if s not in targets]
    if missing:
        raise AdminError(
            f"targets: no target for {', '.join(missing)}; give every asset a target, e.g. {example}"
        )
    total = sum(targets.values())
    if total != BPS:
        raise AdminError(
            f"targets sum to {total} bps, not {BPS}; adjust them by {BPS - total:+d} bps in total"
        )
    return [targets[s] for s in symbols]


def check_limits(limits: Limits, caps: Caps) -> None:
    """The vault's rules for limits, with its caps read from the contract itself."""
    for name, value, cap in (
        ("max_slippage_bps", limits.max_slippage_bps, caps.max_slippage_bps),
        ("max_loss_bps", limits.max_loss_bps, caps.max_loss_bps),
        ("max_loss_bps_per_window", limits.max_loss_bps_per_window, caps.max_loss_bps_per_window),
    ):
        if not 0 <= value <= cap:
            raise AdminError(f"{name}={value} is above the vault's hard cap {cap}; lower it to at most {cap}")
    if limits.max_loss_bps > limits.max_loss_bps_per_window:
        raise AdminError(
            f"max_loss_bps={limits.max_loss_bps} exceeds max_loss_bps_per_window={limits.max_loss_bps_per_window}: "
            "one call could spend the whole window's budget; lower the per-call loss or raise the window budget"
        )
    if not 1 <= limits.max_steps <= 255:
        raise AdminError(f"max_steps={limits.max_steps} must be in 1..255")
    if not 0 <= limits.cooldown_s <= 2**32 - 1:
        raise AdminError(f"cooldown_s={limits.cooldown_s} must be in 0..{2**32 - 1}")


@dataclass(frozen=True)
class FeedReading:
    decimals: int
    answer: int
    updated_at: int

    @property
    def price(self) -> Decimal:
        return Decimal(self.answer).scaleb(-self.decimals)


def read_feed(w3: Web3, feed: str, heartbeat_s: int, what: str) -> FeedReading:
    """The feed's decimals and latest answer, refused when it does not look like a live
    Chainlink-style feed: no code, a reverting call, odd decimals, answer <= 0, stale or future."""
    if not has_code(w3, feed):
        raise AdminError(f"{what}: {feed} has no code; give the address of an AggregatorV3 feed")
    try:
        decimals = int(call1(w3, feed, FeedAdmin.decimals))
        _, answer, _, updated_at, _ = call(w3, feed, FeedAdmin.latest_round_data)
    except (Web3Exception, ValueError, OverflowError) as exc:
        raise AdminError(
            f"{what}: {feed} does not answer decimals()/latestRoundData() ({type(exc).__name__}); "
            "is it a Chainlink-style feed, and is it live?"
        ) from None
    if not 0 < decimals <= MAX_FEED_DECIMALS:
        raise AdminError(
            f"{what}: feed {feed} reports {decimals} decimals (want 1..{MAX_FEED_DECIMALS}); wrong address?"
        )
    if answer <= 0:
        raise AdminError(f"{what}: feed {feed} answers {answer} (zero or negative); a dead or wrong feed")
    now = chain_time(w3)
    if updated_at == 0 or updated_at > now:
        raise AdminError(f"{what}: feed {feed} has updatedAt {updated_at} (chain time {now}); a broken feed")
    if now - updated_at > heartbeat_s:
        raise AdminError(
            f"{what}: feed {feed} is stale: last answer {now - updated_at} s ago, heartbeat {heartbeat_s} s; "
            "use a live feed or the feed's real heartbeat"
        )
    return FeedReading(decimals, int(answer), int(updated_at))
