"""The backtest's cost model: pools (fees and price impact) and gas, calibrated from the real system.

Pools. Every pool is modelled as constant product at the oracle price: arbitrageurs pull it
back to the feed between keeper ticks (what `deploy.market.move_price` does on the local
world), so at each step its reserves are the ones a pool of liquidity L has at that price:
x = L / sqrt(P), y = L * sqrt(P), with P in raw token1 per raw token0. A Uniswap V2 pair is
exactly that (L = sqrt(reserve0 * reserve1), 0.3% fee on the input); a V3 position over the
full tick range behaves the same way with virtual reserves (L is the pool's `liquidity()`,
the fee tier is taken from the input). Concentrated V3 liquidity is deeper near the price:
give it as the equivalent full-range L (or depth) that reproduces its quotes at your sizes.

Gas. A rebalance costs `base + per_swap * swaps` gas units, measured from the vault's real
rebalances on Anvil by bench/calibrate_gas.py (keeper/gas_calibration.json), at a gas
price (a constant or the path's `base_fee_gwei` series) plus the priority fee, valued at the
native token's price (an asset of the path, a `native_usd` series, or a constant).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from math import isqrt
from pathlib import Path
from typing import Any

from keeper.costs import GAS_CALIBRATION_FILE, GasModel
from keeper.model import GWEI, USD18, Address, AssetConfig, PinnedVenue, Quote, Step, ValidPrice, Venue
from keeper.slots_init import slots_init

FEE_DENOMINATOR = 1_000_000  # fees in hundredths of a bp, as Uniswap V3 tiers
V2_FEE = 3000  # every Uniswap V2 pair charges 0.3% on the input
CALIBRATION_FILE = GAS_CALIBRATION_FILE
# Routers of the simulated venues when no manifest names real ones (only compared, never called).
SIM_V3_ROUTER: Address = "0x00000000000000000000000000000000000000A3"
SIM_V2_ROUTER: Address = "0x00000000000000000000000000000000000000A2"


class MarketError(ValueError):
    """A cost-model configuration that cannot be used; the message says what to change."""


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One pool between two assets. Give `liquidity` (sqrt(x*y) in raw units, exact) or
    `depth_usd` (USD per side at the path's first prices)."""

    symbol_a: str
    symbol_b: str
    venue: Venue = Venue.V3
    fee: int = 3000  # V3 tier in hundredths of a bp; ignored for V2 (always 0.3%)
    depth_usd: float | None = None
    liquidity: int | None = None
    router: Address | None = None

    @property
    def fee_ppm(self) -> int:
        return V2_FEE if self.venue is Venue.V2 else self.fee


@dataclass(frozen=True, slots=True)
class _Side:
    symbol: str
    token: str  # lower-case, for matching quotes and steps
    decimals: int


@dataclass(frozen=True, slots=True)
class Pool:
    spec: PoolSpec
    a: _Side
    b: _Side
    liquidity: int
    router: Address

    def reserves(self, price_a: ValidPrice, price_b: ValidPrice) -> tuple[int, int]:
        """(reserve of a, reserve of b) in raw units with the pool at the oracle price."""
        # P = raw b per raw a = (ans_a / 10**fd_a) / (ans_b / 10**fd_b) * 10**(dec_b - dec_a)
        num = price_a.answer * 10 ** (price_b.decimals + self.b.decimals)
        den = price_b.answer * 10 ** (price_a.decimals + self.a.decimals)
        return _reserves(self.liquidity, num, den)

    def amount_out(self, amount_in: int, a_to_b: bool, price_a: ValidPrice, price_b: ValidPrice) -> int:
        x, y = self.reserves(price_a, price_b)
        return self.out_of(amount_in, x, y) if a_to_b else self.out_of(amount_in, y, x)

    def out_of(self, amount_in: int, r_in: int, r_out: int) -> int:
        """The output of a swap in from reserves r_in (input side) and r_out (output side)."""
        if self.spec.venue is Venue.V2:
            with_fee = amount_in * 997
            return with_fee * r_out // (r_in * 1000 + with_fee)
        net = amount_in * (FEE_DENOMINATOR - self.spec.fee) // FEE_DENOMINATOR
        return net * r_out // (r_in + net)

    @property
    def quoted_fee(self) -> int:
        """The fee a quote and a step name: the V3 tier, 0 for V2 (the vault's BadFeeTier rule)."""
        return 0 if self.spec.venue is Venue.V2 else self.spec.fee


