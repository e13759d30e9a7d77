"""The keeper's replay of the vault v2 rules refuses what the vault refuses (keeper/vault_rules.py)."""

from __future__ import annotations

import itertools

from keeper_builders import four_asset_after_weth_rally, prices_of

from keeper.model import BPS, KEEP_FLAG, RefusalCode, Step, Venue
from keeper.portfolio import value_usd18
from keeper.vault_rules import (
    RuleAsset,
    RuleLimits,
    Violation,
    judge,
    replay,
    replay_corners,
    vault_min_out,
    zero_floor,
)

LIMITS = RuleLimits(max_slippage_bps=100, max_loss_bps=150, budget_remaining=300 * 10**14)


def _assets() -> list[RuleAsset]:
    snap = four_asset_after_weth_rally()
    p = prices_of(snap)
    return [
        RuleAsset(a.symbol, a.config.token, a.config.decimals, p[a.symbol], a.balance, a.config.target_bps)
        for a in snap.assets
    ]


def _gross(assets: list[RuleAsset], spent: dict[str, int]) -> int:
    return sum(value_usd18(spent[a.symbol], a.decimals, a.price) for a in assets if a.symbol in spent)


def test_churn_losing_every_asset_the_same_fraction_is_excess_turnover() -> None:
    assets = _assets()
    # Every asset ends 1% lower (weights and drift unchanged) after trading 40% of the vault around.
    after = {a.symbol: a.balance * 99 // 100 for a in assets}
    spent = {a.symbol: a.balance * 40 // 100 for a in assets}
    verdict = judge(assets, after, _gross(assets, spent), (), LIMITS)
    assert isinstance(verdict, Violation) and verdict.code is RefusalCode.EXCESS_TURNOVER


def test_an_asset_pushed_past_its_target_is_not_toward_target() -> None:
    assets = _assets()
    by = {a.symbol: a for a in assets}
    weth = by["WETH"]
    # WETH is 96k over its 464k target; selling 97k of it for WBTC leaves it 1k under target.
    # Drift still falls (1655 -> about 850 bps): only the toward-target rule catches it.
    sold = weth.balance * 97 // 560
    after = {a.symbol: a.balance for a in assets}
    after["WETH"] -= sold
    after["WBTC"] += value_usd18(sold, weth.decimals, weth.price) * 997 // 1000 * 10**8 // (40_000 * 10**18)
    verdict = judge(assets, after, _gross(assets, {"WETH": sold}), (), LIMITS)
    assert isinstance(verdict, Violation) and verdict.code is RefusalCode.NOT_TOWARD_TARGET
    assert verdict.message.startswith("WETH")


def test_a_loss_beyond_the_budget_left_is_refused_and_within_it_passes() -> None:
    assets = _assets()
    by = {a.symbol: a for a in assets}
    weth = by["WETH"]
    sold = weth.balance // 28  # 20k of WETH's 560k, toward its target; USDC stays under its own
    proceeds = value_usd18(sold, weth.decimals, weth.price) * 997 // 1000 // 10**12  # a 0.3% fee
    after = {a.symbol: a.balance for a in assets}
    after["WETH"] -= sold
    after["USDC"] += proceeds
    ok = judge(assets, after, _gross(assets, {"WETH": sold}), (), LIMITS)
    assert not isinstance(ok, Violation)
    assert 0 < ok.loss_fraction < 10**14  # 60 USD of 1.16M: about 0.5 bps
    tight = RuleLimits(100, 150, ok.loss_fraction - 1)
    refused = judge(assets, after, _gross(assets, {"WETH": sold}), (), tight)
    assert isinstance(refused, Violation) and refused.code is RefusalCode.LOSS_BUDGET_EXHAUSTED


def test_floors_are_exact_and_rounded_up_and_a_zero_floor_is_detected() -> None:
    assets = {a.symbol: a for a in _assets()}
    usdc, wbtc = assets["USDC"], assets["WBTC"]
    # 1000 USDC at 40,000 USD/BTC is 0.025 BTC = 2,500,000 sats; less 1% is 2,475,000 exactly.
    args = (usdc.decimals, usdc.price, wbtc.decimals, wbtc.price, 100)
    assert vault_min_out(1000 * 10**6, *args) == 2_475_000
    assert vault_min_out(1000 * 10**6 + 1, *args) == 2_475_001  # 2,475,000.002475: rounded up
    # One raw USDC unit buys 0.0025 sat: its floor rounds down to 0, which the vault refuses.
    assert zero_floor(1, *args) and not zero_floor(1000, *args)
    assert vault_min_out(1, *args) == 1 and BPS == 10_000


def _replay_each(assets, steps, corners, upside, symbols_of):  # type: ignore[no-untyped-def]
    """One `replay` per corner up to the first violation: what replay_corners must equal."""
    out = []
    for fills in corners:
        r = replay(assets, steps, fills, LIMITS, upside_bps=upside, symbols_of=symbols_of)
        if isinstance(r, Violation):
            return r
        out.append(r)
    return out


def test_replay_of_all_corners_at_once_equals_one_replay_per_corner() -> None:
    assets = _assets()
    by = {a.symbol: a for a in assets}
    symbols_of = {a.token.lower(): a.symbol for a in assets}
    weth, usdc, wbtc = by["WETH"], by["USDC"], by["WBTC"]
    sold = weth.balance // 28

    def step(src: RuleAsset, dst: RuleAsset, amount_in: int) -> Step:
        return Step(Venue.V3, "0x" + "11" * 20, src.token, dst.token, 500, amount_in, 0)

    usdc_keep = usdc.balance + value_usd18(sold, weth.decimals, weth.price) // 10**12 // 2
    steps = [step(weth, usdc, sold), step(usdc, wbtc, KEEP_FLAG + usdc_keep)]  # the KEEP step's input
    corners = list(itertools.product((False, True), repeat=2))  # depends on the first step's fill
    for upside in ([0, 0], [30, 30], [200, 5]):
        at_once = replay_corners(assets, steps, corners, LIMITS, upside_bps=upside, symbols_of=symbols_of)
        each = _replay_each(assets, steps, corners, upside, symbols_of)
        assert at_once == each
        if not isinstance(each, Violation):
            assert len({e.inputs for e in each}) > 1  # the KEEP step spends what the first step left
    # A corner order that revisits a prefix after leaving it; a batch the rules refuse (drift).
    mixed = [(True, False), (False, False), (True, True), (False, True)]
    assert replay_corners(
        assets, steps, mixed, LIMITS, upside_bps=[30, 30], symbols_of=symbols_of
    ) == _replay_each(assets, steps, mixed, [30, 30], symbols_of)
    greedy = [step(weth, usdc, weth.balance // 2), *steps[1:]]
    verdict = replay_corners(assets, greedy, corners, LIMITS, upside_bps=[0, 0], symbols_of=symbols_of)
    assert isinstance(verdict, Violation)
    assert verdict == _replay_each(assets, greedy, corners, [0, 0], symbols_of)
