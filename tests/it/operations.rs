//! Operations: invariants that halt settlement until an operator resumes it, and the admin
//! switch itself.

use crate::harness::{Options, Testnet};
use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use eyre::{Result, eyre};
use serde_json::{Value, json};
use settleproof_node::keys::OperatorKeys;
use std::time::Duration;

async fn paid_invoice(net: &Testnet) -> Result<String> {
    let (status, created) = net.create_invoice(0, json!({"amount": "1000", "token": "native"})).await?;
    assert_eq!(status, 201);
    net.pay(&created).await?;
    Ok(created["id"].as_str().ok_or_else(|| eyre!("id"))?.to_string())
}

async fn settled(net: &Testnet, id: &str) -> bool {
    matches!(net.get_invoice(0, id).await, Ok((_, v)) if v["settled"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keeper_nonce_out_of_sync_halts_settlement_until_resumed() -> Result<()> {
    let net = Testnet::start_with(Options { nodes: 1, ..Options::default() }).await?;
    let first = paid_invoice(&net).await?;
    net.eventually("first settlement", Duration::from_secs(30), || async { settled(&net, &first).await.then_some(()) })
        .await?;
    // Someone else uses the settlement key: the node's nonce is now out of sync.
    let keys = OperatorKeys::load(&net.devnet.nodes[0].1.node.keys_dir)?;
    let thief =
        ProviderBuilder::new().wallet(EthereumWallet::from(keys.evm.clone())).connect_http(net.anvil.url.parse()?);
    let tx = TransactionRequest::default().with_to(keys.evm.address()).with_value(U256::from(1));
    thief.send_transaction(tx).await?.get_receipt().await?;
    let second = paid_invoice(&net).await?;
    let h = net
        .eventually("halted", Duration::from_secs(30), || async {
            let h = net.health(0).await?;
            (h["chains"][0]["checks"]["settlement"]["halted"] == true).then_some(h)
        })
        .await?;
    assert_eq!(h["chains"][0]["checks"]["settlement"]["halt"]["invariant"], "keeper_nonce_desync", "{h}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!settled(&net, &second).await, "nothing is settled while halted");
    let (status, _) = net.get_invoice(0, &second).await?;
    assert_eq!(status, 200, "reads are still served");
    let admin = net.devnet.admin_token.expose();
    let r = net.http.post(format!("{}/admin/v1/resume", net.admin(0))).send().await?;
    assert_eq!(r.status().as_u16(), 401, "resume needs the admin token");
    let r: Value =
        net.http.post(format!("{}/admin/v1/resume", net.admin(0))).bearer_auth(admin).send().await?.json().await?;
    assert_eq!(r["halted"], false);
    net.eventually("settled after resume", Duration::from_secs(30), || async {
        settled(&net, &second).await.then_some(())
    })
    .await?;
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_halt_stops_settling_and_survives_a_restart() -> Result<()> {
    let mut net = Testnet::start_with(Options { nodes: 1, processes: true, ..Options::default() }).await?;
    let admin = net.devnet.admin_token.expose().to_string();
    let r: Value = net
        .http
        .post(format!("{}/admin/v1/halt", net.admin(0)))
        .bearer_auth(&admin)
        .json(&json!({"reason": "maintenance"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(r["halted"], true);
    let id = paid_invoice(&net).await?;
    net.kill9(0)?;
    net.restart(0)?;
    net.eventually("node up", Duration::from_secs(30), || async { net.health(0).await }).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let s: Value =
        net.http.get(format!("{}/admin/v1/status", net.admin(0))).bearer_auth(&admin).send().await?.json().await?;
    assert_eq!(s["halted"], true, "still halted after the restart: {s}");
    assert!(!settled(&net, &id).await);
    net.http.post(format!("{}/admin/v1/resume", net.admin(0))).bearer_auth(&admin).send().await?;
    net.eventually("settled after resume", Duration::from_secs(30), || async {
        settled(&net, &id).await.then_some(())
    })
    .await?;
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_nothing_and_online_backups_check_clean() -> Result<()> {
    use crate::harness::settleproof_bin;
    let mut net = Testnet::start_with(Options { processes: true, ..Options::default() }).await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(paid_invoice(&net).await?);
    }
    // An online backup while the node works, then a check of the copy.
    let cfg = &net.devnet.nodes[1].0;
    let backup = net.dir.path().join("node-1-backup.redb");
    let out = std::process::Command::new(settleproof_bin()?)
        .args(["store", "backup", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(&backup)
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("online backup"), "{}", String::from_utf8_lossy(&out.stdout));
    let out =
        std::process::Command::new(settleproof_bin()?).args(["store", "check", "--path"]).arg(&backup).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // SIGTERM a node while payments keep coming; it exits within its grace period.
    let took = net.term(1, Duration::from_secs(10))?;
    assert!(took < Duration::from_secs(10));
    for _ in 0..2 {
        ids.push(paid_invoice(&net).await?);
    }
    net.restart(1)?;
    net.wait_ready(1).await?;
    for id in &ids {
        net.eventually("settled on the restarted node", Duration::from_secs(90), || async {
            matches!(net.get_invoice(1, id).await, Ok((_, v)) if v["settled"] == true).then_some(())
        })
        .await?;
    }
    let delivered: std::collections::HashSet<String> = net
        .receiver
        .snapshot()
        .into_iter()
        .filter(|r| r.answered == 204 && ids.iter().any(|i| r.body["data"]["invoice"]["id"] == i.as_str()))
        .map(|r| r.webhook_id)
        .collect();
    assert_eq!(delivered.len(), ids.len(), "one event per payment, none lost");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_rules_and_a_live_nodes_metrics_pass_promtool() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(root.join("docs/deploy/prometheus-rules.yml"))
        .output()?;
    assert!(
        rules.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&rules.stdout),
        String::from_utf8_lossy(&rules.stderr)
    );
    let net = Testnet::start(1).await?;
    let id = paid_invoice(&net).await?;
    net.eventually("settled", Duration::from_secs(30), || async { settled(&net, &id).await.then_some(()) }).await?;
    net.health(0).await;
    let text = net.http.get(format!("{}/metrics", net.api(0))).send().await?.text().await?;
    for name in [
        "rpc_requests_total",
        "rpc_provider_latency_seconds",
        "invoice_verification_latency_seconds",
        "settlement_latency_seconds",
        "webhook_deliveries_total",
        "keeper_selection_rounds_total",
        "peers_connected",
        "chain_head_lag_blocks",
        "keeper_gas_used_total",
        "settlement_halted",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(check.stdin.as_mut().ok_or_else(|| eyre!("stdin"))?, text.as_bytes())?;
    let out = check.wait_with_output()?;
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_page_renders_live_data_in_headless_chromium() -> Result<()> {
    let net = Testnet::start(1).await?;
    let id = paid_invoice(&net).await?;
    net.eventually("settled", Duration::from_secs(30), || async { settled(&net, &id).await.then_some(()) }).await?;
    let (_, v) = net.get_invoice(0, &id).await?;
    let round = v["payments"][0]["round"].as_u64().ok_or_else(|| eyre!("round"))?;
    let profile = net.dir.path().join("chromium-profile");
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("{}/", net.api(0)))
        .output()?;
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(dom.contains("node-0"), "node name rendered:\n{dom}");
    assert!(
        dom.contains("class=\"ready\">ready<") || dom.contains("class=\"degraded\">degraded<"),
        "health rendered:\n{dom}"
    );
    assert!(dom.contains(&format!("<td>{round}</td>")), "the settled round {round} is listed:\n{dom}");
    assert!(dom.contains("operators connected"), "peers rendered");
    assert!(dom.contains("anvil-0 (31337)"), "the chain's card rendered:\n{dom}");
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn providers_that_now_show_other_amounts_for_a_settled_round_halt_settlement() -> Result<()> {
    use alloy::primitives::{Address, B256};
    use alloy::sol_types::SolEvent;
    use settleproof_contracts::InvoicePayments;
    use settleproof_rpc_proxy::Fault;
    let net = Testnet::start_with(Options { nodes: 1, providers: 3, ..Options::default() }).await?;
    let (status, created) = net.create_invoice(0, json!({"amount": "1000", "token": "native"})).await?;
    assert_eq!(status, 201);
    net.pay(&created).await?;
    let id = created["id"].as_str().ok_or_else(|| eyre!("id"))?.to_string();
    // As soon as the keeper recorded the settlement, every provider starts showing an extra
    // payment inside the settled round (in a real block): the audit, run once the settlement is
    // confirmed, finds the stored amounts no longer match what the chain shows.
    let hook = net
        .eventually("settled webhook", Duration::from_secs(60), || async {
            net.receiver.snapshot().into_iter().find(|r| r.body["data"]["invoice"]["id"] == id.as_str())
        })
        .await?;
    let block = hook.body["data"]["payment"]["block_number"].as_u64().ok_or_else(|| eyre!("block"))?;
    let real = net.provider()?.get_block_by_number(block.into()).await?.ok_or_else(|| eyre!("block"))?;
    let data = InvoicePayments::InvoicePaid {
        invoiceId: B256::repeat_byte(0xcc),
        merchant: net.devnet.merchant.payout_address,
        payer: Address::repeat_byte(1),
        token: Address::ZERO,
        amount: U256::from(999u64),
    }
    .encode_log_data();
    let log = json!({
        "address": net.devnet.deployment.payments, "topics": data.topics(), "data": data.data,
        "blockNumber": format!("{block:#x}"), "blockHash": real.header.hash,
        "transactionHash": B256::repeat_byte(0xdd), "transactionIndex": "0x0", "logIndex": "0x7", "removed": false,
    });
    for p in 0..3 {
        net.fault(0, p, Fault::ForgeLog { log: log.clone() });
    }
    let h = net
        .eventually("halted", Duration::from_secs(30), || async {
            let h = net.health(0).await?;
            (h["chains"][0]["checks"]["settlement"]["halted"] == true).then_some(h)
        })
        .await?;
    assert_eq!(h["chains"][0]["checks"]["settlement"]["halt"]["invariant"], "settled_amount_mismatch", "{h}");
    net.stop().await;
    Ok(())
}

/// A real OTLP/HTTP endpoint receives the nodes' spans; one payment's trace holds every stage
/// (from the node that did it), and the merchant's webhook carries the same trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_follows_a_payment_from_its_block_to_the_merchant() -> Result<()> {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                if let Ok(mut v) = sink.lock() {
                    v.push(body.0);
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let collector = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let net =
        Testnet::start_with(Options { processes: true, otlp_endpoint: Some(collector), ..Options::default() }).await?;
    net.http.get(format!("{}/health/live", net.api(0))).header("x-request-id", "trace-me-1").send().await?;
    let (status, created) = net.create_invoice(0, json!({"amount": "1000", "token": "native"})).await?;
    assert_eq!(status, 201, "{created}");
    net.pay(&created).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    let delivery = net
        .eventually("the settled invoice's webhook", Duration::from_secs(60), || async {
            net.receiver.snapshot().into_iter().find(|r| r.verified && r.body["data"]["invoice"]["id"] == id.as_str())
        })
        .await?;
    let trace = settleproof_node::trace_context::trace_id(&delivery.webhook_id);
    assert!(
        delivery.raw.traceparent.starts_with(&format!("00-{trace}-")),
        "traceparent {} is not the payment's trace {trace}",
        delivery.raw.traceparent
    );
    let spans = |all: &[Value]| -> Vec<Value> {
        all.iter()
            .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
            .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let stages = ["watch_range", "sign_round", "aggregate", "settle", "deliver"];
    net.eventually(
        "every stage of the payment's trace at the collector, and a quorum's signing",
        Duration::from_secs(30),
        || async {
            let all = spans(&received.lock().ok()?.clone());
            let names: Vec<String> = all
                .iter()
                .filter(|s| s["traceId"].as_str() == Some(trace.as_str()))
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect();
            // Each node exports its spans in its own batches: the signing of the other nodes
            // may arrive after the first complete set of stages.
            let signed = names.iter().filter(|n| *n == "sign_round").count();
            (stages.iter().all(|st| names.iter().any(|n| n == st)) && signed >= 3).then_some(names)
        },
    )
    .await?;
    let all = spans(&received.lock().map_err(|_| eyre::eyre!("lock"))?.clone());
    let request = all
        .iter()
        .find(|s| s["name"] == "request" && s["attributes"].to_string().contains("trace-me-1"))
        .ok_or_else(|| eyre::eyre!("no span of the API request"))?;
    assert_eq!(request["traceId"].as_str().map(str::len), Some(32));
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_api_cuts_and_restores_the_link_to_one_operator() -> Result<()> {
    let net = Testnet::start(2).await?;
    let admin = net.devnet.admin_token.expose().to_string();
    let peers = |i: usize| {
        let (net, admin) = (&net, admin.clone());
        async move {
            let r = net.http.get(format!("{}/admin/v1/peers", net.admin(i))).bearer_auth(&admin).send().await.ok()?;
            r.json::<Value>().await.ok()
        }
    };
    let other = net
        .eventually("connected", Duration::from_secs(20), || async { peers(1).await.filter(|v| v["connected"] == 1) });
    let me = other.await?;
    let peer_of_1 = me["local_peer_id"].as_str().unwrap_or_default().to_string();
    let post = |path: &'static str, body: Value| {
        let (net, admin) = (&net, admin.clone());
        async move {
            let r = net.http.post(format!("{}/admin/v1/peers/{path}", net.admin(0))).bearer_auth(&admin).json(&body);
            let r = r.send().await?;
            Ok::<_, eyre::Report>((r.status().as_u16(), r.text().await?))
        }
    };
    let (status, text) = post("block", json!({"peer_id": "not-a-peer"})).await?;
    assert_eq!(status, 400);
    assert!(text.contains("peer_id"), "the error names the field: {text}");
    assert_eq!(post("block", json!({"peer_id": peer_of_1})).await?.0, 200);
    net.eventually("link cut", Duration::from_secs(10), || async { peers(0).await.filter(|v| v["connected"] == 0) })
        .await?;
    assert_eq!(post("unblock", json!({"peer_id": peer_of_1})).await?.0, 200);
    net.eventually("link restored", Duration::from_secs(30), || async {
        peers(0).await.filter(|v| v["connected"] == 1)
    })
    .await?;
    net.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settlements_of_back_to_back_rounds_queue_without_a_false_nonce_desync() -> Result<()> {
    // One operator keeps every round; a payment lands in every block and rounds are one block
    // long, so a round comes due while the previous round's settlement is being mined. Halted
    // and resumed in the middle, it also has several rounds due at once, as after a partition.
    let net = Testnet::start_with(Options { nodes: 1, round_length: 1, ..Options::default() }).await?;
    let admin = net.devnet.admin_token.expose().to_string();
    let mut ids = Vec::new();
    for k in 0..10 {
        if k == 4 {
            net.http.post(format!("{}/admin/v1/halt", net.admin(0))).bearer_auth(&admin).send().await?;
        }
        if k == 7 {
            net.http.post(format!("{}/admin/v1/resume", net.admin(0))).bearer_auth(&admin).send().await?;
        }
        ids.push(paid_invoice(&net).await?);
    }
    for id in &ids {
        net.eventually("settled", Duration::from_secs(40), || async { settled(&net, id).await.then_some(()) }).await?;
    }
    let s: Value =
        net.http.get(format!("{}/admin/v1/status", net.admin(0))).bearer_auth(&admin).send().await?.json().await?;
    assert_eq!(s["halted"], false, "no invariant tripped: {s}");
    net.stop().await;
    Ok(())
}
