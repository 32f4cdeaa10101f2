//! The `rotate-operators` drill: the operator set changes four times while payments go on,
//! each change through the operator-facing flow (`settleproof operators propose`, `sign` by a
//! threshold of the current set, `submit`):
//! 1. a fifth operator joins (its node starts with its keys and the contract address only);
//! 2. one operator rotates its BLS key (`keys rotate-bls`, picked up by the running node);
//! 3. an operator is removed (its node is stopped once the new set is in force);
//! 4. the threshold is raised.
//!
//! After each change a few more invoices are paid, so every new set must settle rounds.

use crate::control::{Control, sibling, spawn_detached};
use crate::load::{self, LoadOptions, Payment, Progress};
use crate::scenarios::Timeline;
use crate::wallet::Payer;
use alloy::primitives::U256;
use alloy::providers::Provider;
use eyre::{Result, WrapErr, bail, eyre};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// Invoices paid after each change.
const PER_STEP: usize = 3;
/// Blocks added to the contract's earliest start, for the signatures and the staging.
const MARGIN_BLOCKS: &str = "8";

/// Runs the four changes; returns the payments made between them.
pub async fn run(ctl: &Control, payer: &Payer, tl: &mut Timeline) -> Result<Vec<Payment>> {
    let run = ctl.m.run_dir();
    let keys = |name: &str| run.join(name).join("keys");
    let mut paid = Vec::new();
    // Set changes are sent from an account of their own: a node whose settlement key sends
    // other transactions halts on the nonce desync, by design.
    let submitter = run.join("set-submitter");
    if !submitter.join("evm.key").exists() {
        let shown: Value = serde_json::from_str(&cli(&["keys", "generate", "--dir", path(&submitter)])?)?;
        fund(ctl, shown["evm_address"].as_str().unwrap_or_default()).await?;
    }

    // 1. A fifth operator joins.
    let joiner = start_joiner(ctl, &run).await?;
    tl.note(format!("node-4 started with its keys and the contract address only (p2p {})", joiner.p2p_addr));
    let epoch = change(
        ctl,
        &run,
        "add",
        &["--add", path(&joiner.public), "--name", "node-4", "--p2p-addr", &joiner.p2p_addr],
        &[("node-0", keys("node-0")), ("node-1", keys("node-1")), ("node-3", keys("node-3"))],
        &submitter,
    )
    .await?;
    tl.note(format!("epoch {}: node-4 added from round {}", epoch.0, epoch.1));
    paid.extend(pay_after(ctl, payer, epoch.1).await?);

    // 2. node-1 rotates its BLS key; the running node loads bls.next.key when it needs it.
    let rotated = run.join("node-1-bls-rotation.json");
    let out = cli(&["keys", "rotate-bls", "--dir", path(&keys("node-1"))])?;
    std::fs::write(&rotated, out)?;
    let epoch = change(
        ctl,
        &run,
        "rotate",
        &["--rotate", "node-1", "--bls-key", path(&rotated)],
        &[("node-0", keys("node-0")), ("node-1", keys("node-1")), ("node-4", keys("node-4"))],
        &submitter,
    )
    .await?;
    tl.note(format!("epoch {}: node-1's BLS key rotated from round {}", epoch.0, epoch.1));
    paid.extend(pay_after(ctl, payer, epoch.1).await?);

    // 3. node-2 is removed, and its node stopped once the new set is in force.
    let epoch = change(
        ctl,
        &run,
        "remove",
        &["--remove", "node-2"],
        &[("node-1", keys("node-1")), ("node-3", keys("node-3")), ("node-4", keys("node-4"))],
        &submitter,
    )
    .await?;
    wait_round(ctl, epoch.1).await?;
    ctl.kill9("node-2").await?;
    std::fs::write(run.join("node-2.retired"), epoch.0.to_string())?;
    tl.note(format!("epoch {}: node-2 removed from round {}; its node stopped", epoch.0, epoch.1));
    paid.extend(pay_after(ctl, payer, epoch.1).await?);

    // 4. The threshold goes from 3 to 4 of the 4 operators left.
    let epoch = change(
        ctl,
        &run,
        "threshold",
        &["--threshold", "4"],
        &[("node-0", keys("node-0")), ("node-3", keys("node-3")), ("node-4", keys("node-4"))],
        &submitter,
    )
    .await?;
    tl.note(format!("epoch {}: threshold 4 of 4 from round {}", epoch.0, epoch.1));
    paid.extend(pay_after(ctl, payer, epoch.1).await?);
    Ok(paid)
}

/// The node a new operator runs.
struct Joiner {
    public: PathBuf,
    p2p_addr: String,
}

