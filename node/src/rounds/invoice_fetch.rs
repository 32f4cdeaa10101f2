//! Fetching invoices this node never received. Invoices reach the other operators by gossip;
//! one created on the other side of a partition may never have. Every node asks its peers, in
//! the background, for the invoices of a round's payments it does not know when it signs the
//! round; a keeper asks again (and waits, briefly) before it records a settlement and so
//! freezes the webhook events of its payments. The merchant then gets the full event
//! (`invoice.paid` with the invoice) rather than a bare `payment.settled`.

use crate::gossip::{InvoiceScope, SyncRequest, SyncResponse, check_invoice};
use crate::store::Store;
use alloy::primitives::B256;
use settleproof_config::MerchantConfig;
use settleproof_p2p::{NetworkHandle, PeerId};
use std::collections::BTreeSet;
use std::time::Duration;
use tracing::{debug, info, warn};

/// How long one peer may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_millis(1500);

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
    peers: &[PeerId],
    store: &Store,
    scope: &InvoiceScope,
    from: u64,
    to: u64,
) -> usize {
    let wanted = missing(store, &scope.merchants.all(), from, to);
    fetch_invoices(net, peers, store, scope, &wanted).await
}

/// Asks every peer at once for the invoices `wanted` and stores each copy that checks out
/// against its id; returns how many were stored. Bounded by [`PEER_TIMEOUT`].
pub(crate) async fn fetch_invoices(
    net: &NetworkHandle,
    peers: &[PeerId],
    store: &Store,
    scope: &InvoiceScope,
    wanted: &BTreeSet<B256>,
) -> usize {
    if wanted.is_empty() {
        return 0;
    }
    let request = SyncRequest { invoices: wanted.iter().copied().collect(), ..Default::default() };
    let Ok(request) = serde_json::to_string(&request) else { return 0 };
    let asks = peers.iter().map(|peer| {
        let (net, request) = (net.clone(), request.clone());
        async move { (*peer, tokio::time::timeout(PEER_TIMEOUT, net.request(*peer, request)).await) }
    });
    let mut stored = 0;
    for (peer, answer) in futures::future::join_all(asks).await {
        let Ok(Ok(answer)) = answer else {
            debug!(%peer, "no invoice answer from peer");
            continue;
        };
        let Ok(resp) = serde_json::from_str::<SyncResponse>(&answer) else { continue };
        for inv in resp.invoices.into_iter().filter(|i| wanted.contains(&i.id)) {
            match check_invoice(inv, scope) {
                Ok(inv) => {
                    if matches!(store.put_invoice(&inv), Ok(true)) {
                        stored += 1;
                    }
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
    if stored > 0 {
        info!(stored, asked = wanted.len(), "fetched invoices this node had not received");
    }
    stored
}
