//! One operator of four is Byzantine towards the merchant's own records: it announces keys the
//! merchant never signed. (The settlement side's Byzantine tests are in `byzantine`.)

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
    use crate::merchants::{grant_key, signed_call};
    use reqwest::Method;
    use settleproof_merchant_auth::{KeyAlg, MerchantSigner, SignedStatement};
    let (net, bad) = with_byzantine(Options::default()).await?;
    let (status, created, genuine) = grant_key(&net, 0, "reader", &["invoices:read"]).await?;
    assert_eq!(status, 201, "{created}");
    for i in 0..BAD {
        net.eventually("the genuine key is everywhere", Duration::from_secs(15), || async {
            (signed_call(&net, i, Method::GET, "/v1/invoices", &genuine, None).await.ok()?.0 == 200).then_some(())
        })
        .await?;
    }
    // The operator's own key pair, granted in the merchant's name with its own signature.
    let minted = MerchantSigner::generate("demo", KeyAlg::EdDsa).map_err(|e| eyre!("{e}"))?;
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
        let (status, answer) = signed_call(&net, i, Method::GET, "/v1/invoices", &minted, None).await?;
        assert_eq!(status, 401, "node {i} took the minted key: {answer}");
        let invoice = json!({"amount": "1000", "token": "native"});
        let (status, _) = signed_call(&net, i, Method::POST, "/v1/invoices", &genuine, Some(invoice)).await?;
        assert_eq!(status, 403, "node {i} widened the genuine key");
        let (status, _) = signed_call(&net, i, Method::GET, "/v1/invoices", &genuine, None).await?;
        assert_eq!(status, 200, "node {i} revoked the genuine key");
    }
    net.stop().await;
    Ok(())
}
