//! Building settlement receipts from the store, and checking them on chain.

use crate::store::{SettlementRecord, Store, StoreError};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use settleproof_consensus::receipt::{Check, RECEIPT_VERSION, Receipt};
use settleproof_consensus::{InvoiceTerms, PaymentLeaf, RoundSchedule, merkle};
use settleproof_contracts::{InvoicePayments, Settlement};
use std::collections::HashMap;

/// Where receipts point.
#[derive(Debug, Clone)]
pub struct ReceiptContext {
    /// Chain id.
    pub chain_id: u64,
    /// `InvoicePayments` address.
    pub payments: Address,
    /// `Settlement` address.
    pub settlement: Address,
    /// Rounds.
    pub schedule: RoundSchedule,
    /// Pulled when a proof this node made does not verify.
    pub halt: Option<crate::halt::Halt>,
}

/// The receipt of `payment` of `invoice`, settled by `record`; `None` when the record lacks
/// the signature or the payment is not in the settled batch.
pub fn build(
    store: &Store,
    ctx: &ReceiptContext,
    payment: &PaymentLeaf,
    record: &SettlementRecord,
    invoice: &crate::store::Invoice,
) -> Result<Option<Receipt>, StoreError> {
    let terms = invoice.terms(ctx.chain_id, ctx.payments);
    Ok(RoundReceipts::new(store, ctx, record)?.and_then(|r| r.receipt(payment, Some(terms))))
}

/// Everything the receipts of one settled round share (leaves and their hashes, batch, its
/// message, tree, signers), built once, so the receipts of a round of n payments cost
/// O(n log n) rather than a rebuild per payment.
#[derive(Debug)]
pub struct RoundReceipts<'a> {
    ctx: &'a ReceiptContext,
    record: &'a SettlementRecord,
    batch: settleproof_consensus::Batch,
    batch_message: B256,
    signers: Vec<usize>,
    leaves: Vec<PaymentLeaf>,
    hashes: Vec<B256>,
    index: HashMap<(B256, u64), usize>,
    tree: merkle::BatchTree,
}

impl<'a> RoundReceipts<'a> {
    /// Loads the round's payments and rebuilds its batch; `None` when the record lacks the
    /// signature (not yet fetched) or the stored payments do not make the settled root.
    pub fn new(
        store: &Store,
        ctx: &'a ReceiptContext,
        record: &'a SettlementRecord,
    ) -> Result<Option<Self>, StoreError> {
        let Some((from, to)) = ctx.schedule.range(record.round) else { return Ok(None) };
        if record.signature.is_empty() || !record.signer_keys.len().is_multiple_of(256) {
            return Ok(None);
        }
        let mut leaves: Vec<PaymentLeaf> = store.payments_in_range(from, to)?.into_iter().map(|r| r.leaf).collect();
        let Some((batch, hashes, tree)) = settleproof_consensus::Batch::build_with_tree(
            record.epoch,
            record.round,
            (from, to),
            record.to_block_hash,
            &mut leaves,
        ) else {
            return Ok(None);
        };
        if batch.root != record.root {
            return Ok(None);
        }
        let index = leaves.iter().enumerate().map(|(i, l)| ((l.tx_hash, l.log_index), i)).collect();
        let batch_message = batch.message(ctx.chain_id, ctx.settlement);
        let signers = (0..256usize).filter(|i| record.signer_bitmap.bit(*i)).collect();
        Ok(Some(Self { ctx, record, batch, batch_message, signers, leaves, hashes, index, tree }))
    }

