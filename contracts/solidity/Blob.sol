// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Blob: immutable data kept as the code of a data-only contract (the SSTORE2 pattern)
/// @notice Writing costs 200 gas a byte instead of 22,100 a word of storage, and reading a whole
///         key set costs one cold account access (2,600) plus 3 gas a word, against 2,100 per
///         cold storage slot. The code starts with a STOP byte so that calling it does nothing.
library Blob {
    /// @notice Creating the data contract failed (too large, out of gas).
    error BlobWriteFailed(uint256 length);
    /// @notice A read past the end of a blob.
    error BlobReadOutOfRange(address blob, uint256 offset, uint256 length);

    /// @notice Stores `data`; returns the address to read it from.
    function write(bytes memory data) internal returns (address blob) {
        uint256 size = data.length + 1;
        // Init code (14 bytes): PUSH2 size, PUSH1 14, PUSH1 0, CODECOPY, PUSH2 size, PUSH1 0,
        // RETURN; it returns the runtime code 0x00 ‖ data that follows it.
        bytes memory init = abi.encodePacked(hex"61", uint16(size), hex"600e600039", hex"61", uint16(size), hex"6000f3", hex"00", data);
        assembly ("memory-safe") {
            blob := create(0, add(init, 0x20), mload(init))
        }
        if (blob == address(0)) revert BlobWriteFailed(data.length);
    }

    /// @notice `length` bytes of the data stored at `blob`, from `offset`.
    function read(address blob, uint256 offset, uint256 length) internal view returns (bytes memory out) {
        if (offset + length + 1 > blob.code.length) revert BlobReadOutOfRange(blob, offset, length);
        out = new bytes(length);
        assembly ("memory-safe") {
            extcodecopy(blob, add(out, 0x20), add(offset, 1), length)
        }
    }
}
