//! The delivery state of each merchant endpoint (`merchant_endpoints`: the key of
//! [`super::OutboxEvent::endpoint_key`] → failing since, disabled and why), which the delivery
//! workers read before each attempt and change only when an answer changes it.

use super::{ENDPOINTS, Store, StoreError, decode, encode};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// A merchant endpoint's delivery state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointState {
    /// Deliveries paused (410 Gone, or failing for too long).
    pub disabled: bool,
    /// Why.
    pub disabled_reason: Option<String>,
    /// Since when, unix ms.
    pub disabled_at_ms: Option<u64>,
    /// Since when every attempt failed (cleared by a success), unix ms.
    pub failing_since_ms: Option<u64>,
}

impl Store {
    /// The delivery state of a merchant's endpoint.
    pub fn endpoint(&self, merchant: &str) -> Result<EndpointState, StoreError> {
        let tx = self.read()?;
        let t = tx.open_table(ENDPOINTS)?;
        Ok(t.get(merchant)?.map(|v| decode("merchant_endpoints", v.value())).transpose()?.unwrap_or_default())
    }

    /// Changes a merchant endpoint's state in one transaction (concurrent attempts to one
    /// merchant cannot undo each other's change); returns the state before and after. A change
    /// that changes nothing (a delivery to a healthy endpoint, the usual case) is decided on a
    /// read and costs no write transaction.
    pub fn update_endpoint(
        &self,
        merchant: &str,
        change: impl Fn(&mut EndpointState),
    ) -> Result<(EndpointState, EndpointState), StoreError> {
        let seen = self.endpoint(merchant)?;
        let mut unchanged = seen.clone();
        change(&mut unchanged);
        if unchanged == seen {
            return Ok((seen, unchanged));
        }
        let tx = self.db().begin_write()?;
        let (before, after) = {
            let mut t = tx.open_table(ENDPOINTS)?;
            let before: EndpointState =
                t.get(merchant)?.map(|v| decode("merchant_endpoints", v.value())).transpose()?.unwrap_or_default();
            let mut after = before.clone();
            change(&mut after);
            if after != before {
                t.insert(merchant, encode(&after).as_slice())?;
            }
            (before, after)
        };
        tx.commit()?;
        Ok((before, after))
    }

    /// Stores a merchant endpoint's state.
    pub fn set_endpoint(&self, merchant: &str, state: &EndpointState) -> Result<(), StoreError> {
        let tx = self.db().begin_write()?;
        tx.open_table(ENDPOINTS)?.insert(merchant, encode(state).as_slice())?;
        tx.commit()?;
        Ok(())
    }
}
