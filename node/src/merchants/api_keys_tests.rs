//! Tests of merchant API keys: grants, revocations and their spread between nodes.

use super::*;
use crate::store::temp_store;
use settleproof_config::{EXAMPLE, NodeConfig};
use settleproof_merchant_auth::{KeyAlg, MerchantSigner};
use std::sync::LazyLock;

/// The demo merchant's root key in these tests.
pub(in crate::merchants) static ROOT: LazyLock<MerchantSigner> =
    LazyLock::new(|| crate::merchants::test_network::signer("demo", KeyAlg::EdDsa));

/// The example configuration's demo merchant, holding [`ROOT`].
pub(in crate::merchants) fn demo_merchant() -> settleproof_config::MerchantConfig {
    let mut m = NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example").merchants.remove(0);
    m.root_key = Some(ROOT.public_key().clone());
    m
}

/// `signer`'s request `method path` with `body`, as a statement.
pub(in crate::merchants) fn statement(
    signer: &MerchantSigner,
    method: &str,
    path: &str,
    body: &str,
) -> SignedStatement {
    let url = format!("http://127.0.0.1:8080{path}");
    let jwt = signer.sign_request(method, &url, body.as_bytes(), now_ms() / 1000, 60).expect("sign");
    SignedStatement { jwt, body: body.into() }
}

/// A grant of a new key named `name` with `scopes`, signed by `by`; with the new key.
pub(in crate::merchants) fn grant(
    by: &MerchantSigner,
    name: &str,
    scopes: &[&str],
) -> (SignedStatement, MerchantSigner) {
    let key = crate::merchants::test_network::signer("demo", KeyAlg::Es256);
    let body = serde_json::json!({"name": name, "scopes": scopes, "public_key": key.public_key()}).to_string();
    (statement(by, "POST", GRANT_PATH, &body), key)
}

pub(in crate::merchants) fn registries() -> (Vec<tempfile::TempDir>, Vec<Registry>) {
    registries_of(vec![demo_merchant()], None)
}

/// A test node's registry settings over `store`, with upgrade day `upgrade_day`.
fn home(store: crate::store::Store, upgrade_day: Option<u64>) -> super::super::Home {
    super::super::Home {
        store,
        epochs: crate::epochs::Epochs::new(PeerId::random(), 1, None),
        chain_id: 0,
        settlement: alloy::primitives::Address::ZERO,
        url_policy: (true, true),
        secret_overlap_ms: 60_000,
        audience_optional_before_s: upgrade_day,
    }
}

/// `registry`'s node restarted with upgrade day `upgrade_day`: the same store.
pub(in crate::merchants) fn reopened(registry: &Registry, upgrade_day: Option<u64>) -> Registry {
    Registry::open(home(registry.store().expect("store").clone(), upgrade_day), &[demo_merchant()]).expect("open")
}

/// Two nodes' registries of `demo`, whose network's upgrade day is `upgrade_day`.
pub(in crate::merchants) fn registries_of(
    demo: Vec<settleproof_config::MerchantConfig>,
    upgrade_day: Option<u64>,
) -> (Vec<tempfile::TempDir>, Vec<Registry>) {
    (0..2)
        .map(|_| {
            let (dir, store) = temp_store();
            (dir, Registry::open(home(store, upgrade_day), &demo).expect("open"))
        })
        .unzip()
}

fn relay(to: &Registry, key: &ApiKey) -> Result<bool, GossipRejection> {
    let data = serde_json::to_vec(&KeyAnnouncement { key: key.clone(), sent_at_ms: 1 }).expect("json");
    to.hear_key(&data, &PeerId::random())
}

#[test]
fn a_key_granted_on_one_node_works_on_another_until_its_revocation_arrives() {
    let (_dirs, nodes) = registries();
    let (g, new) = grant(&ROOT, "ci", &["invoices:read", "invoices:read"]);
    let key = nodes[0].create_key("demo", g).expect("create");
    assert_eq!((key.scopes.clone(), key.id.as_str()), (vec![Scope::InvoicesRead], new.key_id()), "scopes deduplicated");
    assert!(nodes[1].live_key("demo", new.key_id()).is_none());
    assert!(relay(&nodes[1], &key).expect("heard"));
    assert_eq!(nodes[1].live_key("demo", new.key_id()).map(|k| k.id), Some(key.id.clone()));
    let revocation = statement(&ROOT, "DELETE", &format!("{GRANT_PATH}/{}", key.id), "");
    let revoked = nodes[0].revoke_key("demo", &key.id, revocation).expect("revoke");
    assert!(nodes[0].live_key("demo", new.key_id()).is_none());
    assert!(relay(&nodes[1], &revoked).expect("heard"));
    assert!(nodes[1].live_key("demo", new.key_id()).is_none(), "refused once the revocation is heard");
    // The grant announced again later does not revive it.
    assert!(!relay(&nodes[1], &key).expect("heard"));
    assert!(nodes[1].live_key("demo", new.key_id()).is_none());
    assert!(nodes[0].keys_to_rebroadcast().iter().any(|k| k.id == key.id && k.revoked_at_ms.is_some()));
}

