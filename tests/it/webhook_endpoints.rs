//! A merchant's own webhook endpoints, end to end on 4 nodes: two endpoints with different
//! filters, each with its own deliveries, dead-letter queue and replay; a secret rotation both
//! secrets verify during; a deletion that reaches every node.

use crate::harness::{Testnet, standard_webhooks_verifies};
use crate::merchants::call;
use eyre::{Result, eyre};
use reqwest::Method;
use serde_json::{Value, json};
use settleproof_devnet::demo_merchant::Receiver;
use std::time::Duration;

/// A receiver on its own port checking signatures with `secret`.
async fn receiver(listener: tokio::net::TcpListener, secret: &str) -> Receiver {
    let r = Receiver::new(secret.to_string(), None);
    tokio::spawn(r.clone().serve(listener));
    r
}

/// A change of an endpoint, signed again while the node answers 409: a change signed in the
/// same second as the endpoint's latest one is refused when it would sort before it.
async fn change(
    net: &Testnet,
    i: usize,
    method: Method,
    path: &str,
    key: &settleproof_merchant_auth::MerchantSigner,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    for _ in 0..20 {
        let (status, answer) = call(net, i, method.clone(), path, key, body.clone()).await?;
        if status != 409 {
            return Ok((status, answer));
        }
    }
    Err(eyre!("{method} {path}: still 409 after 20 signatures"))
}

