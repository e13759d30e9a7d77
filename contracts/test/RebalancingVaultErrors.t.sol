// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {RebalancingVault} from "../src/RebalancingVault.sol";
import {IRebalancingVault} from "../src/interfaces/IRebalancingVault.sol";
import {MockV3Aggregator} from "../src/world/MockV3Aggregator.sol";
import {TestToken} from "../src/world/TestToken.sol";
import {GreedyToken} from "./mocks/GreedyToken.sol";
import {MisbehavingRouter} from "./mocks/MisbehavingRouter.sol";
import {MockRouter} from "./mocks/MockRouter.sol";
import {VaultFixture} from "./utils/VaultFixture.sol";

/// @notice Every guard fires with its own error and the exact arguments. (NotOwner, NotKeeper and
/// NotGuardianOrOwner are covered in RebalancingVaultRoles.t.sol.)
contract RebalancingVaultErrorsTest is VaultFixture {
    IRebalancingVault.Venue internal constant V2 = IRebalancingVault.Venue.V2;
    IRebalancingVault.Venue internal constant V3 = IRebalancingVault.Venue.V3;

    function setUp() public {
        _deployWorld();
    }

    // ---------------------------------------------------------------- helpers

    function _expectRebalanceRevert(IRebalancingVault.Step[] memory steps, bytes memory err) internal {
        vm.prank(keeper);
        vm.expectRevert(err);
        vault.rebalance(steps, block.timestamp);
    }

    function _wethToUsdc() internal view returns (IRebalancingVault.Step[] memory) {
        return _one(_step(address(router), weth, usdc, 1e18));
    }

    /// @dev ETH +25%: the vault is overweight WETH, and selling 8 WETH for USDC is a good step.
    function _goodRebalance() internal {
        ethFeed.updateAnswer(2500e8);
        _rebalanceAsKeeper(_one(_step(address(router), weth, usdc, 8e18)));
    }

    function _deploy(
        IRebalancingVault.Asset[] memory assets,
        uint256 quoteIndex,
        IRebalancingVault.Limits memory limits
    ) internal returns (RebalancingVault) {
        return new RebalancingVault(owner, keeper, guardian, assets, quoteIndex, limits);
    }

    function _badConfig(string memory reason) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IRebalancingVault.BadConfig.selector, reason);
    }

    // ---------------------------------------------------------------- rebalance preconditions

    function test_VaultPaused() public {
        vm.prank(guardian);
        vault.pause();
        _expectRebalanceRevert(_wethToUsdc(), abi.encodeWithSelector(IRebalancingVault.VaultPaused.selector));
    }

    function test_DeadlinePassed() public {
        IRebalancingVault.Step[] memory steps = _wethToUsdc();
        vm.prank(keeper);
        vm.expectRevert(
            abi.encodeWithSelector(IRebalancingVault.DeadlinePassed.selector, block.timestamp - 1, block.timestamp)
        );
        vault.rebalance(steps, block.timestamp - 1);
    }

    function test_CooldownActive() public {
        _goodRebalance();
        vm.warp(T0 + COOLDOWN_S - 1);
        _expectRebalanceRevert(
            _wethToUsdc(),
            abi.encodeWithSelector(IRebalancingVault.CooldownActive.selector, T0 + COOLDOWN_S, T0 + COOLDOWN_S - 1)
        );
    }

    function test_NoSteps() public {
        _expectRebalanceRevert(
            new IRebalancingVault.Step[](0), abi.encodeWithSelector(IRebalancingVault.NoSteps.selector)
        );
    }

    function test_TooManySteps() public {
        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](MAX_STEPS + 1);
        for (uint256 i = 0; i < steps.length; i++) {
            steps[i] = _step(address(router), weth, usdc, 1e18);
        }
        _expectRebalanceRevert(steps, abi.encodeWithSelector(IRebalancingVault.TooManySteps.selector, 5, MAX_STEPS));
    }

    // ---------------------------------------------------------------- per-step guards

    /// A router nobody pinned: refused with the step's venue fields.
    function test_VenueNotPinned_unknownRouter() public {
        MockRouter other = _newRouter();
        _expectRebalanceRevert(
            _one(_step(address(other), weth, usdc, 1e18)),
            abi.encodeWithSelector(
                IRebalancingVault.VenueNotPinned.selector, 0, V3, address(other), address(weth), address(usdc), FEE
            )
        );
    }

    /// Pins are per venue: the router's V3 pool for the pair stays reachable, its V2 pair not.
    function test_VenueNotPinned_wrongVenue() public {
        vm.prank(owner);
        vault.unpinVenue(V2, address(router), address(usdc), address(weth), 0);
        IRebalancingVault.Step memory s = _step(address(router), weth, usdc, 1e18);
        s.venue = V2;
        s.fee = 0;
        _expectRebalanceRevert(
            _one(s),
            abi.encodeWithSelector(
                IRebalancingVault.VenueNotPinned.selector, 0, V2, address(router), address(weth), address(usdc), 0
            )
        );
    }

    /// Pins are per fee tier: a pool at another tier of the same pair (a stranger's, say) is not
    /// reachable even on the pinned router and even if it exists on the router's factory.
    function test_VenueNotPinned_otherFeeTier() public {
        router.factory().createPool(address(weth), address(usdc), 500);
        IRebalancingVault.Step memory s = _step(address(router), weth, usdc, 1e18);
        s.fee = 500;
        _expectRebalanceRevert(
            _one(s),
            abi.encodeWithSelector(
                IRebalancingVault.VenueNotPinned.selector, 0, V3, address(router), address(weth), address(usdc), 500
            )
        );
    }

    /// The second step's venue is the one reported.
    function test_VenueNotPinned_pointsAtTheStep() public {
        vm.prank(owner);
        vault.unpinVenue(V3, address(router), address(link), address(wbtc), FEE);
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](2);
        steps[0] = _step(address(router), weth, usdc, 1e18);
        steps[1] = _step(address(router), wbtc, link, 1e6);
        _expectRebalanceRevert(
            steps,
            abi.encodeWithSelector(
                IRebalancingVault.VenueNotPinned.selector, 1, V3, address(router), address(wbtc), address(link), FEE
            )
        );
    }

    function test_UnknownAsset() public {
        TestToken dai = new TestToken("Dai", "DAI", 18);
        IRebalancingVault.Step memory s = _step(address(router), weth, usdc, 1e18);
        s.tokenOut = address(dai);
        _expectRebalanceRevert(_one(s), abi.encodeWithSelector(IRebalancingVault.UnknownAsset.selector, address(dai)));
        s.tokenOut = address(usdc);
        s.tokenIn = address(dai);
        _expectRebalanceRevert(_one(s), abi.encodeWithSelector(IRebalancingVault.UnknownAsset.selector, address(dai)));
    }

    function test_SameToken() public {
        IRebalancingVault.Step memory s = _step(address(router), weth, usdc, 1e18);
        s.tokenOut = address(weth);
        _expectRebalanceRevert(_one(s), abi.encodeWithSelector(IRebalancingVault.SameToken.selector, address(weth)));
    }

    /// The step index in the error points at the offending step, not the first.
    function test_ZeroAmount() public {
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](2);
        steps[0] = _step(address(router), weth, usdc, 1e18);
        steps[1] = _step(address(router), weth, usdc, 0);
        _expectRebalanceRevert(steps, abi.encodeWithSelector(IRebalancingVault.ZeroAmount.selector, 1));
    }

    function test_BadFeeTier_v2NeedsZero() public {
        IRebalancingVault.Step memory s = _step(address(router), weth, usdc, 1e18);
        s.venue = V2; // fee stays 3000
        _expectRebalanceRevert(_one(s), abi.encodeWithSelector(IRebalancingVault.BadFeeTier.selector, 0, 3000));
    }

    function test_BadFeeTier_v3UnknownTier() public {
        uint24[3] memory bad = [uint24(0), 2500, 10_001];
        for (uint256 i = 0; i < bad.length; i++) {
            IRebalancingVault.Step memory s = _step(address(router), weth, usdc, 1e18);
            s.fee = bad[i];
            _expectRebalanceRevert(_one(s), abi.encodeWithSelector(IRebalancingVault.BadFeeTier.selector, 0, bad[i]));
        }
    }

    function test_MinOutTooLow() public {
        IRebalancingVault.Step memory s = _step(address(router), weth, usdc, 1e18);
        uint256 requiredMin = s.minAmountOut; // 2000 USDC less 1% = 1980e6
        vm.assertEq(requiredMin, 1980e6, "fixture requiredMin");
        s.minAmountOut = requiredMin - 1;
        _expectRebalanceRevert(
            _one(s), abi.encodeWithSelector(IRebalancingVault.MinOutTooLow.selector, 0, requiredMin - 1, requiredMin)
        );
    }

    /// A router that pays below the minimum without reverting (and reports the minimum as paid).
    function test_InsufficientOutput() public {
        MisbehavingRouter bad = new MisbehavingRouter(MisbehavingRouter.Mode.IgnoreMinimum, vault);
        _wireRouter(bad);
        bad.setHaircut(500);
        _pinAll(bad);
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step memory s = _step(address(bad), weth, usdc, 1e18); // min 2475 USDC
        _expectRebalanceRevert(
            _one(s), abi.encodeWithSelector(IRebalancingVault.InsufficientOutput.selector, 0, 2375e6, 2475e6)
        );
    }

    /// Only reachable with a token that takes more than the transfer amount from the payer.
    function test_InputOverspent() public {
        GreedyToken greedy = new GreedyToken();
        MockV3Aggregator greedyFeed = new MockV3Aggregator(8, 1e8);
        IRebalancingVault.Asset[] memory assets = new IRebalancingVault.Asset[](2);
        assets[0] = IRebalancingVault.Asset(address(greedy), address(greedyFeed), 3600, 5000);
        assets[1] = IRebalancingVault.Asset(address(usdc), address(usdcFeed), 3600, 5000);
        vault = _deploy(assets, 1, _limits());
        greedy.mint(address(vault), 100e18);
        router.setFeed(address(greedy), greedyFeed);
        _pin(router, V3, greedy, usdc, FEE);

        IRebalancingVault.Step memory s =
            IRebalancingVault.Step(V3, address(router), address(greedy), address(usdc), FEE, 10e18, 9.9e6);
        _expectRebalanceRevert(
            _one(s), abi.encodeWithSelector(IRebalancingVault.InputOverspent.selector, 0, 10e18 + 1, 10e18)
        );
    }

    // ---------------------------------------------------------------- batch guards

    /// At target, selling all WETH at a 0.9% haircut passes each step's 1% slippage check but
    /// loses 36 bps of the vault, above a 10 bps loss limit.
    function test_ValueLoss() public {
        vm.prank(owner);
        vault.setLimits(IRebalancingVault.Limits(MAX_SLIPPAGE_BPS, 10, MAX_LOSS_BPS_PER_WINDOW, COOLDOWN_S, MAX_STEPS));
        router.setHaircut(90);
        _expectRebalanceRevert(
            _one(_step(address(router), weth, usdc, 200e18)),
            abi.encodeWithSelector(IRebalancingVault.ValueLoss.selector, 1_000_000e18, 996_400e18, 999_000e18)
        );
    }

    /// At target any swap moves weights away: 1 WETH ($2000 of $1M) to USDC is 20 + 20 bps.
    function test_DriftIncreased() public {
        _expectRebalanceRevert(_wethToUsdc(), abi.encodeWithSelector(IRebalancingVault.DriftIncreased.selector, 0, 40));
    }

    // ---------------------------------------------------------------- feed guards

    function test_InvalidPrice_zeroAndNegative() public {
        ethFeed.updateAnswer(0);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.InvalidPrice.selector, address(ethFeed), int256(0)));
        vault.totalValue();
        ethFeed.updateAnswer(-5);
        _expectRebalanceRevert(
            _wethToUsdcRaw(),
            abi.encodeWithSelector(IRebalancingVault.InvalidPrice.selector, address(ethFeed), int256(-5))
        );
    }

    /// A step built without reading the (broken) feed.
    function _wethToUsdcRaw() internal view returns (IRebalancingVault.Step[] memory) {
        return _one(IRebalancingVault.Step(V3, address(router), address(weth), address(usdc), FEE, 1e18, 1));
    }

    function test_StalePrice_old() public {
        vm.warp(T0 + 3601); // WETH and WBTC heartbeats are 3600 s; WETH is read first
        bytes memory err =
            abi.encodeWithSelector(IRebalancingVault.StalePrice.selector, address(ethFeed), T0, 3600, T0 + 3601);
        vm.expectRevert(err);
        vault.weights();
        _expectRebalanceRevert(_wethToUsdcRaw(), err);
    }

    /// Exactly at the heartbeat the answer is still fresh.
    function test_StalePrice_boundaryIsFresh() public {
        vm.warp(T0 + 3600);
        vm.assertEq(vault.totalValue(), 1_000_000e18, "value");
    }

    function test_StalePrice_zeroUpdatedAt() public {
        linkFeed.updateRoundData(7, 20e18, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.StalePrice.selector, address(linkFeed), 0, 86_400, T0));
        vault.driftBps();
    }

    function test_FuturePrice() public {
        usdcFeed.updateRoundData(7, 1e8, T0 + 1, T0 + 1);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.FuturePrice.selector, address(usdcFeed), T0 + 1, T0));
        vault.totalValue();
        _expectRebalanceRevert(
            _wethToUsdcRaw(),
            abi.encodeWithSelector(IRebalancingVault.FuturePrice.selector, address(usdcFeed), T0 + 1, T0)
        );
    }

    /// A shut-down feed reverts; the vault bubbles that up and never falls back to a default.
    function test_feedRevertBubblesUp() public {
        btcFeed.setBroken(true);
        vm.expectRevert(bytes("feed shut down"));
        vault.totalValue();
        _expectRebalanceRevert(_wethToUsdcRaw(), bytes("feed shut down"));
    }

    // ---------------------------------------------------------------- owner config guards

    function test_BadTargets_setTargets() public {
        uint16[] memory targets = new uint16[](4);
        targets[0] = 4000;
        targets[1] = 3000;
        targets[2] = 1000;
        targets[3] = 1999;
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.BadTargets.selector, 9999));
        vault.setTargets(targets);
    }

    function test_BadTargets_constructor() public {
        IRebalancingVault.Asset[] memory assets = _assets();
        assets[0].targetBps = 4001;
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.BadTargets.selector, 10_001));
        _deploy(assets, 3, _limits());
    }

    /// Every owner-set limit has a hard cap, and the error names the rule broken.
    function test_BadLimits() public {
        IRebalancingVault.Limits[5] memory bad = [
            IRebalancingVault.Limits(501, 50, 200, 0, 4),
            IRebalancingVault.Limits(100, 301, 500, 0, 4),
            IRebalancingVault.Limits(100, 50, 501, 0, 4),
            IRebalancingVault.Limits(100, 60, 50, 0, 4),
            IRebalancingVault.Limits(100, 50, 200, 0, 0)
        ];
        string[5] memory reasons = [
            "maxSlippageBps above MAX_SLIPPAGE_BPS (500)",
            "maxLossBps above MAX_LOSS_BPS (300)",
            "maxLossBpsPerWindow above MAX_LOSS_BPS_PER_WINDOW (500)",
            "maxLossBps above maxLossBpsPerWindow",
            "maxSteps must be at least 1"
        ];
        for (uint256 i = 0; i < bad.length; i++) {
            bytes memory err = abi.encodeWithSelector(IRebalancingVault.BadLimits.selector, reasons[i]);
            vm.prank(owner);
            vm.expectRevert(err);
            vault.setLimits(bad[i]);
            vm.expectRevert(err);
            _deploy(_assets(), 3, bad[i]);
        }
        vm.prank(owner);
        vault.setLimits(IRebalancingVault.Limits(500, 300, 500, 0, 1)); // the edges are allowed
        vm.assertEq(vault.getLimits().maxLossBpsPerWindow, 500, "edge limits stored");
    }

    function test_BadConfig_owner() public {
        vm.startPrank(owner);
        vm.expectRevert(_badConfig("owner is the zero address"));
        vault.transferOwnership(address(0));
        vm.expectRevert(_badConfig("router is the zero address"));
        vault.pinVenue(V3, address(0), address(weth), address(usdc), FEE);
        vm.expectRevert(_badConfig("withdraw to the zero address"));
        vault.withdraw(address(weth), address(0), 1);
        vm.expectRevert(_badConfig("targets length must equal asset count"));
        vault.setTargets(new uint16[](3));
        vm.expectRevert(_badConfig("asset index out of range"));
        vault.setAssetFeed(4, address(ethFeed), 3600);
        vm.expectRevert(_badConfig("feed is the zero address"));
        vault.setAssetFeed(0, address(0), 3600);
        vm.expectRevert(_badConfig("heartbeat must be positive"));
        vault.setAssetFeed(0, address(ethFeed), 0);
        vm.expectRevert(_badConfig("duplicate feed"));
        vault.setAssetFeed(0, address(btcFeed), 3600);
        vm.expectRevert(); // an address that is not a feed fails its decimals() call
        vault.setAssetFeed(0, address(0xFEED), 3600);
        vm.stopPrank();
    }

    function test_BadConfig_constructor() public {
        IRebalancingVault.Asset[] memory assets = _assets();
        IRebalancingVault.Limits memory limits = _limits();

        vm.expectRevert(_badConfig("owner is the zero address"));
        new RebalancingVault(address(0), keeper, guardian, assets, 3, limits);

        IRebalancingVault.Asset[] memory single = new IRebalancingVault.Asset[](1);
        single[0] = IRebalancingVault.Asset(address(usdc), address(usdcFeed), 3600, 10_000);
        vm.expectRevert(_badConfig("need at least 2 assets"));
        _deploy(single, 0, limits);

        vm.expectRevert(_badConfig("quote index out of range"));
        _deploy(assets, 4, limits);

        assets = _assets();
        assets[1].token = address(0);
        vm.expectRevert(_badConfig("asset token is the zero address"));
        _deploy(assets, 3, limits);

        assets = _assets();
        assets[2].token = address(weth);
        vm.expectRevert(_badConfig("duplicate asset token"));
        _deploy(assets, 3, limits);

        assets = _assets();
        assets[3].feed = address(0);
        vm.expectRevert(_badConfig("feed is the zero address"));
        _deploy(assets, 3, limits);

        assets = _assets();
        assets[3].feed = address(ethFeed);
        vm.expectRevert(_badConfig("duplicate feed"));
        _deploy(assets, 3, limits);

        assets = _assets();
        assets[0].heartbeatS = 0;
        vm.expectRevert(_badConfig("heartbeat must be positive"));
        _deploy(assets, 3, limits);

        assets = _assets();
        assets[0].token = address(new TestToken("Odd", "ODD", 37));
        vm.expectRevert(_badConfig("token decimals above 36"));
        _deploy(assets, 3, limits);
    }
}