#[test]
fn keys_the_merchant_did_not_sign_are_refused_by_every_node() {
    let (_dirs, nodes) = registries();
    let operator = crate::merchants::test_network::signer("demo", KeyAlg::EdDsa);
    // An operator's own grant, in the merchant's name.
    let (forged, minted) = grant(&operator, "backdoor", &["invoices:write"]);
    let err = nodes[0].create_key("demo", forged.clone()).expect_err("not the root key");
    assert!(matches!(err, RegistryError::Invalid { field: "authorization", .. }), "{err}");
    let mut key = key_of_grant("demo", &forged).expect("fields");
    assert!(matches!(relay(&nodes[1], &key), Err(GossipRejection::NotTaken(_))), "an operator's grant");
    // The merchant's grant with widened scopes, another name or another key.
    let (g, _) = grant(&ROOT, "ci", &["invoices:read"]);
    let genuine = key_of_grant("demo", &g).expect("fields");
    for (altered, what) in [
        (ApiKey { scopes: Scope::ALL.to_vec(), ..genuine.clone() }, "widened scopes"),
        (ApiKey { name: "other".into(), ..genuine.clone() }, "another name"),
        (ApiKey { public_key: minted.public_key().clone().into(), ..genuine.clone() }, "another public key"),
        (ApiKey { grant: None, ..genuine.clone() }, "no grant"),
    ] {
        assert!(matches!(relay(&nodes[1], &altered), Err(GossipRejection::NotTaken(_))), "{what}");
    }
    let ghost = ApiKey { merchant_id: "ghost".into(), ..genuine.clone() };
    assert!(!relay(&nodes[1], &ghost).expect("waits"), "a merchant not known here (yet)");
    assert!(nodes[1].keys_of("demo").expect("keys").is_empty());
    // The genuine key is kept; a revocation the merchant did not sign revokes nothing.
    assert!(relay(&nodes[1], &genuine).expect("heard"));
    key = genuine.clone();
    key.revocation = Some(statement(&operator, "DELETE", &format!("{GRANT_PATH}/{}", key.id), ""));
    assert!(matches!(relay(&nodes[1], &key), Err(GossipRejection::NotTaken(_))), "an operator's revocation");
    let claimed = ApiKey { revoked_at_ms: Some(5), ..genuine.clone() };
    assert!(!relay(&nodes[1], &claimed).expect("ignored"), "a revocation time without a statement");
    // The merchant's revocation of another key does not revoke this one.
    key.revocation = Some(statement(&ROOT, "DELETE", &format!("{GRANT_PATH}/mk_0"), ""));
    assert!(matches!(relay(&nodes[1], &key), Err(GossipRejection::NotTaken(_))), "another key's revocation");
    assert!(nodes[1].live_key("demo", &genuine.id).is_some(), "the key still works");
    // And the API refuses a revocation the root key did not sign.
    let err = nodes[1]
        .revoke_key("demo", &genuine.id, statement(&operator, "DELETE", &format!("{GRANT_PATH}/{}", genuine.id), ""))
        .expect_err("operator");
    assert!(matches!(err, RegistryError::Invalid { field: "authorization", .. }), "{err}");
    assert!(nodes[1].live_key("demo", &genuine.id).is_some());
    // Bad fields are named; a grant padded past its bound is refused.
    let (bad, _) = grant(&ROOT, "", &["invoices:read"]);
    assert!(matches!(nodes[0].create_key("demo", bad), Err(RegistryError::Invalid { field: "name", .. })));
    let (g, k) = grant(&ROOT, "ci", &["invoices:read"]);
    let padded = format!("{}{}", g.body, " ".repeat(MAX_GRANT_BODY));
    let padded = statement(&ROOT, "POST", GRANT_PATH, &padded);
    assert!(matches!(nodes[0].create_key("demo", padded), Err(RegistryError::Invalid { field: "body", .. })));
    // Its creation time is the merchant's signing time, not what a relayer says.
    let mut late = key_of_grant("demo", &g).expect("fields");
    assert!(late.created_at_ms <= now_ms() && late.id == k.key_id());
    late.created_at_ms = u64::MAX;
    assert!(matches!(relay(&nodes[1], &late), Err(GossipRejection::NotTaken(_))), "a relayer's creation time");
}

