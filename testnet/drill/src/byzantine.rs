//! The `byzantine` drill: the last operator's node is replaced by a [`ByzantineOperator`] with
//! its real keys, which, while the payment load runs, in turn alters and invents invoices,
//! forges delivery acknowledgements (also for payments not settled yet), equivocates, floods
//! valid re-sends, and withholds its signature throughout; then an outsider lands a keeper's
//! `settle` call first, wrapped in a contract of its own. The ghost invoices become decoys the
//! verdict checks were never announced. It also announces invoices the merchant never signed in
//! its own name, and attacks the merchant's keys, endpoints and requests
//! ([`crate::merchant_side`]): the verdict's `impersonations` counts any an honest node holds or
//! applied.

use crate::control::Control;
use crate::scenarios::{Decoys, Timeline};
use crate::wallet::Payer;
use alloy::network::TransactionBuilder;
use alloy::primitives::{B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use eyre::{Result, WrapErr, eyre};
use serde_json::{Value, json};
use settleproof_byzantine::ByzantineOperator;
use settleproof_config::NodeConfig;
use settleproof_consensus::Batch;
use settleproof_contracts::{InvoicePayments, Relay, Settlement};
use settleproof_node::store::Invoice;
use std::time::{Duration, Instant};

/// Runs every behaviour for `step` each (the withholding lasts throughout); ghost invoice ids go
/// to `decoys.unpaid`, those of invoices and endpoints the merchant never signed to
/// `decoys.unsigned`.
pub async fn run(ctl: &Control, payer: &Payer, step: Duration, tl: &mut Timeline, decoys: &mut Decoys) -> Result<()> {
    let i = ctl.n() - 1;
    let node = &ctl.m.nodes[i];
    let cfg = NodeConfig::load(&node.config, std::iter::empty::<(String, String)>())
        .map_err(|e| eyre!("{}: {e}", node.config.display()))?;
    let merchant_side =
        crate::merchant_side::Prepared::new(ctl, &cfg, tl).await.wrap_err("preparing the merchant's records")?;
    ctl.kill9(&node.name).await?;
    let bad = ByzantineOperator::start(&cfg).await.wrap_err("starting the Byzantine operator")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while bad.connected() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tl.note(format!(
        "{} replaced by a Byzantine operator with its keys; it withholds its signature throughout",
        node.name
    ));
    decoys.merchant = Some(merchant_side.attack(ctl, &bad, step, tl).await);
    let result = behave(ctl, payer, &bad, &cfg, step, tl, decoys).await;
    bad.stop();
    // Let the listen address go before the node is started again by the heal.
    tokio::time::sleep(Duration::from_secs(1)).await;
    result
}

async fn behave(
    ctl: &Control,
    payer: &Payer,
    bad: &ByzantineOperator,
    cfg: &NodeConfig,
    step: Duration,
    tl: &mut Timeline,
    decoys: &mut Decoys,
) -> Result<()> {
    let (altered, ghosts) = forge_invoices(ctl, bad, cfg, step).await?;
    decoys.unpaid.extend(ghosts.iter().cloned());
    tl.note(format!("altered {altered} invoices (amount 1 wei) and announced {} ghosts", ghosts.len()));
    let unsigned = impersonate_the_merchant(ctl, bad, cfg, step).await?;
    tl.note(format!(
        "announced {} invoices in its own name that the merchant never signed (unsigned, signed by its own key, the merchant's request altered)",
        unsigned.len()
    ));
    decoys.unsigned.extend(unsigned);
    let acks = forge_acks(ctl, bad, step).await?;
    tl.note(format!("forged {acks} delivery acknowledgements"));
    let next = ctl.status(0).await.and_then(|s| s["next_round"].as_u64()).unwrap_or(0);
    let until = Instant::now() + step;
    let mut pairs = 0;
    while Instant::now() < until {
        for root in [0xe1u8, 0xe2] {
            let round = next + 2 + pairs as u64 % 16;
            bad.attest(Batch {
                epoch: 0,
                round,
                from_block: 1,
                to_block: 2,
                to_block_hash: B256::repeat_byte(0xb2),
                root: B256::repeat_byte(root),
                leaf_count: 1,
            })
            .await;
        }
        pairs += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tl.note(format!("equivocated {pairs} times (two batches per round)"));
    let batch = Batch {
        epoch: 0,
        round: next + 3,
        from_block: 1,
        to_block: 2,
        to_block_hash: B256::repeat_byte(0xb2),
        root: B256::repeat_byte(0xe3),
        leaf_count: 1,
    };
    let sent = bad.flood(batch, 2000).await;
    tl.note(format!("flooded {sent} re-sends of one valid attestation"));
    match relay_a_settlement(ctl, payer, step.max(Duration::from_secs(8))).await {
        Ok(Some(round)) => {
            tl.note(format!("an outsider landed round {round}'s settle call first, through a Relay contract"))
        }
        Ok(None) => tl.note("no settle transaction seen while sends were held; nothing relayed"),
        Err(e) => tl.note(format!("relaying a settlement failed: {e:#}")),
    }
    Ok(())
}

/// Announces altered copies of the merchant's invoices (and hands them to whoever asks) and
/// ghosts in an honest operator's name; returns how many were altered and the ghosts' ids.
async fn forge_invoices(
    ctl: &Control,
    bad: &ByzantineOperator,
    cfg: &NodeConfig,
    step: Duration,
) -> Result<(usize, Vec<String>)> {
    let listed: Value = ctl
        .merchant_request(reqwest::Method::GET, &format!("{}/v1/invoices?limit=50", ctl.m.nodes[0].api_url), None)?
        .send()
        .await?
        .json()
        .await?;
    let merchant = cfg.merchants.first().ok_or_else(|| eyre!("no merchant configured"))?;
    let mut altered = Vec::new();
    for v in listed["data"].as_array().into_iter().flatten() {
        let Some(id) = v["id"].as_str().and_then(|s| s.parse::<B256>().ok()) else { continue };
        let copy = Invoice {
            id,
            merchant_id: merchant.id.clone(),
            payout_address: merchant.payout_address,
            amount: U256::from(1),
            token: alloy::primitives::Address::ZERO,
            created_at: 0,
            expires_at: None,
            metadata: None,
            created_by: "node-0".into(),
            idempotency: None,
            redirect_url: None,
            statement: None,
            nonce: B256::ZERO,
        };
        bad.answer_fetches_with(copy.clone());
        altered.push(copy);
    }
    let mut ghosts = Vec::new();
    for k in 0..3u8 {
        let mut g = Invoice {
            id: B256::ZERO,
            merchant_id: merchant.id.clone(),
            payout_address: merchant.payout_address,
            amount: U256::from(1),
            token: alloy::primitives::Address::ZERO,
            created_at: 0,
            expires_at: None,
            metadata: Some(json!({"order": format!("ghost-{k}")})),
            created_by: "node-0".into(),
            idempotency: None,
            redirect_url: None,
            statement: None,
            nonce: B256::repeat_byte(0xb0 + k),
        };
        g.id = g.terms(cfg.chains[0].chain_id, cfg.chains[0].payments_contract).id();
        ghosts.push(g);
    }
    let until = Instant::now() + step;
    while Instant::now() < until {
        for inv in altered.iter().chain(&ghosts) {
            bad.announce(inv.clone()).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok((altered.len(), ghosts.iter().map(|g| g.id.to_string()).collect()))
}

/// Announces, in the Byzantine operator's own name and with ids that commit to their terms,
/// invoices the merchant never signed: unsigned, signed by a key of its own in the merchant's
/// name (sending the payer elsewhere after payment), and the merchant's own signed request with
/// the amount changed; and a webhook endpoint in the merchant's name, signed by its own key.
/// Returns their ids: no honest node may hold one.
async fn impersonate_the_merchant(
    ctl: &Control,
    bad: &ByzantineOperator,
    cfg: &NodeConfig,
    step: Duration,
) -> Result<Vec<String>> {
    use settleproof_merchant_auth::{KeyAlg, MerchantSigner, SignedStatement};
    let merchant = cfg.merchants.first().ok_or_else(|| eyre!("no merchant configured"))?;
    let (chain_id, payments) = (cfg.chains[0].chain_id, cfg.chains[0].payments_contract);
    let own = ctl.m.nodes[ctl.n() - 1].name.clone();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let signed = |signer: &MerchantSigner, body: Value| -> Result<Invoice> {
        let body = body.to_string();
        let url = format!("{}/v1/invoices", ctl.m.nodes[0].api_url);
        let jwt = signer.sign_request("POST", &url, body.as_bytes(), now, 60).map_err(|e| eyre!("{e}"))?;
        let statement = SignedStatement { jwt, body };
        let terms = settleproof_node::merchants::invoice_record::read(&statement).map_err(|e| eyre!("{e}"))?;
        Ok(terms.into_invoice(statement, merchant.payout_address, payments, (own.clone(), now)))
    };
    let mut forged = Vec::new();
    for k in 0..3u8 {
        let mut unsigned = Invoice {
            id: B256::ZERO,
            merchant_id: merchant.id.clone(),
            payout_address: merchant.payout_address,
            amount: U256::from(1),
            token: alloy::primitives::Address::ZERO,
            created_at: now,
            expires_at: None,
            metadata: Some(json!({"order": format!("unsigned-{k}")})),
            created_by: own.clone(),
            idempotency: None,
            redirect_url: None,
            statement: None,
            nonce: B256::repeat_byte(0xc0 + k),
        };
        unsigned.id = unsigned.terms(chain_id, payments).id();
        forged.push(unsigned);
    }
    let impostor = ctl.signs_here(MerchantSigner::generate(&merchant.id, KeyAlg::EdDsa).map_err(|e| eyre!("{e}"))?)?;
    forged.push(signed(
        &impostor,
        json!({"amount": "1", "token": "native", "chain_id": chain_id, "redirect_url": "https://evil.example/"}),
    )?);
    let genuine = ctl.signs_here(
        MerchantSigner::from_pem(&ctl.m.merchant.id, &ctl.m.merchant.private_key_pem).map_err(|e| eyre!("{e}"))?,
    )?;
    let mut altered = signed(&genuine, json!({"amount": "1000000000000000", "token": "native", "chain_id": chain_id}))?;
    altered.amount = U256::from(1);
    altered.id = altered.terms(chain_id, payments).id();
    // The altered request last: its refusal blames the author, after which honest nodes may no
    // longer hear it.
    forged.push(altered);
    // A webhook endpoint of its own in the merchant's name, signed by its own key.
    let endpoint_body = json!({"url": "https://evil.example/hook", "enabled_events": ["*"],
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
    .to_string();
    let url = format!("{}{}", ctl.m.nodes[0].api_url, settleproof_node::merchants::endpoint_record::ENDPOINTS_PATH);
    let jwt = impostor.sign_request("POST", &url, endpoint_body.as_bytes(), now, 60).map_err(|e| eyre!("{e}"))?;
    let endpoint = SignedStatement { jwt, body: endpoint_body };
    let endpoint_id = settleproof_node::merchants::endpoint_record::endpoint_id_of(&endpoint);
    let until = Instant::now() + step;
    while Instant::now() < until {
        bad.announce_endpoint(&merchant.id, &endpoint_id, vec![endpoint.clone()]).await;
        for inv in &forged {
            bad.announce_packed(std::slice::from_ref(inv)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut ids: Vec<String> = forged.iter().map(|g| g.id.to_string()).collect();
    ids.push(endpoint_id);
    Ok(ids)
}

/// Claims the delivery of every payment's event seen on chain lately, settled or not.
async fn forge_acks(ctl: &Control, bad: &ByzantineOperator, step: Duration) -> Result<usize> {
    let until = Instant::now() + step;
    let mut sent = 0;
    while Instant::now() < until {
        let head = ctl.chain.get_block_number().await?;
        let filter = Filter::new()
            .address(ctl.m.contracts.payments)
            .event_signature(InvoicePayments::InvoicePaid::SIGNATURE_HASH)
            .from_block(head.saturating_sub(200));
        for log in ctl.chain.get_logs(&filter).await? {
            let (Some(tx), Some(index), Ok(e)) =
                (log.transaction_hash, log.log_index, log.log_decode::<InvoicePayments::InvoicePaid>())
            else {
                continue;
            };
            let id = settleproof_node::webhook::payload::webhook_id(e.inner.data.invoiceId, tx, index);
            if bad.forge_ack(&id).await {
                sent += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(sent)
}

/// Holds back every transaction sent through the nodes' providers for up to `within`, lifts the
/// first settle call a keeper tried to send and lands it through a freshly deployed Relay from
/// the payer's account; returns the round relayed.
async fn relay_a_settlement(ctl: &Control, payer: &Payer, within: Duration) -> Result<Option<u64>> {
    let deploy = TransactionRequest::default().with_deploy_code(Relay::BYTECODE.clone()).with_gas_limit(1_000_000);
    let (hash, _, _) = payer.pay(vec![deploy]).await.wrap_err("deploying the relay")?;
    let relay = ctl
        .chain
        .get_transaction_receipt(hash)
        .await?
        .and_then(|r| r.contract_address)
        .ok_or_else(|| eyre!("relay deployment has no address"))?;
    let proxies: Vec<String> = ctl.m.nodes.iter().flat_map(|n| n.rpc_endpoints.clone()).collect();
    for i in 0..ctl.n() {
        for p in 0..ctl.m.nodes[i].rpc_endpoints.len() {
            ctl.fault(i, p, json!({"mode": "hold_sends"})).await?;
        }
    }
    let relayed = lift_and_relay(ctl, payer, relay, &proxies, within).await;
    // Keepers send again through healed providers: the relayed round is settled already.
    for i in 0..ctl.n() {
        for p in 0..ctl.m.nodes[i].rpc_endpoints.len() {
            ctl.fault(i, p, json!({"mode": "none"})).await?;
        }
    }
    relayed
}

/// While the nodes' sends are held, finds a held settle call and lands it through `relay`
/// (the payer reaches the chain directly, not through the held providers).
async fn lift_and_relay(
    ctl: &Control,
    payer: &Payer,
    relay: alloy::primitives::Address,
    proxies: &[String],
    within: Duration,
) -> Result<Option<u64>> {
    let until = Instant::now() + within;
    let mut call = None;
    while call.is_none() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for url in proxies {
            let Ok(r) = ctl.http.get(format!("{url}/_held")).send().await else { continue };
            let held: Vec<String> = r.json().await.unwrap_or_default();
            // The proxy keeps what it held in earlier drills too: only a round still open.
            for (round, input) in held.iter().rev().filter_map(|raw| settle_call_of(raw)) {
                let settled = Settlement::new(ctl.m.contracts.settlement, &ctl.chain).settledRoot(round).call().await?;
                if settled.is_zero() {
                    call = Some((round, input));
                    break;
                }
            }
            if call.is_some() {
                break;
            }
        }
    }
    let Some((round, input)) = call else { return Ok(None) };
    let forward = Relay::forwardCall { target: ctl.m.contracts.settlement, data: input }.abi_encode();
    let tx = TransactionRequest::default().with_to(relay).with_input(Bytes::from(forward)).with_gas_limit(2_000_000);
    payer.pay(vec![tx]).await.wrap_err("relaying the settle call")?;
    Ok(Some(round))
}

/// The round and input of a raw transaction that calls `settle`.
fn settle_call_of(raw: &str) -> Option<(u64, Bytes)> {
    use alloy::consensus::{Transaction, TxEnvelope};
    use alloy::network::eip2718::Decodable2718;
    let bytes: Bytes = raw.parse().ok()?;
    let envelope = TxEnvelope::decode_2718(&mut bytes.as_ref()).ok()?;
    let call = Settlement::settleCall::abi_decode(envelope.input()).ok()?;
    Some((call.round, envelope.input().clone()))
}
