// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {TestToken} from "../../src/world/TestToken.sol";
import {AdvWorld} from "./AdvWorld.sol";
import {IV3Pool} from "./mocks/UniswapLike.sol";

/// @notice Attack 7 (and the best that is left of attack 1): the owner has pinned the
/// attacker's fee-500 pools (the worst mistake an owner can make), and the market moves a lot:
/// ETH swings between $2000 and $2600 every minute. Every cooldown the key holder re-prices its
/// pools so each of the vault's fills lands exactly on its floor, and sends an honest-looking
/// batch that moves every asset toward its target. Each call is legal; only the rolling loss
/// budget stands between the key and the vault. The attacker reads `lossBudget()` and sizes its
/// batches to the budget left. Every accepted call's loss is recorded with its timestamp and
/// every 24 h window is checked.
contract LossBudgetTest is AdvWorld {
    uint256 internal constant CALLS = 60;
    TestToken[3] internal others;

    uint256[] internal lossAt; // timestamp of each accepted call
    uint256[] internal lossE18; // its loss as a fraction of the value before (1e18 = 100%)
    uint256 internal attackerGainUsd; // measured per call at that call's prices
    uint256 internal vaultLossUsd;
    uint256 internal refusedForBudget;

    function setUp() public {
        _deployWorld();
        others = [wbtc, link, usdc];
        for (uint256 j = 0; j < 3; j++) {
            _seedV3(attacker, weth, others[j], ATTACK_FEE, 1e18, 500_000_000e18, true);
            _pin(IRebalancingVault.Venue.V3, v3Router, weth, others[j], ATTACK_FEE);
        }
    }

    /// The world's limits (100 bps slippage, 150 per call, 500 per window), 60 calls in an hour.
    function test_lossBudget_60CallsAtTheFloor_withinWindowBudget() public {
        _attack(CALLS);
        _check(WINDOW_LOSS_BPS);
    }

    /// The most generous limits the hard caps allow (500 bps slippage, 300 per call, 500 per
    /// window): the budget runs out within the hour, and later calls are refused.
    function test_lossBudget_atTheHardCaps_60Calls_budgetStopsTheDrain() public {
        vm.prank(owner);
        vault.setLimits(IRebalancingVault.Limits(500, 300, 500, COOLDOWN_S, MAX_STEPS));
        _slippage = 500;
        _attack(CALLS);
        _check(500);
        vm.assertGt(refusedForBudget, 0, "the budget never bound: the attack was too small to test it");
    }

    /// The hour straddles the vault's epoch boundary (the account shifts "current" into
    /// "previous" there): spending on both sides still stays within every rolling window, and the
    /// vault's packed account matches ours on both sides.
    function test_lossBudget_acrossTheEpochBoundary_withinWindowBudget() public {
        vm.prank(owner);
        vault.setLimits(IRebalancingVault.Limits(500, 300, 500, COOLDOWN_S, MAX_STEPS));
        _slippage = 500;
        uint256 boundary = (block.timestamp / 86_400 + 1) * 86_400;
        vm.warp(boundary - 1800); // 30 calls before the boundary, 30 after
        _refreshFeeds();
        _attack(CALLS);
        _check(500);
        vm.assertLt(lossAt[0], boundary, "spent before the boundary");
        vm.assertGe(block.timestamp, boundary, "called after it");
    }

    /// After the budget is spent, the next day's calls are still refused until the window has
    /// rolled past the spending; two epochs later the budget is whole again.
    function test_lossBudget_resetsOnlyAfterTheWindowRolls() public {
        vm.prank(owner);
        vault.setLimits(IRebalancingVault.Limits(500, 300, 500, COOLDOWN_S, MAX_STEPS));
        _slippage = 500;
        _attack(CALLS);
        IRebalancingVault.LossBudget memory spent = vault.lossBudget();
        vm.assertLt(spent.remaining, 1e14, "budget spent (less than 1 bps left)");
        vm.warp(block.timestamp + 2 * 86_400);
        _refreshFeeds();
        IRebalancingVault.LossBudget memory fresh = vault.lossBudget();
        vm.assertEq(fresh.remaining, fresh.limit, "budget whole again two epochs later");
        uint256 acceptedBefore = lossAt.length;
        _attack(1);
        vm.assertEq(lossAt.length, acceptedBefore + 1, "a call is accepted again");
        _check(500);
    }

    // ---------------------------------------------------------------- the attacker

    uint256 internal _slippage = SLIPPAGE_BPS;

    function _attack(uint256 calls) internal {
        for (uint256 c = 0; c < calls; c++) {
            vm.warp(block.timestamp + COOLDOWN_S);
            vm.roll(block.number + 5);
            _refreshFeeds();
            feeds[0].updateAnswer(feeds[0].latestAnswer() == 2000e8 ? int256(2600e8) : int256(2000e8));
            _oneCall();
        }
    }

    function _oneCall() internal {
        (uint256[] memory b, uint256 total) = _vaultValues();
        uint256 t0 = total * 4000 / BPS;
        bool sellWeth = b[0] > t0;
        // each other asset's side of the trade: its deficit (WETH over) or excess (WETH under)
        uint256[3] memory x;
        uint256 sum;
        for (uint256 j = 0; j < 3; j++) {
            uint256 t = total * (j == 0 ? 3000 : j == 1 ? 1000 : 2000) / BPS;
            uint256 v = b[j + 1];
            if (sellWeth && t > v) x[j] = t - v;
            if (!sellWeth && v > t) x[j] = v - t;
            sum += x[j];
        }
        uint256 wethRoom = sellWeth ? b[0] - t0 : t0 - b[0];
        // scale so WETH neither passes its target nor the batch its budget
        uint256 scale = 0.999e18;
        if (sum > wethRoom) scale = scale * wethRoom / sum;
        uint256 expectedLoss = sum * scale / 1e18 * _slippage / BPS;
        uint256 remaining = vault.lossBudget().remaining * total / 1e18;
        if (expectedLoss > remaining && remaining > total / 1e6) scale = scale * remaining / expectedLoss * 99 / 100;

        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](3);
        uint256 n;
        for (uint256 j = 0; j < 3; j++) {
            if (x[j] * scale / 1e18 < 1e18) continue; // under $1: skip
            (TestToken tIn, TestToken tOut) = sellWeth ? (weth, others[j]) : (others[j], weth);
            uint256 amountIn = _amountForUsd(tIn, x[j] * scale / 1e18);
            _priceAtFloor(tIn, tOut, amountIn);
            steps[n++] = _v3f(tIn, tOut, amountIn);
        }
        assembly {
            mstore(steps, n)
        }
        if (n == 0) return;
        _sendRecorded(steps, total);
    }

    function _sendRecorded(IRebalancingVault.Step[] memory steps, uint256 total) internal {
        uint256 attackerBefore = _attackerValue();
        (bool ok, bytes memory err) = _send(steps);
        if (!ok) {
            vm.assertEq(
                bytes32(_selectorOf(err)),
                bytes32(IRebalancingVault.LossBudgetExceeded.selector),
                "refused for another reason"
            );
            refusedForBudget++;
            return;
        }
        uint256 after_ = _vaultValue();
        uint256 loss = total > after_ ? total - after_ : 0;
        lossAt.push(block.timestamp);
        lossE18.push(Math.mulDiv(loss, 1e18, total, Math.Rounding.Ceil));
        vaultLossUsd += loss;
        _checkVaultAccount();
        uint256 attackerAfter = _attackerValue();
        if (attackerAfter > attackerBefore) attackerGainUsd += attackerAfter - attackerBefore;
    }

    /// The vault's own account (lossBudget(), kept in its packed hot slot) must equal ours:
    /// the losses of accepted calls summed per epoch of LOSS_WINDOW_S (ours may differ from the
    /// vault's by a unit of rounding per call).
    function _checkVaultAccount() internal view {
        IRebalancingVault.LossBudget memory lb = vault.lossBudget();
        uint256 epoch = block.timestamp / 86_400;
        uint256 cur;
        uint256 prev;
        for (uint256 i = 0; i < lossAt.length; i++) {
            if (lossAt[i] / 86_400 == epoch) cur += lossE18[i];
            else if (lossAt[i] / 86_400 + 1 == epoch) prev += lossE18[i];
        }
        uint256 tol = lossAt.length;
        vm.assertLe(lb.spentCurrent, cur + tol, "vault's spentCurrent above ours");
        vm.assertGe(lb.spentCurrent + tol, cur, "vault's spentCurrent below ours");
        vm.assertLe(lb.spentPrevious, prev + tol, "vault's spentPrevious above ours");
        vm.assertGe(lb.spentPrevious + tol, prev, "vault's spentPrevious below ours");
        vm.assertEq(lb.epochStart, epoch * 86_400, "epochStart");
        uint256 used = lb.spentPrevious + lb.spentCurrent;
        vm.assertEq(lb.remaining, used >= lb.limit ? 0 : lb.limit - used, "remaining");
    }

    /// Moves the attacker's own pool (it is the only LP: a swap against its own liquidity costs
    /// it nothing) so that selling amountIn of tIn fills just over the vault's floor.
    function _priceAtFloor(TestToken tIn, TestToken tOut, uint256 amountIn) internal {
        uint256 floorOut = _floorAt(tIn, tOut, amountIn);
        (TestToken t0, TestToken t1) = address(tIn) < address(tOut) ? (tIn, tOut) : (tOut, tIn);
        // price ratio before the fee: (1 - slippage) / (1 - fee), then corrected from real quotes
        uint256 ratio = (BPS - _slippage) * 1e18 / BPS * 1e18 / 0.9995e18;
        address pool = _attackerPool(tIn, tOut);
        uint256 out;
        for (uint256 it = 0; it < 4; it++) {
            uint256 target = _sqrtPriceX96(t0, t1, tIn == t0 ? ratio : Math.mulDiv(1e18, 1e18, ratio));
            (uint160 current,,,,,,) = IV3Pool(pool).slot0();
            if (target > current) attacker.swapV3(address(t1), address(t0), ATTACK_FEE, 1e30, uint160(target));
            else if (target < current) attacker.swapV3(address(t0), address(t1), ATTACK_FEE, 1e30, uint160(target));
            out = _quoteV3(tIn, tOut, ATTACK_FEE, amountIn);
            if (out >= floorOut && out <= floorOut + floorOut / 5000) break;
            ratio = Math.mulDiv(ratio, floorOut, out) * 1.00005e18 / 1e18; // aim 0.5 bps over the floor
        }
        vm.assertGe(out, floorOut, "solver: fill under the floor");
        vm.assertLe(out, floorOut + floorOut / 1000, "solver: fill more than 10 bps over the floor");
    }

    function _attackerPool(TestToken a, TestToken b) internal view returns (address) {
        for (uint256 p = 0; p < attackerPools.length; p++) {
            address t0 = IV3Pool(attackerPools[p]).token0();
            address t1 = IV3Pool(attackerPools[p]).token1();
            if ((t0 == address(a) && t1 == address(b)) || (t0 == address(b) && t1 == address(a))) {
                return attackerPools[p];
            }
        }
        revert("no attacker pool");
    }

    function _floorAt(TestToken tIn, TestToken tOut, uint256 amountIn) internal view returns (uint256) {
        (uint256 aIn, uint256 sIn) = _priceOf(tIn);
        (uint256 aOut, uint256 sOut) = _priceOf(tOut);
        return Math.mulDiv(amountIn * aIn * (BPS - _slippage), sOut, aOut * sIn * BPS, Math.Rounding.Ceil);
    }

    function _v3f(TestToken tIn, TestToken tOut, uint256 amountIn)
        internal
        view
        returns (IRebalancingVault.Step memory)
    {
        return IRebalancingVault.Step(
            IRebalancingVault.Venue.V3,
            v3Router,
            address(tIn),
            address(tOut),
            ATTACK_FEE,
            amountIn,
            _floorAt(tIn, tOut, amountIn)
        );
    }

    /// Every rolling 24 h window (starting at each accepted call) sums to at most the budget;
    /// the attacker gained no more than the vault lost.
    function _check(uint256 windowBps) internal view {
        uint256 worst;
        for (uint256 i = 0; i < lossAt.length; i++) {
            uint256 sum;
            for (uint256 j = i; j < lossAt.length && lossAt[j] < lossAt[i] + 86_400; j++) {
                sum += lossE18[j];
            }
            if (sum > worst) worst = sum;
        }
        _log("accepted calls", lossAt.length);
        _log("refused for the budget", refusedForBudget);
        _log("worst 24h window loss (bps x100)", worst / 1e12);
        _log("vault loss (USD, at each call's prices)", vaultLossUsd / 1e18);
        _log("attacker gain (USD, at each call's prices)", attackerGainUsd / 1e18);
        vm.assertLe(worst, windowBps * 1e14, "a 24h window lost more than the budget");
        vm.assertLe(attackerGainUsd, vaultLossUsd + 1e18, "the attacker gained more than the vault lost");
    }
}
