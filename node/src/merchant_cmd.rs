//! `settleproof merchant ...`: the merchant's own key and signed requests, for the docs'
//! walkthroughs and for scripts. A merchant's application signs the same way with any JWT
//! library (docs/examples/).

use eyre::{Result, WrapErr, bail};
use settleproof_merchant_auth::{DEFAULT_LIFETIME_S, KeyAlg, MerchantSigner, SignedStatement};
use settleproof_node::cli::MerchantCommand;
use settleproof_node::merchants::endpoint_record::{self, ChangeKind};
use settleproof_node::merchants::invoice_check;
use sha2::Digest;
use std::io::Write;

pub(crate) async fn run(cmd: MerchantCommand) -> Result<()> {
    match cmd {
        MerchantCommand::Keygen { out, alg } => {
            let alg: KeyAlg = alg.parse()?;
            // The merchant id is not part of the key; it is named when signing.
            let signer = MerchantSigner::generate("", alg)?;
            let mut file = {
                let mut o = std::fs::OpenOptions::new();
                o.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                o.open(&out).wrap_err_with(|| format!("{} (an existing key is never overwritten)", out.display()))?
            };
            file.write_all(signer.private_key_pem().as_bytes())?;
            crate::print_json(&serde_json::json!({
                "key_id": signer.key_id(),
                "root_key": signer.public_key(),
                "private_key_file": out,
            }))
        }
        MerchantCommand::CheckoutBundle { dir } => {
            std::fs::create_dir_all(&dir).wrap_err_with(|| format!("creating {}", dir.display()))?;
            let mut written = serde_json::Map::new();
            for (name, text) in settleproof_node::api::checkout::SELF_HOSTED {
                let path = dir.join(name);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .wrap_err_with(|| format!("{} (an existing file is never overwritten)", path.display()))?;
                file.write_all(text.as_bytes())?;
                let sha = sha2::Sha256::digest(text.as_bytes());
                written.insert(path.display().to_string(), hex::encode(sha).into());
            }
            crate::print_json(&serde_json::json!({ "sha256": written }))
        }
        MerchantCommand::Request { method, url, data, headers, key, merchant, audience, also } => {
            let pem = std::fs::read_to_string(&key).wrap_err_with(|| format!("reading {}", key.display()))?;
            let signer = MerchantSigner::from_pem(&merchant, &pem)?.with_audience(audience);
            let body = match &data {
                Some(d) => {
                    // Sent exactly as given: the signature covers these bytes.
                    serde_json::from_str::<serde_json::Value>(d).wrap_err("--data must be JSON")?;
                    d.clone().into_bytes()
                }
                None => Vec::new(),
            };
            let method = method.to_ascii_uppercase();
            for h in &headers {
                let Some((name, _)) = h.split_once(':') else {
                    bail!("--header {h:?}: expected `Name: value`");
                };
                if name.trim().eq_ignore_ascii_case("authorization") {
                    bail!("--header: the Authorization header is the request's signature, made here");
                }
            }
            let mut urls = vec![url.clone()];
            for base in &also {
                let u = reqwest::Url::parse(&url).wrap_err("the URL")?;
                let rest = u.query().map_or(u.path().to_string(), |q| format!("{}?{q}", u.path()));
                urls.push(format!("{}{rest}", base.trim_end_matches('/')));
            }
            if urls.len() > 1 && method == "POST" && !body_has_nonce(&body) {
                let path = reqwest::Url::parse(&url).map(|u| u.path().to_string()).unwrap_or_default();
                if path == settleproof_node::merchants::invoice_record::INVOICES_PATH
                    || path == endpoint_record::ENDPOINTS_PATH
                {
                    bail!("--also with a creation needs a `nonce` in the body, or each node makes its own");
                }
            }
            let sent = Sent { signer: &signer, method: &method, body: &body, json: data.is_some(), headers: &headers };
            // Sent to every node at once, each bounded: a node that never answers holds back none
            // of the others.
            let answers = futures::future::join_all(urls.iter().map(|target| async {
                match tokio::time::timeout(std::time::Duration::from_secs(15), sent.to(target)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(Answer::Failed("no answer within 15 s".into())),
                }
            }))
            .await;
            let mut failed = 0;
            for (i, (target, answer)) in urls.iter().zip(answers).enumerate() {
                if i > 0 {
                    println!("{target}");
                }
                match answer {
                    Ok((status, text)) => {
                        println!("{status}");
                        println!("{text}");
                    }
                    Err(Answer::Forged(e)) => bail!("{target}: {e}"),
                    Err(Answer::Failed(e)) => {
                        eprintln!("{target}: {e}");
                        failed += 1;
                    }
                }
            }
            // Every node must take it: one that answered and kept it to itself is not told
            // apart from one that passed it on.
            if failed > 0 {
                bail!("{failed} of {} nodes did not take the request; send it again", urls.len());
            }
            Ok(())
        }
    }
}

