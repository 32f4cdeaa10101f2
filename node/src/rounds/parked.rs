//! Invoices another operator announced that this node cannot take yet: they commit to their
//! terms and pass every check that depends on the invoice alone, but name a merchant, or a
//! payout address, that this node's copy of the merchant registry does not hold. That copy may
//! only lag the creating operator's (a merchant onboarded or a payout address changed a moment
//! ago), so the invoice waits here and is looked up again when the registry changes, instead
//! of every creator announcing every invoice a second time for the few peers that lag.
//!
//! Bounded per announcing operator, on each chain: at most [`PER_AUTHOR`] invoices and
//! [`PER_AUTHOR_BYTES`] of JSON (a new one pushes out that author's oldest, so an operator that
//! invents invoices for unknown merchants crowds out only its own), each for at most
//! [`PARK_MS`]. A look costs a map lookup per invoice, and only when the registry changed.
//! What leaves untaken is not lost for settlement: batches are built from chain data, and a
//! keeper fetches a missing invoice from its peers (`rounds::invoice_fetch`).

use crate::store::Invoice;
use alloy::primitives::B256;
use settleproof_p2p::PeerId;
use std::collections::{HashMap, HashSet, VecDeque};

/// How long an invoice waits for this node's registry to hold its merchant.
pub(crate) const PARK_MS: u64 = 120_000;
/// Invoices waiting per announcing operator.
pub(crate) const PER_AUTHOR: usize = 1024;
/// Their size (as JSON) per announcing operator: about half a kibibyte an invoice without
/// metadata, up to about 10 KiB one with the largest metadata the API accepts, an idempotency
/// record (which repeats it) and a redirect URL. Decoded, JSON can take several times its size
/// (metadata is at most 4 KiB of JSON, refused otherwise), so this bounds the memory too.
pub(crate) const PER_AUTHOR_BYTES: usize = 512 << 10;

/// What [`ParkedInvoices::park`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parked {
    /// It waits now.
    New,
    /// It was waiting already (a repeat): nothing changed.
    Repeat,
    /// It waits now, and that author's oldest this many were forgotten to make room.
    PushedOut(usize),
    /// Larger than [`PER_AUTHOR_BYTES`] on its own: not kept.
    TooLarge,
}

/// What one [`ParkedInvoices::judge`] pass did.
#[derive(Debug, Default)]
pub(crate) struct Judged {
    /// Invoices to store now.
    pub(crate) taken: Vec<Invoice>,
    /// Forgotten because they waited [`PARK_MS`], per announcing operator.
    pub(crate) expired: Vec<(PeerId, usize)>,
}

#[derive(Debug)]
struct Waiting {
    invoice: Invoice,
    since_ms: u64,
    bytes: usize,
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
    bytes: usize,
}

impl Queue {
    fn pop_oldest(&mut self) -> Option<Waiting> {
        let w = self.waiting.pop_front()?;
        self.ids.remove(&w.invoice.id);
        self.bytes -= w.bytes;
        Some(w)
    }
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

    /// Whether invoice `id` of `author` waits.
    pub(crate) fn holds(&self, author: &PeerId, id: &B256) -> bool {
        self.by_author.get(author).is_some_and(|q| q.ids.contains(id))
    }

    /// Keeps `invoice` (`bytes` long as JSON), announced by `author`, from `now_ms`. One
    /// already waiting is kept as it was.
    pub(crate) fn park(&mut self, author: PeerId, invoice: Invoice, bytes: usize, now_ms: u64) -> Parked {
        if bytes > PER_AUTHOR_BYTES {
            return Parked::TooLarge;
        }
        let q = self.by_author.entry(author).or_default();
        if !q.ids.insert(invoice.id) {
            return Parked::Repeat;
        }
        q.waiting.push_back(Waiting { invoice, since_ms: now_ms, bytes });
        q.bytes += bytes;
        let mut pushed_out = 0;
        while q.waiting.len() > PER_AUTHOR || q.bytes > PER_AUTHOR_BYTES {
            if q.pop_oldest().is_none() {
                break;
            }
            pushed_out += 1;
        }
        if pushed_out == 0 { Parked::New } else { Parked::PushedOut(pushed_out) }
    }

