//! One operator of four is Byzantine towards the merchant's own records: it announces keys and
//! webhook endpoint changes the merchant never signed. (The settlement side's Byzantine tests
//! are in `byzantine`.)

use crate::byzantine::{BAD, labelled_metric, with_byzantine};
use crate::harness::Options;
use eyre::{Result, eyre};
use serde_json::json;
use std::time::Duration;

/// An operator mints a full-scope API key in the merchant's name, widens a genuine key and
/// revokes it, over gossip: no honest node keeps any of it, the minted key is refused
/// everywhere, and the genuine key keeps working with its own scopes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_can_neither_mint_widen_nor_revoke_a_merchants_key() -> Result<()> {
    use crate::merchants::{call, grant_key};
    use reqwest::Method;
    use settleproof_merchant_auth::{KeyAlg, SignedStatement};
    let (net, bad) = with_byzantine(Options::default()).await?;
    let (status, created, genuine) = grant_key(&net, 0, "reader", &["invoices:read"]).await?;
    assert_eq!(status, 201, "{created}");
    for i in 0..BAD {
        net.eventually("the genuine key is everywhere", Duration::from_secs(15), || async {
            (call(&net, i, Method::GET, "/v1/invoices", &genuine, None).await.ok()?.0 == 200).then_some(())
        })
        .await?;
    }
    // The operator's own key pair, granted in the merchant's name with its own signature.
    let minted = net.merchant_signer("demo", KeyAlg::EdDsa)?;
    let body = json!({"name": "ops", "scopes": ["invoices:write", "invoices:read", "webhooks:manage"], "public_key": minted.public_key()}).to_string();
    let now = settleproof_node::time::now_s();
    let jwt = minted
        .sign_request("POST", &format!("{}/v1/api-keys", net.api(0)), body.as_bytes(), now, 60)
        .map_err(|e| eyre!("{e}"))?;
    let mint = settleproof_node::merchants::key_of_grant("demo", &SignedStatement { jwt, body })?;
    // The genuine key widened to every scope, and revoked with the operator's signature.
    let held: settleproof_node::store::ApiKey = {
        let mut k = mint.clone();
        k.id = genuine.key_id().to_string();
        k.token_sha256 = settleproof_node::store::key_slot("demo", genuine.key_id());
        k.public_key = Some(genuine.public_key().clone());
        k
    };
    let revocation = {
        let jwt = minted
            .sign_request("DELETE", &format!("{}/v1/api-keys/{}", net.api(0), genuine.key_id()), b"", now, 60)
            .map_err(|e| eyre!("{e}"))?;
        let mut k = held.clone();
        k.revocation = Some(SignedStatement { jwt, body: String::new() });
        k.revoked_at_ms = Some(1);
        k
    };
    for _ in 0..3 {
        assert!(bad.announce_key(mint.clone()).await);
        assert!(bad.announce_key(held.clone()).await);
        assert!(bad.announce_key(revocation.clone()).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for i in 0..BAD {
        net.eventually("the forgeries are heard and refused", Duration::from_secs(15), || async {
            (labelled_metric(&net, i, "merchant_records_refused_total", "api_key").await >= 3.0).then_some(())
        })
        .await?;
        let (status, answer) = call(&net, i, Method::GET, "/v1/invoices", &minted, None).await?;
        assert_eq!(status, 401, "node {i} took the minted key: {answer}");
        let invoice = json!({"amount": "1000", "token": "native"});
        let (status, _) = call(&net, i, Method::POST, "/v1/invoices", &genuine, Some(invoice)).await?;
        assert_eq!(status, 403, "node {i} widened the genuine key");
        let (status, _) = call(&net, i, Method::GET, "/v1/invoices", &genuine, None).await?;
        assert_eq!(status, 200, "node {i} revoked the genuine key");
    }
    net.stop().await;
    Ok(())
}

/// An operator creates an endpoint in the merchant's name, and redirects, pauses, re-keys and
/// deletes the merchant's own endpoint, over gossip, each change signed with its own key: no
/// honest node applies any of it, and the merchant's endpoint keeps receiving its events,
/// signed with the secret the merchant was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_can_neither_forge_redirect_nor_delete_a_merchants_endpoint() -> Result<()> {
    use crate::merchants::call;
    use reqwest::Method;
    use settleproof_merchant_auth::{KeyAlg, SignedStatement};
    let (net, bad) = with_byzantine(Options::default()).await?;
    let root = net.devnet.merchant_key.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks", listener.local_addr()?);
    let secret = settleproof_node::webhook::signature::generate_secret();
    let body = json!({"url": url, "enabled_events": ["test"], "secret": secret});
    let (status, created) = call(&net, 0, Method::POST, "/v1/webhook-endpoints", &root, Some(body)).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().ok_or_else(|| eyre!("no id: {created}"))?.to_string();
    let hook = settleproof_devnet::demo_merchant::Receiver::new(secret.clone(), None);
    tokio::spawn(hook.clone().serve(listener));
    let listed = |i: usize| {
        let root = root.clone();
        let net = &net;
        async move {
            let (_, list) = call(net, i, Method::GET, "/v1/webhook-endpoints", &root, None).await.ok()?;
            list["data"].as_array().cloned()
        }
    };
    for i in 0..BAD {
        net.eventually("the merchant's endpoint is everywhere", Duration::from_secs(15), || async {
            listed(i).await.filter(|l| l.len() == 1).map(drop)
        })
        .await?;
    }

    // The operator's own key, signing in the merchant's name.
    let op = net.merchant_signer("demo", KeyAlg::EdDsa)?;
    let sign = |method: &str, path: &str, body: &str| -> Result<SignedStatement> {
        let now = settleproof_node::time::now_s() + 5;
        let jwt = op
            .sign_request(method, &format!("{}{path}", net.api(0)), body.as_bytes(), now, 60)
            .map_err(|e| eyre!("{e}"))?;
        Ok(SignedStatement { jwt, body: body.into() })
    };
    let evil =
        r#"{"url":"http://127.0.0.1:1/evil","enabled_events":["*"],"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#;
    let ghost = sign("POST", "/v1/webhook-endpoints", evil)?;
    let ghost_id = settleproof_node::merchants::endpoint_record::endpoint_id_of(&ghost);
    let path = format!("/v1/webhook-endpoints/{id}");
    let forgeries = [
        (ghost_id, ghost),
        (id.clone(), sign("PATCH", &path, r#"{"url":"http://127.0.0.1:1/evil"}"#)?),
        (id.clone(), sign("PATCH", &path, r#"{"disabled":true}"#)?),
        (
            id.clone(),
            sign("POST", &format!("{path}/rotate-secret"), r#"{"secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}"#)?,
        ),
        (id.clone(), sign("DELETE", &path, "")?),
    ];
    for (endpoint, statement) in forgeries {
        assert!(bad.announce_endpoint("demo", &endpoint, vec![statement]).await, "gossip took it");
    }
    for i in 0..BAD {
        net.eventually("the forgeries are heard and refused", Duration::from_secs(15), || async {
            (labelled_metric(&net, i, "merchant_records_refused_total", "webhook_endpoint").await >= 5.0).then_some(())
        })
        .await?;
        let list = listed(i).await.ok_or_else(|| eyre!("node {i} lists nothing"))?;
        assert_eq!(list.len(), 1, "node {i}: {list:?}");
        assert_eq!((list[0]["id"].as_str(), list[0]["url"].as_str()), (Some(id.as_str()), Some(url.as_str())));
        assert_eq!((list[0]["disabled"].as_bool(), list[0]["previous_secret_until_ms"].is_null()), (Some(false), true));
    }
    // Every honest node still delivers to it, signed with the merchant's secret.
    for i in 0..BAD {
        let (status, queued) = call(&net, i, Method::POST, "/v1/webhooks/test", &root, None).await?;
        assert_eq!(status, 202, "{queued}");
        let wid = queued["webhook_id"].as_str().unwrap_or_default().to_string();
        let got = net
            .eventually("the endpoint gets the test event", Duration::from_secs(20), || async {
                hook.snapshot().into_iter().find(|r| r.webhook_id == wid)
            })
            .await?;
        assert!(got.verified, "node {i}: signed with the merchant's secret");
    }
    net.stop().await;
    Ok(())
}

/// A record only one operator holds (a key the merchant granted at a node that announced it to
/// no one) reaches every node without being sent again: each pulls from the operator whose
/// digest keeps differing from its own. The same operator's false digests afterwards cost each
/// node at most one snapshot per backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_one_operator_holds_reaches_every_node_by_digest_and_false_digests_cost_little() -> Result<()> {
    use crate::merchants::call;
    use reqwest::Method;
    use settleproof_merchant_auth::{KeyAlg, SignedStatement};
    let (net, bad) = with_byzantine(Options::default()).await?;
    // The merchant's genuine grant, signed by its root key, that no honest node ever heard.
    let holder = net.merchant_signer("demo", KeyAlg::EdDsa)?;
    let body = json!({"name": "unheard", "scopes": ["invoices:read"], "public_key": holder.public_key()}).to_string();
    let now = settleproof_node::time::now_s();
    let jwt = net
        .devnet
        .merchant_key
        .sign_request("POST", &format!("{}/v1/api-keys", net.api(0)), body.as_bytes(), now, 60)
        .map_err(|e| eyre!("{e}"))?;
    let key = settleproof_node::merchants::key_of_grant("demo", &SignedStatement { jwt, body })?;
    for i in 0..BAD {
        let (status, _) = call(&net, i, Method::GET, "/v1/invoices", &holder, None).await?;
        assert_eq!(status, 401, "node {i} cannot know the key yet");
    }
    bad.serve_merchants(settleproof_node::merchants::MerchantSnapshot { keys: vec![key], ..Default::default() });
    let false_digest = alloy::primitives::B256::repeat_byte(0x99);
    let announcing = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop2, bad) = (stop.clone(), std::sync::Arc::new(bad));
        let task = tokio::spawn({
            let bad = bad.clone();
            async move {
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    bad.announce_digest(false_digest).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        });
        (stop, task, bad)
    };
    for i in 0..BAD {
        // Asked with the root key: a request with a key not held yet counts towards the lockout.
        net.eventually("the key reaches every node by digest and pull", Duration::from_secs(45), || async {
            let (_, keys) = call(&net, i, Method::GET, "/v1/api-keys", &net.devnet.merchant_key, None).await.ok()?;
            keys["data"].as_array()?.iter().any(|k| k["id"] == holder.key_id()).then_some(())
        })
        .await?;
        let (status, _) = call(&net, i, Method::GET, "/v1/invoices", &holder, None).await?;
        assert_eq!(status, 200, "node {i} takes the key");
        assert!(
            labelled_metric(&net, i, "merchant_digest_pulls_total", "changed=\"true\"").await >= 1.0,
            "node {i} took the key from a pull"
        );
    }
    // The operator goes on with its false digest: each node pulls from it again only after the
    // backoff (a minute at first), not at each of its digests.
    tokio::time::sleep(Duration::from_secs(20)).await;
    for i in 0..BAD {
        let text = net.http.get(format!("{}/metrics", net.api(i))).send().await?.text().await?;
        assert!(text.contains("merchant_digest_pulls_total{changed=\"false\"}"), "node {i} exports the idle pulls");
        let idle = labelled_metric(&net, i, "merchant_digest_pulls_total", "changed=\"false\"").await;
        assert!(idle <= 1.0, "node {i} pulled {idle} times for nothing within 20 s");
    }
    announcing.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = announcing.1.await;
    Ok(())
}

/// The merchant's own key signs on another network too (a staging network, say), where an
/// operator collects what it signed there: a key grant and an invoice, signed for that network
/// (`aud`). Announced and served here, neither is taken by any node, and a request signed for
/// that network is refused naming both networks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_the_merchant_signed_for_another_network_is_refused_here() -> Result<()> {
    signed_elsewhere_is_refused(Some("settleproof:1:0x00000000000000000000000000000000000000aa"), "wrong audience")
        .await
}

/// As above, for what the merchant signed for no network (on a network, or with a client, from
/// before `aud` was required): refused, naming this network.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_the_merchant_signed_for_no_network_is_refused_here() -> Result<()> {
    signed_elsewhere_is_refused(None, "no `aud`").await
}

/// The merchant's root key signing for `audience` (`None`: for no network) elsewhere: a
/// request is refused here saying `why`, and a grant and an invoice it signed, announced and
/// served by the Byzantine operator, are taken by no node.
async fn signed_elsewhere_is_refused(audience: Option<&str>, why: &str) -> Result<()> {
    use crate::merchants::call;
    use reqwest::Method;
    use settleproof_merchant_auth::{KeyAlg, MerchantSigner, SignedStatement};
    let (net, bad) = with_byzantine(Options::default()).await?;
    let mut elsewhere =
        MerchantSigner::from_pem("demo", net.devnet.merchant_key.private_key_pem()).map_err(|e| eyre!("{e}"))?;
    if let Some(audience) = audience {
        elsewhere = elsewhere.with_audience(audience);
    }
    let (status, refused) = call(&net, 0, Method::GET, "/v1/invoices", &elsewhere, None).await?;
    assert_eq!(status, 401, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why) && message.contains(&net.audience()), "{refused}");

    // A grant and an invoice the merchant's root key signed there.
    let holder = net.merchant_signer("demo", KeyAlg::EdDsa)?;
    let body = json!({"name": "staging", "scopes": ["invoices:read"], "public_key": holder.public_key()}).to_string();
    let jwt = elsewhere
        .sign_request(
            "POST",
            "https://staging.example/v1/api-keys",
            body.as_bytes(),
            settleproof_node::time::now_s(),
            60,
        )
        .map_err(|e| eyre!("{e}"))?;
    let key = settleproof_node::merchants::key_of_grant("demo", &SignedStatement { jwt, body })?;
    let by = format!("node-{BAD}");
    let invoice = crate::harness::signed_invoice(
        &net,
        &elsewhere,
        json!({"amount": "5000", "token": "native"}),
        net.devnet.merchant.payout_address,
        &by,
    )?;
    bad.serve_merchants(settleproof_node::merchants::MerchantSnapshot {
        keys: vec![key.clone()],
        ..Default::default()
    });
    for _ in 0..3 {
        assert!(bad.announce_key(key.clone()).await);
        assert!(bad.announce_packed(std::slice::from_ref(&invoice)).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for i in 0..BAD {
        net.eventually("both are refused", Duration::from_secs(20), || async {
            let keys = labelled_metric(&net, i, "merchant_records_refused_total", "kind=\"api_key\"").await;
            let invoices = labelled_metric(&net, i, "merchant_records_refused_total", "kind=\"invoice\"").await;
            (keys >= 1.0 && invoices >= 1.0).then_some(())
        })
        .await?;
        let (status, _) = call(&net, i, Method::GET, "/v1/invoices", &holder, None).await?;
        assert_eq!(status, 401, "node {i} took the key signed elsewhere");
        let path = format!("/v1/invoices/{}", invoice.id);
        let (status, _) = call(&net, i, Method::GET, &path, &net.devnet.merchant_key, None).await?;
        assert_eq!(status, 404, "node {i} holds the invoice signed elsewhere");
    }
    net.stop().await;
    Ok(())
}
