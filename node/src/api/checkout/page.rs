//! The checkout page as HTML, rendered by the node: everything a payer needs without
//! JavaScript (amount with the token's decimals, chain, expiry, a QR code of an EIP-681 URI, the
//! contract address, amount and calldata to copy). `checkout.js` adds the countdown, live
//! status and the "Pay with wallet" button on top.

use crate::api::invoices::PaymentInstructions;
use crate::invoice_view::{InvoiceStatus, InvoiceView};
use alloy::primitives::U256;
use serde::Serialize;

/// What the page shows of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLabel {
    /// Its symbol (`ETH` for the native coin), printable and at most 16 characters.
    pub symbol: String,
    /// Its decimals; `None` when the chain did not say (amounts are then in base units).
    pub decimals: Option<u8>,
}

/// The payer's view of an invoice's state: `waiting`, `confirmed` (paid in full, settling),
/// `settled` or `expired`. (`seen`, a transaction sent but not confirmed yet, is the page's own:
/// only the wallet that sent it knows it.)
pub fn state_of(view: &InvoiceView) -> &'static str {
    match view.status {
        InvoiceStatus::Expired => "expired",
        InvoiceStatus::Open | InvoiceStatus::Underpaid => "waiting",
        InvoiceStatus::Paid | InvoiceStatus::Overpaid | InvoiceStatus::PaidLate if view.settled => "settled",
        InvoiceStatus::Paid | InvoiceStatus::Overpaid | InvoiceStatus::PaidLate => "confirmed",
    }
}

/// `amount` (decimal base units) in whole tokens of `decimals`, without trailing zeros.
pub fn format_units(amount: &str, decimals: u8) -> String {
    let Ok(v) = U256::from_str_radix(amount, 10) else { return amount.to_string() };
    let scale = U256::from(10u8).pow(U256::from(decimals));
    let (whole, frac) = (v / scale, v % scale);
    if frac.is_zero() {
        return whole.to_string();
    }
    let frac = format!("{:0>width$}", frac.to_string(), width = decimals as usize);
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// The EIP-681 URI of the first transaction of `p` (for a token, the `approve`; the payment
/// follows it): `ethereum:<to>@<chain>/<function>?<typed arguments>[&value=<wei>]`.
pub fn eip681(p: &PaymentInstructions, view: &InvoiceView) -> String {
    let Some(first) = p.transactions.first() else { return String::new() };
    if view.token == "native" {
        format!(
            "ethereum:{}@{}/payNative?bytes32={}&address={}&value={}",
            first.to, p.chain_id, view.id, view.payout_address, first.value
        )
    } else {
        format!("ethereum:{}@{}/approve?address={}&uint256={}", first.to, p.chain_id, p.contract, view.amount)
    }
}

/// What `checkout.js` reads from the page (in a JSON script element, never executed).
#[derive(Debug, Serialize)]
pub struct PageData<'a> {
    /// Where the live status is polled.
    pub status_url: String,
    /// The invoice's chain.
    pub chain_id: u64,
    /// Expiry, unix seconds.
    pub expires_at: Option<u64>,
    /// The transactions to send, in order.
    pub transactions: &'a [crate::api::invoices::TxInstruction],
}

/// HTML-escapes `s` for text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The label a payer sees for a state.
fn label(state: &str) -> &'static str {
    match state {
        "confirmed" => "Payment confirmed, settling",
        "settled" => "Paid and settled",
        "expired" => "Expired",
        _ => "Waiting for payment",
    }
}

