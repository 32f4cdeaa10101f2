//! The Merkle tree of a round's payments: rs_merkle with keccak256, leaves used as given.
//!
//! Shape (what an independent verifier must reproduce): parent = keccak256(left ‖ right) by
//! position; an odd last node moves up unchanged; a proof lists siblings bottom-up and skips the
//! levels where the node moved up. [`verify_proof`] implements exactly that without rs_merkle, so
//! a merchant (or a contract) can check a receipt from the leaf index and the leaf count alone.

use alloy_primitives::{B256, keccak256};
use rs_merkle::{Hasher, MerkleTree};

/// keccak256 as an rs_merkle hasher.
#[derive(Debug, Clone, Copy)]
pub struct Keccak256;

impl Hasher for Keccak256 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        keccak256(data).0
    }
}

/// Root of the tree over `leaves`, or `None` for no leaves.
pub fn root(leaves: &[B256]) -> Option<B256> {
    tree(leaves).root().map(B256::from)
}

/// Sibling hashes proving leaf `index`, bottom-up, or `None` if out of range.
pub fn proof(leaves: &[B256], index: usize) -> Option<Vec<B256>> {
    BatchTree::new(leaves).proof(index)
}

/// A tree built once, for the proofs of many leaves of one batch (a round's receipts): each
/// proof is then a walk up the tree instead of a rebuild.
pub struct BatchTree {
    tree: MerkleTree<Keccak256>,
    leaves: usize,
}

impl std::fmt::Debug for BatchTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchTree").field("leaves", &self.leaves).field("root", &self.root()).finish()
    }
}

impl BatchTree {
    /// Builds the tree over `leaves`.
    pub fn new(leaves: &[B256]) -> Self {
        Self { tree: tree(leaves), leaves: leaves.len() }
    }

    /// Root, or `None` for no leaves.
    pub fn root(&self) -> Option<B256> {
        self.tree.root().map(B256::from)
    }

    /// Sibling hashes proving leaf `index`, bottom-up, or `None` if out of range.
    pub fn proof(&self, index: usize) -> Option<Vec<B256>> {
        if index >= self.leaves {
            return None;
        }
        Some(self.tree.proof(&[index]).proof_hashes().iter().copied().map(B256::from).collect())
    }
}

/// Checks a proof of `leaf` at `index` in a tree of `leaf_count` leaves against `root`.
pub fn verify_proof(root: B256, leaf: B256, index: usize, leaf_count: usize, proof: &[B256]) -> bool {
    if index >= leaf_count {
        return false;
    }
    let mut hash = leaf;
    let (mut i, mut m) = (index, leaf_count);
    let mut siblings = proof.iter();
    while m > 1 {
        let moves_up = i % 2 == 0 && i == m - 1;
        if !moves_up {
            let Some(sibling) = siblings.next() else {
                return false;
            };
            let mut buf = [0u8; 64];
            let (l, r) = if i % 2 == 0 { (hash, *sibling) } else { (*sibling, hash) };
            buf[..32].copy_from_slice(l.as_slice());
            buf[32..].copy_from_slice(r.as_slice());
            hash = keccak256(buf);
        }
        i /= 2;
        m = m.div_ceil(2);
    }
    siblings.next().is_none() && hash == root
}

fn tree(leaves: &[B256]) -> MerkleTree<Keccak256> {
    let raw: Vec<[u8; 32]> = leaves.iter().map(|l| l.0).collect();
    MerkleTree::<Keccak256>::from_leaves(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<B256> {
        (0..n).map(|i| keccak256((i as u64).to_be_bytes())).collect()
    }

    fn h(a: B256, b: B256) -> B256 {
        keccak256([a.as_slice(), b.as_slice()].concat())
    }

    #[test]
    fn one_tree_proves_every_leaf_of_its_batch() {
        for n in [1usize, 2, 3, 7, 8, 33] {
            let l = leaves(n);
            let tree = BatchTree::new(&l);
            let root = tree.root().expect("non-empty");
            assert_eq!(Some(root), super::root(&l));
            for (i, leaf) in l.iter().enumerate() {
                let p = tree.proof(i).expect("in range");
                assert!(verify_proof(root, *leaf, i, n, &p), "leaf {i} of {n}");
            }
            assert_eq!(tree.proof(n), None);
        }
    }

    #[test]
    fn shape_matches_the_documented_rule() {
        let l = leaves(3);
        assert_eq!(root(&l), Some(h(h(l[0], l[1]), l[2])));
        assert_eq!(root(&l[..1]), Some(l[0]));
        assert_eq!(root(&[]), None);
        assert_eq!(proof(&l, 2), Some(vec![h(l[0], l[1])]));
    }

    #[test]
    fn tampered_proofs_fail() {
        let l = leaves(5);
        let r = root(&l).expect("non-empty");
        let p = proof(&l, 3).expect("in range");
        assert!(verify_proof(r, l[3], 3, 5, &p));
        assert!(!verify_proof(r, l[2], 3, 5, &p), "wrong leaf");
        assert!(!verify_proof(r, l[3], 2, 5, &p), "wrong index");
        let last = proof(&l, 4).expect("in range");
        assert!(verify_proof(r, l[4], 4, 5, &last));
        assert!(!verify_proof(r, l[4], 4, 6, &last), "wrong count");
        let mut bad = p.clone();
        bad[0].0[0] ^= 1;
        assert!(!verify_proof(r, l[3], 3, 5, &bad), "flipped sibling");
        assert!(!verify_proof(r, l[3], 3, 5, &p[..p.len() - 1]), "short proof");
        assert!(proof(&l, 5).is_none());
    }

    proptest! {
        #[test]
        fn every_proof_verifies(n in 1usize..80, seed in any::<u64>()) {
            let l: Vec<B256> = (0..n).map(|i| keccak256([seed.to_be_bytes(), (i as u64).to_be_bytes()].concat())).collect();
            let r = root(&l).expect("non-empty");
            for i in 0..n {
                let p = proof(&l, i).expect("in range");
                prop_assert!(verify_proof(r, l[i], i, n, &p));
            }
        }
    }
}
