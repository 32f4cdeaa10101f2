//! The hosted checkout end to end in headless Chromium: a page served by another node than the
//! one that created the invoice, an injected EIP-1193 wallet (its transactions signed by anvil
//! with the testnet payer's key), "Pay with wallet" clicked, the page reaching "settled" for the
//! native coin and for an ERC-20 (approve, then pay), and the redirect to the merchant's URL.

use crate::harness::Testnet;
use alloy::primitives::U256;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_contracts::TestToken;
use std::time::Duration;

/// Runs `tests/browser/checkout.mjs` on `url`, paying; its JSON verdict.
pub(crate) fn pay_in_browser(net: &Testnet, url: &str, screenshot: Option<&str>) -> Result<Value> {
    browser(net, url, screenshot, false)
}

/// Runs `tests/browser/checkout.mjs` on the comma-separated `urls`, only looking: whether each
/// page refuses its invoice (and why) or offers to pay.
pub(crate) fn inspect_in_browser(net: &Testnet, urls: &str) -> Result<Value> {
    browser(net, urls, None, true)
}

fn browser(net: &Testnet, url: &str, screenshot: Option<&str>, inspect: bool) -> Result<Value> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let payer = net.anvil.keys[1].address().to_string();
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&root).arg("tests/browser/checkout.mjs").args([url, &net.anvil.url, &payer]);
    if let Some(path) = screenshot {
        cmd.arg(path);
    }
    if inspect {
        cmd.env("CHECKOUT_EXPECT", "inspect");
    }
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .ok_or_else(|| eyre!("no verdict from the browser; stderr: {}", String::from_utf8_lossy(&out.stderr)))?;
    Ok(serde_json::from_str(line)?)
}

/// The served page's HTML without JavaScript.
async fn page_html(net: &Testnet, url: &str) -> Result<(u16, String, String)> {
    let resp = net.http.get(url).send().await?;
    let csp = resp.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    Ok((resp.status().as_u16(), csp, resp.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payer_pays_on_the_checkout_page_of_any_node_in_native_coin_and_in_a_token() -> Result<()> {
    let net = Testnet::start(4).await?;
    let done = net.devnet.merchant.webhook_url.replace("/webhooks", "/events?order=C-1");
    let (status, native) = net
        .create_invoice(
            0,
            json!({"amount": "1000000000000000", "token": "native", "expires_in": 900, "redirect_url": done}),
        )
        .await?;
    assert_eq!(status, 201, "{native}");
    let id = native["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    let checkout = native["checkout_url"].as_str().ok_or_else(|| eyre!("no checkout_url: {native}"))?;
    assert!(checkout.ends_with(&format!("/checkout/{id}")), "{checkout}");
    let (status, bad) =
        net.create_invoice(0, json!({"amount": "1", "token": "native", "redirect_url": "javascript:alert(1)"})).await?;
    assert_eq!((status, bad["error"]["field"].as_str()), (400, Some("redirect_url")), "{bad}");

    // Node 1 serves the page once the invoice reached it; without JavaScript it shows the
    // amount, the QR code and what to send, under a policy that allows the node's assets only.
    let on_1 = format!("{}/checkout/{id}", net.api(1));
    let (status, csp, html) = net
        .eventually("node 1 serves the page", Duration::from_secs(15), || async {
            page_html(&net, &on_1).await.ok().filter(|p| p.0 == 200)
        })
        .await?;
    assert_eq!(status, 200);
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    let head: String = html.chars().take(400).collect();
    assert!(html.contains("0.001 ETH") && html.contains("<svg") && html.contains("/payNative?bytes32="), "{head}");
    for attr in ["src=\"", "href=\""] {
        for rest in html.split(attr).skip(1).filter(|r| !r.starts_with("ethereum:")) {
            assert!(rest.starts_with("/checkout/assets/"), "every asset is the node's own: {attr}{rest:.60}");
        }
    }
    let (status, _, _) = page_html(&net, &format!("{}/checkout/0x{}", net.api(1), "ab".repeat(32))).await?;
    assert_eq!(status, 404);

    let native_run = pay_in_browser(&net, &on_1, None)?;
    assert_eq!(native_run["settled"], true, "{native_run}");
    assert_eq!(native_run["final_url"], done.as_str(), "redirected to the merchant: {native_run}");
    let (_, status) = net.get_invoice(1, &id).await?;
    assert_eq!(status["settled"], true, "{status}");

    // An ERC-20 invoice created on node 2, paid on node 3's page: approve, then pay.
    let token = net.devnet.deployment.token;
    let payer = net.payer()?;
    TestToken::new(token, &payer)
        .mint(net.anvil.keys[1].address(), U256::from(5_000_000u64))
        .send()
        .await?
        .get_receipt()
        .await?;
    let (status, erc20) =
        net.create_invoice(2, json!({"amount": "2500000", "token": token.to_string(), "expires_in": 900})).await?;
    assert_eq!(status, 201, "{erc20}");
    let token_id = erc20["id"].as_str().unwrap_or_default().to_string();
    let on_3 = format!("{}/checkout/{token_id}", net.api(3));
    net.eventually("node 3 serves the token page", Duration::from_secs(15), || async {
        page_html(&net, &on_3).await.ok().filter(|p| p.0 == 200 && p.2.contains("2.5 tUSD"))
    })
    .await?;
    let screenshot = std::env::var("CHECKOUT_SCREENSHOT").ok();
    let token_run = pay_in_browser(&net, &on_3, screenshot.as_deref())?;
    assert_eq!(token_run["settled"], true, "{token_run}");
    let calls = token_run["log"].as_array().map(|l| l.iter().filter(|m| *m == "eth_sendTransaction").count());
    assert_eq!(calls, Some(2), "approve, then pay: {token_run}");
    let (_, status) = net.get_invoice(3, &token_id).await?;
    assert_eq!((status["status"].as_str(), status["settled"].as_bool()), (Some("paid"), Some(true)), "{status}");
    net.stop().await;
    Ok(())
}
