// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {MockPool} from "./MockPool.sol";

/// @notice A pool registry shaped like UniswapV3Factory.getPool and UniswapV2Factory.getPair, for
/// the mock routers: the vault derives a pinned venue's pool from `router.factory()` and then
/// calls that pool, so each "pool" is a MockPool trading at its router's prices. A pool is
/// registered under its sorted tokens (and fee; V2 pairs live apart from V3 pools).
contract MockFactory {
    address public immutable router = msg.sender; // the MockRouter that created this factory
    mapping(address token0 => mapping(address token1 => mapping(uint24 fee => address))) private _pools;
    mapping(address token0 => mapping(address token1 => address)) private _pairs;
    mapping(address => bool) public isPool;

    function createPool(address tokenA, address tokenB, uint24 fee) external returns (address pool) {
        (address t0, address t1) = _sort(tokenA, tokenB);
        pool = address(new MockPool(router, t0, t1));
        _pools[t0][t1][fee] = pool;
        isPool[pool] = true;
    }

    function createPair(address tokenA, address tokenB) external returns (address pair) {
        (address t0, address t1) = _sort(tokenA, tokenB);
        pair = address(new MockPool(router, t0, t1));
        _pairs[t0][t1] = pair;
        isPool[pair] = true;
    }

    function getPool(address tokenA, address tokenB, uint24 fee) external view returns (address) {
        (address t0, address t1) = _sort(tokenA, tokenB);
        return _pools[t0][t1][fee];
    }

    function getPair(address tokenA, address tokenB) external view returns (address) {
        (address t0, address t1) = _sort(tokenA, tokenB);
        return _pairs[t0][t1];
    }

    function _sort(address a, address b) private pure returns (address, address) {
        return a < b ? (a, b) : (b, a);
    }
}
