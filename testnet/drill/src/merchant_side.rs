//! The `byzantine` drill's attacks on what the merchant does. Before the Byzantine operator
//! takes over, the merchant (through node 0) grants an API key, creates a webhook endpoint of its
//! own (a sink on loopback) and four that answer only after 9.9 s (a tarpit), and creates an
//! invoice whose signed request the Byzantine operator "captures". Then, during the payment
//! load, the Byzantine operator:
//! - mints a full-scope key in the merchant's name, and revokes the merchant's key, both signed
//!   by a key of its own;
//! - redirects and pauses the merchant's endpoint, and deletes it, with changes signed the same
//!   way, after the merchant's genuine creation;
//! - floods valid re-announcements of the key and the endpoint;
//! - replays the captured request at another node, at the same node, and with another body;
//! - hands out the captured invoice with falsified payment instructions, which the merchant's
//!   own check (`verify-invoice`'s) must refuse.
//!
//! Afterwards every node must still hold the key unrevoked and the endpoint unchanged, hold no
//! forged key, and have refused every replay: anything else counts as a merchant impersonation.
//! The slow endpoints hold back only themselves: the primary endpoint's latency is the verdict's
//! own figure. Everything the drill created is deleted at the end.

use crate::control::Control;
use crate::scenarios::Timeline;
use eyre::{Result, eyre};
use reqwest::Method;
use serde_json::{Value, json};
use settleproof_byzantine::ByzantineOperator;
use settleproof_config::NodeConfig;
use settleproof_merchant_auth::{KeyAlg, MerchantSigner, SignedStatement};
use settleproof_node::merchants::{endpoint_record, invoice_check, key_of_grant};
use settleproof_node::store::ApiKey;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Endpoints of the merchant's own that answer only just before the delivery timeout.
const SLOW_ENDPOINTS: usize = 4;
/// How long they take to answer.
const SLOW_ANSWER: Duration = Duration::from_millis(9_900);
/// Valid re-announcements of each record in the flood.
const FLOOD: usize = 1000;

/// What the merchant made before the attacks.
pub struct Prepared {
    /// The merchant's chain, payments contract and payout address.
    terms: (u64, alloy::primitives::Address, alloy::primitives::Address),
    key: ApiKey,
    endpoint: (String, String, SignedStatement),
    slow: Vec<String>,
    captured: (SignedStatement, Value),
    sink: tokio::task::JoinHandle<()>,
    tarpit: tokio::task::JoinHandle<()>,
}

/// What the attacks left to check.
pub struct Attacked {
    prepared: Prepared,
    forged_key: String,
    replays_accepted: Vec<String>,
    falsified_accepted: Vec<String>,
}

/// The merchant's own request `method url body`, signed for that node; the request and what was
/// signed.
fn signed(ctl: &Control, method: Method, url: &str, body: &str) -> Result<(reqwest::RequestBuilder, SignedStatement)> {
    let now = settleproof_node::time::now_s();
    let jwt = ctl
        .merchant
        .sign_request(method.as_str(), url, body.as_bytes(), now, settleproof_merchant_auth::DEFAULT_LIFETIME_S)
        .map_err(|e| eyre!("signing: {e}"))?;
    let mut req = ctl.http.request(method, url).bearer_auth(&jwt);
    if !body.is_empty() {
        req = req.header("content-type", "application/json").body(body.to_string());
    }
    Ok((req, SignedStatement { jwt, body: body.to_string() }))
}

/// A statement signed by `key` (not the merchant's) in the merchant's name.
fn forged(key: &MerchantSigner, method: &str, url: &str, body: &str) -> Result<SignedStatement> {
    let now = settleproof_node::time::now_s();
    let jwt = key.sign_request(method, url, body.as_bytes(), now, 60).map_err(|e| eyre!("{e}"))?;
    Ok(SignedStatement { jwt, body: body.to_string() })
}

/// A loopback HTTP listener answering every request with 204 after `delay`; its base URL.
async fn listener(delay: Duration) -> Result<(String, tokio::task::JoinHandle<()>)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", l.local_addr()?);
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = 0;
                // Reads the head and as much body as it names, then answers.
                loop {
                    let Ok(n) = conn.read(&mut buf[seen..]).await else { return };
                    if n == 0 {
                        return;
                    }
                    seen += n;
                    let text = String::from_utf8_lossy(&buf[..seen]).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok())
                            })
                            .unwrap_or(0);
                        if seen >= end + 4 + length || seen == buf.len() {
                            break;
                        }
                    }
                }
                tokio::time::sleep(delay).await;
                let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    Ok((url, task))
}

