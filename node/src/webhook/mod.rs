//! Merchant webhooks: Standard Webhooks signatures, event payloads, the retry policy, the
//! endpoints deliveries go to and the delivery worker.

pub mod delivery;
pub mod events;
mod in_flight;
pub mod payload;
pub mod retry;
pub mod signature;
pub mod targets;
