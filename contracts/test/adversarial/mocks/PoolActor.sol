// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {IV2Factory, IV2Pair, IV2Router02, IV3Factory, IV3Pool, IV3Router} from "./UniswapLike.sol";

/// @notice Somebody with capital on the real Uniswap V2/V3 contracts: creates pools and pairs at
/// any tier and price, provides liquidity, swaps (also up to a price, to front-run). The suite
/// uses one as the honest liquidity provider, one as the attacker (who also holds the keeper
/// key) and one as an outsider without the key. It pays for liquidity from its own balances.
contract PoolActor {
    IV3Factory public immutable v3Factory;
    IV3Router public immutable v3Router;
    IV2Factory public immutable v2Factory;
    IV2Router02 public immutable v2Router;

    constructor(IV3Router v3Router_, IV2Router02 v2Router_) {
        v3Router = v3Router_;
        v3Factory = IV3Factory(v3Router_.factory());
        v2Router = v2Router_;
        v2Factory = IV2Factory(v2Router_.factory());
    }

    // ---------------------------------------------------------------- V3

    /// Creates (or finds) the pool for (a, b, fee) and, if new, initializes it at sqrtPriceX96.
    function createV3Pool(address a, address b, uint24 fee, uint160 sqrtPriceX96) external returns (address pool) {
        pool = v3Factory.getPool(a, b, fee);
        if (pool == address(0)) pool = v3Factory.createPool(a, b, fee);
        (uint160 current,,,,,,) = IV3Pool(pool).slot0();
        if (current == 0) IV3Pool(pool).initialize(sqrtPriceX96);
    }

    function addLiquidity(address pool, int24 tickLower, int24 tickUpper, uint128 liquidity) external {
        IV3Pool(pool).mint(address(this), tickLower, tickUpper, liquidity, "");
    }

    /// Takes a position out entirely, fees included.
    function removeLiquidity(address pool, int24 tickLower, int24 tickUpper, uint128 liquidity) external {
        IV3Pool(pool).burn(tickLower, tickUpper, liquidity);
        IV3Pool(pool).collect(address(this), tickLower, tickUpper, type(uint128).max, type(uint128).max);
    }

    function uniswapV3MintCallback(uint256 owed0, uint256 owed1, bytes calldata) external {
        IV3Pool pool = IV3Pool(msg.sender);
        require(v3Factory.getPool(pool.token0(), pool.token1(), pool.fee()) == msg.sender, "not a pool");
        if (owed0 > 0) IERC20(pool.token0()).transfer(msg.sender, owed0);
        if (owed1 > 0) IERC20(pool.token1()).transfer(msg.sender, owed1);
    }

    /// Sells up to amountIn through the SwapRouter; with a price limit the swap stops there and
    /// only what the pool took is paid.
    function swapV3(address tokenIn, address tokenOut, uint24 fee, uint256 amountIn, uint160 sqrtPriceLimitX96)
        external
        returns (uint256 spent, uint256 received)
    {
        uint256 before = IERC20(tokenIn).balanceOf(address(this));
        IERC20(tokenIn).approve(address(v3Router), amountIn);
        received = v3Router.exactInputSingle(
            IV3Router.ExactInputSingleParams(
                tokenIn, tokenOut, fee, address(this), block.timestamp, amountIn, 0, sqrtPriceLimitX96
            )
        );
        IERC20(tokenIn).approve(address(v3Router), 0);
        spent = before - IERC20(tokenIn).balanceOf(address(this));
    }

    // ---------------------------------------------------------------- V2

    function createV2Pair(address a, address b, uint256 amountA, uint256 amountB) external returns (address pair) {
        pair = v2Factory.getPair(a, b);
        if (pair == address(0)) pair = v2Factory.createPair(a, b);
        IERC20(a).transfer(pair, amountA);
        IERC20(b).transfer(pair, amountB);
        IV2Pair(pair).mint(address(this));
    }

    function swapV2(address tokenIn, address tokenOut, uint256 amountIn) external returns (uint256 received) {
        IERC20(tokenIn).approve(address(v2Router), amountIn);
        address[] memory path = new address[](2);
        path[0] = tokenIn;
        path[1] = tokenOut;
        uint256[] memory amounts = v2Router.swapExactTokensForTokens(amountIn, 0, path, address(this), block.timestamp);
        received = amounts[1];
    }

    // ---------------------------------------------------------------- anything else

    /// The attacker's contracts can call anything (the vault with the keeper key, a token, ...).
    function call(address target, bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }
}