async fn expect_created(req: reqwest::RequestBuilder, what: &str) -> Result<Value> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status != 201 {
        return Err(eyre!("{what}: {status} {body}"));
    }
    Ok(body)
}

impl Prepared {
    /// As the merchant, through node 0: the key, the endpoints and the captured invoice; waits
    /// until every node holds the key and the endpoint.
    pub async fn new(ctl: &Control, cfg: &NodeConfig, tl: &mut Timeline) -> Result<Self> {
        let api = ctl.m.nodes[0].api_url.clone();
        let merchant = ctl.m.merchant.id.clone();
        let chain = cfg.chains.first().ok_or_else(|| eyre!("no chain configured"))?;
        let payout = cfg.merchants.iter().find(|m| m.id == merchant).ok_or_else(|| eyre!("no merchant {merchant}"))?;
        let terms = (chain.chain_id, chain.payments_contract, payout.payout_address);
        let (sink_url, sink) = listener(Duration::ZERO).await?;
        let (tarpit_url, tarpit) = listener(SLOW_ANSWER).await?;
        let holder = ctl.signs_here(MerchantSigner::generate(&merchant, KeyAlg::EdDsa).map_err(|e| eyre!("{e}"))?)?;
        let grant = json!({"name": "drill-billing", "scopes": ["invoices:read"], "public_key": holder.public_key()});
        let (req, grant) = signed(ctl, Method::POST, &format!("{api}/v1/api-keys"), &grant.to_string())?;
        expect_created(req, "granting an API key").await?;
        let key = key_of_grant(&merchant, &grant).map_err(|e| eyre!("{e}"))?;
        let endpoints = format!("{api}{}", endpoint_record::ENDPOINTS_PATH);
        let create = |url: String| {
            json!({"url": url, "enabled_events": ["*"], "secret": settleproof_node::webhook::signature::generate_secret()}).to_string()
        };
        let sink_hook = format!("{sink_url}/hook");
        let (req, creation) = signed(ctl, Method::POST, &endpoints, &create(sink_hook.clone()))?;
        expect_created(req, "creating an endpoint").await?;
        let endpoint = (endpoint_record::endpoint_id_of(&creation), sink_hook, creation);
        let mut slow = Vec::new();
        for k in 0..SLOW_ENDPOINTS {
            let (req, s) = signed(ctl, Method::POST, &endpoints, &create(format!("{tarpit_url}/slow-{k}")))?;
            expect_created(req, "creating a slow endpoint").await?;
            slow.push(endpoint_record::endpoint_id_of(&s));
        }
        let body = json!({"amount": "1000", "token": "native", "chain_id": terms.0, "metadata": {"order": "captured"}});
        let (req, request) = signed(ctl, Method::POST, &format!("{api}/v1/invoices"), &body.to_string())?;
        let answer = expect_created(req, "creating the invoice to capture").await?;
        let prepared = Self { terms, key, endpoint, slow, captured: (request, answer), sink, tarpit };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !prepared.held_everywhere(ctl).await && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        tl.note(format!(
            "the merchant granted key {}, created endpoint {} and {SLOW_ENDPOINTS} endpoints answering after {:.1} s, and an invoice to capture",
            prepared.key.id,
            prepared.endpoint.0,
            SLOW_ANSWER.as_secs_f64()
        ));
        Ok(prepared)
    }

    async fn held_everywhere(&self, ctl: &Control) -> bool {
        for node in &ctl.m.nodes {
            let url = format!("{}{}/{}", node.api_url, endpoint_record::ENDPOINTS_PATH, self.endpoint.0);
            let Ok(req) = ctl.merchant_request(Method::GET, &url, None) else { return false };
            if !req.send().await.is_ok_and(|r| r.status().as_u16() == 200) {
                return false;
            }
        }
        true
    }

