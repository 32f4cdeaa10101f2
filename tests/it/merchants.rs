//! What merchants do for themselves, end to end: idempotent invoice creation across nodes.

use crate::harness::{Testnet, signed};
use eyre::{Result, bail, eyre};
use serde_json::json;
use settleproof_merchant_auth::{KeyAlg, MerchantSigner};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotent_retry_on_another_node_returns_the_same_invoice_and_a_changed_body_is_a_409() -> Result<()> {
    let net = Testnet::start(4).await?;
    let body =
        json!({"amount": "1000000000000000", "token": "native", "expires_in": 3600, "metadata": {"order": "I-1"}});
    let (status, replayed, first) = net.create_invoice_with_key(0, "order-I-1", body.clone()).await?;
    assert_eq!((status, replayed), (201, false), "{first}");
    let id = first["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    // The retry reaches another node once the invoice (and its key) replicated there.
    net.eventually("invoice replicated", Duration::from_secs(15), || async {
        matches!(net.get_invoice(1, &id).await, Ok((200, _))).then_some(())
    })
    .await?;
    let (status, replayed, again) = net.create_invoice_with_key(1, "order-I-1", body.clone()).await?;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["expires_at"], first["expires_at"]);
    // Node 1 answered from what node 0 made and does not announce it in node 0's name: no peer
    // sees a foreign-creator announcement and penalises node 1 for an honest retry. (The nodes
    // of this testnet run in one process and share one metrics recorder: one read covers all.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(net.metric(0, "invoice_conflicts_total").await, 0.0, "a node refused an announcement");
    let changed =
        json!({"amount": "2000000000000000", "token": "native", "expires_in": 3600, "metadata": {"order": "I-1"}});
    let (status, _, conflict) = net.create_invoice_with_key(1, "order-I-1", changed).await?;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["field"], "amount", "{conflict}");

    // With its nonce and an absolute expiry, a retry sent at once to another node builds the
    // same invoice whether or not the first has reached it.
    let at = first["expires_at"].as_u64().ok_or_else(|| eyre!("no expiry"))?;
    let nonce = format!("0x{}", "5e".repeat(32));
    let exact = json!({"amount": "3000000000000000", "token": "native", "expires_at": at, "nonce": nonce});
    let (_, _, on_2) = net.create_invoice_with_key(2, "order-I-2", exact.clone()).await?;
    let (status, _, on_3) = net.create_invoice_with_key(3, "order-I-2", exact).await?;
    assert_eq!(status, 201, "{on_3}");
    assert_eq!(on_3["id"], on_2["id"]);

    // The one invoice is paid, settled and notified like any other.
    net.pay(&again).await?;
    net.eventually("invoice.paid for the idempotent invoice", Duration::from_secs(90), || async {
        net.receiver
            .snapshot()
            .into_iter()
            .any(|r| r.body["type"] == "invoice.paid" && r.body["data"]["invoice"]["id"] == id.as_str())
            .then_some(())
    })
    .await?;
    net.stop().await;
    Ok(())
}

/// `POST`/`PATCH` on node `i`'s admin API; returns status and body.
async fn admin(
    net: &Testnet,
    i: usize,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value)> {
    let mut req = net
        .http
        .request(method, format!("{}/admin/v1/{path}", net.admin(i)))
        .bearer_auth(net.devnet.admin_token.expose());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.json().await?))
}

/// Node `i`'s registry: merchants, changes waiting and the audit log.
async fn registry(net: &Testnet, i: usize) -> Result<serde_json::Value> {
    Ok(admin(net, i, reqwest::Method::GET, "merchants", None).await?.1)
}

