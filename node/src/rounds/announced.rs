//! Invoices other operators announce on gossip: each judged (its creator, the commitment of its
//! id, what depends on the invoice alone), stored off the loop in one read and one write, or
//! kept until this node's merchant registry holds its merchant ([`super::parked`]).

use super::parked::Parked;
use super::{RoundDriver, State};
use crate::gossip::{self, GossipRejection, InvoiceAnnouncement};
use crate::store::Invoice;
use crate::time::now_ms;
use settleproof_p2p::{PeerId, Verdict};
use tracing::{debug, error, info, warn};

/// Invoices an announcement carries per budget token of its author (checking one costs a hash
/// and a read).
const INVOICES_PER_MESSAGE_TOKEN: usize = 32;

impl RoundDriver {
    /// An invoice another operator announces alone (the legacy single message), judged as one
    /// of an announcement is ([`Self::on_invoices`]).
    pub(super) async fn on_invoice(&self, st: &mut State, data: &[u8], source: PeerId) -> Verdict {
        match serde_json::from_slice::<InvoiceAnnouncement>(data) {
            Ok(ann) => self.on_invoices_judged(st, vec![ann.invoice], source).await,
            Err(e) => {
                warn!(peer = %source, error = %e, "invoice announcement rejected");
                Verdict::Reject
            }
        }
    }

    /// Invoices another operator announces in one message, each judged as
    /// [`Self::on_invoice`] judges one: an altered or invented one, or one in another operator's
    /// name, refuses the whole message and scores its author (an honest operator never sends
    /// one); one whose merchant or payout address this node's registry does not hold yet waits
    /// for it ([`super::parked`]); one refused otherwise is left out. The new ones are stored
    /// off the loop in one write.
    pub(super) async fn on_invoices(&self, st: &mut State, data: &[u8], source: PeerId) -> Verdict {
        let chain_id = self.chain.chain_id().to_string();
        let invoices = match gossip::InvoiceAnnouncements::decode(data) {
            Ok(invoices) => invoices,
            Err(e) => {
                warn!(peer = %source, error = %e, "invoice announcements rejected");
                return Verdict::Reject;
            }
        };
        let extra = (invoices.len() / INVOICES_PER_MESSAGE_TOKEN) as f64;
        if extra > 0.0 && st.budgets.take_records(&source.to_string(), std::time::Instant::now(), extra).is_err() {
            metrics::counter!("gossip_rate_limited_total", "chain_id" => chain_id, "topic" => gossip::INVOICE_BATCHES)
                .increment(1);
            return Verdict::Ignore;
        }
        self.on_invoices_judged(st, invoices, source).await
    }

    /// Judges and keeps the invoices of one announcement of `source` (see [`Self::on_invoices`]).
    async fn on_invoices_judged(&self, st: &mut State, invoices: Vec<Invoice>, source: PeerId) -> Verdict {
        let chain_id = self.chain.chain_id().to_string();
        let author = self.epochs.name_of_peer(&source);
        let scope = self.invoice_scope();
        let (mut good, mut waiting) = (Vec::with_capacity(invoices.len()), Vec::new());
        for inv in invoices {
            let inv = gossip::without_unsigned_key(inv);
            // An operator announces the invoices it created, in its own name only, whatever this
            // node's registry holds (checked first: it costs no hash).
            if Some(inv.created_by.as_str()) != author.as_deref() {
                metrics::counter!("invoice_conflicts_total", "chain_id" => chain_id, "reason" => "foreign_creator")
                    .increment(1);
                warn!(peer = %source, invoice_id = %inv.id, created_by = %inv.created_by, "invoice announced in another operator's name rejected");
                self.net.penalize(source).await;
                return Verdict::Reject;
            }
            match gossip::check_invoice_terms(&inv, &scope) {
                Ok(()) => good.push(inv),
                Err(e) if e.is_altered_invoice() => {
                    metrics::counter!("invoice_conflicts_total", "chain_id" => chain_id, "reason" => e.reason())
                        .increment(1);
                    warn!(peer = %source, error = %e, "altered or invented invoice rejected");
                    self.net.penalize(source).await;
                    return Verdict::Reject;
                }
                Err(e @ GossipRejection::NotInRegistry(_)) => {
                    debug!(peer = %source, invoice_id = %inv.id, error = %e, "announced invoice waits for this node's merchant registry");
                    waiting.push(inv);
                }
                // Counted where refused; a line per invoice would let one operator flood the log.
                Err(e @ GossipRejection::NotTaken(_)) => {
                    debug!(peer = %source, error = %e, "announced invoice not taken")
                }
                Err(e) => warn!(peer = %source, error = %e, "announced invoice ignored"),
            }
        }
        self.park(st, source, waiting);
        if good.is_empty() {
            return Verdict::Ignore;
        }
        self.store_replicated(good);
        Verdict::Accept
    }

