//! Merchant webhooks: Standard Webhooks signatures, event payloads, the retry policy, the
//! endpoints deliveries go to, payments of invoices no operator knows, and the delivery worker.

pub mod completion;
pub mod delivery;
pub mod events;
mod in_flight;
pub mod payload;
pub mod retry;
pub mod signature;
pub mod targets;
pub mod unknown_invoices;
