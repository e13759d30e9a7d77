// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice A pool registry shaped like UniswapV3Factory.getPool and UniswapV2Factory.getPair, for
/// the mock routers: the vault derives a pinned venue's pool from `router.factory()`, so a test
/// router needs a factory that knows its "pools". A pool is registered under its sorted tokens
/// (and fee; V2 pairs live apart from V3 pools), and its address is a fixed function of them.
contract MockFactory {
    mapping(address token0 => mapping(address token1 => mapping(uint24 fee => address))) private _pools;
    mapping(address token0 => mapping(address token1 => address)) private _pairs;

    function createPool(address tokenA, address tokenB, uint24 fee) external returns (address pool) {
        (address t0, address t1) = _sort(tokenA, tokenB);
        pool = address(uint160(uint256(keccak256(abi.encode(address(this), t0, t1, fee, "v3")))));
        _pools[t0][t1][fee] = pool;
    }

    function createPair(address tokenA, address tokenB) external returns (address pair) {
        (address t0, address t1) = _sort(tokenA, tokenB);
        pair = address(uint160(uint256(keccak256(abi.encode(address(this), t0, t1, "v2")))));
        _pairs[t0][t1] = pair;
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
