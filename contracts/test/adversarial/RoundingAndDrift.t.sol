// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {MockV3Aggregator} from "../../src/world/MockV3Aggregator.sol";
import {TestToken} from "../../src/world/TestToken.sol";
import {AdvWorld} from "./AdvWorld.sol";

/// @notice Attack 5, floored drift creep: on v1 the drift rule compared floored bps, so each call
/// could raise drift by < 1 bps. v2 compares exactly and per asset.
contract DriftCreepTest is AdvWorld {
    function setUp() public {
        _deployWorld();
    }

    /// At target, selling $25 of WETH into USDC through the honest pinned pool raises drift by
    /// ~0.5 bps: v1's floored comparison saw 0 -> 0 and let it through. v2 compares exactly and
    /// refuses it with DriftIncreased (judged before NotTowardTarget, see the vault's _judge);
    /// the floored figures in the error are both 0, which is the point.
    function test_driftCreep_subBpsMoveAwayFromTarget_DriftIncreased() public {
        uint256 amountIn = 0.0125e18; // $25 = 0.25 bps of the vault
        vm.assertGe(_quoteV3(weth, usdc, HONEST_FEE, amountIn), _floor(weth, usdc, amountIn), "fill under floor");
        bytes memory err =
            _expectRefused(_steps(_v3(weth, usdc, HONEST_FEE, amountIn)), IRebalancingVault.DriftIncreased.selector);
        (uint256 driftBefore, uint256 driftAfter) = abi.decode(_args(err), (uint256, uint256));
        vm.assertEq(driftBefore, 0, "floored drift before");
        vm.assertEq(driftAfter, 0, "floored drift after: the creep is under 1 bps");
    }

    /// ETH +10%: USDC is under target. The attacker solves the WETH sale so USDC ends $20 past
    /// its target (0.2 bps of the vault): refused for USDC.
    function test_driftCreep_overshootTargetByUnderOneBps_NotTowardTarget() public {
        feeds[0].updateAnswer(2200e8);
        _moveHonestPoolToOracle();
        (uint256[] memory b, uint256 total) = _vaultValues();
        uint256 wanted = total * 2000 / BPS - b[3] + 20e18; // USDC's deficit + $20
        uint256 amountIn = _amountForUsd(weth, wanted);
        for (uint256 it = 0; it < 3; it++) {
            uint256 got = _usd(usdc, _quoteV3(weth, usdc, HONEST_FEE, amountIn));
            amountIn = amountIn * wanted / got;
        }
        uint256 fill = _usd(usdc, _quoteV3(weth, usdc, HONEST_FEE, amountIn));
        vm.assertGt(b[3] + fill, total * 2000 / BPS, "solver: USDC ends past its target");
        vm.assertLt(b[3] + fill - total * 2000 / BPS, total / BPS, "solver: by less than 1 bps");
        bytes memory err =
            _expectRefused(_steps(_v3(weth, usdc, HONEST_FEE, amountIn)), IRebalancingVault.NotTowardTarget.selector);
        (uint256 i,,,) = abi.decode(_args(err), (uint256, uint256, uint256, uint256));
        vm.assertEq(i, 3, "USDC went past its target");
    }

    /// The same trade solved to stop $20 short of USDC's target is accepted: the rule is exact,
    /// not a blunt refusal.
    function test_driftCreep_stoppingShortOfTarget_accepted() public {
        feeds[0].updateAnswer(2200e8);
        _moveHonestPoolToOracle();
        (uint256[] memory b, uint256 total) = _vaultValues();
        uint256 wanted = total * 2000 / BPS - b[3] - 20e18;
        uint256 amountIn = _amountForUsd(weth, wanted);
        for (uint256 it = 0; it < 3; it++) {
            uint256 got = _usd(usdc, _quoteV3(weth, usdc, HONEST_FEE, amountIn));
            amountIn = amountIn * wanted / got;
        }
        uint256 driftBefore = vault.driftBps();
        (bool ok, bytes memory err) = _send(_steps(_v3(weth, usdc, HONEST_FEE, amountIn)));
        vm.assertTrue(ok, string(err));
        vm.assertLt(vault.driftBps(), driftBefore, "drift fell");
    }

    function _moveHonestPoolToOracle() internal {
        (TestToken t0, TestToken t1) = address(weth) < address(usdc) ? (weth, usdc) : (usdc, weth);
        uint160 target = uint160(_sqrtPriceX96(t0, t1, 1e18));
        address pool = vault.pinnedVenues()[0].pool;
        (bool ok, bytes memory ret) = pool.staticcall(abi.encodeWithSignature("slot0()"));
        require(ok, "slot0");
        uint160 current = abi.decode(ret, (uint160));
        if (target > current) lp.swapV3(address(t1), address(t0), HONEST_FEE, 1e30, target);
        else lp.swapV3(address(t0), address(t1), HONEST_FEE, 1e30, target);
    }
}

