//! A settlement receipt: everything a merchant needs to check, without trusting any node, that
//! a payment was settled by a quorum of the operator set. [`Receipt::verify_offchain`] checks
//! what needs no chain access; the on-chain checks (keys registered, root recorded, payment
//! log present) are done by `settleproof verify-receipt` against an RPC endpoint.

use crate::batch::{Batch, PaymentLeaf};
use crate::bls::{BlsPublicKey, BlsSignature};
use crate::invoice::InvoiceTerms;
use crate::merkle;
use alloy_primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize};

/// Receipt format version (4: the batch carries the hash of its last block; 3: min-sig keys and
/// signatures, the batch carries its epoch).
pub const RECEIPT_VERSION: u32 = 4;

/// Proof that one payment was settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Format version.
    pub version: u32,
    /// Chain id.
    pub chain_id: u64,
    /// `InvoicePayments` contract that emitted the payment.
    pub payments_contract: Address,
    /// `Settlement` contract that recorded the batch.
    pub settlement_contract: Address,
    /// The payment.
    pub payment: PaymentLeaf,
    /// Its leaf hash.
    pub leaf: B256,
    /// Its position among the batch's leaves.
    pub leaf_index: u64,
    /// Sibling hashes, bottom-up (levels where the node moved up have none).
    pub proof: Vec<B256>,
    /// The settled batch.
    pub batch: Batch,
    /// The 32-byte message the operators signed.
    pub batch_message: B256,
    /// Indices of the signers, ascending.
    pub signers: Vec<usize>,
    /// Bit i set when operator i signed.
    pub signer_bitmap: U256,
    /// The signers' public keys in the batch's epoch, EIP-2537 encoded G2 (256 bytes each), in
    /// `signers` order.
    pub signer_keys: Vec<Bytes>,
    /// The aggregate signature, EIP-2537 encoded G1 (128 bytes).
    pub aggregate_signature: Bytes,
    /// The settlement transaction.
    pub settlement_tx: B256,
    /// The invoice's terms, which its id commits to: the payment is checked against them.
    #[serde(default)]
    pub invoice: Option<InvoiceTerms>,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Name of the check.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was compared, or why it failed.
    pub detail: String,
}

impl Check {
    /// A check result.
    pub fn new(name: &'static str, ok: bool, detail: impl Into<String>) -> Self {
        Self { name, ok, detail: detail.into() }
    }
}

impl Receipt {
    /// The checks that need no chain: invoice terms, leaf, Merkle proof, batch message, signer
    /// set, aggregate signature.
    pub fn verify_offchain(&self) -> Vec<Check> {
        let mut out = vec![self.check_terms()];
        let leaf = self.payment.hash();
        out.push(Check::new(
            "leaf_hash",
            leaf == self.leaf,
            format!("payment hashes to {leaf}, receipt says {}", self.leaf),
        ));
        let in_range = self.payment.chain_id == self.chain_id
            && (self.batch.from_block..=self.batch.to_block).contains(&self.payment.block_number);
        out.push(Check::new(
            "payment_in_batch",
            in_range,
            format!(
                "block {} in {}..={}, chain {}",
                self.payment.block_number, self.batch.from_block, self.batch.to_block, self.payment.chain_id
            ),
        ));
        let proof_ok = usize::try_from(self.leaf_index).is_ok_and(|i| {
            merkle::verify_proof(self.batch.root, self.leaf, i, self.batch.leaf_count as usize, &self.proof)
        });
        out.push(Check::new(
            "merkle_proof",
            proof_ok,
            format!("leaf {} of {} against root {}", self.leaf_index, self.batch.leaf_count, self.batch.root),
        ));
        let message = self.batch.message(self.chain_id, self.settlement_contract);
        out.push(Check::new(
            "batch_message",
            message == self.batch_message,
            format!("batch hashes to {message}, receipt says {}", self.batch_message),
        ));
        let bitmap = self.signers.iter().fold(U256::ZERO, |acc, i| acc | (U256::from(1u8) << *i));
        let ascending = self.signers.windows(2).all(|w| w[0] < w[1]);
        let set_ok = ascending
            && bitmap == self.signer_bitmap
            && self.signer_keys.len() == self.signers.len()
            && !self.signers.is_empty();
        out.push(Check::new(
            "signer_set",
            set_ok,
            format!("{} signers, bitmap {:#x}", self.signers.len(), self.signer_bitmap),
        ));
        out.push(self.check_signature(message));
        out
    }

