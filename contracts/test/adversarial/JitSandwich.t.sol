// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {AdvWorld} from "./AdvWorld.sol";
import {IV3Factory, IV3Pool, IV3Router} from "./mocks/UniswapLike.sol";

/// @notice What the floor itself leaves the key holder: a just-in-time sandwich in an honest
/// PINNED pool. The attacker pushes the pool down, adds a large narrow position where the
/// vault's trade will fill, lets the vault's honest toward-target trade fill exactly on its
/// floor (mostly against the attacker's own liquidity, which also earns the fee), removes the
/// position and pushes the price back. Pinning cannot stop this (the pool is the honest one);
/// what bounds it is the floor per trade, toward-target (only trades the vault needs anyway)
/// and the rolling budget. Measured in a deep pool ($50M a side) and a thin one ($2M). The
/// attacker's best response to this and to each candidate rule against it is solved in
/// JitBestResponse.t.sol; why no sound rule makes it unprofitable is in docs/vault.md.
contract JitSandwichTest is AdvWorld {
    int24 internal constant FULL_RANGE = 887_220; // spacing 60
    address internal pool;

    function setUp() public {
        _deployWorld();
        pool = IV3Factory(IV3Router(v3Router).factory()).getPool(address(weth), address(usdc), HONEST_FEE);
        feeds[0].updateAnswer(2600e8); // ETH +30%: WETH over target, USDC under by $24k
    }

    /// Pushing to the floor does not pay in a deep pool: the honest LPs' fees on the push and
    /// back exceed what the vault gives up. It is not the attacker's best response there: a JIT
    /// position at the honest spot, no push, earns the fee ($70.78 on this trade,
    /// JitBestResponse.t.sol).
    function test_jitSandwich_deepPinnedPool_pushToFloorLoses() public {
        _arbHonest(weth, usdc);
        (uint256 vaultLoss, int256 attackerPnl, uint256 trade) = _run();
        _log("deep pool: vault trade (USD)", trade / 1e18);
        _log("deep pool: vault loss (USD)", vaultLoss / 1e18);
        if (attackerPnl >= 0) _log("deep pool: attacker profit (USD)", uint256(attackerPnl) / 1e18);
        else _log("deep pool: attacker loss (USD)", uint256(-attackerPnl) / 1e18);
        vm.assertLe(vaultLoss, trade * SLIPPAGE_BPS / BPS + 1e18, "vault lost more than the floor");
        vm.assertLe(attackerPnl, int256(0), "the JIT sandwich paid in a deep pool");
    }

    /// The honest LPs have left all but $2M a side: now the sandwich pays, and its profit is
    /// bounded by what the floor lets the vault lose on the trade it needed anyway.
    function test_jitSandwich_thinPinnedPool_profitBoundedByFloor() public {
        uint128 honestL = IV3Pool(pool).liquidity();
        lp.removeLiquidity(pool, -FULL_RANGE, FULL_RANGE, honestL * 24 / 25);
        _arbHonest(weth, usdc);
        (uint256 vaultLoss, int256 attackerPnl, uint256 trade) = _run();
        _log("thin pool: vault trade (USD)", trade / 1e18);
        _log("thin pool: vault loss (USD)", vaultLoss / 1e18);
        if (attackerPnl >= 0) _log("thin pool: attacker profit (USD)", uint256(attackerPnl) / 1e18);
        else _log("thin pool: attacker loss (USD)", uint256(-attackerPnl) / 1e18);
        vm.assertLe(vaultLoss, trade * SLIPPAGE_BPS / BPS + 1e18, "vault lost more than the floor");
        vm.assertLe(attackerPnl, int256(vaultLoss), "the attacker gained more than the vault lost");
        IRebalancingVault.LossBudget memory budget = vault.lossBudget();
        vm.assertLe(budget.spentCurrent, budget.limit, "within the window budget");
    }

    // ---------------------------------------------------------------- the attacker

    function _run() internal returns (uint256 vaultLoss, int256 attackerPnl, uint256 trade) {
        (uint256[] memory b, uint256 total) = _vaultValues();
        uint256 amountIn = _amountForUsd(weth, total * 2000 / BPS - b[3]); // USDC's deficit
        trade = _usd(weth, amountIn);
        IRebalancingVault.Step memory step = _v3(weth, usdc, HONEST_FEE, amountIn);
        (uint160 start,,,,,,) = IV3Pool(pool).slot0();
        int256 attackerBefore = int256(_attackerValue());

        uint160 pushTo = _solvePush(amountIn, step.minAmountOut, start);
        attacker.swapV3(address(weth), address(usdc), HONEST_FEE, 1e30, pushTo);
        (int24 lo, int24 hi, uint128 jitL) = _addJit();
        uint256 valueBefore = _vaultValue();
        (bool ok, bytes memory err) = _send(_steps(step));
        vm.assertTrue(ok, string(err));
        vaultLoss = valueBefore - _vaultValue();
        attacker.removeLiquidity(pool, lo, hi, jitL);
        _backTo(start);
        attackerPnl = int256(_attackerValue()) - attackerBefore;
    }

    /// A position 2 spacings either side of the current tick, 50x the pool's liquidity.
    function _addJit() internal returns (int24 lo, int24 hi, uint128 jitL) {
        (, int24 tick,,,,,) = IV3Pool(pool).slot0();
        int24 base = tick / 60 * 60;
        if (tick < 0 && base != tick) base -= 60;
        lo = base - 120;
        hi = base + 180;
        jitL = IV3Pool(pool).liquidity() * 50;
        attacker.addLiquidity(pool, lo, hi, jitL);
    }

    /// The deepest push (as a price limit for selling WETH) after which, with the JIT position
    /// added, the vault's sale still clears its floor: bisection with real swaps, undone.
    function _solvePush(uint256 amountIn, uint256 floorOut, uint160 start) internal returns (uint160) {
        bool wethIs0 = address(weth) < address(usdc);
        uint256 lo = start;
        uint256 hi = wethIs0 ? uint256(start) * 98 / 100 : uint256(start) * 102 / 100;
        for (uint256 it = 0; it < 32; it++) {
            uint256 mid = (lo + hi) / 2;
            uint256 snap = vm.snapshotState();
            attacker.swapV3(address(weth), address(usdc), HONEST_FEE, 1e30, uint160(mid));
            _addJit();
            (, uint256 got) = outsider.swapV3(address(weth), address(usdc), HONEST_FEE, amountIn, 0);
            vm.revertToState(snap);
            if (got >= floorOut) lo = mid;
            else hi = mid;
        }
        return uint160(lo);
    }

    function _backTo(uint160 start) internal {
        (uint160 now_,,,,,,) = IV3Pool(pool).slot0();
        address t0 = IV3Pool(pool).token0();
        address t1 = IV3Pool(pool).token1();
        if (now_ < start) attacker.swapV3(t1, t0, HONEST_FEE, 1e30, start);
        else if (now_ > start) attacker.swapV3(t0, t1, HONEST_FEE, 1e30, start);
    }
}
