//! A merchant's endpoints over two nodes' registries: created, changed, rotated and deleted
//! with the merchant's signature, and every change an operator makes itself refused.

use super::super::api_keys::tests::{ROOT, demo_merchant, grant, registries, registries_of, reopened};
use super::endpoint_record::ENDPOINTS_PATH;
use super::*;
use settleproof_merchant_auth::{KeyAlg, MerchantSigner};

/// `signer`'s request `method path` with `body`, signed at `nbf` (seconds from now).
fn signed(signer: &MerchantSigner, method: &str, path: &str, body: &str, ahead_s: u64) -> SignedStatement {
    let url = format!("http://127.0.0.1:8080{path}");
    let nbf = crate::time::now_s() + ahead_s;
    SignedStatement {
        jwt: signer.sign_request(method, &url, body.as_bytes(), nbf, 60).expect("sign"),
        body: body.into(),
    }
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ROTATED: &str = r#"{"secret":"whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#;

fn create(on: &Registry, by: &MerchantSigner, url: &str, events: &str) -> WebhookEndpoint {
    let body = format!(r#"{{"url":"{url}","enabled_events":{events},"secret":"{SECRET}"}}"#);
    on.create_endpoint("demo", signed(by, "POST", ENDPOINTS_PATH, &body, 0)).expect("create")
}

fn relay(to: &Registry, e: &WebhookEndpoint) -> Result<bool, GossipRejection> {
    let data = serde_json::to_vec(&EndpointAnnouncement::of(e)).expect("json");
    to.hear_endpoint(&data, &PeerId::random())
}

#[test]
fn an_endpoint_changed_on_one_node_is_routed_on_another_and_a_deletion_is_final() {
    let (_dirs, nodes) = registries();
    let e = create(&nodes[0], &ROOT, "https://example.test/hook", r#"["invoice.paid"]"#);
    assert!(e.secret.expose().starts_with("whsec_"));
    assert_eq!(nodes[0].routes().targets("demo", "invoice.paid"), vec![e.id.clone()]);
    assert!(nodes[1].routes().targets("demo", "invoice.paid").is_empty());
    assert!(relay(&nodes[1], &e).expect("heard"));
    let heard = nodes[1].endpoint(&e.id).expect("read").expect("kept");
    assert_eq!(
        (heard.secret.expose(), heard.url.as_str()),
        (e.secret.expose(), e.url.as_str()),
        "the same record, recomputed"
    );
    assert_eq!(nodes[1].routes().targets("demo", "invoice.paid"), vec![e.id.clone()]);
    assert!(!relay(&nodes[1], &e).expect("repeat"), "a repeat changes nothing");
    let path = format!("{ENDPOINTS_PATH}/{}", e.id);
    let edited = nodes[0]
        .change_endpoint("demo", &e.id, signed(&ROOT, "PATCH", &path, r#"{"enabled_events":["test"]}"#, 1))
        .expect("edit");
    assert!(relay(&nodes[1], &edited).expect("heard"));
    assert!(!relay(&nodes[1], &e).expect("heard"), "the older record changes nothing");
    assert!(nodes[1].routes().targets("demo", "invoice.paid").is_empty());
    // Signed in the same second as the latest change: refused when it would apply before
    // it; signed again, it soon sorts after.
    let mut refused = 0;
    loop {
        let same = signed(&ROOT, "PATCH", &path, r#"{"disabled":true}"#, 1);
        match nodes[0].change_endpoint("demo", &e.id, same) {
            Err(RegistryError::Conflict(why)) => {
                refused += 1;
                assert!(refused < 64, "a new signature sorts after the latest change half the time: {why}");
            }
            Ok(e) => break assert!(e.disabled),
            Err(e) => panic!("{e}"),
        }
    }
    let rotate = signed(&ROOT, "POST", &format!("{path}/rotate-secret"), ROTATED, 2);
    let rotated = nodes[0].change_endpoint("demo", &e.id, rotate).expect("rotate");
    assert_eq!(Registry::endpoint_secrets(&rotated), vec![rotated.secret.clone(), e.secret.clone()]);
    let deleted = nodes[0].change_endpoint("demo", &e.id, signed(&ROOT, "DELETE", &path, "", 3)).expect("delete");
    assert!(relay(&nodes[1], &deleted).expect("heard"));
    assert!(!relay(&nodes[1], &rotated).expect("heard"), "a deletion is final");
    assert!(nodes[1].routes().targets("demo", "test").is_empty());
    assert!(nodes[1].endpoints_of("demo").expect("list").is_empty());
    let late = signed(&ROOT, "PATCH", &path, r#"{"disabled":false}"#, 4);
    let err = nodes[0].change_endpoint("demo", &e.id, late).expect_err("deleted");
    assert!(matches!(err, RegistryError::UnknownMerchant(_)), "{err}");
}

#[test]
fn no_operator_can_create_redirect_rekey_pause_or_delete_a_merchants_endpoint() {
    let (_dirs, nodes) = registries();
    let operator = crate::merchants::test_network::signer("demo", KeyAlg::EdDsa);
    // An endpoint in the merchant's name, signed by an operator's own key.
    let body =
        r#"{"url":"https://evil.test/hook","enabled_events":["*"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#;
    let err = nodes[0].create_endpoint("demo", signed(&operator, "POST", ENDPOINTS_PATH, body, 0)).expect_err("forged");
    assert!(matches!(err, RegistryError::Invalid { field: "authorization", .. }), "{err}");
    let forged = signed(&operator, "POST", ENDPOINTS_PATH, body, 0);
    let id = endpoint_record::endpoint_id_of(&forged);
    let a = EndpointAnnouncement {
        merchant_id: "demo".into(),
        endpoint_id: id.clone(),
        statements: vec![forged],
        sent_at_ms: 1,
    };
    let heard = nodes[1].hear_endpoint(&serde_json::to_vec(&a).expect("json"), &PeerId::random());
    assert!(matches!(heard, Err(GossipRejection::NotTaken(_))), "{heard:?}");
    assert!(nodes[1].endpoint(&id).expect("read").is_none());

    // The merchant's endpoint: every change an operator makes itself is refused.
    let e = create(&nodes[0], &ROOT, "https://example.test/hook", r#"["*"]"#);
    assert!(relay(&nodes[1], &e).expect("heard"));
    let path = format!("{ENDPOINTS_PATH}/{}", e.id);
    for (method, suffix, body) in [
        ("PATCH", "", r#"{"url":"https://evil.test/hook"}"#),
        ("PATCH", "", r#"{"disabled":true}"#),
        ("POST", "/rotate-secret", ROTATED),
        ("DELETE", "", ""),
    ] {
        let mut with = e.statements.clone();
        with.push(signed(&operator, method, &format!("{path}{suffix}"), body, 5));
        let a = EndpointAnnouncement {
            merchant_id: "demo".into(),
            endpoint_id: e.id.clone(),
            statements: with,
            sent_at_ms: 1,
        };
        let heard = nodes[1].hear_endpoint(&serde_json::to_vec(&a).expect("json"), &PeerId::random());
        assert!(matches!(heard, Err(GossipRejection::NotTaken(_))), "{method}{suffix}: {heard:?}");
    }
    // A record whose fields were altered: nothing but the statements is read.
    let altered = WebhookEndpoint {
        url: "https://evil.test/hook".into(),
        secret: Secret::new("whsec_operatorchosen0000000000000"),
        deleted_at_ms: Some(1),
        ..e.clone()
    };
    assert!(!relay(&nodes[1], &altered).expect("nothing new"));
    let kept = nodes[1].endpoint(&e.id).expect("read").expect("kept");
    assert_eq!(
        (kept.url.as_str(), kept.secret.expose(), kept.deleted_at_ms),
        (e.url.as_str(), e.secret.expose(), None)
    );
    // A statement the merchant signed for another endpoint, or no statements at all.
    let other = create(&nodes[0], &ROOT, "https://example.test/other", r#"["*"]"#);
    let mixed = EndpointAnnouncement {
        merchant_id: "demo".into(),
        endpoint_id: e.id.clone(),
        statements: other.statements.clone(),
        sent_at_ms: 1,
    };
    assert!(matches!(
        nodes[1].hear_endpoint(&serde_json::to_vec(&mixed).expect("json"), &PeerId::random()),
        Err(GossipRejection::Malformed(_))
    ));
    let bare = EndpointAnnouncement { statements: Vec::new(), ..mixed };
    assert!(matches!(
        nodes[1].hear_endpoint(&serde_json::to_vec(&bare).expect("json"), &PeerId::random()),
        Err(GossipRejection::Malformed(_))
    ));
    assert_eq!(nodes[1].routes().targets("demo", "test"), vec![e.id.clone()]);
}

#[test]
fn a_key_with_webhooks_manage_changes_endpoints_while_live_and_no_other_key_does() {
    let (_dirs, nodes) = registries();
    let (g, ops) = grant(&ROOT, "ops", &["webhooks:manage"]);
    let ops_key = nodes[0].create_key("demo", g).expect("grant");
    let (g, reader) = grant(&ROOT, "reader", &["invoices:read"]);
    nodes[0].create_key("demo", g).expect("grant");
    let e = create(&nodes[0], &ops, "https://example.test/hook", r#"["*"]"#);
    let body = r#"{"url":"https://example.test/reader","enabled_events":["*"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#;
    let err = nodes[0].create_endpoint("demo", signed(&reader, "POST", ENDPOINTS_PATH, body, 0)).expect_err("scope");
    assert!(matches!(err, RegistryError::Invalid { field: "authorization", .. }), "{err}");
    // Node 1 has not heard the key's grant yet: the endpoint waits (not blamed), then is taken.
    assert!(matches!(relay(&nodes[1], &e), Err(GossipRejection::NotTaken(_))));
    let key_data =
        serde_json::to_vec(&super::super::KeyAnnouncement { key: ops_key.clone(), sent_at_ms: 1 }).expect("json");
    nodes[1].hear_key(&key_data, &PeerId::random()).expect("key heard");
    assert!(relay(&nodes[1], &e).expect("heard"));
    // Revoked: what it signed before stands, nothing it signs after does.
    let revocation =
        super::super::api_keys::tests::statement(&ROOT, "DELETE", &format!("/v1/api-keys/{}", ops_key.id), "");
    nodes[0].revoke_key("demo", &ops_key.id, revocation).expect("revoke");
    let path = format!("{ENDPOINTS_PATH}/{}", e.id);
    let err = nodes[0].change_endpoint("demo", &e.id, signed(&ops, "DELETE", &path, "", 10)).expect_err("revoked");
    assert!(matches!(err, RegistryError::Invalid { field: "authorization", .. }), "{err}");
    assert_eq!(nodes[0].endpoints_of("demo").expect("list").len(), 1);
}

#[test]
fn bad_fields_are_refused_naming_them_and_live_endpoints_are_capped() {
    let (_dirs, nodes) = registries();
    for (fields, field) in [
        (r#""url":"ftp://example.test","enabled_events":["*"]"#, "url"),
        (r#""url":"https://example.test","enabled_events":["invoice.refunded"]"#, "enabled_events"),
        (r#""url":"https://example.test","enabled_events":[]"#, "enabled_events"),
        (r#""url":"https://example.test","enabled_events":["*"],"description":"\u0007""#, "description"),
        (r#""url":"https://example.test","enabled_events":["*"],"color":"red""#, "body"),
    ] {
        let body = format!(r#"{{{fields},"secret":"{SECRET}"}}"#);
        let err = nodes[0].create_endpoint("demo", signed(&ROOT, "POST", ENDPOINTS_PATH, &body, 0));
        assert!(matches!(&err, Err(RegistryError::Invalid { field: f, .. }) if *f == field), "{field}: {err:?}");
    }
    for secret in ["whsec_mine", "whsec_c2hvcnQ=", ""] {
        let body = format!(r#"{{"url":"https://example.test","enabled_events":["*"],"secret":"{secret}"}}"#);
        let err = nodes[0].create_endpoint("demo", signed(&ROOT, "POST", ENDPOINTS_PATH, &body, 0));
        assert!(matches!(&err, Err(RegistryError::Invalid { field: "secret", .. })), "{secret}: {err:?}");
    }
    let first = create(&nodes[0], &ROOT, "https://example.test/h", r#"["*"]"#);
    for _ in 1..MAX_ENDPOINTS_PER_MERCHANT {
        create(&nodes[0], &ROOT, "https://example.test/h", r#"["*"]"#);
    }
    let body = format!(r#"{{"url":"https://example.test/h","enabled_events":["*"],"secret":"{SECRET}"}}"#);
    let err = nodes[0].create_endpoint("demo", signed(&ROOT, "POST", ENDPOINTS_PATH, &body, 0));
    assert!(matches!(&err, Err(RegistryError::Conflict(_))), "{err:?}");
    // A deleted endpoint frees its place.
    let path = format!("{ENDPOINTS_PATH}/{}", first.id);
    nodes[0].change_endpoint("demo", &first.id, signed(&ROOT, "DELETE", &path, "", 1)).expect("delete");
    create(&nodes[0], &ROOT, "https://example.test/h", r#"["*"]"#);
}

#[test]
fn two_nodes_holding_the_same_records_have_one_digest_whatever_the_order_they_took_them_in() {
    let (_dirs, nodes) = registries();
    let empty = nodes[0].digest();
    assert_eq!(empty, nodes[1].digest(), "nothing held: one digest");
    let (g, _) = grant(&ROOT, "ops", &["webhooks:manage"]);
    let key = nodes[0].create_key("demo", g).expect("grant");
    let e = create(&nodes[0], &ROOT, "https://example.test/hook", r#"["*"]"#);
    let path = format!("{ENDPOINTS_PATH}/{}", e.id);
    let edited = nodes[0]
        .change_endpoint("demo", &e.id, signed(&ROOT, "PATCH", &path, r#"{"disabled":true}"#, 1))
        .expect("edit");
    assert_ne!(nodes[0].digest(), nodes[1].digest(), "node 1 lacks the key and the endpoint");
    // Node 1 takes them in another order: the endpoint's last state first, then the key.
    assert!(relay(&nodes[1], &edited).expect("heard"));
    assert_ne!(nodes[0].digest(), nodes[1].digest(), "node 1 still lacks the key");
    let key_data =
        serde_json::to_vec(&super::super::KeyAnnouncement { key: key.clone(), sent_at_ms: 1 }).expect("json");
    nodes[1].hear_key(&key_data, &PeerId::random()).expect("key heard");
    assert_eq!(nodes[0].digest(), nodes[1].digest(), "the same records: one digest");
    // A revocation changes it, and only where it is held.
    let revocation = super::super::api_keys::tests::statement(&ROOT, "DELETE", &format!("/v1/api-keys/{}", key.id), "");
    nodes[0].revoke_key("demo", &key.id, revocation).expect("revoke");
    assert_ne!(nodes[0].digest(), nodes[1].digest(), "the revocation is not at node 1 yet");
    let revoked = nodes[0].keys_of("demo").expect("keys").into_iter().find(|k| k.id == key.id).expect("held");
    let data = serde_json::to_vec(&super::super::KeyAnnouncement { key: revoked, sent_at_ms: 1 }).expect("json");
    nodes[1].hear_key(&data, &PeerId::random()).expect("revocation heard");
    assert_eq!(nodes[0].digest(), nodes[1].digest(), "revoked at both, at different times: one digest");
}

/// The same change sent to two nodes (each request signed for its node): two deletions leave
/// both nodes with one record, the earlier deletion's, once they hear each other, and two
/// rotations to one secret keep the replaced secret's overlap.
#[test]
fn the_same_change_sent_to_two_nodes_leaves_them_one_record() {
    let (_dirs, nodes) = registries();
    let e = create(&nodes[0], &ROOT, "https://example.test/hook", r#"["invoice.paid"]"#);
    assert!(relay(&nodes[1], &e).expect("heard"));
    let path = format!("{ENDPOINTS_PATH}/{}", e.id);
    let rotate = |at| signed(&ROOT, "POST", &format!("{path}/rotate-secret"), ROTATED, at);
    let first = nodes[0].change_endpoint("demo", &e.id, rotate(1)).expect("rotate");
    let second = nodes[1].change_endpoint("demo", &e.id, rotate(2)).expect("rotate again");
    assert!(relay(&nodes[1], &first).expect("the earlier rotation is taken"));
    assert!(!relay(&nodes[0], &second).expect("the repeat changes nothing"));
    for n in &nodes {
        let held = n.endpoint(&e.id).expect("read").expect("kept");
        assert_eq!(Registry::endpoint_secrets(&held), vec![first.secret.clone(), e.secret.clone()], "overlap kept");
    }
    let (a, b) = (
        nodes[0].change_endpoint("demo", &e.id, signed(&ROOT, "DELETE", &path, "", 3)).expect("delete"),
        nodes[1].change_endpoint("demo", &e.id, signed(&ROOT, "DELETE", &path, "", 4)).expect("delete"),
    );
    assert_ne!(a.statements, b.statements);
    assert!(relay(&nodes[1], &a).expect("the earlier deletion is taken"));
    assert!(!relay(&nodes[0], &b).expect("the later one changes nothing"));
    let held: Vec<_> = nodes.iter().map(|n| n.endpoint(&e.id).expect("read").expect("kept").statements).collect();
    assert_eq!(held[0], held[1]);
    assert_eq!(held[0], a.statements);
}

/// On a network upgrading to `aud`: an endpoint the merchant made without it before the upgrade
/// day and a node held then. After the day, the merchant's deletion signed without `aud` before
/// the day still reaches that node (refusing it would keep delivering to what the merchant
/// deleted), while a redirect signed the same way does not.
#[test]
fn after_the_upgrade_day_an_unnamed_deletion_signed_before_it_is_taken_and_a_redirect_is_not() {
    let now = crate::time::now_s();
    let unnamed = MerchantSigner::from_pem("demo", ROOT.private_key_pem()).expect("pem");
    let at = |method: &str, path: &str, body: &str, nbf: u64| SignedStatement {
        jwt: unnamed
            .sign_request(method, &format!("http://127.0.0.1:8080{path}"), body.as_bytes(), nbf, 60)
            .expect("sign"),
        body: body.into(),
    };
    let (_dirs, before) = registries_of(vec![demo_merchant()], Some(now + 300));
    let (_more_dirs, also_before) = registries_of(vec![demo_merchant()], Some(now + 300));
    let body =
        format!(r#"{{"url":"https://example.test/hook","enabled_events":["invoice.paid"],"secret":"{SECRET}"}}"#);
    let e = before[0].create_endpoint("demo", at("POST", ENDPOINTS_PATH, &body, now - 600)).expect("before the day");
    let after = reopened(&before[0], Some(now - 60));
    assert_eq!(after.routes().targets("demo", "invoice.paid"), vec![e.id.clone()], "held from before the day");
    let path = format!("{ENDPOINTS_PATH}/{}", e.id);
    for other in [&before[1], &also_before[0]] {
        assert!(relay(other, &e).expect("heard before the day"));
    }
    let redirect = at("PATCH", &path, r#"{"url":"https://elsewhere.test/hook"}"#, now - 500);
    let redirected = before[1].change_endpoint("demo", &e.id, redirect).expect("redirect before the day");
    assert!(matches!(relay(&after, &redirected), Err(GossipRejection::NotTaken(_))), "a redirect after the day");
    assert_eq!(after.endpoint(&e.id).expect("read").expect("held").url, "https://example.test/hook");
    // The merchant's later change, signed with `aud`, comes with the redirect this node
    // refuses: it is taken all the same (the announcement, with a refusal in it, is not relayed).
    let later = signed(&ROOT, "PATCH", &path, r#"{"enabled_events":["test"]}"#, 0);
    let changed = before[1].change_endpoint("demo", &e.id, later).expect("a later change");
    assert!(matches!(relay(&after, &changed), Err(GossipRejection::NotTaken(_))), "one change refused");
    let held = after.endpoint(&e.id).expect("read").expect("held");
    assert_eq!(
        (held.url.as_str(), held.enabled_events.clone()),
        ("https://example.test/hook", vec!["test".to_string()])
    );
    let deletion = at("DELETE", &path, "", now - 400);
    let deleted = also_before[0].change_endpoint("demo", &e.id, deletion).expect("delete before the day");
    assert_eq!(relay(&after, &deleted), Ok(true), "a deletion signed before the day");
    assert!(after.endpoints_of("demo").expect("list").is_empty());
}

/// A record whose later change a node refuses (a deletion by a key revoked since) is not made
/// there from its earlier changes alone: no deleted endpoint comes back to life.
#[test]
fn an_endpoint_is_not_made_without_a_later_change_this_node_refuses() {
    let (_dirs, nodes) = registries();
    let (g, manager) = grant(&ROOT, "hooks", &["webhooks:manage"]);
    let key = nodes[0].create_key("demo", g).expect("grant");
    let e = create(&nodes[0], &ROOT, "https://example.test/hook", r#"["invoice.paid"]"#);
    let path = format!("{ENDPOINTS_PATH}/{}", e.id);
    let deleted = nodes[0].change_endpoint("demo", &e.id, signed(&manager, "DELETE", &path, "", 1)).expect("delete");
    // Node 1 hears of the key only with its revocation, then of the endpoint.
    let revocation = super::super::api_keys::tests::statement(&ROOT, "DELETE", &format!("/v1/api-keys/{}", key.id), "");
    let revoked = nodes[0].revoke_key("demo", &key.id, revocation).expect("revoke");
    let data =
        serde_json::to_vec(&super::super::api_keys::KeyAnnouncement { key: revoked, sent_at_ms: 1 }).expect("json");
    nodes[1].hear_key(&data, &PeerId::random()).expect("heard");
    assert!(matches!(relay(&nodes[1], &deleted), Err(GossipRejection::NotTaken(_))));
    assert!(nodes[1].endpoint(&e.id).expect("read").is_none(), "not made from its creation alone");
    assert!(nodes[1].routes().targets("demo", "invoice.paid").is_empty());
}

/// A thief of a key the merchant revoked signs a deletion dated before the revocation: no node
/// takes it (a revoked key's statements are not taken, whatever time they name), and the
/// endpoint stays as the merchant left it.
#[test]
fn a_deletion_by_a_revoked_key_dated_before_its_revocation_is_not_taken() {
    let (_dirs, nodes) = registries();
    let now = crate::time::now_s();
    let at = |by: &MerchantSigner, method: &str, path: &str, body: &str, nbf: u64| SignedStatement {
        jwt: by.sign_request(method, &format!("http://127.0.0.1:8080{path}"), body.as_bytes(), nbf, 60).expect("sign"),
        body: body.into(),
    };
    let stolen = crate::merchants::test_network::signer("demo", KeyAlg::Es256);
    let grant_body =
        serde_json::json!({"name": "hooks", "scopes": ["webhooks:manage"], "public_key": stolen.public_key()})
            .to_string();
    let key = nodes[0].create_key("demo", at(&ROOT, "POST", "/v1/api-keys", &grant_body, now - 300)).expect("grant");
    let creation =
        format!(r#"{{"url":"https://example.test/hook","enabled_events":["invoice.paid"],"secret":"{SECRET}"}}"#);
    let e = nodes[0].create_endpoint("demo", at(&ROOT, "POST", ENDPOINTS_PATH, &creation, now - 200)).expect("create");
    let revocation = super::super::api_keys::tests::statement(&ROOT, "DELETE", &format!("/v1/api-keys/{}", key.id), "");
    nodes[0].revoke_key("demo", &key.id, revocation).expect("revoke");
    let path = format!("{ENDPOINTS_PATH}/{}", e.id);
    let backdated = WebhookEndpoint {
        statements: vec![e.statements[0].clone(), at(&stolen, "DELETE", &path, "", now - 100)],
        ..e.clone()
    };
    assert!(matches!(relay(&nodes[0], &backdated), Err(GossipRejection::NotTaken(_))), "the thief's deletion");
    assert_eq!(nodes[0].routes().targets("demo", "invoice.paid"), vec![e.id.clone()], "the endpoint stays live");
}
