//! Which network a merchant's JWT must name (`aud`) to be taken here, and the upgrade day of a
//! network whose merchants signed without it (`network.audience_optional_before_s`): until the
//! day, what was signed before it without `aud` is taken; from then on nothing without it is,
//! except what only takes authority away from a record itself made without it (a key's
//! revocation, an endpoint's deletion), so that no node keeps alive what the merchant revoked.
//! What a node took before the day it keeps; it is never checked again.

use super::Registry;
use settleproof_merchant_auth::{Audience, SignedStatement, header_free_claims};

/// Whether `statement`'s JWT names no network (signed by a client from before `aud`).
pub(super) fn unnamed(statement: &SignedStatement) -> bool {
    header_free_claims(&statement.jwt).is_some_and(|c| c.aud.is_none())
}

impl Registry {
    /// This network's `aud`: a merchant's request or record naming another network is refused.
    pub fn audience(&self) -> &str {
        &self.0.audience
    }

    /// `network.audience_optional_before_s`, the upgrade day.
    pub fn audience_optional_before_s(&self) -> Option<u64> {
        self.0.audience_optional_before_s
    }

    /// What a merchant's JWT must name to be taken here now: this network, or, until the
    /// upgrade day `network.audience_optional_before_s` has passed (by this node's clock), none
    /// when signed before it. From that day on a record without `aud` is taken from no one, however
    /// early it was signed: whoever saw it elsewhere (another network's operators, when the
    /// merchant used the same key there) cannot present it here later. What this node took before
    /// the day stays held; it is never checked again.
    pub fn audience_rule(&self) -> Audience<'_> {
        Audience::upgrading(&self.0.audience, self.0.audience_optional_before_s, crate::time::now_s())
    }

    /// What a merchant's JWT must name to be taken here when it only takes authority away (a
    /// key's revocation, an endpoint's deletion) from a record itself made without `aud`: this
    /// network, or, when signed before the upgrade day, none, also after the day. Refusing such
    /// a record would keep alive, at a node that missed it, what the merchant revoked before the
    /// day; taking it can only revoke or delete a record as unnamed as itself (the same key pair
    /// or endpoint id made without `aud` elsewhere was as replayable before the day).
    pub fn undo_audience_rule(&self) -> Audience<'_> {
        Audience { network: &self.0.audience, unnamed_before_s: self.0.audience_optional_before_s }
    }

    /// Whether a JWT without `aud` like `statement`'s is taken here now (its signing time
    /// before the upgrade day, and the day not come).
    pub(super) fn takes_unnamed(&self, statement: &SignedStatement) -> bool {
        let nbf = header_free_claims(&statement.jwt).map(|c| c.nbf);
        self.audience_rule().unnamed_before_s.is_some_and(|day| nbf.is_some_and(|nbf| nbf < day))
    }
}
