//! Chain progress: confirmed payments, settlements seen on chain, the hashes of processed blocks
//! and the checkpoint, written together per processed block range and rewound together on a
//! reorg.

use super::outbox::OutboxEvent;
use super::outbox::webhook_id;
use super::rounds::SettlementRecord;
use super::{
    BLOCKS, INVOICE_PAYMENTS, META, NEXT_ROUND, OUTBOX, PAYMENTS, PROCESSED, PROVISIONAL, REVERSALS, SETTLEMENTS,
    Store, StoreError, decode, encode,
};
use alloy::primitives::B256;
use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use settleproof_consensus::PaymentLeaf;

const CHECKPOINT: &str = "checkpoint";
/// Processed block hashes kept for finding the common ancestor after a reorg.
const KEPT_BLOCKS: u64 = 4096;

/// What the store knows of a round's last block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundEnd {
    /// Processed, with this hash (the watcher keeps every round's last block with the round's
    /// payments).
    Kept(B256),
    /// Processed, but no longer kept: older than the newest `KEPT_BLOCKS` processed blocks,
    /// so older than any reorg the watcher rewinds (it searches 256 kept blocks).
    Pruned,
    /// Not processed (yet, or again after a rewind).
    NotReached,
}

/// A processed block: number, hash, timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredBlock {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Timestamp, unix seconds.
    pub timestamp: u64,
}

/// A confirmed payment with the block it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    /// The payment as batches hash it.
    pub leaf: PaymentLeaf,
    /// Hash of its block.
    pub block_hash: B256,
    /// Timestamp of its block, unix seconds.
    pub block_timestamp: u64,
    /// When this node saw it at confirmation depth, unix ms.
    #[serde(default)]
    pub confirmed_at_ms: u64,
}

/// What applying a block range changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeApplied {
    /// Payments stored for the first time.
    pub new_payments: usize,
    /// Payments that were already stored and were dropped.
    pub duplicates: usize,
}

/// Idempotency key of a payment: invoice id, transaction hash, log index.
fn processed_key(p: &PaymentLeaf) -> [u8; 72] {
    let mut k = [0u8; 72];
    k[..32].copy_from_slice(p.invoice_id.as_slice());
    k[32..64].copy_from_slice(p.tx_hash.as_slice());
    k[64..].copy_from_slice(&p.log_index.to_be_bytes());
    k
}

