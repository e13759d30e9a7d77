// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {AggregatorV3Interface} from "../../src/interfaces/AggregatorV3Interface.sol";
import {IV2Router, IV3SwapRouter} from "../../src/interfaces/IUniswapRouters.sol";
import {MockFactory} from "./MockFactory.sol";

/// @notice An honest router for tests: swaps at the oracle rate less `haircutBps`, out of balances
/// it was funded with (TestToken only lets its deployer mint), enforcing the caller's minimum and
/// deadline the way Uniswap's routers do. Speaks both the V3 and the V2 router call, and has a
/// `factory()` (its own MockFactory) as both Uniswap routers do, where tests create the "pools"
/// the vault's owner pins.
contract MockRouter is IV3SwapRouter, IV2Router {
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

    function exactInputSingle(ExactInputSingleParams calldata p) external payable returns (uint256) {
        require(block.timestamp <= p.deadline, "Transaction too old");
        return _swap(p.tokenIn, p.tokenOut, p.amountIn, p.amountOutMinimum, p.recipient);
    }

    function swapExactTokensForTokens(
        uint256 amountIn,
        uint256 amountOutMin,
        address[] calldata path,
        address to,
        uint256 deadline
    ) external returns (uint256[] memory amounts) {
        require(deadline >= block.timestamp, "UniswapV2Router: EXPIRED");
        require(path.length == 2, "MockRouter: two-token path only");
        amounts = new uint256[](2);
        amounts[0] = amountIn;
        amounts[1] = _swap(path[0], path[1], amountIn, amountOutMin, to);
    }

    /// @dev The one place misbehaving subclasses change.
    function _swap(address tokenIn, address tokenOut, uint256 amountIn, uint256 minOut, address to)
        internal
        virtual
        returns (uint256 amountOut)
    {
        IERC20(tokenIn).transferFrom(msg.sender, address(this), amountIn);
        amountOut = quote(tokenIn, tokenOut, amountIn);
        require(amountOut >= minOut, "Too little received");
        IERC20(tokenOut).transfer(to, amountOut);
    }
}