@lru_cache(maxsize=1024)
def _reserves(liquidity: int, num: int, den: int) -> tuple[int, int]:
    """x = L / sqrt(P), y = L * sqrt(P) with P = num / den, floored. Cached: a rebalance quotes
    and fills each pool many times at one step's prices (two integer square roots each)."""
    l2 = liquidity * liquidity
    return isqrt(l2 * den // num), isqrt(l2 * num // den)


@slots_init
@dataclass(frozen=True, slots=True)
class Fill:
    amount_out: int
    fee_in: int  # raw units of the input token paid as pool fee


class Market:
    """The pools of one backtest; quotes and fills at the oracle price of the step."""

    def __init__(
        self,
        assets: Sequence[AssetConfig],
        pools: Sequence[PoolSpec],
        first_prices: Mapping[str, ValidPrice],
    ) -> None:
        by_symbol = {a.symbol: a for a in assets}
        self._pools: list[Pool] = []
        for spec in pools:
            for sym in (spec.symbol_a, spec.symbol_b):
                if sym not in by_symbol:
                    raise MarketError(f"pool {spec.symbol_a}/{spec.symbol_b}: {sym} is not a vault asset")
            a, b = by_symbol[spec.symbol_a], by_symbol[spec.symbol_b]
            liquidity = spec.liquidity
            if liquidity is None:
                if spec.depth_usd is None or spec.depth_usd <= 0:
                    raise MarketError(
                        f"pool {a.symbol}/{b.symbol}: give liquidity or a positive depth_usd (USD per side)"
                    )
                pa, pb = first_prices[a.symbol], first_prices[b.symbol]
                x = spec.depth_usd / float(pa.usd) * 10**a.decimals
                y = spec.depth_usd / float(pb.usd) * 10**b.decimals
                liquidity = int(math.sqrt(x) * math.sqrt(y))
            if liquidity <= 0:
                raise MarketError(f"pool {a.symbol}/{b.symbol}: liquidity must be > 0")
            router = spec.router or (SIM_V2_ROUTER if spec.venue is Venue.V2 else SIM_V3_ROUTER)
            self._pools.append(
                Pool(
                    spec,
                    _Side(a.symbol, a.token.lower(), a.decimals),
                    _Side(b.symbol, b.token.lower(), b.decimals),
                    liquidity,
                    router,
                )
            )
        self._by_pair: dict[tuple[str, str], list[tuple[Pool, bool]]] = {}
        for pool in self._pools:
            self._by_pair.setdefault((pool.a.token, pool.b.token), []).append((pool, True))
            self._by_pair.setdefault((pool.b.token, pool.a.token), []).append((pool, False))

    @property
    def pools(self) -> tuple[Pool, ...]:
        return tuple(self._pools)

    def _fill(self, pool: Pool, a_to_b: bool, amount_in: int, prices: Mapping[str, ValidPrice]) -> Fill:
        out = pool.amount_out(amount_in, a_to_b, prices[pool.a.symbol], prices[pool.b.symbol])
        return Fill(out, amount_in * pool.spec.fee_ppm // FEE_DENOMINATOR)

    def quotes(
        self, requests: Sequence[tuple[str, str, int]], prices: Mapping[str, ValidPrice]
    ) -> tuple[Quote, ...]:
        """What the keeper's quote call returns: one quote per pool of each (token_in, token_out)."""
        out: list[Quote] = []
        # Per pair as asked (a pair is asked at many sizes): each of its pools with what a quote
        # needs at these prices, the reserves in the swap's direction taken once.
        sides: dict[tuple[str, str], list[tuple[Pool, int, int, int]]] = {}
        for token_in, token_out, amount_in in requests:
            pools = sides.get((token_in, token_out))
            if pools is None:
                pools = sides[token_in, token_out] = []
                for pool, a_to_b in self._by_pair.get((token_in.lower(), token_out.lower()), ()):
                    x, y = pool.reserves(prices[pool.a.symbol], prices[pool.b.symbol])
                    r_in, r_out = (x, y) if a_to_b else (y, x)
                    pools.append((pool, r_in, r_out, pool.quoted_fee))
            for pool, r_in, r_out, quoted_fee in pools:
                amount_out = pool.out_of(amount_in, r_in, r_out)
                out.append(
                    Quote(
                        pool.spec.venue,
                        pool.router,
                        quoted_fee,
                        token_in,
                        token_out,
                        amount_in,
                        amount_out if amount_out > 0 else None,
                    )
                )
        return tuple(out)

    def pinned_venues(self) -> tuple[PinnedVenue, ...]:
        """The simulated pools as the vault's pinned venues: the backtested vault trades only there."""
        pins = []
        for pool in self._pools:
            t0, t1 = sorted((pool.a.token, pool.b.token), key=lambda t: int(t, 16))
            fee = pool.quoted_fee
            pins.append(PinnedVenue(pool.spec.venue, pool.router, pool.router, t0, t1, fee))
        return tuple(pins)

    def execute(self, step: Step, prices: Mapping[str, ValidPrice], amount_in: int | None = None) -> Fill:
        """The fill of one vault step on its pool (venue, router and fee must match a pool);
        `amount_in` is what a KEEP step actually spends."""
        spend = step.amount_in if amount_in is None else amount_in
        for pool, a_to_b in self._by_pair.get((step.token_in.lower(), step.token_out.lower()), ()):
            fee = pool.quoted_fee
            if (
                pool.spec.venue is step.venue
                and fee == step.fee
                and pool.router.lower() == step.router.lower()
            ):
                return self._fill(pool, a_to_b, spend, prices)
        raise MarketError(
            f"no simulated pool for step {step.token_in}->{step.token_out} on {step.venue.name} fee {step.fee}; "
            "add a pool for this pair (a default-route V3 leg needs a V3 pool at the asset's pool_fee)"
        )


@dataclass(frozen=True, slots=True)
class Calibration:
    """Gas of the vault's `rebalance` measured on Anvil: units = base + per_swap * swaps."""

    base_units: int
    per_swap_units: int
    source: str = "defaults"
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def gas_model(self) -> GasModel:
        return GasModel(base_units=self.base_units, per_swap_units=self.per_swap_units)


def load_calibration(path: Path | str | None = None) -> Calibration:
    """The committed calibration (bench/calibrate_gas.py writes it), or `path`."""
    file = Path(path) if path is not None else CALIBRATION_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        gas = data["gas"]
        return Calibration(int(gas["base_units"]), int(gas["per_swap_units"]), str(file), data)
    except FileNotFoundError:
        raise MarketError(f"calibration file {file} does not exist; run bench/calibrate_gas.py") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise MarketError(
            f"calibration file {file} is malformed ({exc}); re-run bench/calibrate_gas.py"
        ) from None


@dataclass(frozen=True, slots=True)
class GasCosts:
    """Gas price and native-token price of the backtest's chain.

    `base_fee_gwei` is used unless the path carries a `base_fee_gwei` series; the native token
    is priced from the path's `native_symbol` column, else its `native_usd` series, else
    `native_price_usd`.
    """

    model: GasModel
    base_fee_gwei: float = 20.0
    priority_fee_gwei: Decimal = Decimal("1.5")
    native_symbol: str | None = "WETH"
    native_price_usd: float | None = None
    max_fee_gwei: Decimal = Decimal(300)
    base_fee_multiplier: int = 2  # maxFee = base * this + tip, as keeper.execution.fees

    def base_fee_wei(self, gwei: float) -> int:
        return int(Decimal(repr(gwei)) * GWEI)

    @property
    def priority_fee_wei(self) -> int:
        return int(self.priority_fee_gwei * GWEI)

    @property
    def cap_wei(self) -> int:
        return int(self.max_fee_gwei * GWEI)


def gas_usd(units: int, wei_per_gas: int, native_usd: float) -> float:
    return units * wei_per_gas / 1e18 * native_usd


def usd(value_usd18: int) -> float:
    return value_usd18 / USD18
