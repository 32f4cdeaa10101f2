//! Merchant-signed requests, end to end: a request one node saw is useless at every other node
//! and at the same node again, whatever body it is sent with.

use crate::harness::{Testnet, signed};
use eyre::{Result, eyre};
use reqwest::Method;
use serde_json::{Value, json};

async fn send(net: &Testnet, url: &str, jwt: &str, body: &Value) -> Result<(u16, Value)> {
    let resp = net
        .http
        .post(url)
        .bearer_auth(jwt)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body)?)
        .send()
        .await?;
    Ok((resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null)))
}

fn jwt_of(req: &reqwest::RequestBuilder) -> Result<String> {
    let built = req.try_clone().ok_or_else(|| eyre!("clone"))?.build()?;
    let auth = built.headers().get("authorization").ok_or_else(|| eyre!("no authorization"))?.to_str()?;
    Ok(auth.trim_start_matches("Bearer ").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_request_captured_at_one_node_is_refused_at_every_node_and_again_at_the_same_one() -> Result<()> {
    let net = Testnet::start(4).await?;
    let body = json!({"amount": "1000000000000000", "token": "native"});
    let at3 = format!("{}/v1/invoices", net.api(3));
    let at0 = format!("{}/v1/invoices", net.api(0));
    // The merchant's own request at node 3: accepted once.
    let req = net.merchant_request(Method::POST, &at3, Some(&body))?;
    let jwt = jwt_of(&req)?;
    let (status, created) = send(&net, &at3, &jwt, &body).await?;
    assert_eq!(status, 201, "{created}");
    // Node 3 presents it at node 0, with the same body and with its own.
    let other = json!({"amount": "5", "token": "native"});
    for (b, why) in [(&body, "same body"), (&other, "another body")] {
        let (status, answer) = send(&net, &at0, &jwt, b).await?;
        assert_eq!(status, 401, "replayed at node 0 with the {why}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("wrong host"), "{why}: {answer}");
    }
    // And at node 3 again.
    let (status, answer) = send(&net, &at3, &jwt, &body).await?;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("replayed"), "{answer}");
    let (status, answer) = send(&net, &at3, &jwt, &other).await?;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("reqHash"), "{answer}");
    // A key no merchant holds is refused, and names the key.
    let stranger =
        settleproof_merchant_auth::MerchantSigner::generate("demo", settleproof_merchant_auth::KeyAlg::Es256)
            .map_err(|e| eyre!("{e}"))?;
    let forged = jwt_of(&signed(&net.http, &stranger, Method::POST, &at0, Some(&body))?)?;
    let (status, answer) = send(&net, &at0, &forged, &body).await?;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains(stranger.key_id()), "{answer}");
    // The merchant's fresh signature works at node 0, and only the refusals above were counted.
    let (status, fresh) = net.create_invoice(0, body.clone()).await?;
    assert_eq!(status, 201, "{fresh}");
    let refused = net.metric(0, "merchant_requests_refused_total").await;
    assert_eq!(refused, 5.0, "refusals counted (the four nodes share one recorder)");
    Ok(())
}
