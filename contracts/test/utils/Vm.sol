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

    // gas measurement
    struct Gas {
        uint64 gasLimit;
        uint64 gasTotalUsed;
        uint64 gasMemoryUsed;
        int64 gasRefunded;
        uint64 gasRemaining;
    }

    function lastCallGas() external view returns (Gas memory gas);
    function cool(address target) external;

    // state
    function load(address target, bytes32 slot) external view returns (bytes32 data);
    function store(address target, bytes32 slot, bytes32 value) external;
    function etch(address target, bytes calldata newRuntimeBytecode) external;
    function setNonce(address account, uint64 newNonce) external;
    function getNonce(address account) external view returns (uint64 nonce);
    function computeCreateAddress(address deployer, uint256 nonce) external pure returns (address);
    function snapshotState() external returns (uint256 snapshotId);
    function revertToState(uint256 snapshotId) external returns (bool success);

    // expectations
    function expectRevert() external;
    function expectRevert(bytes calldata revertData) external;
    function expectEmit(address emitter) external;

    // logs
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory logs);

    // files (the V2 artifacts' build JSON cannot go through getCode)
    function readFile(string calldata path) external view returns (string memory data);
    function parseJsonBytes(string calldata json, string calldata key) external pure returns (bytes memory);

    // assertions (revert with a readable message on failure)
    function assertTrue(bool condition, string calldata error) external pure;
    function assertFalse(bool condition, string calldata error) external pure;
    function assertEq(uint256 left, uint256 right, string calldata error) external pure;
    function assertEq(address left, address right, string calldata error) external pure;
    function assertGe(uint256 left, uint256 right, string calldata error) external pure;
    function assertLe(uint256 left, uint256 right, string calldata error) external pure;
    function assertGt(uint256 left, uint256 right, string calldata error) external pure;
}
