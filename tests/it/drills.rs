//! The chaos drills in their short form, through the scripts an operator runs: `up.sh` (on ports
//! and in a directory of its own, so a testnet someone runs by hand is left alone), then
//! `chaos.sh all --quick`, whose exit code is the verdict, then `down.sh`, which must leave no
//! process behind.

use eyre::{Result, bail, eyre};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Scripted {
    root: PathBuf,
    dir: tempfile::TempDir,
    target: PathBuf,
    /// Port variables of this testnet, apart from any other.
    ports: Vec<(&'static str, String)>,
    env: Vec<(&'static str, String)>,
}

/// The ports of a testnet whose ports start at `base` (18000: the drills).
fn ports(base: u16) -> Vec<(&'static str, String)> {
    [
        ("ANVIL_PORT", 545),
        ("PROXY_PORT", 600),
        ("API_PORT", 700),
        ("P2P_PORT", 1700),
        ("ADMIN_PORT", 800),
        ("MERCHANT_PORT", 1999),
    ]
    .into_iter()
    .map(|(k, off)| (k, (base + off).to_string()))
    .collect()
}

fn scripted(base: u16, env: Vec<(&'static str, String)>) -> Result<Scripted> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // The test binary lives in <target>/debug/deps.
    let exe = std::env::current_exe()?;
    let target = exe.ancestors().nth(3).ok_or_else(|| eyre!("no target dir above {}", exe.display()))?.to_path_buf();
    Ok(Scripted { root, dir: tempfile::tempdir()?, target, ports: ports(base), env })
}

impl Scripted {
    fn run(&self, script: &str, args: &[&str]) -> Result<std::process::ExitStatus> {
        Ok(Command::new("bash")
            .arg(self.root.join("testnet").join(script))
            .args(args)
            .current_dir(&self.root)
            .env("SETTLEPROOF_TESTNET_DIR", self.dir.path())
            .env("CARGO_TARGET_DIR", &self.target)
            .envs(self.ports.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .status()?)
    }

    fn pids(&self) -> Vec<u32> {
        std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
            .collect()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = self.run("down.sh", &[]);
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
}

#[test]
fn every_chaos_drill_passes_in_its_quick_form() -> Result<()> {
    let net = scripted(18000, Vec::new())?;
    if !net.run("up.sh", &["--nodes", "4"])?.success() {
        bail!("up.sh failed");
    }
    if net.run("up.sh", &[])?.success() {
        bail!("a second up.sh must refuse to start another testnet");
    }
    let drills = net.run("chaos.sh", &["all", "--quick"])?;
    let pids = net.pids();
    assert!(!pids.is_empty(), "up.sh records its processes");
    assert!(net.run("down.sh", &[])?.success());
    assert!(pids.iter().all(|p| !alive(*p)), "down.sh leaves no process behind");
    assert!(drills.success(), "a drill lost a payment or got something wrong (see the verdicts above)");
    Ok(())
}

/// `up.sh --chains 2` starts two anvils with their own chain ids and contracts, and
/// `chaos.sh chain-down --quick` stops the second during a load on both: the first chain's
/// invoices settle meanwhile, the second's once it is back, and every node names the chain
/// that is down without going unready.
#[test]
fn up_sh_runs_two_chains_and_the_chain_down_drill_passes() -> Result<()> {
    let net = scripted(21000, Vec::new())?;
    if !net.run("up.sh", &["--nodes", "4", "--chains", "2"])?.success() {
        bail!("up.sh --chains 2 failed");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(net.dir.path().join("testnet.json"))?)?;
    let chains = manifest["chains"].as_array().cloned().unwrap_or_default();
    assert_eq!(chains.len(), 2, "{manifest}");
    assert_eq!((chains[0]["chain_id"].as_u64(), chains[1]["chain_id"].as_u64()), (Some(31337), Some(31338)));
    for c in &chains {
        assert!(c["anvil"]["pid"].as_u64().is_some(), "{c}");
        assert!(c["contracts"]["settlement"].as_str().is_some(), "{c}");
    }
    assert_eq!(manifest["chain_id"], chains[0]["chain_id"], "the top-level fields describe the first chain");
    let drill = net.run("chaos.sh", &["chain-down", "--quick"])?;
    let pids = net.pids();
    assert!(net.run("down.sh", &[])?.success());
    assert!(pids.iter().all(|p| !alive(*p)), "down.sh stops both anvils too");
    assert!(drill.success(), "chain-down lost a payment or got something wrong (see the verdict above)");
    Ok(())
}

/// `up.sh --webhook-url https://…` with `SSL_CERT_FILE` naming the CA of that endpoint: the
/// testnet's nodes deliver to it over TLS, as to a merchant on the internet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_sh_delivers_to_an_https_merchant_trusted_through_ssl_cert_file() -> Result<()> {
    use alloy::network::EthereumWallet;
    use alloy::providers::{Provider, ProviderBuilder};
    use settleproof_devnet::demo_merchant::Receiver;
    use settleproof_tests::harness::{eventually, free_port, pay_with};
    use std::time::Duration;
    let scratch = tempfile::tempdir()?;
    let ca = settleproof_tests::tls::TestCa::generate(scratch.path())?;
    let (tls_port, plain_port) = (free_port(), free_port());
    ca.terminate(([127, 0, 0, 1], tls_port).into(), ([127, 0, 0, 1], plain_port).into()).await?;
    let net = scripted(20000, vec![("SSL_CERT_FILE", ca.ca_file.display().to_string())])?;
    let url = format!("https://localhost:{tls_port}/webhooks");
    if !net.run("up.sh", &["--nodes", "1", "--webhook-url", &url])?.success() {
        bail!("up.sh failed");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(net.dir.path().join("testnet.json"))?)?;
    let secret = manifest["merchant"]["webhook_secret"].as_str().ok_or_else(|| eyre!("no webhook secret"))?;
    let rx = Receiver::new(secret.to_string(), None);
    rx.clone().spawn(([127, 0, 0, 1], plain_port).into()).await?;
    let api = manifest["nodes"][0]["api_url"].as_str().ok_or_else(|| eyre!("no api_url"))?.to_string();
    let pem = manifest["merchant"]["private_key_pem"].as_str().ok_or_else(|| eyre!("no merchant key"))?;
    let id = manifest["merchant"]["id"].as_str().ok_or_else(|| eyre!("no merchant id"))?;
    let audience = manifest["merchant"]["audience"].as_str().ok_or_else(|| eyre!("no merchant audience"))?;
    let key =
        settleproof_merchant_auth::MerchantSigner::from_pem(id, pem).map_err(|e| eyre!("{e}"))?.with_audience(audience);
    let body = serde_json::json!({"amount": "1000", "token": "native", "chain_id": manifest["chains"][0]["chain_id"]});
    let created: serde_json::Value = crate::harness::signed(
        &reqwest::Client::new(),
        &key,
        reqwest::Method::POST,
        &format!("{api}/v1/invoices"),
        Some(&body),
    )?
    .send()
    .await?
    .json()
    .await?;
    let payer: alloy::signers::local::PrivateKeySigner =
        manifest["payer_private_key"].as_str().ok_or_else(|| eyre!("no payer key"))?.parse()?;
    let rpc = manifest["rpc_url"].as_str().ok_or_else(|| eyre!("no rpc_url"))?.parse()?;
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(payer)).connect_http(rpc).erased();
    pay_with(&provider, &created).await?;
    let id = created["id"].as_str().unwrap_or_default().to_string();
    let got = eventually("a webhook over TLS", Duration::from_secs(90), || async {
        rx.snapshot().into_iter().find(|r| r.verified && r.body["data"]["invoice"]["id"] == id.as_str())
    })
    .await;
    assert!(net.run("down.sh", &[])?.success());
    got?;
    Ok(())
}
