//! Bare `payment.settled` events completed before delivery: a node that settled a payment of
//! an invoice it did not hold yet (a partition healed since, or a peer has it) asks the other
//! operators for the invoice, checks each copy against its id, and renders the event again as
//! the invoice's own, with a receipt and the same `webhook-id`.

use super::delivery::Deliverer;
use crate::gossip;
use crate::store::OutboxEvent;
use crate::time::now_s;
use std::sync::Arc;
use tracing::info;

/// What a node needs to complete a bare `payment.settled` event before delivering it: the
/// invoice may have reached it since the settlement (a partition healed), or a peer has it.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Where receipts point.
    pub ctx: crate::receipt::ReceiptContext,
    /// What fetched invoices are checked against.
    pub scope: gossip::InvoiceScope,
    /// The operator sets, whose other operators are asked for the invoice.
    pub epochs: Arc<crate::epochs::Epochs>,
    /// Rounds a superseded set's operators stay among them.
    pub grace_rounds: u64,
}

impl Deliverer {
    /// A bare `payment.settled` event whose invoice this node now knows, or can fetch from a
    /// peer (each copy checked against its id), rendered again as the invoice's own event with
    /// a receipt; the same `webhook-id`. Anything else as it is.
    pub(super) async fn completed(&self, event: &OutboxEvent) -> OutboxEvent {
        let (Some(c), Some(invoice), Some(net)) = (&self.completion, event.invoice_id, &self.net) else {
            return event.clone();
        };
        if event.event_type != "payment.settled" {
            return event.clone();
        }
        if matches!(self.store.invoice(invoice), Ok(None)) && self.unknown.not_found_lately(invoice) {
            return self.rerendered(c, event).unwrap_or_else(|| event.clone());
        }
        if matches!(self.store.invoice(invoice), Ok(None)) {
            let wanted = std::collections::BTreeSet::from([invoice]);
            let round = self.store.next_round().unwrap_or(0);
            let holders = crate::rounds::invoice_fetch::Holders::at(&c.epochs, round, c.grace_rounds);
            crate::rounds::invoice_fetch::fetch_invoices(net, &holders, &self.store, &c.scope, &wanted).await;
            if matches!(self.store.invoice(invoice), Ok(None)) {
                self.unknown.remember_not_found(invoice);
            }
        }
        self.rerendered(c, event).unwrap_or_else(|| event.clone())
    }

    fn rerendered(&self, c: &Completion, event: &OutboxEvent) -> Option<OutboxEvent> {
        let invoice = event.invoice_id?;
        self.store.invoice(invoice).ok()??;
        let leaf = self
            .store
            .payments_of_invoice(invoice)
            .ok()?
            .into_iter()
            .map(|r| r.leaf)
            .find(|l| super::payload::webhook_id(l.invoice_id, l.tx_hash, l.log_index) == event.webhook_id())?;
        let record = self.store.settlement(self.schedule.round_of(leaf.block_number)?).ok()??;
        let fresh =
            super::payload::settlement_events(&self.store, &c.ctx, &c.scope.merchants.all(), &[leaf], &record, now_s())
                .ok()?
                .into_iter()
                .find(|e| e.id == event.webhook_id() && e.event_type != "payment.settled")?;
        if !self.store.rerender_event(&event.id, &fresh.event_type, &fresh.body).ok()? {
            return None;
        }
        info!(webhook_id = %event.id, event_type = %fresh.event_type, "bare payment.settled completed with its invoice before delivery");
        Some(OutboxEvent { event_type: fresh.event_type, body: fresh.body, ..event.clone() })
    }
}