#[test]
fn a_merchant_granting_itself_another_merchants_public_key_takes_nothing_from_it() {
    static SHOP: LazyLock<MerchantSigner> =
        LazyLock::new(|| crate::merchants::test_network::signer("shop-2", KeyAlg::EdDsa));
    let mut shop = demo_merchant();
    shop.id = "shop-2".into();
    shop.root_key = Some(SHOP.public_key().clone());
    let (_dirs, nodes) = registries_of(vec![demo_merchant(), shop], None);
    // One service key pair, granted by both merchants, heard in both orders.
    let (by_demo, service) = grant(&ROOT, "svc", &["invoices:read"]);
    let body = serde_json::json!({"name": "svc", "scopes": ["invoices:write"], "public_key": service.public_key()})
        .to_string();
    let by_shop = statement(&SHOP, "POST", GRANT_PATH, &body);
    let (demo_key, shop_key) =
        (key_of_grant("demo", &by_demo).expect("demo"), key_of_grant("shop-2", &by_shop).expect("shop"));
    assert!(relay(&nodes[0], &demo_key).expect("heard") && relay(&nodes[0], &shop_key).expect("heard"));
    assert!(relay(&nodes[1], &shop_key).expect("heard") && relay(&nodes[1], &demo_key).expect("heard"));
    for n in &nodes {
        assert_eq!(n.live_key("demo", service.key_id()).map(|k| k.scopes), Some(vec![Scope::InvoicesRead]));
        assert_eq!(n.live_key("shop-2", service.key_id()).map(|k| k.scopes), Some(vec![Scope::InvoicesWrite]));
    }
}

#[test]
fn a_key_the_previous_root_key_granted_can_be_granted_again_or_revoked() {
    let (_dirs, nodes) = registries();
    let old_root = crate::merchants::test_network::signer("demo", KeyAlg::EdDsa);
    // Kept before the root key was replaced (as the store held it then).
    let (old_grant, svc) = grant(&old_root, "svc", &["invoices:read"]);
    let dead = key_of_grant("demo", &old_grant).expect("fields");
    nodes[0].store().expect("store").put_api_key(&dead).expect("put");
    assert!(nodes[0].live_key("demo", svc.key_id()).is_none(), "dead under the new root key");
    // Granted again with the current root key: live again, in its place.
    let body =
        serde_json::json!({"name": "svc", "scopes": ["invoices:read"], "public_key": svc.public_key()}).to_string();
    let again = nodes[0].create_key("demo", statement(&ROOT, "POST", GRANT_PATH, &body)).expect("granted again");
    assert_eq!(again.id, svc.key_id());
    assert!(nodes[0].live_key("demo", svc.key_id()).is_some());
    // A node holding the dead key takes the new grant from a peer as well.
    nodes[1].store().expect("store").put_api_key(&dead).expect("put");
    assert_eq!(relay(&nodes[1], &again), Ok(true), "granted again, heard");
    assert!(nodes[1].live_key("demo", svc.key_id()).is_some());
    assert_eq!(relay(&nodes[1], &dead), Ok(false), "the dead grant does not come back");
    assert!(nodes[1].live_key("demo", svc.key_id()).is_some());
    // Another dead key is revoked with the current root key.
    let (old_grant, other) = grant(&old_root, "other", &["invoices:read"]);
    nodes[0].store().expect("store").put_api_key(&key_of_grant("demo", &old_grant).expect("fields")).expect("put");
    let revocation = statement(&ROOT, "DELETE", &format!("{GRANT_PATH}/{}", other.key_id()), "");
    let revoked = nodes[0].revoke_key("demo", other.key_id(), revocation).expect("revoked");
    assert!(revoked.revoked_at_ms.is_some());
}

