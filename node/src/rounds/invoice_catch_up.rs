//! Catching up on the invoices other operators created while this node was away.
//!
//! Replication announces an invoice at once and, for operators that joined around then, again
//! up to 32 s later ([`crate::replication`]). A node down for longer (a restart, a partition)
//! would learn what was created meanwhile only when a payment made a keeper or a delivery
//! fetch it: until then its API answered 404 for those invoices and its checkout could not
//! show them. So when an operator connects, this node asks it, a page at a time, for the
//! invoices *it* created since it was last connected (less [`MARGIN_S`]), or over the last
//! [`WINDOW_S`] when this node has not seen it since it started. Each operator answers from its
//! own index of what it created (`created_invoices`), whose times come from its own clock.
//!
//! What comes back is judged as gossip is: every invoice must be one the answering operator
//! created (its own name) and commit to its terms, or the whole answer is dropped and the
//! operator penalised; one whose merchant this node's registry does not hold is left out (a
//! payment of it is fetched when it settles). Nothing is trusted for being asked for: a page
//! adds only checked invoices, and an operator that answers without end is stopped after
//! [`MAX_PAGES`] pages, or at the first page that does not move forward.

use crate::gossip::{CreatedSince, GossipRejection, InvoiceScope, SyncRequest, SyncResponse, check_invoice_terms};
use crate::store::Store;
use settleproof_p2p::{NetworkHandle, PeerId};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Most pages asked of one operator per connection (8,192 invoices).
pub(super) const MAX_PAGES: usize = 32;
/// How far back a node asks an operator it has not seen since it started.
pub(super) const WINDOW_S: u64 = 3_600;
/// How far before an operator's disconnection a node asks from when it connects again: clocks
/// of operators differ by a little, and an invoice created just before the link broke may not
/// have been announced yet.
pub(super) const MARGIN_S: u64 = 60;
/// The pause before the first page: the merchant registry's catch-up, asked at the same
/// connection, comes first, so invoices of merchants registered meanwhile are taken.
const FIRST_PAGE_AFTER: Duration = Duration::from_secs(2);
/// How long one page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a catch-up asks from: since the operator was last connected, less [`MARGIN_S`], and
/// never more than [`WINDOW_S`] back.
pub(super) fn since_s(gone_at_s: Option<u64>, now_s: u64) -> u64 {
    let floor = now_s.saturating_sub(WINDOW_S);
    gone_at_s.map_or(floor, |gone| gone.saturating_sub(MARGIN_S).max(floor))
}

/// Asks `peer` (the operator named `author`) for the invoices it created since `since_s`, in the
/// background, and stores what checks out.
pub(super) fn spawn(net: NetworkHandle, store: Store, scope: InvoiceScope, peer: PeerId, author: String, since_s: u64) {
    tokio::spawn(async move {
        tokio::time::sleep(FIRST_PAGE_AFTER).await;
        let stored = catch_up(&net, &store, &scope, peer, &author, since_s).await;
        if stored > 0 {
            metrics::counter!("invoices_caught_up_total", "chain_id" => scope.chain_id.to_string())
                .increment(stored as u64);
            info!(%peer, operator = %author, stored, "took the invoices an operator created while this node was away");
        }
    });
}

/// The pages, one after the other; returns how many new invoices were stored.
async fn catch_up(
    net: &NetworkHandle,
    store: &Store,
    scope: &InvoiceScope,
    peer: PeerId,
    author: &str,
    since_s: u64,
) -> usize {
    let (mut after, mut stored) = (None, 0);
    for _ in 0..MAX_PAGES {
        let request = SyncRequest { created_since: Some(CreatedSince { since_s, after }), ..Default::default() };
        let Ok(request) = serde_json::to_string(&request) else { return stored };
        let answer = match tokio::time::timeout(PAGE_TIMEOUT, net.request(peer, request)).await {
            Ok(Ok(answer)) if !answer.is_empty() => answer,
            Ok(Ok(_)) => return stored,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "invoice catch-up request failed");
                return stored;
            }
            Err(_) => {
                debug!(%peer, "no invoice catch-up answer in time");
                return stored;
            }
        };
        let page = match serde_json::from_str::<SyncResponse>(&answer) {
            Ok(page) => page,
            Err(e) => {
                warn!(%peer, error = %e, "malformed invoice catch-up answer");
                return stored;
            }
        };
        let next = page.created_next;
        match judge(page, scope, author) {
            Ok(invoices) => {
                let (store, chain_id) = (store.clone(), scope.chain_id);
                stored +=
                    tokio::task::spawn_blocking(move || super::announced::store_replicated(&store, invoices, chain_id))
                        .await
                        .unwrap_or(0);
            }
            Err(e) => {
                metrics::counter!("invoice_conflicts_total", "chain_id" => scope.chain_id.to_string(), "reason" => e.reason())
                    .increment(1);
                warn!(%peer, error = %e, "invoice catch-up answer rejected");
                net.penalize(peer).await;
                return stored;
            }
        }
        // Each page must start past the last one: an operator cannot keep this node asking.
        match next {
            Some(key) if key.0 >= since_s && after.is_none_or(|a| key > a) => after = Some(key),
            _ => return stored,
        }
    }
    stored
}

