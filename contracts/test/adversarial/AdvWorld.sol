// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IRebalancingVault} from "../../src/interfaces/IRebalancingVault.sol";
import {MockV3Aggregator} from "../../src/world/MockV3Aggregator.sol";
import {TestToken} from "../../src/world/TestToken.sol";
import {AdvLog, AdvVm} from "./AdvVm.sol";
import {PoolActor} from "./mocks/PoolActor.sol";
import {IV2Router02, IV3Factory, IV3Pool, IV3Router} from "./mocks/UniswapLike.sol";

/// @notice The world every attack starts from: a $1M vault at its targets on the REAL Uniswap
/// V2/V3 bytecode, honest deep pools at the oracle that the owner pinned, and an attacker who
/// holds the keeper key and a lot of capital.
///   asset  dec  feed dec  price    target  vault holds
///   WETH   18   8         $2000    40%     200 WETH
///   WBTC   8    8         $60000   30%     5 WBTC
///   LINK   18   18        $20      10%     5000 LINK
///   USDC   6    8         $1       20%     200000 USDC (quote asset)
/// Honest venues (pinned): V3 fee 3000 WETH/USDC, WBTC/USDC, LINK/USDC, WETH/WBTC (full range,
/// $50M a side) and a V2 WETH/USDC pair on Router02 ($20M a side). No honest venue at fee 500 and
/// none for LINK/WBTC or LINK/WETH.
/// Limits are the most an owner would plausibly give (below the hard caps): 100 bps slippage,
/// 150 bps loss per call, 500 bps per 24 h window, 60 s cooldown, 4 steps.
abstract contract AdvWorld {
    AdvVm internal constant vm = AdvVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev Forge treats a contract as a test suite when it exposes this.
    bool public IS_TEST = true;

    string internal constant V3_FACTORY =
        "../node_modules/@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json";
    string internal constant V3_ROUTER =
        "../node_modules/@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json";
    string internal constant V2_FACTORY = "../node_modules/@uniswap/v2-core/build/UniswapV2Factory.json";
    string internal constant V2_ROUTER = "../node_modules/@uniswap/v2-periphery/build/UniswapV2Router02.json";

    uint256 internal constant T0 = 1_700_000_000;
    uint256 internal constant BPS = 10_000;
    uint256 internal constant Q96 = 1 << 96;
    uint256 internal constant KEEP = 1 << 255;
    uint24 internal constant HONEST_FEE = 3000;
    uint24 internal constant ATTACK_FEE = 500;

    uint16 internal constant SLIPPAGE_BPS = 100;
    uint16 internal constant LOSS_BPS = 150;
    uint16 internal constant WINDOW_LOSS_BPS = 500;
    uint32 internal constant COOLDOWN_S = 60;
    uint8 internal constant MAX_STEPS = 4;

    address internal owner = address(0xA11CE);
    address internal guardian = address(0x6A4D);

    TestToken internal weth;
    TestToken internal wbtc;
    TestToken internal link;
    TestToken internal usdc;
    TestToken[] internal tokens;
    MockV3Aggregator[] internal feeds;

    address internal v3Router;
    address internal v2Router;
    PoolActor internal lp; // the honest liquidity provider
    PoolActor internal attacker; // holds the keeper key and its own capital
    PoolActor internal outsider; // no key, some capital
    IRebalancingVault internal vault;

    /// Every pool the attacker seeded and is the only LP of: its reserves are the attacker's.
    address[] internal attackerPools;

    // ---------------------------------------------------------------- world

    function _deployWorld() internal {
        vm.warp(T0);
        vm.roll(1000);
        weth = new TestToken("Wrapped Ether", "WETH", 18);
        wbtc = new TestToken("Wrapped Bitcoin", "WBTC", 8);
        link = new TestToken("Chainlink", "LINK", 18);
        usdc = new TestToken("USD Coin", "USDC", 6);
        tokens.push(weth);
        tokens.push(wbtc);
        tokens.push(link);
        tokens.push(usdc);
        feeds.push(new MockV3Aggregator(8, 2000e8));
        feeds.push(new MockV3Aggregator(8, 60_000e8));
        feeds.push(new MockV3Aggregator(18, 20e18));
        feeds.push(new MockV3Aggregator(8, 1e8));
        _deployUniswap();

        IRebalancingVault.Asset[] memory assets = new IRebalancingVault.Asset[](4);
        assets[0] = IRebalancingVault.Asset(address(weth), address(feeds[0]), 3600, 4000);
        assets[1] = IRebalancingVault.Asset(address(wbtc), address(feeds[1]), 3600, 3000);
        assets[2] = IRebalancingVault.Asset(address(link), address(feeds[2]), 86_400, 1000);
        assets[3] = IRebalancingVault.Asset(address(usdc), address(feeds[3]), 86_400, 2000);
        vault = _deployVault(assets, 3, _limits());
        weth.mint(address(vault), 200e18);
        wbtc.mint(address(vault), 5e8);
        link.mint(address(vault), 5000e18);
        usdc.mint(address(vault), 200_000e6);

        _fund(lp, 1e9);
        _fund(attacker, 1e10);
        _fund(outsider, 1e8);
        _honestV3(weth, usdc);
        _honestV3(wbtc, usdc);
        _honestV3(link, usdc);
        _honestV3(weth, wbtc);
        uint256 wethPerSide = _amountForUsd(weth, 20_000_000e18);
        lp.createV2Pair(address(weth), address(usdc), wethPerSide, _amountForUsd(usdc, 20_000_000e18));
        _pin(IRebalancingVault.Venue.V2, v2Router, weth, usdc, 0);
    }

    function _deployUniswap() internal {
        address v3Factory = _create(vm.getCode(V3_FACTORY));
        IV3Factory(v3Factory).enableFeeAmount(100, 1); // as on mainnet since 2021: every tier exists
        v3Router = _create(abi.encodePacked(vm.getCode(V3_ROUTER), abi.encode(v3Factory, address(weth))));
        address v2Factory =
            _create(abi.encodePacked(vm.parseJsonBytes(vm.readFile(V2_FACTORY), ".bytecode"), abi.encode(owner)));
        v2Router = _create(
            abi.encodePacked(
                vm.parseJsonBytes(vm.readFile(V2_ROUTER), ".bytecode"), abi.encode(v2Factory, address(weth))
            )
        );
        lp = new PoolActor(IV3Router(v3Router), IV2Router02(v2Router));
        attacker = new PoolActor(IV3Router(v3Router), IV2Router02(v2Router));
        outsider = new PoolActor(IV3Router(v3Router), IV2Router02(v2Router));
        vm.label(address(attacker), "attacker");
        vm.label(address(outsider), "outsider");
        vm.label(address(lp), "honestLP");
    }

    /// The one place that knows the vault's constructor (deployed from its artifact, so this
    /// suite compiles against the interface alone).
    function _deployVault(
        IRebalancingVault.Asset[] memory assets,
        uint256 quoteIndex,
        IRebalancingVault.Limits memory limits
    ) internal returns (IRebalancingVault) {
        bytes memory args = abi.encode(owner, address(attacker), guardian, assets, quoteIndex, limits);
        return IRebalancingVault(_create(abi.encodePacked(vm.getCode("RebalancingVault.sol:RebalancingVault"), args)));
    }

    function _limits() internal pure returns (IRebalancingVault.Limits memory) {
        return IRebalancingVault.Limits(SLIPPAGE_BPS, LOSS_BPS, WINDOW_LOSS_BPS, COOLDOWN_S, MAX_STEPS);
    }

    function _create(bytes memory initCode) internal returns (address deployed) {
        assembly {
            deployed := create(0, add(initCode, 0x20), mload(initCode))
        }
        require(deployed != address(0), "deploy failed");
    }

    function _fund(PoolActor who, uint256 usdEach) internal {
        for (uint256 i = 0; i < tokens.length; i++) {
            tokens[i].mint(address(who), _amountForUsd(tokens[i], usdEach * 1e18));
        }
    }

    /// An honest deep full-range pool at the oracle, fee 3000, pinned by the owner.
    function _honestV3(TestToken a, TestToken b) internal returns (address pool) {
        pool = _seedV3(lp, a, b, HONEST_FEE, 1e18, 50_000_000e18, false);
        _pin(IRebalancingVault.Venue.V3, v3Router, a, b, HONEST_FEE);
    }

    function _pin(IRebalancingVault.Venue venue, address router, TestToken a, TestToken b, uint24 fee) internal {
        vm.prank(owner);
        vault.pinVenue(venue, router, address(a), address(b), fee);
    }

    // ---------------------------------------------------------------- pools

    /// Creates a V3 pool (any tier) whose price for selling `sell` into `buy` is `ratioE18` of the
    /// oracle's (1e18 = at the oracle), with full-range liquidity worth `depthUsd` a side.
    function _seedV3(
        PoolActor who,
        TestToken sell,
        TestToken buy,
        uint24 fee,
        uint256 ratioE18,
        uint256 depthUsd,
        bool isAttackers
    ) internal returns (address pool) {
        (TestToken t0, TestToken t1) = address(sell) < address(buy) ? (sell, buy) : (buy, sell);
        // price of token0 in token1 raw units; selling token0 gets ratio x, selling token1 1/ratio x
        uint256 sqrtP = _sqrtPriceX96(t0, t1, sell == t0 ? ratioE18 : Math.mulDiv(1e18, 1e18, ratioE18));
        pool = who.createV3Pool(address(t0), address(t1), fee, uint160(sqrtP));
        uint256 amount1 = _amountForUsd(t1, depthUsd);
        uint128 liquidity = uint128(Math.mulDiv(amount1, Q96, sqrtP));
        int24 spacing = IV3Pool(pool).tickSpacing();
        int24 maxTick = (887_272 / spacing) * spacing;
        who.addLiquidity(pool, -maxTick, maxTick, liquidity);
        if (isAttackers) attackerPools.push(pool);
    }

    /// sqrt(token1 raw units per token0 raw unit at the oracle * ratio) in Q64.96.
    function _sqrtPriceX96(TestToken t0, TestToken t1, uint256 ratioE18) internal view returns (uint256) {
        (uint256 a0, uint256 s0) = _priceOf(t0);
        (uint256 a1, uint256 s1) = _priceOf(t1);
        // raw1/raw0 = (a0 / s0) / (a1 / s1) where s = 10**(token dec + feed dec)
        uint256 priceX192 = Math.mulDiv(Math.mulDiv(a0 * s1, 1 << 192, a1 * s0), ratioE18, 1e18);
        return Math.sqrt(priceX192);
    }

    /// Arbitrages the honest pool of (a, b) to the current oracle price, as the market would
    /// after a feed move.
    function _arbHonest(TestToken a, TestToken b) internal {
        (TestToken t0, TestToken t1) = address(a) < address(b) ? (a, b) : (b, a);
        address pool = IV3Factory(IV3Router(v3Router).factory()).getPool(address(a), address(b), HONEST_FEE);
        uint160 target = uint160(_sqrtPriceX96(t0, t1, 1e18));
        (uint160 current,,,,,,) = IV3Pool(pool).slot0();
        if (target > current) lp.swapV3(address(t1), address(t0), HONEST_FEE, 1e30, target);
        else if (target < current) lp.swapV3(address(t0), address(t1), HONEST_FEE, 1e30, target);
    }

    // ---------------------------------------------------------------- oracle arithmetic (independent of the vault)

    function _idx(TestToken t) internal view returns (uint256) {
        for (uint256 i = 0; i < tokens.length; i++) {
            if (tokens[i] == t) return i;
        }
        revert("not a world token");
    }

    /// answer and 10**(token decimals + feed decimals)
    function _priceOf(TestToken t) internal view returns (uint256 answer, uint256 scale) {
        MockV3Aggregator feed = feeds[_idx(t)];
        answer = uint256(feed.latestAnswer());
        scale = 10 ** (uint256(t.decimals()) + feed.decimals());
    }

    /// USD with 18 decimals, floored.
    function _usd(TestToken t, uint256 amount) internal view returns (uint256) {
        (uint256 a, uint256 s) = _priceOf(t);
        return Math.mulDiv(amount * a, 1e18, s);
    }

    function _amountForUsd(TestToken t, uint256 usd18) internal view returns (uint256) {
        (uint256 a, uint256 s) = _priceOf(t);
        return Math.mulDiv(usd18, s, a * 1e18);
    }

    /// The vault's floor as the interface defines it: oracle output less maxSlippageBps at full
    /// precision, rounded UP (the vault's favour).
    function _floor(TestToken tIn, TestToken tOut, uint256 amountIn) internal view returns (uint256) {
        (uint256 aIn, uint256 sIn) = _priceOf(tIn);
        (uint256 aOut, uint256 sOut) = _priceOf(tOut);
        return Math.mulDiv(amountIn * aIn * (BPS - SLIPPAGE_BPS), sOut, aOut * sIn * BPS, Math.Rounding.Ceil);
    }

    function _vaultValues() internal view returns (uint256[] memory values, uint256 total) {
        values = new uint256[](tokens.length);
        for (uint256 i = 0; i < tokens.length; i++) {
            values[i] = _usd(tokens[i], tokens[i].balanceOf(address(vault)));
            total += values[i];
        }
    }

    function _vaultValue() internal view returns (uint256 total) {
        (, total) = _vaultValues();
    }

    /// What the attacker owns at the oracle: its balances plus the reserves of pools it alone seeded.
    function _attackerValue() internal view returns (uint256 total) {
        for (uint256 i = 0; i < tokens.length; i++) {
            total += _usd(tokens[i], tokens[i].balanceOf(address(attacker)));
            for (uint256 p = 0; p < attackerPools.length; p++) {
                total += _usd(tokens[i], tokens[i].balanceOf(attackerPools[p]));
            }
        }
    }

    function _outsiderValue() internal view returns (uint256 total) {
        for (uint256 i = 0; i < tokens.length; i++) {
            total += _usd(tokens[i], tokens[i].balanceOf(address(outsider)));
        }
    }

    // ---------------------------------------------------------------- steps and calls

    function _v3(TestToken tIn, TestToken tOut, uint24 fee, uint256 amountIn)
        internal
        view
        returns (IRebalancingVault.Step memory)
    {
        return IRebalancingVault.Step(
            IRebalancingVault.Venue.V3,
            v3Router,
            address(tIn),
            address(tOut),
            fee,
            amountIn,
            _floor(tIn, tOut, amountIn)
        );
    }

    function _v2(TestToken tIn, TestToken tOut, uint256 amountIn)
        internal
        view
        returns (IRebalancingVault.Step memory)
    {
        return IRebalancingVault.Step(
            IRebalancingVault.Venue.V2, v2Router, address(tIn), address(tOut), 0, amountIn, _floor(tIn, tOut, amountIn)
        );
    }

    /// What a V3 swap of amountIn would give right now (simulated and undone, as the attacker's
    /// eth_call would).
    function _quoteV3(TestToken tIn, TestToken tOut, uint24 fee, uint256 amountIn) internal returns (uint256 out) {
        uint256 snap = vm.snapshotState();
        (, out) = attacker.swapV3(address(tIn), address(tOut), fee, amountIn, 0);
        vm.revertToState(snap);
    }

    /// The keeper key sends the batch; returns the revert data if the vault refused it.
    function _send(IRebalancingVault.Step[] memory steps) internal returns (bool ok, bytes memory err) {
        vm.prank(address(attacker));
        try vault.rebalance(steps, block.timestamp) {
            ok = true;
        } catch (bytes memory reason) {
            err = reason;
        }
    }

    /// Sends the batch and requires the vault to refuse it with `selector`, leaving every
    /// balance where it was. Returns the revert data.
    function _expectRefused(IRebalancingVault.Step[] memory steps, bytes4 selector)
        internal
        returns (bytes memory err)
    {
        uint256[] memory before = _balances();
        bool ok;
        (ok, err) = _send(steps);
        vm.assertFalse(ok, "the vault accepted the attack");
        vm.assertEq(bytes32(_selectorOf(err)), bytes32(selector), "refused, but not with the expected error");
        uint256[] memory afterCall = _balances();
        for (uint256 i = 0; i < before.length; i++) {
            vm.assertEq(afterCall[i], before[i], "a refused batch moved a balance");
        }
    }

    function _balances() internal view returns (uint256[] memory b) {
        b = new uint256[](tokens.length);
        for (uint256 i = 0; i < tokens.length; i++) {
            b[i] = tokens[i].balanceOf(address(vault));
        }
    }

    function _selectorOf(bytes memory err) internal pure returns (bytes4 sel) {
        if (err.length < 4) return bytes4(0);
        assembly {
            sel := mload(add(err, 0x20))
        }
    }

    /// The error's arguments, without the selector (for abi.decode).
    function _args(bytes memory err) internal pure returns (bytes memory a) {
        a = new bytes(err.length - 4);
        for (uint256 i = 0; i < a.length; i++) {
            a[i] = err[i + 4];
        }
    }

    /// Feeds answer again at the same price (as a live Chainlink feed does within its heartbeat).
    function _refreshFeeds() internal {
        for (uint256 i = 0; i < feeds.length; i++) {
            feeds[i].updateAnswer(feeds[i].latestAnswer());
        }
    }

    function _steps(IRebalancingVault.Step memory a) internal pure returns (IRebalancingVault.Step[] memory s) {
        s = new IRebalancingVault.Step[](1);
        s[0] = a;
    }

    function _steps(IRebalancingVault.Step memory a, IRebalancingVault.Step memory b)
        internal
        pure
        returns (IRebalancingVault.Step[] memory s)
    {
        s = new IRebalancingVault.Step[](2);
        s[0] = a;
        s[1] = b;
    }

    function _bpsOf(uint256 part, uint256 whole) internal pure returns (uint256) {
        return Math.mulDiv(part, BPS, whole);
    }

    function _log(string memory label, uint256 value) internal view {
        AdvLog.log(label, value);
    }
}
