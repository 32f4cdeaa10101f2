//! The real-internet setup on loopback: every provider and the merchant's endpoint behind TLS
//! with a CA made at run time (trusted by the nodes through `SSL_CERT_FILE`), provider URLs that
//! carry an API key, and one provider that never answers. A payment settles and is notified
//! over TLS, and no answer, metric or log line shows a provider URL or any other secret.

use crate::harness::{Options, Testnet};
use eyre::Result;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_settle_over_tls_and_nothing_shows_a_secret() -> Result<()> {
    let rpc_key = format!("sk_rpc_{:016x}", rand_u64());
    let dead_key = format!("sk_dead_{:016x}", rand_u64());
    let dead_port = settleproof_tests::harness::free_port();
    let opts = Options {
        nodes: 4,
        providers: 2,
        processes: true,
        tls: true,
        rpc_path: format!("/rpc/{rpc_key}"),
        dead_rpc: Some(format!("https://localhost:{dead_port}/rpc/{dead_key}")),
        // Every line the node and its libraries write, debug included.
        env: vec![("SETTLEPROOF__NODE__LOG_LEVEL".into(), "debug".into())],
        ..Options::default()
    };
    let net = Testnet::start_with(opts).await?;
    assert!(net.devnet.nodes[0].1.chains[0].rpc_endpoints[0].starts_with("https://localhost:"));
    assert!(net.devnet.merchant.webhook_url.starts_with("https://localhost:"));

    let (status, created) = net.create_invoice(1, json!({"amount": "1000", "token": "native"})).await?;
    assert_eq!(status, 201, "{created}");
    net.pay(&created).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    let settled = net
        .eventually("a settled invoice's webhook over TLS", Duration::from_secs(90), || async {
            net.receiver
                .snapshot()
                .into_iter()
                .find(|r| r.verified && r.body["data"]["invoice"]["id"] == id && !r.body["data"]["receipt"].is_null())
        })
        .await;
    let settled = match settled {
        Ok(s) => s,
        Err(e) => {
            for i in 0..4 {
                let log = std::fs::read_to_string(net.dir.path().join(format!("node-{i}.log"))).unwrap_or_default();
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("webhook"))
                    .collect();
                eprintln!("node-{i}:\n{}", lines[lines.len().saturating_sub(15)..].join("\n"));
            }
            return Err(e);
        }
    };
    assert!(settled.body["data"]["receipt"].is_object());

    // Every answer a caller can get, and every log line.
    let admin = net.devnet.admin_token.expose().to_string();
    let mut seen = String::new();
    for i in 0..4 {
        for path in ["/health/ready", "/status.json", "/metrics", "/"] {
            seen += &net.http.get(format!("{}{path}", net.api(i))).send().await?.text().await?;
        }
        for path in ["/admin/v1/status", "/admin/v1/peers", "/admin/v1/deliveries"] {
            seen += &net.http.get(format!("{}{path}", net.admin(i))).bearer_auth(&admin).send().await?.text().await?;
        }
        seen += &std::fs::read_to_string(net.dir.path().join(format!("node-{i}.log")))?;
    }
    assert!(seen.contains("rpc-2"), "the dead provider should be named by its label somewhere");
    let keys_dir = &net.devnet.nodes[0].1.node.keys_dir;
    let mut secrets = vec![
        ("provider API key", rpc_key.clone()),
        ("dead provider API key", dead_key.clone()),
        ("merchant private key", pem_body(net.devnet.merchant_key.private_key_pem())),
        ("webhook secret", net.devnet.merchant.webhook_secret.expose().to_string()),
        ("admin token", admin.clone()),
    ];
    for file in ["evm.key", "bls.key"] {
        let text = std::fs::read_to_string(keys_dir.join(file))?;
        secrets.push((file, text.trim().trim_start_matches("0x").to_string()));
    }
    for (what, secret) in secrets {
        assert!(secret.len() >= 16, "{what} too short to search for");
        assert!(!seen.contains(&secret), "the {what} appears in an answer or a log");
    }
    net.stop().await;
    Ok(())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

/// The base64 of a PEM file, its armour lines left out.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}
