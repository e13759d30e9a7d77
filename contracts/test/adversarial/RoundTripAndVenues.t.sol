// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {AdvWorld} from "./AdvWorld.sol";
import {PoolActor} from "./mocks/PoolActor.sol";
import {IV2Router02, IV3Pool, IV3Router} from "./mocks/UniswapLike.sol";

/// @notice Attacks 2, 3 and 6: round trips in one call, a fresh V2 pair on the pinned Router02,
/// a stranger's pool at an unused tier, and a front-run of an honest pinned trade.
contract RoundTripAndVenuesTest is AdvWorld {
    /// The attacker's pools fill 0.9925 x 0.9995 (fee 500) or 0.9999 (fee 100) of the oracle.
    uint256 internal constant POOL_RATIO = 0.9925e18;

    function setUp() public {
        _deployWorld();
    }

    // ---------------------------------------------------------------- 2. round trips

    /// WETH -> USDC at the attacker's fee-500 pool, USDC -> WETH at its fee-100 pool, the second
    /// step keeping USDC's balance so USDC ends exactly where it was. Unpinned: unreachable.
    function test_roundTrip_attackerPools_unpinned_VenueNotPinned() public {
        IRebalancingVault.Step[] memory steps = _attackerRoundTrip();
        bytes memory err = _expectRefused(steps, IRebalancingVault.VenueNotPinned.selector);
        (uint256 stepIndex,,, address tIn,, uint24 fee) =
            abi.decode(_args(err), (uint256, IRebalancingVault.Venue, address, address, address, uint24));
        vm.assertEq(stepIndex, 0, "first step");
        vm.assertEq(tIn, address(weth), "tokenIn");
        vm.assertEq(fee, ATTACK_FEE, "fee");
    }

    /// Same round trip with both attacker pools pinned by the owner: WETH loses ~1.5% of what
    /// went round, USDC nets zero, so gross is ~130x net: ExcessTurnover.
    function test_roundTrip_attackerPools_pinned_ExcessTurnover() public {
        IRebalancingVault.Step[] memory steps = _attackerRoundTrip();
        _pin(IRebalancingVault.Venue.V3, v3Router, weth, usdc, ATTACK_FEE);
        _pin(IRebalancingVault.Venue.V3, v3Router, weth, usdc, 100);
        uint256 attackerBefore = _attackerValue();
        bytes memory err = _expectRefused(steps, IRebalancingVault.ExcessTurnover.selector);
        (uint256 gross, uint256 net) = abi.decode(_args(err), (uint256, uint256));
        _log("attacker round trip: gross (USD)", gross / 1e18);
        _log("attacker round trip: net (USD)", net / 1e18);
        vm.assertLe(_attackerValue(), attackerBefore, "attacker profit > 0");
    }

    /// Through the honest pinned WETH/USDC pool (fee 3000) both ways: every fill clears its floor
    /// (the pool is at the oracle), the batch loses only the two fees, drift does not rise.
    /// Still a round trip: ExcessTurnover.
    function test_roundTrip_honestPinnedPool_ExcessTurnover() public {
        uint256 amountIn = 150e18; // $300k
        vm.assertGe(_quoteV3(weth, usdc, HONEST_FEE, amountIn), _floor(weth, usdc, amountIn), "fill under floor");
        IRebalancingVault.Step[] memory steps = _steps(
            _v3(weth, usdc, HONEST_FEE, amountIn),
            IRebalancingVault.Step(
                IRebalancingVault.Venue.V3,
                v3Router,
                address(usdc),
                address(weth),
                HONEST_FEE,
                KEEP + usdc.balanceOf(address(vault)),
                0
            )
        );
        bytes memory err = _expectRefused(steps, IRebalancingVault.ExcessTurnover.selector);
        (uint256 gross, uint256 net) = abi.decode(_args(err), (uint256, uint256));
        _log("honest round trip: gross (USD)", gross / 1e18);
        _log("honest round trip: net (USD)", net / 1e18);
    }

    /// An owner who pinned the attacker's pools and then unpins them makes them unreachable
    /// again at once (the pin is the only way in).
    function test_roundTrip_unpinnedAgain_VenueNotPinned() public {
        IRebalancingVault.Step[] memory steps = _attackerRoundTrip();
        _pin(IRebalancingVault.Venue.V3, v3Router, weth, usdc, ATTACK_FEE);
        _pin(IRebalancingVault.Venue.V3, v3Router, weth, usdc, 100);
        vm.prank(owner);
        vault.unpinVenue(IRebalancingVault.Venue.V3, v3Router, address(usdc), address(weth), ATTACK_FEE);
        _expectRefused(steps, IRebalancingVault.VenueNotPinned.selector);
    }

    function _attackerRoundTrip() internal returns (IRebalancingVault.Step[] memory steps) {
        _seedV3(attacker, weth, usdc, ATTACK_FEE, POOL_RATIO, 500_000_000e18, true);
        _seedV3(attacker, usdc, weth, 100, POOL_RATIO, 500_000_000e18, true);
        // Solved: WETH's round-trip loss ~1.5% of x must stay under maxLossBps of the vault.
        uint256 amountIn = 90e18; // $180k -> ~$2.7k lost = 27 bps of the vault
        uint256 out = _quoteV3(weth, usdc, ATTACK_FEE, amountIn);
        vm.assertGe(out, _floor(weth, usdc, amountIn), "solver: first leg under its floor");
        vm.assertGe(_quoteV3(usdc, weth, 100, out), _floor(usdc, weth, out), "solver: second leg under its floor");
        steps = _steps(
            _v3(weth, usdc, ATTACK_FEE, amountIn),
            IRebalancingVault.Step(
                IRebalancingVault.Venue.V3,
                v3Router,
                address(usdc),
                address(weth),
                100,
                KEEP + usdc.balanceOf(address(vault)),
                0
            )
        );
    }

    // ---------------------------------------------------------------- 3. a fresh V2 pair

    /// No honest LINK/WBTC venue exists. LINK has rallied 30% (LINK over target, WBTC under), so a
    /// LINK -> WBTC trade is what a rebalance wants. The attacker creates the pair on the pinned
    /// Router02's factory, seeded so the vault's fill is ~85 bps under the oracle (inside the
    /// floor): the step is unreachable.
    function test_freshV2Pair_onPinnedRouter02_VenueNotPinned() public {
        feeds[2].updateAnswer(26e18);
        uint256 linkSide = uint256(20_000_000e18) / 26; // $20M of LINK
        uint256 wbtcSide = _amountForUsd(wbtc, 20_000_000e18) * 9950 / 10_000; // 50 bps under, plus the 30 bps fee
        address pair = attacker.createV2Pair(address(link), address(wbtc), linkSide, wbtcSide);
        attackerPools.push(pair);
        uint256 amountIn = 200e18; // $5.2k of LINK
        uint256 snap = vm.snapshotState();
        uint256 out = attacker.swapV2(address(link), address(wbtc), amountIn);
        vm.revertToState(snap);
        vm.assertGe(out, _floor(link, wbtc, amountIn), "solver: fill under floor");
        vm.assertFalse(vault.isPinned(IRebalancingVault.Venue.V2, v2Router, address(link), address(wbtc), 0), "pinned");

        uint256 attackerBefore = _attackerValue();
        bytes memory err = _expectRefused(_steps(_v2(link, wbtc, amountIn)), IRebalancingVault.VenueNotPinned.selector);
        vm.assertEq(
            keccak256(err),
            keccak256(
                abi.encodeWithSelector(
                    IRebalancingVault.VenueNotPinned.selector,
                    0,
                    IRebalancingVault.Venue.V2,
                    v2Router,
                    address(link),
                    address(wbtc),
                    uint24(0)
                )
            ),
            "error arguments"
        );
        vm.assertLe(_attackerValue(), attackerBefore, "attacker profit > 0");
    }

    /// The attacker deploys its own Router02 on its own factory, where "WETH/USDC" is its pair:
    /// the pinned pair key names the honest router, so the step is unreachable too.
    function test_attackerRouterForPinnedPair_VenueNotPinned() public {
        address fakeFactory = _create(
            abi.encodePacked(vm.parseJsonBytes(vm.readFile(V2_FACTORY), ".bytecode"), abi.encode(address(attacker)))
        );
        address fakeRouter = _create(
            abi.encodePacked(
                vm.parseJsonBytes(vm.readFile(V2_ROUTER), ".bytecode"), abi.encode(fakeFactory, address(weth))
            )
        );
        PoolActor evil = new PoolActor(IV3Router(v3Router), IV2Router02(fakeRouter));
        _fund(evil, 1e8);
        evil.createV2Pair(address(weth), address(usdc), 1000e18, 1_980_000e6); // 1% under the oracle
        feeds[0].updateAnswer(2200e8); // WETH over target: selling WETH is toward target
        IRebalancingVault.Step memory step = _v2(weth, usdc, 5e18);
        step.router = fakeRouter;
        _expectRefused(_steps(step), IRebalancingVault.VenueNotPinned.selector);
    }

    // ---------------------------------------------------------------- 6. no key needed

    /// An outsider creates WETH/USDC at fee 500 (unused by honest pools), quoting 0.9% better than
    /// the oracle for the vault's sale of WETH. The honest keeper's best-quote logic would like
    /// it; the vault cannot reach it.
    function test_outsiderPoolAtUnusedTier_unreachable() public {
        feeds[0].updateAnswer(2200e8); // WETH over target
        _seedV3(outsider, weth, usdc, ATTACK_FEE, 1.009e18 * uint256(1e18) / 0.9995e18, 100_000_000e18, false);
        uint256 amountIn = 5e18;
        vm.assertGt(_quoteV3(weth, usdc, ATTACK_FEE, amountIn), _quoteV3(weth, usdc, HONEST_FEE, amountIn), "bait");
        vm.assertFalse(
            vault.isPinned(IRebalancingVault.Venue.V3, v3Router, address(weth), address(usdc), ATTACK_FEE), "pinned"
        );
        _expectRefused(_steps(_v3(weth, usdc, ATTACK_FEE, amountIn)), IRebalancingVault.VenueNotPinned.selector);
    }

    /// The honest keeper sells the WETH excess through the honest pinned pool with the oracle
    /// floor; an outsider front-runs it, pushing the pool down so the vault's fill lands on its
    /// floor (solved by bisection on the pool price), then back-runs. The vault loses at most the
    /// floor; the outsider's profit is measured.
    function test_outsiderFrontRunsHonestPinnedTrade_lossAtMostFloor() public {
        feeds[0].updateAnswer(2400e8); // ETH +20%
        _reseedHonestWethUsdc(); // the honest pool follows the market (arbitrage), as it would
        (uint256[] memory b, uint256 total) = _vaultValues();
        // USDC's share of the rebalance: its deficit (a fill under the oracle keeps it below target)
        uint256 amountIn = _amountForUsd(weth, total * 2000 / BPS - b[3]);
        IRebalancingVault.Step memory honest = _v3(weth, usdc, HONEST_FEE, amountIn);

        uint256 outsiderBefore = _outsiderValue();
        (uint256 pushed,) = outsider.swapV3(
            address(weth), address(usdc), HONEST_FEE, 1e30, _solveFrontRun(amountIn, honest.minAmountOut)
        );
        _log("front-run: WETH sold by the outsider (x1000)", pushed / 1e15);

        (uint256 received, uint256 loss) = _sendHonest(honest);
        outsider.swapV3(address(usdc), address(weth), HONEST_FEE, 1e30, _startSqrt); // back-run
        uint256 outsiderAfter = _outsiderValue();

        _log("honest trade size (USD)", _usd(weth, amountIn) / 1e18);
        _log("vault fill / floor (x1e6)", received * 1e6 / honest.minAmountOut);
        _log("vault loss (USD x100)", loss / 1e16);
        vm.assertGe(received, honest.minAmountOut, "fill under floor");
        vm.assertLe(loss, _usd(weth, amountIn) * SLIPPAGE_BPS / BPS + 1e18, "vault lost more than the floor allows");
        if (outsiderAfter >= outsiderBefore) {
            _log("outsider profit (USD x100)", (outsiderAfter - outsiderBefore) / 1e16);
        } else {
            _log("outsider loss (USD x100)", (outsiderBefore - outsiderAfter) / 1e16);
        }
        vm.assertLe(outsiderAfter, outsiderBefore, "the front-run paid");
    }

    function _sendHonest(IRebalancingVault.Step memory honest) internal returns (uint256 received, uint256 loss) {
        uint256 valueBefore = _vaultValue();
        uint256 usdcBefore = usdc.balanceOf(address(vault));
        vm.prank(address(attacker)); // the keeper's key; here the honest keeper sends this step
        vault.rebalance(_steps(honest), block.timestamp);
        received = usdc.balanceOf(address(vault)) - usdcBefore;
        loss = valueBefore - _vaultValue();
    }

    uint160 internal _startSqrt;

    function _honestPool() internal view returns (address) {
        return vault.pinnedVenues()[0].pool; // pinned first: WETH/USDC fee 3000 (see AdvWorld)
    }

    /// Moves the honest WETH/USDC pool to the new oracle price, as arbitrageurs would.
    function _reseedHonestWethUsdc() internal {
        address pool = _honestPool();
        uint256 target = _sqrtPriceX96(
            address(weth) < address(usdc) ? weth : usdc, address(weth) < address(usdc) ? usdc : weth, 1e18
        );
        (uint160 now_,,,,,,) = IV3Pool(pool).slot0();
        bool wethIs0 = address(weth) < address(usdc);
        // price of token0 in token1 must move to `target`
        if (target > now_) {
            // token0 got dearer: buy token0 with token1
            lp.swapV3(
                wethIs0 ? address(usdc) : address(weth),
                wethIs0 ? address(weth) : address(usdc),
                HONEST_FEE,
                1e30,
                uint160(target)
            );
        } else {
            lp.swapV3(
                wethIs0 ? address(weth) : address(usdc),
                wethIs0 ? address(usdc) : address(weth),
                HONEST_FEE,
                1e30,
                uint160(target)
            );
        }
        (_startSqrt,,,,,,) = IV3Pool(pool).slot0();
    }

    /// The lowest pool price (as a V3 price limit for the outsider's WETH sale) at which the
    /// vault's sale of amountIn still clears floorOut: bisection on sqrtPrice with real quotes.
    function _solveFrontRun(uint256 amountIn, uint256 floorOut) internal returns (uint160) {
        bool wethIs0 = address(weth) < address(usdc);
        // selling WETH moves sqrtPrice down if WETH is token0, up otherwise
        uint256 lo = _startSqrt;
        uint256 hi = wethIs0 ? _startSqrt * 97 / 100 : _startSqrt * 103 / 100;
        for (uint256 it = 0; it < 40; it++) {
            uint256 mid = (lo + hi) / 2;
            uint256 snap = vm.snapshotState();
            outsider.swapV3(address(weth), address(usdc), HONEST_FEE, 1e30, uint160(mid));
            (, uint256 out) = attacker.swapV3(address(weth), address(usdc), HONEST_FEE, amountIn, 0);
            vm.revertToState(snap);
            if (out >= floorOut) lo = mid;
            else hi = mid;
        }
        return uint160(lo);
    }
}