/// A key granted before `aud` was required, held by two nodes: a new node would not take
/// its grant now, but its revocation (signed for the network) reaches the nodes holding it
/// and the key is dead there too. An announcement that alters the held key is not taken.
#[test]
fn a_revocation_spreads_to_nodes_holding_a_grant_a_later_rule_refuses() {
    let (_dirs, nodes) = registries();
    let unnamed = MerchantSigner::from_pem("demo", ROOT.private_key_pem()).expect("pem");
    let (old_grant, legacy) = grant(&unnamed, "legacy", &["invoices:read"]);
    let key = key_of_grant("demo", &old_grant).expect("fields");
    nodes[0].store().expect("store").put_api_key(&key).expect("put");
    assert!(matches!(relay(&nodes[1], &key), Err(GossipRejection::NotInRegistry(_))), "a grant without aud");
    nodes[1].store().expect("store").put_api_key(&key).expect("put");
    assert!(nodes[1].live_key("demo", legacy.key_id()).is_some());
    let widened = ApiKey { scopes: vec![Scope::InvoicesWrite], ..key.clone() };
    let revocation = statement(&ROOT, "DELETE", &format!("{GRANT_PATH}/{}", legacy.key_id()), "");
    let widened = ApiKey { revocation: Some(revocation.clone()), ..widened };
    assert_eq!(relay(&nodes[1], &widened), Ok(true), "the revocation is taken...");
    let held = nodes[1].keys_of("demo").expect("keys");
    assert_eq!(held[0].scopes, key.scopes, "...onto the key held, not the announced one");
    let revoked = nodes[0].revoke_key("demo", legacy.key_id(), revocation).expect("revoked");
    assert_eq!(relay(&nodes[1], &revoked), Ok(false), "a repeat");
    assert!(nodes[1].live_key("demo", legacy.key_id()).is_none(), "dead at the other node too");
    let forged = statement(&unnamed, "DELETE", &format!("{GRANT_PATH}/{}", legacy.key_id()), "");
    let (_, other_dirs) = (0, registries());
    let fresh = &other_dirs.1[0];
    fresh.store().expect("store").put_api_key(&key).expect("put");
    let unnamed_revocation = ApiKey { revocation: Some(forged), ..key.clone() };
    assert!(relay(fresh, &unnamed_revocation).is_err(), "a revocation without aud is not taken");
    assert!(fresh.live_key("demo", legacy.key_id()).is_some());
}

/// A revocation dated further ahead of a node's clock than a request may be is not taken from a
/// peer (yet): no node holds a revocation before its signing time less the allowed skew, which
/// the vouch cutoff relies on. One within the skew is taken.
#[test]
fn a_revocation_dated_ahead_of_the_clock_is_not_taken_yet() {
    let (_dirs, nodes) = registries();
    let (g, _) = grant(&ROOT, "ci", &["invoices:read"]);
    let key = nodes[0].create_key("demo", g).expect("create");
    assert!(relay(&nodes[1], &key).expect("heard"));
    let path = format!("{GRANT_PATH}/{}", key.id);
    let dated = |ahead_s: u64| {
        let jwt = ROOT
            .sign_request("DELETE", &format!("http://127.0.0.1:8080{path}"), b"", now_ms() / 1000 + ahead_s, 60)
            .expect("sign");
        ApiKey { revocation: Some(SignedStatement { jwt, body: String::new() }), ..key.clone() }
    };
    let ahead = settleproof_merchant_auth::MAX_SKEW_S + 5;
    assert!(matches!(relay(&nodes[1], &dated(ahead)), Err(GossipRejection::NotTaken(_))), "dated {ahead} s ahead");
    assert!(nodes[1].live_key("demo", &key.id).is_some());
    assert_eq!(relay(&nodes[1], &dated(10)), Ok(true), "within the skew");
    assert!(nodes[1].live_key("demo", &key.id).is_none());
}

