//! Invoices another operator announced that this node cannot take yet: they commit to their
//! terms, but name a merchant, or a payout address, that this node's copy of the merchant
//! registry does not hold. That copy may only lag the creating operator's (a merchant onboarded
//! or a payout address changed a moment ago), so the invoice waits here and is judged again at
//! each heartbeat tick, instead of every creator announcing every invoice a second time for
//! the few peers that lag.
//!
//! Bounded: at most [`PER_AUTHOR`] invoices per announcing operator (a new one pushes out that
//! author's oldest, so an operator that invents invoices for unknown merchants crowds out only
//! its own), each for at most [`PARK_MS`]. What leaves unjudged is not lost for settlement:
//! batches are built from chain data, and a keeper fetches a missing invoice from its peers
//! (`rounds::invoice_fetch`).

use crate::store::Invoice;
use alloy::primitives::B256;
use settleproof_p2p::PeerId;
use std::collections::{HashMap, HashSet, VecDeque};

/// How long an invoice waits for this node's registry to hold its merchant.
pub(crate) const PARK_MS: u64 = 120_000;
/// Invoices waiting per announcing operator.
pub(crate) const PER_AUTHOR: usize = 2048;

/// What [`ParkedInvoices::judge`] makes of a waiting invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// The registry holds its merchant now: store it.
    Take,
    /// Still not: keep it waiting.
    Keep,
    /// Refused for another reason: forget it.
    Drop,
}

/// What one [`ParkedInvoices::judge`] pass did.
#[derive(Debug, Default)]
pub(crate) struct Judged {
    /// Invoices to store now.
    pub(crate) taken: Vec<Invoice>,
    /// Forgotten because they waited [`PARK_MS`].
    pub(crate) expired: usize,
    /// Forgotten because they were refused.
    pub(crate) dropped: usize,
}

#[derive(Debug)]
struct Waiting {
    invoice: Invoice,
    since_ms: u64,
}

/// The invoices waiting, per announcing operator, oldest first.
#[derive(Debug, Default)]
pub(crate) struct ParkedInvoices {
    by_author: HashMap<PeerId, Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    ids: HashSet<B256>,
}

impl ParkedInvoices {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_author.is_empty()
    }

    /// Invoices waiting, every author's.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_author.values().map(|q| q.waiting.len()).sum()
    }

    /// Keeps `invoice`, announced by `author`, from `now_ms`. One already waiting is kept as
    /// it was. Returns whether the author's oldest was pushed out to make room.
    pub(crate) fn park(&mut self, author: PeerId, invoice: Invoice, now_ms: u64) -> bool {
        let q = self.by_author.entry(author).or_default();
        if !q.ids.insert(invoice.id) {
            return false;
        }
        q.waiting.push_back(Waiting { invoice, since_ms: now_ms });
        if q.waiting.len() <= PER_AUTHOR {
            return false;
        }
        if let Some(old) = q.waiting.pop_front() {
            q.ids.remove(&old.invoice.id);
        }
        true
    }

    /// Judges every waiting invoice with `fate` at `now_ms`: those it takes or drops leave,
    /// and so do those that waited [`PARK_MS`] (not judged again).
    pub(crate) fn judge(&mut self, now_ms: u64, mut fate: impl FnMut(&Invoice) -> Fate) -> Judged {
        let mut judged = Judged::default();
        for q in self.by_author.values_mut() {
            let mut kept = VecDeque::with_capacity(q.waiting.len());
            for w in q.waiting.drain(..) {
                let verdict = if now_ms.saturating_sub(w.since_ms) >= PARK_MS { None } else { Some(fate(&w.invoice)) };
                match verdict {
                    Some(Fate::Keep) => {
                        kept.push_back(w);
                        continue;
                    }
                    Some(Fate::Take) => judged.taken.push(w.invoice.clone()),
                    Some(Fate::Drop) => judged.dropped += 1,
                    None => judged.expired += 1,
                }
                q.ids.remove(&w.invoice.id);
            }
            q.waiting = kept;
        }
        self.by_author.retain(|_, q| !q.waiting.is_empty());
        judged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(n: u8, merchant: &str) -> Invoice {
        Invoice {
            id: B256::repeat_byte(n),
            nonce: B256::repeat_byte(4),
            merchant_id: merchant.into(),
            payout_address: alloy::primitives::Address::repeat_byte(0x11),
            amount: alloy::primitives::U256::from(5u64),
            token: alloy::primitives::Address::ZERO,
            created_at: 1,
            expires_at: None,
            metadata: None,
            created_by: "node-0".into(),
            idempotency: None,
            redirect_url: None,
        }
    }

    #[test]
    fn an_invoice_waits_until_the_registry_takes_it() {
        let (a, mut p) = (PeerId::random(), ParkedInvoices::default());
        assert!(!p.park(a, invoice(1, "late"), 0));
        assert!(!p.park(a, invoice(1, "late"), 5), "the same invoice again is one");
        assert_eq!(p.len(), 1);
        let j = p.judge(1_000, |_| Fate::Keep);
        assert!(j.taken.is_empty() && p.len() == 1, "still unknown: it waits");
        let j = p.judge(2_000, |_| Fate::Take);
        assert_eq!(j.taken.iter().map(|i| i.id).collect::<Vec<_>>(), vec![B256::repeat_byte(1)]);
        assert!(p.is_empty());
        assert!(!p.park(a, invoice(1, "late"), 3_000), "taken: it may wait again");
    }

    #[test]
    fn an_invoice_waits_at_most_park_ms_and_refused_ones_leave() {
        let (a, mut p) = (PeerId::random(), ParkedInvoices::default());
        p.park(a, invoice(1, "x"), 0);
        p.park(a, invoice(2, "y"), 10);
        p.park(a, invoice(3, "z"), 20);
        let mut judged = Vec::new();
        let j = p.judge(PARK_MS + 10, |inv| {
            judged.push(inv.id);
            if inv.id == B256::repeat_byte(3) { Fate::Drop } else { Fate::Keep }
        });
        assert_eq!((j.expired, j.dropped, j.taken.len()), (2, 1, 0), "the two oldest waited too long");
        assert_eq!(judged, vec![B256::repeat_byte(3)], "an expired one is not judged again");
        assert!(p.is_empty());
    }

    #[test]
    fn one_author_crowds_out_only_its_own() {
        let (liar, honest, mut p) = (PeerId::random(), PeerId::random(), ParkedInvoices::default());
        assert!(!p.park(honest, invoice(0, "late"), 0));
        for i in 0..PER_AUTHOR + 10 {
            let mut inv = invoice(1, "invented");
            inv.id = B256::left_padding_from(&(i as u64 + 1).to_be_bytes());
            let pushed_out = p.park(liar, inv, 1);
            assert_eq!(pushed_out, i >= PER_AUTHOR);
        }
        assert_eq!(p.len(), PER_AUTHOR + 1);
        let j = p.judge(2, |inv| if inv.merchant_id == "late" { Fate::Take } else { Fate::Keep });
        assert_eq!(j.taken.len(), 1, "the honest author's invoice is still there");
        // The liar's oldest ten were pushed out: its first kept one is the eleventh.
        let j = p.judge(3, |_| Fate::Drop);
        assert_eq!(j.dropped, PER_AUTHOR);
    }
}
