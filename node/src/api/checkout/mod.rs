//! The hosted checkout: `GET /checkout/{id}` serves an invoice's payment page on any node that
//! holds the invoice, `GET /checkout/{id}/status` its live state, and `/checkout/assets/*` the
//! page's script and style (served by the node: no third-party CDN). The page is public, as a
//! hosted invoice link is: it shows only what a payer needs (amount, token, chain, expiry, how
//! to pay), never the merchant's metadata. A strict Content-Security-Policy allows only the
//! node's own script and style.
//!
//! The node-served page is only as true as the node that serves it. `/checkout/assets/self-hosted/`
//! serves, for download, a checkout the merchant hosts on its own origin instead
//! (`self_hosted/settleproof-checkout.js` and a page that mounts it): it checks the merchant's
//! signature against keys the merchant pins in the page, builds the payment from the signed terms
//! and the pinned contract and payout address, and shows a state only when enough nodes agree.
//! The status route answers any origin for it.

mod page;
mod qr;

pub use page::{TokenLabel, format_units, state_of};

use super::{ApiError, ApiState};
use crate::api::chains::ChainState;
use crate::invoice_view::InvoiceView;
use crate::store::Invoice;
use crate::time::now_s;
use alloy::primitives::{Address, B256};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Symbols and decimals of the tokens pages were shown for, per chain: read once from a
/// provider quorum; a token that did not answer is asked again after [`RETRY_UNKNOWN_MS`] at
/// the earliest, so anyone loading its pages costs no more reads than that.
#[derive(Debug, Clone, Default)]
pub struct TokenCache(Arc<Mutex<HashMap<(u64, Address), CachedToken>>>);

/// A token's label, and until when it stands when it is the fallback (unix ms).
type CachedToken = (TokenLabel, Option<u64>);

/// How long a token that did not say its symbol and decimals is shown in base units before
/// it is asked again.
const RETRY_UNKNOWN_MS: u64 = 10 * 60 * 1000;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The live state of `GET /checkout/{id}/status`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckoutStatus {
    /// `waiting`, `confirmed` (paid in full, settling), `settled` or `expired`.
    pub state: &'static str,
    /// Amount due, decimal base units.
    pub amount: String,
    /// Confirmed amount paid, decimal base units.
    pub amount_paid: String,
    /// Expiry, unix seconds.
    pub expires_at: Option<u64>,
    /// Where the page sends the payer, once settled.
    pub redirect_url: Option<String>,
}

/// The invoice `id` names and the chain that holds it.
fn find<'a>(state: &'a ApiState, id: &str) -> Result<(&'a ChainState, Invoice), ApiError> {
    let id: B256 = id.parse().map_err(|_| ApiError::invalid("id", "id must be 0x followed by 64 hex digits"))?;
    for chain in state.chains.iter() {
        if let Some(inv) = chain.store.invoice(id)? {
            return Ok((chain, inv));
        }
    }
    Err(ApiError::not_found("invoice"))
}

fn view(chain: &ChainState, inv: &Invoice) -> Result<InvoiceView, ApiError> {
    Ok(crate::invoice_view::invoice_view(&chain.store, &chain.schedule, chain.chain_id, inv, now_s())?)
}

/// The symbol and decimals of `token` on `chain`, from the cache or a provider quorum; a token
/// that does not answer (or claims more than 77 decimals) is shown in base units.
async fn token_label(state: &ApiState, chain: &ChainState, token: Address) -> TokenLabel {
    if token.is_zero() {
        return TokenLabel { symbol: "ETH".into(), decimals: Some(18) };
    }
    let key = (chain.chain_id, token);
    let now = crate::time::now_ms();
    let cached = state.tokens.0.lock().ok().and_then(|m| m.get(&key).cloned());
    if let Some((t, _)) = cached.filter(|(_, until)| until.is_none_or(|u| u > now)) {
        return t;
    }
    let fallback = TokenLabel { symbol: format!("token {token}"), decimals: None };
    let Some(client) = &chain.chain else { return fallback };
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), client.token_info(token)).await;
    let (label, until) = match read {
        // Past 77 decimals no amount fits the arithmetic.
        Ok(Ok((symbol, decimals))) if decimals <= 77 => {
            // A token contract is anyone's: its symbol is shown only as short printable text.
            let symbol: String = symbol.chars().filter(|c| !c.is_control() && !is_format(*c)).take(16).collect();
            let symbol = if symbol.is_empty() { "?".into() } else { symbol };
            (TokenLabel { symbol, decimals: Some(decimals) }, None)
        }
        other => {
            let answer = other.map(|r| r.map(|(_, d)| d));
            tracing::debug!(%token, ?answer, "token symbol and decimals unavailable; shown in base units");
            (fallback, Some(now.saturating_add(RETRY_UNKNOWN_MS)))
        }
    };
    if let Ok(mut m) = state.tokens.0.lock() {
        m.insert(key, (label.clone(), until));
    }
    label
}

