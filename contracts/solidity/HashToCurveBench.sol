// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {BLS} from "./BLS.sol";

/// @title HashToCurveBench
/// @notice For the gas benchmark only, never deployed by the nodes: hashes a 32-byte batch
///         message to G1 (min-sig, `BLS.hashToG1`, assembly) and to G2 (min-pk, the Solidity
///         implementation `Settlement` used before epochs), so the benchmark measures the two
///         schemes' hashing side by side. `noop` is the baseline that takes the same calldata.
contract HashToCurveBench {
    bytes private constant DST_G2 = "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
    bytes private constant P =
        hex"1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab";

    /// @notice Nothing: the cost of the call itself.
    function noop(bytes calldata message) external pure returns (uint256) {
        return message.length;
    }

    /// @notice RFC 9380 hash to G1 (128-byte EIP-2537 point).
    function toG1(bytes calldata message) external view returns (uint256) {
        return BLS.hashToG1(message, BLS.SIG_DST).length;
    }

    /// @notice RFC 9380 hash to G2 (256-byte EIP-2537 point), as settled before epochs.
    function toG2(bytes calldata message) external view returns (uint256) {
        bytes memory uniform = _expand(message);
        bytes memory q0 = _call(address(0x11), bytes.concat(_reduce(uniform, 0), _reduce(uniform, 64)), 256);
        bytes memory q1 = _call(address(0x11), bytes.concat(_reduce(uniform, 128), _reduce(uniform, 192)), 256);
        return _call(address(0x0d), bytes.concat(q0, q1), 256).length;
    }

    function _expand(bytes memory message) private pure returns (bytes memory out) {
        bytes memory dstPrime = bytes.concat(DST_G2, bytes1(uint8(DST_G2.length)));
        bytes32 b0 = sha256(bytes.concat(new bytes(64), message, hex"0100", hex"00", dstPrime));
        bytes32 bi = sha256(bytes.concat(b0, hex"01", dstPrime));
        out = new bytes(256);
        assembly ("memory-safe") {
            mstore(add(out, 32), bi)
        }
        for (uint256 i = 2; i <= 8; i++) {
            bi = sha256(bytes.concat(b0 ^ bi, bytes1(uint8(i)), dstPrime));
            assembly ("memory-safe") {
                mstore(add(out, mul(i, 32)), bi)
            }
        }
    }

    function _reduce(bytes memory uniform, uint256 offset) private view returns (bytes memory) {
        bytes memory chunk = new bytes(64);
        assembly ("memory-safe") {
            mcopy(add(chunk, 32), add(add(uniform, 32), offset), 64)
        }
        bytes memory input = bytes.concat(bytes32(uint256(64)), bytes32(uint256(1)), bytes32(uint256(48)), chunk, hex"01", P);
        return bytes.concat(bytes16(0), _call(address(0x05), input, 48));
    }

    function _call(address precompile, bytes memory input, uint256 outLength) private view returns (bytes memory out) {
        bool ok;
        (ok, out) = precompile.staticcall{gas: 60_000}(input);
        if (!ok || out.length != outLength) revert BLS.PrecompileFailed(precompile);
    }
}
