//! The nonces of the signed requests a node accepted, kept until their tokens expire so that
//! no request is accepted twice at one node. Bounded: when full of live nonces it refuses new
//! requests (they cannot be told apart from replays) rather than forget one.

use crate::request::{AuthError, MAX_SKEW_S, Verified};
use std::collections::{BTreeMap, HashSet};

/// Seen nonces by key, with their expiry.
#[derive(Debug)]
pub struct NonceCache {
    seen: HashSet<(String, String)>,
    by_expiry: BTreeMap<u64, Vec<(String, String)>>,
    capacity: usize,
}

impl NonceCache {
    /// A cache holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> Self {
        NonceCache { seen: HashSet::new(), by_expiry: BTreeMap::new(), capacity }
    }

    /// Records `v`'s nonce at `now_s`; refuses it when it was seen before.
    pub fn admit(&mut self, v: &Verified, now_s: u64) -> Result<(), AuthError> {
        self.prune(now_s);
        let key = (v.key_id.clone(), v.nonce.clone());
        if self.seen.contains(&key) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::ReplayCacheFull);
        }
        self.seen.insert(key.clone());
        // Kept until no node clock within the skew could still accept the token.
        self.by_expiry.entry(v.expires_s + MAX_SKEW_S).or_default().push(key);
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
            for k in entry.remove() {
                self.seen.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(nonce: &str, exp: u64) -> Verified {
        Verified { merchant_id: "m".into(), key_id: "mk_1".into(), nonce: nonce.into(), expires_s: exp }
    }

    #[test]
    fn a_nonce_is_accepted_once_until_its_token_can_no_longer_be_valid() {
        let mut c = NonceCache::new(10);
        assert_eq!(c.admit(&v("aaaa", 100), 50), Ok(()));
        assert_eq!(c.admit(&v("aaaa", 100), 60), Err(AuthError::Replayed));
        // Still refused within the skew after expiry, when another clock could accept it.
        assert_eq!(c.admit(&v("aaaa", 100), 100 + MAX_SKEW_S), Err(AuthError::Replayed));
        // Past that the token itself is refused as expired, and the nonce is forgotten.
        assert_eq!(c.admit(&v("bbbb", 500), 100 + MAX_SKEW_S + 1), Ok(()));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let mut c = NonceCache::new(2);
        assert_eq!(c.admit(&v("a1", 100), 0), Ok(()));
        assert_eq!(c.admit(&v("a2", 100), 0), Ok(()));
        assert_eq!(c.admit(&v("a3", 100), 0), Err(AuthError::ReplayCacheFull));
        assert_eq!(c.admit(&v("a1", 100), 0), Err(AuthError::Replayed));
        assert_eq!(c.admit(&v("a3", 200), 131), Ok(()));
    }
}