    /// Forgets what waited [`PARK_MS`] at `now_ms`; then, when `registry_changed`, takes every
    /// invoice `holds` says the registry holds now. An author's invoices wait in the order they
    /// came, so expiry reads only the ones that leave.
    pub(crate) fn judge(
        &mut self,
        now_ms: u64,
        registry_changed: bool,
        mut holds: impl FnMut(&Invoice) -> bool,
    ) -> Judged {
        let mut judged = Judged::default();
        for (author, q) in &mut self.by_author {
            let mut expired = 0;
            while q.waiting.front().is_some_and(|w| now_ms.saturating_sub(w.since_ms) >= PARK_MS) {
                q.pop_oldest();
                expired += 1;
            }
            if expired > 0 {
                judged.expired.push((*author, expired));
            }
            if !registry_changed {
                continue;
            }
            let mut kept = VecDeque::with_capacity(q.waiting.len());
            for w in q.waiting.drain(..) {
                if holds(&w.invoice) {
                    q.ids.remove(&w.invoice.id);
                    q.bytes -= w.bytes;
                    judged.taken.push(w.invoice);
                } else {
                    kept.push_back(w);
                }
            }
            q.waiting = kept;
        }
        self.by_author.retain(|_, q| !q.waiting.is_empty());
        judged
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Invoice `n` (its id) of `merchant`, without a signed request.
    pub(in crate::rounds) fn invoice(n: u64, merchant: &str) -> Invoice {
        Invoice {
            id: B256::left_padding_from(&n.to_be_bytes()),
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
            statement: None,
        }
    }

    fn ids(invoices: &[Invoice]) -> Vec<u64> {
        invoices.iter().map(|i| u64::from_be_bytes(i.id.0[24..].try_into().unwrap_or_default())).collect()
    }

    #[test]
    fn an_invoice_waits_until_the_registry_holds_its_merchant() {
        let (a, mut p) = (PeerId::random(), ParkedInvoices::default());
        assert_eq!(p.park(a, invoice(1, "late"), 500, 0), Parked::New);
        assert_eq!(p.park(a, invoice(1, "late"), 500, 5), Parked::Repeat);
        assert_eq!(p.len(), 1);
        let j = p.judge(1_000, true, |_| false);
        assert!(j.taken.is_empty() && p.len() == 1, "still unknown: it waits");
        let j = p.judge(2_000, false, |_| true);
        assert!(j.taken.is_empty() && p.len() == 1, "the registry did not change: not looked at");
        let j = p.judge(3_000, true, |inv| inv.merchant_id == "late");
        assert_eq!(ids(&j.taken), vec![1]);
        assert!(p.is_empty());
        assert_eq!(p.park(a, invoice(1, "late"), 500, 4_000), Parked::New, "taken: it may wait again");
    }

    #[test]
    fn an_invoice_waits_at_most_park_ms_whether_or_not_the_registry_changes() {
        let (a, b, mut p) = (PeerId::random(), PeerId::random(), ParkedInvoices::default());
        p.park(a, invoice(1, "x"), 500, 0);
        p.park(a, invoice(2, "y"), 500, 10);
        p.park(b, invoice(3, "z"), 500, 20);
        p.park(a, invoice(4, "w"), 500, 30);
        let mut looked = Vec::new();
        let j = p.judge(PARK_MS + 20, true, |inv| {
            looked.push(ids(std::slice::from_ref(inv))[0]);
            false
        });
        let mut expired = j.expired.clone();
        expired.sort_by_key(|(peer, _)| *peer != a);
        assert_eq!(expired, vec![(a, 2), (b, 1)], "the three oldest waited too long");
        assert_eq!(looked, vec![4], "an expired one is not looked at");
        let j = p.judge(PARK_MS + 30, false, |_| true);
        assert_eq!(j.expired, vec![(a, 1)], "expiry runs when the registry did not change too");
        assert!(p.is_empty());
    }

    #[test]
    fn one_author_crowds_out_only_its_own_oldest_by_count_and_by_size() {
        let (liar, honest, mut p) = (PeerId::random(), PeerId::random(), ParkedInvoices::default());
        assert_eq!(p.park(honest, invoice(0, "late"), 500, 0), Parked::New);
        for i in 1..=PER_AUTHOR as u64 + 10 {
            let expected = if i > PER_AUTHOR as u64 { Parked::PushedOut(1) } else { Parked::New };
            assert_eq!(p.park(liar, invoice(i, "invented"), 100, 1), expected);
        }
        assert_eq!(p.len(), PER_AUTHOR + 1);
        let mut kept = Vec::new();
        p.judge(2, true, |inv| {
            if inv.merchant_id == "invented" {
                kept.extend(ids(std::slice::from_ref(inv)));
            }
            false
        });
        assert_eq!(kept.first(), Some(&11), "the liar's ten oldest were pushed out");
        assert_eq!(kept.len(), PER_AUTHOR);
        // One that fills the byte budget pushes out as many as it needs.
        assert_eq!(p.park(liar, invoice(10_000, "invented"), PER_AUTHOR_BYTES - 50, 3), Parked::PushedOut(PER_AUTHOR));
        assert_eq!(p.park(liar, invoice(10_001, "invented"), PER_AUTHOR_BYTES + 1, 3), Parked::TooLarge);
        let j = p.judge(4, true, |inv| inv.merchant_id == "late");
        assert_eq!(ids(&j.taken), vec![0], "the honest author's invoice is still there");
    }
}
