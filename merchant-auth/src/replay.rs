//! The nonces of the signed requests a node accepted, kept until their tokens expire so that
//! no request is accepted twice at one node. Bounded per key and in all: when full of live
//! nonces it refuses new requests (they cannot be told apart from replays) rather than forget
//! one, and one key filling its share leaves the others theirs. Held in memory: a request
//! signed before the node started is refused, since the nonces seen before are gone.

use crate::request::{AuthError, MAX_SKEW_S, Verified};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Seen nonces (a hash of key id and nonce), with their expiry and per-key counts.
#[derive(Debug)]
pub struct NonceCache {
    seen: HashSet<[u8; 16]>,
    by_expiry: BTreeMap<u64, Vec<([u8; 16], String)>>,
    per_key: HashMap<String, usize>,
    capacity: usize,
    per_key_cap: usize,
    started_s: u64,
}

fn slot(v: &Verified) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(v.key_id.as_bytes());
    h.update([0u8]);
    h.update(v.nonce.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

impl NonceCache {
    /// A cache of at most `capacity` live nonces, `per_key_cap` of one key, for a node that
    /// started at `started_s`.
    pub fn new(capacity: usize, per_key_cap: usize, started_s: u64) -> Self {
        NonceCache {
            seen: HashSet::new(),
            by_expiry: BTreeMap::new(),
            per_key: HashMap::new(),
            capacity,
            per_key_cap,
            started_s,
        }
    }

    /// Refuses `v` when its nonce was seen, or it was signed before this node started.
    pub fn check(&mut self, v: &Verified, now_s: u64) -> Result<(), AuthError> {
        self.prune(now_s);
        if v.not_before_s < self.started_s {
            return Err(AuthError::BeforeStart);
        }
        if self.seen.contains(&slot(v)) {
            return Err(AuthError::Replayed);
        }
        Ok(())
    }

    /// Records `v`'s nonce at `now_s`; refuses it as [`NonceCache::check`] does, or when its
    /// key's share or the whole cache is full.
    pub fn admit(&mut self, v: &Verified, now_s: u64) -> Result<(), AuthError> {
        self.check(v, now_s)?;
        let held = self.per_key.get(&v.key_id).copied().unwrap_or(0);
        if self.seen.len() >= self.capacity || held >= self.per_key_cap {
            return Err(AuthError::ReplayCacheFull);
        }
        let key = slot(v);
        self.seen.insert(key);
        *self.per_key.entry(v.key_id.clone()).or_default() += 1;
        // Kept until no node clock within the skew could still accept the token.
        self.by_expiry.entry(v.expires_s.saturating_add(MAX_SKEW_S)).or_default().push((key, v.key_id.clone()));
        Ok(())
    }

    /// Live nonces held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn prune(&mut self, now_s: u64) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if *entry.key() >= now_s {
                break;
            }
            for (k, kid) in entry.remove() {
                self.seen.remove(&k);
                if let Some(n) = self.per_key.get_mut(&kid) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.per_key.remove(&kid);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kid: &str, nonce: &str, exp: u64) -> Verified {
        Verified {
            merchant_id: "m".into(),
            key_id: kid.into(),
            nonce: nonce.into(),
            not_before_s: exp.saturating_sub(60),
            expires_s: exp,
            req_hash: None,
        }
    }

    #[test]
    fn a_nonce_is_accepted_once_until_its_token_can_no_longer_be_valid() {
        let mut c = NonceCache::new(10, 10, 0);
        assert_eq!(c.admit(&v("k", "aaaa", 100), 50), Ok(()));
        assert_eq!(c.check(&v("k", "aaaa", 100), 60), Err(AuthError::Replayed));
        assert_eq!(c.admit(&v("k", "aaaa", 100), 60), Err(AuthError::Replayed));
        // The same nonce under another key is another request.
        assert_eq!(c.admit(&v("k2", "aaaa", 100), 60), Ok(()));
        // Still refused within the skew after expiry, when another clock could accept it.
        assert_eq!(c.admit(&v("k", "aaaa", 100), 100 + MAX_SKEW_S), Err(AuthError::Replayed));
        // Past that the token itself is refused as expired, and the nonce is forgotten.
        assert_eq!(c.admit(&v("k", "bbbb", 500), 100 + MAX_SKEW_S + 1), Ok(()));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets_and_one_key_cannot_fill_it_for_others() {
        let mut c = NonceCache::new(3, 2, 0);
        assert_eq!(c.admit(&v("a", "a1", 100), 0), Ok(()));
        assert_eq!(c.admit(&v("a", "a2", 100), 0), Ok(()));
        assert_eq!(c.admit(&v("a", "a3", 100), 0), Err(AuthError::ReplayCacheFull), "key a's share");
        assert_eq!(c.admit(&v("b", "b1", 100), 0), Ok(()), "b keeps its own");
        assert_eq!(c.admit(&v("c", "c1", 100), 0), Err(AuthError::ReplayCacheFull), "the whole cache");
        assert_eq!(c.admit(&v("a", "a1", 100), 0), Err(AuthError::Replayed));
        assert_eq!(c.admit(&v("a", "a3", 200), 131), Ok(()), "room again once expired");
    }

    #[test]
    fn a_request_signed_before_the_node_started_is_refused() {
        let mut c = NonceCache::new(10, 10, 1000);
        let mut old = v("k", "aaaa", 1050);
        old.not_before_s = 999;
        assert_eq!(c.admit(&old, 1001), Err(AuthError::BeforeStart));
        old.not_before_s = 1000;
        assert_eq!(c.admit(&old, 1001), Ok(()));
    }
}
