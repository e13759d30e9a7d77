// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {RebalancingVault} from "../src/RebalancingVault.sol";
import {IRebalancingVault} from "../src/interfaces/IRebalancingVault.sol";
import {MockV3Aggregator} from "../src/world/MockV3Aggregator.sol";
import {TestToken} from "../src/world/TestToken.sol";
import {TestBase} from "./utils/TestBase.sol";

/// @dev The few calls this test makes on the real Uniswap V3 contracts.
interface IUniswapV3FactoryLike {
    function createPool(address tokenA, address tokenB, uint24 fee) external returns (address pool);
}

interface IUniswapV3PoolLike {
    function token0() external view returns (address);
    function initialize(uint160 sqrtPriceX96) external;
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external
        returns (uint256 amount0, uint256 amount1);
}

/// @notice The vault against the real Uniswap V3 bytecode from npm (v3-core 1.0.1 factory and
/// pool, v3-periphery SwapRouter): the exactInputSingle call, the exact approval pulled by the
/// pool callback, and the balance-measured output all work with the genuine contracts.
contract RebalancingVaultUniswapV3Test is TestBase {
    string internal constant FACTORY =
        "../node_modules/@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json";
    string internal constant SWAP_ROUTER =
        "../node_modules/@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json";
    uint24 internal constant FEE = 3000;
    int24 internal constant FULL_RANGE = 887_220; // MAX_TICK rounded down to the 3000 tier's spacing of 60

    address internal owner = address(0xA11CE);
    address internal keeper = address(0xBEEF);
    TestToken internal weth;
    TestToken internal usdc;
    MockV3Aggregator internal ethFeed;
    MockV3Aggregator internal usdcFeed;
    RebalancingVault internal vault;
    address internal swapRouter;
    address internal pool;

    function setUp() public {
        vm.warp(1_700_000_000);
        weth = new TestToken("Wrapped Ether", "WETH", 18);
        usdc = new TestToken("USD Coin", "USDC", 6);
        ethFeed = new MockV3Aggregator(8, 2100e8);
        usdcFeed = new MockV3Aggregator(8, 1e8);

        address factory = _deploy(vm.getCode(FACTORY));
        swapRouter = _deploy(abi.encodePacked(vm.getCode(SWAP_ROUTER), abi.encode(factory, address(weth))));

        // A deep full-range pool priced at the oracle: $2100 per WETH.
        pool = IUniswapV3FactoryLike(factory).createPool(address(weth), address(usdc), FEE);
        bool wethIs0 = IUniswapV3PoolLike(pool).token0() == address(weth);
        IUniswapV3PoolLike(pool)
            .initialize(wethIs0 ? _sqrtPriceX96(2100e8, 18, 1e8, 6) : _sqrtPriceX96(1e8, 6, 2100e8, 18));
        IUniswapV3PoolLike(pool).mint(address(this), -FULL_RANGE, FULL_RANGE, 4e17, "");

        // Half WETH, half USDC at $2000; ETH has since risen to $2100, so the vault is overweight WETH.
        IRebalancingVault.Asset[] memory assets = new IRebalancingVault.Asset[](2);
        assets[0] = IRebalancingVault.Asset(address(weth), address(ethFeed), 3600, 5000);
        assets[1] = IRebalancingVault.Asset(address(usdc), address(usdcFeed), 86_400, 5000);
        vault = new RebalancingVault(owner, keeper, owner, assets, 1, IRebalancingVault.Limits(100, 50, 100, 3600, 4));
        weth.mint(address(vault), 50e18);
        usdc.mint(address(vault), 100_000e6);
        vm.prank(owner);
        vault.pinVenue(IRebalancingVault.Venue.V3, swapRouter, address(usdc), address(weth), FEE);
    }

    /// The pinned pool is the one the real factory has for the pair and tier: derived by the vault
    /// from SwapRouter.factory(), never given by the caller. A tier with no pool cannot be pinned.
    function test_pinDerivesTheRealPool() public {
        IRebalancingVault.PinnedVenue[] memory pins = vault.pinnedVenues();
        vm.assertEq(pins.length, 1, "one pin");
        vm.assertEq(pins[0].pool, pool, "the factory's pool");
        vm.assertEq(pins[0].router, swapRouter, "router");
        (address t0, address t1) = address(weth) < address(usdc) ? (address(weth), address(usdc)) : (address(usdc), address(weth));
        vm.assertEq(pins[0].token0, t0, "token0 sorted");
        vm.assertEq(pins[0].token1, t1, "token1 sorted");
        vm.assertEq(uint256(pins[0].fee), FEE, "fee");
        vm.assertTrue(
            vault.isPinned(IRebalancingVault.Venue.V3, swapRouter, address(weth), address(usdc), FEE), "isPinned"
        );

        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(
                IRebalancingVault.BadConfig.selector, "the router's factory has no pool for this pair and fee"
            )
        );
        vault.pinVenue(IRebalancingVault.Venue.V3, swapRouter, address(weth), address(usdc), 500);
    }

    /// Pays the pool what it asks for the liquidity this test adds.
    function uniswapV3MintCallback(uint256 amount0Owed, uint256 amount1Owed, bytes calldata) external {
        require(msg.sender == pool, "not the pool");
        bool wethIs0 = IUniswapV3PoolLike(pool).token0() == address(weth);
        weth.mint(pool, wethIs0 ? amount0Owed : amount1Owed);
        usdc.mint(pool, wethIs0 ? amount1Owed : amount0Owed);
    }

    /// Selling 1.19 WETH (~$2500) through the real SwapRouter: the output is within the pool fee
    /// of the oracle, drift drops from 243 bps to ~0, and no allowance is ever given.
    function test_rebalanceThroughRealUniswapV3() public {
        vm.assertEq(vault.driftBps(), 243, "drift before");
        uint256 amountIn = 1.19e18;
        uint256 oracleOut = 2499e6; // 1.19 * 2100
        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](1);
        steps[0] = IRebalancingVault.Step(
            IRebalancingVault.Venue.V3, swapRouter, address(weth), address(usdc), FEE, amountIn, oracleOut * 99 / 100
        );

        vm.prank(keeper);
        vault.rebalance(steps, block.timestamp + 60);

        uint256 received = usdc.balanceOf(address(vault)) - 100_000e6;
        vm.assertLe(received, oracleOut * 9970 / 10_000, "got more than oracle less the 0.3% fee");
        vm.assertGe(received, oracleOut * 9960 / 10_000, "price impact above 10 bps in a deep pool");
        vm.assertEq(weth.balanceOf(address(vault)), 50e18 - amountIn, "WETH spent");
        vm.assertLe(vault.driftBps(), 1, "drift after");
        vm.assertEq(weth.allowance(address(vault), swapRouter), 0, "allowance left");
        vm.assertEq(vault.lastRebalance(), block.timestamp, "lastRebalance");
    }

    /// Asked for the oracle price with no slippage, the real pool's fill (0.3% fee and impact
    /// under the minimum) is refused by the vault's own measured-balance check, with the exact
    /// figures, and the vault keeps everything.
    function test_realPoolFillUnderTheMinimumIsRefused() public {
        IRebalancingVault.Step[] memory steps = new IRebalancingVault.Step[](1);
        steps[0] = IRebalancingVault.Step(
            IRebalancingVault.Venue.V3, swapRouter, address(weth), address(usdc), FEE, 1.19e18, 2499e6
        );
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IRebalancingVault.InsufficientOutput.selector, 0, 2_491_164_394, 2499e6));
        vault.rebalance(steps, block.timestamp + 60);
        vm.assertEq(weth.balanceOf(address(vault)), 50e18, "WETH kept");
        vm.assertEq(usdc.balanceOf(address(vault)), 100_000e6, "USDC unchanged");
    }

    // ---------------------------------------------------------------- helpers

    function _deploy(bytes memory initCode) internal returns (address deployed) {
        assembly {
            deployed := create(0, add(initCode, 0x20), mload(initCode))
        }
        require(deployed != address(0), "deploy failed");
    }

    /// @dev sqrt(token1 raw units per token0 raw unit) in Q64.96, from USD prices and decimals.
    function _sqrtPriceX96(uint256 price0, uint8 decimals0, uint256 price1, uint8 decimals1)
        internal
        pure
        returns (uint160)
    {
        return uint160(Math.sqrt(Math.mulDiv(price0 * 10 ** decimals1, 1 << 192, price1 * 10 ** decimals0)));
    }
}
