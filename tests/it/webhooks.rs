//! Merchant webhooks that are never lost, and receipts a merchant verifies alone: outages,
//! dead-letter queue and replay, delivery failover, per-invoice order, the Standard Webhooks
//! reference library, and `settleproof verify-receipt` on genuine and tampered receipts.

use crate::harness::{Options, Testnet, settleproof_bin};
use alloy::primitives::{B256, U256};
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_contracts::InvoicePayments;
use settleproof_devnet::demo_merchant::Received;
use std::process::Command;
use std::time::Duration;

async fn create(net: &Testnet, amount: &str) -> Result<Value> {
    let (status, created) = net.create_invoice(0, json!({"amount": amount, "token": "native"})).await?;
    assert_eq!(status, 201, "{created}");
    Ok(created)
}

async fn pay_native(net: &Testnet, id: &str, amount: u64) -> Result<()> {
    let payer = net.payer()?;
    let c = InvoicePayments::new(net.devnet.deployment.payments, &payer);
    let id: B256 = id.parse()?;
    c.payNative(id, net.devnet.merchant.payout_address).value(U256::from(amount)).send().await?.get_receipt().await?;
    Ok(())
}

fn delivered_for<'a>(all: &'a [Received], invoice: &str) -> Vec<&'a Received> {
    all.iter().filter(|r| r.answered == 204 && r.body["data"]["invoice"]["id"] == invoice).collect()
}

async fn delivered(net: &Testnet, invoice: &str, count: usize, within: Duration) -> Result<Vec<Received>> {
    net.eventually("deliveries", within, || async {
        let all = net.receiver.snapshot();
        let got: Vec<Received> = delivered_for(&all, invoice).into_iter().cloned().collect();
        let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.webhook_id.as_str()).collect();
        (ids.len() >= count).then_some(got)
    })
    .await
}

fn verify_receipt(net: &Testnet, json: &Value) -> Result<(bool, String)> {
    let file = net.dir.path().join(format!("receipt-{}.json", rand_suffix()));
    std::fs::write(&file, json.to_string())?;
    let out = Command::new(settleproof_bin()?)
        .arg("verify-receipt")
        .arg(&file)
        .arg("--rpc")
        .arg(&net.anvil.url)
        .arg("--settlement")
        .arg(net.devnet.deployment.settlement.to_string())
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    ))
}

