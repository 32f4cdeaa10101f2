// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Relay
/// @notice Forwards any call from its own address, as a contract wallet, a multicall or an
///         account-abstraction bundler does. For local test networks: it lets a test be the
///         outsider who lifts a keeper's `settle` call from the mempool and lands it first,
///         wrapped in calldata of its own.
contract Relay {
    /// @notice The forwarded call reverted; `reason` is its revert data.
    error CallFailed(bytes reason);

    /// @notice Calls `target` with `data` and the value sent along.
    /// @return The call's return data.
    function forward(address target, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call{value: msg.value}(data);
        if (!ok) revert CallFailed(ret);
        return ret;
    }
}