/// Generates node-4's keys, writes its configuration (node-0's chain settings, new ports, no
/// operator list), funds its account and starts it.
async fn start_joiner(ctl: &Control, run: &Path) -> Result<Joiner> {
    let dir = run.join("node-4");
    let keys_dir = dir.join("keys");
    let public = dir.join("public-keys.json");
    std::fs::create_dir_all(&dir)?;
    let shown = cli(&["keys", "generate", "--dir", path(&keys_dir)])?;
    std::fs::write(&public, &shown)?;
    let keys: Value = serde_json::from_str(&shown)?;
    fund(ctl, keys["evm_address"].as_str().ok_or_else(|| eyre!("keys without evm_address"))?).await?;
    let (api, admin, p2p) = (free_port()?, free_port()?, free_port()?);
    let p2p_addr = format!("/ip4/127.0.0.1/tcp/{p2p}");
    let mut cfg = ctl.m.node_config(0)?;
    let set = |v: &mut toml::Value, key: &str, value: toml::Value| -> Result<()> {
        v.as_table_mut().ok_or_else(|| eyre!("not a table"))?.insert(key.into(), value);
        Ok(())
    };
    let section = |v: &mut toml::Value, section: &str, key: &str, value: toml::Value| -> Result<()> {
        set(v.get_mut(section).ok_or_else(|| eyre!("node config without [{section}]"))?, key, value)
    };
    section(&mut cfg, "node", "name", "node-4".into())?;
    section(&mut cfg, "node", "data_dir", path(&dir.join("data")).into())?;
    section(&mut cfg, "node", "keys_dir", path(&keys_dir).into())?;
    section(&mut cfg, "api", "listen", format!("127.0.0.1:{api}").into())?;
    section(&mut cfg, "admin", "listen", format!("127.0.0.1:{admin}").into())?;
    section(&mut cfg, "p2p", "listen", p2p_addr.clone().into())?;
    // The joiner serves the first chain only (the one whose operator set changes), read
    // directly from anvil.
    let mut first = cfg
        .get("chains")
        .and_then(|c| c.as_array())
        .and_then(|c| c.first())
        .cloned()
        .ok_or_else(|| eyre!("node config without [[chains]]"))?;
    set(&mut first, "rpc_endpoints", toml::Value::Array(vec![ctl.m.rpc_url.clone().into()]))?;
    set(&mut first, "rpc_quorum", 1.into())?;
    if let Some(t) = cfg.as_table_mut() {
        t.remove("network");
        t.insert("chains".into(), toml::Value::Array(vec![first]));
    }
    let config = dir.join("config.toml");
    std::fs::write(&config, toml::to_string(&cfg)?)?;
    let pid = spawn_detached(
        Command::new(sibling("settleproof")?).arg("node").arg("--config").arg(&config),
        &dir.join("node.log"),
    )?;
    ctl.m.record_pid("node-4", pid)?;
    Ok(Joiner { public, p2p_addr })
}

/// Gives `account` 10 ETH on the testnet chain.
async fn fund(ctl: &Control, account: &str) -> Result<()> {
    ctl.chain
        .raw_request::<_, Value>("anvil_setBalance".into(), (account, U256::from(10u128.pow(19))))
        .await
        .wrap_err_with(|| format!("fund {account}"))?;
    Ok(())
}

/// Proposes `args` as a change of the latest set, has `signers` approve it, submits it from
/// the account in `submitter`; returns the new epoch and its first round.
async fn change(
    ctl: &Control,
    run: &Path,
    what: &str,
    args: &[&str],
    signers: &[(&str, PathBuf)],
    submitter: &Path,
) -> Result<(u64, u64)> {
    let settlement = format!("{:#x}", ctl.m.contracts.settlement);
    let file = run.join(format!("proposal-{what}.json"));
    let _ = std::fs::remove_file(&file);
    let mut propose = vec![
        "operators",
        "propose",
        "--rpc",
        &ctl.m.rpc_url,
        "--settlement",
        &settlement,
        "--margin-blocks",
        MARGIN_BLOCKS,
        "--out",
        path(&file),
    ];
    propose.extend_from_slice(args);
    cli(&propose)?;
    for (name, keys) in signers {
        cli(&[
            "operators",
            "sign",
            path(&file),
            "--rpc",
            &ctl.m.rpc_url,
            "--settlement",
            &settlement,
            "--keys-dir",
            path(keys),
            "--name",
            name,
        ])?;
    }
    let out = cli(&["operators", "submit", path(&file), "--rpc", &ctl.m.rpc_url, "--keys-dir", path(submitter)])?;
    let done: Value = serde_json::from_str(out.trim()).wrap_err_with(|| format!("submit printed {out}"))?;
    let epoch = done["committed_epoch"].as_u64().ok_or_else(|| eyre!("submit printed {out}"))?;
    let start = done["start_round"].as_u64().ok_or_else(|| eyre!("submit printed {out}"))?;
    Ok((epoch, start))
}

/// Waits until round `round` has begun on chain.
async fn wait_round(ctl: &Control, round: u64) -> Result<()> {
    let cfg = ctl.m.node_config(0)?;
    let start = cfg["chains"][0]["start_block"].as_integer().ok_or_else(|| eyre!("no chains[0].start_block"))? as u64;
    let len = cfg["rounds"]["length_blocks"].as_integer().unwrap_or(1).max(1) as u64;
    let first = start + round * len;
    for _ in 0..600 {
        if ctl.chain.get_block_number().await? >= first {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("round {round} did not begin within two minutes")
}

/// Once the new set is in force from `round`, pays a few invoices.
async fn pay_after(ctl: &Control, payer: &Payer, round: u64) -> Result<Vec<Payment>> {
    wait_round(ctl, round).await?;
    let outcome =
        load::run(ctl, payer, LoadOptions { invoices: PER_STEP, rate: 2.0 }, Arc::new(Progress::default())).await;
    if !outcome.failures.is_empty() {
        bail!("payments after the change failed: {}", outcome.failures.join("; "));
    }
    Ok(outcome.payments)
}

/// Runs `settleproof ARGS`; its standard output, or the error with its standard error.
fn cli(args: &[&str]) -> Result<String> {
    let out = Command::new(sibling("settleproof")?).args(args).output()?;
    if !out.status.success() {
        bail!("settleproof {}: {}", args[..2.min(args.len())].join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
