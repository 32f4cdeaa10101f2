// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Blob} from "./Blob.sol";

/// @title EcdsaMultisigBaseline
/// @notice A reference point for the gas benchmark only, never deployed by the nodes: an
///         m-of-n ECDSA multisig settlement built the way Hyperlane's multisig ISM checks a
///         message (validators kept in code, signatures ordered by validator, one `ecrecover`
///         each), that records the round's root in one slot and emits an event as `Settlement`
///         does. It lets the benchmark compare BLS aggregation with ECDSA at the same signer
///         count in the same run.
contract EcdsaMultisigBaseline {
    address private immutable _validators;
    uint256 private immutable _count;
    uint256 public immutable threshold;
    mapping(uint64 round => bytes32 root) public settledRoot;

    /// @notice A round was settled.
    event Settled(uint64 indexed round, bytes32 indexed root, address submitter);

    /// @notice The round was settled already.
    error RoundAlreadySettled(uint64 round);
    /// @notice Fewer valid signatures than `threshold`, in validator order.
    error InsufficientSignatures(uint256 valid, uint256 threshold);

    /// @param validators Validator addresses, in the order signatures must follow (stored as
    ///        `abi.encodePacked` lays out an array: one 32-byte word each).
    constructor(address[] memory validators, uint256 threshold_) {
        _validators = Blob.write(abi.encodePacked(validators));
        _count = validators.length;
        threshold = threshold_;
    }

    /// @notice The digest validators sign for a round.
    function digest(uint64 round, bytes32 root) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), round, root));
    }

    /// @notice Records `root` for `round` if `signatures` (65 bytes each, r ‖ s ‖ v, in
    ///         validator order) hold `threshold` valid ones.
    function settle(uint64 round, bytes32 root, bytes calldata signatures) external {
        if (settledRoot[round] != bytes32(0)) revert RoundAlreadySettled(round);
        bytes32 d = digest(round, root);
        bytes memory validators = Blob.read(_validators, 0, _count * 32);
        uint256 k = signatures.length / 65;
        uint256 v = 0;
        uint256 valid = 0;
        for (uint256 i = 0; i < k && valid < threshold; ++i) {
            bytes32 r = bytes32(signatures[i * 65:i * 65 + 32]);
            bytes32 s = bytes32(signatures[i * 65 + 32:i * 65 + 64]);
            uint8 vv = uint8(signatures[i * 65 + 64]);
            address signer = ecrecover(d, vv, r, s);
            while (v < _count && _at(validators, v) != signer) ++v;
            if (v == _count) break;
            ++v;
            ++valid;
        }
        if (valid < threshold) revert InsufficientSignatures(valid, threshold);
        settledRoot[round] = root;
        emit Settled(round, root, msg.sender);
    }

    function _at(bytes memory packed, uint256 i) private pure returns (address a) {
        assembly ("memory-safe") {
            a := mload(add(add(packed, 0x20), mul(i, 32)))
        }
    }
}
