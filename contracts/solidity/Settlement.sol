// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Settlement
/// @notice Records the batches settled by a fixed set of settleproof operators. Each batch
///         commits, for one round, to the Merkle root of the payments indexed in a block range;
///         a threshold of operators signs it with BLS12-381 and the aggregate signature is
///         submitted here together with a bitmap of who signed.
/// @dev SECURITY NOTE - in this version the aggregate BLS signature is NOT verified on chain.
///      `settle` is accepted only from a registered operator (`msg.sender` must be one of the
///      operator accounts), and the nodes verify the aggregate signature off chain against the
///      registered BLS keys and the signer bitmap. The contract checks only the shape of the
///      submission: signer bits within the operator set, at least `threshold` signers, a
///      96-byte signature. A single dishonest operator can therefore settle any batch it likes.
///      A later version replaces the operator check with on-chain verification of the aggregate
///      signature against the registered keys through the EIP-2537 BLS12-381 precompiles.
///
///      The operator set is fixed at deployment. Operator `i` (0-based, in constructor order)
///      is bit `i` of the signer bitmap. BLS public keys are stored as given: 48-byte
///      compressed G1 points (min-pk, as blst serializes them); they are not validated here.
///      The signed message is `batchMessage(...)`, which binds chain id and contract address.
contract Settlement {
    /// @notice One registered operator.
    struct Operator {
        address account;
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

    /// @notice Length of a compressed BLS12-381 G1 public key.
    uint256 public constant BLS_PUBLIC_KEY_LENGTH = 48;

    /// @notice Length of a compressed BLS12-381 G2 (aggregate) signature.
    uint256 public constant BLS_SIGNATURE_LENGTH = 96;

    /// @notice Minimum number of signers (set bits in the signer bitmap) for a batch.
    uint256 public immutable threshold;

    Operator[] private _operators;
    /// @dev account => operator index + 1 (0 = not an operator).
    mapping(address account => uint256 indexPlusOne) private _operatorIndexPlusOne;
    mapping(uint64 round => Batch) private _batches;
    mapping(bytes32 root => bool) private _rootSettled;

    /// @notice A batch was settled.
    /// @param round The settlement round.
    /// @param root Merkle root over the batch's payment leaves.
    /// @param fromBlock First block (inclusive) covered by the batch.
    /// @param toBlock Last block (inclusive) covered by the batch.
    /// @param leafCount Number of leaves under `root`.
    /// @param signerBitmap Bit `i` set = operator `i` signed.
    /// @param submitter The operator account that submitted the batch.
    event Settled(
        uint64 indexed round,
        bytes32 indexed root,
        uint64 fromBlock,
        uint64 toBlock,
        uint32 leafCount,
        uint256 signerBitmap,
        address submitter
    );

    // ----- constructor errors -----
    /// @notice `accounts` and `blsPublicKeys` differ in length.
    error LengthMismatch(uint256 accounts, uint256 blsPublicKeys);
    /// @notice The operator count is 0 or above `MAX_OPERATORS`.
    error InvalidOperatorCount(uint256 count);
    /// @notice Operator `index` has the zero address as account.
    error ZeroOperator(uint256 index);
    /// @notice `account` appears more than once.
    error DuplicateOperator(address account);
    /// @notice Operator `index` has a BLS public key that is not 48 bytes long.
    error InvalidPublicKeyLength(uint256 index, uint256 length);
    /// @notice `threshold` is 0 or greater than the operator count.
    error InvalidThreshold(uint256 threshold, uint256 operatorCount);

    // ----- settle errors -----
    /// @notice `caller` is not a registered operator.
    error NotOperator(address caller);
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
    /// @notice The aggregate signature is not 96 bytes long.
    error InvalidSignatureLength(uint256 length);

    // ----- getter errors -----
    /// @notice There is no operator with index `index`.
    error OperatorIndexOutOfRange(uint256 index);

    /// @notice Registers the operator set and the signing threshold.
    /// @param accounts Operator accounts; position `i` is bit `i` of the signer bitmap.
    /// @param blsPublicKeys 48-byte compressed BLS12-381 G1 public keys, same order as `accounts`.
    /// @param threshold_ Minimum number of signers per batch, `1 <= threshold_ <= accounts.length`.
    constructor(address[] memory accounts, bytes[] memory blsPublicKeys, uint256 threshold_) {
        uint256 n = accounts.length;
        if (n != blsPublicKeys.length) revert LengthMismatch(n, blsPublicKeys.length);
        if (n == 0 || n > MAX_OPERATORS) revert InvalidOperatorCount(n);
        if (threshold_ == 0 || threshold_ > n) revert InvalidThreshold(threshold_, n);

        for (uint256 i = 0; i < n; ++i) {
            address account = accounts[i];
            if (account == address(0)) revert ZeroOperator(i);
            if (_operatorIndexPlusOne[account] != 0) revert DuplicateOperator(account);
            if (blsPublicKeys[i].length != BLS_PUBLIC_KEY_LENGTH) {
                revert InvalidPublicKeyLength(i, blsPublicKeys[i].length);
            }
            _operators.push(Operator({account: account, blsPublicKey: blsPublicKeys[i]}));
            _operatorIndexPlusOne[account] = i + 1;
        }
        threshold = threshold_;
    }

    /// @notice Records the batch of `round`.
    /// @dev Only the shape of the submission is checked; the aggregate signature is NOT
    ///      verified on chain in this version (see the contract documentation). Checks, in
    ///      order: caller is an operator, round not settled, root nonzero and not settled,
    ///      `fromBlock <= toBlock`, `leafCount > 0`, no signer bit beyond the operator set,
    ///      at least `threshold` signers, 96-byte signature.
    /// @param round The settlement round; each round settles at most once.
    /// @param fromBlock First block (inclusive) covered by the batch.
    /// @param toBlock Last block (inclusive) covered by the batch.
    /// @param root Merkle root over the batch's payment leaves; each root settles at most once.
    /// @param leafCount Number of leaves under `root`.
    /// @param signerBitmap Bit `i` set = operator `i` contributed to `signature`.
    /// @param signature Compressed BLS12-381 G2 aggregate signature over
    ///        `batchMessage(round, fromBlock, toBlock, root, leafCount)`.
    function settle(
        uint64 round,
        uint64 fromBlock,
        uint64 toBlock,
        bytes32 root,
        uint32 leafCount,
        uint256 signerBitmap,
        bytes calldata signature
    ) external {
        if (_operatorIndexPlusOne[msg.sender] == 0) revert NotOperator(msg.sender);
        Batch storage batch_ = _batches[round];
        if (batch_.submitter != address(0)) revert RoundAlreadySettled(round);
        if (root == bytes32(0)) revert ZeroRoot();
        if (_rootSettled[root]) revert RootAlreadySettled(root);
        if (fromBlock > toBlock) revert InvalidBlockRange(fromBlock, toBlock);
        if (leafCount == 0) revert EmptyBatch();

        uint256 n = _operators.length;
        if (n < MAX_OPERATORS) {
            uint256 unknown = signerBitmap >> n;
            if (unknown != 0) revert UnknownSigner(n + _lowestSetBit(unknown));
        }
        uint256 signers = _popcount(signerBitmap);
        if (signers < threshold) revert InsufficientSigners(signers, threshold);
        if (signature.length != BLS_SIGNATURE_LENGTH) revert InvalidSignatureLength(signature.length);

        batch_.root = root;
        batch_.submitter = msg.sender;
        batch_.fromBlock = fromBlock;
        batch_.leafCount = leafCount;
        batch_.toBlock = toBlock;
        batch_.signerBitmap = signerBitmap;
        _rootSettled[root] = true;

        emit Settled(round, root, fromBlock, toBlock, leafCount, signerBitmap, msg.sender);
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
    /// @return blsPublicKey The operator's 48-byte compressed BLS12-381 G1 public key.
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
