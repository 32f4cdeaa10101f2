//! The API contract against a live node: the node serves the committed OpenAPI document, and
//! schemathesis (property-based, from the document) finds no server error and no answer that
//! breaks the document, on every `/v1` operation.

use crate::harness::Testnet;
use eyre::{Result, bail};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_api_keeps_its_openapi_contract() -> Result<()> {
    let net = Testnet::start(1).await?;
    let url = format!("{}/v1/openapi.json", net.api(0));
    let served = net.http.get(&url).send().await?.text().await?;
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))?;
    assert_eq!(served, committed, "the node serves another document than docs/openapi.json");

    // Every request is signed with the merchant's key, over the bytes schemathesis sends.
    let key = net.dir.path().join("merchant.pem");
    std::fs::write(&key, net.devnet.merchant_key.private_key_pem())?;
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/contract/sign_requests.py");
    let merchant = net.devnet.merchant.id.clone();
    let chain_id = net.devnet.chains.first().map_or(0, |c| c.chain_id).to_string();
    let (url, api, audience) = (url.clone(), net.api(0), net.audience());
    // schemathesis keeps a cache in its working directory: not in the repository.
    let scratch = net.dir.path().to_path_buf();
    // schemathesis blocks while it runs; the node's runtime keeps serving on the other worker.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .current_dir(&scratch)
            .args(["-m", "schemathesis.cli", "run", &url, "--url", &api])
            .env("SCHEMATHESIS_HOOKS", hooks)
            .env("SETTLEPROOF_MERCHANT_KEY", &key)
            .env("SETTLEPROOF_MERCHANT_ID", &merchant)
            .env("SETTLEPROOF_CHAIN_ID", &chain_id)
            .env("SETTLEPROOF_AUDIENCE", &audience)
            .args(["--checks", "not_a_server_error,response_schema_conformance,status_code_conformance"])
            .args(["--max-examples", "25", "--seed", "1", "--no-color"])
            .output()
    })
    .await??;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The hook signed what was sent: the merchant's invoices include some schemathesis created.
    let listed: serde_json::Value = net
        .merchant_request(reqwest::Method::GET, &format!("{}/v1/invoices", net.api(0)), None)?
        .send()
        .await?
        .json()
        .await?;
    let created = listed["data"].as_array().map_or(0, Vec::len);
    net.stop().await;
    if created == 0 {
        bail!("no request schemathesis signed was accepted (no invoice created):\n{text}");
    }
    if !out.status.success() {
        bail!("schemathesis found contract violations:\n{text}");
    }
    eprintln!("{}", text.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
    Ok(())
}