fn ids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|e| e["id"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_endpoints_get_what_their_filters_ask_for_and_one_failing_never_holds_back_the_other() -> Result<()> {
    let net = Testnet::start(4).await?;
    let primary = net.devnet.merchant_key.clone();
    let (la, lb) =
        (tokio::net::TcpListener::bind("127.0.0.1:0").await?, tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    let url = |l: &tokio::net::TcpListener| l.local_addr().map(|a| format!("http://{a}/webhooks"));
    // Each secret is the merchant's own, chosen here and signed with the creation.
    let secret = settleproof_node::webhook::signature::generate_secret;
    let (status, a) = call(
        &net,
        0,
        Method::POST,
        "/v1/webhook-endpoints",
        &primary,
        Some(json!({"url": url(&la)?, "description": "fulfilment", "enabled_events": ["invoice.paid"], "secret": secret()})),
    )
    .await?;
    assert_eq!(status, 201, "{a}");
    let (status, b) = call(
        &net,
        1,
        Method::POST,
        "/v1/webhook-endpoints",
        &primary,
        Some(json!({"url": url(&lb)?, "enabled_events": ["test", "invoice.expired"], "secret": secret()})),
    )
    .await?;
    assert_eq!(status, 201, "{b}");
    let (a_id, b_id) =
        (a["id"].as_str().unwrap_or_default().to_string(), b["id"].as_str().unwrap_or_default().to_string());
    let a_secret = a["secret"].as_str().ok_or_else(|| eyre!("no secret: {a}"))?.to_string();
    let hook_a = receiver(la, &a_secret).await;
    let hook_b = receiver(lb, b["secret"].as_str().unwrap_or_default()).await;
    hook_b.set_failure(Some(500));
    let (status, bad) = call(
        &net,
        2,
        Method::POST,
        "/v1/webhook-endpoints",
        &primary,
        Some(json!({"url": "http://127.0.0.1:1/x", "enabled_events": ["invoice.refunded"], "secret": secret()})),
    )
    .await?;
    assert_eq!((status, bad["error"]["field"].as_str()), (400, Some("enabled_events")), "{bad}");

    // Both are known on every node, and no listing shows a secret.
    for i in 0..4 {
        net.eventually("both endpoints replicated", Duration::from_secs(15), || async {
            let (_, list) = call(&net, i, Method::GET, "/v1/webhook-endpoints", &primary, None).await.ok()?;
            let held = ids(&list);
            (held.contains(&a_id) && held.contains(&b_id) && !list.to_string().contains("whsec_")).then_some(())
        })
        .await?;
    }

    // A test event goes to the primary endpoint and to B, not to A. B fails until its
    // deliveries are dead-lettered; the primary's is delivered meanwhile.
    let since = settleproof_node::time::now_ms();
    let (_, queued) = call(&net, 2, Method::POST, "/v1/webhooks/test", &primary, None).await?;
    let test_id = queued["webhook_id"].as_str().ok_or_else(|| eyre!("no id: {queued}"))?.to_string();
    net.eventually("the primary endpoint gets the test event", Duration::from_secs(20), || async {
        net.receiver.snapshot().iter().any(|r| r.webhook_id == test_id && r.verified).then_some(())
    })
    .await?;
    let dead = net
        .eventually("B's delivery is dead-lettered", Duration::from_secs(60), || async {
            let path = format!("/v1/webhook-endpoints/{b_id}/deliveries?state=dead");
            let (_, list) = call(&net, 2, Method::GET, &path, &primary, None).await.ok()?;
            list["data"].as_array()?.iter().find(|e| e["webhook_id"] == test_id.as_str()).cloned()
        })
        .await?;
    assert_eq!(dead["endpoint_id"], b_id.as_str(), "{dead}");
    assert!(dead["attempts"].as_array().is_some_and(|a| a.len() > 1 && a.iter().all(|x| x["status"] == 500)), "{dead}");
    assert!(hook_b.snapshot().iter().all(|r| r.webhook_id == test_id), "B got only what it asked for");

    // A paid invoice: invoice.paid reaches the primary endpoint and A (signed with A's secret),
    // never B, whose failures held nothing back.
    let (status, created) =
        net.create_invoice(3, json!({"amount": "1000000000000000", "token": "native", "expires_in": 3600})).await?;
    assert_eq!(status, 201, "{created}");
    let invoice = created["id"].as_str().unwrap_or_default().to_string();
    net.pay(&created).await?;
    let paid = |r: &settleproof_devnet::demo_merchant::Received| {
        r.body["type"] == "invoice.paid" && r.body["data"]["invoice"]["id"] == invoice.as_str() && r.verified
    };
    net.eventually("A gets invoice.paid", Duration::from_secs(90), || async {
        hook_a.snapshot().iter().any(paid).then_some(())
    })
    .await?;
    net.eventually("the primary gets invoice.paid", Duration::from_secs(30), || async {
        net.receiver.snapshot().iter().any(paid).then_some(())
    })
    .await?;
    assert!(hook_a.snapshot().iter().all(|r| r.body["type"] == "invoice.paid"), "A asked for invoice.paid only");
    let b_got = hook_b.snapshot();
    assert!(!b_got.is_empty() && b_got.iter().all(|r| r.body["type"] == "test"), "B never asked for invoice.paid");

    // B recovers; the merchant replays B's dead letters, and only B gets the event again.
    hook_b.set_failure(None);
    let primary_before = net.receiver.snapshot().iter().filter(|r| r.webhook_id == test_id).count();
    let path = format!("/v1/webhook-endpoints/{b_id}/replay");
    let (status, replayed) = call(&net, 2, Method::POST, &path, &primary, Some(json!({"since_ms": since}))).await?;
    assert_eq!((status, replayed["replayed"].as_u64()), (200, Some(1)), "{replayed}");
    net.eventually("B gets the replay", Duration::from_secs(30), || async {
        hook_b
            .snapshot()
            .iter()
            .any(|r| r.webhook_id == test_id && (200..300).contains(&r.answered) && r.verified)
            .then_some(())
    })
    .await?;
    let primary_after = net.receiver.snapshot().iter().filter(|r| r.webhook_id == test_id).count();
    assert_eq!(primary_before, primary_after, "the replay was B's alone");

    // A's secret rotated on node 3, and A asks for test events too: node 0's delivery carries
    // two signatures, and the Standard Webhooks library verifies it with either secret.
    let (status, rotated) = change(
        &net,
        3,
        Method::POST,
        &format!("/v1/webhook-endpoints/{a_id}/rotate-secret"),
        &primary,
        Some(json!({"secret": secret()})),
    )
    .await?;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap_or_default().to_string();
    assert!(new_secret.starts_with("whsec_") && new_secret != a_secret, "{rotated}");
    let (status, changed) = change(
        &net,
        3,
        Method::PATCH,
        &format!("/v1/webhook-endpoints/{a_id}"),
        &primary,
        Some(json!({"enabled_events": ["invoice.paid", "test"]})),
    )
    .await?;
    assert_eq!(status, 200, "{changed}");
    net.eventually("node 0 holds A's rotation and filter", Duration::from_secs(15), || async {
        let (_, e) = call(&net, 0, Method::GET, &format!("/v1/webhook-endpoints/{a_id}"), &primary, None).await.ok()?;
        let rotated = e["previous_secret_until_ms"].is_u64();
        (rotated && e["enabled_events"] == json!(["invoice.paid", "test"])).then_some(())
    })
    .await?;
    let (_, queued) = call(&net, 0, Method::POST, "/v1/webhooks/test", &primary, None).await?;
    let second = queued["webhook_id"].as_str().unwrap_or_default().to_string();
    let got = net
        .eventually("A gets the test event", Duration::from_secs(20), || async {
            hook_a.snapshot().into_iter().find(|r| r.webhook_id == second)
        })
        .await?;
    assert_eq!(got.raw.signature.split(' ').count(), 2, "{}", got.raw.signature);
    assert!(standard_webhooks_verifies(&a_secret, &got.raw)?, "old secret");
    assert!(standard_webhooks_verifies(&new_secret, &got.raw)?, "new secret");

    // Deleted on node 1: gone from every node's list, and its record cannot be read.
    let (status, _) = change(&net, 1, Method::DELETE, &format!("/v1/webhook-endpoints/{b_id}"), &primary, None).await?;
    assert_eq!(status, 200);
    for i in 0..4 {
        net.eventually("the deletion is everywhere", Duration::from_secs(15), || async {
            let (_, list) = call(&net, i, Method::GET, "/v1/webhook-endpoints", &primary, None).await.ok()?;
            (!ids(&list).contains(&b_id)).then_some(())
        })
        .await?;
    }
    let (status, _) = call(&net, 1, Method::GET, &format!("/v1/webhook-endpoints/{b_id}"), &primary, None).await?;
    assert_eq!(status, 404);
    net.stop().await;
    Ok(())
}