fn secured(mut resp: Response, content_type: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// `GET /checkout/{id}`: the payment page.
#[utoipa::path(get, path = "/checkout/{id}", tag = "checkout",
    params(("id" = String, Path, description = "Invoice id, 0x and 64 hex digits", pattern = "^0x[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "The payer's page: amount, token, chain, expiry, a QR code of an EIP-681 URI, the transactions to send, and a Pay with wallet button", body = String, content_type = "text/html"),
        (status = 400, description = "The id is not 0x and 64 hex digits", body = super::error::ErrorBody),
        (status = 404, description = "No such invoice on this node", body = super::error::ErrorBody),
        (status = 429, description = "This address is locked out after failed authentications", body = super::error::ErrorBody),
    ))]
pub(super) async fn page(State(state): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (chain, inv) = find(&state, &id)?;
    let view = view(chain, &inv)?;
    let instructions = super::invoices::instructions(chain, &inv);
    let token = token_label(&state, chain, inv.token).await;
    let qr = qr::svg(&page::eip681(&instructions, &view)).unwrap_or_default();
    let chain_label = format!("chain {}", chain.chain_id);
    let html = page::html(&view, &token, &instructions, &chain_label, &qr);
    let mut resp = secured(html.into_response(), "text/html; charset=utf-8");
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /checkout/{id}/status`: the live state the page polls.
#[utoipa::path(get, path = "/checkout/{id}/status", tag = "checkout",
    params(("id" = String, Path, description = "Invoice id, 0x and 64 hex digits", pattern = "^0x[0-9a-fA-F]{64}$")),
    responses(
        (status = 200, description = "The invoice's state as the payer sees it", body = CheckoutStatus),
        (status = 400, description = "The id is not 0x and 64 hex digits", body = super::error::ErrorBody),
        (status = 404, description = "No such invoice on this node", body = super::error::ErrorBody),
        (status = 429, description = "This address is locked out after failed authentications", body = super::error::ErrorBody),
    ))]
pub(super) async fn status(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let mut resp = match status_of(&state, &id) {
        Ok(body) => ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response(),
        Err(e) => e.into_response(),
    };
    // Public, and read by checkout pages on merchants' own origins (`self_hosted`), a 404 too.
    resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

fn status_of(state: &ApiState, id: &str) -> Result<CheckoutStatus, ApiError> {
    let (chain, inv) = find(state, id)?;
    let view = view(chain, &inv)?;
    let state = state_of(&view);
    let redirect_url = inv.redirect_url.filter(|_| state == "settled");
    Ok(CheckoutStatus {
        state,
        amount: view.amount,
        amount_paid: view.amount_paid,
        expires_at: view.expires_at,
        redirect_url,
    })
}

/// `GET /checkout/assets/checkout.js`.
pub(super) async fn script() -> Response {
    secured(include_str!("checkout.js").into_response(), "text/javascript; charset=utf-8")
}

/// The self-hosted checkout's files, by name.
pub const SELF_HOSTED: [(&str, &str); 2] = [
    ("settleproof-checkout.js", include_str!("self_hosted/settleproof-checkout.js")),
    ("index.html", include_str!("self_hosted/index.html")),
];

/// `GET /checkout/assets/self-hosted/settleproof-checkout.js`: the checkout a merchant serves
/// from its own origin, which checks the merchant's signature and builds the payment itself
/// (docs/merchants.md, "A checkout on your own site"), for download.
pub(super) async fn self_hosted_script() -> Response {
    let resp = secured(SELF_HOSTED[0].1.into_response(), "text/javascript; charset=utf-8");
    download(resp, "settleproof-checkout.js")
}

/// `GET /checkout/assets/self-hosted/index.html`: the page that mounts it, for download.
pub(super) async fn self_hosted_page() -> Response {
    download(secured(SELF_HOSTED[1].1.into_response(), "text/html; charset=utf-8"), "index.html")
}

fn download(mut resp: Response, name: &'static str) -> Response {
    let value = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""));
    if let Ok(v) = value {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

/// `GET /checkout/assets/checkout.css`.
pub(super) async fn style() -> Response {
    secured(include_str!("checkout.css").into_response(), "text/css; charset=utf-8")
}

/// Unicode format characters (general category `Cf`): bidirectional overrides and isolates,
/// zero-width and invisible characters. A token symbol with them could show the payer text
/// other than what it is (`USDC` reversed, or hidden characters), so they are dropped.
fn is_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        // Blank-looking letters, fillers, joiners and variation selectors (not `Cf`, as invisible).
        | 0x034F | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180D | 0x2800 | 0x3164 | 0xFFA0
        | 0xFE00..=0xFE0F | 0xE0100..=0xE01EF)
}

#[cfg(test)]
mod symbol_tests {
    #[test]
    fn format_characters_are_refused_and_letters_kept() {
        for c in [
            '\u{202E}',
            '\u{2066}',
            '\u{200B}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0041}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{2800}',
        ] {
            assert!(super::is_format(c), "{c:?}");
        }
        for c in ['U', 'é', '€', 'Ξ', '₿'] {
            assert!(!super::is_format(c), "{c:?}");
        }
    }
}