    /// Keeps `invoices` of `author` until the registry holds their merchants.
    pub(super) fn park(&self, st: &mut State, author: PeerId, invoices: Vec<Invoice>) {
        if invoices.is_empty() {
            return;
        }
        let (chain_id, now) = (self.chain.chain_id().to_string(), now_ms());
        let (mut parked, mut pushed_out, mut too_large) = (0, 0, 0);
        for inv in invoices {
            if st.parked.holds(&author, &inv.id) {
                continue;
            }
            let bytes = serde_json::to_vec(&inv).map_or(usize::MAX, |b| b.len());
            match st.parked.park(author, inv, bytes, now) {
                Parked::New => parked += 1,
                Parked::Repeat => {}
                Parked::PushedOut(n) => {
                    parked += 1;
                    pushed_out += n;
                }
                Parked::TooLarge => too_large += 1,
            }
        }
        for (outcome, n) in [("parked", parked), ("pushed_out", pushed_out), ("too_large", too_large)] {
            if n > 0 {
                metrics::counter!("invoices_parked_total", "chain_id" => chain_id.clone(), "outcome" => outcome)
                    .increment(n as u64);
            }
        }
        // Counted above: a line per message would let one operator flood the log.
        if pushed_out + too_large > 0 {
            debug!(peer = %author, pushed_out, too_large, "more invoices of one operator wait for this node's merchant registry than it keeps; the oldest are forgotten (fetched again if paid)");
        }
    }

    /// At each heartbeat tick: forgets the waiting invoices that waited too long, and, when the
    /// registry changed since the last look, stores those whose merchant and payout address it
    /// holds now (each was checked in every other way when it came).
    pub(super) fn judge_parked(&self, st: &mut State) {
        if st.parked.is_empty() {
            st.parked_against = None;
            return;
        }
        let merchants = self.merchants.list();
        let changed = st.parked_against.as_ref().is_none_or(|seen| !std::sync::Arc::ptr_eq(seen, &merchants));
        let payouts: std::collections::HashMap<&str, alloy::primitives::Address> = if changed {
            merchants.iter().map(|m| (m.id.as_str(), m.payout_address)).collect()
        } else {
            std::collections::HashMap::new()
        };
        let judged = st.parked.judge(now_ms(), changed, |inv| {
            payouts.get(inv.merchant_id.as_str()).is_some_and(|payout| *payout == inv.payout_address)
        });
        drop(payouts);
        // Held, so its allocation cannot come back as another list at the same address.
        st.parked_against = Some(merchants);
        let chain_id = self.chain.chain_id().to_string();
        let expired: usize = judged.expired.iter().map(|(_, n)| n).sum();
        for (outcome, n) in [("taken", judged.taken.len()), ("expired", expired)] {
            if n > 0 {
                metrics::counter!("invoices_parked_total", "chain_id" => chain_id.clone(), "outcome" => outcome)
                    .increment(n as u64);
            }
        }
        for (peer, invoices) in &judged.expired {
            warn!(%peer, invoices, "announced invoices forgotten: this node's merchant registry did not hold their merchant or payout address within 120 s (a registry behind the announcing operator's, or invoices it invented)");
        }
        // Signed, it said, by a key of a merchant this registry did not hold then: checked now.
        let mut taken = judged.taken;
        taken.retain(|inv| match self.merchants.check_invoice_signature(inv) {
            Ok(()) => true,
            Err(e) => {
                metrics::counter!("merchant_records_refused_total", "kind" => "invoice").increment(1);
                debug!(invoice_id = %inv.id, error = %e, "waiting invoice not taken: its merchant's signature does not hold here");
                false
            }
        });
        if !taken.is_empty() {
            info!(
                invoices = taken.len(),
                "announced invoices taken now that this node's merchant registry holds their merchant"
            );
            self.store_replicated(taken);
        }
    }

    /// Stores invoices other operators announced (checked), off the loop ([`store_replicated`]).
    fn store_replicated(&self, invoices: Vec<Invoice>) {
        let (store, chain_id) = (self.store.clone(), self.chain.chain_id());
        tokio::task::spawn_blocking(move || store_replicated(&store, invoices, chain_id));
    }
}

/// Stores invoices other operators sent (checked) in one read and one write: an id already
/// stored is kept as it was (another copy of it is counted). Returns how many were new; `None`
/// when the store failed (logged).
pub(super) fn store_replicated(store: &crate::store::Store, invoices: Vec<Invoice>, chain_id: u64) -> Option<usize> {
    let known = match store.invoices_by_id(invoices.iter().map(|inv| inv.id)) {
        Ok(known) => known,
        Err(e) => {
            error!(invoices = invoices.len(), error = %e, "cannot read replicated invoices");
            return None;
        }
    };
    let mut new = Vec::new();
    for (inv, known) in invoices.into_iter().zip(known) {
        match known {
            Some(known) if known != inv => {
                metrics::counter!("invoice_conflicts_total", "chain_id" => chain_id.to_string(), "reason" => "other_copy")
                    .increment(1);
                warn!(invoice_id = %inv.id, "another copy of a known invoice announced; the first one is kept");
            }
            Some(_) => {}
            None => new.push(inv),
        }
    }
    if new.is_empty() {
        return Some(0);
    }
    match store.put_replicated_invoices(&new) {
        Ok(stored) => Some(stored),
        Err(e) => {
            error!(invoices = new.len(), error = %e, "cannot store replicated invoices");
            None
        }
    }
}