fn invoice_id_example(net: &Testnet, json: &Value) -> Result<(bool, String)> {
    let file = net.dir.path().join(format!("webhook-{}.json", rand_suffix()));
    std::fs::write(&file, json.to_string())?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/invoice_id.py");
    let out = Command::new("python3").arg(script).arg(&file).output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    ))
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_verify_alone_and_any_tampering_names_the_failing_check() -> Result<()> {
    let net = Testnet::start(4).await?;
    let created = create(&net, "1000").await?;
    net.pay(&created).await?;
    let id = created["id"].as_str().ok_or_else(|| eyre!("id"))?;
    let event = delivered(&net, id, 1, Duration::from_secs(60)).await?.remove(0);

    // The webhook signature verifies with the Standard Webhooks reference library (Python).
    assert!(
        crate::harness::standard_webhooks_verifies(net.devnet.merchant.webhook_secret.expose(), &event.raw)?,
        "standardwebhooks refused the delivery"
    );

    // The webhook's receipt and the API's receipt both verify.
    let (ok, text) = verify_receipt(&net, &event.body)?;
    assert!(ok, "{text}");
    // The merchant's own recomputation of the invoice id (docs/examples/invoice_id.py) agrees
    // with the nodes', and catches altered terms.
    let (ok, text) = invoice_id_example(&net, &event.body)?;
    assert!(ok && text.contains("matches its terms"), "{text}");
    let mut altered = event.body.clone();
    altered["data"]["receipt"]["invoice"]["amount"] = json!("0x1");
    let (ok, text) = invoice_id_example(&net, &altered)?;
    assert!(!ok && text.contains("does NOT match"), "{text}");
    // Node 2 answers once it has seen the settlement at confirmation depth.
    let api: Value = net
        .eventually("receipt from node 2", Duration::from_secs(30), || async {
            let r = net
                .merchant_request(reqwest::Method::GET, &format!("{}/v1/invoices/{id}/receipt", net.api(2)), None)
                .ok()?
                .send()
                .await
                .ok()?;
            if r.status().as_u16() != 200 {
                return None;
            }
            r.json().await.ok()
        })
        .await?;
    let (ok, text) = verify_receipt(&net, &api)?;
    assert!(ok && text.contains("all checks passed"), "{text}");

    let receipt = event.body["data"]["receipt"].clone();
    let flip = |v: &Value| -> Value {
        let s = v.as_str().unwrap_or_default();
        let last = s.chars().last().map_or('0', |c| if c == '0' { '1' } else { '0' });
        json!(format!("{}{last}", &s[..s.len() - 1]))
    };
    type Tamper = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Tamper, &[&str])> = vec![
        ("amount", Box::new(|r| r["payment"]["amount"] = json!("0x1")), &["leaf_hash"]),
        (
            "root",
            Box::new(move |r| r["batch"]["root"] = flip(&r["batch"]["root"])),
            &["merkle_proof", "settled_on_chain"],
        ),
        (
            "signature",
            Box::new(move |r| r["aggregate_signature"] = flip(&r["aggregate_signature"])),
            &["aggregate_signature"],
        ),
        (
            "signer set",
            Box::new(|r| {
                let k = r["signer_keys"][0].clone();
                r["signer_keys"][0] = r["signer_keys"][1].clone();
                r["signer_keys"][1] = k;
            }),
            &["registered_signers"],
        ),
        ("leaf index", Box::new(|r| r["leaf_index"] = json!(5)), &["merkle_proof"]),
    ];
    for (what, tamper, want) in cases {
        let mut r = receipt.clone();
        tamper(&mut r);
        let (ok, text) = verify_receipt(&net, &r)?;
        assert!(!ok, "{what}: tampered receipt passed:\n{text}");
        for name in want {
            assert!(
                text.lines().any(|l| l.contains("FAIL") && l.contains(name)),
                "{what}: expected {name} to fail:\n{text}"
            );
        }
    }
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_down_then_back_gets_every_event_in_order_per_invoice() -> Result<()> {
    let net =
        Testnet::start_with(Options { retry_schedule_s: vec![0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3], ..Options::default() })
            .await?;
    net.receiver.set_failure(Some(503));
    let a = create(&net, "1000").await?;
    let b = create(&net, "1000").await?;
    let (a, b) = (a["id"].as_str().unwrap_or_default().to_string(), b["id"].as_str().unwrap_or_default().to_string());
    for id in [&a, &b] {
        pay_native(&net, id, 400).await?;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    for id in [&a, &b] {
        pay_native(&net, id, 600).await?;
    }
    net.eventually("several failed attempts", Duration::from_secs(30), || async {
        (net.receiver.snapshot().iter().filter(|r| r.answered == 503).count() >= 4).then_some(())
    })
    .await?;
    net.receiver.set_failure(None);
    for id in [&a, &b] {
        let got = delivered(&net, id, 2, Duration::from_secs(60)).await?;
        let seqs: Vec<u64> = got.iter().filter_map(|r| r.body["data"]["sequence"].as_u64()).collect();
        // Repeats (another operator delivering too) may follow; the first delivery of each
        // event comes in sequence.
        let mut firsts: Vec<u64> = Vec::new();
        for s in &seqs {
            if !firsts.contains(s) {
                firsts.push(*s);
            }
        }
        assert_eq!(firsts, vec![1, 2], "invoice {id} events delivered in order: {seqs:?}");
        let first_of = |n: u64| got.iter().find(|r| r.body["data"]["sequence"] == n).map(|r| &r.body);
        let (one, two) = (first_of(1).ok_or_else(|| eyre!("event 1"))?, first_of(2).ok_or_else(|| eyre!("event 2"))?);
        assert_eq!(two["data"]["previous_event_hash"], one["data"]["event_hash"], "hash chain");
        assert_eq!(two["type"], json!("invoice.paid"));
    }
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_that_keeps_failing_is_dead_lettered_and_replay_delivers_it() -> Result<()> {
    let net = Testnet::start_with(Options { retry_schedule_s: vec![0, 1, 1], ..Options::default() }).await?;
    net.receiver.set_failure(Some(500));
    let created = create(&net, "1000").await?;
    net.pay(&created).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    let admin = net.devnet.admin_token.expose().to_string();
    let dead = net
        .eventually("event dead-lettered", Duration::from_secs(60), || async {
            for i in 0..4 {
                let v: Value = net
                    .http
                    .get(format!("{}/admin/v1/deliveries?invoice={id}&state=dead", net.admin(i)))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                if let Some(e) = v["data"].as_array().and_then(|d| d.first()) {
                    return Some((i, e.clone()));
                }
            }
            None
        })
        .await?;
    let (node, event) = dead;
    assert_eq!(event["attempts_detail"].as_array().map(Vec::len), Some(3), "every attempt is kept: {event}");
    assert_eq!(event["attempts_detail"][0]["status"], 500);
    let text = net.http.get(format!("{}/metrics", net.api(node))).send().await?.text().await?;
    assert!(
        text.lines().any(|l| l.starts_with("webhook_dlq_total") && !l.ends_with(" 0")),
        "webhook_dlq_total counts it"
    );
    let unauthorized = net
        .http
        .post(format!("{}/admin/v1/deliveries/replay", net.admin(node)))
        .json(&json!({"since_ms": 0}))
        .send()
        .await?;
    assert_eq!(unauthorized.status().as_u16(), 401);
    net.receiver.set_failure(None);
    let r: Value = net
        .http
        .post(format!("{}/admin/v1/deliveries/replay", net.admin(node)))
        .bearer_auth(&admin)
        .json(&json!({"since_ms": 0}))
        .send()
        .await?
        .json()
        .await?;
    assert!(r["replayed"].as_u64() >= Some(1), "{r}");
    delivered(&net, &id, 1, Duration::from_secs(30)).await?;
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_delivering_keeper_dies_another_node_delivers_the_same_event() -> Result<()> {
    let mut net = Testnet::start_with(Options {
        processes: true,
        round_length: 3,
        retry_schedule_s: vec![0, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3],
        ..Options::default()
    })
    .await?;
    net.receiver.set_failure(Some(503));
    let created = create(&net, "1000").await?;
    net.pay(&created).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    let first = net
        .eventually("a failed attempt", Duration::from_secs(60), || async {
            net.receiver.snapshot().into_iter().find(|r| r.body["data"]["invoice"]["id"] == id.as_str())
        })
        .await?;
    // The keeper of the payment's round submitted and was delivering: kill it for good.
    let block = first.body["data"]["payment"]["block_number"].as_u64().ok_or_else(|| eyre!("block"))?;
    let cfg = &net.devnet.nodes[0].1;
    let keeper = (((block - cfg.chains[0].start_block) / cfg.rounds.length_blocks) % 4) as usize;
    net.kill9(keeper)?;
    net.receiver.set_failure(None);
    let got = delivered(&net, &id, 1, Duration::from_secs(60)).await?;
    assert_eq!(got[0].webhook_id, first.webhook_id, "another node delivered the same event");
    net.stop().await;
    Ok(())
}

/// Anyone can pay an invented invoice id to the merchant's address (here 1 wei; a worthless
/// token would do as well), and one operator can withhold a real invoice: no operator the
/// nodes ask knows it. Its event is held for the grace (3 s here), then sent bare to the
/// primary endpoint and to an endpoint of the merchant's own that asks for
/// `payment.unknown_invoice`; another of its own endpoints (`*`) is not told.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_of_an_invoice_no_one_knows_waits_then_goes_to_the_primary_and_to_who_asks() -> Result<()> {
    use crate::merchants::call;
    use reqwest::Method;
    let opts = Options {
        processes: true,
        env: vec![("SETTLEPROOF__WEBHOOKS__UNKNOWN_INVOICE_GRACE_S".into(), "3".into())],
        ..Options::default()
    };
    let net = Testnet::start_with(opts).await?;
    let key = net.devnet.merchant_key.clone();
    let mut hooks = Vec::new();
    for events in [json!(["payment.unknown_invoice"]), json!(["*"])] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/webhooks", listener.local_addr()?);
        let secret = settleproof_node::webhook::signature::generate_secret();
        let body = json!({"url": url, "enabled_events": events, "secret": secret});
        let (status, created) = call(&net, 0, Method::POST, "/v1/webhook-endpoints", &key, Some(body)).await?;
        assert_eq!(status, 201, "{created}");
        let hook = settleproof_devnet::demo_merchant::Receiver::new(secret, None);
        tokio::spawn(hook.clone().serve(listener));
        hooks.push((created["id"].as_str().unwrap_or_default().to_string(), hook));
    }
    for i in 0..4 {
        net.eventually("the endpoints are everywhere", Duration::from_secs(15), || async {
            let (_, list) = call(&net, i, Method::GET, "/v1/webhook-endpoints", &key, None).await.ok()?;
            (list["data"].as_array()?.len() == 2).then_some(())
        })
        .await?;
    }
    let ghost = alloy::primitives::keccak256(format!("ghost {}", settleproof_node::time::now_ms())).to_string();
    pay_native(&net, &ghost, 1).await?;
    let about = |r: &Received| r.body["data"]["invoice"]["id"] == ghost.as_str();
    let (asks, star) = (&hooks[0].1, &hooks[1].1);
    let told = net
        .eventually("the endpoint that asks is told", Duration::from_secs(60), || async {
            asks.snapshot().into_iter().find(about)
        })
        .await?;
    assert_eq!(told.body["type"], "payment.settled", "{}", told.body);
    let primary = net
        .eventually("the primary endpoint is told after the grace", Duration::from_secs(60), || async {
            net.receiver.snapshot().into_iter().find(about)
        })
        .await?;
    assert_eq!(primary.body["type"], "payment.settled", "{}", primary.body);
    // The primary's delivery waited for the grace first, on the node that made it; the `*`
    // endpoint's ended unsent.
    let path = format!("/v1/events?invoice={ghost}");
    let star_id = hooks[1].0.clone();
    net.eventually("the waits and the end are recorded", Duration::from_secs(30), || async {
        let (mut waited, mut ended) = (false, false);
        for i in 0..4 {
            let (_, events) = call(&net, i, Method::GET, &path, &key, None).await.ok()?;
            for e in events["data"].as_array()? {
                let outcomes: Vec<&str> =
                    e["attempts"].as_array()?.iter().filter_map(|t| t["outcome"].as_str()).collect();
                waited |= e["endpoint_id"].is_null() && outcomes.contains(&"unknown_invoice_waiting");
                ended |= e["endpoint_id"] == star_id.as_str() && outcomes.contains(&"unknown_invoice");
            }
        }
        (waited && ended).then_some(())
    })
    .await?;
    assert!(star.snapshot().iter().all(|r| !about(r)), "the `*` endpoint was told");
    net.stop().await;
    Ok(())
}
