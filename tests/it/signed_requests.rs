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
    let body = net.on_first_chain(json!({"amount": "1000000000000000", "token": "native"}));
    let at3 = format!("{}/v1/invoices", net.api(3));
    let at0 = format!("{}/v1/invoices", net.api(0));
    // The merchant's own request at node 3: accepted once.
    let req = net.merchant_request(Method::POST, &at3, Some(&body))?;
    let jwt = jwt_of(&req)?;
    let (status, created) = send(&net, &at3, &jwt, &body).await?;
    assert_eq!(status, 201, "{created}");
    // Node 3 presents it at node 0, with the same body and with its own.
    let other = net.on_first_chain(json!({"amount": "5", "token": "native"}));
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
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("replayed"), "{answer}");
    // A fresh signature sent with another body than the one it signed.
    let fresh = jwt_of(&net.merchant_request(Method::POST, &at0, Some(&body))?)?;
    let (status, answer) = send(&net, &at0, &fresh, &other).await?;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("reqHash"), "{answer}");
    // A key no merchant holds is refused, and names the key.
    let stranger = net.merchant_signer("demo", settleproof_merchant_auth::KeyAlg::Es256)?;
    let forged = jwt_of(&signed(&net.http, &stranger, Method::POST, &at0, Some(&body))?)?;
    let (status, answer) = send(&net, &at0, &forged, &body).await?;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains(stranger.key_id()), "{answer}");
    // The merchant's fresh signature works at node 0, and only the refusals above were counted.
    let (status, fresh) = net.create_invoice(0, body.clone()).await?;
    assert_eq!(status, 201, "{fresh}");
    let refused = net.metric(0, "merchant_requests_refused_total").await;
    assert_eq!(refused, 6.0, "refusals counted (the four nodes share one recorder)");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_makes_a_key_and_sends_a_request_signed_with_the_merchants_key() -> Result<()> {
    let net = Testnet::start(1).await?;
    let dir = tempfile::tempdir()?;
    let bin = crate::harness::settleproof_bin()?;
    // keygen writes a key that signs as the key id it prints, and never overwrites it.
    let out = dir.path().join("merchant.pem");
    let made =
        std::process::Command::new(&bin).args(["merchant", "keygen", "--alg", "ES256", "--out"]).arg(&out).output()?;
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let printed: Value = serde_json::from_slice(&made.stdout)?;
    let pem = std::fs::read_to_string(&out)?;
    let signer = settleproof_merchant_auth::MerchantSigner::from_pem("demo", &pem).map_err(|e| eyre!("{e}"))?;
    assert_eq!(printed["key_id"], signer.key_id());
    assert_eq!(printed["root_key"]["alg"], "ES256");
    let again = std::process::Command::new(&bin).args(["merchant", "keygen", "--out"]).arg(&out).output()?;
    assert!(!again.status.success(), "an existing key was overwritten");
    // request signs with the testnet merchant's key and sends.
    let key = dir.path().join("demo.pem");
    std::fs::write(&key, net.devnet.merchant_key.private_key_pem())?;
    let url = format!("{}/v1/invoices", net.api(0));
    let data = net.on_first_chain(json!({"amount": "1000", "token": "native"})).to_string();
    let audience = net.audience();
    // Without the network it is for, the command refuses to sign.
    let unnamed = tokio::process::Command::new(&bin)
        .args(["merchant", "request", "POST", &url, "--data", &data, "--merchant", "demo", "--key"])
        .arg(&key)
        .env_remove("SETTLEPROOF_AUDIENCE")
        .output()
        .await?;
    assert!(!unnamed.status.success() && String::from_utf8_lossy(&unnamed.stderr).contains("--audience"));
    let sent = tokio::process::Command::new(&bin)
        .args(["merchant", "request", "POST", &url, "--data", &data, "--merchant", "demo", "--audience", &audience])
        .arg("--key")
        .arg(&key)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success() && stdout.starts_with("201"), "{stdout} {}", String::from_utf8_lossy(&sent.stderr));
    // A key the registry does not hold is refused, and the command says so by its exit status.
    let refused = tokio::process::Command::new(&bin)
        .args(["merchant", "request", "GET", &url, "--merchant", "demo", "--audience", &audience, "--key"])
        .arg(&out)
        .output()
        .await?;
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stdout).starts_with("401"));

    // The merchant checks the answer before showing it to a payer; a node's falsified answer
    // fails, naming what is wrong.
    let created: Value = serde_json::from_str(stdout.lines().nth(1).unwrap_or_default())?;
    let payments = net.devnet.deployment.payments.to_string();
    let payout = net.devnet.merchant.payout_address.to_string();
    // Both the CLI and the Python example (docs/examples/verify_invoice.py) check it.
    let python = settleproof_tests::anvil::repo_root().join("docs/examples/verify_invoice.py");
    let verify = |answer: Value, with_python: bool| {
        let (bin, key, payments, payout, file, python) = (
            bin.clone(),
            key.clone(),
            payments.clone(),
            payout.clone(),
            dir.path().join("answer.json"),
            python.clone(),
        );
        async move {
            std::fs::write(&file, answer.to_string())?;
            let mut cmd = if with_python {
                let mut c = tokio::process::Command::new("python3");
                c.arg(&python).arg(&file);
                c
            } else {
                let mut c = tokio::process::Command::new(&bin);
                c.arg("verify-invoice").arg(&file);
                c
            };
            let out = cmd.args(["--payments", &payments, "--payout", &payout, "--key"]).arg(&key).output().await?;
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            Ok::<_, eyre::Report>((out.status.success(), said))
        }
    };
    for with_python in [false, true] {
        let (ok, said) = verify(created.clone(), with_python).await?;
        assert!(ok && said.starts_with("ok: invoice"), "python {with_python}: {said}");
    }
    let mut redirected = created.clone();
    let evil = "0x6666666666666666666666666666666666666666";
    redirected["payment_instructions"]["transactions"][0]["to"] = json!(evil);
    let mut other_payout = created.clone();
    other_payout["payout_address"] = json!(evil);
    let mut cheaper = created;
    cheaper["amount"] = json!("1");
    for (answer, named, python_names) in [
        (redirected, "payment transaction 0", "payment transactions"),
        (other_payout, "payout_address", "payout_address"),
        (cheaper, "amount", "amount"),
    ] {
        let (ok, said) = verify(answer.clone(), false).await?;
        assert!(!ok && said.contains(named), "{named}: {said}");
        let (ok, said) = verify(answer, true).await?;
        assert!(!ok && said.contains(python_names), "python, {python_names}: {said}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_and_typescript_examples_sign_requests_a_node_accepts() -> Result<()> {
    let net = Testnet::start(1).await?;
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("demo.pem");
    std::fs::write(&key, net.devnet.merchant_key.private_key_pem())?;
    let root = settleproof_tests::anvil::repo_root();
    let url = format!("{}/v1/invoices", net.api(0));
    let body =
        net.on_first_chain(json!({"amount": "1000", "token": "native", "metadata": {"order": "ex-1"}})).to_string();
    let examples: [(&str, Vec<String>); 2] = [
        ("python", vec!["python3".into(), root.join("docs/examples/merchant_client.py").display().to_string()]),
        (
            "typescript",
            vec![
                root.join("node_modules/.bin/tsx").display().to_string(),
                root.join("docs/examples/merchant_client.ts").display().to_string(),
            ],
        ),
    ];
    let audience = net.devnet.merchant_key.audience().ok_or_else(|| eyre!("the testnet signs for its network"))?;
    for (name, cmd) in examples {
        let run_for = |args: Vec<String>, aud: &str| {
            let mut c = tokio::process::Command::new(&cmd[0]);
            c.args(&cmd[1..]).args(args).env("SETTLEPROOF_MERCHANT_ID", "demo").env("SETTLEPROOF_MERCHANT_KEY", &key);
            c.env("SETTLEPROOF_AUDIENCE", aud).current_dir(&root).output()
        };
        let run = |args: Vec<String>| run_for(args, audience);
        // Signed for another network: refused, naming both.
        let elsewhere = run_for(
            vec!["POST".into(), url.clone(), body.clone()],
            "settleproof:1:0x00000000000000000000000000000000000000aa",
        )
        .await?;
        let out = String::from_utf8_lossy(&elsewhere.stdout);
        assert!(
            !elsewhere.status.success() && out.starts_with("401") && out.contains("wrong audience"),
            "{name}: {out}"
        );
        let created = run(vec!["POST".into(), url.clone(), body.clone()]).await?;
        let out = String::from_utf8_lossy(&created.stdout);
        assert!(
            created.status.success() && out.starts_with("201"),
            "{name}: {out} {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let id = out
            .lines()
            .nth(1)
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
            .and_then(|v| v["id"].as_str().map(String::from));
        let id = id.ok_or_else(|| eyre!("{name}: no id in {out}"))?;
        let read = run(vec!["GET".into(), format!("{}/v1/invoices/{id}?expand=none", net.api(0))]).await?;
        let out = String::from_utf8_lossy(&read.stdout);
        assert!(
            read.status.success() && out.starts_with("200"),
            "{name}: {out} {}",
            String::from_utf8_lossy(&read.stderr)
        );
    }
    Ok(())
}
