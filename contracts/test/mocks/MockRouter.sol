// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {AggregatorV3Interface} from "../../src/interfaces/AggregatorV3Interface.sol";
import {MockFactory} from "./MockFactory.sol";

/// @notice An honest venue for tests: its factory's pools (MockPool, shaped like a Uniswap V3
/// pool and a V2 pair) swap at the oracle rate less `haircutBps`, paid out of this contract's
/// balances (TestToken only lets its deployer mint, so tests fund the router, not each pool).
/// The vault calls the pools directly; the router is the venue's identity and owns the price,
/// the liquidity and, in MisbehavingRouter, the misbehaviour (`fill`).
contract MockRouter {
    MockFactory public immutable factory = new MockFactory();
    uint256 public haircutBps;
    mapping(address token => AggregatorV3Interface) public feedOf;

    function setHaircut(uint256 haircutBps_) external {
        require(haircutBps_ <= 10_000, "haircut > 100%");
        haircutBps = haircutBps_;
    }

    function setFeed(address token, AggregatorV3Interface feed) external {
        feedOf[token] = feed;
    }

    /// @notice Output for `amountIn`: oracle rate, computed independently of the vault's VaultMath.
    function quote(address tokenIn, address tokenOut, uint256 amountIn) public view returns (uint256) {
        (, int256 priceIn,,,) = feedOf[tokenIn].latestRoundData();
        (, int256 priceOut,,,) = feedOf[tokenOut].latestRoundData();
        uint256 scaleIn = 10 ** (IERC20Metadata(tokenIn).decimals() + feedOf[tokenIn].decimals());
        uint256 scaleOut = 10 ** (IERC20Metadata(tokenOut).decimals() + feedOf[tokenOut].decimals());
        uint256 fair = Math.mulDiv(amountIn * uint256(priceIn), scaleOut, uint256(priceOut) * scaleIn);
        return fair * (10_000 - haircutBps) / 10_000;
    }

    /// @notice A pool's swap of `amountIn`: pays `to` the output and says how much of the input
    /// the pool must be paid. Only this router's pools may ask.
    function fill(address tokenIn, address tokenOut, uint256 amountIn, address to)
        external
        returns (uint256 amountOut, uint256 owed)
    {
        require(factory.isPool(msg.sender), "MockRouter: not my pool");
        return _fill(tokenIn, tokenOut, amountIn, to);
    }

    /// @dev The one place misbehaving subclasses change.
    function _fill(address tokenIn, address tokenOut, uint256 amountIn, address to)
        internal
        virtual
        returns (uint256 amountOut, uint256 owed)
    {
        amountOut = quote(tokenIn, tokenOut, amountIn);
        IERC20(tokenOut).transfer(to, amountOut);
        owed = amountIn;
    }
}