/// The whole page.
pub fn html(view: &InvoiceView, token: &TokenLabel, p: &PaymentInstructions, chain_label: &str, qr: &str) -> String {
    let uri = eip681(p, view);
    let state = state_of(view);
    let shown = |amount: &str| match token.decimals {
        Some(d) => format!("{} {}", format_units(amount, d), token.symbol),
        None => format!("{amount} base units of {}", token.symbol),
    };
    let expiry = view.expires_at.map_or_else(
        || "<p id=\"expiry\">No expiry</p>".to_string(),
        |at| format!("<p id=\"expiry\" data-expires-at=\"{at}\">Expires at {}</p>", crate::time::rfc3339(at)),
    );
    let mut steps = String::new();
    for (i, tx) in p.transactions.iter().enumerate() {
        steps.push_str(&format!(
            "<li><p>{}</p><dl><dt>To</dt><dd><input readonly value=\"{}\" aria-label=\"address\"></dd>\
             <dt>Value (wei)</dt><dd><input readonly value=\"{}\" aria-label=\"value\"></dd>\
             <dt>Data</dt><dd><textarea readonly rows=\"3\" aria-label=\"calldata of step {}\">{}</textarea></dd></dl></li>",
            esc(tx.description),
            tx.to,
            esc(&tx.value),
            i + 1,
            tx.data
        ));
    }
    let paid = if view.amount_paid != "0" && state == "waiting" {
        format!("<p class=\"muted\">Received so far: {}</p>", esc(&shown(&view.amount_paid)))
    } else {
        String::new()
    };
    let data = PageData {
        status_url: format!("/checkout/{}/status", view.id),
        chain_id: view.chain_id,
        expires_at: view.expires_at,
        transactions: &p.transactions,
    };
    // `<` escaped so the JSON can never close its script element.
    let data = serde_json::to_string(&data).unwrap_or_default().replace('<', "\\u003c");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Pay {amount}</title><link rel=\"stylesheet\" href=\"/checkout/assets/checkout.css\"></head>\
         <body><main class=\"card\">\
         <h1>Pay <span id=\"amount\">{amount}</span></h1>\
         <p class=\"muted\">on {chain} · invoice <code>{short}</code>{token_line}</p>\
         <p id=\"status\" class=\"status {state}\" data-state=\"{state}\" role=\"status\" aria-live=\"polite\">{label}</p>\
         {paid}{expiry}\
         <div class=\"qr\">{qr}</div>\
         <p class=\"muted\"><a href=\"{uri}\">Open in a wallet app</a> (EIP-681{first})</p>\
         <button id=\"pay\" type=\"button\" hidden>Pay with wallet</button>\
         <p id=\"wallet\" class=\"muted\" aria-live=\"polite\"></p>\
         <details open><summary>Pay by hand: send {n} transaction{plural}</summary><ol class=\"steps\">{steps}</ol></details>\
         <noscript><p class=\"muted\">Scan the code with a wallet or send the transactions above; reload this page to see the status.</p></noscript>\
         </main>\
         <script type=\"application/json\" id=\"checkout-data\">{data}</script>\
         <script src=\"/checkout/assets/checkout.js\" defer></script></body></html>\n",
        amount = esc(&shown(&view.amount)),
        // A symbol is whatever its contract says: the address shows which token it is.
        token_line = if view.token == "native" {
            String::new()
        } else {
            format!(" · token <code id=\"token\">{}</code>", esc(&view.token))
        },
        chain = esc(chain_label),
        short = esc(&view.id),
        uri = esc(&uri),
        first = if p.transactions.len() > 1 { ": the approval; then the payment" } else { "" },
        label = label(state),
        n = p.transactions.len(),
        plural = if p.transactions.len() == 1 { "" } else { "s" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_shown_in_whole_tokens() {
        let cases = [
            ("1000000000000000", 18, "0.001"),
            ("2500000", 6, "2.5"),
            ("3000000", 6, "3"),
            ("1", 6, "0.000001"),
            ("0", 18, "0"),
            ("123", 0, "123"),
        ];
        for (amount, d, want) in cases {
            assert_eq!(format_units(amount, d), want, "{amount} at {d}");
        }
    }

    #[test]
    fn text_from_a_token_contract_cannot_become_markup() {
        assert_eq!(esc("<script>\"x\"&'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;");
        let view = InvoiceView {
            id: format!("0x{}", "ab".repeat(32)),
            merchant_id: "shop".into(),
            chain_id: 1,
            status: InvoiceStatus::Open,
            settled: false,
            amount: "5".into(),
            amount_paid: "0".into(),
            token: "0x00000000000000000000000000000000000000aa".into(),
            payout_address: alloy::primitives::Address::repeat_byte(0xbb),
            created_at: 1,
            expires_at: None,
            metadata: None,
            nonce: alloy::primitives::B256::ZERO,
            redirect_url: None,
            signed_request: None,
            payments: Vec::new(),
            checkout_url: None,
        };
        let p =
            PaymentInstructions { chain_id: 1, contract: alloy::primitives::Address::ZERO, transactions: Vec::new() };
        let hostile = TokenLabel { symbol: "<img src=x onerror=alert(1)>".into(), decimals: Some(0) };
        let page = html(&view, &hostile, &p, "chain 1", "");
        assert!(!page.contains("<img"), "the symbol stays text");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        // Whatever the symbol says, the token's address is on the page.
        assert!(page.contains("<code id=\"token\">0x00000000000000000000000000000000000000aa</code>"), "{page}");
    }
}
