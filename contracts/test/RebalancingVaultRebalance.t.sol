// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {IRebalancingVault} from "../src/interfaces/IRebalancingVault.sol";
import {MockV3Aggregator} from "../src/world/MockV3Aggregator.sol";
import {TestToken} from "../src/world/TestToken.sol";
import {MisbehavingRouter} from "./mocks/MisbehavingRouter.sol";
import {VaultFixture} from "./utils/VaultFixture.sol";

/// @notice Rebalances that should work, and routers that misbehave in ways the vault must catch.
contract RebalancingVaultRebalanceTest is VaultFixture {
    function setUp() public {
        _deployWorld();
    }

    function _assertNoAllowances(address r) internal view {
        for (uint256 i = 0; i < 4; i++) {
            vm.assertEq(tokens[i].allowance(address(vault), r), 0, "allowance left to router");
        }
    }

    function _badRouter(MisbehavingRouter.Mode mode) internal returns (MisbehavingRouter bad) {
        bad = new MisbehavingRouter(mode, vault);
        _wireRouter(bad);
        _pinAll(bad);
    }

    /// ETH +25% drifts the 4-asset vault by 1090 bps; selling 24 WETH into the three underweight
    /// assets (router haircut 0.3%) brings it to 1 bp. Every figure below is exact.
    function test_happyPath_priceMoveThenRebalance() public {
        ethFeed.updateAnswer(2500e8);
        router.setHaircut(30);
        vm.assertEq(vault.totalValue(), 1_100_000e18, "value before");
        vm.assertEq(vault.driftBps(), 1090, "drift before");

        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](3);
        steps[0] = _step(address(router), weth, wbtc, 12e18); // $30k -> 0.5 WBTC at the oracle
        steps[1] = _step(address(router), weth, link, 4e18); // $10k -> 500 LINK
        steps[2] = _step(address(router), weth, usdc, 8e18); // $20k -> 20000 USDC
        vm.assertEq(steps[0].minAmountOut, 0.495e8, "min WBTC");

        vm.expectEmit(address(vault));
        emit IRebalancingVault.Swapped(0, address(weth), address(wbtc), address(router), 12e18, 0.4985e8, 0.495e8);
        vm.expectEmit(address(vault));
        emit IRebalancingVault.Swapped(1, address(weth), address(link), address(router), 4e18, 498.5e18, 495e18);
        vm.expectEmit(address(vault));
        emit IRebalancingVault.Swapped(2, address(weth), address(usdc), address(router), 8e18, 19_940e6, 19_800e6);
        vm.expectEmit(address(vault));
        emit IRebalancingVault.Rebalanced(1_100_000e18, 1_099_820e18, 1090, 1, 3);
        _rebalanceAsKeeper(steps);

        vm.assertEq(vault.driftBps(), 1, "drift after");
        vm.assertEq(vault.lastRebalance(), T0, "lastRebalance");
        vm.assertEq(weth.balanceOf(address(vault)), 176e18, "WETH left");
        _assertNoAllowances(address(router));
        for (uint256 i = 0; i < 4; i++) {
            vm.assertEq(tokens[i].balanceOf(keeper), 0, "keeper holds a token");
        }
    }

    /// The V2 venue pays the pinned pair and calls pair.swap, with fee 0.
    function test_v2Venue() public {
        btcFeed.updateAnswer(66_000e8); // WBTC overweight; USDC's target is now $206k
        IRebalancingVault.Step memory s = _step(address(router), wbtc, usdc, 0.05e8);
        s.venue = IRebalancingVault.Venue.V2;
        s.fee = 0;
        _rebalanceAsKeeper(_one(s));
        vm.assertEq(usdc.balanceOf(address(vault)), 203_300e6, "USDC received at the oracle rate");
        _assertNoAllowances(address(router));
    }

    /// After the cooldown the keeper may rebalance again; the boundary second is allowed. (USDC is
    /// at its target after the first step, so the second sells into WBTC.)
    function test_cooldownElapses() public {
        ethFeed.updateAnswer(2500e8);
        _rebalanceAsKeeper(_one(_step(address(router), weth, usdc, 8e18)));
        vm.warp(T0 + COOLDOWN_S);
        ethFeed.updateAnswer(2500e8); // keep the 3600 s heartbeat fresh
        btcFeed.updateAnswer(60_000e8);
        _rebalanceAsKeeper(_one(_step(address(router), weth, wbtc, 8e18)));
        vm.assertEq(vault.lastRebalance(), T0 + COOLDOWN_S, "lastRebalance");
    }

    /// Replacing a feed with one of different decimals but the same price leaves values unchanged:
    /// decimals are read from the feed, never assumed (when it is set, and again whenever its
    /// Chainlink phase changes: see RebalancingVaultStorage.t.sol).
    function test_feedDecimalsAreReadFromTheFeed() public {
        MockV3Aggregator eth18 = new MockV3Aggregator(18, 2000e18);
        vm.prank(owner);
        vault.setAssetFeed(0, address(eth18), 3600);
        vm.assertEq(vault.totalValue(), 1_000_000e18, "value with an 18-decimal ETH feed");
        vm.assertEq(vault.driftBps(), 0, "drift");
    }

    /// Weights are in asset order and in bps of the total.
    function test_weights() public {
        ethFeed.updateAnswer(2500e8);
        uint256[] memory w = vault.weights();
        vm.assertEq(w[0], 4545, "WETH 500k/1.1M");
        vm.assertEq(w[1], 2727, "WBTC");
        vm.assertEq(w[2], 909, "LINK");
        vm.assertEq(w[3], 1818, "USDC");
    }

    // ---------------------------------------------------------------- misbehaving routers

    /// A pool that asks for half and pays for all: the swap is fine for the vault, which pays only
    /// what was asked, and no allowance exists at any point.
    function test_pullLessRouter_allowanceReset() public {
        MisbehavingRouter bad = _badRouter(MisbehavingRouter.Mode.PullLess);
        ethFeed.updateAnswer(2500e8);
        _rebalanceAsKeeper(_one(_step(address(bad), weth, usdc, 8e18)));
        vm.assertEq(weth.balanceOf(address(vault)), 196e18, "only 4 WETH taken");
        _assertNoAllowances(address(bad));
    }

    /// A router that takes the input and pays nothing (claiming it paid the minimum).
    function test_payNothingRouter() public {
        MisbehavingRouter bad = _badRouter(MisbehavingRouter.Mode.PayNothing);
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step[] memory steps = _one(_step(address(bad), weth, usdc, 8e18));
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.InsufficientOutput.selector, 0, 0, 19_800e6));
        vault.rebalance(steps, block.timestamp);
    }

    /// A pool that asks for more than the step's input in its callback is refused by the callback
    /// itself (the vault never pays more than amountIn).
    function test_pullMoreRouter() public {
        MisbehavingRouter bad = _badRouter(MisbehavingRouter.Mode.PullMore);
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step[] memory steps = _one(_step(address(bad), weth, usdc, 8e18));
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.InputOverspent.selector, 0, 8e18 + 1, 8e18));
        vault.rebalance(steps, block.timestamp);
    }

    /// A router that calls back into rebalance hits the reentrancy guard.
    function test_reentrantRouter() public {
        MisbehavingRouter bad = _badRouter(MisbehavingRouter.Mode.Reenter);
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step[] memory steps = _one(_step(address(bad), weth, usdc, 8e18));
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(ReentrancyGuard.ReentrancyGuardReentrantCall.selector));
        vault.rebalance(steps, block.timestamp);
    }

    /// Mid-swap the balance sheet is half-updated, so the value views refuse to answer.
    function test_viewsRefuseDuringRebalance() public {
        MisbehavingRouter bad = _badRouter(MisbehavingRouter.Mode.ReadDuringSwap);
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step[] memory steps = _one(_step(address(bad), weth, usdc, 8e18));
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(ReentrancyGuard.ReentrancyGuardReentrantCall.selector));
        vault.rebalance(steps, block.timestamp);
    }

    /// A pause made while the batch runs (a guardian reacting mid-call) survives the batch's own
    /// final write of lastRebalance and the loss budget, and stops the next call.
    function test_pauseDuringRebalanceIsNotUndone() public {
        MisbehavingRouter bad = _badRouter(MisbehavingRouter.Mode.PauseDuringSwap);
        vm.prank(owner);
        vault.setGuardian(address(bad));
        ethFeed.updateAnswer(2500e8);
        _rebalanceAsKeeper(_one(_step(address(bad), weth, usdc, 8e18)));
        vm.assertTrue(vault.paused(), "pause kept");
        vm.assertEq(vault.lastRebalance(), T0, "rebalance recorded");
        vm.warp(T0 + COOLDOWN_S);
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step[] memory steps = _one(_step(address(router), weth, wbtc, 1e18));
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.VaultPaused.selector));
        vault.rebalance(steps, block.timestamp);
    }

    /// The deadline is inclusive: a batch sent with deadline == block.timestamp still runs.
    function test_deadlineEqualToNowIsAllowed() public {
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step[] memory steps = _one(_step(address(router), weth, usdc, 8e18));
        vm.prank(keeper);
        vault.rebalance(steps, block.timestamp); // deadline == now is still allowed
        vm.assertEq(vault.lastRebalance(), T0, "rebalanced at the deadline second");
    }

    /// The owner can withdraw any token, including one that is not a vault asset.
    function test_withdrawStrayToken() public {
        TestToken stray = new TestToken("Stray", "STR", 18);
        stray.mint(address(vault), 7e18);
        vm.prank(owner);
        vault.withdraw(address(stray), owner, 7e18);
        vm.assertEq(stray.balanceOf(owner), 7e18, "recovered");
    }
}