/// On a network upgrading to `aud`, a grant signed without it before the upgrade day is taken
/// until the day; from the day on it is taken from no one (whoever saw it elsewhere presents it
/// too late), though it was signed before the day; a node that took it keeps it until the
/// merchant's revocation, signed before the day too, arrives.
#[test]
fn an_unnamed_grant_signed_before_the_upgrade_day_is_taken_only_until_that_day() {
    let now = now_ms() / 1000;
    let unnamed = MerchantSigner::from_pem("demo", ROOT.private_key_pem()).expect("pem");
    let body = |k: &MerchantSigner| {
        serde_json::json!({"name": "legacy", "scopes": ["invoices:read"], "public_key": k.public_key()}).to_string()
    };
    // The merchant sends each copy to one node, signed for its host.
    let signed_early = |k: &MerchantSigner, host: &str| {
        let jwt = unnamed
            .sign_request("POST", &format!("http://{host}{GRANT_PATH}"), body(k).as_bytes(), now - 600, 60)
            .expect("sign");
        key_of_grant("demo", &SignedStatement { jwt, body: body(k) }).expect("fields")
    };
    let legacy = crate::merchants::test_network::signer("demo", KeyAlg::Es256);
    let (key, other_copy) = (signed_early(&legacy, "127.0.0.1:8080"), signed_early(&legacy, "127.0.0.1:9090"));
    assert_ne!(key.grant, other_copy.grant);
    let (_before_dirs, before) = registries_of(vec![demo_merchant()], Some(now + 300));
    assert_eq!(relay(&before[0], &key), Ok(true), "before the day");
    assert!(before[0].live_key("demo", legacy.key_id()).is_some());
    let (_after_dirs, after) = registries_of(vec![demo_merchant()], Some(now - 60));
    let refused = relay(&after[0], &key);
    assert!(matches!(refused, Err(GossipRejection::NotInRegistry(_))), "after the day, from a peer, unchecked");
    let err = after[0].create_key("demo", key.grant.clone().expect("grant")).expect_err("after the day, at the API");
    assert!(matches!(err, RegistryError::Invalid { field: "authorization", .. }), "{err}");
    assert!(after[0].live_key("demo", legacy.key_id()).is_none());
    // Held from before the day, it stays live...
    after[1].store().expect("store").put_api_key(&key).expect("put");
    assert!(after[1].live_key("demo", legacy.key_id()).is_some());
    // ...until its revocation arrives, which, signed without `aud` before the day, is still
    // taken after it (refusing it would keep the key alive here), whichever copy of the grant
    // it comes with; one signed after the day is not, nor one signed before the grant (a
    // revocation of an earlier grant of the key pair, here or elsewhere).
    let revoked_at = |nbf: u64, by: &MerchantSigner, with: &ApiKey| {
        let path = format!("{GRANT_PATH}/{}", with.id);
        let jwt = by.sign_request("DELETE", &format!("http://127.0.0.1:8080{path}"), b"", nbf, 60).expect("sign");
        ApiKey { revocation: Some(SignedStatement { jwt, body: String::new() }), ..with.clone() }
    };
    let refused = |k: &ApiKey| matches!(relay(&after[1], k), Err(GossipRejection::NotTaken(_)));
    assert!(refused(&revoked_at(now - 30, &unnamed, &other_copy)), "signed after the day");
    assert!(refused(&revoked_at(now - 700, &unnamed, &other_copy)), "signed before the grant");
    assert!(after[1].live_key("demo", legacy.key_id()).is_some());
    assert_eq!(relay(&after[1], &revoked_at(now - 120, &unnamed, &other_copy)), Ok(true), "signed before the day");
    assert!(after[1].live_key("demo", legacy.key_id()).is_none());
    // A key granted with `aud` is not revoked by a revocation without it after the day (one
    // signed elsewhere for the same key pair, say).
    let named = crate::merchants::test_network::signer("demo", KeyAlg::Es256);
    let jwt = ROOT
        .sign_request("POST", &format!("http://127.0.0.1:8080{GRANT_PATH}"), body(&named).as_bytes(), now - 600, 60)
        .expect("sign");
    let named_key = key_of_grant("demo", &SignedStatement { jwt, body: body(&named) }).expect("fields");
    after[1].store().expect("store").put_api_key(&named_key).expect("put");
    assert!(refused(&revoked_at(now - 100, &unnamed, &named_key)), "an unnamed revocation of a named grant");
    assert!(after[1].live_key("demo", named.key_id()).is_some());
}

#[test]
fn creating_and_revoking_keys_in_a_loop_cannot_grow_what_is_announced_again() {
    let (_dirs, nodes) = registries();
    for i in 0..MAX_KEYS_PER_MERCHANT {
        let (g, _) = grant(&ROOT, &format!("k{i}"), &["invoices:read"]);
        let key = nodes[0].create_key("demo", g).expect("create");
        let revocation = statement(&ROOT, "DELETE", &format!("{GRANT_PATH}/{}", key.id), "");
        nodes[0].revoke_key("demo", &key.id, revocation).expect("revoke");
    }
    let (g, _) = grant(&ROOT, "one more", &["invoices:read"]);
    assert!(matches!(nodes[0].create_key("demo", g), Err(RegistryError::Conflict(_))), "revoked keys count for a week");
    assert!(nodes[0].keys_to_rebroadcast().len() <= MAX_REBROADCAST);
}
