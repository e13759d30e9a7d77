// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestToken} from "../../src/world/TestToken.sol";

/// @notice A token whose transferFrom also burns one extra unit from the payer: the only way a
/// router can make the vault's balance drop by more than the amount it approved.
contract GreedyToken is TestToken {
    constructor() TestToken("Greedy", "GRDY", 18) {}

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        super.transferFrom(from, to, value);
        _burn(from, 1);
        return true;
    }
}
