//! Fetching invoices this node never received. Invoices reach the other operators by gossip;
//! one created on the other side of a partition may never have. Every node asks its peers, in
//! the background, for the invoices of a round's payments it does not know when it signs the
//! round; a keeper asks again (and waits, briefly) before it records a settlement and so
//! freezes the webhook events of its payments. The merchant then gets the full event
//! (`invoice.paid` with the invoice) rather than a bare `payment.settled`.
//!
//! A node that comes back late may refuse what the others took when the merchant signed it:
//! the key that signed it has been revoked since, the root key replaced, the payout address
//! changed, or its registry does not hold the merchant yet. Such a refusal depends on this
//! node's view, and the signing time is the signer's word, so no rule of its own can tell an
//! invoice signed before a revocation from one a thief backdated. The operators can: an
//! invoice that f + 1 operators of the set hand out identically is held by at least one honest
//! operator, which checked it when it came. It is taken on their word, every check that needs
//! no registry still applied (the id commits to its terms, the terms are the signed
//! request's); fewer holders, and it stays refused.

use crate::gossip::{
    GossipRejection, InvoiceScope, SyncRequest, SyncResponse, check_invoice_terms, without_unsigned_key,
};
use crate::store::{Invoice, Store};
use alloy::primitives::B256;
use settleproof_config::MerchantConfig;
use settleproof_p2p::{NetworkHandle, PeerId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tracing::{debug, info, warn};

/// How long one peer may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_millis(1500);

/// Whom invoices are asked of, and who may vouch for one this node's registry refuses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Holders {
    /// Every other operator of the sets that still matter: all are asked.
    pub peers: Vec<PeerId>,
    /// The other operators of the set settling the current round: only they vouch.
    pub vouchers: BTreeSet<PeerId>,
    /// How many of them must hand out the same copy: f + 1 of that set (at least one honest).
    pub needed: usize,
}

impl Holders {
    /// The holders at `round`, a superseded set's operators asked for `grace_rounds`.
    pub(crate) fn at(epochs: &crate::epochs::Epochs, round: u64, grace_rounds: u64) -> Self {
        let peers = epochs.peers(round, grace_rounds).into_iter().map(|(p, _)| p).collect();
        let me = epochs.me();
        let Some(set) = epochs.for_round(round) else {
            return Self { peers, vouchers: BTreeSet::new(), needed: usize::MAX };
        };
        let vouchers = set.operators.iter().map(|o| o.peer_id).filter(|p| *p != me).collect();
        Self { peers, vouchers, needed: set.operators.len().saturating_sub(1) / 3 + 1 }
    }
}

/// Copies of invoices this node's registry refused, by id, each with the vouchers that handed
/// it out.
#[derive(Debug, Default)]
struct Vouched(BTreeMap<B256, Vec<(Invoice, BTreeSet<PeerId>, GossipRejection)>>);

impl Vouched {
    fn add(&mut self, inv: Invoice, peer: PeerId, why: GossipRejection) {
        let copies = self.0.entry(inv.id).or_default();
        match copies.iter_mut().find(|(copy, _, _)| *copy == inv) {
            Some((_, peers, _)) => {
                peers.insert(peer);
            }
            None => copies.push((inv, BTreeSet::from([peer]), why)),
        }
    }

    /// Each copy, with how many vouchers handed it out and why this node refused it.
    fn copies(self) -> impl Iterator<Item = (Invoice, usize, GossipRejection)> {
        self.0.into_values().flatten().map(|(inv, peers, why)| (inv, peers.len(), why))
    }
}

/// Invoices of the configured merchants that have payments in blocks `from..=to` but are not in
/// the store.
pub(super) fn missing(store: &Store, merchants: &[MerchantConfig], from: u64, to: u64) -> BTreeSet<B256> {
    let Ok(payments) = store.payments_in_range(from, to) else { return BTreeSet::new() };
    payments
        .into_iter()
        .map(|p| p.leaf)
        .filter(|l| merchants.iter().any(|m| m.payout_address == l.merchant))
        .filter(|l| matches!(store.invoice(l.invoice_id), Ok(None)))
        .map(|l| l.invoice_id)
        .take(SyncRequest::MAX_INVOICES)
        .collect()
}

/// Asks every peer at once for the invoices missing in blocks `from..=to` and stores what
/// checks out; returns how many were stored. Bounded by [`PEER_TIMEOUT`].
pub(super) async fn fetch_missing(
    net: &NetworkHandle,
    holders: &Holders,
    store: &Store,
    scope: &InvoiceScope,
    from: u64,
    to: u64,
) -> usize {
    let wanted = missing(store, &scope.merchants.all(), from, to);
    fetch_invoices(net, holders, store, scope, &wanted).await
}

