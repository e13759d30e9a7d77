// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {TestToken} from "../../src/world/TestToken.sol";
import {AdvWorld} from "./AdvWorld.sol";

/// @notice Attack 1, the drain that worked on v1: every cooldown the key holder sends a 4-step
/// cycle WETH->WBTC->LINK->USDC->WETH through four V3 pools it seeded itself at fee 500 (a tier no
/// honest pool uses), each filling about 87 bps under the oracle (inside the 100 bps floor).
/// Amounts are SOLVED from the pools' real quotes so every asset loses the same fraction (weights
/// and drift do not move) and the batch loses just under maxLossBps (150). On v1, 60 such calls
/// in an hour took 59% of the vault.
contract ChurnDrainTest is AdvWorld {
    uint256 internal constant CALLS = 60;
    /// Each pool's price before its 5 bps fee, as a fraction of the oracle's (1e18 = oracle).
    uint256 internal constant POOL_RATIO = 0.9925e18;
    /// Loss per batch the attacker aims for: just under maxLossBps.
    uint256 internal constant TARGET_LOSS_E18 = (uint256(LOSS_BPS) - 2) * 1e14;

    TestToken[4] internal cycle;
    bool internal _solvedLogged;

    function setUp() public {
        _deployWorld();
        cycle = [weth, wbtc, link, usdc];
    }

    /// The attacker's four pools, each priced POOL_RATIO of the oracle for the cycle's direction.
    function _seedCycle() internal {
        for (uint256 k = 0; k < 4; k++) {
            _seedV3(attacker, cycle[k], cycle[(k + 1) % 4], ATTACK_FEE, POOL_RATIO, 500_000_000e18, true);
        }
    }

    /// (a) The pools are not pinned: the very first step is unreachable.
    function test_churnDrain_unpinnedPools_VenueNotPinned_60CallsLoseNothing() public {
        _seedCycle();
        uint256 vaultBefore = _vaultValue();
        uint256 attackerBefore = _attackerValue();
        // Solved once: a refused call changes nothing (checked by _expectRefused), so the same
        // solution is the attacker's best at every cooldown.
        IRebalancingVault.Step[] memory steps = _solvedChurn();
        for (uint256 call = 0; call < CALLS; call++) {
            bytes memory err = _expectRefused(steps, IRebalancingVault.VenueNotPinned.selector);
            (uint256 stepIndex, IRebalancingVault.Venue venue, address router, address tIn, address tOut, uint24 fee) =
                abi.decode(_args(err), (uint256, IRebalancingVault.Venue, address, address, address, uint24));
            vm.assertEq(stepIndex, 0, "refused at the first step");
            vm.assertTrue(venue == IRebalancingVault.Venue.V3, "venue");
            vm.assertEq(router, v3Router, "router");
            vm.assertEq(tIn, address(weth), "tokenIn");
            vm.assertEq(tOut, address(wbtc), "tokenOut");
            vm.assertEq(fee, ATTACK_FEE, "fee");
            _nextCooldown();
        }
        _report(vaultBefore, attackerBefore);
        vm.assertEq(_vaultValue(), vaultBefore, "the vault lost value");
        vm.assertLe(_attackerValue(), attackerBefore, "attacker profit > 0");
    }

    /// (b) Even if the owner had pinned the attacker's four pools, equal-fraction churn is refused
    /// every time with ExcessTurnover (it also moves assets that sit at their target, which
    /// NotTowardTarget would catch; the vault checks turnover first).
    function test_churnDrain_pinnedAttackerPools_equalFraction_refused60Times() public {
        _seedCycle();
        _pinAttackerPools();
        uint256 vaultBefore = _vaultValue();
        uint256 attackerBefore = _attackerValue();
        // Solved once: a refused call changes nothing (checked by _expectRefused), so the same
        // solution is the attacker's best at every cooldown.
        IRebalancingVault.Step[] memory steps = _solvedChurn();
        for (uint256 call = 0; call < CALLS; call++) {
            bytes memory err = _expectRefused(steps, IRebalancingVault.ExcessTurnover.selector);
            (uint256 gross, uint256 net) = abi.decode(_args(err), (uint256, uint256));
            if (call == 0) {
                _log("equal-fraction churn: ExcessTurnover gross (USD)", gross / 1e18);
                _log("equal-fraction churn: ExcessTurnover net (USD)", net / 1e18);
            }
            _nextCooldown();
        }
        _report(vaultBefore, attackerBefore);
        vm.assertEq(_vaultValue(), vaultBefore, "the vault lost value");
        vm.assertLe(_attackerValue(), attackerBefore, "attacker profit > 0");
    }

    /// (c) The churn hidden inside a genuine rebalance, so the toward-target rule holds exactly:
    /// ETH has risen 10%, WETH is over target and the others under. The attacker routes the
    /// cycle so WETH loses only what the batch loses, and WBTC, LINK, USDC each end a hair above
    /// where they started (toward their targets, far from past them). Only the turnover rule is
    /// left to catch it: gross ~100x net.
    function test_churnDrain_hiddenInTowardTargetRebalance_ExcessTurnover() public {
        feeds[0].updateAnswer(2200e8);
        _seedCycle(); // seeded off the new oracle
        _pinAttackerPools();
        (uint256[] memory b, uint256 total) = _vaultValues();
        // WETH's excess over target must cover the batch's loss for WETH to stay above target.
        vm.assertGt(b[0] - total * 4000 / BPS, total * TARGET_LOSS_E18 / 1e18, "setup: WETH excess covers the loss");

        // Per-asset net change (USD 1e18): the others gain 1 bps of their value, WETH pays for all.
        uint256[4] memory gain = [uint256(0), b[1] / BPS, b[2] / BPS, b[3] / BPS];
        // 100 bps, not 148: the WETH sold (gross / 4) must fit in the vault's 200 WETH.
        uint256 netPredicted = total / 100;
        (uint256[4] memory x,) = _solveCycle(gain, netPredicted);
        IRebalancingVault.Step[] memory steps = _cycleSteps(x);
        _log("hidden churn: gross input value (USD)", (x[0] + x[1] + x[2] + x[3]) / 1e18);
        _log("hidden churn: WETH net loss (USD)", netPredicted / 1e18);

        uint256 attackerBefore = _attackerValue();
        bytes memory err = _expectRefused(steps, IRebalancingVault.ExcessTurnover.selector);
        (uint256 gross, uint256 net) = abi.decode(_args(err), (uint256, uint256));
        _log("ExcessTurnover gross (USD)", gross / 1e18);
        _log("ExcessTurnover net (USD)", net / 1e18);
        vm.assertGt(gross, 2 * net, "gross reported no larger than the allowed multiple of net");
        vm.assertLe(_attackerValue(), attackerBefore, "attacker profit > 0");
    }

    // ---------------------------------------------------------------- the attacker's solver

    /// Equal-fraction churn: every asset loses the same fraction phi of its value, phi = the
    /// target loss, so weights and drift stay where they are.
    function _solvedChurn() internal returns (IRebalancingVault.Step[] memory) {
        (uint256[] memory b, uint256 total) = _vaultValues();
        uint256 phi = TARGET_LOSS_E18;
        uint256[4] memory loss = [b[0] * phi / 1e18, b[1] * phi / 1e18, b[2] * phi / 1e18, b[3] * phi / 1e18];
        (uint256[4] memory x, uint256[4] memory r) = _solveCycleLosses(loss);
        // The first step must fit in the vault's WETH: x is linear in phi, so scale phi down to
        // sell at most 99.5% of it (the solved loss is then ~140 bps, still near the limit).
        uint256 room = b[0] * 995 / 1000;
        if (x[0] > room) {
            phi = phi * room / x[0];
            loss = [b[0] * phi / 1e18, b[1] * phi / 1e18, b[2] * phi / 1e18, b[3] * phi / 1e18];
            (x, r) = _solveCycleLosses(loss);
        }
        IRebalancingVault.Step[] memory steps = _cycleSteps(x);
        _checkValidUnderPerCallRules(steps, x, r, total);
        return steps;
    }

    /// Cycle where asset k nets `gainUsd[k]` (k >= 1) and WETH pays for all of it plus `lossUsd`.
    function _solveCycle(uint256[4] memory gainUsd, uint256 lossUsd)
        internal
        returns (uint256[4] memory x, uint256[4] memory r)
    {
        // Unknown x1 (WETH sold). x2 = r1 x1 - g2, x3 = r2 x2 - g3, x4 = r3 x3 - g4; total loss
        // sum (1 - r_k) x_k = lossUsd fixes x1. Iterate: r_k are measured from the pools at x_k.
        r = [uint256(0.99e18), 0.99e18, 0.99e18, 0.99e18];
        for (uint256 it = 0; it < 4; it++) {
            // x_k = A_k x1 - B_k
            uint256[4] memory a;
            uint256[4] memory bb;
            a[0] = 1e18;
            for (uint256 k = 1; k < 4; k++) {
                a[k] = a[k - 1] * r[k - 1] / 1e18;
                bb[k] = bb[k - 1] * r[k - 1] / 1e18 + gainUsd[k];
            }
            uint256 sa;
            uint256 sb;
            for (uint256 k = 0; k < 4; k++) {
                sa += a[k] * (1e18 - r[k]) / 1e18;
                sb += bb[k] * (1e18 - r[k]) / 1e18;
            }
            uint256 x1 = (lossUsd + sb) * 1e18 / sa;
            for (uint256 k = 0; k < 4; k++) {
                x[k] = a[k] * x1 / 1e18 - bb[k];
            }
            r = _measureRatios(x);
        }
    }

    /// Cycle where asset k loses exactly lossUsd[k]: -x_k + r_{k-1} x_{k-1} = -loss_k.
    function _solveCycleLosses(uint256[4] memory lossUsd) internal returns (uint256[4] memory x, uint256[4] memory r) {
        r = [uint256(0.99e18), 0.99e18, 0.99e18, 0.99e18];
        for (uint256 it = 0; it < 4; it++) {
            // x2 = r1 x1 + l2, x3 = r2 x2 + l3, x4 = r3 x3 + l4, x1 = r4 x4 + l1 => x1 = K / (1 - R)
            uint256 rr = r[0] * r[1] / 1e18 * r[2] / 1e18 * r[3] / 1e18;
            uint256 kk = lossUsd[0] + r[3] * lossUsd[3] / 1e18 + r[3] * r[2] / 1e18 * lossUsd[2] / 1e18 + r[3] * r[2]
                / 1e18 * r[1] / 1e18 * lossUsd[1] / 1e18;
            x[0] = kk * 1e18 / (1e18 - rr);
            for (uint256 k = 1; k < 4; k++) {
                x[k] = r[k - 1] * x[k - 1] / 1e18 + lossUsd[k];
            }
            r = _measureRatios(x);
        }
    }

    /// Fill / oracle of each cycle step at its size, from the pools' real quotes.
    function _measureRatios(uint256[4] memory x) internal returns (uint256[4] memory r) {
        for (uint256 k = 0; k < 4; k++) {
            uint256 amountIn = _amountForUsd(cycle[k], x[k]);
            uint256 out = _quoteV3(cycle[k], cycle[(k + 1) % 4], ATTACK_FEE, amountIn);
            r[k] = _usd(cycle[(k + 1) % 4], out) * 1e18 / _usd(cycle[k], amountIn);
        }
    }

    function _cycleSteps(uint256[4] memory x) internal view returns (IRebalancingVault.Step[] memory steps) {
        steps = new IRebalancingVault.Step[](4);
        for (uint256 k = 0; k < 4; k++) {
            steps[k] = _v3(cycle[k], cycle[(k + 1) % 4], ATTACK_FEE, _amountForUsd(cycle[k], x[k]));
        }
    }

    /// The attack is a real one: every fill clears its floor and the batch loses just under
    /// maxLossBps, so v1's per-call guards would all have passed it.
    function _checkValidUnderPerCallRules(
        IRebalancingVault.Step[] memory steps,
        uint256[4] memory x,
        uint256[4] memory r,
        uint256 total
    ) internal {
        uint256 loss;
        for (uint256 k = 0; k < 4; k++) {
            uint256 out = _quoteV3(cycle[k], cycle[(k + 1) % 4], ATTACK_FEE, steps[k].amountIn);
            vm.assertGe(out, steps[k].minAmountOut, "solver: a fill under its floor");
            loss += x[k] * (1e18 - r[k]) / 1e18;
        }
        vm.assertLt(loss, total * LOSS_BPS / BPS, "solver: batch loses maxLossBps or more");
        vm.assertGt(loss, total * (LOSS_BPS - 15) / BPS, "solver: batch loses well under maxLossBps");
        if (!_solvedLogged) {
            _solvedLogged = true;
            _log("solved churn: gross input value (USD)", (x[0] + x[1] + x[2] + x[3]) / 1e18);
            _log("solved churn: batch loss if accepted (bps x100)", loss * 1e6 / total);
        }
    }

    function _pinAttackerPools() internal {
        for (uint256 k = 0; k < 4; k++) {
            _pin(IRebalancingVault.Venue.V3, v3Router, cycle[k], cycle[(k + 1) % 4], ATTACK_FEE);
        }
    }

    function _nextCooldown() internal {
        vm.warp(block.timestamp + COOLDOWN_S);
        vm.roll(block.number + 5);
        _refreshFeeds();
    }

    function _report(uint256 vaultBefore, uint256 attackerBefore) internal view {
        uint256 vaultAfter = _vaultValue();
        _log("vault value before (USD)", vaultBefore / 1e18);
        _log("vault loss after 60 calls (bps x100)", Math.mulDiv(vaultBefore - vaultAfter, 1e6, vaultBefore));
        uint256 attackerAfter = _attackerValue();
        _log("attacker gain (USD)", attackerAfter > attackerBefore ? (attackerAfter - attackerBefore) / 1e18 : 0);
    }
}
