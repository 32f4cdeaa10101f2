//! The signing guard: an operator never signs two different batches for one round.
//!
//! The rule is pure; the node persists the signed root per round and asks [`decide_signing`]
//! inside the same store transaction that records a new signature, so the rule holds across
//! restarts (as slashing protection does for Ethereum validators).

use alloy_primitives::B256;

/// What the signer may do with a proposed batch root for a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignDecision {
    /// Nothing signed yet for this round: sign and record.
    Sign,
    /// The same root was signed before: re-use that signature.
    AlreadySigned,
    /// A different root was signed before: refuse.
    Refuse {
        /// Root signed earlier for the round.
        signed: B256,
    },
}

/// Decides whether `proposed` may be signed given the root signed earlier for the round.
pub fn decide_signing(previous: Option<B256>, proposed: B256) -> SignDecision {
    match previous {
        None => SignDecision::Sign,
        Some(p) if p == proposed => SignDecision::AlreadySigned,
        Some(signed) => SignDecision::Refuse { signed },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let a = B256::repeat_byte(1);
        let b = B256::repeat_byte(2);
        assert_eq!(decide_signing(None, a), SignDecision::Sign);
        assert_eq!(decide_signing(Some(a), a), SignDecision::AlreadySigned);
        assert_eq!(decide_signing(Some(a), b), SignDecision::Refuse { signed: a });
    }
}
