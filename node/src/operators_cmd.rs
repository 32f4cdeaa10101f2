//! `settleproof operators show | propose | sign | submit`: the operator-facing flow of an
//! operator set change (see docs/operations.md, "Changing the operator set").

use alloy::network::EthereumWallet;
use alloy::primitives::Address;
use alloy::providers::{Provider, ProviderBuilder};
use eyre::{Context, Result, bail, eyre};
use serde_json::json;
use settleproof_consensus::{OperatorRecord, OperatorSetSpec, SetChange};
use settleproof_contracts::Settlement;
use settleproof_node::cli::OperatorsCommand;
use settleproof_node::keys::{BlsPublic, OperatorKeys, PublicKeys};
use settleproof_node::proposal::{Proposal, chain_sets};
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) async fn run(cmd: OperatorsCommand) -> Result<()> {
    match cmd {
        OperatorsCommand::Show { rpc, settlement, proposals } => show(&rpc, settlement, &proposals).await,
        OperatorsCommand::Propose {
            rpc,
            settlement,
            start_round,
            margin_blocks,
            add,
            name,
            p2p_addr,
            remove,
            rotate,
            bls_key,
            threshold,
            out,
        } => {
            let provider = read_only(&rpc)?;
            let sets = chain_sets(&provider, settlement).await?;
            let current = sets.last().cloned().ok_or_else(|| eyre!("no operator set is committed on {settlement}"))?;
            let mut proofs = BTreeMap::new();
            let change = match (add, remove, rotate, threshold) {
                (Some(file), None, None, None) => {
                    let keys: PublicKeys = read_json(&file)?;
                    let bls = BlsPublic {
                        bls_public_key: keys.bls_public_key.clone(),
                        bls_proof_of_possession: keys.bls_proof_of_possession.clone(),
                    };
                    let (bls, pop) = bls.parse().map_err(|e| eyre!("{}: {e}", file.display()))?;
                    let name = name.ok_or_else(|| eyre!("--add needs --name"))?;
                    let p2p_addr = p2p_addr.ok_or_else(|| eyre!("--add needs --p2p-addr"))?;
                    settleproof_p2p::parse_multiaddr(&p2p_addr).wrap_err("--p2p-addr")?;
                    let peer: settleproof_p2p::PeerId =
                        keys.peer_id.parse().map_err(|e| eyre!("{}: peer_id: {e}", file.display()))?;
                    proofs.insert(name.clone(), pop);
                    SetChange::Add {
                        operator: OperatorRecord {
                            name,
                            account: keys.evm_address,
                            peer_id: peer.to_bytes().into(),
                            p2p_addr,
                            bls,
                        },
                    }
                }
                (None, Some(name), None, None) => SetChange::Remove { name },
                (None, None, Some(name), None) => {
                    let file =
                        bls_key.ok_or_else(|| eyre!("--rotate needs --bls-key FILE (from `keys rotate-bls`)"))?;
                    let (bls, pop) =
                        read_json::<BlsPublic>(&file)?.parse().map_err(|e| eyre!("{}: {e}", file.display()))?;
                    proofs.insert(name.clone(), pop);
                    SetChange::Rotate { name, bls: Some(bls), account: None }
                }
                (None, None, None, Some(threshold)) => SetChange::Threshold { threshold },
                _ => bail!("give exactly one of --add FILE, --remove NAME, --rotate NAME, --threshold N"),
            };
            let start_round = match start_round {
                Some(r) => r,
                None => earliest_start(&provider, settlement, margin_blocks).await?,
            };
            let chain_id = provider.get_chain_id().await?;
            let proposal = Proposal::new(chain_id, settlement, current, change, start_round, proofs)?;
            write_new(&out, &proposal)?;
            summary(&out, &proposal)
        }
        OperatorsCommand::Sign { file, rpc, settlement, keys_dir, name } => {
            let mut proposal: Proposal = read_json(&file)?;
            let mut latest = None;
            for url in &rpc {
                let provider = read_only(url)?;
                let chain_id = provider.get_chain_id().await?;
                let sets = chain_sets(&provider, settlement).await?;
                let last = sets.last().cloned().ok_or_else(|| eyre!("no operator set is committed on {settlement}"))?;
                if latest.as_ref().is_some_and(|(l, id)| (l, id) != (&last, &chain_id)) {
                    bail!("the --rpc endpoints disagree on the latest operator set: not signing");
                }
                latest = Some((last, chain_id));
            }
            let (chain_latest, chain_id) = latest.ok_or_else(|| eyre!("give at least one --rpc"))?;
            proposal.check_against(&chain_latest, chain_id, settlement)?;
            let keys = OperatorKeys::load(&keys_dir)?;
            let registered = proposal.current.operators.iter().find(|o| o.name == name).map(|o| o.bls);
            let key = keys
                .bls_keys()
                .find(|k| Some(k.public_key()) == registered)
                .ok_or_else(|| {
                    eyre!("{}: no BLS key of `{name}` in epoch {}", keys_dir.display(), proposal.current.epoch)
                })?
                .clone();
            proposal.sign(&name, &key)?;
            replace(&file, &proposal)?;
            summary(&file, &proposal)
        }
        OperatorsCommand::Submit { file, rpc, keys_dir } => submit(&file, &rpc, &keys_dir).await,
    }
}

