//! The invoice lifecycle a merchant sees: partial payments accumulate, overpayment, expiry,
//! late payment, and payments in the wrong token.

use crate::harness::Testnet;
use alloy::primitives::{B256, U256};
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_contracts::{InvoicePayments, TestToken};
use std::time::Duration;

async fn create(net: &Testnet, body: Value) -> Result<B256> {
    let (status, v) = net.create_invoice(0, body).await?;
    assert_eq!(status, 201, "{v}");
    Ok(v["id"].as_str().ok_or_else(|| eyre!("no id"))?.parse()?)
}

async fn pay_native(net: &Testnet, id: B256, amount: u64) -> Result<()> {
    let payer = net.payer()?;
    let c = InvoicePayments::new(net.devnet.deployment.payments, &payer);
    let r = c
        .payNative(id, net.devnet.merchant.payout_address)
        .value(U256::from(amount))
        .send()
        .await?
        .get_receipt()
        .await?;
    assert!(r.status());
    Ok(())
}

async fn status_becomes(net: &Testnet, id: B256, want: &str) -> Result<Value> {
    let id = id.to_string();
    net.eventually(&format!("status {want}"), Duration::from_secs(30), || async {
        let (_, v) = net.get_invoice(0, &id).await.ok()?;
        (v["status"] == want).then_some(v)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_over_expired_late_and_wrong_token_payments() -> Result<()> {
    let net = Testnet::start(1).await?;

    let partial = create(&net, json!({"amount": "1000", "token": "native"})).await?;
    pay_native(&net, partial, 400).await?;
    let v = status_becomes(&net, partial, "underpaid").await?;
    assert_eq!(v["amount_paid"], "400");
    pay_native(&net, partial, 600).await?;
    status_becomes(&net, partial, "paid").await?;

    let over = create(&net, json!({"amount": "1000", "token": "native"})).await?;
    pay_native(&net, over, 1500).await?;
    status_becomes(&net, over, "overpaid").await?;

    let late = create(&net, json!({"amount": "1000", "token": "native", "expires_in": 2})).await?;
    status_becomes(&net, late, "expired").await?;
    let late_id = late.to_string();
    let expired = net
        .eventually("invoice.expired webhook", Duration::from_secs(30), || async {
            net.receiver
                .snapshot()
                .into_iter()
                .find(|r| r.body["type"] == "invoice.expired" && r.body["data"]["invoice"]["id"] == late_id.as_str())
        })
        .await?;
    assert!(expired.verified);
    pay_native(&net, late, 1000).await?;
    status_becomes(&net, late, "paid_late").await?;

    let wrong = create(&net, json!({"amount": "1000", "token": "native"})).await?;
    let payer = net.payer()?;
    let token = net.devnet.deployment.token;
    TestToken::new(token, &payer)
        .mint(net.anvil.keys[1].address(), U256::from(1000))
        .send()
        .await?
        .get_receipt()
        .await?;
    TestToken::new(token, &payer)
        .approve(net.devnet.deployment.payments, U256::from(1000))
        .send()
        .await?
        .get_receipt()
        .await?;
    InvoicePayments::new(net.devnet.deployment.payments, &payer)
        .payToken(wrong, net.devnet.merchant.payout_address, token, U256::from(1000))
        .send()
        .await?
        .get_receipt()
        .await?;
    let v = net
        .eventually("token payment seen", Duration::from_secs(30), || async {
            let (_, v) = net.get_invoice(0, &wrong.to_string()).await.ok()?;
            (v["payments"].as_array()?.len() == 1).then_some(v)
        })
        .await?;
    assert_eq!(v["status"], "open", "a payment in another token does not count: {v}");
    assert_eq!(v["payments"][0]["accepted"], false);
    assert!(v["payments"][0]["rejected_reason"].as_str().unwrap_or_default().starts_with("invalid_token"));

    let (status, list) = net
        .merchant_request(reqwest::Method::GET, &format!("{}/v1/invoices?status=paid_late", net.api(0)), None)?
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))?;
    assert_eq!(status, 200);
    let list: Value = list.json().await?;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    net.stop().await;
    Ok(())
}
