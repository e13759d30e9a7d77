// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @notice A price feed the local world controls, with the ABI of Chainlink's MockV3Aggregator.
/// @dev Test double for a real feed: the deployer and the market helper set its answers.
contract MockV3Aggregator is AggregatorV3Interface {
    uint256 public constant override version = 0;

    uint8 public override decimals;
    int256 public latestAnswer;
    uint256 public latestTimestamp;
    uint256 public latestRound;
    string public override description;

    mapping(uint256 => int256) public getAnswer;
    mapping(uint256 => uint256) public getTimestamp;
    mapping(uint256 => uint256) private getStartedAt;

    /// @dev When set, every read reverts, as a shut-down Chainlink feed does.
    bool public broken;

    constructor(uint8 decimals_, int256 initialAnswer) {
        decimals = decimals_;
        description = "keeper local mock feed";
        updateAnswer(initialAnswer);
    }

    function updateAnswer(int256 answer) public {
        latestAnswer = answer;
        latestTimestamp = block.timestamp;
        latestRound++;
        getAnswer[latestRound] = answer;
        getTimestamp[latestRound] = block.timestamp;
        getStartedAt[latestRound] = block.timestamp;
    }

    function updateRoundData(uint80 roundId, int256 answer, uint256 timestamp, uint256 startedAt) public {
        latestRound = roundId;
        latestAnswer = answer;
        latestTimestamp = timestamp;
        getAnswer[latestRound] = answer;
        getTimestamp[latestRound] = timestamp;
        getStartedAt[latestRound] = startedAt;
    }

    function setBroken(bool broken_) external {
        broken = broken_;
    }

    function getRoundData(uint80 roundId)
        external
        view
        override
        returns (uint80, int256, uint256, uint256, uint80)
    {
        require(!broken, "feed shut down");
        return (roundId, getAnswer[roundId], getStartedAt[roundId], getTimestamp[roundId], roundId);
    }

    function latestRoundData() external view override returns (uint80, int256, uint256, uint256, uint80) {
        require(!broken, "feed shut down");
        uint80 round = uint80(latestRound);
        return (round, getAnswer[latestRound], getStartedAt[latestRound], getTimestamp[latestRound], round);
    }
}
