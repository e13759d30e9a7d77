// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "../../src/interfaces/AggregatorV3Interface.sol";

/// @notice A feed shaped like a Chainlink proxy: round ids carry the phase in their top 16 bits
/// (phaseId << 64 | aggregator round), and decimals change only if the test says so. It can
/// also refuse latestRoundData (as a feed with no round yet does).
contract PhasedFeed is AggregatorV3Interface {
    uint8 public decimals;
    int256 public answer;
    uint80 public roundId;
    uint256 public updatedAt;
    bool public noRound;

    constructor(uint8 decimals_, int256 answer_, uint16 phase) {
        set(decimals_, answer_, phase);
    }

    /// @dev A new answer in `phase` (its first round if the phase changed) with these decimals.
    function set(uint8 decimals_, int256 answer_, uint16 phase) public {
        decimals = decimals_;
        answer = answer_;
        roundId = uint80((uint256(phase) << 64) | ((roundId >> 64 == phase ? uint64(roundId) : 0) + 1));
        updatedAt = block.timestamp;
    }

    function setNoRound(bool noRound_) external {
        noRound = noRound_;
    }

    function description() external pure returns (string memory) {
        return "phased test feed";
    }

    function version() external pure returns (uint256) {
        return 4;
    }

    function getRoundData(uint80) external view returns (uint80, int256, uint256, uint256, uint80) {
        return latestRoundData();
    }

    function latestRoundData() public view returns (uint80, int256, uint256, uint256, uint80) {
        require(!noRound, "No data present");
        return (roundId, answer, updatedAt, updatedAt, roundId);
    }
}