/// Asks every peer at once for the invoices `wanted` and stores each copy that checks out
/// against its id, or that enough operators vouch for (see the module doc); returns how many
/// were stored. Bounded by [`PEER_TIMEOUT`].
pub(crate) async fn fetch_invoices(
    net: &NetworkHandle,
    holders: &Holders,
    store: &Store,
    scope: &InvoiceScope,
    wanted: &BTreeSet<B256>,
) -> usize {
    if wanted.is_empty() {
        return 0;
    }
    let request = SyncRequest { invoices: wanted.iter().copied().collect(), ..Default::default() };
    let Ok(request) = serde_json::to_string(&request) else { return 0 };
    let asks = holders.peers.iter().map(|peer| {
        let (net, request) = (net.clone(), request.clone());
        async move { (*peer, tokio::time::timeout(PEER_TIMEOUT, net.request(*peer, request)).await) }
    });
    let mut stored = 0;
    let mut vouched = Vouched::default();
    for (peer, answer) in futures::future::join_all(asks).await {
        let Ok(Ok(answer)) = answer else {
            debug!(%peer, "no invoice answer from peer");
            continue;
        };
        let Ok(resp) = serde_json::from_str::<SyncResponse>(&answer) else { continue };
        for inv in resp.invoices.into_iter().filter(|i| wanted.contains(&i.id)) {
            let inv = without_unsigned_key(inv);
            match check_invoice_terms(&inv, scope) {
                Ok(()) => {
                    if matches!(store.put_invoice(&inv), Ok(true)) {
                        stored += 1;
                    }
                }
                Err(e @ (GossipRejection::NotInRegistry(_) | GossipRejection::NotTaken(_)))
                    if holders.vouchers.contains(&peer) =>
                {
                    vouched.add(inv, peer, e);
                }
                Err(e) => {
                    metrics::counter!("invoice_conflicts_total", "chain_id" => scope.chain_id.to_string(), "reason" => e.reason()).increment(1);
                    warn!(%peer, error = %e, "invoice from peer rejected: it does not match its id or the merchant");
                    // A merchant unknown here may only be this node's configuration lagging;
                    // an invoice not as its id or its merchant's signature says is the peer's doing.
                    if e.is_altered_invoice() {
                        net.penalize(peer).await;
                    }
                }
            }
        }
    }
    for (inv, vouchers, refused) in vouched.copies() {
        if vouchers < holders.needed {
            metrics::counter!("invoice_conflicts_total", "chain_id" => scope.chain_id.to_string(), "reason" => refused.reason()).increment(1);
            warn!(invoice_id = %inv.id, vouchers, needed = holders.needed, error = %refused, "invoice from peers refused: this node's merchant registry does not take it, and too few operators hold it to vouch for it");
        } else if matches!(store.put_invoice(&inv), Ok(true)) {
            stored += 1;
            metrics::counter!("invoices_vouched_total", "chain_id" => scope.chain_id.to_string()).increment(1);
            info!(invoice_id = %inv.id, vouchers, needed = holders.needed, refused_here = %refused, "invoice taken on the word of the operators that hold it, although this node's merchant registry refuses it");
        }
    }
    if stored > 0 {
        info!(stored, asked = wanted.len(), "fetched invoices this node had not received");
    }
    stored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(amount: u64) -> Invoice {
        Invoice {
            id: B256::repeat_byte(1),
            nonce: B256::repeat_byte(4),
            merchant_id: "m".into(),
            payout_address: alloy::primitives::Address::repeat_byte(0x11),
            amount: alloy::primitives::U256::from(amount),
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

    /// A copy is taken only when `needed` distinct vouchers hand it out identically: the same
    /// voucher twice counts once, and a differing copy counts for itself.
    #[test]
    fn only_a_copy_enough_distinct_operators_hand_out_is_taken() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let table: [(&[(u64, PeerId)], usize); 4] = [
            (&[(1, a), (1, a)], 0),
            (&[(1, a), (2, b)], 0),
            (&[(1, a), (1, b)], 1),
            (&[(1, a), (2, b), (2, c), (1, c)], 2),
        ];
        for (answers, taken) in table {
            let mut vouched = Vouched::default();
            for (amount, peer) in answers {
                vouched.add(invoice(*amount), *peer, GossipRejection::NotTaken("revoked".into()));
            }
            assert_eq!(vouched.copies().filter(|(_, n, _)| *n >= 2).count(), taken, "{answers:?}");
        }
    }
}