/// The invoices of one page this node takes: all of them must be `author`'s and commit to their
/// terms (else the page is refused: an honest operator never answers another one); those of a
/// merchant the registry does not hold (yet), or refused for what the invoice alone says, are
/// left out.
fn judge(
    page: SyncResponse,
    scope: &InvoiceScope,
    author: &str,
) -> Result<Vec<crate::store::Invoice>, GossipRejection> {
    let mut taken = Vec::with_capacity(page.invoices.len());
    for inv in page.invoices.into_iter().take(SyncRequest::MAX_INVOICES) {
        if inv.created_by != author {
            return Err(GossipRejection::ForeignCreator(inv.id));
        }
        match check_invoice_terms(&inv, scope) {
            Ok(()) => taken.push(inv),
            Err(e @ GossipRejection::InvoiceIdMismatch(_)) => return Err(e),
            Err(e) => debug!(invoice_id = %inv.id, error = %e, "an invoice of a catch-up page left out"),
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Invoice;
    use alloy::primitives::{Address, B256, U256};
    use settleproof_config::{EXAMPLE, NodeConfig};

    fn scope() -> InvoiceScope {
        let config = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example config");
        InvoiceScope {
            merchants: crate::merchants::Registry::fixed(config.merchants),
            chain_id: 31337,
            payments: Address::repeat_byte(7),
        }
    }

    /// Invoice `i` of `merchant` (of the example config's payout address when known), created
    /// by `by`, with the id of its terms.
    fn invoice(i: u8, merchant: &str, by: &str, scope: &InvoiceScope) -> Invoice {
        let payout =
            scope.merchants.list().iter().find(|m| m.id == merchant).map_or(Address::ZERO, |m| m.payout_address);
        let mut inv = Invoice {
            id: B256::ZERO,
            merchant_id: merchant.into(),
            payout_address: payout,
            amount: U256::from(1000 + u64::from(i)),
            token: Address::ZERO,
            created_at: u64::from(i),
            expires_at: None,
            metadata: None,
            created_by: by.into(),
            nonce: B256::repeat_byte(i),
            idempotency: None,
            redirect_url: None,
        };
        inv.id = inv.terms(scope.chain_id, scope.payments).id();
        inv
    }

    fn page(invoices: Vec<Invoice>) -> SyncResponse {
        SyncResponse { invoices, ..Default::default() }
    }

    #[test]
    fn a_page_is_taken_only_whole_and_in_its_authors_name() {
        let scope = scope();
        let merchant = scope.merchants.list()[0].id.clone();
        let (a, b) = (invoice(1, &merchant, "node-1", &scope), invoice(2, &merchant, "node-1", &scope));
        let taken = judge(page(vec![a.clone(), b.clone()]), &scope, "node-1").expect("its own, intact");
        assert_eq!(taken, vec![a.clone(), b.clone()]);
        // Another operator's invoice, even an intact one, refuses the page.
        let foreign = invoice(3, &merchant, "node-2", &scope);
        assert!(matches!(
            judge(page(vec![a.clone(), foreign.clone()]), &scope, "node-1"),
            Err(GossipRejection::ForeignCreator(id)) if id == foreign.id
        ));
        // An altered one refuses the page.
        let altered = Invoice { amount: U256::from(1), ..b.clone() };
        assert!(matches!(
            judge(page(vec![a.clone(), altered]), &scope, "node-1"),
            Err(GossipRejection::InvoiceIdMismatch(_))
        ));
        // One of a merchant this registry does not hold is left out, the rest taken.
        let unknown = invoice(4, "no-such-merchant", "node-1", &scope);
        assert_eq!(judge(page(vec![unknown, a.clone()]), &scope, "node-1").expect("taken"), vec![a]);
    }

    #[test]
    fn since_is_the_disconnection_less_a_margin_within_the_window() {
        let now = 1_000_000;
        // (last seen, expected start)
        let table = [
            (None, now - WINDOW_S),
            (Some(now - 10), now - 10 - MARGIN_S),
            (Some(now - WINDOW_S * 5), now - WINDOW_S),
            (Some(now + 500), now + 500 - MARGIN_S),
            (Some(5), now - WINDOW_S),
        ];
        for (gone, want) in table {
            assert_eq!(since_s(gone, now), want, "{gone:?}");
        }
        assert_eq!(since_s(None, 10), 0, "early clocks do not wrap");
    }
}
