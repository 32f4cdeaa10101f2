// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title BLS12-381 signature verification with the EIP-2537 precompiles, min-sig form
/// @notice As blst's `min_sig`: signatures in G1, public keys in G2, so a verification hashes
///         to G1 (two MAP_FP_TO_G1, about a quarter of hashing to G2) and signatures travel in
///         128 bytes of calldata. See docs/adr/0002-min-sig-bls-settlement.md for the measurement.
/// Points use the EIP-2537 encoding: every base-field element as 64 bytes (16 zero bytes, then
/// 48 big-endian bytes); G1 = x ‖ y (128 bytes); G2 = x.c0 ‖ x.c1 ‖ y.c0 ‖ y.c1 (256 bytes).
/// Hashing follows RFC 9380 (BLS12381G1_XMD:SHA-256_SSWU_RO_) and equals blst's `hash_to_g1`:
/// expand_message_xmd with SHA-256 to 128 bytes, two field elements reduced mod p with MODEXP,
/// MAP_FP_TO_G1 twice (it clears the cofactor), G1ADD. It is written in assembly over one
/// scratch area, with no intermediate allocations.
/// @dev Every precompile call gets an explicit gas cap and reverts on failure, so a bad input
/// cannot burn the caller's whole gas nor be mistaken for a failed check.
library BLS {
    /// @notice Domain separation tag of signatures (IETF BLS proof-of-possession ciphersuite).
    bytes internal constant SIG_DST = "BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_";
    /// @notice Domain separation tag of proofs of possession.
    bytes internal constant POP_DST = "BLS_POP_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_";

    uint256 internal constant G1_LENGTH = 128;
    uint256 internal constant G2_LENGTH = 256;

    address internal constant G2ADD = address(0x0d);

    /// @dev The base field modulus p as the two words of its 64-byte EIP-2537 encoding.
    uint256 private constant P_HI = 0x1a0111ea397fe69a4b1ba7b6434bacd7;
    uint256 private constant P_LO = 0x64774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab;

    /// @dev The negated G2 generator, EIP-2537 encoded.
    bytes private constant NEG_G2 =
        hex"00000000000000000000000000000000024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8"
        hex"0000000000000000000000000000000013e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e"
        hex"000000000000000000000000000000000d1b3cc2c7027888be51d9ef691d77bcb679afda66c73f17f9ee3837a55024f78c71363275a75d75d86bab79f74782aa"
        hex"0000000000000000000000000000000013fa4d4a0ad8b1ce186ed5061789213d993923066dddaf1040bc3ff59f825c78df74f2d75467e25e0f55f8a00fa030ed";

    /// @notice A precompile call failed (invalid point encoding, point not on the curve, …).
    error PrecompileFailed(address precompile);
    /// @notice An encoded point has the wrong length.
    error BadPointLength(uint256 length, uint256 expected);
    /// @notice A domain separation tag longer than this library's scratch layout allows.
    error DstTooLong(uint256 length);

    /// @notice Whether `signature` (G1) is a valid signature of `message` by `publicKey` (G2)
    /// under `dst`: e(signature, −G2) · e(H(message), publicKey) == 1.
    /// @dev PAIRING_CHECK also checks that every point lies in its prime-order subgroup. The
    ///      identity signature is refused: it would verify against an identity key.
    function verify(bytes memory publicKey, bytes memory message, bytes memory signature, bytes memory dst)
        internal
        view
        returns (bool valid)
    {
        if (publicKey.length != G2_LENGTH) revert BadPointLength(publicKey.length, G2_LENGTH);
        if (signature.length != G1_LENGTH) revert BadPointLength(signature.length, G1_LENGTH);
        if (isZero(signature)) return false;
        bytes memory h = hashToG1(message, dst);
        bytes memory negG2 = NEG_G2;
        bytes memory pairs = new bytes(768);
        bool ok;
        assembly ("memory-safe") {
            let input := add(pairs, 0x20)
            mcopy(input, add(signature, 0x20), 128)
            mcopy(add(input, 128), add(negG2, 0x20), 256)
            mcopy(add(input, 384), add(h, 0x20), 128)
            mcopy(add(input, 512), add(publicKey, 0x20), 256)
            // Two statements: Yul evaluates arguments right to left, so a returndatasize() inside
            // and(staticcall(..), ..) would read the previous call's size.
            let success := staticcall(110000, 0x0f, input, 768, 0x00, 0x20)
            ok := and(success, eq(returndatasize(), 0x20))
            valid := eq(mload(0x00), 1)
        }
        if (!ok) revert PrecompileFailed(address(0x0f));
    }

    /// @notice RFC 9380 hash_to_curve to G1 with expand_message_xmd(SHA-256), in assembly.
    function hashToG1(bytes memory message, bytes memory dst) internal view returns (bytes memory out) {
        if (dst.length > 64) revert DstTooLong(dst.length);
        out = new bytes(G1_LENGTH);
        uint256 failed;
        assembly ("memory-safe") {
            let dlen := mload(dst)
            let mlen := mload(message)
            // Scratch beyond the free memory pointer, never allocated:
            //   buf .. +msg_prime, then reused for the b_i inputs (34 + dlen <= 98 bytes);
            //   uni = buf + 0x80 (128 uniform bytes); m = buf + 0x100 (MODEXP input, 209 bytes);
            //   fe = buf + 0x200 (one field element); pts = buf + 0x240 (two G1 points).
            let buf := mload(0x40)
            // msg_prime = Z_pad(64) ‖ msg ‖ I2OSP(128, 2) ‖ I2OSP(0, 1) ‖ DST ‖ I2OSP(len(DST), 1)
            mstore(buf, 0)
            mstore(add(buf, 0x20), 0)
            mcopy(add(buf, 0x40), add(message, 0x20), mlen)
            let q := add(add(buf, 0x40), mlen)
            mstore(q, shl(232, 0x008000))
            mcopy(add(q, 3), add(dst, 0x20), dlen)
            mstore8(add(add(q, 3), dlen), dlen)
            if iszero(staticcall(5000, 0x02, buf, add(add(0x44, mlen), dlen), 0x00, 0x20)) { failed := 0x02 }
            let b0 := mload(0x00)
            // b_i = H((b0 xor b_{i-1}) ‖ I2OSP(i, 1) ‖ DST_prime), b_0 xor "b_0" read as b0 for i = 1.
            mcopy(add(buf, 33), add(dst, 0x20), dlen)
            mstore8(add(add(buf, 33), dlen), dlen)
            let uni := add(buf, 0x80)
            let prev := 0
            for { let i := 1 } lt(i, 5) { i := add(i, 1) } {
                mstore(buf, xor(b0, prev))
                mstore8(add(buf, 32), i)
                let dest := add(uni, mul(sub(i, 1), 0x20))
                if iszero(staticcall(5000, 0x02, buf, add(34, dlen), dest, 0x20)) { failed := 0x02 }
                prev := mload(dest)
            }
            // u_k = OS2IP(uniform[64k .. 64k+64]) mod p, then Q_k = MAP_FP_TO_G1(u_k).
            let m := add(buf, 0x100)
            let fe := add(buf, 0x200)
            let pts := add(buf, 0x240)
            for { let k := 0 } lt(k, 2) { k := add(k, 1) } {
                mstore(m, 0x40)
                mstore(add(m, 0x20), 1)
                mstore(add(m, 0x40), 48)
                mcopy(add(m, 0x60), add(uni, mul(k, 0x40)), 0x40)
                mstore8(add(m, 0xa0), 1)
                mstore(add(m, 0xa1), shl(128, P_HI))
                mstore(add(m, 0xb1), P_LO)
                mstore(fe, 0)
                if iszero(staticcall(10000, 0x05, m, 0xd1, add(fe, 16), 48)) { failed := 0x05 }
                let point := add(pts, mul(k, 0x80))
                if iszero(staticcall(10000, 0x10, fe, 0x40, point, 0x80)) { failed := 0x10 }
                if iszero(eq(returndatasize(), 0x80)) { failed := 0x10 }
            }
            if iszero(staticcall(1000, 0x0b, pts, 0x100, add(out, 0x20), 0x80)) { failed := 0x0b }
        }
        if (failed != 0) revert PrecompileFailed(address(uint160(failed)));
    }

    /// @notice a + b in G2 (no subgroup check: only for points checked already).
    function g2Add(bytes memory a, bytes memory b) internal view returns (bytes memory sum) {
        if (a.length != G2_LENGTH) revert BadPointLength(a.length, G2_LENGTH);
        if (b.length != G2_LENGTH) revert BadPointLength(b.length, G2_LENGTH);
        sum = new bytes(G2_LENGTH);
        bool ok;
        assembly ("memory-safe") {
            let input := mload(0x40)
            mcopy(input, add(a, 0x20), 256)
            mcopy(add(input, 256), add(b, 0x20), 256)
            let success := staticcall(1500, 0x0d, input, 512, add(sum, 0x20), 256)
            ok := and(success, eq(returndatasize(), 256))
        }
        if (!ok) revert PrecompileFailed(G2ADD);
    }

    /// @notice −point in G2: both y coordinates replaced by p − y (zero stays zero).
    /// @dev `point` must be a valid encoding (every coordinate below p), as a point that passed
    ///      a pairing check is.
    function negateG2(bytes memory point) internal pure returns (bytes memory neg) {
        if (point.length != G2_LENGTH) revert BadPointLength(point.length, G2_LENGTH);
        neg = bytes.concat(point);
        assembly ("memory-safe") {
            for { let off := 0xa0 } lt(off, 0x120) { off := add(off, 0x40) } {
                let hi := mload(add(neg, off))
                let lo := mload(add(neg, add(off, 0x20)))
                if or(hi, lo) {
                    mstore(add(neg, off), sub(sub(P_HI, hi), lt(P_LO, lo)))
                    mstore(add(neg, add(off, 0x20)), sub(P_LO, lo))
                }
            }
        }
    }

    /// @notice Whether every byte of `data` (a whole number of words long) is zero: the
    ///         EIP-2537 encoding of the identity.
    function isZero(bytes memory data) internal pure returns (bool zero) {
        assembly ("memory-safe") {
            let acc := 0
            let end := add(add(data, 0x20), mload(data))
            for { let p := add(data, 0x20) } lt(p, end) { p := add(p, 0x20) } { acc := or(acc, mload(p)) }
            zero := iszero(acc)
        }
    }
}
