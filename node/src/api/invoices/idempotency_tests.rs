//! `Idempotency-Key` on `POST /v1/invoices`, over the router of two nodes with their own
//! stores (no replication between them).

use super::tests::{authorization, state};
use crate::api::router;
use crate::store::{IDEMPOTENCY_TTL_S, temp_store};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn post(st: &crate::api::ApiState, key: Option<&str>, body: Value) -> (StatusCode, bool, Value) {
    let mut req = Request::builder()
        .method("POST")
        .uri("/v1/invoices")
        .header("content-type", "application/json")
        .header("authorization", authorization("POST", "/v1/invoices", body.to_string().as_bytes()));
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp =
        router(st.clone()).oneshot(req.body(Body::from(body.to_string())).expect("request")).await.expect("response");
    let status = resp.status();
    let replayed = resp.headers().get("idempotent-replayed").is_some();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, replayed, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_same_key_and_body_return_the_same_invoice_and_another_body_is_a_409() {
    let (_dir, store) = temp_store();
    let st = state(store);
    let body =
        json!({"amount": "1000", "token": "native", "chain_id": 31337, "expires_in": 600, "metadata": {"order": 1}});
    let (status, replayed, first) = post(&st, Some("order-1"), body.clone()).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false), "{first}");
    let (status, replayed, again) = post(&st, Some("order-1"), body.clone()).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["expires_at"], first["expires_at"], "the first request's expiry");
    let (status, _, conflict) = post(
        &st,
        Some("order-1"),
        json!({"amount": "2000", "token": "native", "chain_id": 31337, "expires_in": 600, "metadata": {"order": 1}}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    assert_eq!(conflict["error"]["field"], "amount", "{conflict}");
    let (_, _, metadata) = post(
        &st,
        Some("order-1"),
        json!({"amount": "1000", "token": "native", "chain_id": 31337, "expires_in": 600, "metadata": {"order": 2}}),
    )
    .await;
    assert_eq!(metadata["error"]["field"], "metadata", "{metadata}");
    // Another key, or none, is another invoice.
    assert_ne!(post(&st, Some("order-2"), body.clone()).await.2["id"], first["id"]);
    let (_, _, a) = post(&st, None, body.clone()).await;
    let (_, _, b) = post(&st, None, body).await;
    assert_ne!(a["id"], b["id"], "without a key every request is a new invoice");
}

#[tokio::test]
async fn a_retry_on_a_node_that_never_heard_of_the_first_builds_the_same_invoice() {
    let (_a, store_a) = temp_store();
    let (_b, store_b) = temp_store();
    let (node_a, node_b) = (state(store_a.clone()), state(store_b));
    let expires_at = crate::time::now_s() + 3600;
    let nonce = alloy::primitives::B256::repeat_byte(7).to_string();
    let body =
        json!({"amount": "1000", "token": "native", "chain_id": 31337, "expires_at": expires_at, "nonce": nonce});
    let (_, _, on_a) = post(&node_a, Some("k-1"), body.clone()).await;
    let (status, _, on_b) = post(&node_b, Some("k-1"), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(on_b["id"], on_a["id"], "the nonce is the merchant's: one invoice, whichever node answers");
    // A third node that received it from node a (without the header-only key, which holds only
    // at a) answers a retry with it too.
    let (_c, store_c) = temp_store();
    let id: alloy::primitives::B256 = on_a["id"].as_str().expect("id").parse().expect("hash");
    let replica = crate::gossip::without_unsigned_key(store_a.invoice(id).expect("read").expect("stored"));
    assert!(replica.idempotency.is_none());
    store_c.put_invoice(&replica).expect("replica");
    let (status, _, on_c) = post(&state(store_c), Some("k-1"), body.clone()).await;
    assert_eq!((status, &on_c["id"]), (StatusCode::CREATED, &on_a["id"]), "{on_c}");
    // Without its nonce, each signed request is an invoice of its own: the key, which the
    // merchant does not sign, cannot make two requests one invoice at a node that never saw the
    // first.
    let bare = json!({"amount": "1000", "token": "native", "chain_id": 31337, "expires_at": expires_at});
    let (_, _, first) = post(&node_a, Some("k-2"), bare.clone()).await;
    let (_, _, other) = post(&node_b, Some("k-2"), bare).await;
    assert_ne!(first["id"], other["id"]);
}

#[tokio::test]
async fn a_malformed_key_is_a_400_naming_the_header() {
    let (_dir, store) = temp_store();
    let st = state(store);
    for bad in ["", &"k".repeat(256), "tab\there"] {
        let (status, _, body) =
            post(&st, Some(bad), json!({"amount": "1", "token": "native", "chain_id": 31337})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert_eq!(body["error"]["field"], "Idempotency-Key");
    }
}

#[test]
fn a_key_names_its_first_invoice_for_a_day() {
    use crate::store::{IdempotencyRecord, Invoice, key_hash};
    use alloy::primitives::{Address, B256, U256};
    let (_dir, store) = temp_store();
    let key = key_hash("shop", "k");
    let record = IdempotencyRecord {
        key_hash: key,
        request: vec![
            ("chain_id".into(), json!(31337)),
            ("amount".into(), json!("5")),
            ("token".into(), json!(Address::ZERO.to_string().to_lowercase())),
            ("expires_at".into(), Value::Null),
            ("expires_in".into(), json!(60)),
            ("metadata".into(), Value::Null),
        ],
    };
    let invoice = |id: u8| Invoice {
        id: B256::repeat_byte(id),
        merchant_id: "shop".into(),
        payout_address: Address::repeat_byte(0x11),
        amount: U256::from(5),
        token: Address::ZERO,
        created_at: 1000,
        expires_at: Some(1060),
        metadata: None,
        created_by: "n".into(),
        nonce: B256::repeat_byte(id),
        idempotency: Some(record.clone()),
        redirect_url: None,
        statement: None,
    };
    // The first invoice stored under a key keeps it while it lives; a second (racing request,
    // or a replica of another node's) does not take it.
    let now = 10_000;
    assert_eq!(store.put_idempotent_invoice(&invoice(1), now).expect("put"), (invoice(1), true));
    let (winner, new) = store.put_idempotent_invoice(&invoice(2), now + 1).expect("put");
    assert_eq!((winner.id, new), (B256::repeat_byte(1), false));
    assert!(store.invoice(B256::repeat_byte(2)).expect("read").is_none(), "the loser is not stored");
    store.put_invoice(&invoice(3)).expect("replica");
    assert_eq!(store.idempotent_invoice("shop", key, now + 2).expect("read").map(|i| i.id), Some(B256::repeat_byte(1)));
    assert!(store.idempotent_invoice("other", key, now).expect("read").is_none(), "keys are per merchant");
    // After a day the key is free again.
    let later = now + IDEMPOTENCY_TTL_S;
    assert!(store.idempotent_invoice("shop", key, later).expect("read").is_none());
    assert_eq!(store.idempotency_key("shop", key, later).expect("read"), crate::store::KeyState::Expired);
    assert_eq!(store.put_idempotent_invoice(&invoice(4), later).expect("put").0.id, B256::repeat_byte(4));
    // A request that rebuilds a stored invoice gets the stored one, not a new one.
    let (again, new) = store.put_idempotent_invoice(&Invoice { created_at: 5, ..invoice(4) }, later + 1).expect("put");
    assert_eq!((again.created_at, new), (1000, false));
}

#[tokio::test]
async fn a_replicated_invoice_with_a_record_that_does_not_match_it_is_refused() {
    use crate::gossip::{InvoiceScope, check_invoice};
    let (_dir, store) = temp_store();
    let st = state(store.clone());
    // The merchant signs its key in the body: it then names the invoice at every node.
    let body =
        json!({"amount": "1000", "token": "native", "chain_id": 31337, "expires_in": 60, "idempotency_key": "k-9"});
    let (_, _, made) = post(&st, Some("k-9"), body).await;
    let id: alloy::primitives::B256 = made["id"].as_str().expect("id").parse().expect("hash");
    let honest = store.invoice(id).expect("read").expect("stored");
    let scope = InvoiceScope {
        merchants: st.merchants.clone(),
        chain_id: 31337,
        payments: alloy::primitives::Address::repeat_byte(0x22),
    };
    assert_eq!(check_invoice(honest.clone(), &scope).expect("taken").idempotency, honest.idempotency);
    // A key sent only as a header is the creating node's word: the invoice is taken, the key not.
    let (_, _, local) = post(&st, Some("k-10"), json!({"amount": "7", "token": "native", "chain_id": 31337})).await;
    let local_id: alloy::primitives::B256 = local["id"].as_str().expect("id").parse().expect("hash");
    let local = store.invoice(local_id).expect("read").expect("stored");
    assert!(local.idempotency.is_some(), "the node that took it keeps the key");
    assert_eq!(check_invoice(local, &scope).expect("taken").idempotency, None);
    // An operator attaches the key to an invoice the merchant signed without it: dropped.
    let (_, _, other) =
        post(&st, None, json!({"amount": "2000", "token": "native", "chain_id": 31337, "expires_in": 60})).await;
    let other_id: alloy::primitives::B256 = other["id"].as_str().expect("id").parse().expect("hash");
    let mut forged = store.invoice(other_id).expect("read").expect("stored");
    forged.idempotency = honest.idempotency.clone();
    assert_eq!(check_invoice(forged, &scope).expect("taken").idempotency, None, "a key squatted is not taken");
    // Or rewrites the request the key was used with.
    let mut rewritten = honest.clone();
    if let Some(r) = rewritten.idempotency.as_mut() {
        r.request[1].1 = json!("2000");
    }
    assert_eq!(
        check_invoice(rewritten, &scope).expect("taken").idempotency,
        honest.idempotency,
        "the record is rebuilt from what the merchant signed"
    );
    // Or drops it: rebuilt too, so a retry under the signed key finds the invoice everywhere.
    let dropped = crate::store::Invoice { idempotency: None, ..honest.clone() };
    assert_eq!(check_invoice(dropped, &scope).expect("taken").idempotency, honest.idempotency);
    // Header and body naming two keys: refused.
    let two = json!({"amount": "1", "token": "native", "chain_id": 31337, "idempotency_key": "a"});
    let (status, _, answer) = post(&st, Some("b"), two).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("idempotency_key")));
}

#[tokio::test]
async fn a_redirect_url_is_part_of_what_a_key_is_bound_to_either_way() {
    let (_dir, store) = temp_store();
    let st = state(store.clone());
    let plain = json!({"amount": "1000", "token": "native", "chain_id": 31337, "expires_in": 600});
    let with = json!({"amount": "1000", "token": "native", "chain_id": 31337, "expires_in": 600, "redirect_url": "https://shop.example/done"});
    let (status, _, first) = post(&st, Some("r-1"), with.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, _, dropped) = post(&st, Some("r-1"), plain.clone()).await;
    assert_eq!((status, dropped["error"]["field"].as_str()), (StatusCode::CONFLICT, Some("redirect_url")), "{dropped}");
    let (_, _, again) = post(&st, Some("r-1"), with).await;
    assert_eq!(again["id"], first["id"]);
    let (_, _, second) = post(&st, Some("r-2"), plain).await;
    let added = json!({"amount": "1000", "token": "native", "chain_id": 31337, "expires_in": 600, "redirect_url": "https://x.example"});
    let (status, _, conflict) = post(&st, Some("r-2"), added).await;
    assert_eq!((status, conflict["error"]["field"].as_str()), (StatusCode::CONFLICT, Some("redirect_url")), "{second}");
    let (status, _, bad) =
        post(&st, None, json!({"amount": "1", "token": "native", "chain_id": 31337, "redirect_url": "ftp://x"})).await;
    assert_eq!((status, bad["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("redirect_url")));
    // A replica whose redirect is no URL a node would make is refused.
    use crate::gossip::{InvoiceScope, check_invoice};
    let id: alloy::primitives::B256 = first["id"].as_str().expect("id").parse().expect("hash");
    let mut inv = store.invoice(id).expect("read").expect("stored");
    inv.idempotency = None;
    inv.redirect_url = Some("javascript:alert(1)".into());
    inv.id = inv.terms(31337, alloy::primitives::Address::repeat_byte(0x22)).id();
    let scope = InvoiceScope {
        merchants: st.merchants.clone(),
        chain_id: 31337,
        payments: alloy::primitives::Address::repeat_byte(0x22),
    };
    assert!(check_invoice(inv, &scope).is_err());
}
