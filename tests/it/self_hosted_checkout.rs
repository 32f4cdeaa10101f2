//! The checkout a merchant serves from its own origin, end to end in headless Chromium: the page
//! and script downloaded from a node, served by a merchant site on its own port, pinned to what
//! the merchant knows (its key, payout address and payments contract). It is shown honest and
//! falsified node answers, and asked for the invoice's state by two honest nodes and a lying
//! one. It refuses every falsification, is not fooled by the liar, and pays the honest invoice
//! with the transaction it builds itself.

use crate::checkout::{inspect_in_browser, pay_in_browser};
use crate::harness::Testnet;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use eyre::{Result, eyre};
use serde_json::{Value, json};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_self_hosted_checkout_refuses_what_a_node_falsified_and_pays_what_the_merchant_signed() -> Result<()> {
    let net = Testnet::start(4).await?;
    let done = net.devnet.merchant.webhook_url.replace("/webhooks", "/events?order=S-1");
    let (status, created) = net
        .create_invoice(
            0,
            json!({"amount": "1000000000000000", "token": "native", "expires_in": 900, "redirect_url": done,
                   "metadata": {"order": "S-1", "note": "<b>é</b>"}}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().ok_or_else(|| eyre!("no id"))?.to_string();
    let token = net.devnet.deployment.token;
    let (status, erc20) =
        net.create_invoice(2, json!({"amount": "2500000", "token": token.to_string(), "expires_in": 900})).await?;
    assert_eq!(status, 201, "{erc20}");

    // The bundle, as a merchant downloads it from any node.
    let asset = |name: &str| format!("{}/checkout/assets/self-hosted/{name}", net.api(1));
    let script = net.http.get(asset("settleproof-checkout.js")).send().await?;
    assert_eq!(script.status(), 200);
    let script = script.text().await?;
    let page_html = net.http.get(asset("index.html")).send().await?.text().await?;
    assert!(page_html.contains("settleproof-checkout-config"), "{page_html:.200}");

    // A node that says every invoice is settled.
    let liar = serve(axum::Router::new().route(
        "/checkout/{id}/status",
        axum::routing::get(|| async {
            ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], axum::Json(json!({"state": "settled"})))
        }),
    ))
    .await?;

    // What the merchant pins: nothing a node told it.
    let chain = net.devnet.chain_id.to_string();
    let pins = json!({
        "merchant": net.devnet.merchant.id,
        "keys": [net.devnet.merchant_key.public_key()],
        "payout": net.devnet.merchant.payout_address,
        "payments": {chain.clone(): net.devnet.deployment.payments},
        "nodes": [liar, net.api(1), net.api(2)],
        "agree": 2,
    });
    let with = |answer: &Value| {
        let mut c = pins.clone();
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
    // An impostor's key, signing the same request in the merchant's name.
    let impostor = MerchantSigner::generate(&net.devnet.merchant.id, KeyAlg::EdDsa).map_err(|e| eyre!("{e}"))?;
    let body = created["signed_request"]["body"].as_str().ok_or_else(|| eyre!("no signed body: {created}"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let jwt = impostor
        .sign_request("POST", &format!("{}/v1/invoices", net.api(0)), body.as_bytes(), now, 60)
        .map_err(|e| eyre!("{e}"))?;
    let mut forged = created.clone();
    forged["signed_request"] = json!({"jwt": jwt, "body": body});

    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("honest", created.clone(), None),
        ("token", erc20.clone(), None),
        ("redirected", redirected, Some("payment_instructions.contract")),
        ("other-payout", other_payout, Some("payout_address")),
        ("cheaper", cheaper, Some("amount")),
        ("unsigned", unsigned, Some("no signed_request")),
        ("forged", forged, Some("none of the merchant's pinned keys")),
    ];
    let site = Site {
        page: Arc::new(page_html),
        script: Arc::new(script),
        configs: Arc::new(cases.iter().map(|(name, answer, _)| (name.to_string(), with(answer))).collect()),
    };
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
    for ((name, _, refusal), shown) in cases.iter().zip(pages) {
        match refusal {
            None => {
                // The liar says settled; the two honest nodes say waiting: the page offers to pay.
                assert_eq!(
                    (shown["refused"].as_bool(), shown["pay_visible"].as_bool(), shown["state"].as_str()),
                    (Some(false), Some(true), Some("waiting")),
                    "{name}: {seen}"
                );
            }
            Some(named) => {
                let problems = shown["problems"].as_str().unwrap_or_default();
                assert!(
                    shown["refused"] == true && shown["pay_visible"] == false && problems.contains(named),
                    "{name} must be refused naming {named}: {seen}"
                );
            }
        }
    }

    // The honest page pays with the transaction it built, and follows the honest nodes to settled.
    let paid = pay_in_browser(&net, &url("honest"), None)?;
    assert_eq!(paid["settled"], true, "{paid}");
    assert_eq!(paid["final_url"], done.as_str(), "redirected to the merchant's signed URL: {paid}");
    let (_, read) = net.get_invoice(1, &id).await?;
    assert_eq!(read["settled"], true, "{read}");
    net.webhook_for(&id, Duration::from_secs(30)).await?;
    net.stop().await;
    Ok(())
}
