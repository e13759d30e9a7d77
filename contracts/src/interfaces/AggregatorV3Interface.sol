// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice The read side of a Chainlink price feed, as the vault and the keeper use it.
/// @dev Written here because @chainlink/contracts does not install from npm offline.
interface AggregatorV3Interface {
    function decimals() external view returns (uint8);

    function description() external view returns (string memory);

    function version() external view returns (uint256);

    function getRoundData(uint80 roundId)
        external
        view
        returns (uint80 roundId_, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}
