//! A lie for the providers to tell: a payment log, in a block a few blocks ahead, paying an
//! invoice that nobody pays.

use crate::control::Control;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use eyre::{Result, bail, eyre};
use serde_json::{Value, json};
use settleproof_contracts::InvoicePayments;

/// Creates an invoice that stays unpaid and returns its id with a forged log paying it.
pub async fn payment_of_unpaid_invoice(ctl: &Control) -> Result<(String, Value)> {
    let node = &ctl.m.nodes[0];
    let chain_id = ctl.m.chains.first().map_or(0, |c| c.chain_id);
    let body =
        json!({ "amount": "1000000000000000", "token": "native", "chain_id": chain_id, "metadata": { "decoy": true } });
    let r = ctl
        .merchant_request(reqwest::Method::POST, &format!("{}/v1/invoices", node.api_url), Some(&body))?
        .send()
        .await?;
    if r.status().as_u16() != 201 {
        bail!("{}: decoy invoice not created: HTTP {}", node.name, r.status());
    }
    let created: Value = r.json().await?;
    let id = created["id"].as_str().ok_or_else(|| eyre!("invoice without id"))?.to_string();
    let payout: Address = created["payout_address"].as_str().ok_or_else(|| eyre!("no payout_address"))?.parse()?;
    let head = ctl.chain.get_block_number().await?;
    let event = InvoicePayments::InvoicePaid {
        invoiceId: id.parse()?,
        merchant: payout,
        payer: Address::repeat_byte(0x11),
        token: Address::ZERO,
        amount: U256::from(10u64).pow(U256::from(15u64)),
    };
    let data = event.encode_log_data();
    let log = json!({
        "address": created["payment_instructions"]["contract"],
        "topics": data.topics(),
        "data": data.data,
        "blockNumber": format!("{:#x}", head + 2),
        "blockHash": B256::repeat_byte(0xab),
        "transactionHash": B256::repeat_byte(0xcd),
        "transactionIndex": "0x0",
        "logIndex": "0x0",
        "removed": false,
    });
    Ok((id, log))
}