    /// The invoice id is the commitment to the terms carried, and the payment went where and in
    /// what the terms say, on their chain and contract.
    fn check_terms(&self) -> Check {
        let Some(t) = &self.invoice else {
            return Check::new("invoice_terms", false, "the receipt carries no invoice terms");
        };
        let p = &self.payment;
        let problems: Vec<&str> = [
            (t.id() != p.invoice_id, "the invoice id does not commit to these terms"),
            (t.chain_id != self.chain_id || p.chain_id != self.chain_id, "another chain"),
            (t.payments_contract != self.payments_contract, "another payments contract"),
            (t.payout_address != p.merchant, "paid to another address than the payout address"),
            (t.token != p.token, "paid in another token"),
        ]
        .into_iter()
        .filter_map(|(bad, why)| bad.then_some(why))
        .collect();
        if !problems.is_empty() {
            return Check::new("invoice_terms", false, problems.join("; "));
        }
        let standing = match p.amount.cmp(&t.amount) {
            std::cmp::Ordering::Less => "less than due",
            std::cmp::Ordering::Equal => "the amount due",
            std::cmp::Ordering::Greater => "more than due",
        };
        Check::new(
            "invoice_terms",
            true,
            format!(
                "invoice {} of merchant `{}`: paid {} of {} due ({standing})",
                p.invoice_id, t.merchant_id, p.amount, t.amount
            ),
        )
    }

