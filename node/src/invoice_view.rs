//! What a merchant sees of an invoice: its status derived from confirmed payments and the
//! settlement, in the JSON shape of the API and the webhooks.

use crate::store::{Invoice, SettlementRecord, Store, StoreError};
use alloy::primitives::{Address, U256};
use serde::Serialize;
use settleproof_consensus::{PaymentLeaf, RoundSchedule};

/// Lifecycle state of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Nothing paid yet.
    Open,
    /// Confirmed payments add up to less than the amount.
    Underpaid,
    /// Paid in full.
    Paid,
    /// Paid more than the amount.
    Overpaid,
    /// Nothing paid and the expiry has passed.
    Expired,
}

impl InvoiceStatus {
    /// Status from the amount due, the amount paid and the time.
    pub fn derive(amount: U256, paid: U256, expires_at: Option<u64>, now_s: u64) -> Self {
        if paid.is_zero() {
            return if expires_at.is_some_and(|e| now_s >= e) {
                Self::Expired
            } else {
                Self::Open
            };
        }
        match paid.cmp(&amount) {
            std::cmp::Ordering::Less => Self::Underpaid,
            std::cmp::Ordering::Equal => Self::Paid,
            std::cmp::Ordering::Greater => Self::Overpaid,
        }
    }

    /// Webhook event type announcing this status.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Open => "invoice.open",
            Self::Underpaid => "invoice.underpaid",
            Self::Paid => "invoice.paid",
            Self::Overpaid => "invoice.overpaid",
            Self::Expired => "invoice.expired",
        }
    }
}

/// Token as the API writes it: `native` or the ERC-20 address.
pub fn token_label(token: Address) -> String {
    if token.is_zero() {
        "native".into()
    } else {
        token.to_checksum(None)
    }
}

/// One confirmed payment in API form.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentView {
    /// Chain id.
    pub chain_id: u64,
    /// Transaction hash.
    pub tx_hash: String,
    /// Log index.
    pub log_index: u64,
    /// Block number.
    pub block_number: u64,
    /// Payer.
    pub payer: Address,
    /// `native` or token address.
    pub token: String,
    /// Amount, decimal base units.
    pub amount: String,
    /// Round that settles it.
    pub round: Option<u64>,
    /// Its settlement, once settled.
    pub settlement: Option<SettlementView>,
}

/// A settlement in API form.
#[derive(Debug, Clone, Serialize)]
pub struct SettlementView {
    /// Round.
    pub round: u64,
    /// Merkle root.
    pub root: String,
    /// Settlement transaction.
    pub tx_hash: String,
    /// Its block.
    pub block_number: u64,
    /// Signer bitmap, 0x-hex.
    pub signer_bitmap: String,
}

impl From<&SettlementRecord> for SettlementView {
    fn from(s: &SettlementRecord) -> Self {
        Self {
            round: s.round,
            root: s.root.to_string(),
            tx_hash: s.tx_hash.to_string(),
            block_number: s.block_number,
            signer_bitmap: format!("{:#x}", s.signer_bitmap),
        }
    }
}

/// An invoice in API form.
#[derive(Debug, Clone, Serialize)]
pub struct InvoiceView {
    /// Invoice id.
    pub id: String,
    /// Merchant.
    pub merchant_id: String,
    /// Status.
    pub status: InvoiceStatus,
    /// Whether every payment of the invoice is settled on chain.
    pub settled: bool,
    /// Amount due, decimal base units.
    pub amount: String,
    /// Confirmed amount paid, decimal base units.
    pub amount_paid: String,
    /// `native` or token address.
    pub token: String,
    /// Where the funds go.
    pub payout_address: Address,
    /// Creation, unix seconds.
    pub created_at: u64,
    /// Expiry, unix seconds.
    pub expires_at: Option<u64>,
    /// Merchant metadata.
    pub metadata: Option<serde_json::Value>,
    /// Confirmed payments.
    pub payments: Vec<PaymentView>,
}

/// Builds the view of `invoice` from the store.
pub fn invoice_view(
    store: &Store,
    schedule: &RoundSchedule,
    invoice: &Invoice,
    now_s: u64,
) -> Result<InvoiceView, StoreError> {
    let payments = store.payments_of_invoice(invoice.id)?;
    let valid: Vec<&PaymentLeaf> = payments
        .iter()
        .filter(|p| p.token == invoice.token && p.merchant == invoice.payout_address)
        .collect();
    let paid = valid
        .iter()
        .fold(U256::ZERO, |acc, p| acc.saturating_add(p.amount));
    let mut views = Vec::new();
    for p in &payments {
        let round = schedule.round_of(p.block_number);
        let settlement = match round {
            Some(r) => store.settlement(r)?.as_ref().map(SettlementView::from),
            None => None,
        };
        views.push(payment_view(p, round, settlement));
    }
    let settled = !views.is_empty() && views.iter().all(|v| v.settlement.is_some());
    Ok(InvoiceView {
        id: invoice.id.to_string(),
        merchant_id: invoice.merchant_id.clone(),
        status: InvoiceStatus::derive(invoice.amount, paid, invoice.expires_at, now_s),
        settled,
        amount: invoice.amount.to_string(),
        amount_paid: paid.to_string(),
        token: token_label(invoice.token),
        payout_address: invoice.payout_address,
        created_at: invoice.created_at,
        expires_at: invoice.expires_at,
        metadata: invoice.metadata.clone(),
        payments: views,
    })
}

/// One payment in API form.
pub fn payment_view(
    p: &PaymentLeaf,
    round: Option<u64>,
    settlement: Option<SettlementView>,
) -> PaymentView {
    PaymentView {
        chain_id: p.chain_id,
        tx_hash: p.tx_hash.to_string(),
        log_index: p.log_index,
        block_number: p.block_number,
        payer: p.payer,
        token: token_label(p.token),
        amount: p.amount.to_string(),
        round,
        settlement,
    }
}

#[cfg(test)]
mod tests {
    use super::InvoiceStatus::*;
    use super::*;

    #[test]
    fn status_table() {
        let u = U256::from;
        let cases = [
            (u(10), u(0), None, 5, Open),
            (u(10), u(0), Some(5), 4, Open),
            (u(10), u(0), Some(5), 5, Expired),
            (u(10), u(3), Some(5), 9, Underpaid),
            (u(10), u(10), None, 0, Paid),
            (u(10), u(11), None, 0, Overpaid),
        ];
        for (amount, paid, exp, now, want) in cases {
            assert_eq!(
                InvoiceStatus::derive(amount, paid, exp, now),
                want,
                "{amount} {paid} {exp:?} {now}"
            );
        }
    }
}