/// `POST /v1/invoices` on node `i` signed by `key`; returns status and body.
async fn invoice_as(net: &Testnet, i: usize, key: &MerchantSigner) -> Result<(u16, serde_json::Value)> {
    let body = net.on_first_chain(json!({"amount": "1000", "token": "native"}));
    call(net, i, reqwest::Method::POST, "/v1/invoices", key, Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merchant_approved_by_a_threshold_is_served_by_every_node_and_one_operators_payout_change_never_applies()
-> Result<()> {
    let net = Testnet::start(4).await?;
    let shop = net.merchant_signer("shop-2", KeyAlg::EdDsa)?;
    let token = &shop;
    let payout = "0x2222222222222222222222222222222222222222";
    let onboarding = json!({
        "id": "shop-2",
        "payout_address": payout,
        "webhook_url": net.devnet.merchant.webhook_url,
        "webhook_secret": net.devnet.merchant.webhook_secret.expose(),
        "root_key": shop.public_key(),
    });
    let (status, proposed) = admin(&net, 0, reqwest::Method::POST, "merchants", Some(onboarding.clone())).await?;
    assert_eq!(status, 202, "{proposed}");
    assert_eq!((proposed["approvals"].as_u64(), proposed["threshold"].as_u64()), (Some(1), Some(3)), "{proposed}");
    let hash = proposed["change_hash"].as_str().ok_or_else(|| eyre!("no hash"))?.to_string();
    let (status, again) = admin(&net, 0, reqwest::Method::POST, "merchants", Some(json!({"id": "shop-3"}))).await?;
    assert_eq!((status, again["error"]["field"].as_str()), (400, Some("body")), "{again}");
    assert_eq!(invoice_as(&net, 3, token).await?.0, 401, "not a merchant before a threshold approved it");

    // Operators 1 and 2 see the change waiting on their own nodes and approve it there.
    for i in [1, 2] {
        net.eventually("the change reaches the approver", Duration::from_secs(20), || async {
            let r = registry(&net, i).await.ok()?;
            r["pending"].as_array()?.iter().any(|p| p["change_hash"] == hash.as_str()).then_some(())
        })
        .await?;
        if i == 1 {
            let (status, approved) =
                admin(&net, i, reqwest::Method::POST, &format!("merchant-changes/{hash}/approve"), None).await?;
            assert_eq!(status, 202, "{approved}");
        } else {
            // Operator 2 approves with the command line, which asks its node.
            let out = std::process::Command::new(crate::harness::settleproof_bin()?)
                .args(["merchants", "approve", "--change-hash", &hash, "--config"])
                .arg(&net.devnet.nodes[i].0)
                .output()?;
            let answer = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{answer} {}", String::from_utf8_lossy(&out.stderr));
            assert!(answer.contains("\"applied\": true"), "{answer}");
        }
    }
    // Live on every node: its token creates invoices paying its payout address.
    for i in 0..4 {
        let (_, invoice) = net
            .eventually("the merchant is served", Duration::from_secs(20), || async {
                let r = invoice_as(&net, i, token).await.ok()?;
                (r.0 == 201).then_some(r)
            })
            .await?;
        assert_eq!(invoice["payout_address"].as_str().map(str::to_lowercase), Some(payout.to_string()), "{invoice}");
        let r = registry(&net, i).await?;
        let audit = r["audit"].as_array().ok_or_else(|| eyre!("no audit"))?;
        let entry = audit.iter().find(|a| a["merchant_id"] == "shop-2").ok_or_else(|| eyre!("no audit entry: {r}"))?;
        assert_eq!(entry["approved_by"].as_array().map(Vec::len), Some(3), "{entry}");
    }

    // Operator 3 alone proposes its own payout address: the others hear it and it never applies.
    let (status, change) = admin(
        &net,
        3,
        reqwest::Method::PATCH,
        "merchants/shop-2",
        Some(json!({"payout_address": "0xbadbadbadbadbadbadbadbadbadbadbadbadbad0"})),
    )
    .await?;
    assert_eq!(status, 202, "{change}");
    let stolen = change["change_hash"].as_str().ok_or_else(|| eyre!("no hash"))?.to_string();
    for i in 0..3 {
        net.eventually("the single-operator change is heard", Duration::from_secs(20), || async {
            let r = registry(&net, i).await.ok()?;
            r["pending"].as_array()?.iter().any(|p| p["change_hash"] == stolen.as_str()).then_some(())
        })
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..4 {
        let (status, invoice) = invoice_as(&net, i, token).await?;
        assert_eq!(status, 201, "{invoice}");
        assert_eq!(
            invoice["payout_address"].as_str().map(str::to_lowercase),
            Some(payout.to_string()),
            "node {i}: {invoice}"
        );
    }
    net.stop().await;
    Ok(())
}

/// A request on node `i`'s public API signed by `key`; returns status and body.
pub(crate) async fn call(
    net: &Testnet,
    i: usize,
    method: reqwest::Method,
    path: &str,
    key: &MerchantSigner,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value)> {
    let resp = signed(&net.http, key, method, &format!("{}{path}", net.api(i)), body.as_ref())?.send().await?;
    Ok((resp.status().as_u16(), resp.json().await.unwrap_or_default()))
}

/// Grants a new key named `name` with `scopes` on node `i`, signed by the merchant's root key.
pub(crate) async fn grant_key(
    net: &Testnet,
    i: usize,
    name: &str,
    scopes: &[&str],
) -> Result<(u16, serde_json::Value, MerchantSigner)> {
    let key = net.merchant_signer("demo", KeyAlg::Es256)?;
    let body = json!({"name": name, "scopes": scopes, "public_key": key.public_key()});
    let root = &net.devnet.merchant_key;
    let (status, answer) = call(net, i, reqwest::Method::POST, "/v1/api-keys", root, Some(body)).await?;
    Ok((status, answer, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_key_works_on_every_node_within_its_scopes_and_a_revoked_one_is_refused_everywhere() -> Result<()> {
    use reqwest::Method;
    let net = Testnet::start(4).await?;
    let root = net.devnet.merchant_key.clone();
    let (status, created, key) = grant_key(&net, 0, "reporting", &["invoices:read"]).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(id, key.key_id());
    let bad = json!({"name": "x", "scopes": ["invoices:delete"], "public_key": key.public_key()});
    let (status, bad) = call(&net, 0, Method::POST, "/v1/api-keys", &root, Some(bad)).await?;
    assert_eq!((status, bad["error"]["field"].as_str()), (400, Some("body")), "{bad}");
    // A key cannot grant a key: only the merchant's root key can.
    let other = net.merchant_signer("demo", KeyAlg::EdDsa)?;
    let body = json!({"name": "t", "scopes": ["invoices:write"], "public_key": other.public_key()});
    let (status, refused) = call(&net, 0, Method::POST, "/v1/api-keys", &key, Some(body)).await?;
    assert_eq!(status, 403, "{refused}");

    // Replicated: the key reads invoices on every node, and may do nothing else.
    for i in 0..4 {
        net.eventually("the key is known", Duration::from_secs(15), || async {
            (call(&net, i, Method::GET, "/v1/invoices", &key, None).await.ok()?.0 == 200).then_some(())
        })
        .await?;
        let body = json!({"amount": "1000", "token": "native"});
        let (status, refused) = call(&net, i, Method::POST, "/v1/invoices", &key, Some(body)).await?;
        assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("insufficient_scope")), "{refused}");
        let (status, _) = call(&net, i, Method::GET, "/v1/api-keys", &key, None).await?;
        assert_eq!(status, 403, "a key does not manage keys");
    }
    let (_, listed) = call(&net, 3, Method::GET, "/v1/api-keys", &root, None).await?;
    assert_eq!(listed["data"][0]["id"], id.as_str(), "{listed}");

    // Revoked on node 1: refused on node 1 at once, and on every node within seconds.
    let (status, revoked) = call(&net, 1, Method::DELETE, &format!("/v1/api-keys/{id}"), &root, None).await?;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at_ms"].as_u64().is_some(), "{revoked}");
    assert_eq!(call(&net, 1, Method::GET, "/v1/invoices", &key, None).await?.0, 401);
    for i in 0..4 {
        net.eventually("the revocation is everywhere", Duration::from_secs(5), || async {
            (call(&net, i, Method::GET, "/v1/invoices", &key, None).await.ok()?.0 == 401).then_some(())
        })
        .await?;
    }
    let (status, _) = call(&net, 2, Method::DELETE, "/v1/api-keys/mk_0000", &root, None).await?;
    assert_eq!(status, 404);
    net.stop().await;
    Ok(())
}

/// What node `i` and the receiver show of event `id`, for a failure's message.
async fn event_story(net: &Testnet, i: usize, token: &MerchantSigner, id: &str) -> String {
    let shown = call(net, i, reqwest::Method::GET, "/v1/events?limit=100", token, None).await.map(|(_, list)| {
        list["data"].as_array().and_then(|d| d.iter().find(|e| e["id"] == id).cloned()).unwrap_or_default()
    });
    let received: Vec<(u16, bool)> =
        net.receiver.snapshot().iter().filter(|r| r.webhook_id == id).map(|r| (r.answered, r.verified)).collect();
    format!("node {i} shows {shown:?}; the receiver answered (status, verified) {received:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merchant_sees_its_deliveries_and_replays_its_dead_letters_with_its_own_key() -> Result<()> {
    use reqwest::Method;
    let net = Testnet::start(4).await?;
    let primary = net.devnet.merchant_key.clone();
    let since = settleproof_node::time::now_ms();
    net.receiver.set_failure(Some(500));
    let (status, queued) = call(&net, 0, Method::POST, "/v1/webhooks/test", &primary, None).await?;
    assert_eq!(status, 202, "{queued}");
    let id = queued["webhook_id"].as_str().ok_or_else(|| eyre!("no id: {queued}"))?.to_string();
    // Dead-lettered after the retry schedule; every attempt is shown with its answer.
    let dead = match net
        .eventually("the event is dead-lettered", Duration::from_secs(60), || async {
            let (_, list) = call(&net, 0, Method::GET, "/v1/events?state=dead", &primary, None).await.ok()?;
            list["data"].as_array()?.iter().find(|e| e["id"] == id.as_str()).cloned()
        })
        .await
    {
        Ok(dead) => dead,
        Err(e) => bail!("{e}: {}", event_story(&net, 0, &primary, &id).await),
    };
    let attempts = dead["attempts"].as_array().ok_or_else(|| eyre!("no attempts: {dead}"))?;
    assert!(attempts.len() > 1 && attempts.iter().all(|a| a["status"] == 500), "{dead}");
    assert!(attempts[0]["latency_ms"].is_u64() && attempts[0]["excerpt"].is_string(), "{dead}");
    assert_eq!(dead["type"], "test", "{dead}");

    // A key without `webhooks:manage` sees nothing of it; the merchant replays with its own.
    let (_, _, reader) = grant_key(&net, 0, "r", &["invoices:read"]).await?;
    let (_, _, manager) = grant_key(&net, 0, "m", &["webhooks:manage"]).await?;
    assert_eq!(call(&net, 0, Method::GET, "/v1/events", &reader, None).await?.0, 403);
    net.receiver.set_failure(None);
    let (status, replayed) =
        call(&net, 0, Method::POST, "/v1/events/replay", &manager, Some(json!({"since_ms": since}))).await?;
    assert_eq!((status, replayed["replayed"].as_u64()), (200, Some(1)), "{replayed}");
    let verified = |n: usize| {
        let id = id.clone();
        let receiver = net.receiver.clone();
        async move {
            (receiver
                .snapshot()
                .iter()
                .filter(|r| r.webhook_id == id && (200..300).contains(&r.answered) && r.verified)
                .count()
                >= n)
                .then_some(())
        }
    };
    if let Err(e) = net.eventually("the replay is delivered", Duration::from_secs(60), || verified(1)).await {
        bail!("{e}: {}", event_story(&net, 0, &primary, &id).await);
    }
    // One event replayed again: delivered a second time under the same webhook-id.
    let (status, one) = call(&net, 0, Method::POST, &format!("/v1/events/{id}/replay"), &manager, None).await?;
    assert_eq!((status, one["replayed"].as_u64()), (200, Some(1)), "{one}");
    if let Err(e) = net.eventually("the second replay is delivered", Duration::from_secs(60), || verified(2)).await {
        bail!("{e}: {}", event_story(&net, 0, &primary, &id).await);
    }
    assert_eq!(call(&net, 0, Method::POST, "/v1/events/nope/replay", &manager, None).await?.0, 404);
    let (_, delivered) = call(&net, 0, Method::GET, "/v1/events?state=delivered&limit=5", &primary, None).await?;
    assert!(delivered["data"].as_array().is_some_and(|d| d.iter().any(|e| e["id"] == id.as_str())), "{delivered}");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn during_a_secret_rotation_every_delivery_verifies_with_the_old_secret_and_with_the_new() -> Result<()> {
    use reqwest::Method;
    let net = Testnet::start(4).await?;
    let old = net.devnet.merchant.webhook_secret.expose().to_string();
    let new = settleproof_node::webhook::signature::generate_secret();
    let (status, proposed) =
        admin(&net, 0, Method::PATCH, "merchants/demo", Some(json!({"webhook_secret": new}))).await?;
    assert_eq!(status, 202, "{proposed}");
    let hash = proposed["change_hash"].as_str().ok_or_else(|| eyre!("no hash"))?.to_string();
    let (_, listed) = admin(&net, 0, Method::GET, "merchants", None).await?;
    assert!(!listed.to_string().contains(&new) && !listed.to_string().contains(&old), "no secret is listed");
    assert_eq!(listed["pending"][0]["webhook_secret_changed"], true, "{listed}");
    for i in [1, 2] {
        net.eventually("the rotation reaches the approver", Duration::from_secs(20), || async {
            let r = registry(&net, i).await.ok()?;
            r["pending"].as_array()?.iter().any(|p| p["change_hash"] == hash.as_str()).then_some(())
        })
        .await?;
        admin(&net, i, Method::POST, &format!("merchant-changes/{hash}/approve"), None).await?;
    }
    let primary = net.devnet.merchant_key.clone();
    for i in 0..4 {
        net.eventually("the rotation applied", Duration::from_secs(20), || async {
            let r = registry(&net, i).await.ok()?;
            (r["merchants"][0]["version"] == 1).then_some(())
        })
        .await?;
        let (status, queued) = call(&net, i, Method::POST, "/v1/webhooks/test", &primary, None).await?;
        assert_eq!(status, 202, "{queued}");
        let id = queued["webhook_id"].as_str().unwrap_or_default().to_string();
        let got = net
            .eventually("the test event", Duration::from_secs(20), || async {
                net.receiver.snapshot().into_iter().find(|r| r.webhook_id == id)
            })
            .await?;
        assert_eq!(got.raw.signature.split(' ').count(), 2, "node {i}: {}", got.raw.signature);
        assert!(got.verified, "the receiver still holding the old secret verifies");
        assert!(crate::harness::standard_webhooks_verifies(&old, &got.raw)?, "node {i}: old secret");
        assert!(crate::harness::standard_webhooks_verifies(&new, &got.raw)?, "node {i}: new secret");
        assert!(!crate::harness::standard_webhooks_verifies(
            &settleproof_node::webhook::signature::generate_secret(),
            &got.raw
        )?);
    }
    net.stop().await;
    Ok(())
}

/// A node that answers the merchant but keeps the change to itself (cut off from every other
/// node here) silences nothing the merchant sends to f + 1 nodes: `settleproof merchant request
/// --also` signs the same request for each, an endpoint created with a `nonce` is one endpoint
/// everywhere, and a revocation holds on every node. Sent to the withholding node alone, the
/// same kind of change reaches no other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_sent_to_f_plus_one_nodes_reaches_every_node_when_one_keeps_it_to_itself() -> Result<()> {
    use crate::byzantine::{admin, peer_id};
    use reqwest::Method;
    let net = Testnet::start(4).await?;
    let root = net.devnet.merchant_key.clone();
    let (_, _, silenced) = grant_key(&net, 0, "silenced", &["invoices:read"]).await?;
    let (_, _, revoked) = grant_key(&net, 0, "revoked", &["invoices:read"]).await?;
    for i in 0..4 {
        for key in [&silenced, &revoked] {
            net.eventually("the keys are known", Duration::from_secs(15), || async {
                (call(&net, i, Method::GET, "/v1/invoices", key, None).await.ok()?.0 == 200).then_some(())
            })
            .await?;
        }
    }
    // Node 0 keeps what it is told to itself.
    for other in 1..4 {
        admin(&net, 0, "peers/block", json!({"peer_id": peer_id(&net, other)})).await?;
        admin(&net, other, "peers/block", json!({"peer_id": peer_id(&net, 0)})).await?;
    }
    let dir = tempfile::tempdir()?;
    let pem = dir.path().join("merchant.pem");
    std::fs::write(&pem, root.private_key_pem())?;
    let cli = |args: Vec<String>| {
        let mut c = std::process::Command::new(crate::harness::settleproof_bin()?);
        c.args(["merchant", "request"]).args(args);
        c.env("SETTLEPROOF_MERCHANT_ID", "demo").env("SETTLEPROOF_MERCHANT_KEY", &pem);
        c.env("SETTLEPROOF_AUDIENCE", root.audience().unwrap_or_default());
        let out = c.output()?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Ok::<_, eyre::Report>((out.status.success(), text))
    };
    // To the withholding node alone: the others never hear of it.
    let (ok, said) = cli(vec!["DELETE".into(), format!("{}/v1/api-keys/{}", net.api(0), silenced.key_id())])?;
    assert!(ok, "{said}");
    // To it and one more node.
    let also = vec!["--also".to_string(), net.api(1)];
    let path = format!("{}/v1/api-keys/{}", net.api(0), revoked.key_id());
    let (ok, said) = cli([vec!["DELETE".into(), path], also.clone()].concat())?;
    assert!(ok, "{said}");
    let nonce = format!("0x{}", "5a".repeat(32));
    let body = json!({
        "url": net.devnet.merchant.webhook_url,
        "enabled_events": ["test"],
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "nonce": nonce,
    });
    let url = format!("{}/v1/webhook-endpoints", net.api(0));
    let (ok, said) = cli([vec!["POST".into(), url, "--data".into(), body.to_string()], also].concat())?;
    assert!(ok, "{said}");
    for i in 1..4 {
        net.eventually("the revocation sent to two nodes is everywhere", Duration::from_secs(15), || async {
            (call(&net, i, Method::GET, "/v1/invoices", &revoked, None).await.ok()?.0 == 401).then_some(())
        })
        .await?;
        net.eventually("the endpoint sent to two nodes is everywhere", Duration::from_secs(15), || async {
            let (_, list) = call(&net, i, Method::GET, "/v1/webhook-endpoints", &root, None).await.ok()?;
            (list["data"].as_array()?.len() == 1).then_some(())
        })
        .await?;
    }
    for i in 1..4 {
        let (status, _) = call(&net, i, Method::GET, "/v1/invoices", &silenced, None).await?;
        assert_eq!(status, 200, "node {i} heard what only the withholding node was told");
    }
    // Back together: still one endpoint on every node, the same id.
    for other in 1..4 {
        admin(&net, 0, "peers/unblock", json!({"peer_id": peer_id(&net, other)})).await?;
        admin(&net, other, "peers/unblock", json!({"peer_id": peer_id(&net, 0)})).await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..4 {
        let (_, list) = call(&net, i, Method::GET, "/v1/webhook-endpoints", &root, None).await?;
        let data = list["data"].as_array().ok_or_else(|| eyre!("no list: {list}"))?;
        assert_eq!(data.len(), 1, "node {i}: {list}");
        ids.insert(data[0]["id"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    net.stop().await;
    Ok(())
}