impl Store {
    /// Last block whose logs are fully processed, if any.
    pub fn checkpoint(&self) -> Result<Option<u64>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(META)?;
        Ok(t.get(CHECKPOINT)?.map(|v| v.value()))
    }

    /// The checkpoint block with the hash it had when processed.
    pub fn checkpoint_block(&self) -> Result<Option<StoredBlock>, StoreError> {
        let Some(n) = self.checkpoint()? else {
            return Ok(None);
        };
        self.block(n)
    }

    /// A processed block, if its hash was kept.
    pub fn block(&self, number: u64) -> Result<Option<StoredBlock>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(BLOCKS)?;
        Ok(t.get(number)?.map(|v| {
            let (hash, timestamp) = v.value();
            StoredBlock { number, hash: B256::from(hash), timestamp }
        }))
    }

    /// The hash of block `number`, the last block of a round, as far as this store knows it.
    pub fn round_end(&self, number: u64) -> Result<RoundEnd, StoreError> {
        Ok(match self.block(number)? {
            Some(b) => RoundEnd::Kept(b.hash),
            None if self.checkpoint()?.is_some_and(|c| number <= c) => RoundEnd::Pruned,
            None => RoundEnd::NotReached,
        })
    }

    /// Kept processed blocks below `below`, newest first, at most `limit`.
    pub fn blocks_below(&self, below: u64, limit: usize) -> Result<Vec<StoredBlock>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(BLOCKS)?;
        let mut out = Vec::new();
        for entry in t.range(..below)?.rev().take(limit) {
            let (k, v) = entry?;
            let (hash, timestamp) = v.value();
            out.push(StoredBlock { number: k.value(), hash: B256::from(hash), timestamp });
        }
        Ok(out)
    }

    /// Atomically stores the confirmed payments, settlements and block hashes of a range ending
    /// at `to` and moves the checkpoint there. Payments already stored (same invoice, transaction
    /// and log index) are dropped and counted.
    pub fn apply_range(
        &self,
        to: StoredBlock,
        payments: &[PaymentRecord],
        settlements: &[SettlementRecord],
        blocks: &[StoredBlock],
    ) -> Result<RangeApplied, StoreError> {
        let tx = self.db().begin_write()?;
        let mut applied = RangeApplied::default();
        {
            let mut pay = tx.open_table(PAYMENTS)?;
            let mut processed = tx.open_table(PROCESSED)?;
            let mut by_invoice = tx.open_multimap_table(INVOICE_PAYMENTS)?;
            for p in payments {
                let key = (p.leaf.block_number, p.leaf.log_index);
                let pk = processed_key(&p.leaf);
                if processed.get(pk)?.is_some() || pay.get(key)?.is_some() {
                    applied.duplicates += 1;
                    continue;
                }
                pay.insert(key, encode(p).as_slice())?;
                processed.insert(pk, key)?;
                by_invoice.insert(p.leaf.invoice_id.0, key)?;
                applied.new_payments += 1;
            }
            let mut settled = tx.open_table(SETTLEMENTS)?;
            let mut provisional = tx.open_table(PROVISIONAL)?;
            for s in settlements {
                // The event at the confirmation depth replaces the keeper's provisional record:
                // the record is what the chain holds.
                if settled.get(s.round)?.is_none() || provisional.get(s.round)?.is_some() {
                    settled.insert(s.round, encode(s).as_slice())?;
                    provisional.remove(s.round)?;
                }
            }
            let mut kept = tx.open_table(BLOCKS)?;
            for b in blocks.iter().chain(std::iter::once(&to)) {
                kept.insert(b.number, (b.hash.0, b.timestamp))?;
            }
            if kept.len()? > KEPT_BLOCKS {
                let cutoff = to.number.saturating_sub(KEPT_BLOCKS);
                kept.retain_in(..cutoff, |_, _| false)?;
            }
            tx.open_table(META)?.insert(CHECKPOINT, to.number)?;
        }
        tx.commit()?;
        Ok(applied)
    }

    /// Undoes everything recorded for blocks after `ancestor` (all blocks when `None`): payments,
    /// settlements seen in those blocks, kept hashes; moves the checkpoint back and reopens the
    /// rounds from `reopen_round`. Each removed payment the merchant was told about is kept, in
    /// the same transaction, as a reversal to notify ([`Store::queue_reversals`] turns it into
    /// the merchant's event). Returns the payments removed, each with whether the merchant had
    /// been told.
    pub fn rewind(&self, ancestor: Option<u64>, reopen_round: u64) -> Result<Vec<(PaymentRecord, bool)>, StoreError> {
        let first = ancestor.map_or(0, |a| a + 1);
        let tx = self.db().begin_write()?;
        let mut removed = Vec::new();
        {
            let mut pay = tx.open_table(PAYMENTS)?;
            let mut processed = tx.open_table(PROCESSED)?;
            let mut by_invoice = tx.open_multimap_table(INVOICE_PAYMENTS)?;
            let outbox = tx.open_table(OUTBOX)?;
            let mut reversals = tx.open_table(REVERSALS)?;
            let keys: Vec<(u64, u64)> =
                pay.range((first, 0)..)?.map(|e| e.map(|(k, _)| k.value())).collect::<Result<_, _>>()?;
            for key in keys {
                if let Some(v) = pay.remove(key)? {
                    let rec: PaymentRecord = decode("payments", v.value())?;
                    processed.remove(processed_key(&rec.leaf))?;
                    by_invoice.remove(rec.leaf.invoice_id.0, key)?;
                    let told = webhook_id(rec.leaf.invoice_id, rec.leaf.tx_hash, rec.leaf.log_index);
                    let notified = outbox.get(told.as_str())?.is_some();
                    if notified {
                        reversals.insert(told.as_str(), encode(&rec.leaf).as_slice())?;
                    }
                    removed.push((rec, notified));
                }
            }
            let mut settled = tx.open_table(SETTLEMENTS)?;
            let mut provisional = tx.open_table(PROVISIONAL)?;
            let mut gone = Vec::new();
            for e in settled.iter()? {
                let (round, v) = e?;
                let rec: SettlementRecord = decode("settlements", v.value())?;
                if rec.block_number >= first {
                    gone.push(round.value());
                }
            }
            for round in gone {
                settled.remove(round)?;
                provisional.remove(round)?;
            }
            tx.open_table(BLOCKS)?.retain_in(first.., |_, _| false)?;
            let mut meta = tx.open_table(META)?;
            match ancestor {
                Some(a) => meta.insert(CHECKPOINT, a)?,
                None => meta.remove(CHECKPOINT)?,
            };
            let next = meta.get(NEXT_ROUND)?.map_or(0, |v| v.value());
            if reopen_round < next {
                meta.insert(NEXT_ROUND, reopen_round)?;
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Enqueues, for each reversal [`Store::rewind`] kept, the event `reverted(original,
    /// payment)` and forgets the reversal, in one transaction; returns how many were queued.
    pub fn queue_reversals(
        &self,
        reverted: impl Fn(&OutboxEvent, &PaymentLeaf) -> OutboxEvent,
    ) -> Result<usize, StoreError> {
        if self.read()?.open_table(REVERSALS)?.is_empty()? {
            return Ok(0);
        }
        let tx = self.db().begin_write()?;
        let mut events = Vec::new();
        {
            let outbox = tx.open_table(OUTBOX)?;
            let mut reversals = tx.open_table(REVERSALS)?;
            for e in reversals.iter()? {
                let (id, leaf) = e?;
                let leaf: PaymentLeaf = decode("reversals", leaf.value())?;
                if let Some(original) = outbox.get(id.value())? {
                    events.push(reverted(&decode("outbox", original.value())?, &leaf));
                }
            }
            reversals.retain(|_, _| false)?;
        }
        self.enqueue(&tx, &events, crate::time::now_ms())?;
        tx.commit()?;
        Ok(events.len())
    }

    /// Settlements recorded from this node's own receipt that the watcher has not confirmed.
    pub fn provisional_settlements(&self) -> Result<Vec<SettlementRecord>, StoreError> {
        let tx = self.read()?;
        let provisional = tx.open_table(PROVISIONAL)?;
        let settled = tx.open_table(SETTLEMENTS)?;
        let mut out = Vec::new();
        for e in provisional.iter()? {
            let round = e?.0.value();
            if let Some(v) = settled.get(round)? {
                out.push(decode("settlements", v.value())?);
            }
        }
        Ok(out)
    }

    /// Keeps `records` (settlements seen above the confirmation depth) as provisional, each
    /// for a round the store holds no settlement of: receipts and events of the round are
    /// served at once, and the watcher confirms each at the depth or drops it (and reopens its
    /// round) as it does its keeper's own. Returns how many were new.
    pub fn put_provisional_settlements(&self, records: &[SettlementRecord]) -> Result<usize, StoreError> {
        // Most polls find only what they found before: a read answers them.
        let fresh: Vec<&SettlementRecord> =
            records.iter().filter(|r| self.settlement(r.round).ok().flatten().is_none()).collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        let tx = self.db().begin_write()?;
        let mut new = 0;
        {
            let mut settled = tx.open_table(SETTLEMENTS)?;
            let mut provisional = tx.open_table(PROVISIONAL)?;
            for r in fresh {
                if settled.get(r.round)?.is_none() {
                    let record = SettlementRecord { provisional: true, seen_ahead: true, ..r.clone() };
                    settled.insert(r.round, encode(&record).as_slice())?;
                    provisional.insert(r.round, ())?;
                    new += 1;
                }
            }
        }
        tx.commit()?;
        Ok(new)
    }

    /// Removes the provisional settlement of `round` (its transaction left the chain) and
    /// reopens the round, in one transaction. Returns whether there was one.
    pub fn drop_provisional_settlement(&self, round: u64) -> Result<bool, StoreError> {
        let tx = self.db().begin_write()?;
        let dropped = {
            let mut provisional = tx.open_table(PROVISIONAL)?;
            let was = provisional.remove(round)?.is_some();
            if was {
                tx.open_table(SETTLEMENTS)?.remove(round)?;
                let mut meta = tx.open_table(META)?;
                let next = meta.get(NEXT_ROUND)?.map_or(0, |v| v.value());
                if round < next {
                    meta.insert(NEXT_ROUND, round)?;
                }
            }
            was
        };
        tx.commit()?;
        Ok(dropped)
    }

    /// Confirmed payments in blocks `from..=to`, in (block, log index) order.
    pub fn payments_in_range(&self, from: u64, to: u64) -> Result<Vec<PaymentRecord>, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(PAYMENTS)?;
        let mut out = Vec::new();
        for entry in t.range((from, 0)..=(to, u64::MAX))? {
            let (_, v) = entry?;
            out.push(decode("payments", v.value())?);
        }
        Ok(out)
    }

    /// Confirmed payments of one invoice, in chain order.
    pub fn payments_of_invoice(&self, invoice: B256) -> Result<Vec<PaymentRecord>, StoreError> {
        let tx = self.read()?;
        let index = tx.open_multimap_table(INVOICE_PAYMENTS)?;
        let pay = tx.open_table(PAYMENTS)?;
        let mut out = Vec::new();
        for key in index.get(invoice.0)? {
            if let Some(v) = pay.get(key?.value())? {
                out.push(decode("payments", v.value())?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::temp_store;
    use alloy::primitives::{Address, U256};

    pub(crate) fn payment(block: u64, log_index: u64, invoice: u8) -> PaymentRecord {
        PaymentRecord {
            leaf: PaymentLeaf {
                chain_id: 31337,
                tx_hash: B256::repeat_byte(block as u8),
                log_index,
                block_number: block,
                invoice_id: B256::repeat_byte(invoice),
                merchant: Address::repeat_byte(2),
                payer: Address::repeat_byte(3),
                token: Address::ZERO,
                amount: U256::from(10),
            },
            block_hash: B256::repeat_byte(0xbb),
            block_timestamp: 1000 + block,
            confirmed_at_ms: 0,
        }
    }

    fn block(n: u64, h: u8) -> StoredBlock {
        StoredBlock { number: n, hash: B256::repeat_byte(h), timestamp: 1000 + n }
    }

    #[test]
    fn range_is_atomic_idempotent_and_ordered() {
        let (_dir, store) = temp_store();
        assert_eq!(store.checkpoint().expect("read"), None);
        let batch = [payment(5, 1, 1), payment(3, 0, 1), payment(9, 0, 2)];
        let applied = store.apply_range(block(10, 1), &batch, &[], &[]).expect("apply");
        assert_eq!(applied, RangeApplied { new_payments: 3, duplicates: 0 });
        let again = store.apply_range(block(10, 1), &batch[..1], &[], &[]).expect("apply again");
        assert_eq!(again, RangeApplied { new_payments: 0, duplicates: 1 });
        assert_eq!(store.checkpoint_block().expect("read"), Some(block(10, 1)));
        let in_range: Vec<_> =
            store.payments_in_range(3, 5).expect("range").iter().map(|p| p.leaf.order_key()).collect();
        assert_eq!(in_range, vec![(3, 0), (5, 1)]);
        assert_eq!(store.payments_of_invoice(B256::repeat_byte(1)).expect("by invoice").len(), 2);
    }

    #[test]
    fn the_same_payment_in_another_block_is_a_duplicate() {
        let (_dir, store) = temp_store();
        store.apply_range(block(5, 1), &[payment(5, 0, 1)], &[], &[]).expect("apply");
        let mut moved = payment(5, 0, 1);
        moved.leaf.block_number = 8;
        let applied = store.apply_range(block(9, 1), &[moved], &[], &[]).expect("apply");
        assert_eq!(applied.duplicates, 1);
    }

    #[test]
    fn rewind_removes_everything_after_the_ancestor() {
        let (_dir, store) = temp_store();
        store.apply_range(block(4, 1), &[payment(3, 0, 1)], &[], &[block(3, 3)]).expect("apply");
        let s = SettlementRecord {
            round: 2,
            root: B256::ZERO,
            signer_bitmap: U256::from(7),
            tx_hash: B256::ZERO,
            block_number: 7,
            submitter: Address::ZERO,
            ..Default::default()
        };
        store.apply_range(block(8, 2), &[payment(6, 0, 2)], &[s], &[block(6, 6)]).expect("apply");
        store.set_next_round(5).expect("rounds");
        let removed = store.rewind(Some(4), 1).expect("rewind");
        assert_eq!(removed.iter().map(|(p, told)| (p.leaf.block_number, *told)).collect::<Vec<_>>(), vec![(6, false)]);
        assert_eq!(store.checkpoint_block().expect("read"), Some(block(4, 1)));
        assert!(store.payments_of_invoice(B256::repeat_byte(2)).expect("read").is_empty());
        assert!(store.settlement(2).expect("read").is_none(), "settlement seen in a removed block is gone");
        assert_eq!(store.next_round().expect("read"), 1);
        assert_eq!(store.blocks_below(100, 10).expect("read").iter().map(|b| b.number).collect::<Vec<_>>(), vec![4, 3]);
        // The removed payment can be applied again (it was re-included elsewhere).
        let applied = store.apply_range(block(9, 9), &[payment(6, 0, 2)], &[], &[]).expect("apply");
        assert_eq!(applied.new_payments, 1);
        store.rewind(None, 0).expect("rewind all");
        assert_eq!(store.checkpoint().expect("read"), None);
    }

    #[test]
    fn rewind_keeps_the_reversal_in_the_same_transaction_until_it_is_queued() {
        let (dir, store) = temp_store();
        let p = payment(6, 0, 2);
        store.apply_range(block(8, 2), std::slice::from_ref(&p), &[], &[block(6, 6)]).expect("apply");
        let told = crate::store::OutboxEvent {
            id: webhook_id(p.leaf.invoice_id, p.leaf.tx_hash, p.leaf.log_index),
            merchant_id: "m".into(),
            ..Default::default()
        };
        store.enqueue_events(std::slice::from_ref(&told), 0).expect("enqueue");
        let removed = store.rewind(Some(4), 0).expect("rewind");
        assert_eq!(removed.len(), 1);
        assert!(removed[0].1, "the merchant had been told");
        // The reversal outlives a restart until it is queued, once.
        drop(store);
        let reopened = Store::open(&dir.path().join("settleproof.redb")).expect("reopen");
        let rev = |o: &crate::store::OutboxEvent, _: &PaymentLeaf| crate::store::OutboxEvent {
            id: format!("rev-{}", o.id),
            ..o.clone()
        };
        assert_eq!(reopened.queue_reversals(rev).expect("queue"), 1);
        assert!(reopened.outbox_event(&format!("rev-{}", told.id)).expect("read").is_some());
        assert_eq!(reopened.queue_reversals(rev).expect("queue"), 0, "queued once");
    }

    #[test]
    fn a_provisional_settlement_is_confirmed_by_its_event_or_dropped() {
        let (_dir, store) = temp_store();
        let record = |round: u64, block: u64, provisional: bool| SettlementRecord {
            round,
            root: B256::repeat_byte(round as u8),
            block_number: block,
            provisional,
            ..Default::default()
        };
        store.set_next_round(9).expect("rounds");
        store.record_settlement(&record(3, 10, true), &[], 0).expect("record");
        store.record_settlement(&record(4, 11, true), &[], 0).expect("record");
        assert_eq!(store.provisional_settlements().expect("read").len(), 2);
        // The watcher sees round 3's event (in another block after a reorg): the record is the
        // chain's now.
        store.apply_range(block(12, 1), &[], &[record(3, 12, false)], &[]).expect("apply");
        let three = store.settlement(3).expect("read").expect("settled");
        assert!(!three.provisional);
        assert_eq!(three.block_number, 12);
        assert_eq!(store.provisional_settlements().expect("read").iter().map(|r| r.round).collect::<Vec<_>>(), vec![4]);
        // Round 4's transaction left the chain: the record goes and the round reopens.
        assert!(store.drop_provisional_settlement(4).expect("drop"));
        assert!(store.settlement(4).expect("read").is_none());
        assert_eq!(store.next_round().expect("read"), 4);
        assert!(!store.drop_provisional_settlement(3).expect("drop"), "a confirmed record stays");
        assert!(store.settlement(3).expect("read").is_some());
        // Settlements read above the depth: kept as provisional for rounds not settled here,
        // never over a record held, and confirmed or dropped as the keeper's own.
        let ahead = [record(3, 20, true), record(5, 21, true), record(6, 21, true)];
        assert_eq!(store.put_provisional_settlements(&ahead).expect("put"), 2);
        assert_eq!(store.settlement(3).expect("read").map(|r| r.block_number), Some(12), "round 3 kept as it was");
        assert!(store.settlement(5).expect("read").is_some_and(|r| r.provisional && r.seen_ahead));
        assert_eq!(store.put_provisional_settlements(&ahead).expect("put"), 0, "a repeat writes nothing");
        store.apply_range(block(22, 2), &[], &[record(5, 21, false)], &[]).expect("apply");
        assert!(store.settlement(5).expect("read").is_some_and(|r| !r.provisional));
        assert!(store.drop_provisional_settlement(6).expect("drop"));
        assert!(store.settlement(6).expect("read").is_none());
    }
}
