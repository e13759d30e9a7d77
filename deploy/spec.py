"""What the local world contains, as data: assets, prices, feeds, pool fees, depths, vault limits.

Change the world here (or through `python -m deploy world` options), not in the deployer's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation

from deploy.errors import DeployError

BPS_TOTAL = 10_000


@dataclass(frozen=True)
class AssetSpec:
    symbol: str
    name: str
    decimals: int
    price_usd: Decimal  # seed price of the feed and the pools
    feed_decimals: int
    heartbeat_s: int
    target_bps: int
    pool_fee: int | None  # V3 fee tier (and V2 pair) against the quote asset; None for the quote
    is_weth: bool = False  # the real WETH9 (wrapped ETH) rather than a mintable TestToken


DEFAULT_ASSETS: tuple[AssetSpec, ...] = (
    AssetSpec("WETH", "Wrapped Ether", 18, Decimal(3000), 8, 3600, 4000, 3000, is_weth=True),
    AssetSpec("WBTC", "Wrapped BTC", 8, Decimal(60000), 8, 3600, 3000, 3000),
    # An 18-decimal feed on purpose: nothing downstream may assume 8.
    AssetSpec("LINK", "ChainLink Token", 18, Decimal(15), 18, 3600, 2000, 3000),
    AssetSpec("USDC", "USD Coin", 6, Decimal(1), 8, 86400, 1000, None),
)


@dataclass(frozen=True)
class CrossPool:
    """A V3 pool between two non-quote assets (the hub pools against the quote come from AssetSpec)."""

    symbol_a: str
    symbol_b: str
    fee: int


# The vault's hard caps (RebalancingVault MAX_*): a limit above one would make the vault's
# constructor revert; the deployer refuses it first, with a line that says what to change.
MAX_SLIPPAGE_BPS = 500
MAX_LOSS_BPS = 300
MAX_LOSS_BPS_PER_WINDOW = 500


@dataclass(frozen=True)
class VaultLimits:
    max_slippage_bps: int = 100
    max_loss_bps: int = 150
    cooldown_s: int = 60
    max_steps: int = 8
    # At most this fraction of value lost to rebalancing in any rolling 24 h, however many calls:
    # a stolen keeper key can take no more. 300 bps leaves room for hundreds of honest rebalances
    # (each loses its pool fees, a few bps) and is under the vault's cap of 500.
    max_loss_bps_per_window: int = 300

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        """`IRebalancingVault.Limits` in field order."""
        return (
            self.max_slippage_bps,
            self.max_loss_bps,
            self.max_loss_bps_per_window,
            self.cooldown_s,
            self.max_steps,
        )

    def validate(self) -> None:
        """Refuse a vault that a stolen key could drain faster than the caps allow."""
        checks = (
            ("--max-slippage-bps", self.max_slippage_bps, MAX_SLIPPAGE_BPS),
            ("--max-loss-bps", self.max_loss_bps, MAX_LOSS_BPS),
            ("--max-loss-bps-per-window", self.max_loss_bps_per_window, MAX_LOSS_BPS_PER_WINDOW),
        )
        for flag, value, cap in checks:
            if not 0 <= value <= cap:
                raise DeployError(f"{flag}={value} is outside 0..{cap} (the vault's hard cap); lower it")
        if self.max_loss_bps > self.max_loss_bps_per_window:
            raise DeployError(
                f"--max-loss-bps={self.max_loss_bps} exceeds --max-loss-bps-per-window="
                f"{self.max_loss_bps_per_window}: one call could spend more than the whole window's budget; "
                "lower the per-call loss or raise the window budget"
            )
        if not 1 <= self.max_steps <= 255:
            raise DeployError(f"--max-steps={self.max_steps} must be in 1..255")
        if not 0 <= self.cooldown_s <= 2**32 - 1:
            raise DeployError(f"--cooldown-s={self.cooldown_s} must be in 0..{2**32 - 1}")


@dataclass(frozen=True)
class WorldSpec:
    assets: tuple[AssetSpec, ...] = DEFAULT_ASSETS
    quote_symbol: str = "USDC"
    cross_pools: tuple[CrossPool, ...] = (CrossPool("WETH", "WBTC", 3000),)
    limits: VaultLimits = field(default_factory=VaultLimits)
    vault_value_usd: Decimal = Decimal(1_000_000)
    # Tokens are free to mint, so pools are deep: a 100k USD trade moves a V3 pool ~0.1%.
    v3_depth_usd: Decimal = Decimal(200_000_000)  # per side
    v2_depth_usd: Decimal = Decimal(100_000_000)  # per side
    # What the market maker keeps after seeding, for move_price and test trades.
    market_maker_inventory_usd: Decimal = Decimal(1_000_000_000)

    def asset(self, symbol: str) -> AssetSpec:
        for a in self.assets:
            if a.symbol == symbol:
                return a
        raise KeyError(symbol)

    @property
    def quote(self) -> AssetSpec:
        return self.asset(self.quote_symbol)

    def with_targets(self, targets: dict[str, int]) -> WorldSpec:
        return replace(self, assets=tuple(replace(a, target_bps=targets[a.symbol]) for a in self.assets))

    def validate(self) -> None:
        symbols = [a.symbol for a in self.assets]
        total = sum(a.target_bps for a in self.assets)
        if total != BPS_TOTAL:
            parts = ", ".join(f"{a.symbol}={a.target_bps}" for a in self.assets)
            raise DeployError(f"targets must sum to {BPS_TOTAL} bps, they sum to {total} ({parts})")
        if self.quote_symbol not in symbols:
            raise DeployError(f"quote asset {self.quote_symbol} is not one of {', '.join(symbols)}")
        for a in self.assets:
            if (a.pool_fee is None) != (a.symbol == self.quote_symbol):
                raise DeployError(f"{a.symbol}: only the quote asset has no pool_fee")
        self.limits.validate()


def parse_targets(text: str, symbols: list[str]) -> dict[str, int]:
    """'WETH=4000,WBTC=3000,...' -> {symbol: bps}; every asset once, integers, sum 10000."""
    targets: dict[str, int] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        symbol, sep, value = item.partition("=")
        symbol = symbol.strip().upper()
        if not sep or symbol not in symbols:
            raise DeployError(
                f"--targets: cannot read {item!r}; write SYMBOL=BPS for each of {', '.join(symbols)}, "
                "e.g. " + ",".join(f"{s}={BPS_TOTAL // len(symbols)}" for s in symbols)
            )
        if symbol in targets:
            raise DeployError(f"--targets: {symbol} is given twice")
        try:
            bps = int(value.strip())
        except ValueError:
            raise DeployError(f"--targets: {symbol}={value.strip()!r} is not a whole number of bps") from None
        if not 0 <= bps <= BPS_TOTAL:
            raise DeployError(f"--targets: {symbol}={bps} is outside 0..{BPS_TOTAL}")
        targets[symbol] = bps
    missing = [s for s in symbols if s not in targets]
    if missing:
        raise DeployError(f"--targets: no target for {', '.join(missing)}; give every asset a target")
    total = sum(targets.values())
    if total != BPS_TOTAL:
        parts = ", ".join(f"{s}={targets[s]}" for s in symbols)
        raise DeployError(
            f"--targets must sum to {BPS_TOTAL} bps, they sum to {total} ({parts}); "
            f"adjust them by {BPS_TOTAL - total:+d} bps in total"
        )
    return targets


def parse_price(text: str) -> Decimal:
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise DeployError(f"price {text!r} is not a number; give it in USD, e.g. 3150.5") from None
    if not price.is_finite() or price <= 0:
        raise DeployError(f"price {text!r} must be a positive number of USD")
    return price