    /// The Byzantine operator's attacks, for about `step`; an attack that could not be made is
    /// wrong in the verdict, and what the merchant made is deleted all the same.
    pub async fn attack(self, ctl: &Control, bad: &ByzantineOperator, step: Duration, tl: &mut Timeline) -> Attacked {
        let mut attacked = Attacked {
            prepared: self,
            forged_key: String::new(),
            replays_accepted: Vec::new(),
            falsified_accepted: Vec::new(),
        };
        if let Err(e) =
            attacked.prepared.attack_with(ctl, bad, step, tl, &mut attacked.forged_key).await.map(|(r, f)| {
                attacked.replays_accepted = r;
                attacked.falsified_accepted = f;
            })
        {
            attacked.falsified_accepted.push(format!("the attacks on the merchant's records could not be made: {e:#}"));
        }
        attacked
    }

    async fn attack_with(
        &self,
        ctl: &Control,
        bad: &ByzantineOperator,
        step: Duration,
        tl: &mut Timeline,
        forged_key: &mut String,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let merchant = ctl.m.merchant.id.clone();
        let api = ctl.m.nodes[0].api_url.clone();
        let own = ctl.signs_here(MerchantSigner::generate(&merchant, KeyAlg::EdDsa).map_err(|e| eyre!("{e}"))?)?;
        // A full-scope key of its own, and the merchant's key revoked.
        let grant = json!({"name": "operator", "scopes": ["invoices:write", "invoices:read", "webhooks:manage"],
            "public_key": own.public_key()});
        let forged_grant = forged(&own, "POST", &format!("{api}/v1/api-keys"), &grant.to_string())?;
        let minted = key_of_grant(&merchant, &forged_grant).map_err(|e| eyre!("{e}"))?;
        forged_key.clone_from(&minted.id);
        let mut revoked = self.key.clone();
        revoked.revocation = Some(forged(&own, "DELETE", &format!("{api}/v1/api-keys/{}", self.key.id), "")?);
        revoked.revoked_at_ms = Some(settleproof_node::time::now_ms());
        // The merchant's endpoint redirected and paused, then deleted.
        let (id, _, creation) = &self.endpoint;
        let path = format!("{api}{}/{id}", endpoint_record::ENDPOINTS_PATH);
        let redirect =
            forged(&own, "PATCH", &path, &json!({"url": "https://evil.example/hook", "disabled": true}).to_string())?;
        let delete = forged(&own, "DELETE", &path, "")?;
        let until = Instant::now() + step;
        while Instant::now() < until {
            bad.announce_key(minted.clone()).await;
            bad.announce_key(revoked.clone()).await;
            bad.announce_endpoint(&merchant, id, vec![creation.clone(), redirect.clone()]).await;
            bad.announce_endpoint(&merchant, id, vec![creation.clone(), delete.clone()]).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tl.note("minted a key and revoked the merchant's, redirected, paused and deleted its endpoint, all signed by a key of its own");
        let mut flooded = 0;
        for _ in 0..FLOOD {
            flooded += usize::from(bad.announce_key(self.key.clone()).await);
            flooded += usize::from(bad.announce_endpoint(&merchant, id, vec![creation.clone()]).await);
        }
        tl.note(format!("flooded {flooded} valid re-announcements of the merchant's key and endpoint"));
        let replays_accepted = self.replay(ctl).await?;
        tl.note(format!(
            "replayed the captured request at another node, at the same node and with another body: {} accepted",
            replays_accepted.len()
        ));
        let falsified_accepted = self.falsify(ctl)?;
        tl.note(format!(
            "handed out the captured invoice with falsified instructions and payout: {} passed the merchant's check",
            falsified_accepted.len()
        ));
        Ok((replays_accepted, falsified_accepted))
    }

    /// The captured request sent again: each acceptance is an impersonation.
    async fn replay(&self, ctl: &Control) -> Result<Vec<String>> {
        let (request, _) = &self.captured;
        let mut accepted = Vec::new();
        let other_body = request.body.replace("\"1000\"", "\"1\"");
        for (i, body) in [(1, &request.body), (0, &request.body), (0, &other_body)] {
            let url = format!("{}/v1/invoices", ctl.m.nodes[i].api_url);
            let resp = ctl
                .http
                .post(&url)
                .bearer_auth(&request.jwt)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            if resp.status().is_success() {
                accepted.push(format!(
                    "{} accepted the captured request again ({})",
                    ctl.m.nodes[i].name,
                    resp.status()
                ));
            }
        }
        Ok(accepted)
    }

    /// The captured invoice's answer, falsified as a lying node would hand it out, checked as
    /// the merchant checks it: each falsification that passes is wrong.
    fn falsify(&self, ctl: &Control) -> Result<Vec<String>> {
        let (_, answer) = &self.captured;
        let expected = invoice_check::Expected {
            payments: self.terms.1,
            payout: self.terms.2,
            keys: vec![ctl.merchant.public_key().clone()],
            id: answer["id"].as_str().and_then(|s| s.parse().ok()),
        };
        let mut wrong = Vec::new();
        if let Err(p) = invoice_check::check(answer, &expected) {
            wrong.push(format!("the honest answer fails the merchant's check: {p:?}"));
        }
        let evil = "0x000000000000000000000000000000000000dead";
        let mut redirected = answer.clone();
        redirected["payment_instructions"]["transactions"][0]["to"] = json!(evil);
        let mut repaid = answer.clone();
        repaid["payout_address"] = json!(evil);
        for (what, falsified) in [("redirected instructions", redirected), ("another payout address", repaid)] {
            if invoice_check::check(&falsified, &expected).is_ok() {
                wrong.push(format!("{what} passed the merchant's check"));
            }
        }
        Ok(wrong)
    }
}

impl Attacked {
    /// Every change the merchant did not sign that a node applied (impersonations), and what
    /// else is wrong.
    pub async fn judge(&self, ctl: &Control) -> (Vec<String>, Vec<String>) {
        let mut impersonations = self.replays_accepted.clone();
        let mut wrong = self.falsified_accepted.clone();
        let p = &self.prepared;
        for node in &ctl.m.nodes {
            let keys = format!("{}/v1/api-keys", node.api_url);
            match get(ctl, &keys).await {
                Some((200, v)) => {
                    let listed = v["data"].as_array().cloned().unwrap_or_default();
                    if !self.forged_key.is_empty() && listed.iter().any(|k| k["id"] == self.forged_key.as_str()) {
                        impersonations.push(format!("{} holds key {} the operator minted", node.name, self.forged_key));
                    }
                    match listed.iter().find(|k| k["id"] == p.key.id.as_str()) {
                        Some(k) if !k["revoked_at_ms"].is_null() => {
                            impersonations.push(format!("{} revoked the merchant's key {}", node.name, p.key.id))
                        }
                        Some(_) => {}
                        None => wrong.push(format!("{} does not hold the merchant's key {}", node.name, p.key.id)),
                    }
                }
                other => wrong.push(format!("{}: keys could not be checked ({other:?})", node.name)),
            }
            let url = format!("{}{}/{}", node.api_url, endpoint_record::ENDPOINTS_PATH, p.endpoint.0);
            match get(ctl, &url).await {
                Some((200, e)) if e["url"] == p.endpoint.1.as_str() && e["disabled"] == false => {}
                Some((200, e)) => impersonations.push(format!(
                    "{} changed the merchant's endpoint {} (url {}, disabled {})",
                    node.name, p.endpoint.0, e["url"], e["disabled"]
                )),
                Some((404, _)) => {
                    impersonations.push(format!("{} deleted the merchant's endpoint {}", node.name, p.endpoint.0))
                }
                other => wrong.push(format!("{}: endpoint could not be checked ({other:?})", node.name)),
            }
        }
        (impersonations, wrong)
    }

    /// Deletes what the merchant made for the drill, and stops the listeners.
    pub async fn clean_up(self, ctl: &Control) {
        let api = &ctl.m.nodes[0].api_url;
        let p = self.prepared;
        for id in p.slow.iter().chain(std::iter::once(&p.endpoint.0)) {
            let url = format!("{api}{}/{id}", endpoint_record::ENDPOINTS_PATH);
            if let Ok((req, _)) = signed(ctl, Method::DELETE, &url, "") {
                let _ = req.send().await;
            }
        }
        if let Ok((req, _)) = signed(ctl, Method::DELETE, &format!("{api}/v1/api-keys/{}", p.key.id), "") {
            let _ = req.send().await;
        }
        p.sink.abort();
        p.tarpit.abort();
    }
}

/// `GET url` as the merchant: the status and body, or `None` when the node did not answer.
async fn get(ctl: &Control, url: &str) -> Option<(u16, Value)> {
    let resp = ctl.merchant_request(Method::GET, url, None).ok()?.send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}
