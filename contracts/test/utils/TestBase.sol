// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Vm} from "./Vm.sol";

/// @notice The little of forge-std's Test these tests need: the cheatcode handle and bound().
abstract contract TestBase {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev Forge treats a contract as a test suite when it exposes this.
    bool public IS_TEST = true;

    /// @dev Maps any fuzzed x into [min, max] without discarding runs (forge-std's algorithm:
    /// values already in range stay put, others wrap around the range).
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 size = max - min + 1;
        if (x <= 3 && size > x) return min + x;
        if (x >= type(uint256).max - 3 && size > type(uint256).max - x) return max - (type(uint256).max - x);
        if (x > max) {
            uint256 diff = x - max;
            uint256 rem = diff % size;
            if (rem == 0) return max;
            return min + rem - 1;
        }
        uint256 diffBelow = min - x;
        uint256 remBelow = diffBelow % size;
        if (remBelow == 0) return min;
        return max - remBelow + 1;
    }
}
