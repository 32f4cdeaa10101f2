// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title BLS12-381 signature verification with the EIP-2537 precompiles
/// @notice Minimal-pubkey-size variant, as blst's `min_pk`: public keys in G1, signatures in G2.
/// Points use the EIP-2537 encoding: every base-field element as 64 bytes (16 zero bytes, then
/// 48 big-endian bytes); G1 = x ‖ y (128 bytes); G2 = x.c0 ‖ x.c1 ‖ y.c0 ‖ y.c1 (256 bytes).
/// Hashing to G2 follows RFC 9380 (BLS12381G2_XMD:SHA-256_SSWU_RO_) and equals blst's
/// `hash_to_g2`: expand_message_xmd with SHA-256 to 256 bytes, four field elements reduced mod p
/// with MODEXP, MAP_FP2_TO_G2 twice (it clears the cofactor), G2ADD.
/// @dev Every precompile call gets an explicit gas cap and reverts on failure, so a bad input
/// cannot burn the caller's whole gas nor be mistaken for a failed check.
library BLS {
    address private constant SHA256 = address(0x02);
    address private constant MODEXP = address(0x05);
    address private constant G1ADD = address(0x0b);
    address private constant G2ADD = address(0x0d);
    address private constant PAIRING_CHECK = address(0x0f);
    address private constant MAP_FP2_TO_G2 = address(0x11);

    /// @notice Domain separation tag of signatures (IETF BLS proof-of-possession ciphersuite).
    bytes internal constant SIG_DST = "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
    /// @notice Domain separation tag of proofs of possession.
    bytes internal constant POP_DST = "BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

    uint256 internal constant G1_LENGTH = 128;
    uint256 internal constant G2_LENGTH = 256;

    /// @dev The base field modulus p, 48 bytes big-endian.
    bytes private constant P =
        hex"1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab";

    /// @dev The negated G1 generator, EIP-2537 encoded.
    bytes private constant NEG_G1 =
        hex"0000000000000000000000000000000017f1d3a73197d7942695638c4fa9ac0fc3688c4f9774b905a14e3a3f171bac586c55e83ff97a1aeffb3af00adb22c6bb"
        hex"00000000000000000000000000000000114d1d6855d545a8aa7d76c8cf2e21f267816aef1db507c96655b9d5caac42364e6f38ba0ecb751bad54dcd6b939c2ca";

    /// @notice A precompile call failed (invalid point encoding, point not on the curve, …).
    error PrecompileFailed(address precompile);
    /// @notice An encoded point has the wrong length.
    error BadPointLength(uint256 length, uint256 expected);

    /// @notice Sum of G1 points (public-key aggregation); `points` is their concatenation.
    function aggregateG1(bytes memory points) internal view returns (bytes memory acc) {
        if (points.length == 0 || points.length % G1_LENGTH != 0) revert BadPointLength(points.length, G1_LENGTH);
        acc = slice(points, 0, G1_LENGTH);
        for (uint256 off = G1_LENGTH; off < points.length; off += G1_LENGTH) {
            acc = call(G1ADD, bytes.concat(acc, slice(points, off, G1_LENGTH)), 1_000, G1_LENGTH);
        }
    }

    /// @notice Whether `signature` (G2) is a valid signature of `message` by `publicKey` (G1)
    /// under domain separation tag `dst`: e(publicKey, H(message)) == e(G1, signature).
    /// @dev PAIRING_CHECK also checks that both points lie in their prime-order subgroups.
    function verify(bytes memory publicKey, bytes memory message, bytes memory signature, bytes memory dst)
        internal
        view
        returns (bool)
    {
        if (publicKey.length != G1_LENGTH) revert BadPointLength(publicKey.length, G1_LENGTH);
        if (signature.length != G2_LENGTH) revert BadPointLength(signature.length, G2_LENGTH);
        bytes memory h = hashToG2(message, dst);
        bytes memory out = call(PAIRING_CHECK, bytes.concat(publicKey, h, NEG_G1, signature), 200_000, 32);
        return uint256(bytes32(out)) == 1;
    }

    /// @notice RFC 9380 hash_to_curve to G2 with expand_message_xmd(SHA-256).
    function hashToG2(bytes memory message, bytes memory dst) internal view returns (bytes memory) {
        bytes memory uniform = expandMessageXmd(message, dst);
        bytes memory q0 = call(MAP_FP2_TO_G2, bytes.concat(reduce(uniform, 0), reduce(uniform, 64)), 50_000, G2_LENGTH);
        bytes memory q1 = call(MAP_FP2_TO_G2, bytes.concat(reduce(uniform, 128), reduce(uniform, 192)), 50_000, G2_LENGTH);
        return call(G2ADD, bytes.concat(q0, q1), 1_500, G2_LENGTH);
    }

    /// @notice expand_message_xmd (RFC 9380 §5.3.1) with SHA-256 to 256 bytes.
    function expandMessageXmd(bytes memory message, bytes memory dst) internal pure returns (bytes memory out) {
        bytes memory dstPrime = bytes.concat(dst, bytes1(uint8(dst.length)));
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

    /// @dev 64 bytes of `uniform` at `offset`, reduced mod p, as a 64-byte EIP-2537 field element.
    function reduce(bytes memory uniform, uint256 offset) private view returns (bytes memory) {
        bytes memory input = bytes.concat(bytes32(uint256(64)), bytes32(uint256(1)), bytes32(uint256(48)), slice(uniform, offset, 64), hex"01", P);
        return bytes.concat(bytes16(0), call(MODEXP, input, 20_000, 48));
    }

    function call(address precompile, bytes memory input, uint256 gasCap, uint256 outLength)
        private
        view
        returns (bytes memory out)
    {
        bool ok;
        (ok, out) = precompile.staticcall{gas: gasCap}(input);
        if (!ok || out.length != outLength) revert PrecompileFailed(precompile);
    }

    function slice(bytes memory data, uint256 start, uint256 length) private pure returns (bytes memory out) {
        if (start + length > data.length) revert BadPointLength(data.length, start + length);
        out = new bytes(length);
        assembly ("memory-safe") {
            mcopy(add(out, 32), add(add(data, 32), start), length)
        }
    }
}
