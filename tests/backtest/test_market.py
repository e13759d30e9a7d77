"""The cost model: constant-product pools at the oracle price (V2 exact, V3 full range as
virtual reserves), fees on the input, impact from depth, gas from the committed calibration."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest

from deploy.pricing import v2_amount_out
from keeper.backtest.config import synthetic_assets
from keeper.backtest.market import (
    CALIBRATION_FILE,
    GasCosts,
    Market,
    MarketError,
    PoolSpec,
    load_calibration,
)
from keeper.costs import GasModel
from keeper.model import Step, ValidPrice, Venue

ASSETS = synthetic_assets({"WETH": 5000, "USDC": 5000})
PRICES = {
    "WETH": ValidPrice("WETH", 3000 * 10**8, 8, 0, 1),
    "USDC": ValidPrice("USDC", 10**8, 8, 0, 1),
}
WETH, USDC = (a.token for a in ASSETS)


def market(venue: Venue = Venue.V3, fee: int = 3000, depth: float = 10_000_000.0) -> Market:
    return Market(ASSETS, [PoolSpec("WETH", "USDC", venue, fee, depth_usd=depth)], PRICES)


def test_reserves_sit_at_the_oracle_price_with_the_configured_depth() -> None:
    pool = market().pools[0]
    x, y = pool.reserves(PRICES["WETH"], PRICES["USDC"])
    assert Fraction(y * 10**12, x) == pytest.approx(3000, rel=1e-9)  # USDC (6 dec) per WETH (18 dec)
    assert x / 10**18 * 3000 == pytest.approx(10_000_000, rel=1e-6)
    # Arbitraged to a new price, the same liquidity holds more of the cheaper token.
    x2, y2 = pool.reserves(ValidPrice("WETH", 4000 * 10**8, 8, 0, 1), PRICES["USDC"])
    assert x2 < x and y2 > y and x2 * y2 == pytest.approx(x * y, rel=1e-12)


def test_v2_output_is_the_pairs_own_formula() -> None:
    pool = market(Venue.V2).pools[0]
    x, y = pool.reserves(PRICES["WETH"], PRICES["USDC"])
    amount = 5 * 10**18
    assert pool.amount_out(amount, True, PRICES["WETH"], PRICES["USDC"]) == v2_amount_out(amount, x, y)


@pytest.mark.parametrize("fee", [100, 500, 3000, 10_000])
def test_v3_full_range_is_constant_product_with_the_fee_taken_on_the_input(fee: int) -> None:
    pool = market(Venue.V3, fee).pools[0]
    x, y = pool.reserves(PRICES["WETH"], PRICES["USDC"])
    amount = 10 * 10**18
    net = amount * (10**6 - fee) // 10**6
    assert pool.amount_out(amount, True, PRICES["WETH"], PRICES["USDC"]) == net * y // (x + net)


def test_price_impact_grows_with_size_over_depth() -> None:
    m = market(depth=10_000_000.0)
    implied = {q: q * 3000 // 10**12 for q in (10**18, 10 * 10**18, 100 * 10**18)}  # USDC units

    def impact_bps(q: int) -> float:
        (quote,) = m.quotes([(WETH, USDC, q)], PRICES)
        assert quote.amount_out is not None
        return (1 - quote.amount_out / implied[q]) * 1e4 - 30  # less the 0.3% fee

    small, mid, big = impact_bps(10**18), impact_bps(10 * 10**18), impact_bps(100 * 10**18)
    # Constant product: impact ~ trade / depth ($3k, $30k, $300k into $10M a side).
    assert small == pytest.approx(3, abs=0.5)
    assert mid == pytest.approx(30, rel=0.05)
    assert big == pytest.approx(300, rel=0.05)
    deeper = market(depth=100_000_000.0)
    (q,) = deeper.quotes([(WETH, USDC, 100 * 10**18)], PRICES)
    assert q.amount_out is not None and q.amount_out > 0


def test_quotes_come_back_per_pool_and_execution_needs_the_matching_pool() -> None:
    m = Market(
        ASSETS,
        [
            PoolSpec("WETH", "USDC", Venue.V3, 500, depth_usd=1e7),
            PoolSpec("WETH", "USDC", Venue.V2, depth_usd=1e7),
        ],
        PRICES,
    )
    quotes = m.quotes([(USDC, WETH, 1000 * 10**6)], PRICES)
    assert sorted((q.venue, q.fee) for q in quotes) == [(Venue.V3, 500), (Venue.V2, 0)]
    v3 = next(q for q in quotes if q.venue is Venue.V3)
    step = Step(Venue.V3, v3.router, USDC, WETH, 500, 1000 * 10**6, 1)
    assert m.execute(step, PRICES).amount_out == v3.amount_out
    assert m.execute(step, PRICES).fee_in == 1000 * 10**6 * 500 // 10**6
    with pytest.raises(MarketError, match="no simulated pool"):
        m.execute(Step(Venue.V3, v3.router, USDC, WETH, 3000, 10**6, 1), PRICES)


def test_a_pool_needs_depth_or_liquidity() -> None:
    with pytest.raises(MarketError, match="depth_usd"):
        Market(ASSETS, [PoolSpec("WETH", "USDC")], PRICES)
    with pytest.raises(MarketError, match="not a vault asset"):
        Market(ASSETS, [PoolSpec("WETH", "DAI", depth_usd=1.0)], PRICES)


def test_the_committed_calibration_is_a_measured_fit() -> None:
    data = json.loads(CALIBRATION_FILE.read_text())
    cal = load_calibration()
    assert cal.base_units == data["gas"]["base_units"] > 50_000
    assert 30_000 < cal.per_swap_units == data["gas"]["per_swap_units"] < 300_000
    assert data["fit"]["r2"] > 0.95
    # Every measured rebalance is within 10% of the fitted line.
    for case in data["cases"]:
        assert case["gas_used"] == pytest.approx(cal.gas_model.units(case["swaps"]), rel=0.1)


def test_gas_prices_are_integer_wei() -> None:
    gas = GasCosts(GasModel(100_000, 50_000), priority_fee_gwei=Decimal("1.5"))
    assert gas.base_fee_wei(20.5) == 20_500_000_000
    assert gas.priority_fee_wei == 1_500_000_000
    assert gas.cap_wei == 300 * 10**9
