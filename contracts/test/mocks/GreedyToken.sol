// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TestToken} from "../../src/world/TestToken.sol";

/// @notice A token whose transfer also burns one extra unit from the sender: the only way the
/// vault's balance can drop by more than the amount it paid a pool.
contract GreedyToken is TestToken {
    constructor() TestToken("Greedy", "GRDY", 18) {}

    function transfer(address to, uint256 value) public override returns (bool) {
        super.transfer(to, value);
        _burn(msg.sender, 1);
        return true;
    }
}
