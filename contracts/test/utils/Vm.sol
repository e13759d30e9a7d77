// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice The Foundry cheatcodes these tests use, declared by hand because forge-std is not
/// installable offline. Signatures match Foundry 1.x's Vm exactly (the selector is what counts).
interface Vm {
    // environment
    function warp(uint256 newTimestamp) external;
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function getCode(string calldata artifactPath) external view returns (bytes memory creationBytecode);

    // expectations
    function expectRevert() external;
    function expectRevert(bytes calldata revertData) external;
    function expectEmit(address emitter) external;

    // assertions (revert with a readable message on failure)
    function assertTrue(bool condition, string calldata error) external pure;
    function assertFalse(bool condition, string calldata error) external pure;
    function assertEq(uint256 left, uint256 right, string calldata error) external pure;
    function assertEq(address left, address right, string calldata error) external pure;
    function assertGe(uint256 left, uint256 right, string calldata error) external pure;
    function assertLe(uint256 left, uint256 right, string calldata error) external pure;
}
