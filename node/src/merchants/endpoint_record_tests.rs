//! How a merchant's signed changes fold into an endpoint record: read by route, ordered by the
//! merchant's signing time, pruned to what still matters, and refused naming why.

use super::*;
use settleproof_merchant_auth::{KeyAlg, MerchantSigner};

fn signer() -> MerchantSigner {
    crate::merchants::test_network::signer("shop", KeyAlg::EdDsa)
}

fn statement(k: &MerchantSigner, method: &str, path: &str, body: &str, nbf: u64) -> SignedStatement {
    let url = format!("http://127.0.0.1:8080{path}");
    SignedStatement { jwt: k.sign_request(method, &url, body.as_bytes(), nbf, 60).expect("sign"), body: body.into() }
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn rotation(n: u8) -> String {
    format!(r#"{{"secret":"whsec_{}"}}"#, base64::engine::general_purpose::STANDARD.encode([n; 32]))
}

fn create(k: &MerchantSigner, nbf: u64) -> (Change, String) {
    let body = format!(r#"{{"url":"https://a.test/h","enabled_events":["test"],"secret":"{SECRET}"}}"#);
    let s = statement(k, "POST", ENDPOINTS_PATH, &body, nbf);
    let c = read(&s).expect("read");
    let id = c.endpoint_id.clone();
    (c, id)
}

fn change(k: &MerchantSigner, method: &str, id: &str, suffix: &str, body: &str, nbf: u64) -> Change {
    read(&statement(k, method, &format!("{ENDPOINTS_PATH}/{id}{suffix}"), body, nbf)).expect("read")
}

#[test]
fn statements_are_read_by_route_and_refused_naming_why() {
    let k = signer();
    let (c, id) = create(&k, 100);
    assert_eq!((c.kind, c.method), (ChangeKind::Create, "POST"));
    assert!(id.starts_with("we_") && id.len() == 27, "{id}");
    let rotated = rotation(1);
    let cases = [
        ("PATCH", format!("{ENDPOINTS_PATH}/{id}"), r#"{"disabled":true}"#, Ok(ChangeKind::Update)),
        ("POST", format!("{ENDPOINTS_PATH}/{id}/rotate-secret"), rotated.as_str(), Ok(ChangeKind::RotateSecret)),
        ("POST", format!("{ENDPOINTS_PATH}/{id}/rotate-secret"), "", Err("body")),
        ("POST", format!("{ENDPOINTS_PATH}/{id}/rotate-secret"), r#"{"secret":"whsec_c2hvcnQ="}"#, Err("secret")),
        ("DELETE", format!("{ENDPOINTS_PATH}/{id}"), "", Ok(ChangeKind::Delete)),
        ("POST", "/v1/api-keys".to_string(), "{}", Err("not a change")),
        ("GET", format!("{ENDPOINTS_PATH}/{id}"), "", Err("not a change")),
        ("PATCH", format!("{ENDPOINTS_PATH}/{id}/x"), "{}", Err("not a change")),
        ("PATCH", format!("{ENDPOINTS_PATH}/{id}"), r#"{"secret":"whsec_x"}"#, Err("body")),
        ("DELETE", format!("{ENDPOINTS_PATH}/{id}"), "{}", Err("body")),
        ("POST", ENDPOINTS_PATH.to_string(), r#"{"url":"https://a.test","enabled_events":["*"]}"#, Err("body")),
    ];
    for (method, path, body, want) in cases {
        let got = read(&statement(&k, method, &path, body, 100));
        match (got, want) {
            (Ok(c), Ok(kind)) => {
                assert_eq!((c.kind, c.endpoint_id.as_str()), (kind, id.as_str()), "{method} {path}")
            }
            (Err(RecordError::NotAnEndpointChange(_)), Err("not a change")) => {}
            (Err(RecordError::Body { field: "body", .. }), Err("body")) => {}
            (Err(RecordError::Body { field: "secret", .. }), Err("secret")) => {}
            (got, want) => panic!("{method} {path} {body}: got {got:?}, want {want:?}"),
        }
    }
    let big = SignedStatement { jwt: "a.b.c".into(), body: "x".repeat(MAX_CHANGE_BODY + 1) };
    assert_eq!(read(&big), Err(RecordError::TooLarge));
    assert_eq!(read(&SignedStatement { jwt: "nope".into(), body: String::new() }), Err(RecordError::Unreadable));
}

#[test]
fn the_latest_signed_change_of_each_field_wins_in_any_order_and_a_deletion_is_final() {
    let k = signer();
    let (c, id) = create(&k, 100);
    let created = fold(&id, std::slice::from_ref(&c)).expect("fold");
    assert_eq!(
        (created.url.as_str(), created.enabled_events.clone(), created.disabled),
        ("https://a.test/h", vec!["test".to_string()], false)
    );
    assert_eq!(created.secret, SECRET, "the secret the merchant signed");
    let pause = change(&k, "PATCH", &id, "", r#"{"disabled":true,"url":"https://b.test/h"}"#, 110);
    let resume = change(&k, "PATCH", &id, "", r#"{"disabled":false}"#, 120);
    let rotate1 = change(&k, "POST", &id, "/rotate-secret", &rotation(1), 130);
    let rotate2 = change(&k, "POST", &id, "/rotate-secret", &rotation(2), 140);
    let all = [c.clone(), pause.clone(), resume.clone(), rotate1.clone(), rotate2.clone()];
    let f = fold(&id, &all).expect("fold");
    assert_eq!((f.url.as_str(), f.disabled), ("https://b.test/h", false));
    assert_eq!(f.secret, secret_of(&rotate2.statement));
    assert_eq!(f.previous_secret, Some((secret_of(&rotate1.statement), 140)));
    assert_eq!(f.latest_s, 140);
    // Any order, repeats included, makes the same record.
    let mut shuffled = vec![rotate2.clone(), resume.clone(), c.clone(), pause.clone(), rotate1.clone(), pause.clone()];
    assert_eq!(fold(&id, &shuffled).expect("fold"), f);
    shuffled.reverse();
    assert_eq!(fold(&id, &shuffled).expect("fold"), f);
    // An old change replayed later changes nothing: the merchant's signing time orders.
    let again = fold(
        &id,
        &[f.statements.iter().map(|s| read(s).expect("read")).collect::<Vec<_>>(), vec![pause.clone()]].concat(),
    )
    .expect("fold");
    assert_eq!(again, f);
    // A deletion is final: a later resume does not bring it back, and only two statements stay.
    let delete = change(&k, "DELETE", &id, "", "", 150);
    let late = change(&k, "PATCH", &id, "", r#"{"disabled":false}"#, 160);
    let gone = fold(&id, &[all.to_vec(), vec![delete.clone(), late]].concat()).expect("fold");
    assert_eq!((gone.deleted_at_s, gone.statements.len()), (Some(150), 2));
}

#[test]
fn a_record_keeps_what_still_matters_only() {
    let k = signer();
    let (c, id) = create(&k, 100);
    let mut changes = vec![c.clone()];
    for t in 0..40 {
        changes.push(change(&k, "PATCH", &id, "", &format!(r#"{{"description":"v{t}"}}"#), 101 + t));
        changes.push(change(&k, "POST", &id, "/rotate-secret", &rotation(t as u8), 101 + t));
    }
    let f = fold(&id, &changes).expect("fold");
    assert_eq!(f.description, "v39");
    assert_eq!(f.statements.len(), 4, "creation, the latest description, the last two rotations");
    let kept: Vec<Change> = f.statements.iter().map(|s| read(s).expect("read")).collect();
    assert_eq!(fold(&id, &kept).expect("fold"), f, "pruning changes nothing");
}

#[test]
fn a_record_without_its_one_creation_or_with_strays_is_refused() {
    let k = signer();
    let (c, id) = create(&k, 100);
    let (other, other_id) = create(&k, 100);
    let pause = change(&k, "PATCH", &id, "", r#"{"disabled":true}"#, 110);
    assert_eq!(fold(&id, std::slice::from_ref(&pause)), Err(RecordError::Creation));
    assert_eq!(fold(&id, &[c.clone(), other.clone()]), Err(RecordError::Creation));
    assert_eq!(fold(&other_id, std::slice::from_ref(&c)), Err(RecordError::Creation));
    let stray = change(&k, "PATCH", &other_id, "", r#"{"disabled":true}"#, 110);
    assert_eq!(fold(&id, &[c.clone(), stray]), Err(RecordError::Stray));
    let early = change(&k, "PATCH", &id, "", r#"{"disabled":true}"#, 90);
    assert_eq!(fold(&id, &[c, early]), Err(RecordError::Creation), "signed before its creation");
}

/// A creation with a `nonce`, sent to two nodes (each request signed for its own host and
/// time), makes one endpoint: the same id from both, the first creation standing and the
/// other kept nowhere. Another merchant's nonce makes another id, and a bad nonce is refused.
#[test]
fn one_creation_with_a_nonce_sent_to_two_nodes_makes_one_endpoint() {
    let k = signer();
    let nonce = format!("0x{}", "ab".repeat(32));
    let body =
        |url: &str| format!(r#"{{"url":"{url}","enabled_events":["test"],"secret":"{SECRET}","nonce":"{nonce}"}}"#);
    let at = |host: &str, nbf: u64, url: &str| {
        let jwt = k
            .sign_request("POST", &format!("http://{host}{ENDPOINTS_PATH}"), body(url).as_bytes(), nbf, 60)
            .expect("sign");
        read(&SignedStatement { jwt, body: body(url) }).expect("read")
    };
    let (first, second) = (at("10.0.0.1:8700", 100, "https://a.test/h"), at("10.0.0.2:8700", 101, "https://b.test/h"));
    assert_eq!(first.endpoint_id, second.endpoint_id);
    let id = first.endpoint_id.clone();
    let f = fold(&id, &[second.clone(), first.clone()]).expect("fold");
    assert_eq!((f.url.as_str(), f.created_at_s, f.statements.len()), ("https://a.test/h", 100, 1));
    assert_eq!(f.statements[0], first.statement);
    let other = crate::merchants::test_network::signer("other-shop", KeyAlg::EdDsa);
    let jwt =
        other.sign_request("POST", &format!("http://h{ENDPOINTS_PATH}"), body("https://a.test/h").as_bytes(), 1, 60);
    let theirs = read(&SignedStatement { jwt: jwt.expect("sign"), body: body("https://a.test/h") }).expect("read");
    assert_ne!(theirs.endpoint_id, id);
    let bad = format!(r#"{{"url":"https://a.test/h","enabled_events":["test"],"secret":"{SECRET}","nonce":"0x12"}}"#);
    let err = read(&statement(&k, "POST", ENDPOINTS_PATH, &bad, 1)).expect_err("bad nonce");
    assert!(matches!(err, RecordError::Body { field: "nonce", .. }), "{err:?}");
}
