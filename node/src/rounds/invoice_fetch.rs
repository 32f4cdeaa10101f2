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

/// One signed request's invoice as vouchers handed it out: each variant (the fields its id does
/// not commit to, creator and creation time, may differ between holders) with how many handed
/// it out, each voucher with when it says it received the invoice, and why this node refused
/// it.
#[derive(Debug)]
struct Copy {
    variants: Vec<(Invoice, usize)>,
    vouchers: BTreeMap<PeerId, Option<u64>>,
    why: GossipRejection,
}

impl Copy {
    /// The variant most vouchers handed out (the first of those as many): not the one of
    /// whichever voucher answered first.
    fn invoice(self) -> Option<Invoice> {
        let mut best: Option<(Invoice, usize)> = None;
        for (inv, n) in self.variants {
            if best.as_ref().is_none_or(|(_, m)| n > *m) {
                best = Some((inv, n));
            }
        }
        best.map(|(inv, _)| inv)
    }

    /// The vouchers that received it in a whole second before `cutoff_s`'s. Both are whole
    /// seconds: one received in the cutoff's own second may have come after it (a thief's
    /// invoice made at a lagging node just after the revocation), so it does not count.
    fn vouchers_before(&self, cutoff_s: u64) -> usize {
        self.vouchers.values().filter(|at| at.is_some_and(|at| at < cutoff_s)).count()
    }
}

/// Copies of invoices this node's registry refused, by id and signed request.
#[derive(Debug, Default)]
struct Vouched(BTreeMap<B256, Vec<Copy>>);

impl Vouched {
    fn add(&mut self, inv: Invoice, peer: PeerId, received_s: Option<u64>, why: GossipRejection) {
        let copies = self.0.entry(inv.id).or_default();
        match copies.iter_mut().find(|c| c.variants.first().is_some_and(|(v, _)| v.statement == inv.statement)) {
            Some(c) => {
                if c.vouchers.contains_key(&peer) {
                    return;
                }
                c.vouchers.insert(peer, received_s);
                match c.variants.iter_mut().find(|(v, _)| *v == inv) {
                    Some((_, n)) => *n += 1,
                    None => c.variants.push((inv, 1)),
                }
            }
            None => copies.push(Copy { variants: vec![(inv, 1)], vouchers: BTreeMap::from([(peer, received_s)]), why }),
        }
    }

    fn copies(self) -> impl Iterator<Item = Copy> {
        self.0.into_values().flatten()
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
        let received: BTreeMap<B256, u64> = resp.received.iter().copied().collect();
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
                    let at = received.get(&inv.id).copied();
                    vouched.add(inv, peer, at, e);
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
    for copy in vouched.copies() {
        // Holders count only if they received it before what makes this node refuse it began:
        // an honest holder whose registry lagged then (it took a thief's invoice after a
        // revocation) does not count.
        let Some((first, _)) = copy.variants.first() else { continue };
        let cutoff = scope.merchants.vouch_cutoff_s(first);
        let vouchers = cutoff.map_or(0, |c| copy.vouchers_before(c));
        let refused = copy.why.clone();
        let Some(inv) = copy.invoice() else { continue };
        if vouchers < holders.needed {
            metrics::counter!("invoice_conflicts_total", "chain_id" => scope.chain_id.to_string(), "reason" => refused.reason()).increment(1);
            warn!(invoice_id = %inv.id, vouchers, needed = holders.needed, error = %refused, "invoice from peers refused: this node's merchant registry does not take it, and too few operators received it before that to vouch for it");
        } else if matches!(store.put_invoice(&inv), Ok(true)) {
            stored += 1;
            metrics::counter!("invoices_vouched_total", "chain_id" => scope.chain_id.to_string()).increment(1);
            info!(invoice_id = %inv.id, vouchers, needed = holders.needed, refused_here = %refused, "invoice taken on the word of the operators that received it before this node's merchant registry refused it");
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

    /// The invoice of signed request `request` (one id for all: only the request differs).
    fn invoice(request: u8) -> Invoice {
        Invoice {
            id: B256::repeat_byte(1),
            statement: Some(settleproof_merchant_auth::SignedStatement {
                jwt: format!("jwt-{request}"),
                body: "{}".into(),
            }),
            ..super::super::parked::tests::invoice(1, "m")
        }
    }

    /// A copy counts the distinct vouchers that received it before the cutoff: the same voucher
    /// twice counts once, one that received it later or does not say when not at all, and a
    /// copy of another signed request counts for itself.
    #[test]
    fn only_a_copy_enough_distinct_operators_received_in_time_is_taken() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let early = Some(10);
        type Answer = (u8, PeerId, Option<u64>);
        let table: [(&[Answer], usize); 7] = [
            (&[(1, a, early), (1, a, early)], 0),
            (&[(1, a, early), (2, b, early)], 0),
            (&[(1, a, early), (1, b, early)], 1),
            (&[(1, a, early), (1, b, Some(100))], 0),
            (&[(1, a, early), (1, b, Some(50))], 0),
            (&[(1, a, early), (1, b, None)], 0),
            (&[(1, a, early), (2, b, early), (2, c, early), (1, c, early)], 2),
        ];
        for (answers, taken) in table {
            let mut vouched = Vouched::default();
            for (request, peer, at) in answers {
                vouched.add(invoice(*request), *peer, *at, GossipRejection::NotTaken("revoked".into()));
            }
            assert_eq!(vouched.copies().filter(|c| c.vouchers_before(50) >= 2).count(), taken, "{answers:?}");
        }
    }

    /// The copy kept is the one most vouchers handed out, not the first voucher's: one
    /// operator answering first cannot pick the creator or the creation time.
    #[test]
    fn the_copy_kept_is_the_one_most_vouchers_hand_out() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mine = Invoice { created_by: "node-3".into(), created_at: 0, ..invoice(1) };
        let mut vouched = Vouched::default();
        vouched.add(mine, a, Some(1), GossipRejection::NotTaken("revoked".into()));
        vouched.add(invoice(1), b, Some(1), GossipRejection::NotTaken("revoked".into()));
        vouched.add(invoice(1), c, Some(1), GossipRejection::NotTaken("revoked".into()));
        let copies: Vec<Copy> = vouched.copies().collect();
        assert_eq!(copies.len(), 1);
        let kept = copies.into_iter().next().and_then(Copy::invoice).expect("a copy");
        assert_eq!(kept, invoice(1));
    }
}