fn read_only(rpc: &str) -> Result<alloy::providers::DynProvider> {
    settleproof_node::redact::register(rpc, "--rpc");
    Ok(ProviderBuilder::new().connect_http(rpc.parse().wrap_err("--rpc is not a URL")?).erased())
}

/// The first round the contract accepts for an update sent now, plus `margin` blocks.
async fn earliest_start<P: Provider>(provider: &P, settlement: Address, margin: u64) -> Result<u64> {
    let s = Settlement::new(settlement, provider);
    let (start, len, lead) =
        (s.scheduleStartBlock().call().await?, s.roundBlocks().call().await?, s.leadBlocks().call().await?);
    let earliest = provider.get_block_number().await? + lead + margin;
    Ok(earliest.saturating_sub(start).div_ceil(len.max(1)))
}

async fn submit(file: &Path, rpc: &str, keys_dir: &Path) -> Result<()> {
    let proposal: Proposal = read_json(file)?;
    proposal.check()?;
    let (bitmap, signature) = proposal.aggregate()?;
    let keys = OperatorKeys::load(keys_dir)?;
    settleproof_node::redact::register(rpc, "--rpc");
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(keys.evm.clone()))
        .connect_http(rpc.parse().wrap_err("--rpc is not a URL")?)
        .erased();
    let sets = chain_sets(&provider, proposal.settlement).await?;
    if sets.last() != Some(&proposal.current) {
        bail!(
            "the chain's latest set is epoch {}, the proposal changes epoch {}: propose again",
            sets.last().map_or(0, |s| s.epoch),
            proposal.current.epoch
        );
    }
    let settlement = Settlement::new(proposal.settlement, &provider);
    let stager = keys.evm.address();
    settleproof_contracts::stage_set(&settlement, stager, &proposal.next, &proposal.entries()).await?;
    let tx = settleproof_contracts::commit_epoch(&settlement, stager, &proposal.next, bitmap, signature).await?;
    println!(
        "{}",
        json!({"committed_epoch": proposal.next.epoch, "start_round": proposal.next.start_round, "transaction": tx})
    );
    Ok(())
}

async fn show(rpc: &str, settlement: Address, proposals: &[std::path::PathBuf]) -> Result<()> {
    let provider = read_only(rpc)?;
    let sets = chain_sets(&provider, settlement).await?;
    let starts: Vec<u64> = sets.iter().map(|s| s.start_round).collect();
    let epochs: Vec<_> = sets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "epoch": s.epoch,
                "start_round": s.start_round,
                "end_round": starts.get(i + 1),
                "threshold": s.threshold,
                "operators": operators_json(s),
            })
        })
        .collect();
    let mut pending = Vec::new();
    for f in proposals {
        let p: Proposal = read_json(f)?;
        pending.push(proposal_json(f, &p));
    }
    crate::print_json(&json!({"settlement": settlement, "epochs": epochs, "proposals": pending}))
}

fn operators_json(s: &OperatorSetSpec) -> Vec<serde_json::Value> {
    s.operators
        .iter()
        .map(|o| {
            json!({
                "name": o.name,
                "account": o.account,
                "peer_id": settleproof_p2p::PeerId::from_bytes(&o.peer_id).map(|p| p.to_string()).unwrap_or_default(),
                "p2p_addr": o.p2p_addr,
                "bls_public_key": format!("0x{}", hex::encode(o.bls.to_bytes())),
            })
        })
        .collect()
}

fn proposal_json(file: &Path, p: &Proposal) -> serde_json::Value {
    let valid = p.approvals().map(|a| a.len()).unwrap_or(0);
    json!({
        "file": file,
        "changes_epoch": p.current.epoch,
        "change": p.change,
        "next_epoch": p.next.epoch,
        "start_round": p.next.start_round,
        "set_hash": p.set_hash,
        "signed_by": p.signatures.keys().collect::<Vec<_>>(),
        "unsigned": p.current.operators.iter().map(|o| &o.name).filter(|n| !p.signatures.contains_key(*n)).collect::<Vec<_>>(),
        "approvals_needed": usize::from(p.current.threshold).saturating_sub(valid),
    })
}

fn summary(file: &Path, p: &Proposal) -> Result<()> {
    crate::print_json(&proposal_json(file, p))
}

fn read_json<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T> {
    let text = std::fs::read_to_string(file).wrap_err_with(|| format!("read {}", file.display()))?;
    serde_json::from_str(&text).wrap_err_with(|| format!("{} is not the expected JSON", file.display()))
}

fn write_new(file: &Path, p: &Proposal) -> Result<()> {
    if file.exists() {
        bail!("{} exists already; choose another --out", file.display());
    }
    replace(file, p)
}

/// Writes through a temporary file and a rename, so a crash never leaves half a proposal.
fn replace(file: &Path, p: &Proposal) -> Result<()> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(p)? + "\n")
        .wrap_err_with(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).wrap_err_with(|| format!("write {}", file.display()))
}