    /// The receipt of `payment` with the terms of its invoice (`None` when this node does not
    /// know the invoice: the receipt then fails `invoice_terms`), or `None` when the payment is
    /// not in this round's batch.
    pub fn receipt(&self, payment: &PaymentLeaf, terms: Option<InvoiceTerms>) -> Option<Receipt> {
        let (ctx, record, batch) = (self.ctx, self.record, self.batch);
        let index = *self.index.get(&(payment.tx_hash, payment.log_index))?;
        // The very leaf of the batch (every field), not only one with its transaction and log.
        if self.leaves[index] != *payment {
            return None;
        }
        let proof = self.tree.proof(index)?;
        if !merkle::verify_proof(batch.root, self.hashes[index], index, self.hashes.len(), &proof) {
            if let Some(h) = &ctx.halt {
                h.violation(
                    "bad_merkle_proof",
                    format!("proof of leaf {index} of round {} does not verify against {}", record.round, batch.root),
                );
            }
            return None;
        }
        Some(Receipt {
            version: RECEIPT_VERSION,
            chain_id: ctx.chain_id,
            payments_contract: ctx.payments,
            settlement_contract: ctx.settlement,
            payment: payment.clone(),
            leaf: self.hashes[index],
            leaf_index: index as u64,
            proof,
            batch,
            batch_message: self.batch_message,
            signers: self.signers.clone(),
            signer_bitmap: record.signer_bitmap,
            signer_keys: record.signer_keys.chunks(256).map(|c| Bytes::from(c.to_vec())).collect(),
            aggregate_signature: record.signature.clone(),
            settlement_tx: record.tx_hash,
            invoice: terms,
        })
    }
}

/// The checks that need the chain, against the settlement contract `trusted` (the one the
/// merchant pinned, never the address written in the receipt): the receipt names that contract,
/// the signers' keys are its registered ones and a quorum, it records the batch as settled, and
/// the payment log exists.
pub async fn verify_onchain<P: Provider>(provider: &P, r: &Receipt, trusted: Address) -> Vec<Check> {
    let mut out = vec![Check::new(
        "pinned_settlement",
        r.settlement_contract == trusted,
        format!("receipt names settlement contract {}, trusted is {trusted}", r.settlement_contract),
    )];
    match provider.get_chain_id().await {
        Ok(id) => out.push(Check::new(
            "chain_id",
            id == r.chain_id,
            format!("rpc serves chain {id}, receipt says {}", r.chain_id),
        )),
        Err(e) => out.push(Check::new("chain_id", false, format!("rpc: {}", crate::redact::scrub(&e.to_string())))),
    }
    let settlement = Settlement::new(trusted, provider);
    let epoch = r.batch.epoch;
    let mut keys_ok = true;
    let mut detail = String::new();
    for (k, i) in r.signers.iter().enumerate() {
        match settlement.operatorKey(epoch, U256::from(*i)).call().await {
            Ok(key) if Some(&key) == r.signer_keys.get(k) => {}
            Ok(_) => {
                keys_ok = false;
                detail = format!("key given for signer {i} is not the one registered in epoch {epoch}");
            }
            Err(e) => {
                keys_ok = false;
                detail = format!("signer {i} of epoch {epoch}: {e}");
            }
        }
    }
    match settlement.epochInfo(epoch).call().await {
        Ok(e) if e.count == 0 => {
            keys_ok = false;
            detail = format!("epoch {epoch} is not committed");
        }
        Ok(e) if r.signers.len() < usize::from(e.threshold) => {
            keys_ok = false;
            detail = format!("{} signers, threshold of epoch {epoch} is {}", r.signers.len(), e.threshold);
        }
        Ok(e) if r.batch.round < e.startRound || r.batch.round >= e.endRound => {
            keys_ok = false;
            detail = format!("round {} is outside epoch {epoch} ({}..{})", r.batch.round, e.startRound, e.endRound);
        }
        Ok(_) => {}
        Err(e) => {
            keys_ok = false;
            detail = format!("epoch {epoch}: {e}");
        }
    }
    out.push(Check::new(
        "registered_signers",
        keys_ok,
        if keys_ok {
            format!("{} operators registered in epoch {epoch}, at least its threshold", r.signers.len())
        } else {
            detail
        },
    ));
    match settlement.settledRoot(r.batch.round).call().await {
        Ok(root) => {
            // The batch must be the one settled: the root is recorded, and the block range, leaf
            // count and epoch are bound by the signed message the offline checks verify. The
            // signers on chain may be another quorum than the receipt's (a keeper resubmitted
            // after a reorg dropped the first settlement).
            out.push(Check::new(
                "settled_on_chain",
                root == r.batch.root,
                format!("round {} on chain: root {root}", r.batch.round),
            ));
        }
        Err(e) => {
            out.push(Check::new("settled_on_chain", false, format!("rpc: {}", crate::redact::scrub(&e.to_string()))))
        }
    }
    out.push(built_on_this_chain(provider, r).await);
    out.push(payment_log(provider, r).await);
    out
}

