//! Why a chain's settlement is halted, as the store keeps it (`state` table, key `halt`). The
//! switch that acts on it is [`crate::halt::Halt`]; the type lives here so the store depends on
//! nothing above it.

use serde::{Deserialize, Serialize};

/// Why settlement is halted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltReason {
    /// The invariant violated, or `operator` for a manual halt.
    pub invariant: String,
    /// What was found.
    pub detail: String,
    /// When, unix ms.
    pub at_ms: u64,
}
