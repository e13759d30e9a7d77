"""Values, weights and drift against a vault example computed by hand."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st
from keeper_builders import config, fresh_round

from keeper.model import AssetState, ValidPrice
from keeper.portfolio import (
    PortfolioState,
    conversion,
    implied_amount_out,
    min_amount_out,
    portfolio_state,
    tokens_for_usd18,
    value_usd18,
    vault_drift_bps,
    vault_weights_bps,
)

E18 = 10**18

# Token decimals 18/8/18/6; LINK's feed has 18 decimals, the others 8.
WETH = AssetState(
    config("WETH", decimals=18, feed_decimals=8, target_bps=4000),
    2_500000000000000000,
    fresh_round(3000_00000000, 8),
)
WBTC = AssetState(
    config("WBTC", decimals=8, feed_decimals=8, target_bps=3000), 10_000000, fresh_round(60000_00000000, 8)
)
LINK = AssetState(
    config("LINK", decimals=18, feed_decimals=18, target_bps=1000),
    100 * E18,
    fresh_round(15_500000000000000000, 18),
)
USDC = AssetState(
    config("USDC", decimals=6, feed_decimals=8, target_bps=2000), 945_000000, fresh_round(99990000, 8)
)
ASSETS = (WETH, WBTC, LINK, USDC)
PRICES = {
    a.symbol: ValidPrice(a.symbol, a.round.answer, a.round.decimals, a.round.updated_at, 1) for a in ASSETS
}


def test_values_by_hand() -> None:
    # 2.5 WETH * 3000 = 7500; 0.1 WBTC * 60000 = 6000; 100 LINK * 15.5 = 1550; 945 USDC * 0.9999 = 944.9055
    state = portfolio_state(ASSETS, PRICES)
    assert state.values_usd18 == (7500 * E18, 6000 * E18, 1550 * E18, 944_905500000000000000)
    assert state.total_usd18 == 15994_905500000000000000


def test_drift_by_hand_single_final_floor() -> None:
    # |v*1e4 - t*T| in USD: WETH 75,000,000 - 63,979,622 = 11,020,378
    #   WBTC 60,000,000 - 47,984,716.5 = 12,015,283.5; LINK |15,500,000 - 15,994,905.5| = 494,905.5
    #   USDC |9,449,055 - 31,989,811| = 22,540,756; sum 46,071,323 / 15,994.9055 = 2880.37 -> 2880
    state = portfolio_state(ASSETS, PRICES)
    assert state.drift_bps == 2880
    # The vault's weights() floor each share: 4688.99, 3751.19, 969.06, 590.75
    assert state.weights_bps == (4688, 3751, 969, 590)
    # Per-asset |w - t| are 688.99, 751.19, 30.94, 1409.25: flooring each would give 2878, so the
    # keeper must use the vault's single final floor to predict DriftIncreased exactly.
    per_asset = [
        abs(v * 10_000 - t * state.total_usd18) // state.total_usd18
        for v, t in zip(state.values_usd18, state.targets_bps, strict=True)
    ]
    assert per_asset == [688, 751, 30, 1409]
    assert sum(per_asset) == 2878


def test_exact_deviation_signs() -> None:
    state = portfolio_state(ASSETS, PRICES)
    dev = state.deviations_bps
    assert dev[0] > 0 and dev[1] > 0 and dev[2] < 0 and dev[3] < 0
    assert sum(dev, Fraction(0)) == 0
    assert int(state.exact_drift_bps) == state.drift_bps


def test_balances_override_for_predictions() -> None:
    state = portfolio_state(ASSETS, PRICES, balances={"WETH": 0, "WBTC": 0, "LINK": 0, "USDC": 1_000000})
    assert state.values_usd18 == (0, 0, 0, 999900000000000000)
    assert state.drift_bps == 16000  # all in a 20% asset: 8000 + 4000 + 3000 + 1000


def test_empty_vault_is_on_target() -> None:
    state = PortfolioState(("A", "B"), (0, 0), (5000, 5000))
    assert state.is_empty and state.drift_bps == 0 and state.weights_bps == (0, 0)
    assert state.deviations_bps == (Fraction(0), Fraction(0))
    assert vault_weights_bps([]) == ()


def test_conversions_floor_like_solidity() -> None:
    weth = PRICES["WETH"]
    assert value_usd18(1, 18, weth) == 3000  # 1 wei of WETH is 3000e-18 USD
    assert tokens_for_usd18(2999, 18, weth) == 0
    # VaultMath.convert: 1000 USDC at 0.9999 -> WETH at 3000 = 0.3333 WETH, ONE floor to the wei:
    # 1e9 * 99990000 * 10**26 / (300000000000 * 10**14) = 333300000000000000 exactly
    out = implied_amount_out(1000_000000, 6, PRICES["USDC"], 18, weth)
    assert out == 333_300000000000000
    # 1 raw WBTC unit (1e-8 BTC = 0.0006 USD) in USDC: 0.0006 USDC = 600 units; 1 USDC unit -> 0 WBTC
    assert implied_amount_out(1, 8, PRICES["WBTC"], 6, PRICES["USDC"]) == 600
    assert implied_amount_out(1, 6, PRICES["USDC"], 8, PRICES["WBTC"]) == 0
    assert min_amount_out(out, 50) == out * 9950 // 10_000
    assert vault_drift_bps([1, 2], [5000, 5000]) == 3333  # |1e4-15000| + |2e4-15000| = 10000 / 3


@given(
    amount=st.integers(0, 10**30),
    dec_in=st.integers(0, 18),
    dec_out=st.integers(0, 18),
    fdec_in=st.sampled_from([8, 18]),
    fdec_out=st.sampled_from([8, 18]),
    answer_in=st.integers(1, 10**24),
    answer_out=st.integers(1, 10**24),
)
def test_conversion_constants_give_implied_amount_out(
    amount: int, dec_in: int, dec_out: int, fdec_in: int, fdec_out: int, answer_in: int, answer_out: int
) -> None:
    price_in = ValidPrice("IN", answer_in, fdec_in, 1_700_000_000, 1)
    price_out = ValidPrice("OUT", answer_out, fdec_out, 1_700_000_000, 1)
    num, den = conversion(dec_in, price_in, dec_out, price_out)
    assert amount * num // den == implied_amount_out(amount, dec_in, price_in, dec_out, price_out)
