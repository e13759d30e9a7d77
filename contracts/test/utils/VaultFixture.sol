// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {RebalancingVault} from "../../src/RebalancingVault.sol";
import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {MockV3Aggregator} from "../../src/world/MockV3Aggregator.sol";
import {TestToken} from "../../src/world/TestToken.sol";
import {MockRouter} from "../mocks/MockRouter.sol";
import {TestBase} from "./TestBase.sol";

/// @notice A funded 4-asset vault at its targets, the world most tests start from.
/// Decimals are deliberately mixed: tokens 18/8/18/6, the LINK feed has 18 decimals, others 8.
///   asset  token dec  feed dec  price   target  holding (= $ at target, $1M total)
///   WETH   18         8         $2000   40%     200 WETH
///   WBTC   8          8         $60000  30%     5 WBTC
///   LINK   18         18        $20     10%     5000 LINK
///   USDC   6          8         $1      20%     200000 USDC (quote asset)
abstract contract VaultFixture is TestBase {
    uint256 internal constant T0 = 1_700_000_000;
    uint16 internal constant MAX_SLIPPAGE_BPS = 100;
    uint16 internal constant MAX_LOSS_BPS = 50;
    uint16 internal constant MAX_LOSS_BPS_PER_WINDOW = 200;
    uint32 internal constant COOLDOWN_S = 3600;
    uint8 internal constant MAX_STEPS = 4;
    uint24 internal constant FEE = 3000;

    address internal owner = address(0xA11CE);
    address internal keeper = address(0xBEEF);
    address internal guardian = address(0x6A4D);
    address internal stranger = address(0xBAD);

    TestToken internal weth;
    TestToken internal wbtc;
    TestToken internal link;
    TestToken internal usdc;
    MockV3Aggregator internal ethFeed;
    MockV3Aggregator internal btcFeed;
    MockV3Aggregator internal linkFeed;
    MockV3Aggregator internal usdcFeed;
    TestToken[4] internal tokens;
    MockV3Aggregator[4] internal feeds;

    RebalancingVault internal vault;
    MockRouter internal router;

    function _deployWorld() internal {
        vm.warp(T0); // feeds stamp their answers with block.timestamp
        weth = new TestToken("Wrapped Ether", "WETH", 18);
        wbtc = new TestToken("Wrapped Bitcoin", "WBTC", 8);
        link = new TestToken("Chainlink", "LINK", 18);
        usdc = new TestToken("USD Coin", "USDC", 6);
        ethFeed = new MockV3Aggregator(8, 2000e8);
        btcFeed = new MockV3Aggregator(8, 60_000e8);
        linkFeed = new MockV3Aggregator(18, 20e18);
        usdcFeed = new MockV3Aggregator(8, 1e8);
        tokens = [weth, wbtc, link, usdc];
        feeds = [ethFeed, btcFeed, linkFeed, usdcFeed];

        vault = new RebalancingVault(owner, keeper, guardian, _assets(), 3, _limits());
        weth.mint(address(vault), 200e18);
        wbtc.mint(address(vault), 5e8);
        link.mint(address(vault), 5000e18);
        usdc.mint(address(vault), 200_000e6);

        router = _newRouter();
        _pinAll(router);
    }

    function _assets() internal view returns (IRebalancingVault.Asset[] memory a) {
        a = new IRebalancingVault.Asset[](4);
        a[0] = IRebalancingVault.Asset(address(weth), address(ethFeed), 3600, 4000);
        a[1] = IRebalancingVault.Asset(address(wbtc), address(btcFeed), 3600, 3000);
        a[2] = IRebalancingVault.Asset(address(link), address(linkFeed), 86_400, 1000);
        a[3] = IRebalancingVault.Asset(address(usdc), address(usdcFeed), 86_400, 2000);
    }

    function _limits() internal pure returns (IRebalancingVault.Limits memory) {
        return IRebalancingVault.Limits(MAX_SLIPPAGE_BPS, MAX_LOSS_BPS, MAX_LOSS_BPS_PER_WINDOW, COOLDOWN_S, MAX_STEPS);
    }

    /// @dev A router priced by the fixture's feeds and funded with a deep book of every token.
    function _newRouter() internal returns (MockRouter r) {
        r = new MockRouter();
        _wireRouter(r);
    }

    function _wireRouter(MockRouter r) internal {
        for (uint256 i = 0; i < 4; i++) {
            r.setFeed(address(tokens[i]), feeds[i]);
            tokens[i].mint(address(r), 1_000_000 * 10 ** tokens[i].decimals());
        }
    }

    /// @dev Creates a V3 pool (fee FEE) and a V2 pair for every pair of the fixture's assets on
    /// `r`'s factory, and pins them all on the vault.
    function _pinAll(MockRouter r) internal {
        for (uint256 i = 0; i < 4; i++) {
            for (uint256 j = i + 1; j < 4; j++) {
                _pin(r, IRebalancingVault.Venue.V3, tokens[i], tokens[j], FEE);
                _pin(r, IRebalancingVault.Venue.V2, tokens[i], tokens[j], 0);
            }
        }
    }

    function _pin(MockRouter r, IRebalancingVault.Venue venue, TestToken a, TestToken b, uint24 fee)
        internal
        returns (address pool)
    {
        pool = venue == IRebalancingVault.Venue.V3
            ? r.factory().createPool(address(a), address(b), fee)
            : r.factory().createPair(address(a), address(b));
        vm.prank(owner);
        vault.pinVenue(venue, address(r), address(a), address(b), fee);
    }

    /// @dev Oracle-implied output, computed here from the feeds (independently of VaultMath).
    function _oracleOut(TestToken tokenIn, TestToken tokenOut, uint256 amountIn) internal view returns (uint256) {
        MockV3Aggregator feedIn = _feedOf(tokenIn);
        MockV3Aggregator feedOut = _feedOf(tokenOut);
        uint256 scaleIn = 10 ** (tokenIn.decimals() + feedIn.decimals());
        uint256 scaleOut = 10 ** (tokenOut.decimals() + feedOut.decimals());
        return
            Math.mulDiv(amountIn * uint256(feedIn.latestAnswer()), scaleOut, uint256(feedOut.latestAnswer()) * scaleIn);
    }

    /// @dev The least minAmountOut the vault accepts for this swap: the oracle output less
    /// MAX_SLIPPAGE_BPS at full precision, rounded up (computed here from the feeds).
    function _requiredMin(TestToken tokenIn, TestToken tokenOut, uint256 amountIn) internal view returns (uint256) {
        MockV3Aggregator feedIn = _feedOf(tokenIn);
        MockV3Aggregator feedOut = _feedOf(tokenOut);
        uint256 scaleIn = 10 ** (tokenIn.decimals() + feedIn.decimals());
        uint256 scaleOut = 10 ** (tokenOut.decimals() + feedOut.decimals());
        return Math.mulDiv(
            amountIn * uint256(feedIn.latestAnswer()),
            scaleOut * (10_000 - MAX_SLIPPAGE_BPS),
            uint256(feedOut.latestAnswer()) * scaleIn * 10_000,
            Math.Rounding.Ceil
        );
    }

    function _feedOf(TestToken token) internal view returns (MockV3Aggregator) {
        for (uint256 i = 0; i < 4; i++) {
            if (tokens[i] == token) return feeds[i];
        }
        revert("not a fixture token");
    }

    /// @dev A V3 step with the tightest minimum the vault accepts.
    function _step(address r, TestToken tokenIn, TestToken tokenOut, uint256 amountIn)
        internal
        view
        returns (IRebalancingVault.Step memory)
    {
        return IRebalancingVault.Step(
            IRebalancingVault.Venue.V3,
            r,
            address(tokenIn),
            address(tokenOut),
            FEE,
            amountIn,
            _requiredMin(tokenIn, tokenOut, amountIn)
        );
    }

    function _one(IRebalancingVault.Step memory s) internal pure returns (IRebalancingVault.Step[] memory steps) {
        steps = new IRebalancingVault.Step[](1);
        steps[0] = s;
    }

    function _rebalanceAsKeeper(IRebalancingVault.Step[] memory steps) internal {
        vm.prank(keeper);
        vault.rebalance(steps, block.timestamp);
    }
}
