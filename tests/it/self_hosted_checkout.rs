//! The checkout a merchant serves from its own origin, end to end in headless Chromium: the page
//! and script as a node serves them (and as the merchant's own binary writes them), served by a
//! merchant site on its own port, pinned to what the merchant knows (the invoice's id, its keys,
//! payout address and payments contract). It is shown honest and falsified node answers, and asks
//! two honest nodes, one that says every invoice is settled and one that never answers. It
//! refuses every falsification, offers no pay button for an invoice no node holds, is not fooled
//! by the liar nor stopped by the silent one, and pays the honest invoices (native coin, and a
//! token: approve, then pay) with the transactions it builds itself.

use crate::checkout::{inspect_in_browser, pay_in_browser};
use crate::harness::{Testnet, signed_invoice};
use alloy::primitives::U256;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_contracts::TestToken;
use settleproof_merchant_auth::{KeyAlg, MerchantSigner};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A merchant's site: the downloaded page (one per invoice answer, with its configuration filled
/// in, as the merchant's server would) and the downloaded script.
#[derive(Clone)]
struct Site {
    page: Arc<String>,
    script: Arc<String>,
    configs: Arc<HashMap<String, Value>>,
}

async fn page(State(site): State<Site>, Path(name): Path<String>) -> axum::response::Response {
    let Some(config) = site.configs.get(&name) else { return axum::http::StatusCode::NOT_FOUND.into_response() };
    let open = r#"<script type="application/json" id="settleproof-checkout-config">"#;
    let (head, rest) = site.page.split_once(open).unwrap_or((&site.page, ""));
    let tail = rest.split_once("</script>").map_or("", |(_, t)| t);
    let json = config.to_string().replace('<', "\\u003c");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], format!("{head}{open}{json}</script>{tail}")).into_response()
}

/// Serves `router` on a loopback port; its base URL.
async fn serve(router: axum::Router) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

