//! Webhook events of a settlement: one per settled payment of a configured merchant.

use super::events::{
    EventInvoice, EventPayment, ExpiredEvent, ExpiredEventData, InvoiceRef, RevertedEvent, RevertedEventData,
    RevertedPayment, SettlementEvent, SettlementEventData,
};
use crate::invoice_view::{SettlementView, invoice_view_of, token_label};
use crate::receipt::{self, ReceiptContext};
use crate::store::{OutboxEvent, SettlementRecord, Store, StoreError};
use crate::time::rfc3339;
use alloy::primitives::{B256, keccak256};
use settleproof_config::MerchantConfig;
use settleproof_consensus::PaymentLeaf;

pub use crate::store::webhook_id;

/// Hash of an event's immutable content, chained into the next event of the same invoice. It
/// is derived from chain data only, so every node computes the same chain of events.
pub fn event_hash(p: &PaymentLeaf) -> B256 {
    let id = webhook_id(p.invoice_id, p.tx_hash, p.log_index);
    keccak256(
        [
            id.as_bytes(),
            p.invoice_id.as_slice(),
            p.tx_hash.as_slice(),
            &p.log_index.to_be_bytes(),
            &p.amount.to_be_bytes::<32>(),
        ]
        .concat(),
    )
}

/// Builds the events announcing that `payments` were settled by `settlement`. Each carries the
/// invoice's event sequence number (its payments in chain order, from 1), the previous event's
/// hash, and the payment's receipt.
pub fn settlement_events(
    store: &Store,
    ctx: &ReceiptContext,
    merchants: &[MerchantConfig],
    payments: &[PaymentLeaf],
    settlement: &SettlementRecord,
    now_s: u64,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let settled = SettlementView::from(settlement);
    let receipts = receipt::RoundReceipts::new(store, ctx, settlement)?;
    let mut events = Vec::new();
    for p in payments {
        // The invoice names its merchant (whose payout address may have changed since);
        // a payment of an invoice this node does not know is matched by the address it paid.
        let stored = store.invoice(p.invoice_id)?;
        let by_invoice = stored.as_ref().and_then(|inv| merchants.iter().find(|m| m.id == inv.merchant_id));
        let Some(merchant) = by_invoice.or_else(|| merchants.iter().find(|m| m.payout_address == p.merchant)) else {
            continue;
        };
        let stored = stored.filter(|inv| inv.merchant_id == merchant.id);
        let terms = stored.as_ref().map(|inv| inv.terms(ctx.chain_id, ctx.payments));
        // The invoice's payments, read once for its view and for the event's place in its
        // sequence.
        let records = store.payments_of_invoice(p.invoice_id)?;
        let (event_type, invoice) = match stored {
            Some(inv) => {
                let mut view = invoice_view_of(store, &ctx.schedule, ctx.chain_id, &inv, &records, now_s)?;
                for pv in view.payments.iter_mut().filter(|pv| pv.round == Some(settlement.round)) {
                    pv.settlement = Some(settled.clone());
                }
                view.settled = view.payments.iter().all(|pv| pv.settlement.is_some());
                (view.status.event_type(), EventInvoice::View(Box::new(view)))
            }
            _ => ("payment.settled", EventInvoice::Ref(InvoiceRef { id: p.invoice_id.to_string() })),
        };
        let mut earlier: Vec<PaymentLeaf> = records
            .into_iter()
            .map(|r| r.leaf)
            .filter(|l| l.merchant == p.merchant && l.order_key() < p.order_key())
            .collect();
        earlier.sort_by_key(PaymentLeaf::order_key);
        let sequence = earlier.len() as u64 + 1;
        let previous = earlier.last().map(event_hash);
        let id = webhook_id(p.invoice_id, p.tx_hash, p.log_index);
        let receipt = receipts.as_ref().and_then(|r| r.receipt(p, terms));
        let body = SettlementEvent {
            event_type: event_type.to_string(),
            timestamp: rfc3339(now_s),
            data: SettlementEventData {
                webhook_id: id.clone(),
                sequence,
                event_hash: event_hash(p),
                previous_event_hash: previous,
                invoice,
                payment: event_payment(p, settlement.round, &settled),
                settlement: settled.clone(),
                receipt,
            },
        };
        events.push(OutboxEvent {
            id,
            merchant_id: merchant.id.clone(),
            event_type: event_type.to_string(),
            body: serde_json::to_string(&body).unwrap_or_default(),
            attempts: 0,
            last_outcome: None,
            delivered_at_ms: None,
            invoice_id: Some(p.invoice_id),
            sequence,
            ..OutboxEvent::default()
        });
    }
    Ok(events)
}

/// The event telling a merchant that a payment it was told about left the chain in a reorg.
/// Its id is derived from the original event's, so every node makes the same one.
pub fn reverted_event(original: &OutboxEvent, p: &PaymentLeaf, now_s: u64) -> OutboxEvent {
    let id = format!("msg_rev_{}", hex::encode(&keccak256(original.id.as_bytes())[..12]));
    let body = RevertedEvent {
        event_type: "payment.reverted",
        timestamp: rfc3339(now_s),
        data: RevertedEventData {
            webhook_id: id.clone(),
            reverted_webhook_id: original.id.clone(),
            invoice: InvoiceRef { id: p.invoice_id.to_string() },
            payment: RevertedPayment {
                chain_id: p.chain_id,
                tx_hash: p.tx_hash,
                log_index: p.log_index,
                block_number: p.block_number,
                amount: p.amount.to_string(),
            },
        },
    };
    OutboxEvent {
        id,
        merchant_id: original.merchant_id.clone(),
        event_type: "payment.reverted".into(),
        body: serde_json::to_string(&body).unwrap_or_default(),
        invoice_id: Some(p.invoice_id),
        sequence: original.sequence,
        ..OutboxEvent::default()
    }
}

/// The event telling a merchant an invoice expired without full payment (not part of the
/// invoice's payment sequence). Its id is derived from the invoice, so every node makes the
/// same one.
pub fn expired_event(invoice: &crate::invoice_view::InvoiceView, now_s: u64) -> OutboxEvent {
    let id = format!("msg_exp_{}", hex::encode(&keccak256([invoice.id.as_bytes(), b"expired"].concat())[..12]));
    let body = ExpiredEvent {
        event_type: "invoice.expired",
        timestamp: rfc3339(now_s),
        data: ExpiredEventData { webhook_id: id.clone(), invoice: invoice.clone() },
    };
    OutboxEvent {
        id,
        merchant_id: invoice.merchant_id.clone(),
        event_type: "invoice.expired".into(),
        body: serde_json::to_string(&body).unwrap_or_default(),
        ..OutboxEvent::default()
    }
}

fn event_payment(p: &PaymentLeaf, round: u64, settlement: &SettlementView) -> EventPayment {
    EventPayment {
        chain_id: p.chain_id,
        tx_hash: p.tx_hash,
        log_index: p.log_index,
        block_number: p.block_number,
        payer: p.payer,
        token: token_label(p.token),
        amount: p.amount.to_string(),
        round,
        settlement: settlement.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_id_is_stable_and_distinct() {
        let a = webhook_id(B256::repeat_byte(1), B256::repeat_byte(2), 0);
        assert_eq!(a, webhook_id(B256::repeat_byte(1), B256::repeat_byte(2), 0));
        assert_ne!(a, webhook_id(B256::repeat_byte(1), B256::repeat_byte(2), 1));
        assert!(a.starts_with("msg_") && a.len() == 36);
    }
}
