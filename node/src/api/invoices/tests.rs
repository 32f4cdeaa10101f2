use crate::api::{ApiState, ChainState, Chains, admin_router, router};
use crate::store::{Store, temp_store};
use alloy::primitives::Address;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use settleproof_config::{MerchantConfig, Secret};
use settleproof_consensus::RoundSchedule;
use std::sync::Arc;
use tower::ServiceExt;

/// In [`call`], stands for a request signed by the merchant's root key.
pub(super) const SIGNED: &str = "(signed by the shop's root key)";

/// The merchant's root key, whose private half only these tests hold.
static SHOP: std::sync::LazyLock<settleproof_merchant_auth::MerchantSigner> = std::sync::LazyLock::new(|| {
    crate::merchants::test_network::signer("shop", settleproof_merchant_auth::KeyAlg::EdDsa)
});

/// `Authorization` of a request `method uri` with `body`, signed by the shop's root key for
/// this node (`127.0.0.1:8080`).
pub(super) fn authorization(method: &str, uri: &str, body: &[u8]) -> String {
    let url = format!("http://127.0.0.1:8080{uri}");
    format!("Bearer {}", SHOP.sign_request(method, &url, body, crate::time::now_s(), 60).expect("sign"))
}

fn chain(chain_id: u64, store: Store) -> ChainState {
    let payments = Address::repeat_byte(0x22);
    ChainState::offline(
        chain_id,
        store,
        RoundSchedule { start_block: 0, length: 5 },
        payments,
        Address::repeat_byte(0x44),
    )
}

pub(super) fn state(store: Store) -> ApiState {
    state_of(Chains::new(chain(31337, store), Vec::new()))
}

fn state_of(chains: Chains) -> ApiState {
    ApiState {
        chains: Arc::new(chains),
        merchants: crate::merchants::Registry::fixed(vec![MerchantConfig {
            id: "shop".into(),
            payout_address: Address::repeat_byte(0x11),
            webhook_url: "http://127.0.0.1:1/webhooks".into(),
            webhook_secret: Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            root_key: Some(SHOP.public_key().clone()),
            api_token_sha256: None,
        }]),
        node_name: "node-0".into(),
        net: None,
        keys_dir: None,
        admin_token: None,
        limiter: crate::api::RateLimiter::new(1000.0, 1000.0),
        metrics: None,
        answers: Default::default(),
        limits: Default::default(),
        throttle: Default::default(),
        public_url: "http://127.0.0.1:8080".into(),
        tokens: Default::default(),
        signed: crate::api::auth::SignedRequests::new(None, ([127, 0, 0, 1], 8080).into(), 100_000),
    }
}

