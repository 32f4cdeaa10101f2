//! The safety switch of one chain: when an invariant is violated (or an operator asks), the
//! chain's pipeline stops settling: it neither signs nor submits, but keeps following the
//! chain, serving reads and delivering webhooks of what is already settled, until an operator
//! resumes it. The node's other chains go on. The state is persisted in the chain's store, so a
//! restart does not resume by accident.

use crate::store::{Store, StoreError};
use crate::time::now_ms;
use std::sync::{Arc, RwLock};
use tracing::{error, info};

pub use crate::store::HaltReason;

/// Shared halt state of one chain's pipeline.
#[derive(Debug, Clone)]
pub struct Halt {
    store: Store,
    chain_id: u64,
    current: Arc<RwLock<Option<HaltReason>>>,
}

impl Halt {
    /// Loads the persisted state of chain `chain_id`'s switch (one per chain, in its store).
    pub fn load(store: Store, chain_id: u64) -> Result<Self, StoreError> {
        let current = store.halt_reason()?;
        let halt = Self { store, chain_id, current: Arc::new(RwLock::new(current)) };
        halt.gauge(halt.is_halted());
        Ok(halt)
    }

    /// The chain whose settlement this switch stops.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn gauge(&self, halted: bool) {
        metrics::gauge!("settlement_halted", "chain_id" => self.chain_id.to_string()).set(if halted {
            1.0
        } else {
            0.0
        });
    }

    /// Whether settlement is halted.
    pub fn is_halted(&self) -> bool {
        self.current.read().map(|c| c.is_some()).unwrap_or(true)
    }

    /// The reason, when halted.
    pub fn reason(&self) -> Option<HaltReason> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// Records a violated invariant and halts (the first reason is kept).
    pub fn violation(&self, invariant: &str, detail: impl Into<String>) {
        let detail = detail.into();
        metrics::counter!("invariant_violations_total", "chain_id" => self.chain_id.to_string(), "invariant" => invariant.to_string()).increment(1);
        error!(severity = "CRITICAL", chain_id = self.chain_id, invariant, detail = %detail, "invariant violated: settlement on this chain halted until an operator resumes it");
        self.halt(HaltReason { invariant: invariant.to_string(), detail, at_ms: now_ms() });
    }

    /// Halts (an operator's request or a violation).
    pub fn halt(&self, reason: HaltReason) {
        if let Ok(mut c) = self.current.write()
            && c.is_none()
        {
            if let Err(e) = self.store.set_halt_reason(Some(&reason)) {
                error!(error = %e, "cannot persist the halt");
            }
            *c = Some(reason);
            self.gauge(true);
        }
    }

    /// Resumes settling.
    pub fn resume(&self) -> Result<Option<HaltReason>, StoreError> {
        self.store.set_halt_reason(None)?;
        let previous = self.current.write().map(|mut c| c.take()).unwrap_or(None);
        self.gauge(false);
        info!(chain_id = self.chain_id, previous = ?previous, "settlement resumed by an operator");
        Ok(previous)
    }
}
