//! The webhook event bodies as types: what [`super::payload`] builds and sends, and what
//! `docs/webhooks.json` documents (generated from these types).

use crate::invoice_view::{InvoiceView, SettlementView};
use alloy::primitives::{Address, B256};
use serde::Serialize;
use utoipa::ToSchema;

/// A payment of an invoice was settled on chain: the invoice's own event (`invoice.paid`,
/// `invoice.underpaid`, `invoice.overpaid`, `invoice.paid_late`) with its current state, or
/// `payment.settled` when the node does not hold the invoice (then `invoice` is only its id).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SettlementEvent {
    /// Event type.
    #[serde(rename = "type")]
    #[schema(example = "invoice.paid")]
    pub event_type: String,
    /// When the event was made, RFC 3339.
    pub timestamp: String,
    /// The event.
    pub data: SettlementEventData,
}

/// The body of a settlement event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SettlementEventData {
    /// The `webhook-id`: the same on every node and attempt.
    pub webhook_id: String,
    /// Position among the invoice's events, from 1 (its payments in chain order).
    pub sequence: u64,
    /// Hash of this event's immutable content.
    #[schema(value_type = String)]
    pub event_hash: B256,
    /// `event_hash` of the invoice's previous event; null for the first.
    #[schema(value_type = Option<String>)]
    pub previous_event_hash: Option<B256>,
    /// The invoice ([`InvoiceView`], or only `{"id"}` for `payment.settled`).
    #[schema(value_type = Object)]
    pub invoice: EventInvoice,
    /// The settled payment.
    pub payment: EventPayment,
    /// Its settlement.
    pub settlement: SettlementView,
    /// The receipt: Merkle proof and aggregate signature (docs/merchants.md, "Receipts").
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<settleproof_consensus::Receipt>,
}

/// The invoice of a settlement event: its view when this node knows it, else its id. Written
/// as the object itself (no tag), straight from the view.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EventInvoice {
    /// The invoice as `GET /v1/invoices/{id}` shows it.
    View(Box<InvoiceView>),
    /// Only its id (`payment.settled`: the invoice is not known here).
    Ref(InvoiceRef),
}

/// A payment as a settlement event shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventPayment {
    /// Chain id.
    pub chain_id: u64,
    /// Transaction hash.
    #[schema(value_type = String)]
    pub tx_hash: B256,
    /// Log index.
    pub log_index: u64,
    /// Block number.
    pub block_number: u64,
    /// Payer.
    #[schema(value_type = String)]
    pub payer: Address,
    /// `native` or the token address.
    pub token: String,
    /// Amount, decimal base units.
    pub amount: String,
    /// Round that settled it.
    pub round: u64,
    /// Its settlement.
    pub settlement: SettlementView,
}

/// An invoice named by its id only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoiceRef {
    /// Invoice id.
    pub id: String,
}

/// `payment.reverted`: a payment the merchant was told about left the chain in a reorg.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevertedEvent {
    /// `payment.reverted`.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// When, RFC 3339.
    pub timestamp: String,
    /// The event.
    pub data: RevertedEventData,
}

/// The body of `payment.reverted`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevertedEventData {
    /// This event's `webhook-id`.
    pub webhook_id: String,
    /// The `webhook-id` of the event it takes back.
    pub reverted_webhook_id: String,
    /// The invoice.
    pub invoice: InvoiceRef,
    /// The payment that left the chain.
    pub payment: RevertedPayment,
}

/// A payment that left the chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevertedPayment {
    /// Chain id.
    pub chain_id: u64,
    /// Transaction hash.
    #[schema(value_type = String)]
    pub tx_hash: B256,
    /// Log index.
    pub log_index: u64,
    /// Block it was in.
    pub block_number: u64,
    /// Amount, decimal base units.
    pub amount: String,
}

/// `invoice.expired`: the expiry passed without full payment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExpiredEvent {
    /// `invoice.expired`.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// When, RFC 3339.
    pub timestamp: String,
    /// The event.
    pub data: ExpiredEventData,
}

/// The body of `invoice.expired`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExpiredEventData {
    /// This event's `webhook-id`.
    pub webhook_id: String,
    /// The invoice.
    pub invoice: InvoiceView,
}

/// `test`: requested with `POST /v1/webhooks/test`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestEvent {
    /// `test`.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// When, RFC 3339.
    pub timestamp: String,
    /// The event.
    pub data: TestEventData,
}

/// The body of `test`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestEventData {
    /// This event's `webhook-id`.
    pub webhook_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// A human-readable note.
    pub message: String,
}
