//! What a merchant sees of an invoice: its status derived from confirmed payments and the
//! settlement, in the JSON shape of the API and the webhooks.

use crate::store::{Invoice, PaymentRecord, SettlementRecord, Store, StoreError};
use alloy::primitives::{Address, B256, U256};
use serde::Serialize;
use settleproof_consensus::{PaymentLeaf, RoundSchedule};

/// Lifecycle state of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Nothing paid yet.
    Open,
    /// Confirmed payments add up to less than the amount (partial payments accumulate).
    Underpaid,
    /// Paid in full before the expiry.
    Paid,
    /// Paid more than the amount before the expiry.
    Overpaid,
    /// The expiry passed without full payment.
    Expired,
    /// Paid in full, but only with payments made after the expiry.
    PaidLate,
}

impl InvoiceStatus {
    /// Status from the amount due, the accepted payments (amount, block timestamp), the expiry
    /// and the time. A payment counts as on time when its block is before the expiry.
    pub fn derive(amount: U256, payments: &[(U256, u64)], expires_at: Option<u64>, now_s: u64) -> Self {
        let on_time = |ts: u64| expires_at.is_none_or(|e| ts < e);
        let sum = |f: &dyn Fn(u64) -> bool| {
            payments.iter().filter(|(_, ts)| f(*ts)).fold(U256::ZERO, |a, (v, _)| a.saturating_add(*v))
        };
        let paid_on_time = sum(&|ts| on_time(ts));
        let total = sum(&|_| true);
        let expired = expires_at.is_some_and(|e| now_s >= e);
        if paid_on_time >= amount {
            if total > amount { Self::Overpaid } else { Self::Paid }
        } else if total >= amount {
            Self::PaidLate
        } else if expired {
            Self::Expired
        } else if total.is_zero() {
            Self::Open
        } else {
            Self::Underpaid
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
            Self::PaidLate => "invoice.paid_late",
        }
    }
}

/// Why a payment to an invoice does not count toward it.
pub fn rejection(invoice: &Invoice, p: &PaymentLeaf) -> Option<&'static str> {
    if p.merchant != invoice.payout_address {
        Some("wrong_payee: the funds went to another address than the merchant's payout address")
    } else if p.token != invoice.token {
        Some("invalid_token: paid in another token than the invoice asks for")
    } else {
        None
    }
}

/// Token as the API writes it: `native` or the ERC-20 address.
pub fn token_label(token: Address) -> String {
    if token.is_zero() { "native".into() } else { token.to_checksum(None) }
}

/// One confirmed payment in API form.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
    #[schema(value_type = String, example = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc")]
    pub payer: Address,
    /// `native` or token address.
    pub token: String,
    /// Amount, decimal base units.
    pub amount: String,
    /// Timestamp of its block, unix seconds.
    pub block_timestamp: u64,
    /// Whether it counts toward the invoice.
    pub accepted: bool,
    /// Why it does not count, when it does not.
    #[schema(value_type = Option<String>)]
    pub rejected_reason: Option<&'static str>,
    /// Round that settles it.
    pub round: Option<u64>,
    /// Its settlement, once settled.
    pub settlement: Option<SettlementView>,
}

/// A settlement in API form.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvoiceView {
    /// Invoice id.
    pub id: String,
    /// Merchant.
    pub merchant_id: String,
    /// Chain the invoice is payable on.
    pub chain_id: u64,
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
    #[schema(value_type = String)]
    pub payout_address: Address,
    /// Creation, unix seconds.
    pub created_at: u64,
    /// Expiry, unix seconds.
    pub expires_at: Option<u64>,
    /// Merchant metadata.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The creation nonce the id commits to (with the other terms; see docs/merchants.md).
    #[schema(value_type = String)]
    pub nonce: B256,
    /// Where the checkout sends the payer once the invoice is settled (the id commits to it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// The merchant's signed request the invoice was made from (`jwt` and `body`): with the
    /// merchant's public key anyone can check that every term above is the merchant's
    /// (`settleproof verify-invoice`, docs/merchants.md). Its JWT was accepted once, at the node
    /// it names, and is refused anywhere again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub signed_request: Option<settleproof_merchant_auth::SignedStatement>,
    /// Confirmed payments.
    pub payments: Vec<PaymentView>,
    /// The hosted payment page, on the node asked (`api.public_url`); every node that holds
    /// the invoice serves it at the same path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout_url: Option<String>,
}

/// Builds the view of `invoice`, payable on `chain_id`, from that chain's store.
pub fn invoice_view(
    store: &Store,
    schedule: &RoundSchedule,
    chain_id: u64,
    invoice: &Invoice,
    now_s: u64,
) -> Result<InvoiceView, StoreError> {
    let records = store.payments_of_invoice(invoice.id)?;
    invoice_view_of(store, schedule, chain_id, invoice, &records, now_s)
}

