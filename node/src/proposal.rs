//! Operator set changes as the operators handle them: a proposal file names the current set,
//! the change and the next set; each operator of the current set checks it and adds its BLS
//! signature over the update message; anyone submits it once a threshold has signed
//! (`settleproof operators propose | sign | submit | show`).
//!
//! Everything in a proposal is checked again by whoever reads it: the next set must be the
//! current one with the change applied, its hash and update message must be the ones named,
//! every new key must come with a valid proof of possession, and every signature must be the
//! registered key's of the operator it is filed under. The contract checks the same on chain.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use serde::{Deserialize, Serialize};
use settleproof_consensus::{
    BlsSecretKey, BlsSignature, OperatorRecord, OperatorSetSpec, SetChange, SetError, update_message,
};
use settleproof_contracts::{OperatorEntry, Settlement};
use std::collections::BTreeMap;

/// A proposed change of the operator set, with the approvals gathered so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Chain of the settlement contract.
    pub chain_id: u64,
    /// The settlement contract.
    pub settlement: Address,
    /// The latest set on chain when proposed; its operators approve.
    pub current: OperatorSetSpec,
    /// What changes.
    pub change: SetChange,
    /// The set proposed as the next epoch.
    pub next: OperatorSetSpec,
    /// `next`'s hash.
    pub set_hash: B256,
    /// What the current operators sign.
    pub update_message: B256,
    /// Proofs of possession of the keys `next` adds (by operator name), EIP-2537 G1.
    pub proofs: BTreeMap<String, Bytes>,
    /// Approvals: name of an operator of `current` → its BLS signature over `update_message`.
    pub signatures: BTreeMap<String, Bytes>,
}

/// Why a proposal is refused.
#[derive(Debug, thiserror::Error)]
pub enum ProposalError {
    /// The change does not apply to the current set.
    #[error("the change does not apply: {0}")]
    Change(#[from] SetError),
    /// The file's next set, hash or message is not what the change gives.
    #[error("the proposal is inconsistent: {0}")]
    Inconsistent(String),
    /// A new key comes without a valid proof of possession.
    #[error(
        "operator `{0}`: its new BLS key needs a valid proof of possession (`settleproof keys show` or `keys rotate-bls` prints it)"
    )]
    ProofOfPossession(String),
    /// The signer is not an operator of the current set, or signs with another key.
    #[error("`{0}` is not an operator of epoch {1} with this BLS key")]
    NotAnOperator(String, u64),
    /// A filed signature does not verify.
    #[error("the approval filed under `{0}` does not verify")]
    BadApproval(String),
    /// Fewer approvals than the current threshold.
    #[error("{0} valid approvals, epoch {1} needs {2}")]
    TooFewApprovals(usize, u64, usize),
    /// Chain reads failed.
    #[error("chain: {}", crate::redact::scrub(&.0))]
    Chain(String),
}

impl Proposal {
    /// A proposal to apply `change` to `current`, starting at `start_round`; `proofs` carry the
    /// proofs of possession of the keys the change adds.
    pub fn new(
        chain_id: u64,
        settlement: Address,
        current: OperatorSetSpec,
        change: SetChange,
        start_round: u64,
        proofs: BTreeMap<String, Bytes>,
    ) -> Result<Self, ProposalError> {
        let next = current.apply(&change, start_round)?;
        let set_hash = next.set_hash();
        let p = Self {
            chain_id,
            settlement,
            update_message: update_message(chain_id, settlement, set_hash),
            current,
            change,
            next,
            set_hash,
            proofs,
            signatures: BTreeMap::new(),
        };
        p.check()?;
        Ok(p)
    }

