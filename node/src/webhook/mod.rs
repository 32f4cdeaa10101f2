//! Merchant webhooks: Standard Webhooks signatures, event payloads and the delivery worker.

pub mod delivery;
pub mod payload;
pub mod signature;