/// A signed request no node was sent, as the merchant's page would carry it: (id, `{signed_request}`).
fn never_sent(net: &Testnet, key: &MerchantSigner) -> Result<(String, Value)> {
    let inv = signed_invoice(
        net,
        key,
        json!({"amount": "7000", "token": "native", "expires_in": 900}),
        net.devnet.merchant.payout_address,
        "nobody",
    )?;
    Ok((inv.id.to_string(), json!({"signed_request": inv.statement})))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_self_hosted_checkout_refuses_what_a_node_falsified_and_pays_what_the_merchant_signed() -> Result<()> {
    let net = Testnet::start(4).await?;
    let done = net.devnet.merchant.webhook_url.replace("/webhooks", "/events?order=S-1");
    let (status, created) = net
        .create_invoice(
            0,
            json!({"amount": "1000000000000000", "token": "native", "expires_in": 900, "redirect_url": done,
                   "metadata": {"order": "S-1", "note": "<b>é</b>", "lines": [1, 2]}}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    let token = net.devnet.deployment.token;
    let (status, erc20) =
        net.create_invoice(2, json!({"amount": "2500000", "token": token.to_string(), "expires_in": 900})).await?;
    assert_eq!(status, 201, "{erc20}");
    let token_id = erc20["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();

    // The bundle: a node serves it, and the merchant's own binary writes the same files.
    let asset = |name: &str| format!("{}/checkout/assets/self-hosted/{name}", net.api(1));
    let script = net.http.get(asset("settleproof-checkout.js")).send().await?;
    assert_eq!(script.status(), 200);
    let script = script.text().await?;
    let page_html = net.http.get(asset("index.html")).send().await?.text().await?;
    let dir = tempfile::tempdir()?;
    let out = std::process::Command::new(settleproof_tests::harness::settleproof_bin()?)
        .args(["merchant", "checkout-bundle"])
        .arg(dir.path().join("site"))
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bundle = dir.path().join("site/settleproof-checkout.js");
    assert_eq!(std::fs::read_to_string(&bundle)?, script);
    assert_eq!(std::fs::read_to_string(dir.path().join("site/index.html"))?, page_html);
    // Its pure parts hold their tables (keccak, agreed states, nodes, the requests nodes refuse).
    let units = std::process::Command::new("node")
        .current_dir(settleproof_tests::anvil::repo_root())
        .args(["--no-warnings", "tests/browser/self_hosted_units.mjs"])
        .arg(&bundle)
        .arg("node/src/merchants/invoice_bodies.json")
        .output()?;
    assert!(units.status.success(), "{}", String::from_utf8_lossy(&units.stdout));
    // The status route answers any origin, a 404 too (the page counts a node that does not
    // hold the invoice, rather than failing to read it).
    let unknown = net.http.get(format!("{}/checkout/0x{}/status", net.api(1), "ab".repeat(32))).send().await?;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()), Some("*"));
    // The merchant's site serves what its own binary wrote.
    let script = std::fs::read_to_string(&bundle)?;
    let page_html = std::fs::read_to_string(dir.path().join("site/index.html"))?;
    for (node, invoice) in [(1, &id), (2, &id), (1, &token_id), (2, &token_id)] {
        net.eventually("the invoices reach nodes 1 and 2", Duration::from_secs(15), || async {
            net.get_invoice(node, invoice).await.ok().filter(|(status, _)| *status == 200)
        })
        .await?;
    }

    // A node that says every invoice is settled, and one that never answers.
    let liar = serve(axum::Router::new().route(
        "/checkout/{id}/status",
        axum::routing::get(|| async {
            ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], axum::Json(json!({"state": "settled"})))
        }),
    ))
    .await?;
    let hangs = serve(axum::Router::new().route(
        "/checkout/{id}/status",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(600)).await;
            "never"
        }),
    ))
    .await?;

    // What the merchant pins: nothing a node told it.
    let chain = net.devnet.chain_id.to_string();
    let es256 = net.merchant_signer(&net.devnet.merchant.id, KeyAlg::Es256)?;
    let pins = |id: &str| {
        json!({
            "merchant": net.devnet.merchant.id,
            "id": id,
            "keys": [net.devnet.merchant_key.public_key(), es256.public_key()],
            "payout": net.devnet.merchant.payout_address,
            "payments": {chain.clone(): net.devnet.deployment.payments},
            "nodes": [liar, net.api(1), net.api(2)],
            "agree": 2,
        })
    };
    let page_for = |id: &str, answer: &Value| {
        let mut c = pins(id);
        c["invoice"] = answer.clone();
        c
    };
    let evil = "0x000000000000000000000000000000000000dead";
    let mut redirected = created.clone();
    redirected["payment_instructions"]["contract"] = json!(evil);
    redirected["payment_instructions"]["transactions"][0]["to"] = json!(evil);
    let mut other_payout = created.clone();
    other_payout["payout_address"] = json!(evil);
    let mut cheaper = created.clone();
    cheaper["amount"] = json!("1");
    let mut unsigned = created.clone();
    unsigned.as_object_mut().map(|o| o.remove("signed_request"));
    let minimal = json!({"signed_request": created["signed_request"]});
    // An impostor's key, signing the same request in the merchant's name.
    let impostor = net.merchant_signer(&net.devnet.merchant.id, KeyAlg::EdDsa)?;
    let body = created["signed_request"]["body"].as_str().ok_or_else(|| eyre!("no signed body: {created}"))?;
    let jwt = created["signed_request"]["jwt"].as_str().ok_or_else(|| eyre!("no jwt"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let forged_jwt = impostor
        .sign_request("POST", &format!("{}/v1/invoices", net.api(0)), body.as_bytes(), now, 60)
        .map_err(|e| eyre!("{e}"))?;
    let mut forged = created.clone();
    forged["signed_request"]["jwt"] = json!(forged_jwt);
    // The merchant's key id over a signature it never made.
    let at = jwt.len() - 10;
    let flipped = if &jwt[at..=at] == "A" { "B" } else { "A" };
    let mut bad_signature = minimal.clone();
    bad_signature["signed_request"]["jwt"] = json!(format!("{}{flipped}{}", &jwt[..at], &jwt[at + 1..]));
    let mut swapped_body = minimal.clone();
    swapped_body["signed_request"]["body"] = json!(body.replace("1000000000000000", "1000"));
    let (unheld_id, unheld) = never_sent(&net, &net.devnet.merchant_key)?;
    let (es256_id, es256_signed) = never_sent(&net, &es256)?;
    let mut no_agree = page_for(&id, &created);
    no_agree.as_object_mut().map(|o| o.remove("agree"));

    // (page, its configuration, what it must show: None to offer to pay, Some(state) for a state
    // without a pay button, or the refusal's words).
    enum Shows {
        Pay,
        NoPay(&'static str),
        Refusal(&'static str),
    }
    let cases: Vec<(&str, Value, Shows)> = vec![
        ("honest", page_for(&id, &created), Shows::Pay),
        ("honest-minimal", page_for(&id, &minimal), Shows::Pay),
        ("token", page_for(&token_id, &erc20), Shows::Pay),
        ("unheld", page_for(&unheld_id, &unheld), Shows::NoPay("unknown")),
        ("es256-unheld", page_for(&es256_id, &es256_signed), Shows::NoPay("unknown")),
        ("redirected", page_for(&id, &redirected), Shows::Refusal("payment_instructions.contract")),
        ("other-payout", page_for(&id, &other_payout), Shows::Refusal("payout_address")),
        ("cheaper", page_for(&id, &cheaper), Shows::Refusal("amount")),
        ("unsigned", page_for(&id, &unsigned), Shows::Refusal("no signed_request")),
        ("forged", page_for(&id, &forged), Shows::Refusal("none of the merchant's pinned keys")),
        ("bad-signature", page_for(&id, &bad_signature), Shows::Refusal("signature does not hold")),
        ("swapped-body", page_for(&id, &swapped_body), Shows::Refusal("not the one the merchant signed")),
        ("another-invoice", page_for(&id, &erc20), Shows::Refusal("not the one this page is for")),
        ("no-agree", no_agree, Shows::Refusal("agree")),
    ];
    let mut configs: HashMap<String, Value> = cases.iter().map(|(n, c, _)| (n.to_string(), c.clone())).collect();
    // The pages paid: every node listed, one of them lying and one hanging.
    for (name, page_id, answer) in [("pay-native", &id, &minimal), ("pay-token", &token_id, &erc20)] {
        let mut c = page_for(page_id, answer);
        c["nodes"] = json!([liar, hangs, net.api(1), net.api(2)]);
        configs.insert(name.into(), c);
    }
    let site = Site { page: Arc::new(page_html), script: Arc::new(script), configs: Arc::new(configs) };
    let merchant = serve(
        axum::Router::new()
            .route(
                "/pay/settleproof-checkout.js",
                axum::routing::get(|State(s): State<Site>| async move {
                    ([(header::CONTENT_TYPE, "text/javascript")], s.script.as_str().to_string())
                }),
            )
            .route("/pay/{name}", axum::routing::get(page))
            .with_state(site),
    )
    .await?;
    let url = |name: &str| format!("{merchant}/pay/{name}");

    let urls: Vec<String> = cases.iter().map(|(name, _, _)| url(name)).collect();
    let seen = inspect_in_browser(&net, &urls.join(","))?;
    let pages = seen["pages"].as_array().ok_or_else(|| eyre!("no pages: {seen}"))?;
    assert_eq!(pages.len(), cases.len(), "{seen}");
    for ((name, _, shows), shown) in cases.iter().zip(pages) {
        let got = (shown["refused"].as_bool(), shown["pay_visible"].as_bool(), shown["state"].as_str());
        match shows {
            // The liar says settled; the two honest nodes say waiting: the page offers to pay.
            Shows::Pay => assert_eq!(got, (Some(false), Some(true), Some("waiting")), "{name}: {seen}"),
            // Only the liar answers for an invoice no node holds: no pay button.
            Shows::NoPay(state) => assert_eq!(got, (Some(false), Some(false), Some(*state)), "{name}: {seen}"),
            Shows::Refusal(named) => {
                let problems = shown["problems"].as_str().unwrap_or_default();
                assert!(
                    got.0 == Some(true) && got.1 == Some(false) && problems.contains(named),
                    "{name} must be refused naming {named}: {seen}"
                );
            }
        }
    }

    // The pages pay with the transactions they built, and follow the honest nodes to settled.
    let paid = pay_in_browser(&net, &url("pay-native"), None)?;
    assert_eq!(paid["settled"], true, "{paid}");
    assert_eq!(paid["final_url"], done.as_str(), "redirected to the merchant's signed URL: {paid}");
    let (_, read) = net.get_invoice(1, &id).await?;
    assert_eq!(read["settled"], true, "{read}");
    net.webhook_for(&id, Duration::from_secs(30)).await?;
    TestToken::new(token, &net.payer()?)
        .mint(net.anvil.keys[1].address(), U256::from(5_000_000u64))
        .send()
        .await?
        .get_receipt()
        .await?;
    let paid = pay_in_browser(&net, &url("pay-token"), None)?;
    assert_eq!(paid["settled"], true, "{paid}");
    let sent = paid["log"].as_array().map(|l| l.iter().filter(|m| *m == "eth_sendTransaction").count());
    assert_eq!(sent, Some(2), "approve, then pay: {paid}");
    let (_, read) = net.get_invoice(2, &token_id).await?;
    assert_eq!((read["status"].as_str(), read["settled"].as_bool()), (Some("paid"), Some(true)), "{read}");
    net.stop().await;
    Ok(())
}