/// The batch was built on the chain the provider follows: its last block has the hash the
/// operators signed (a batch of an abandoned fork does not settle anything here).
async fn built_on_this_chain<P: Provider>(provider: &P, r: &Receipt) -> Check {
    let b = &r.batch;
    match provider.get_block_by_number(b.to_block.into()).await {
        Ok(Some(block)) => Check::new(
            "batch_on_this_chain",
            block.header.hash == b.to_block_hash,
            format!("block {} has hash {} (the batch names {})", b.to_block, block.header.hash, b.to_block_hash),
        ),
        Ok(None) => Check::new("batch_on_this_chain", false, format!("block {} not found", b.to_block)),
        Err(e) => Check::new("batch_on_this_chain", false, format!("rpc: {}", crate::redact::scrub(&e.to_string()))),
    }
}

async fn payment_log<P: Provider>(provider: &P, r: &Receipt) -> Check {
    let receipt = match provider.get_transaction_receipt(r.payment.tx_hash).await {
        Ok(Some(x)) => x,
        Ok(None) => {
            return Check::new("payment_on_chain", false, format!("transaction {} not found", r.payment.tx_hash));
        }
        Err(e) => {
            return Check::new("payment_on_chain", false, format!("rpc: {}", crate::redact::scrub(&e.to_string())));
        }
    };
    let found = receipt.inner.logs().iter().any(|l| {
        l.log_index == Some(r.payment.log_index)
            && l.address() == r.payments_contract
            && l.block_number == Some(r.payment.block_number)
            && l.log_decode::<InvoicePayments::InvoicePaid>().is_ok_and(|d| {
                let e = &d.inner.data;
                e.invoiceId == r.payment.invoice_id
                    && e.merchant == r.payment.merchant
                    && e.payer == r.payment.payer
                    && e.token == r.payment.token
                    && e.amount == r.payment.amount
            })
    });
    Check::new(
        "payment_on_chain",
        found,
        format!("InvoicePaid log {} of transaction {}", r.payment.log_index, r.payment.tx_hash),
    )
}

/// Why a file given to `verify-receipt` holds no receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptFileError {
    /// Not JSON.
    #[error("the file is not JSON: {0}")]
    NotJson(String),
    /// JSON without a well-formed receipt.
    #[error("no receipt in the file (fields missing or malformed): {0}")]
    NoReceipt(String),
}

/// The receipts in a file: a receipt, a webhook body carrying one (`data.receipt`), or
/// `GET /v1/invoices/{id}/receipt`'s answer (`receipts`).
pub fn parse_receipts(text: &str) -> Result<Vec<Receipt>, ReceiptFileError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ReceiptFileError::NotJson(e.to_string()))?;
    let found = if let Some(list) = v.get("receipts") {
        list.clone()
    } else if let Some(r) = v.get("data").and_then(|d| d.get("receipt")) {
        serde_json::Value::Array(vec![r.clone()])
    } else {
        serde_json::Value::Array(vec![v])
    };
    serde_json::from_value(found).map_err(|e| ReceiptFileError::NoReceipt(e.to_string()))
}
