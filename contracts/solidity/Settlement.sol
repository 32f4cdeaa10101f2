// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {BLS} from "./BLS.sol";
import {Blob} from "./Blob.sol";

/// @title Settlement
/// @notice Records the batches settled by the settleproof operators, whose set changes over
///         time in numbered epochs. Each batch commits, for one round, to the Merkle root of the
///         payments of the round's block range; a threshold of the round's epoch signs it with
///         BLS12-381 (min-sig: signatures in G1, keys in G2) and anyone may submit the aggregate
///         signature here with the bitmap of who signed.
/// @dev Operator sets.
///      - A set is staged by anyone in chunks of at most `CHUNK_SIZE` operators
///        (`stageOperators`), so a set of up to `MAX_OPERATORS` fits in blocks: every new key's
///        proof of possession is verified there (rogue-key defence), the identity key and any
///        duplicate key, account or peer id are refused, and the keys are written as blobs
///        (`Blob`) together with their running aggregate.
///      - `commitEpoch` turns a staged set into epoch e+1 when a threshold of epoch e signed
///        `updateMessage(setHash)`; epoch 0 is the set whose hash the constructor fixed.
///      - Epoch e+1 takes effect at the round `startRound` named in its set hash. Rounds before
///        it are settled by epoch e, which stays valid until `graceBlocks` after the first
///        block of `startRound`; past sets are kept, so their keys and receipts stay checkable.
///      Settlement. `settle` verifies the aggregate signature of epoch e with one pairing check:
///      the aggregate key of all of e's operators is read from its blob and the keys of the
///      non-signers are subtracted (their negations are stored), the message is hashed to G1 in
///      assembly, and one storage slot (round → root) is written. What a receipt needs beyond
///      the root comes from the `Settled` event.
contract Settlement {
    /// @notice One operator as staged: everything the nodes need to admit and schedule it.
    struct OperatorRecord {
        address account;
        bytes peerId;
        bytes blsPublicKey;
        bytes proofOfPossession;
        string name;
        string p2pAddr;
    }

    /// @notice One epoch, packed in one storage slot.
    struct EpochInfo {
        address aggregateKey;
        uint16 count;
        uint16 threshold;
        uint32 startRound;
        uint32 endRound;
    }

    /// @notice A set being staged by one account under one set hash.
    struct Staging {
        bytes32 recordsHash;
        uint16 count;
        bool committed;
        address[] chunks;
        bytes aggregateKey;
    }

    /// @notice Type hash of the batch message the operators sign.
    bytes32 public constant BATCH_TYPEHASH = keccak256(
        "SettleproofBatch(uint256 chainId,address settlement,uint64 epoch,uint64 round,uint64 fromBlock,uint64 toBlock,bytes32 toBlockHash,bytes32 root,uint32 leafCount)"
    );
    /// @notice Type hash of an operator record.
    bytes32 public constant RECORD_TYPEHASH = keccak256(
        "SettleproofOperator(address account,bytes peerId,bytes blsPublicKey,string name,string p2pAddr)"
    );
    /// @notice Type hash of an operator set.
    bytes32 public constant SET_TYPEHASH = keccak256(
        "SettleproofOperatorSet(uint64 epoch,uint64 startRound,uint16 threshold,uint16 count,bytes32 records)"
    );
    /// @notice Type hash of the message the current set signs to install the next one.
    bytes32 public constant UPDATE_TYPEHASH =
        keccak256("SettleproofSetUpdate(uint256 chainId,address settlement,bytes32 setHash)");

    /// @notice Largest operator set: one bit of the `uint256` signer bitmap per operator.
    uint256 public constant MAX_OPERATORS = 256;
    /// @notice Most operators per `stageOperators` call (one key blob, 8 KiB).
    uint256 public constant CHUNK_SIZE = 32;
    /// @notice The EIP-2935 block hash history contract.
    address public constant HISTORY_STORAGE = 0x0000F90827F1C53a10cb7A02335B175320002935;
    /// @notice `endRound` of the latest epoch: open-ended.
    uint32 public constant OPEN = type(uint32).max;

    /// @notice Hash of the set of epoch 0.
    bytes32 public immutable genesisSetHash;
    /// @notice First block of round 0.
    uint64 public immutable scheduleStartBlock;
    /// @notice Blocks per round.
    uint64 public immutable roundBlocks;
    /// @notice Blocks after the first block of epoch e+1 during which epoch e may still settle.
    uint64 public immutable graceBlocks;
    /// @notice Blocks an update must be committed before its first round starts, so every node
    ///         sees it at its confirmation depth before the boundary.
    uint64 public immutable leadBlocks;

    /// @notice Number of committed epochs; the latest is `epochCount - 1`.
    uint64 public epochCount;

    mapping(uint256 epoch => EpochInfo) private _epochs;
    mapping(uint256 epoch => address[]) private _epochChunks;
    mapping(bytes32 stagingId => Staging) private _staging;
    mapping(bytes32 stagingId => mapping(bytes32 tag => bool)) private _stagedSeen;
    mapping(bytes32 keyHash => bool) private _keyProven;
    mapping(uint64 round => bytes32 root) private _roundRoot;

    /// @notice Operators were staged for `setHash` by `stager`, from index `firstIndex`.
    event OperatorsStaged(address indexed stager, bytes32 indexed setHash, uint256 firstIndex, OperatorRecord[] records);
    /// @notice Epoch `epoch` was committed: the set staged by `stager` under `setHash`.
    event EpochCommitted(
        uint64 indexed epoch, bytes32 indexed setHash, address stager, uint64 startRound, uint16 threshold, uint16 count
    );
    /// @notice A batch was settled.
    /// @param round The settlement round.
    /// @param root Merkle root over the batch's payment leaves.
    /// @param epoch The operator set that signed.
    /// @param fromBlock First block (inclusive) of the round.
    /// @param toBlock Last block (inclusive) of the round.
    /// @param toBlockHash Hash of `toBlock` in the chain the batch was built from (checked
    ///        against this chain's when it still knows the block's hash).
    /// @param leafCount Number of leaves under `root`.
    /// @param signerBitmap Bit `i` set = operator `i` of `epoch` signed.
    /// @param submitter The account that submitted the batch (anyone may), or the contract
    ///        that relayed the call.
    /// @param signature The verified EIP-2537 aggregate signature (G1, 128 bytes).
    event Settled(
        uint64 indexed round,
        bytes32 indexed root,
        uint64 epoch,
        uint64 fromBlock,
        uint64 toBlock,
        bytes32 toBlockHash,
        uint32 leafCount,
        uint256 signerBitmap,
        address submitter,
        bytes signature
    );

    // ----- constructor -----
    /// @notice `roundBlocks` is zero.
    error InvalidRoundLength();

    // ----- staging errors -----
    /// @notice A chunk is empty or larger than `CHUNK_SIZE`.
    error InvalidChunk(uint256 length);
    /// @notice A chunk follows a partial one: only the last chunk may hold fewer than `CHUNK_SIZE`.
    error ChunkAfterPartial(uint256 staged);
    /// @notice The set would exceed `MAX_OPERATORS`.
    error InvalidOperatorCount(uint256 count);
    /// @notice The staging was committed already.
    error StagingCommitted(bytes32 setHash);
    /// @notice Operator `index` has the zero address as account.
    error ZeroOperator(uint256 index);
    /// @notice Operator `index` has a BLS public key that is not 256 bytes long.
    error InvalidPublicKeyLength(uint256 index, uint256 length);
    /// @notice Operator `index` registers the identity (point at infinity) as its key.
    error IdentityPublicKey(uint256 index);
    /// @notice Operator `index` repeats a key, account or peer id of the set.
    error DuplicateOperator(uint256 index, string what);
    /// @notice Operator `index` did not prove possession of its BLS secret key.
    error InvalidProofOfPossession(uint256 index);
    /// @notice Operator `index` has an empty peer id.
    error EmptyPeerId(uint256 index);

    // ----- commit errors -----
    /// @notice The epoch is not the next one (`expected`): a replayed or skipped update.
    error WrongEpoch(uint64 epoch, uint64 expected);
    /// @notice Nothing was staged by `stager` under `setHash`.
    error NothingStaged(address stager, bytes32 setHash);
    /// @notice The staged set, with these parameters, does not hash to `setHash`.
    error SetHashMismatch(bytes32 setHash, bytes32 staged);
    /// @notice Epoch 0 must be the set fixed at deployment.
    error NotGenesisSet(bytes32 setHash, bytes32 genesis);
    /// @notice The start round does not follow the previous epoch's or is out of range.
    error InvalidStartRound(uint64 startRound, uint64 previous);
    /// @notice The update's first round starts before block `earliest` allows nodes to follow.
    error StartTooSoon(uint64 startRound, uint256 firstBlock, uint256 earliest);
    /// @notice `threshold` is 0 or greater than the operator count.
    error InvalidThreshold(uint256 threshold, uint256 operatorCount);

    // ----- settle errors -----
    /// @notice No epoch `epoch` was committed.
    error UnknownEpoch(uint64 epoch);
    /// @notice `round` is not one `epoch` settles (`[startRound, endRound)`).
    error RoundNotInEpoch(uint64 round, uint64 epoch, uint64 startRound, uint64 endRound);
    /// @notice `epoch` was superseded and its grace period ended at `expiredAt`.
    error EpochExpired(uint64 epoch, uint256 expiredAt);
    /// @notice `round` has been settled already.
    error RoundAlreadySettled(uint64 round);
    /// @notice The Merkle root is zero (reserved for "not settled").
    error ZeroRoot();
    /// @notice The block range is not the round's, or the round has not ended yet.
    error InvalidBlockRange(uint64 fromBlock, uint64 toBlock);
    /// @notice The batch was built on another fork: block `toBlock` has hash `chainHash` here,
    ///         not `toBlockHash`.
    error NotOnThisChain(uint64 toBlock, bytes32 toBlockHash, bytes32 chainHash);
    /// @notice `leafCount` is zero.
    error EmptyBatch();
    /// @notice The signer bitmap has `bit` set, but the epoch has no operator with that index.
    error UnknownSigner(uint256 bit);
    /// @notice Fewer signers than the epoch's threshold.
    error InsufficientSigners(uint256 signers, uint256 threshold);
    /// @notice The aggregate signature is not 128 bytes long.
    error InvalidSignatureLength(uint256 length);
    /// @notice The aggregate signature does not verify for the signers and the message.
    error InvalidSignature();

    // ----- getter errors -----
    /// @notice Epoch `epoch` has no operator with index `index`.
    error OperatorIndexOutOfRange(uint64 epoch, uint256 index);

    /// @param genesisSetHash_ `setHashOf(0, 0, threshold, count, records)` of the first set.
    /// @param scheduleStartBlock_ First block of round 0.
    /// @param roundBlocks_ Blocks per round.
    /// @param graceBlocks_ Blocks a superseded epoch keeps settling after its successor starts.
    /// @param leadBlocks_ Blocks an update must precede its first round.
    constructor(
        bytes32 genesisSetHash_,
        uint64 scheduleStartBlock_,
        uint64 roundBlocks_,
        uint64 graceBlocks_,
        uint64 leadBlocks_
    ) {
        if (roundBlocks_ == 0) revert InvalidRoundLength();
        genesisSetHash = genesisSetHash_;
        scheduleStartBlock = scheduleStartBlock_;
        roundBlocks = roundBlocks_;
        graceBlocks = graceBlocks_;
        leadBlocks = leadBlocks_;
    }

    // =====================================================================================
    // Operator sets
    // =====================================================================================

    /// @notice Stages the next chunk of operators of the set `setHash` under the caller.
    /// @dev Verifies each new key's proof of possession (a key proven once is not proven
    ///      again), refuses identity and duplicates, and stores the negated keys as one blob.
    function stageOperators(bytes32 setHash, OperatorRecord[] calldata records) external {
        bytes32 id = stagingId(msg.sender, setHash);
        Staging storage s = _staging[id];
        if (s.committed) revert StagingCommitted(setHash);
        uint256 first = s.count;
        uint256 len = records.length;
        if (len == 0 || len > CHUNK_SIZE) revert InvalidChunk(len);
        if (first % CHUNK_SIZE != 0) revert ChunkAfterPartial(first);
        if (first + len > MAX_OPERATORS) revert InvalidOperatorCount(first + len);

        bytes memory negatedKeys = new bytes(len * BLS.G2_LENGTH);
        bytes memory aggregate = s.aggregateKey;
        bytes32 h = s.recordsHash;
        for (uint256 i = 0; i < len; ++i) {
            OperatorRecord calldata r = records[i];
            bytes memory key = _admit(id, first + i, r);
            h = keccak256(abi.encode(h, recordHash(r)));
            bytes memory negated = BLS.negateG2(key);
            assembly ("memory-safe") {
                mcopy(add(add(negatedKeys, 0x20), mul(i, 256)), add(negated, 0x20), 256)
            }
            aggregate = aggregate.length == 0 ? key : BLS.g2Add(aggregate, key);
        }
        s.chunks.push(Blob.write(negatedKeys));
        s.count = uint16(first + len);
        s.recordsHash = h;
        s.aggregateKey = aggregate;
        emit OperatorsStaged(msg.sender, setHash, first, records);
    }

    /// @dev Checks operator `index` of staging `id` and returns its key.
    function _admit(bytes32 id, uint256 index, OperatorRecord calldata r) private returns (bytes memory key) {
        if (r.account == address(0)) revert ZeroOperator(index);
        if (r.peerId.length == 0) revert EmptyPeerId(index);
        key = r.blsPublicKey;
        if (key.length != BLS.G2_LENGTH) revert InvalidPublicKeyLength(index, key.length);
        if (BLS.isZero(key)) revert IdentityPublicKey(index);
        bytes32 keyHash = keccak256(key);
        _markSeen(id, index, keccak256(abi.encode("key", keyHash)), "key");
        _markSeen(id, index, keccak256(abi.encode("account", r.account)), "account");
        _markSeen(id, index, keccak256(abi.encode("peer", keccak256(r.peerId))), "peerId");
        if (!_keyProven[keyHash]) {
            if (r.proofOfPossession.length != BLS.G1_LENGTH) revert InvalidProofOfPossession(index);
            if (!BLS.verify(key, key, r.proofOfPossession, BLS.POP_DST)) revert InvalidProofOfPossession(index);
            _keyProven[keyHash] = true;
        }
    }

    function _markSeen(bytes32 id, uint256 index, bytes32 tag, string memory what) private {
        if (_stagedSeen[id][tag]) revert DuplicateOperator(index, what);
        _stagedSeen[id][tag] = true;
    }

    /// @notice Makes the set staged by `stager` under `setHash` epoch `epoch`.
    /// @param signerBitmap, signature Epoch `epoch - 1`'s aggregate over `updateMessage(setHash)`;
    ///        ignored for epoch 0, which must be the genesis set.
    function commitEpoch(
        address stager,
        bytes32 setHash,
        uint64 epoch,
        uint64 startRound,
        uint16 threshold,
        uint256 signerBitmap,
        bytes calldata signature
    ) external {
        if (epoch != epochCount) revert WrongEpoch(epoch, epochCount);
        Staging storage s = _staging[stagingId(stager, setHash)];
        uint256 n = s.count;
        if (n == 0) revert NothingStaged(stager, setHash);
        if (threshold == 0 || threshold > n) revert InvalidThreshold(threshold, n);
        bytes32 stagedHash = setHashOf(epoch, startRound, threshold, uint16(n), s.recordsHash);
        if (stagedHash != setHash) revert SetHashMismatch(setHash, stagedHash);
        _authorize(setHash, epoch, startRound, signerBitmap, signature);
        _epochs[epoch] = EpochInfo({
            aggregateKey: Blob.write(s.aggregateKey),
            count: uint16(n),
            threshold: threshold,
            startRound: uint32(startRound),
            endRound: OPEN
        });
        _epochChunks[epoch] = s.chunks;
        s.committed = true;
        epochCount = epoch + 1;
        emit EpochCommitted(epoch, setHash, stager, startRound, threshold, uint16(n));
    }

    /// @dev Epoch 0 must be the genesis set; epoch e+1 needs a threshold of epoch e over the
    ///      update, a later start round, and enough lead for the nodes to follow. Closes epoch e.
    function _authorize(bytes32 setHash, uint64 epoch, uint64 startRound, uint256 signerBitmap, bytes calldata signature)
        private
    {
        if (epoch == 0) {
            if (setHash != genesisSetHash) revert NotGenesisSet(setHash, genesisSetHash);
            if (startRound != 0) revert InvalidStartRound(startRound, 0);
            return;
        }
        EpochInfo storage prev = _epochs[epoch - 1];
        if (startRound <= prev.startRound || startRound >= OPEN) revert InvalidStartRound(startRound, prev.startRound);
        (uint64 firstBlock,) = roundRange(startRound);
        uint256 earliest = block.number + leadBlocks;
        if (firstBlock < earliest) revert StartTooSoon(startRound, firstBlock, earliest);
        _verifyQuorum(prev, epoch - 1, updateMessage(setHash), signerBitmap, signature);
        prev.endRound = uint32(startRound);
    }

    // =====================================================================================
    // Settlement
    // =====================================================================================

    /// @notice Records the batch of `round` once a threshold of `epoch` signed it. Anyone may call.
    /// @dev Checks, in order: the epoch settles this round and has not expired, the block range
    ///      is the round's and has ended, the batch was built on this chain (`toBlockHash`,
    ///      while the chain still knows the hash of `toBlock`), root nonzero, `leafCount > 0`,
    ///      round not settled, then the signer set and the aggregate signature.
    ///      The hash check is what makes a round changed by a reorg deeper than the operators'
    ///      confirmation depth settle: the operators sign the round again on the new chain, and
    ///      the batch they signed on the old one (its transaction re-included, say) is refused.
    /// @param signature EIP-2537 G1 aggregate signature over the 32 bytes of
    ///        `batchMessage(epoch, round, fromBlock, toBlock, toBlockHash, root, leafCount)`.
    function settle(
        uint64 epoch,
        uint64 round,
        uint64 fromBlock,
        uint64 toBlock,
        bytes32 toBlockHash,
        bytes32 root,
        uint32 leafCount,
        uint256 signerBitmap,
        bytes calldata signature
    ) external {
        EpochInfo memory e = _epochs[epoch];
        _checkEpochCovers(e, epoch, round);
        _checkBatchBlocks(round, fromBlock, toBlock, toBlockHash);
        if (root == bytes32(0)) revert ZeroRoot();
        if (leafCount == 0) revert EmptyBatch();
        if (_roundRoot[round] != bytes32(0)) revert RoundAlreadySettled(round);
        _verifyQuorum(
            e, epoch, batchMessage(epoch, round, fromBlock, toBlock, toBlockHash, root, leafCount), signerBitmap, signature
        );
        _roundRoot[round] = root;
        emit Settled(round, root, epoch, fromBlock, toBlock, toBlockHash, leafCount, signerBitmap, msg.sender, signature);
    }

    /// @dev Reverts unless `fromBlock..=toBlock` is `round`'s range, has ended, and `toBlock`
    ///      has hash `toBlockHash` on this chain (when the chain still knows it: `blockhash` for
    ///      the last 256 blocks, then the EIP-2935 history contract where it is deployed).
    function _checkBatchBlocks(uint64 round, uint64 fromBlock, uint64 toBlock, bytes32 toBlockHash) private view {
        (uint64 from, uint64 to) = roundRange(round);
        if (fromBlock != from || toBlock != to || toBlock >= block.number) revert InvalidBlockRange(fromBlock, toBlock);
        bytes32 chainHash = chainBlockHash(toBlock);
        if (chainHash != bytes32(0) && chainHash != toBlockHash) revert NotOnThisChain(toBlock, toBlockHash, chainHash);
    }

    function _checkEpochCovers(EpochInfo memory e, uint64 epoch, uint64 round) private view {
        if (e.count == 0) revert UnknownEpoch(epoch);
        if (round < e.startRound || round >= e.endRound) revert RoundNotInEpoch(round, epoch, e.startRound, e.endRound);
        if (e.endRound != OPEN) {
            uint256 expiry = expiresAt(e.endRound);
            if (block.number > expiry) revert EpochExpired(epoch, expiry);
        }
    }

    /// @dev Reverts unless at least the threshold of `e` signed `message` and `signature` is
    ///      their aggregate.
    function _verifyQuorum(EpochInfo memory e, uint64 epoch, bytes32 message, uint256 signerBitmap, bytes calldata signature)
        private
        view
    {
        uint256 n = e.count;
        if (n < MAX_OPERATORS) {
            uint256 unknown = signerBitmap >> n;
            if (unknown != 0) revert UnknownSigner(n + _lowestSetBit(unknown));
        }
        uint256 signers = _popcount(signerBitmap);
        if (signers < e.threshold) revert InsufficientSigners(signers, e.threshold);
        if (signature.length != BLS.G1_LENGTH) revert InvalidSignatureLength(signature.length);
        if (!BLS.verify(_signersKey(e, epoch, signerBitmap), abi.encodePacked(message), signature, BLS.SIG_DST)) {
            revert InvalidSignature();
        }
    }

    /// @dev The aggregate key of the signers: the epoch's aggregate plus the stored negations
    ///      of the non-signers' keys, one G2ADD each.
    function _signersKey(EpochInfo memory e, uint64 epoch, uint256 signerBitmap) private view returns (bytes memory acc) {
        acc = new bytes(2 * BLS.G2_LENGTH);
        address aggregate = e.aggregateKey;
        assembly ("memory-safe") {
            extcodecopy(aggregate, add(acc, 0x20), 1, 256)
        }
        address[] storage chunks = _epochChunks[epoch];
        address chunk;
        uint256 loaded = type(uint256).max;
        bool ok = true;
        for (uint256 i = 0; i < e.count; ++i) {
            if ((signerBitmap >> i) & 1 == 1) continue;
            uint256 c = i / CHUNK_SIZE;
            if (c != loaded) {
                chunk = chunks[c];
                loaded = c;
            }
            uint256 offset = 1 + (i % CHUNK_SIZE) * BLS.G2_LENGTH;
            assembly ("memory-safe") {
                extcodecopy(chunk, add(acc, 0x120), offset, 256)
                ok := and(ok, staticcall(1500, 0x0d, add(acc, 0x20), 512, add(acc, 0x20), 256))
            }
        }
        if (!ok) revert BLS.PrecompileFailed(BLS.G2ADD);
        assembly ("memory-safe") {
            mstore(acc, 256)
        }
    }

    // =====================================================================================
    // Views
    // =====================================================================================

    /// @notice The message the operators sign for a batch.
    function batchMessage(
        uint64 epoch,
        uint64 round,
        uint64 fromBlock,
        uint64 toBlock,
        bytes32 toBlockHash,
        bytes32 root,
        uint32 leafCount
    ) public view returns (bytes32) {
        return keccak256(
            abi.encode(
                BATCH_TYPEHASH, block.chainid, address(this), epoch, round, fromBlock, toBlock, toBlockHash, root, leafCount
            )
        );
    }

    /// @notice The hash of block `number` as this chain knows it, or zero when it no longer
    ///         does: `blockhash` covers the last 256 blocks, the EIP-2935 history contract (where
    ///         deployed) the last 8191.
    function chainBlockHash(uint256 number) public view returns (bytes32 hash) {
        hash = blockhash(number);
        if (hash != bytes32(0) || number >= block.number || HISTORY_STORAGE.code.length == 0) return hash;
        (bool ok, bytes memory out) = HISTORY_STORAGE.staticcall(abi.encode(number));
        if (ok && out.length == 32) hash = abi.decode(out, (bytes32));
    }

    /// @notice The message the latest epoch signs to install the set `setHash`.
    function updateMessage(bytes32 setHash) public view returns (bytes32) {
        return keccak256(abi.encode(UPDATE_TYPEHASH, block.chainid, address(this), setHash));
    }

    /// @notice Hash of a set: its parameters and the running hash of its records.
    function setHashOf(uint64 epoch, uint64 startRound, uint16 threshold, uint16 count, bytes32 records)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(SET_TYPEHASH, epoch, startRound, threshold, count, records));
    }

    /// @notice Hash of one operator record (its proof of possession is not part of it).
    function recordHash(OperatorRecord calldata r) public pure returns (bytes32) {
        return keccak256(
            abi.encode(
                RECORD_TYPEHASH,
                r.account,
                keccak256(r.peerId),
                keccak256(r.blsPublicKey),
                keccak256(bytes(r.name)),
                keccak256(bytes(r.p2pAddr))
            )
        );
    }

    /// @notice The staging of `stager` for `setHash`.
    function stagingId(address stager, bytes32 setHash) public pure returns (bytes32) {
        return keccak256(abi.encode(stager, setHash));
    }

    /// @notice Progress of a staging: operators staged, their running hash, whether committed.
    function staged(address stager, bytes32 setHash)
        external
        view
        returns (uint16 count, bytes32 recordsHash, bool committed)
    {
        Staging storage s = _staging[stagingId(stager, setHash)];
        return (s.count, s.recordsHash, s.committed);
    }

    /// @notice Inclusive block range of `round`.
    function roundRange(uint64 round) public view returns (uint64 fromBlock, uint64 toBlock) {
        fromBlock = scheduleStartBlock + round * roundBlocks;
        toBlock = fromBlock + roundBlocks - 1;
    }

    /// @notice Last block at which an epoch ending at `endRound` may still settle.
    function expiresAt(uint64 endRound) public view returns (uint256) {
        return uint256(scheduleStartBlock) + uint256(endRound) * roundBlocks + graceBlocks;
    }

    /// @notice Epoch `epoch`: rounds `[startRound, endRound)` (`endRound == OPEN` for the latest),
    ///         its threshold and operator count; all zero when not committed.
    function epochInfo(uint64 epoch)
        external
        view
        returns (uint64 startRound, uint64 endRound, uint16 threshold, uint16 count)
    {
        EpochInfo memory e = _epochs[epoch];
        return (e.startRound, e.endRound, e.threshold, e.count);
    }

    /// @notice Operator `index`'s EIP-2537 G2 public key in epoch `epoch`.
    function operatorKey(uint64 epoch, uint256 index) external view returns (bytes memory) {
        EpochInfo memory e = _epochs[epoch];
        if (index >= e.count) revert OperatorIndexOutOfRange(epoch, index);
        bytes memory negated =
            Blob.read(_epochChunks[epoch][index / CHUNK_SIZE], (index % CHUNK_SIZE) * BLS.G2_LENGTH, BLS.G2_LENGTH);
        return BLS.negateG2(negated);
    }

    /// @notice The sum of every key of epoch `epoch`, EIP-2537 G2.
    function aggregateKey(uint64 epoch) external view returns (bytes memory) {
        EpochInfo memory e = _epochs[epoch];
        if (e.count == 0) revert UnknownEpoch(epoch);
        return Blob.read(e.aggregateKey, 0, BLS.G2_LENGTH);
    }

    /// @notice The Merkle root settled for `round`, or zero if the round is not settled.
    function settledRoot(uint64 round) external view returns (bytes32) {
        return _roundRoot[round];
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