    /// Checks the proposal in itself: the next set follows from the change, hash and message
    /// are the ones named, and every key new in `next` has a valid proof of possession.
    pub fn check(&self) -> Result<(), ProposalError> {
        let next = self.current.apply(&self.change, self.next.start_round)?;
        if next != self.next {
            return Err(ProposalError::Inconsistent(
                "the next set is not the current one with the change applied".into(),
            ));
        }
        if self.set_hash != next.set_hash() {
            return Err(ProposalError::Inconsistent("set_hash is not the next set's hash".into()));
        }
        if self.update_message != update_message(self.chain_id, self.settlement, self.set_hash) {
            return Err(ProposalError::Inconsistent("update_message is not the one of this contract and set".into()));
        }
        for op in &self.next.operators {
            if settleproof_p2p::PeerId::from_bytes(&op.peer_id).is_err()
                || settleproof_p2p::parse_multiaddr(&op.p2p_addr).is_err()
            {
                return Err(ProposalError::Inconsistent(format!(
                    "operator `{}` has a peer id or p2p address that does not parse",
                    op.name
                )));
            }
        }
        for op in self.new_keys() {
            let ok = self
                .proofs
                .get(&op.name)
                .and_then(|pop| BlsSignature::from_eip2537(pop).ok())
                .is_some_and(|pop| pop.verify_possession(&op.bls).is_ok());
            if !ok {
                return Err(ProposalError::ProofOfPossession(op.name.clone()));
            }
        }
        Ok(())
    }

    /// Operators of `next` whose BLS key the current set does not have.
    fn new_keys(&self) -> impl Iterator<Item = &OperatorRecord> {
        self.next.operators.iter().filter(|o| !self.current.operators.iter().any(|c| c.bls == o.bls))
    }

    /// Checks that `chain_latest`, the latest set as the signer's own providers show it, is the
    /// proposal's current set, on the contract and chain the signer means: a file whose
    /// "current" set was altered (keys swapped under the same names) is refused, whatever its
    /// change looks like.
    pub fn check_against(
        &self,
        chain_latest: &OperatorSetSpec,
        chain_id: u64,
        settlement: Address,
    ) -> Result<(), ProposalError> {
        if (self.chain_id, self.settlement) != (chain_id, settlement) {
            return Err(ProposalError::Inconsistent(format!(
                "the proposal is for contract {} on chain {}, not {settlement} on chain {chain_id}",
                self.settlement, self.chain_id
            )));
        }
        if &self.current != chain_latest {
            return Err(ProposalError::Inconsistent(format!(
                "its current set is not the chain's latest (epoch {}): propose again from the chain",
                chain_latest.epoch
            )));
        }
        self.check()
    }

    /// Adds the approval of the current operator `name`, signed with `key` (which must be the
    /// key the current set registered for it).
    pub fn sign(&mut self, name: &str, key: &BlsSecretKey) -> Result<(), ProposalError> {
        self.check()?;
        let registered = self.current.operators.iter().find(|o| o.name == name).map(|o| o.bls);
        if registered != Some(key.public_key()) {
            return Err(ProposalError::NotAnOperator(name.into(), self.current.epoch));
        }
        let sig = key.sign(self.update_message.as_slice());
        self.signatures.insert(name.into(), Bytes::from(sig.to_bytes().to_vec()));
        Ok(())
    }

    /// Adds the approval of the current set's operator `signer` (its index), heard from
    /// elsewhere, when it verifies under that operator's key; returns whether it was added
    /// (false: it does not verify, or a valid approval of that operator is filed already; one
    /// filed that does not verify is replaced).
    pub fn add_approval(&mut self, signer: usize, signature: &[u8]) -> bool {
        let Some(op) = self.current.operators.get(signer) else { return false };
        let message = self.update_message;
        let valid =
            |sig: &[u8]| BlsSignature::from_bytes(sig).is_ok_and(|s| s.verify(&op.bls, message.as_slice()).is_ok());
        if self.signatures.get(&op.name).is_some_and(|filed| valid(filed)) {
            return false;
        }
        let verifies = valid(signature);
        if verifies {
            self.signatures.insert(op.name.clone(), Bytes::from(signature.to_vec()));
        }
        verifies
    }