async fn call(
    state: &ApiState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    match token {
        Some(SIGNED) => req = req.header("authorization", authorization(method, uri, body.as_bytes())),
        Some(t) => req = req.header("authorization", format!("Bearer {t}")),
        None => {}
    }
    let body = Body::from(body);
    let resp = router(state.clone()).oneshot(req.body(body).expect("request")).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn create_then_get_native_invoice() {
    let (_dir, store) = temp_store();
    let st = state(store);
    let (status, body) = call(
        &st,
        "POST",
        "/v1/invoices",
        Some(SIGNED),
        Some(json!({"amount": "1000", "token": "native", "chain_id": 31337, "metadata": {"order": 7}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "open");
    assert_eq!(body["amount"], "1000");
    let tx = &body["payment_instructions"]["transactions"][0];
    assert_eq!(tx["value"], "1000");
    assert_eq!(body["payment_instructions"]["chain_id"], 31337);
    let id = body["id"].as_str().expect("id");
    let (status, got) = call(&st, "GET", &format!("/v1/invoices/{id}"), Some(SIGNED), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["metadata"]["order"], 7);
}

#[tokio::test]
async fn token_invoice_has_approve_then_pay() {
    let (_dir, store) = temp_store();
    let st = state(store);
    let token = "0x3333333333333333333333333333333333333333";
    let (status, body) = call(
        &st,
        "POST",
        "/v1/invoices",
        Some(SIGNED),
        Some(json!({"amount": "5", "token": token, "chain_id": 31337})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let txs = body["payment_instructions"]["transactions"].as_array().expect("list");
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0]["to"].as_str().map(str::to_lowercase).as_deref(), Some(token));
    assert!(txs[0]["data"].as_str().expect("data").starts_with("0x095ea7b3"), "approve selector");
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let (_dir, store) = temp_store();
    let st = state(store);
    let cases = [
        (json!({"amount": "0", "token": "native", "chain_id": 31337}), "amount"),
        (json!({"amount": "-1", "token": "native", "chain_id": 31337}), "amount"),
        (json!({"amount": "1.5", "token": "native", "chain_id": 31337}), "amount"),
        (json!({"amount": "1", "token": "eth", "chain_id": 31337}), "token"),
        (json!({"amount": "1", "token": "0x0000000000000000000000000000000000000000", "chain_id": 31337}), "token"),
        (json!({"amount": "1", "token": "native"}), "chain_id"),
        (json!({"amount": "1", "token": "native", "chain_id": 5}), "chain_id"),
        (json!({"amount": "1", "token": "native", "chain_id": 31337, "nonce": "0x1"}), "nonce"),
        (json!({"amount": "1", "token": "native", "chain_id": 31337, "expires_at": 1}), "expires_at"),
        (json!({"amount": "1", "token": "native", "chain_id": 31337, "expires_in": 0}), "expires_in"),
        (json!({"amount": "1", "token": "native", "chain_id": 31337, "metadata": [1]}), "metadata"),
        (json!({"amount": "1", "token": "native", "chain_id": 31337, "colour": "red"}), "body"),
        (json!({"token": "native", "chain_id": 31337}), "body"),
    ];
    for (body, field) in cases {
        let (status, resp) = call(&st, "POST", "/v1/invoices", Some(SIGNED), Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(resp["error"]["field"], field, "{body} → {resp}");
    }
    let (status, _) = call(&st, "GET", "/v1/invoices/0x12", Some(SIGNED), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn auth_is_required_and_invoices_are_private() {
    let (_dir, store) = temp_store();
    let st = state(store);
    let body = json!({"amount": "1", "token": "native", "chain_id": 31337});
    let (status, none) = call(&st, "POST", "/v1/invoices", None, Some(body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(none["error"]["message"].as_str().is_some_and(|m| m.contains("missing credentials")), "{none}");
    // A plain bearer token, whatever it is, authenticates nothing, and the answer says so.
    let (status, plain) = call(&st, "POST", "/v1/invoices", Some("sk_test_0123456789abcdef"), Some(body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(plain["error"]["message"].as_str().is_some_and(|m| m.contains("plain bearer tokens")), "{plain}");
    let missing = format!("/v1/invoices/0x{}", "ab".repeat(32));
    assert_eq!(call(&st, "GET", &missing, Some(SIGNED), None).await.0, StatusCode::NOT_FOUND);
    // The merchant's own key, signing for no network: refused, naming the network to sign for.
    let unnamed = settleproof_merchant_auth::MerchantSigner::from_pem("shop", SHOP.private_key_pem()).expect("pem");
    let jwt =
        unnamed.sign_request("GET", "http://127.0.0.1:8080/v1/invoices", b"", crate::time::now_s(), 60).expect("sign");
    let (status, refused) = call(&st, "GET", "/v1/invoices", Some(&jwt), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no `aud`") && message.contains(&crate::merchants::test_network::audience()), "{refused}");
}

#[tokio::test]
async fn list_filters_and_pages() {
    let (_dir, store) = temp_store();
    let st = state(store);
    for amount in ["1", "2", "3"] {
        let (status, _) = call(
            &st,
            "POST",
            "/v1/invoices",
            Some(SIGNED),
            Some(json!({"amount": amount, "token": "native", "chain_id": 31337})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, page) = call(&st, "GET", "/v1/invoices?limit=2", Some(SIGNED), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    let cursor = page["next_cursor"].as_str().expect("more pages").to_string();
    let (_, page2) = call(&st, "GET", &format!("/v1/invoices?limit=2&cursor={cursor}"), Some(SIGNED), None).await;
    assert_eq!(page2["data"].as_array().map(Vec::len), Some(1));
    assert!(page2["next_cursor"].is_null());
    let (_, open) = call(&st, "GET", "/v1/invoices?status=open", Some(SIGNED), None).await;
    assert_eq!(open["data"].as_array().map(Vec::len), Some(3));
    let (_, paid) = call(&st, "GET", "/v1/invoices?status=paid", Some(SIGNED), None).await;
    assert_eq!(paid["data"].as_array().map(Vec::len), Some(0));
    for (q, field) in
        [("status=done", "status"), ("limit=0", "limit"), ("cursor=zz", "cursor"), ("colour=red", "query")]
    {
        let (status, body) = call(&st, "GET", &format!("/v1/invoices?{q}"), Some(SIGNED), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(body["error"]["field"], field, "{q}");
    }
}

#[tokio::test]
async fn each_merchant_has_a_request_budget_and_requests_get_ids() {
    let (_dir, store) = temp_store();
    let mut st = state(store);
    st.limiter = crate::api::RateLimiter::new(0.001, 2.0);
    let body = json!({"amount": "1", "token": "native", "chain_id": 31337});
    assert_eq!(call(&st, "POST", "/v1/invoices", Some(SIGNED), Some(body.clone())).await.0, StatusCode::CREATED);
    assert_eq!(call(&st, "POST", "/v1/invoices", Some(SIGNED), Some(body.clone())).await.0, StatusCode::CREATED);
    let (status, resp) = call(&st, "POST", "/v1/invoices", Some(SIGNED), Some(body)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp["error"]["code"], "rate_limited");
    let req =
        Request::builder().uri("/health/live").header("x-request-id", "abc-123").body(Body::empty()).expect("request");
    let resp = router(st.clone()).oneshot(req).await.expect("response");
    assert_eq!(resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("abc-123"));
    let resp = router(st)
        .oneshot(Request::builder().uri("/health/live").body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(resp.headers().get("x-request-id").map(|v| v.len()), Some(36), "a fresh UUID when none is given");
}

#[tokio::test]
async fn the_public_router_holds_under_abuse() {
    let (_dir, store) = temp_store();
    let mut st = state(store);
    st.admin_token = Some(Secret::new("admin_token_0123456789"));
    st.limits.max_body_bytes = 1024;
    // An id unfit for logs is replaced.
    let req = Request::builder()
        .uri("/health/live")
        .header("x-request-id", "x".repeat(100))
        .body(Body::empty())
        .expect("request");
    let resp = router(st.clone()).oneshot(req).await.expect("response");
    assert_eq!(resp.headers().get("x-request-id").map(|v| v.len()), Some(36));
    // The admin API is not on the public listener, token or not.
    let req = Request::builder()
        .uri("/admin/v1/deliveries")
        .header("authorization", "Bearer admin_token_0123456789")
        .body(Body::empty())
        .expect("request");
    assert_eq!(router(st.clone()).oneshot(req).await.expect("response").status(), StatusCode::NOT_FOUND);
    let req = Request::builder()
        .uri("/admin/v1/deliveries")
        .header("authorization", "Bearer admin_token_0123456789")
        .body(Body::empty())
        .expect("request");
    assert_eq!(admin_router(st.clone()).oneshot(req).await.expect("response").status(), StatusCode::OK);
    // Bodies over the limit: 413.
    let big = json!({"amount": "1", "token": "native", "chain_id": 31337, "metadata": {"x": "y".repeat(4096)}});
    assert_eq!(call(&st, "POST", "/v1/invoices", Some(SIGNED), Some(big)).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Guessing tokens: locked out after the allowed failures, even with the right token.
    for _ in 0..crate::api::throttle::MAX_FAILURES {
        assert_eq!(
            call(&st, "GET", "/v1/merchant", Some("sk_wrong_guess_0000000000"), None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, resp) = call(&st, "GET", "/v1/merchant", Some(SIGNED), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp["error"]["code"], "auth_locked_out");
}

/// Arbitrary bodies (raw, and mutations of a valid one) and query strings never make the API
/// fail: every answer is a 2xx or 4xx with a JSON error, never a 5xx or a panic.
mod untrusted {
    use super::*;
    use crate::untrusted_input::{mutate, mutation};
    use proptest::prelude::*;

    fn runtime() -> &'static tokio::runtime::Runtime {
        static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
    }

    fn state_once() -> &'static (tempfile::TempDir, ApiState) {
        static S: std::sync::OnceLock<(tempfile::TempDir, ApiState)> = std::sync::OnceLock::new();
        S.get_or_init(|| {
            let (dir, store) = temp_store();
            (dir, state(store))
        })
    }

    async fn send(uri: &str, method: &str, body: Vec<u8>) -> StatusCode {
        let st = &state_once().1;
        let Ok(req) = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", authorization(method, uri, &body))
            .header("content-type", "application/json")
            .body(Body::from(body))
        else {
            return StatusCode::BAD_REQUEST; // not even a valid URI: the HTTP layer refuses it
        };
        router(st.clone()).oneshot(req).await.expect("response").status()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn invoice_bodies_never_fail_the_server(
            ms in proptest::collection::vec(mutation(), 0..4),
            raw in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let valid = json!({"amount": "1000", "token": "native", "chain_id": 31337, "expires_in": 60, "metadata": {"order": "A-1"}});
            let mut body = valid.to_string().into_bytes();
            for m in &ms {
                body = mutate(&body, m);
            }
            for b in [body, raw] {
                let status = runtime().block_on(send("/v1/invoices", "POST", b));
                prop_assert!(!status.is_server_error(), "{status}");
            }
        }

        #[test]
        fn query_strings_and_ids_never_fail_the_server(q in "[ -~]{0,120}", id in "[ -~]{0,80}") {
            let enc = |s: &str| s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"=&-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
            for uri in [format!("/v1/invoices?{}", enc(&q)), format!("/v1/invoices/{}", enc(&id)), format!("/v1/invoices/{}/receipt", enc(&id))] {
                let status = runtime().block_on(send(&uri, "GET", Vec::new()));
                prop_assert!(!status.is_server_error(), "{uri}: {status}");
            }
        }
    }
}
