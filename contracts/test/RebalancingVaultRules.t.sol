// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {RebalancingVault} from "../src/RebalancingVault.sol";
import {IRebalancingVault} from "../src/interfaces/IRebalancingVault.sol";
import {MockV3Aggregator} from "../src/world/MockV3Aggregator.sol";
import {TestToken} from "../src/world/TestToken.sol";
import {MisbehavingRouter} from "./mocks/MisbehavingRouter.sol";
import {MockRouter} from "./mocks/MockRouter.sol";
import {VaultFixture} from "./utils/VaultFixture.sol";

/// @notice The v2 rules, each with its exact error: pinned venues (roles, events, views),
/// KEEP_FLAG steps, exact floors, exact drift, toward-target, turnover, the rolling loss budget
/// and the hard caps. The fixture: $1M at target, WETH/WBTC/LINK/USDC 40/30/10/20.
contract RebalancingVaultRulesTest is VaultFixture {
    IRebalancingVault.Venue internal constant V2 = IRebalancingVault.Venue.V2;
    IRebalancingVault.Venue internal constant V3 = IRebalancingVault.Venue.V3;
    uint256 internal constant KEEP = 1 << 255;

    function setUp() public {
        _deployWorld();
    }

    function _expectRebalanceRevert(IRebalancingVault.Step[] memory steps, bytes memory err) internal {
        vm.prank(keeper);
        vm.expectRevert(err);
        vault.rebalance(steps, block.timestamp);
    }

    function _two(IRebalancingVault.Step memory a, IRebalancingVault.Step memory b)
        internal
        pure
        returns (IRebalancingVault.Step[] memory steps)
    {
        steps = new IRebalancingVault.Step[](2);
        steps[0] = a;
        steps[1] = b;
    }

    /// @dev A KEEP step: spend all of tokenIn but `keep`, with no minimum of the keeper's own.
    function _keepStep(address r, TestToken tokenIn, TestToken tokenOut, uint256 keep)
        internal
        pure
        returns (IRebalancingVault.Step memory)
    {
        return IRebalancingVault.Step(V3, r, address(tokenIn), address(tokenOut), FEE, KEEP + keep, 0);
    }

    function _sorted(address a, address b) internal pure returns (address, address) {
        return a < b ? (a, b) : (b, a);
    }

    // ---------------------------------------------------------------- caps

    function test_hardCaps() public view {
        vm.assertEq(vault.KEEP_FLAG(), 2 ** 255, "KEEP_FLAG");
        vm.assertEq(vault.MAX_SLIPPAGE_BPS(), 500, "MAX_SLIPPAGE_BPS");
        vm.assertEq(vault.MAX_LOSS_BPS(), 300, "MAX_LOSS_BPS");
        vm.assertEq(vault.MAX_LOSS_BPS_PER_WINDOW(), 500, "MAX_LOSS_BPS_PER_WINDOW");
        vm.assertEq(vault.LOSS_WINDOW_S(), 86_400, "LOSS_WINDOW_S");
    }

    // ---------------------------------------------------------------- pinned venues

    /// The owner pins a pool the router's factory has: stored with the derived pool, sorted
    /// tokens, emitted, visible in both token orders; the pin count grows by one.
    function test_pinVenue_storesDerivedPoolAndEmits() public {
        address pool = router.factory().createPool(address(wbtc), address(link), 500);
        (address t0, address t1) = _sorted(address(link), address(wbtc));
        uint256 before = vault.pinnedVenues().length;
        vm.expectEmit(address(vault));
        emit IRebalancingVault.VenuePinned(V3, address(router), pool, t0, t1, 500);
        vm.prank(owner);
        vault.pinVenue(V3, address(router), address(link), address(wbtc), 500);

        IRebalancingVault.PinnedVenue[] memory pins = vault.pinnedVenues();
        vm.assertEq(pins.length, before + 1, "one more pin");
        IRebalancingVault.PinnedVenue memory p = pins[pins.length - 1];
        vm.assertEq(p.pool, pool, "pool from the factory");
        vm.assertEq(p.router, address(router), "router");
        vm.assertEq(p.token0, t0, "token0");
        vm.assertEq(p.token1, t1, "token1");
        vm.assertEq(uint256(p.fee), 500, "fee");
        vm.assertTrue(uint8(p.venue) == uint8(V3), "venue");
        vm.assertTrue(vault.isPinned(V3, address(router), address(wbtc), address(link), 500), "isPinned a,b");
        vm.assertTrue(vault.isPinned(V3, address(router), address(link), address(wbtc), 500), "isPinned b,a");
        vm.assertFalse(vault.isPinned(V3, address(router), address(link), address(wbtc), 100), "other tier");
        vm.assertFalse(vault.isPinned(V2, address(router), address(link), address(weth), 500), "V2 with a fee");
    }

    /// What cannot be pinned, each with its reason.
    function test_pinVenue_refusals() public {
        TestToken dai = new TestToken("Dai", "DAI", 18);
        router.factory().createPool(address(dai), address(usdc), 3000);
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.UnknownAsset.selector, address(dai)));
        vault.pinVenue(V3, address(router), address(dai), address(usdc), 3000);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.SameToken.selector, address(usdc)));
        vault.pinVenue(V3, address(router), address(usdc), address(usdc), 3000);
        bytes memory badFee = abi.encodeWithSelector(
            IRebalancingVault.BadConfig.selector,
            "fee must be 100, 500, 3000 or 10000 for a V3 venue and 0 for a V2 venue"
        );
        vm.expectRevert(badFee);
        vault.pinVenue(V3, address(router), address(weth), address(usdc), 2500);
        vm.expectRevert(badFee);
        vault.pinVenue(V3, address(router), address(weth), address(usdc), 0);
        vm.expectRevert(badFee);
        vault.pinVenue(V2, address(router), address(weth), address(usdc), 3000);
        vm.expectRevert(
            abi.encodeWithSelector(
                IRebalancingVault.BadConfig.selector, "the router's factory has no pool for this pair and fee"
            )
        );
        vault.pinVenue(V3, address(router), address(weth), address(usdc), 10_000);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.BadConfig.selector, "venue already pinned"));
        vault.pinVenue(V3, address(router), address(usdc), address(weth), FEE);
        vm.expectRevert(); // an address with no factory() (an EOA) cannot be pinned
        vault.pinVenue(V3, address(0xDEAD), address(weth), address(usdc), FEE);
        vm.stopPrank();
    }

    /// Unpinning emits with the stored pool, removes exactly that pin (the others keep working)
    /// and makes the venue unreachable; unpinning twice is refused.
    function test_unpinVenue() public {
        IRebalancingVault.PinnedVenue[] memory before = vault.pinnedVenues();
        address pool = router.factory().getPool(address(weth), address(usdc), FEE);
        (address t0, address t1) = _sorted(address(weth), address(usdc));
        vm.expectEmit(address(vault));
        emit IRebalancingVault.VenueUnpinned(V3, address(router), pool, t0, t1, FEE);
        vm.prank(owner);
        vault.unpinVenue(V3, address(router), address(weth), address(usdc), FEE);
        vm.assertEq(vault.pinnedVenues().length, before.length - 1, "one pin fewer");
        vm.assertFalse(vault.isPinned(V3, address(router), address(weth), address(usdc), FEE), "unpinned");
        vm.assertTrue(vault.isPinned(V2, address(router), address(weth), address(usdc), 0), "V2 pin kept");

        ethFeed.updateAnswer(2500e8);
        _expectRebalanceRevert(
            _one(_step(address(router), weth, usdc, 8e18)),
            abi.encodeWithSelector(
                IRebalancingVault.VenueNotPinned.selector, 0, V3, address(router), address(weth), address(usdc), FEE
            )
        );
        IRebalancingVault.Step memory v2 = _step(address(router), weth, usdc, 8e18);
        v2.venue = V2;
        v2.fee = 0;
        _rebalanceAsKeeper(_one(v2));
        vm.assertEq(usdc.balanceOf(address(vault)), 220_000e6, "the V2 pin still trades");

        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.BadConfig.selector, "venue not pinned"));
        vault.unpinVenue(V3, address(router), address(weth), address(usdc), FEE);
    }

    /// A pool created after pinning at an unused tier of the same pair (by a stranger or the key
    /// holder) on the pinned router is not reachable; nor is the same tier on another router.
    function test_strangersPoolIsNotReachable() public {
        MockRouter strangers = _newRouter();
        strangers.factory().createPool(address(weth), address(usdc), FEE);
        router.factory().createPool(address(weth), address(usdc), 100);
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step memory s = _step(address(router), weth, usdc, 8e18);
        s.fee = 100;
        _expectRebalanceRevert(
            _one(s),
            abi.encodeWithSelector(
                IRebalancingVault.VenueNotPinned.selector, 0, V3, address(router), address(weth), address(usdc), 100
            )
        );
        _expectRebalanceRevert(
            _one(_step(address(strangers), weth, usdc, 8e18)),
            abi.encodeWithSelector(
                IRebalancingVault.VenueNotPinned.selector, 0, V3, address(strangers), address(weth), address(usdc), FEE
            )
        );
    }

    // ---------------------------------------------------------------- KEEP_FLAG steps

    /// KEEP spends the balance less `keep`: WETH ends exactly at keep; the vault's own floor on the
    /// actual input is the router's minimum and is what Swapped reports.
    function test_keep_spendsAllButKeep() public {
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step memory s = _keepStep(address(router), weth, usdc, 192e18);
        vm.expectEmit(address(vault));
        emit IRebalancingVault.Swapped(0, address(weth), address(usdc), address(router), 8e18, 20_000e6, 19_800e6);
        _rebalanceAsKeeper(_one(s));
        vm.assertEq(weth.balanceOf(address(vault)), 192e18, "WETH ends at keep");
        vm.assertEq(usdc.balanceOf(address(vault)), 220_000e6, "USDC");
    }

    /// A hop WETH -> USDC -> LINK whose second step keeps USDC's balance before the batch: the
    /// intermediate asset ends exactly where it was, whatever the first fill, and the batch passes
    /// the toward-target and turnover rules (G = 2 hops, N = WETH's outflow).
    function test_keep_hopLeavesTheIntermediateUnchanged() public {
        ethFeed.updateAnswer(2500e8);
        router.setHaircut(30);
        IRebalancingVault.Step memory hop2 = _keepStep(address(router), usdc, link, 200_000e6);
        _rebalanceAsKeeper(_two(_step(address(router), weth, usdc, 4e18), hop2));
        vm.assertEq(usdc.balanceOf(address(vault)), 200_000e6, "USDC unchanged");
        // 4 WETH = $10k -> 9970 USDC -> 9940.09 USD of LINK at 20 = 497.0045 LINK
        vm.assertEq(link.balanceOf(address(vault)), 5000e18 + 497.0045e18, "LINK bought with the whole hop");
    }

    /// Keeping the whole balance (or more) leaves nothing to spend.
    function test_keep_nothingToSpend() public {
        ethFeed.updateAnswer(2500e8);
        _expectRebalanceRevert(
            _one(_keepStep(address(router), weth, usdc, 200e18)),
            abi.encodeWithSelector(IRebalancingVault.ZeroAmount.selector, 0)
        );
        _expectRebalanceRevert(
            _one(_keepStep(address(router), weth, usdc, 500e18)),
            abi.encodeWithSelector(IRebalancingVault.ZeroAmount.selector, 0)
        );
    }

    /// A KEEP step's minAmountOut is an extra minimum: above the floor it is the one enforced.
    function test_keep_keepersMinimumAboveTheFloorIsEnforced() public {
        MisbehavingRouter liar = new MisbehavingRouter(MisbehavingRouter.Mode.IgnoreMinimum, vault);
        _wireRouter(liar);
        _pinAll(liar);
        liar.setHaircut(50); // pays 19,900 USDC for 8 WETH, inside the 1% floor (19,800)
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step memory s = _keepStep(address(liar), weth, usdc, 192e18);
        s.minAmountOut = 19_950e6;
        _expectRebalanceRevert(
            _one(s), abi.encodeWithSelector(IRebalancingVault.InsufficientOutput.selector, 0, 19_900e6, 19_950e6)
        );
    }

    /// A KEEP step with no minimum still gets the vault's floor: a router paying under it is
    /// refused (by the balance check, whatever the router claims).
    function test_keep_floorAppliesWithoutAMinimum() public {
        MisbehavingRouter liar = new MisbehavingRouter(MisbehavingRouter.Mode.IgnoreMinimum, vault);
        _wireRouter(liar);
        _pinAll(liar);
        liar.setHaircut(150); // 19,700 USDC for 8 WETH: below the 1% floor
        ethFeed.updateAnswer(2500e8);
        IRebalancingVault.Step memory s = _keepStep(address(liar), weth, usdc, 192e18);
        _expectRebalanceRevert(
            _one(s), abi.encodeWithSelector(IRebalancingVault.InsufficientOutput.selector, 0, 19_700e6, 19_800e6)
        );
    }

    // ---------------------------------------------------------------- exact floors

    /// A 0-decimal token whose one unit is worth $60,000: $6,000 of USDC buys 0.1 unit at the
    /// oracle, a floor that rounds down to 0; v1 accepted minAmountOut = 0 here and paid $6,000
    /// for nothing. Selling one unit is fine (its floor is 59,400 USDC).
    function test_ZeroFloor_coarseDecimals() public {
        TestToken btc0 = new TestToken("Coarse BTC", "BTC0", 0);
        MockV3Aggregator btc0Feed = new MockV3Aggregator(8, 60_000e8);
        IRebalancingVault.Asset[] memory assets = new IRebalancingVault.Asset[](2);
        assets[0] = IRebalancingVault.Asset(address(btc0), address(btc0Feed), 3600, 5000);
        assets[1] = IRebalancingVault.Asset(address(usdc), address(usdcFeed), 86_400, 5000);
        vault = new RebalancingVault(owner, keeper, guardian, assets, 1, _limits());
        btc0.mint(address(vault), 10);
        usdc.mint(address(vault), 600_000e6);
        router.setFeed(address(btc0), btc0Feed);
        btc0.mint(address(router), 10);
        _pin(router, V3, btc0, usdc, FEE);

        IRebalancingVault.Step memory s =
            IRebalancingVault.Step(V3, address(router), address(usdc), address(btc0), FEE, 6000e6, 0);
        _expectRebalanceRevert(_one(s), abi.encodeWithSelector(IRebalancingVault.ZeroFloor.selector, 0, 6000e6));

        // BTC0 at $90k is overweight ($900k against $600k): selling one unit, floor 89,100 USDC, works.
        btc0Feed.updateAnswer(90_000e8);
        s = IRebalancingVault.Step(V3, address(router), address(btc0), address(usdc), FEE, 1, 89_099e6);
        _expectRebalanceRevert(
            _one(s), abi.encodeWithSelector(IRebalancingVault.MinOutTooLow.selector, 0, 89_099e6, 89_100e6)
        );
        s.minAmountOut = 89_100e6;
        _rebalanceAsKeeper(_one(s));
        vm.assertEq(btc0.balanceOf(address(vault)), 9, "sold one unit");
        vm.assertEq(usdc.balanceOf(address(vault)), 690_000e6, "at the oracle rate");
    }

    /// The floor is the exact rational bound rounded up: 1.5e12 + 7 wei of WETH is worth
    /// 3000.000014 USDC units; less 1% that is 2970.00001386, so 2970 is refused, 2971 required.
    function test_floorRoundsUp() public {
        ethFeed.updateAnswer(2500e8);
        uint256 amountIn = 1.5e12 + 7;
        IRebalancingVault.Step memory s = _step(address(router), weth, usdc, amountIn);
        // at $2500: 3750.0000175 units, less 1% = 3712.500017325 -> 3713
        vm.assertEq(s.minAmountOut, 3713, "fixture computes the ceiling");
        s.minAmountOut = 3712;
        _expectRebalanceRevert(
            _one(s), abi.encodeWithSelector(IRebalancingVault.MinOutTooLow.selector, 0, 3712, 3713)
        );
    }

    // ---------------------------------------------------------------- exact drift

    /// At target, selling $1 of USDC for WETH raises drift by 0.02 bps: floored it is 0 -> 0, which
    /// v1 let through; compared exactly it reverts.
    function test_DriftIncreased_subBps() public {
        _expectRebalanceRevert(
            _one(_step(address(router), usdc, weth, 1e6)),
            abi.encodeWithSelector(IRebalancingVault.DriftIncreased.selector, 0, 0)
        );
    }

    // ---------------------------------------------------------------- toward target

    /// ETH +25%: WETH's target is $440k. Selling $75k of it (to $425k) overshoots, while total
    /// drift still falls (1090 -> 1000 bps): refused for WETH, the first asset past its target.
    function test_NotTowardTarget_pastTarget() public {
        ethFeed.updateAnswer(2500e8);
        _expectRebalanceRevert(
            _one(_step(address(router), weth, usdc, 30e18)),
            abi.encodeWithSelector(
                IRebalancingVault.NotTowardTarget.selector, 0, 500_000e18, 425_000e18, 440_000e18
            )
        );
    }

    /// An asset below its target sold while the batch improves total drift (1090 -> ~727 bps):
    /// refused for that asset (LINK, $100k of its $110k target, sold to $99k).
    function test_NotTowardTarget_awayFromTarget() public {
        ethFeed.updateAnswer(2500e8);
        _expectRebalanceRevert(
            _two(_step(address(router), weth, usdc, 8e18), _step(address(router), link, wbtc, 50e18)),
            abi.encodeWithSelector(IRebalancingVault.NotTowardTarget.selector, 2, 100_000e18, 99_000e18, 110_000e18)
        );
    }

    // ---------------------------------------------------------------- turnover

    /// A round trip WETH -> USDC -> WETH (0.3% each way) moves value back where it came from:
    /// G = $20,000 + $19,940 against N = WETH's net loss of $119.82.
    function test_ExcessTurnover_roundTrip() public {
        ethFeed.updateAnswer(2500e8);
        router.setHaircut(30);
        _expectRebalanceRevert(
            _two(_step(address(router), weth, usdc, 8e18), _step(address(router), usdc, weth, 19_940e6)),
            abi.encodeWithSelector(IRebalancingVault.ExcessTurnover.selector, 39_940e18, 119.82e18)
        );
    }

    /// Churn: a cycle WETH -> WBTC -> LINK -> USDC -> WETH of $10k, each later leg keeping its
    /// input asset's balance, so only WETH moves, by the fills' loss (~12 bps of the vault at 0.3%
    /// a leg, inside maxLossBps): G = ~$40k against N = ~$120. Refused for turnover.
    function test_ExcessTurnover_churnCycle() public {
        vm.prank(owner);
        vault.setLimits(IRebalancingVault.Limits(MAX_SLIPPAGE_BPS, 50, 200, COOLDOWN_S, 4));
        router.setHaircut(30);
        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](4);
        steps[0] = _step(address(router), weth, wbtc, 5e18);
        steps[1] = _keepStep(address(router), wbtc, link, 5e8);
        steps[2] = _keepStep(address(router), link, usdc, 5000e18);
        steps[3] = _keepStep(address(router), usdc, weth, 200_000e6);
        // G = $10k * (1 + 0.997 + 0.997^2 + 0.997^3), N = $10k * (1 - 0.997^4)
        _expectRebalanceRevert(
            steps,
            abi.encodeWithSelector(
                IRebalancingVault.ExcessTurnover.selector, 39_820.3585332e18, 119.461475996e18
            )
        );
    }

    // ---------------------------------------------------------------- loss budget

    /// A WETH/USDC 50/50 vault and a router with a 0.9% haircut: each call below sells half of
    /// WETH's excess after a rally, losing a known fraction.
    function _budgetVault(uint16 maxLossBps, uint16 windowBps) internal {
        IRebalancingVault.Asset[] memory assets = new IRebalancingVault.Asset[](2);
        assets[0] = IRebalancingVault.Asset(address(weth), address(ethFeed), 3600, 5000);
        assets[1] = IRebalancingVault.Asset(address(usdc), address(usdcFeed), 86_400, 5000);
        vault = new RebalancingVault(
            owner,
            keeper,
            guardian,
            assets,
            1,
            IRebalancingVault.Limits(MAX_SLIPPAGE_BPS, maxLossBps, windowBps, COOLDOWN_S, MAX_STEPS)
        );
        weth.mint(address(vault), 100e18);
        usdc.mint(address(vault), 200_000e6);
        _pin(router, V3, weth, usdc, FEE);
        router.setHaircut(90);
    }

    /// After ETH moves to `price`, sells half of WETH's value excess for USDC. Returns the step and
    /// the loss fraction (1e18 = 100%) it will book, computed here from the router's quote.
    function _halfExcessStep(uint256 price) internal returns (IRebalancingVault.Step memory s, uint256 loss) {
        ethFeed.updateAnswer(int256(price));
        usdcFeed.updateAnswer(1e8);
        uint256 wethValue = weth.balanceOf(address(vault)) * price / 1e8; // 18 decimals -> USD 1e18
        uint256 total = wethValue + usdc.balanceOf(address(vault)) * 1e12;
        uint256 sellValue = (wethValue - total / 2) / 2;
        uint256 amountIn = sellValue * 1e8 / price / 1e12 * 1e12; // whole USDC units out: exact values
        s = _step(address(router), weth, usdc, amountIn);
        uint256 spentValue = amountIn * price / 1e8;
        uint256 gotValue = router.quote(address(weth), address(usdc), amountIn) * 1e12;
        loss = Math.mulDiv(spentValue - gotValue, 1e18, total, Math.Rounding.Ceil);
    }

    /// Losses add up within an epoch and the call that would cross the limit is refused with the
    /// sums; the view reports the same numbers.
    function test_lossBudget_refusesTheCallThatWouldCrossIt() public {
        _budgetVault(4, 4);
        IRebalancingVault.LossBudget memory b = vault.lossBudget();
        vm.assertEq(b.limit, 4e14, "limit");
        vm.assertEq(b.remaining, 4e14, "nothing spent");
        vm.assertEq(b.windowS, 86_400, "window");

        (IRebalancingVault.Step memory s, uint256 loss1) = _halfExcessStep(2400e8);
        _rebalanceAsKeeper(_one(s));
        b = vault.lossBudget();
        vm.assertEq(b.spentCurrent, loss1, "first loss booked exactly");
        vm.assertEq(b.spentPrevious, 0, "previous epoch");
        vm.assertEq(b.remaining, 4e14 - loss1, "remaining");
        vm.assertEq(b.epochStart, T0 - T0 % 86_400, "epoch start");

        vm.warp(T0 + COOLDOWN_S); // still the same epoch (T0 is 6,400 s before its end)
        (IRebalancingVault.Step memory s2, uint256 loss2) = _halfExcessStep(2900e8);
        vm.assertGt(loss1 + loss2, 4e14, "the scenario crosses the limit");
        _expectRebalanceRevert(
            _one(s2), abi.encodeWithSelector(IRebalancingVault.LossBudgetExceeded.selector, loss1, loss2, 4e14)
        );
    }

    /// The previous epoch still counts; two epochs later it is forgotten.
    function test_lossBudget_acrossEpochs() public {
        _budgetVault(4, 4);
        (IRebalancingVault.Step memory s, uint256 loss1) = _halfExcessStep(2400e8);
        _rebalanceAsKeeper(_one(s));

        uint256 nextEpoch = T0 - T0 % 86_400 + 86_400;
        vm.warp(nextEpoch + 100); // the next epoch, 6,500 s after the first call
        (IRebalancingVault.Step memory s2, uint256 loss2) = _halfExcessStep(2900e8);
        IRebalancingVault.LossBudget memory b = vault.lossBudget();
        vm.assertEq(b.spentPrevious, loss1, "first epoch's loss is now the previous one");
        vm.assertEq(b.spentCurrent, 0, "nothing yet in this epoch");
        vm.assertEq(b.epochStart, nextEpoch, "epoch start");
        _expectRebalanceRevert(
            _one(s2), abi.encodeWithSelector(IRebalancingVault.LossBudgetExceeded.selector, loss1, loss2, 4e14)
        );

        vm.warp(nextEpoch + 86_400); // two epochs after the first call
        (s2, loss2) = _halfExcessStep(2900e8);
        b = vault.lossBudget();
        vm.assertEq(b.spentPrevious + b.spentCurrent, 0, "forgotten");
        _rebalanceAsKeeper(_one(s2));
        b = vault.lossBudget();
        vm.assertEq(b.spentCurrent, loss2, "booked in the new epoch");
        vm.assertEq(b.remaining, 4e14 - loss2, "remaining");
    }

    /// A call that gains (a router paying above the oracle) books nothing.
    function test_lossBudget_gainBooksNothing() public {
        _budgetVault(4, 4);
        router.setHaircut(0);
        (IRebalancingVault.Step memory s,) = _halfExcessStep(2400e8);
        _rebalanceAsKeeper(_one(s));
        IRebalancingVault.LossBudget memory b = vault.lossBudget();
        vm.assertEq(b.spentCurrent, 0, "no loss at the oracle rate");
        vm.assertEq(b.remaining, 4e14, "remaining");
    }

    /// The per-call loss limit may not exceed the window's, nor either its cap: a configuration
    /// cannot hand the key more than MAX_LOSS_BPS_PER_WINDOW a day.
    function test_limitsCannotExceedTheCaps() public {
        vm.startPrank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(
                IRebalancingVault.BadLimits.selector, "maxLossBpsPerWindow above MAX_LOSS_BPS_PER_WINDOW (500)"
            )
        );
        vault.setLimits(IRebalancingVault.Limits(100, 300, 10_000, 0, 4));
        vm.expectRevert(
            abi.encodeWithSelector(IRebalancingVault.BadLimits.selector, "maxLossBps above maxLossBpsPerWindow")
        );
        vault.setLimits(IRebalancingVault.Limits(100, 300, 200, 0, 4));
        vm.stopPrank();
    }
}