    /// The approvals that verify, by index in the current set.
    pub fn approvals(&self) -> Result<Vec<(usize, BlsSignature)>, ProposalError> {
        let mut out = Vec::new();
        for (name, sig) in &self.signatures {
            let i = self
                .current
                .index_of(name)
                .ok_or_else(|| ProposalError::NotAnOperator(name.clone(), self.current.epoch))?;
            let sig = BlsSignature::from_bytes(sig)
                .ok()
                .filter(|s| s.verify(&self.current.operators[i].bls, self.update_message.as_slice()).is_ok())
                .ok_or_else(|| ProposalError::BadApproval(name.clone()))?;
            out.push((i, sig));
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    /// Signer bitmap and EIP-2537 aggregate signature of the approvals, once they reach the
    /// current threshold.
    pub fn aggregate(&self) -> Result<(U256, Bytes), ProposalError> {
        let approvals = self.approvals()?;
        let threshold = usize::from(self.current.threshold);
        if approvals.len() < threshold {
            return Err(ProposalError::TooFewApprovals(approvals.len(), self.current.epoch, threshold));
        }
        let bitmap = approvals.iter().fold(U256::ZERO, |acc, (i, _)| acc | (U256::from(1u8) << *i));
        let sigs: Vec<BlsSignature> = approvals.into_iter().map(|(_, s)| s).collect();
        let agg = BlsSignature::aggregate(&sigs).map_err(|e| ProposalError::BadApproval(e.to_string()))?;
        Ok((bitmap, Bytes::from(agg.to_eip2537().to_vec())))
    }

    /// The staging entries of `next`: new keys with their proofs, known keys without (the
    /// contract checked those when they were first staged).
    pub fn entries(&self) -> Vec<OperatorEntry> {
        self.next
            .operators
            .iter()
            .map(|r| OperatorEntry {
                record: r.clone(),
                proof_of_possession: self.proofs.get(&r.name).cloned().unwrap_or_default(),
            })
            .collect()
    }
}

/// Every operator set the settlement contract committed, read over one RPC endpoint (the
/// operator's own): each `EpochCommitted` event and the `OperatorsStaged` records it names.
pub async fn chain_sets<P: Provider>(provider: &P, settlement: Address) -> Result<Vec<OperatorSetSpec>, ProposalError> {
    let chain = |e: &dyn std::fmt::Display| ProposalError::Chain(e.to_string());
    let commits = provider
        .get_logs(
            &Filter::new()
                .address(settlement)
                .event_signature(Settlement::EpochCommitted::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .map_err(|e| chain(&e))?;
    let mut sets = Vec::new();
    for log in commits {
        let c = Settlement::EpochCommitted::decode_raw_log(log.topics().iter().copied(), &log.data().data)
            .map_err(|e| chain(&e))?;
        let staged = provider
            .get_logs(
                &Filter::new()
                    .address(settlement)
                    .event_signature(Settlement::OperatorsStaged::SIGNATURE_HASH)
                    .topic1(c.stager.into_word())
                    .topic2(c.setHash)
                    .from_block(0)
                    .to_block(log.block_number.unwrap_or_default()),
            )
            .await
            .map_err(|e| chain(&e))?;
        let mut chunks: BTreeMap<u64, Vec<Settlement::OperatorRecord>> = BTreeMap::new();
        for l in staged {
            let e = Settlement::OperatorsStaged::decode_raw_log(l.topics().iter().copied(), &l.data().data)
                .map_err(|e| chain(&e))?;
            chunks.insert(e.firstIndex.saturating_to::<u64>(), e.records);
        }
        sets.push(settleproof_contracts::assemble_set(&c, chunks).map_err(ProposalError::Chain)?);
    }
    sets.sort_by_key(|s| s.epoch);
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> BlsSecretKey {
        BlsSecretKey::from_ikm(&[i; 32]).expect("ikm")
    }

    fn record(i: u8) -> OperatorRecord {
        OperatorRecord {
            name: format!("op-{i}"),
            account: Address::repeat_byte(i),
            peer_id: settleproof_p2p::Keypair::ed25519_from_bytes([i; 32])
                .expect("32 bytes")
                .public()
                .to_peer_id()
                .to_bytes()
                .into(),
            p2p_addr: format!("/ip4/127.0.0.1/tcp/{}", 9000 + u16::from(i)),
            bls: key(i).public_key(),
        }
    }

    fn current() -> OperatorSetSpec {
        OperatorSetSpec { epoch: 0, start_round: 0, threshold: 3, operators: (1..=4).map(record).collect() }
    }

    fn add_op5() -> Proposal {
        let pop = Bytes::from(key(5).prove_possession().to_eip2537().to_vec());
        Proposal::new(
            31337,
            Address::repeat_byte(9),
            current(),
            SetChange::Add { operator: record(5) },
            20,
            [("op-5".to_string(), pop)].into(),
        )
        .expect("valid proposal")
    }

    #[test]
    fn a_threshold_of_current_operators_makes_an_aggregate_that_verifies() {
        let mut p = add_op5();
        for i in [1u8, 3] {
            p.sign(&format!("op-{i}"), &key(i)).expect("operator signs");
        }
        assert!(matches!(p.aggregate(), Err(ProposalError::TooFewApprovals(2, 0, 3))));
        p.sign("op-4", &key(4)).expect("operator signs");
        let (bitmap, sig) = p.aggregate().expect("threshold");
        assert_eq!(bitmap, U256::from(0b1101u8));
        let keys: Vec<_> = [0usize, 2, 3].iter().map(|i| p.current.operators[*i].bls).collect();
        BlsSignature::from_eip2537(&sig)
            .expect("sig")
            .verify_aggregate(&keys, p.update_message.as_slice())
            .expect("verifies");
        assert_eq!(p.entries()[4].proof_of_possession, p.proofs["op-5"]);
        assert!(p.entries()[0].proof_of_possession.is_empty(), "known keys need no proof again");
    }

    #[test]
    fn tampered_proposals_and_foreign_signers_are_refused() {
        let mut p = add_op5();
        assert!(matches!(p.sign("op-5", &key(5)), Err(ProposalError::NotAnOperator(..))), "not in the current set");
        assert!(matches!(p.sign("op-1", &key(2)), Err(ProposalError::NotAnOperator(..))), "another operator's key");
        let mut swapped = p.clone();
        swapped.next.operators[4].account = Address::repeat_byte(0x66);
        assert!(matches!(swapped.check(), Err(ProposalError::Inconsistent(_))));
        let mut bad_addr = p.clone();
        bad_addr.change = SetChange::Add { operator: OperatorRecord { p2p_addr: "nowhere".into(), ..record(5) } };
        bad_addr.next.operators[4].p2p_addr = "nowhere".into();
        bad_addr.set_hash = bad_addr.next.set_hash();
        bad_addr.update_message = update_message(bad_addr.chain_id, bad_addr.settlement, bad_addr.set_hash);
        assert!(matches!(bad_addr.check(), Err(ProposalError::Inconsistent(_))), "an address nodes cannot use");
        let mut no_pop = p.clone();
        no_pop.proofs.clear();
        assert!(matches!(no_pop.check(), Err(ProposalError::ProofOfPossession(_))));
        p.sign("op-1", &key(1)).expect("signs");
        p.signatures.insert("op-2".into(), p.signatures["op-1"].clone());
        assert!(matches!(p.approvals(), Err(ProposalError::BadApproval(_))), "op-1's signature filed as op-2's");
    }

    #[test]
    fn heard_approvals_are_added_only_when_they_verify_and_replace_only_bad_ones() {
        let mut p = add_op5();
        let sig = |i: u8| key(i).sign(p.update_message.as_slice()).to_bytes().to_vec();
        let (op1, op2, op3) = (sig(1), sig(2), sig(3));
        assert!(p.add_approval(0, &op1), "op-1's own");
        assert!(!p.add_approval(0, &op1), "filed already");
        assert!(!p.add_approval(1, &op1), "op-1's signature offered as op-2's");
        assert!(!p.add_approval(9, &op1), "no such operator");
        // A bad signature filed under op-2 (an old key, say) gives way to the valid one heard.
        p.signatures.insert("op-2".into(), Bytes::from(op3.clone()));
        assert!(p.add_approval(1, &op2));
        assert!(p.add_approval(2, &op3));
        assert_eq!(p.approvals().expect("all verify").len(), 3);
        assert!(p.aggregate().is_ok());
    }
}
