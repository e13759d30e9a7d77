"""Values, weights and drift, computed bit-for-bit like the vault (pure).

Mirrors contracts/src/VaultMath.sol: the vault values an asset as
`balance * answer * 1e18 / 10**(token_decimals + feed_decimals)` (USD, 18 decimals, one floor),
its drift as `sum_i |value_i * 10000 - target_i * total| / total` (one floor at the end), and a
step's oracle-implied output with `convert` (one floor). The keeper uses the same integer
formulas so it predicts the vault's MinOutTooLow, DriftIncreased and ValueLoss guards exactly
instead of approximately. If VaultMath changes its rounding, change it here too:
tests/unit/test_portfolio.py pins a hand-computed example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from keeper.model import BPS, USD18, AssetState, ValidPrice


def value_usd18(amount: int, token_decimals: int, price: ValidPrice) -> int:
    """Oracle value of `amount` raw token units, USD with 18 decimals, floored like Solidity."""
    scale: int = 10 ** (token_decimals + price.decimals)
    return amount * price.answer * USD18 // scale


def tokens_for_usd18(value: int, token_decimals: int, price: ValidPrice) -> int:
    """Raw token units worth `value` USD18 at the oracle price, floored (never more than `value`)."""
    scale: int = 10 ** (token_decimals + price.decimals)
    return value * scale // (price.answer * USD18)


def implied_amount_out(
    amount_in: int, decimals_in: int, price_in: ValidPrice, decimals_out: int, price_out: ValidPrice
) -> int:
    """`VaultMath.convert`: token_out worth `amount_in` at oracle prices, one floor at the end.

    amount_in * answer_in * 10**(dec_out + fdec_out) / (answer_out * 10**(dec_in + fdec_in)).
    Not via USD18: a second floor could make the keeper's min_amount_out one unit lower than
    the vault's required minimum and revert the batch with MinOutTooLow.
    """
    scale_in: int = 10 ** (decimals_in + price_in.decimals)
    scale_out: int = 10 ** (decimals_out + price_out.decimals)
    return amount_in * price_in.answer * scale_out // (price_out.answer * scale_in)


def conversion(
    decimals_in: int, price_in: ValidPrice, decimals_out: int, price_out: ValidPrice
) -> tuple[int, int]:
    """(num, den) with implied_amount_out(x, ...) == x * num // den for every x: the pair's
    constants taken once, for a caller converting many amounts at the same prices."""
    scale_in: int = 10 ** (decimals_in + price_in.decimals)
    scale_out: int = 10 ** (decimals_out + price_out.decimals)
    return price_in.answer * scale_out, price_out.answer * scale_in


def min_amount_out(implied_out: int, slippage_bps: int) -> int:
    """`implied * (10000 - slippage) / 10000`, the vault's `_requiredMinOut` at the keeper's tolerance."""
    return implied_out * (BPS - slippage_bps) // BPS


def vault_drift_bps(values_usd18: Sequence[int], targets_bps: Sequence[int]) -> int:
    """The vault's `driftBps()`: sum of |weight - target| in bps with a single final floor.

    An empty vault has no weights; it is defined as on target (0) here.
    """
    total = sum(values_usd18)
    if total <= 0:
        return 0
    return sum(abs(v * BPS - t * total) for v, t in zip(values_usd18, targets_bps, strict=True)) // total


def vault_weights_bps(values_usd18: Sequence[int]) -> tuple[int, ...]:
    """The vault's `weights()`: each value's share in bps, floored."""
    total = sum(values_usd18)
    if total <= 0:
        return tuple(0 for _ in values_usd18)
    return tuple(v * BPS // total for v in values_usd18)


@dataclass(frozen=True, slots=True)
class PortfolioState:
    """Oracle values of the vault's assets against the vault's (config) targets.

    Tuples in vault asset order. Derived figures are properties so the backtester pays only
    for what a policy reads.
    """

    symbols: tuple[str, ...]
    values_usd18: tuple[int, ...]
    targets_bps: tuple[int, ...]

    @property
    def total_usd18(self) -> int:
        return sum(self.values_usd18)

    @property
    def is_empty(self) -> bool:
        return self.total_usd18 <= 0

    def index(self, symbol: str) -> int:
        return self.symbols.index(symbol)

    @property
    def weights_bps(self) -> tuple[int, ...]:
        """Floored, as the vault reports them."""
        return vault_weights_bps(self.values_usd18)

    @property
    def exact_weights_bps(self) -> tuple[Fraction, ...]:
        """Exact weights, for band comparisons where a floor would hide a breach."""
        total = self.total_usd18
        if total <= 0:
            return tuple(Fraction(0) for _ in self.values_usd18)
        return tuple(Fraction(v * BPS, total) for v in self.values_usd18)

    @property
    def deviations_bps(self) -> tuple[Fraction, ...]:
        """Signed exact weight - target per asset; all zero for an empty vault (nothing to do)."""
        if self.is_empty:
            return tuple(Fraction(0) for _ in self.values_usd18)
        return tuple(w - t for w, t in zip(self.exact_weights_bps, self.targets_bps, strict=True))

    @property
    def drift_bps(self) -> int:
        """Total drift exactly as the vault computes it (integer, floored)."""
        return vault_drift_bps(self.values_usd18, self.targets_bps)

    @property
    def on_target(self) -> bool:
        """Every weight exactly its target (`exact_drift_bps == 0`, in integers)."""
        total = self.total_usd18
        if self.is_empty:
            return True
        return all(v * BPS == t * total for v, t in zip(self.values_usd18, self.targets_bps, strict=True))

    @property
    def exact_drift_bps(self) -> Fraction:
        return sum((abs(d) for d in self.deviations_bps), Fraction(0))

    def with_targets(self, targets_bps: Mapping[str, int]) -> PortfolioState:
        return PortfolioState(self.symbols, self.values_usd18, tuple(targets_bps[s] for s in self.symbols))


def portfolio_state(
    assets: Sequence[AssetState],
    prices: Mapping[str, ValidPrice],
    balances: Mapping[str, int] | None = None,
) -> PortfolioState:
    """Value `assets` at `prices` (every asset needs a valid price: KeyError otherwise).

    `balances` overrides the snapshot balances, which is how the planner values a predicted
    post-trade state with the same code.
    """
    symbols = tuple(a.symbol for a in assets)
    values = tuple(
        value_usd18(
            a.balance if balances is None else balances[a.symbol], a.config.decimals, prices[a.symbol]
        )
        for a in assets
    )
    return PortfolioState(symbols, values, tuple(a.config.target_bps for a in assets))