/// [`invoice_view`] of an invoice whose payments (`records`, as
/// [`Store::payments_of_invoice`] reads them) the caller has read already.
pub fn invoice_view_of(
    store: &Store,
    schedule: &RoundSchedule,
    chain_id: u64,
    invoice: &Invoice,
    records: &[PaymentRecord],
    now_s: u64,
) -> Result<InvoiceView, StoreError> {
    let mut accepted = Vec::new();
    let mut views = Vec::new();
    for r in records {
        let reason = rejection(invoice, &r.leaf);
        if reason.is_none() {
            accepted.push((r.leaf.amount, r.block_timestamp));
        }
        let round = schedule.round_of(r.leaf.block_number);
        let settlement = match round {
            Some(n) => store.settlement(n)?.as_ref().map(SettlementView::from),
            None => None,
        };
        views.push(payment_view(r, reason, round, settlement));
    }
    let paid = accepted.iter().fold(U256::ZERO, |a, (v, _)| a.saturating_add(*v));
    let settled = !views.is_empty() && views.iter().all(|v| v.settlement.is_some());
    Ok(InvoiceView {
        id: invoice.id.to_string(),
        merchant_id: invoice.merchant_id.clone(),
        chain_id,
        status: InvoiceStatus::derive(invoice.amount, &accepted, invoice.expires_at, now_s),
        settled,
        amount: invoice.amount.to_string(),
        amount_paid: paid.to_string(),
        token: token_label(invoice.token),
        payout_address: invoice.payout_address,
        created_at: invoice.created_at,
        expires_at: invoice.expires_at,
        metadata: invoice.metadata.clone(),
        nonce: invoice.nonce,
        redirect_url: invoice.redirect_url.clone(),
        signed_request: invoice.statement.clone(),
        payments: views,
        checkout_url: None,
    })
}

/// One payment in API form.
pub fn payment_view(
    r: &PaymentRecord,
    rejected_reason: Option<&'static str>,
    round: Option<u64>,
    settlement: Option<SettlementView>,
) -> PaymentView {
    let p = &r.leaf;
    PaymentView {
        chain_id: p.chain_id,
        tx_hash: p.tx_hash.to_string(),
        log_index: p.log_index,
        block_number: p.block_number,
        payer: p.payer,
        token: token_label(p.token),
        amount: p.amount.to_string(),
        block_timestamp: r.block_timestamp,
        accepted: rejected_reason.is_none(),
        rejected_reason,
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
        let none: &[(U256, u64)] = &[];
        type Case<'a> = (u64, &'a [(U256, u64)], Option<u64>, u64, InvoiceStatus);
        let cases: [Case; 11] = [
            (10, none, None, 5, Open),
            (10, none, Some(5), 4, Open),
            (10, none, Some(5), 5, Expired),
            (10, &[(u(3), 1)], Some(5), 2, Underpaid),
            (10, &[(u(3), 1), (u(7), 2)], Some(5), 3, Paid),
            (10, &[(u(3), 1)], Some(5), 9, Expired),
            (10, &[(u(10), 1)], None, 0, Paid),
            (10, &[(u(11), 1)], None, 0, Overpaid),
            (10, &[(u(10), 6)], Some(5), 7, PaidLate),
            (10, &[(u(4), 1), (u(6), 6)], Some(5), 7, PaidLate),
            (10, &[(u(10), 1), (u(5), 6)], Some(5), 7, Overpaid),
        ];
        for (amount, payments, exp, now, want) in cases {
            assert_eq!(
                InvoiceStatus::derive(u(amount), payments, exp, now),
                want,
                "{amount} {payments:?} {exp:?} {now}"
            );
        }
    }

    #[test]
    fn payments_to_another_payee_or_in_another_token_are_rejected() {
        let inv = Invoice {
            id: alloy::primitives::B256::repeat_byte(1),
            merchant_id: "m".into(),
            payout_address: Address::repeat_byte(2),
            amount: U256::from(5),
            token: Address::ZERO,
            created_at: 0,
            expires_at: None,
            metadata: None,
            created_by: "n".into(),
            idempotency: None,
            redirect_url: None,
            statement: None,
            nonce: B256::ZERO,
        };
        let mut p = PaymentLeaf {
            chain_id: 1,
            tx_hash: alloy::primitives::B256::ZERO,
            log_index: 0,
            block_number: 1,
            invoice_id: inv.id,
            merchant: inv.payout_address,
            payer: Address::ZERO,
            token: Address::ZERO,
            amount: U256::from(5),
        };
        assert_eq!(rejection(&inv, &p), None);
        p.token = Address::repeat_byte(9);
        assert!(rejection(&inv, &p).is_some_and(|r| r.starts_with("invalid_token")));
        p.merchant = Address::repeat_byte(8);
        assert!(rejection(&inv, &p).is_some_and(|r| r.starts_with("wrong_payee")));
    }
}