/// One request, as `settleproof merchant request` sends it to each node.
struct Sent<'a> {
    signer: &'a MerchantSigner,
    method: &'a str,
    body: &'a [u8],
    json: bool,
    headers: &'a [String],
}

/// Why a node's answer is not taken.
enum Answer {
    /// It refused, failed or did not answer.
    Failed(String),
    /// It answered an endpoint creation with another id or secret than the request makes.
    Forged(String),
}

/// Whether a JSON body names a `nonce`.
fn body_has_nonce(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("nonce").is_some_and(|n| !n.is_null()))
}

impl Sent<'_> {
    /// Signs it for `url` and sends it there: the status and the answer, or why it is not taken.
    async fn to(&self, url: &str) -> Result<(reqwest::StatusCode, String), Answer> {
        let failed = |e: &dyn std::fmt::Display| Answer::Failed(e.to_string());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| failed(&e))?.as_secs();
        let jwt =
            self.signer.sign_request(self.method, url, self.body, now, DEFAULT_LIFETIME_S).map_err(|e| failed(&e))?;
        // The endpoint a creation makes is named by what was signed: the answer is checked.
        let statement = SignedStatement { jwt: jwt.clone(), body: String::from_utf8_lossy(self.body).into_owned() };
        let creates_endpoint = endpoint_record::read(&statement).is_ok_and(|c| c.kind == ChangeKind::Create);
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).map_err(|e| failed(&e))?;
        let mut req = reqwest::Client::new().request(method, url).bearer_auth(jwt);
        if self.json {
            req = req.header("content-type", "application/json").body(self.body.to_vec());
        }
        for h in self.headers {
            if let Some((name, value)) = h.split_once(':') {
                req = req.header(name.trim(), value.trim());
            }
        }
        let resp = req.send().await.map_err(|e| failed(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| failed(&e))?;
        if status.is_client_error() || status.is_server_error() {
            println!("{status}");
            println!("{text}");
            return Err(Answer::Failed(format!("the node answered {status}")));
        }
        if creates_endpoint {
            let want = endpoint_record::endpoint_id_of(&statement);
            let answer = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
            let sent = serde_json::from_str::<serde_json::Value>(&statement.body).unwrap_or_default();
            if answer["id"].as_str() != Some(want.as_str()) || answer["secret"] != sent["secret"] {
                return Err(Answer::Forged(format!(
                    "the node answered endpoint {} with another id or secret than this request makes ({want}): do not trust this node's answer",
                    answer["id"]
                )));
            }
        }
        Ok((status, text))
    }
}

/// `settleproof verify-invoice`: [`invoice_check::check`] of the answer in `file`.
pub(crate) fn verify_invoice(
    file: &std::path::Path,
    payments: alloy::primitives::Address,
    payout: alloy::primitives::Address,
    keys: &[String],
    id: Option<alloy::primitives::B256>,
) -> Result<()> {
    let text = std::fs::read_to_string(file).wrap_err_with(|| format!("reading {}", file.display()))?;
    let answer: serde_json::Value = serde_json::from_str(&text).wrap_err("the file is not JSON")?;
    let keys = keys.iter().map(|k| public_key(k)).collect::<Result<Vec<_>>>()?;
    match invoice_check::check(&answer, &invoice_check::Expected { payments, payout, keys, id }) {
        Ok(ok) => {
            let token = if ok.token.is_zero() { "native coin".to_string() } else { format!("token {}", ok.token) };
            println!(
                "ok: invoice {} asks {} of the {token} on chain {}, paid to {payout} through {payments}, signed by key {}",
                ok.id, ok.amount, ok.chain_id, ok.key_id
            );
            Ok(())
        }
        Err(problems) => {
            for p in &problems {
                println!("FAIL {p}");
            }
            bail!("{} check(s) failed: do not show this invoice to a payer", problems.len())
        }
    }
}

/// A public key given as a private key file (PEM) or as JSON.
fn public_key(given: &str) -> Result<settleproof_merchant_auth::MerchantKey> {
    if given.trim_start().starts_with('{') {
        let key: settleproof_merchant_auth::MerchantKey = serde_json::from_str(given)
            .wrap_err("--key: a public key as JSON, {\"alg\":\"EdDSA\",\"public_key\":\"<hex>\"}")?;
        key.check()?;
        return Ok(key);
    }
    let pem = std::fs::read_to_string(given).wrap_err_with(|| format!("--key: reading {given}"))?;
    Ok(MerchantSigner::from_pem("", &pem)?.public_key().clone())
}