    fn check_signature(&self, message: B256) -> Check {
        let keys: Result<Vec<BlsPublicKey>, _> =
            self.signer_keys.iter().map(|k| BlsPublicKey::from_eip2537(k)).collect();
        let result = keys.and_then(|keys| {
            BlsSignature::from_eip2537(&self.aggregate_signature)?.verify_aggregate(&keys, message.as_slice())
        });
        match result {
            Ok(()) => {
                Check::new("aggregate_signature", true, format!("{} signers signed {message}", self.signers.len()))
            }
            Err(e) => Check::new("aggregate_signature", false, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bls::BlsSecretKey;

    fn terms(i: u8) -> InvoiceTerms {
        InvoiceTerms {
            chain_id: 7,
            payments_contract: Address::repeat_byte(8),
            merchant_id: "demo".into(),
            payout_address: Address::repeat_byte(2),
            token: Address::ZERO,
            amount: U256::from(100),
            expires_at: 0,
            nonce: B256::repeat_byte(0x10 + i),
            metadata_hash: crate::invoice::metadata_hash(None),
        }
    }

    fn receipt() -> Receipt {
        let payments: Vec<PaymentLeaf> = (0..3)
            .map(|i| PaymentLeaf {
                chain_id: 7,
                tx_hash: B256::repeat_byte(i + 1),
                log_index: u64::from(i),
                block_number: 10 + u64::from(i),
                invoice_id: terms(i).id(),
                merchant: Address::repeat_byte(2),
                payer: Address::repeat_byte(3),
                token: Address::ZERO,
                amount: U256::from(100),
            })
            .collect();
        let mut sorted = payments.clone();
        let batch = Batch::build(0, 4, (10, 14), B256::repeat_byte(0x14), &mut sorted).expect("batch");
        let leaves: Vec<B256> = sorted.iter().map(PaymentLeaf::hash).collect();
        let settlement = Address::repeat_byte(9);
        let message = batch.message(7, settlement);
        let keys: Vec<BlsSecretKey> = (1..=3).map(|i| BlsSecretKey::from_ikm(&[i; 32]).expect("ikm")).collect();
        let sigs: Vec<BlsSignature> = keys.iter().map(|k| k.sign(message.as_slice())).collect();
        Receipt {
            version: RECEIPT_VERSION,
            chain_id: 7,
            payments_contract: Address::repeat_byte(8),
            settlement_contract: settlement,
            payment: sorted[1].clone(),
            leaf: leaves[1],
            leaf_index: 1,
            proof: merkle::proof(&leaves, 1).expect("proof"),
            batch,
            batch_message: message,
            signers: vec![0, 1, 3],
            signer_bitmap: U256::from(0b1011),
            signer_keys: keys.iter().map(|k| Bytes::from(k.public_key().to_eip2537().to_vec())).collect(),
            aggregate_signature: Bytes::from(BlsSignature::aggregate(&sigs).expect("agg").to_eip2537().to_vec()),
            settlement_tx: B256::repeat_byte(0x77),
            invoice: Some(terms(1)),
        }
    }

    fn failed(r: &Receipt) -> Vec<&'static str> {
        r.verify_offchain().into_iter().filter(|c| !c.ok).map(|c| c.name).collect()
    }

    #[test]
    fn a_genuine_receipt_passes() {
        assert_eq!(failed(&receipt()), Vec::<&str>::new());
    }

    #[test]
    fn each_tampering_fails_the_right_check() {
        type Tamper = Box<dyn Fn(&mut Receipt)>;
        let cases: Vec<(&str, Tamper, &str)> = vec![
            ("amount", Box::new(|r| r.payment.amount = U256::from(101)), "leaf_hash"),
            ("no terms", Box::new(|r| r.invoice = None), "invoice_terms"),
            (
                "altered terms",
                Box::new(|r| {
                    if let Some(t) = r.invoice.as_mut() {
                        t.amount = U256::from(1);
                    }
                }),
                "invoice_terms",
            ),
            ("another invoice's terms", Box::new(|r| r.invoice = Some(terms(2))), "invoice_terms"),
            (
                "terms of another payout address",
                Box::new(|r| {
                    let mut t = terms(1);
                    t.payout_address = Address::repeat_byte(0x66);
                    r.payment.invoice_id = t.id();
                    r.invoice = Some(t);
                }),
                "invoice_terms",
            ),
            ("proof byte", Box::new(|r| r.proof[0].0[5] ^= 1), "merkle_proof"),
            ("root", Box::new(|r| r.batch.root.0[0] ^= 1), "merkle_proof"),
            ("leaf index", Box::new(|r| r.leaf_index = 0), "merkle_proof"),
            ("message", Box::new(|r| r.batch_message.0[31] ^= 1), "batch_message"),
            ("bitmap", Box::new(|r| r.signer_bitmap = U256::from(0b0111)), "signer_set"),
            (
                "signature byte",
                Box::new(|r| {
                    let mut s = r.aggregate_signature.to_vec();
                    s[100] ^= 1;
                    r.aggregate_signature = s.into();
                }),
                "aggregate_signature",
            ),
            (
                "signer key",
                Box::new(|r| {
                    r.signer_keys[0] =
                        Bytes::from(BlsSecretKey::from_ikm(&[9; 32]).expect("ikm").public_key().to_eip2537().to_vec())
                }),
                "aggregate_signature",
            ),
            (
                "dropped signer",
                Box::new(|r| {
                    r.signers.pop();
                    r.signer_keys.pop();
                    r.signer_bitmap = U256::from(0b11);
                }),
                "aggregate_signature",
            ),
        ];
        for (what, tamper, want) in cases {
            let mut r = receipt();
            tamper(&mut r);
            let f = failed(&r);
            assert!(f.contains(&want), "{what}: expected {want} to fail, failed {f:?}");
        }
    }
}
