// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {BLS} from "./BLS.sol";

/// @title Settlement
/// @notice Records the batches settled by a fixed set of settleproof operators. Each batch
///         commits, for one round, to the Merkle root of the payments indexed in a block range;
///         at least `threshold` operators sign it with BLS12-381 and anyone may submit the
///         aggregate signature here with the bitmap of who signed.
/// @dev `settle` verifies the aggregate signature on chain with the EIP-2537 precompiles:
///      the signers' public keys (given in calldata, each checked against the hash registered
///      for its operator) are summed, and one pairing check proves
///      e(sum of keys, H(batchMessage)) == e(G1, signature). Because all signers sign the same
///      message, this "fast aggregate verify" needs every key to come with a proof of
///      possession, which the constructor verifies (rogue-key defence).
///
///      The operator set is fixed at deployment. Operator `i` (0-based, in constructor order)
///      is bit `i` of the signer bitmap. Keys and signatures use the EIP-2537 encoding
///      (see `BLS`): public keys 128 bytes (G1), signatures 256 bytes (G2).
///      The signed message is the 32 bytes of `batchMessage(...)`, which binds chain id and
///      contract address.
contract Settlement {
    /// @notice One registered operator.
    struct Operator {
        address account;
        bytes32 keyHash;
        bytes blsPublicKey;
    }

    /// @notice What is stored for a settled round (4 storage slots).
    struct Batch {
        bytes32 root;
        address submitter;
        uint64 fromBlock;
        uint32 leafCount;
        uint64 toBlock;
        uint256 signerBitmap;
    }

    /// @notice EIP-712-style type hash of the batch message the operators sign.
    bytes32 public constant BATCH_TYPEHASH = keccak256(
        "SettleproofBatch(uint256 chainId,address settlement,uint64 round,uint64 fromBlock,uint64 toBlock,bytes32 root,uint32 leafCount)"
    );

    /// @notice Largest operator set: one bit of the `uint256` signer bitmap per operator.
    uint256 public constant MAX_OPERATORS = 256;

    /// @notice Length of an EIP-2537 encoded BLS12-381 G1 public key.
    uint256 public constant BLS_PUBLIC_KEY_LENGTH = 128;

    /// @notice Length of an EIP-2537 encoded BLS12-381 G2 (aggregate) signature.
    uint256 public constant BLS_SIGNATURE_LENGTH = 256;

    /// @dev keccak256 of the EIP-2537 encoding of the G1 identity (128 zero bytes).
    bytes32 private constant IDENTITY_KEY_HASH = 0x012893657d8eb2efad4de0a91bcd0e39ad9837745dec3ea923737ea803fc8e3d;

    /// @notice Minimum number of signers (set bits in the signer bitmap) for a batch.
    uint256 public immutable threshold;

    Operator[] private _operators;
    /// @dev account => operator index + 1 (0 = not an operator).
    mapping(address account => uint256 indexPlusOne) private _operatorIndexPlusOne;
    mapping(uint64 round => Batch) private _batches;
    mapping(bytes32 root => bool) private _rootSettled;
    mapping(bytes32 keyHash => bool) private _keyRegistered;

    /// @notice A batch was settled.
    /// @param round The settlement round.
    /// @param root Merkle root over the batch's payment leaves.
    /// @param fromBlock First block (inclusive) covered by the batch.
    /// @param toBlock Last block (inclusive) covered by the batch.
    /// @param leafCount Number of leaves under `root`.
    /// @param signerBitmap Bit `i` set = operator `i` signed.
    /// @param submitter The account that submitted the batch (anyone may), or the contract
    ///        that relayed the call (a wallet, multicall or bundler).
    /// @param signature The verified EIP-2537 aggregate signature. With the bitmap and the
    ///        registered keys it is everything a receipt needs, so a watcher knows a settlement
    ///        from this event alone, whoever sent it and however the call was wrapped.
    event Settled(
        uint64 indexed round,
        bytes32 indexed root,
        uint64 fromBlock,
        uint64 toBlock,
        uint32 leafCount,
        uint256 signerBitmap,
        address submitter,
        bytes signature
    );

    // ----- constructor errors -----
    /// @notice `accounts`, `blsPublicKeys` and `proofsOfPossession` differ in length.
    error LengthMismatch(uint256 accounts, uint256 blsPublicKeys);
    /// @notice Operator `index` did not prove possession of its BLS secret key.
    error InvalidProofOfPossession(uint256 index);
    /// @notice Operator `index` registers a BLS key that another operator registered already.
    error DuplicatePublicKey(uint256 index);
    /// @notice The operator count is 0 or above `MAX_OPERATORS`.
    error InvalidOperatorCount(uint256 count);
    /// @notice Operator `index` has the zero address as account.
    error ZeroOperator(uint256 index);
    /// @notice `account` appears more than once.
    error DuplicateOperator(address account);
    /// @notice Operator `index` has a BLS public key that is not 128 bytes long.
    error InvalidPublicKeyLength(uint256 index, uint256 length);
    /// @notice Operator `index` registers the identity (point at infinity) as its key: it adds
    ///         nothing to an aggregate and its "proof of possession" is the identity too.
    error IdentityPublicKey(uint256 index);
    /// @notice `threshold` is 0 or greater than the operator count.
    error InvalidThreshold(uint256 threshold, uint256 operatorCount);

    // ----- settle errors -----
    /// @notice `round` has been settled already.
    error RoundAlreadySettled(uint64 round);
    /// @notice `root` has been settled already (in some round).
    error RootAlreadySettled(bytes32 root);
    /// @notice The Merkle root is zero (reserved for "not settled").
    error ZeroRoot();
    /// @notice `fromBlock > toBlock`.
    error InvalidBlockRange(uint64 fromBlock, uint64 toBlock);
    /// @notice `leafCount` is zero.
    error EmptyBatch();
    /// @notice The signer bitmap has `bit` set, but there is no operator with that index.
    error UnknownSigner(uint256 bit);
    /// @notice Fewer signers than `threshold`.
    error InsufficientSigners(uint256 signers, uint256 threshold);
    /// @notice The aggregate signature is not 256 bytes long.
    error InvalidSignatureLength(uint256 length);
    /// @notice `signerKeys` is not 128 bytes per signer.
    error InvalidSignerKeysLength(uint256 length, uint256 signers);
    /// @notice The key given for signer `index` is not the one registered for it.
    error WrongSignerKey(uint256 index);
    /// @notice The aggregate signature does not verify for the signers and the batch.
    error InvalidSignature();

    // ----- getter errors -----
    /// @notice There is no operator with index `index`.
    error OperatorIndexOutOfRange(uint256 index);

    /// @notice Registers the operator set and the signing threshold.
    /// @param accounts Operator accounts; position `i` is bit `i` of the signer bitmap.
    /// @param blsPublicKeys EIP-2537 encoded BLS12-381 G1 public keys, same order as `accounts`.
    /// @param proofsOfPossession For each key, its BLS signature (G2, EIP-2537 encoded) over the
    ///        128 key bytes under the `BLS.POP_DST` tag.
    /// @param threshold_ Minimum number of signers per batch, `1 <= threshold_ <= accounts.length`.
    constructor(
        address[] memory accounts,
        bytes[] memory blsPublicKeys,
        bytes[] memory proofsOfPossession,
        uint256 threshold_
    ) {
        uint256 n = accounts.length;
        if (n != blsPublicKeys.length || n != proofsOfPossession.length) revert LengthMismatch(n, blsPublicKeys.length);
        if (n == 0 || n > MAX_OPERATORS) revert InvalidOperatorCount(n);
        if (threshold_ == 0 || threshold_ > n) revert InvalidThreshold(threshold_, n);

        for (uint256 i = 0; i < n; ++i) {
            address account = accounts[i];
            if (account == address(0)) revert ZeroOperator(i);
            if (_operatorIndexPlusOne[account] != 0) revert DuplicateOperator(account);
            bytes memory key = blsPublicKeys[i];
            if (key.length != BLS_PUBLIC_KEY_LENGTH) revert InvalidPublicKeyLength(i, key.length);
            bytes32 keyHash = keccak256(key);
            if (keyHash == IDENTITY_KEY_HASH) revert IdentityPublicKey(i);
            if (_keyRegistered[keyHash]) revert DuplicatePublicKey(i);
            if (!BLS.verify(key, key, proofsOfPossession[i], BLS.POP_DST)) revert InvalidProofOfPossession(i);
            _keyRegistered[keyHash] = true;
            _operators.push(Operator({account: account, keyHash: keyHash, blsPublicKey: key}));
            _operatorIndexPlusOne[account] = i + 1;
        }
        threshold = threshold_;
    }

    /// @notice Records the batch of `round` once a quorum of operators signed it. Anyone may call.
    /// @dev Checks, in order: round not settled, root nonzero and not settled,
    ///      `fromBlock <= toBlock`, `leafCount > 0`, no signer bit beyond the operator set, at
    ///      least `threshold` signers, lengths, each signer key equal to the registered one, and
    ///      the aggregate signature.
    /// @param round The settlement round; each round settles at most once.
    /// @param fromBlock First block (inclusive) covered by the batch.
    /// @param toBlock Last block (inclusive) covered by the batch.
    /// @param root Merkle root over the batch's payment leaves; each root settles at most once.
    /// @param leafCount Number of leaves under `root`.
    /// @param signerBitmap Bit `i` set = operator `i` contributed to `signature`.
    /// @param signerKeys The signers' EIP-2537 public keys, 128 bytes each, in ascending index order.
    /// @param signature EIP-2537 G2 aggregate signature over the 32 bytes of
    ///        `batchMessage(round, fromBlock, toBlock, root, leafCount)`.
    function settle(
        uint64 round,
        uint64 fromBlock,
        uint64 toBlock,
        bytes32 root,
        uint32 leafCount,
        uint256 signerBitmap,
        bytes calldata signerKeys,
        bytes calldata signature
    ) external {
        Batch storage batch_ = _batches[round];
        if (batch_.submitter != address(0)) revert RoundAlreadySettled(round);
        if (root == bytes32(0)) revert ZeroRoot();
        if (_rootSettled[root]) revert RootAlreadySettled(root);
        if (fromBlock > toBlock) revert InvalidBlockRange(fromBlock, toBlock);
        if (leafCount == 0) revert EmptyBatch();
        _verifyQuorum(batchMessage(round, fromBlock, toBlock, root, leafCount), signerBitmap, signerKeys, signature);

        batch_.root = root;
        batch_.submitter = msg.sender;
        batch_.fromBlock = fromBlock;
        batch_.leafCount = leafCount;
        batch_.toBlock = toBlock;
        batch_.signerBitmap = signerBitmap;
        _rootSettled[root] = true;

        emit Settled(round, root, fromBlock, toBlock, leafCount, signerBitmap, msg.sender, signature);
    }

    /// @dev Reverts unless at least `threshold` registered operators, with exactly the keys they
    ///      registered, signed `message` and `signature` is their aggregate.
    function _verifyQuorum(bytes32 message, uint256 signerBitmap, bytes calldata signerKeys, bytes calldata signature)
        private
        view
    {
        uint256 n = _operators.length;
        if (n < MAX_OPERATORS) {
            uint256 unknown = signerBitmap >> n;
            if (unknown != 0) revert UnknownSigner(n + _lowestSetBit(unknown));
        }
        uint256 signers = _popcount(signerBitmap);
        if (signers < threshold) revert InsufficientSigners(signers, threshold);
        if (signature.length != BLS_SIGNATURE_LENGTH) revert InvalidSignatureLength(signature.length);
        if (signerKeys.length != signers * BLS_PUBLIC_KEY_LENGTH) {
            revert InvalidSignerKeysLength(signerKeys.length, signers);
        }
        uint256 k = 0;
        for (uint256 i = 0; i < n; ++i) {
            if ((signerBitmap >> i) & 1 == 1) {
                uint256 off = k * BLS_PUBLIC_KEY_LENGTH;
                if (keccak256(signerKeys[off:off + BLS_PUBLIC_KEY_LENGTH]) != _operators[i].keyHash) revert WrongSignerKey(i);
                ++k;
            }
        }
        if (!BLS.verify(BLS.aggregateG1(signerKeys), abi.encodePacked(message), signature, BLS.SIG_DST)) {
            revert InvalidSignature();
        }
    }

    /// @notice The message the operators sign for a batch.
    /// @return keccak256(abi.encode(BATCH_TYPEHASH, block.chainid, address(this), round,
    ///         fromBlock, toBlock, root, leafCount)).
    function batchMessage(uint64 round, uint64 fromBlock, uint64 toBlock, bytes32 root, uint32 leafCount)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(BATCH_TYPEHASH, block.chainid, address(this), round, fromBlock, toBlock, root, leafCount));
    }

    /// @notice Number of registered operators.
    function operatorCount() external view returns (uint256) {
        return _operators.length;
    }

    /// @notice Operator `i` (bit `i` of the signer bitmap).
    /// @return account The operator's account.
    /// @return blsPublicKey The operator's EIP-2537 encoded (128-byte) BLS12-381 G1 public key.
    function operator(uint256 i) external view returns (address account, bytes memory blsPublicKey) {
        if (i >= _operators.length) revert OperatorIndexOutOfRange(i);
        Operator storage op = _operators[i];
        return (op.account, op.blsPublicKey);
    }

    /// @notice Whether `account` is a registered operator.
    function isOperator(address account) external view returns (bool) {
        return _operatorIndexPlusOne[account] != 0;
    }

    /// @notice The Merkle root settled for `round`, or zero if the round is not settled.
    function settledRoot(uint64 round) external view returns (bytes32) {
        return _batches[round].root;
    }

    /// @notice Whether `root` has been settled in some round.
    function isRootSettled(bytes32 root) external view returns (bool) {
        return _rootSettled[root];
    }

    /// @notice Everything recorded for `round`; all zero if the round is not settled.
    function batch(uint64 round)
        external
        view
        returns (
            bytes32 root,
            uint64 fromBlock,
            uint64 toBlock,
            uint32 leafCount,
            uint256 signerBitmap,
            address submitter
        )
    {
        Batch storage b = _batches[round];
        return (b.root, b.fromBlock, b.toBlock, b.leafCount, b.signerBitmap, b.submitter);
    }

    /// @dev Number of set bits in `x`.
    function _popcount(uint256 x) private pure returns (uint256 count) {
        unchecked {
            while (x != 0) {
                x &= x - 1;
                ++count;
            }
        }
    }

    /// @dev Index of the lowest set bit of `x`; `x` must be nonzero.
    function _lowestSetBit(uint256 x) private pure returns (uint256 bit) {
        while (x & 1 == 0) {
            x >>= 1;
            ++bit;
        }
    }
}