/// @notice Attack 4, coarse decimals: a 0-decimal token worth $60,000. On v1 the floor of a
/// $6,000 purchase rounded to 0, so minAmountOut = 0 passed and the vault paid for nothing.
contract CoarseDecimalsTest is AdvWorld {
    TestToken internal big;

    function setUp() public {
        vm.warp(T0);
        vm.roll(1000);
        big = new TestToken("Big Unit", "BIG", 0);
        usdc = new TestToken("USD Coin", "USDC", 6);
        tokens.push(big);
        tokens.push(usdc);
        feeds.push(new MockV3Aggregator(8, 60_000e8));
        feeds.push(new MockV3Aggregator(8, 1e8));
        weth = big; // the routers' WETH9 slot: unused by token-to-token swaps
        _deployUniswap();
        IRebalancingVault.Asset[] memory assets = new IRebalancingVault.Asset[](2);
        assets[0] = IRebalancingVault.Asset(address(big), address(feeds[0]), 3600, 5000);
        assets[1] = IRebalancingVault.Asset(address(usdc), address(feeds[1]), 86_400, 5000);
        vault = _deployVault(assets, 1, _limits());
        big.mint(address(vault), 5); // $300k
        usdc.mint(address(vault), 700_000e6); // USDC over target: buying BIG is toward target
        _fund(lp, 1e9);
        _fund(attacker, 1e9);
        _seedV3(lp, usdc, big, HONEST_FEE, 1e18, 50_000_000e18, false);
        _pin(IRebalancingVault.Venue.V3, v3Router, big, usdc, HONEST_FEE);
    }

    /// $6,000 of USDC for BIG: the oracle output is 0.1 BIG, its floor rounds down to 0.
    function test_coarseDecimals_buyForNothing_ZeroFloor() public {
        uint256 amountIn = 6000e6;
        IRebalancingVault.Step memory step = _v3(usdc, big, HONEST_FEE, amountIn);
        step.minAmountOut = 0;
        bytes memory err = _expectRefused(_steps(step), IRebalancingVault.ZeroFloor.selector);
        vm.assertEq(
            keccak256(err), keccak256(abi.encodeWithSelector(IRebalancingVault.ZeroFloor.selector, 0, amountIn)), "args"
        );
    }

    /// Just under the amount whose floor reaches 1 BIG ($60,606.06 at 100 bps): still ZeroFloor,
    /// whatever minAmountOut says (also with KEEP, where the vault sets the minimum itself).
    function test_coarseDecimals_justUnderOneUnitFloor_ZeroFloor() public {
        uint256 amountIn = 60_606e6;
        _expectRefused(_steps(_v3(usdc, big, HONEST_FEE, amountIn)), IRebalancingVault.ZeroFloor.selector);
        uint256 keep = usdc.balanceOf(address(vault)) - amountIn;
        _expectRefused(
            _steps(
                IRebalancingVault.Step(
                    IRebalancingVault.Venue.V3, v3Router, address(usdc), address(big), HONEST_FEE, KEEP + keep, 0
                )
            ),
            IRebalancingVault.ZeroFloor.selector
        );
    }

    /// A minimum of 0 where the floor is 1 BIG: MinOutTooLow with the exact, rounded-up floor.
    function test_coarseDecimals_zeroMinimumOnRealFloor_MinOutTooLow() public {
        uint256 amountIn = 61_000e6; // oracle 1.0167 BIG, floor 1.0065 -> rounded up to 2
        IRebalancingVault.Step memory step = _v3(usdc, big, HONEST_FEE, amountIn);
        vm.assertEq(step.minAmountOut, 2, "the floor rounds up");
        step.minAmountOut = 0;
        bytes memory err = _expectRefused(_steps(step), IRebalancingVault.MinOutTooLow.selector);
        vm.assertEq(
            keccak256(err), keccak256(abi.encodeWithSelector(IRebalancingVault.MinOutTooLow.selector, 0, 0, 2)), "args"
        );
    }

    /// With the floor rounded up, paying $61,000 needs 2 BIG back (a $120k fill no honest pool
    /// gives): the vault refuses rather than take 1 BIG for $61,000.
    function test_coarseDecimals_floorRoundsUp_refusesOverpaying() public {
        uint256 amountIn = 61_000e6;
        uint256 snap = vm.snapshotState();
        (, uint256 out) = attacker.swapV3(address(usdc), address(big), HONEST_FEE, amountIn, 0);
        vm.revertToState(snap);
        vm.assertEq(out, 1, "the pool gives 1 BIG");
        (bool ok, bytes memory err) = _send(_steps(_v3(usdc, big, HONEST_FEE, amountIn)));
        vm.assertFalse(ok, "vault took 1 BIG for $61,000");
        vm.assertEq(
            keccak256(err),
            keccak256(abi.encodeWithSelector(IRebalancingVault.InsufficientOutput.selector, 0, 1, 2)),
            "the vault measures 1 BIG against its floor of 2"
        );
    }

    /// What rounding leaves the attacker: a purchase must bring back the rounded-up floor in
    /// whole units, so the best case is $121,000 for 2 BIG ($120,000; floor 1.9965 -> 2).
    /// Accepted; the loss is under maxSlippageBps of the trade.
    function test_coarseDecimals_bestCase_lossAtMostSlippage() public {
        uint256 amountIn = 121_000e6;
        uint256 valueBefore = _vaultValue();
        (bool ok, bytes memory err) = _send(_steps(_v3(usdc, big, HONEST_FEE, amountIn)));
        vm.assertTrue(ok, string(err));
        vm.assertEq(big.balanceOf(address(vault)), 7, "2 BIG bought");
        uint256 loss = valueBefore - _vaultValue();
        _log("coarse decimals: loss on a two-unit purchase (USD)", loss / 1e18);
        vm.assertLe(loss, _usd(usdc, amountIn) * SLIPPAGE_BPS / BPS, "lost more than maxSlippageBps of the trade");
    }
}
