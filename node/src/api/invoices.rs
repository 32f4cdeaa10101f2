//! `POST /v1/invoices` and `GET /v1/invoices/{id}`.

use super::{ApiError, ApiState, ChainState, auth};
use crate::invoice_view::{InvoiceStatus, InvoiceView, invoice_view, token_label};
use crate::store::{Invoice, KeyState, Scope};
use crate::time::now_s;
use alloy::primitives::{Address, B256};
use alloy::sol_types::SolCall;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use settleproof_contracts::{IERC20, InvoicePayments};
use settleproof_merchant_auth::SignedStatement;
use tracing::info;

mod idempotency;

pub use crate::merchants::invoice_record::CreateInvoice;
use crate::merchants::invoice_record::{self, FieldError, MAX_LIFETIME_S};

/// One transaction of the payment instructions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TxInstruction {
    /// What it does.
    #[schema(value_type = String)]
    pub description: &'static str,
    /// Contract to call.
    #[schema(value_type = String)]
    pub to: Address,
    /// Native value in wei, decimal.
    pub value: String,
    /// Calldata, 0x-hex.
    #[schema(value_type = String)]
    pub data: alloy::primitives::Bytes,
}

/// How a wallet pays the invoice.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentInstructions {
    /// Chain id.
    pub chain_id: u64,
    /// `InvoicePayments` address.
    #[schema(value_type = String)]
    pub contract: Address,
    /// Transactions to send, in order.
    pub transactions: Vec<TxInstruction>,
}

/// Response of `POST /v1/invoices`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Created {
    /// The invoice.
    #[serde(flatten)]
    pub invoice: InvoiceView,
    /// How to pay it.
    pub payment_instructions: PaymentInstructions,
}

/// Creates an invoice; its id commits to its terms.
#[utoipa::path(post, path = "/v1/invoices", tag = "invoices", request_body = CreateInvoice,
    security(("merchant_jwt" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters. For 24 h, the same key and body return the same invoice at this node; the same key with another body is a 409 naming the field. Sign it in the body too (`idempotency_key`) for it to hold at every node once the invoice replicated, and add `nonce` and `expires_at` for a retry to build the same invoice on a node that has not received the first.")),
    responses(
        (status = 201, description = "Created, with payment instructions; `Idempotent-Replayed: true` when the Idempotency-Key had created it already", body = Created,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the invoice an earlier request with the same Idempotency-Key created"))),
        (status = 400, description = "A field is invalid; `field` names it", body = super::error::ErrorBody),
        (status = 409, description = "The Idempotency-Key was used with another body (`field` names the first field that differs), or the signed request's `nonce` made another invoice already (`nonce_taken`, naming it: one signed request makes one invoice, whatever payout address or contract holds since)", body = super::error::ErrorBody),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `invoices:write` scope", body = super::error::ErrorBody),
        (status = 413, description = "Body over `api.max_body_bytes`", body = String, content_type = "text/plain"),
        (status = 429, description = "Over the merchant's request budget, or locked out after failed authentications", body = super::error::ErrorBody),
    ))]
pub(super) async fn create(
    State(state): State<ApiState>,
    caller: auth::Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Json<Created>), ApiError> {
    let merchant = auth::merchant(&caller, &state, Some(Scope::InvoicesWrite))?;
    let key = idempotency::requested_key(&headers, &merchant.id)?;
    // The invoice is the merchant's signed request: every term is read from it as every other
    // node reads it, and the request travels with the invoice as its signature.
    let statement = SignedStatement {
        jwt: caller.jwt.clone(),
        body: String::from_utf8(body.to_vec()).map_err(|_| ApiError::invalid("body", "the body must be UTF-8 JSON"))?,
    };
    let req: CreateInvoice = serde_json::from_str(&statement.body)
        .map_err(|e| ApiError::invalid("body", format!("invalid JSON body: {e}")))?;
    let Some(chain_id) = req.chain_id else {
        let served: Vec<String> = state.chains.iter().map(|c| format!("{} ({})", c.chain_id, c.name)).collect();
        return Err(ApiError::invalid(
            "chain_id",
            format!(
                "chain_id is required: the EIP-155 id of the chain the invoice is payable on; served here: {}",
                served.join(", ")
            ),
        ));
    };
    let chain = state.chains.get(Some(chain_id), "chain_id")?;
    let now = now_s();
    let signed = invoice_record::read(&statement).map_err(field_error)?;
    // The whole body is checked before a key is looked up: a bad field is a 400 either way.
    check_expiry(signed.expires_at, now)?;
    if let Some(url) = &signed.redirect_url {
        check_redirect(url, state.merchants.url_policy().0)?;
    }
    // The key: the header's, or the one signed in the body; both, they must agree.
    let key = match (key, &signed.request.idempotency_key) {
        (Some(header), Some(body)) if header != crate::store::key_hash(&merchant.id, body) => {
            return Err(ApiError::invalid(
                "idempotency_key",
                "idempotency_key and the Idempotency-Key header differ: send one, or the same in both",
            ));
        }
        (None, Some(body)) => Some(crate::store::key_hash(&merchant.id, body)),
        (header, _) => header,
    };
    let record = key.map(|k| idempotency::record(k, &signed));
    let mut replayed = HeaderMap::new();
    replayed.insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    if let Some(record) = &record {
        // A key names one invoice whichever chain it is on.
        for c in state.chains.iter() {
            if let KeyState::Live(existing) = c.store.idempotency_key(&merchant.id, record.key_hash, now)? {
                // Not announced again here: one this node made and never announced (it
                // stopped at once) is announced when the node starts (`replication::resume`).
                idempotency::check_same(&existing, record)?;
                let created = Created {
                    invoice: view_of(&state, c, &existing, now)?,
                    payment_instructions: instructions(c, &existing),
                };
                return Ok((StatusCode::CREATED, replayed, Json(created)));
            }
        }
    }
    let mut invoice = signed.into_invoice(
        statement,
        merchant.payout_address,
        chain.payments_contract,
        (state.node_name.clone(), now),
    );
    invoice.idempotency = record.clone();
    // What every other node will check: a key this node took for the request may not be one
    // they take for the invoice (granted after it signed, by this node's clock).
    state.merchants.check_invoice_signature(&invoice).map_err(|e| ApiError::invalid("authorization", e.to_string()))?;
    // One signed request makes one invoice: replayed after the payout address or the contract
    // changed, its nonce would make another.
    if let Some(made) =
        chain.store.invoice_of_nonce(&invoice.merchant_id, invoice.nonce)?.filter(|id| *id != invoice.id)
    {
        return Err(ApiError::nonce_taken(made));
    }
    let (replicator, chain_id) = (chain.replicator.clone(), chain.chain_id);
    let announce = move |invoice: &Invoice, keyed: bool| {
        info!(invoice_id = %invoice.id, merchant = %invoice.merchant_id, chain_id, amount = %invoice.amount, token = %token_label(invoice.token), idempotency_key = keyed, "invoice created");
        if let Some(replicator) = &replicator {
            replicator.replicate(invoice.clone());
        }
    };
    let (stored, new) = if record.is_some() {
        let (stored, new) = chain.store.put_idempotent_invoice(&invoice, now)?;
        // Another invoice from this nonce (made since the check above): one request, one invoice.
        if !new && stored.id != invoice.id && stored.nonce == invoice.nonce && stored.merchant_id == invoice.merchant_id
        {
            return Err(ApiError::nonce_taken(stored.id));
        }
        if new {
            announce(&invoice, true);
        }
        (stored, new)
    } else {
        match &chain.invoice_writer {
            // In a task of its own: a client that goes away while the write is under way
            // cannot leave the invoice stored but never replicated.
            Some(writer) => {
                let (writer, written) = (writer.clone(), invoice.clone());
                let new = tokio::spawn(async move {
                    let new = writer.put(written.clone()).await?;
                    if new {
                        announce(&written, false);
                    }
                    Ok::<_, crate::store::StoreError>(new)
                })
                .await
                .map_err(ApiError::internal)??;
                if !new {
                    nonce_not_taken(chain, &invoice)?;
                }
            }
            None => {
                if chain.store.put_created_invoices(std::slice::from_ref(&invoice))?.first() == Some(&true) {
                    announce(&invoice, false);
                } else {
                    nonce_not_taken(chain, &invoice)?;
                }
            }
        }
        (invoice.clone(), true)
    };
    let headers = if new {
        HeaderMap::new()
    } else {
        // Another request with the key won the race on this node, or the invoice (its id
        // commits to every term) came from another node without this node's header-only key.
        if let Some(record) = &record
            && stored.idempotency.is_some()
        {
            idempotency::check_same(&stored, record)?;
        }
        replayed
    };
    let view = view_of(&state, chain, &stored, now)?;
    let payment_instructions = instructions(chain, &stored);
    Ok((StatusCode::CREATED, headers, Json(Created { invoice: view, payment_instructions })))
}

/// After a write that stored nothing: the invoice is stored (an earlier copy), unless its
/// nonce made another one meanwhile.
fn nonce_not_taken(chain: &super::ChainState, invoice: &Invoice) -> Result<(), ApiError> {
    if chain.store.invoice(invoice.id)?.is_some() {
        return Ok(());
    }
    match chain.store.invoice_of_nonce(&invoice.merchant_id, invoice.nonce)? {
        Some(made) => Err(ApiError::nonce_taken(made)),
        None => Err(ApiError::internal("the invoice was not stored")),
    }
}

/// An invoice with its payments and settlement.
#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "invoices",
    params(("id" = String, Path, description = "Invoice id, 0x and 64 hex digits", pattern = "^0x[0-9a-fA-F]{64}$")),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "The invoice", body = InvoiceView),
        (status = 400, description = "The id is not 0x and 64 hex digits", body = super::error::ErrorBody),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `invoices:read` scope", body = super::error::ErrorBody),
        (status = 404, description = "No such invoice of this merchant", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn get(
    State(state): State<ApiState>,
    caller: auth::Caller,
    Path(id): Path<String>,
) -> Result<Json<InvoiceView>, ApiError> {
    let (chain, invoice) = merchant_invoice(&state, &caller, &id)?;
    Ok(Json(view_of(&state, chain, &invoice, now_s())?))
}

/// The view of `invoice` of `chain`, with the payments made for it on the node's other chains
/// listed as not counting (`wrong_chain`).
fn view_of(state: &ApiState, chain: &ChainState, invoice: &Invoice, now: u64) -> Result<InvoiceView, ApiError> {
    let mut view = invoice_view(&chain.store, &chain.schedule, chain.chain_id, invoice, now)?;
    view.checkout_url = Some(format!("{}/checkout/{}", state.public_url, invoice.id));
    for other in state.chains.iter().filter(|c| c.chain_id != chain.chain_id) {
        for p in other.store.payments_of_invoice(invoice.id)? {
            let round = other.schedule.round_of(p.leaf.block_number);
            view.payments.push(crate::invoice_view::payment_view(&p, Some(WRONG_CHAIN), round, None));
        }
    }
    Ok(view)
}

/// Why a payment made on another chain than the invoice's does not count.
const WRONG_CHAIN: &str = "wrong_chain: paid on another chain than the invoice's chain_id";

/// Query of `GET /v1/invoices`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only invoices in this status.
    #[param(value_type = Option<InvoiceStatus>)]
    pub status: Option<String>,
    /// Page size, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only invoices payable on this chain.
    pub chain_id: Option<u64>,
}

/// A page of invoices.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoicePage {
    /// Invoices, newest first.
    pub data: Vec<InvoiceView>,
    /// Cursor of the next page, absent on the last page.
    pub next_cursor: Option<String>,
}

/// Response of `GET /v1/invoices/{id}/receipt`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Receipts {
    /// One receipt per settled payment (format: docs/merchants.md, "Receipts").
    #[schema(value_type = Vec<Object>)]
    pub receipts: Vec<settleproof_consensus::Receipt>,
}

/// Invoices examined at most per page when filtering by status.
const MAX_SCAN: usize = 1000;

/// The merchant's invoices, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/invoices", tag = "invoices", params(ListQuery),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "A page of invoices", body = InvoicePage),
        (status = 400, description = "A query parameter is invalid", body = super::error::ErrorBody),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `invoices:read` scope", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: auth::Caller,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InvoicePage>, ApiError> {
    let merchant = auth::merchant(&caller, &state, Some(Scope::InvoicesRead))?;
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::invalid("query", format!("{e}; accepted: status, limit, cursor, chain_id")))?;
    let chains: Vec<&ChainState> = match q.chain_id {
        Some(id) => vec![state.chains.get(Some(id), "chain_id")?],
        None => state.chains.iter().collect(),
    };
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be between 1 and 100"));
    }
    let status = match &q.status {
        None => None,
        Some(s) => Some(
            serde_json::from_value::<crate::invoice_view::InvoiceStatus>(serde_json::Value::String(s.clone()))
                .map_err(|_| {
                    ApiError::invalid(
                        "status",
                        "status must be one of open, underpaid, paid, overpaid, expired, paid_late",
                    )
                })?,
        ),
    };
    let mut cursor = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let now = now_s();
    let (mut data, mut scanned) = (Vec::new(), 0usize);
    let next_cursor = loop {
        let batch = newest_across(&chains, &merchant.id, cursor, limit)?;
        let exhausted = batch.len() < limit;
        for (chain, inv) in batch {
            scanned += 1;
            cursor = Some((inv.created_at, inv.id));
            let view = view_of(&state, chain, &inv, now)?;
            if status.is_none_or(|s| s == view.status) {
                data.push(view);
                if data.len() == limit {
                    break;
                }
            }
        }
        if data.len() == limit || scanned >= MAX_SCAN {
            break cursor.map(|(c, id)| format!("{c}.{id}"));
        }
        if exhausted {
            break None;
        }
    };
    Ok(Json(InvoicePage { data, next_cursor }))
}

/// The merchant's `limit` newest invoices before `before` over `chains`, newest first: each
/// chain's newest, merged. The cursor (creation time, id) orders invoices of every chain.
fn newest_across<'a>(
    chains: &[&'a ChainState],
    merchant: &str,
    before: Option<(u64, B256)>,
    limit: usize,
) -> Result<Vec<(&'a ChainState, Invoice)>, ApiError> {
    let mut all = Vec::new();
    for chain in chains {
        all.extend(chain.store.invoices_of_merchant(merchant, before, limit)?.into_iter().map(|i| (*chain, i)));
    }
    all.sort_by_key(|(_, i)| std::cmp::Reverse((i.created_at, i.id)));
    all.truncate(limit);
    Ok(all)
}

fn parse_cursor(s: &str) -> Result<(u64, B256), ApiError> {
    let bad = || ApiError::invalid("cursor", "cursor must be the next_cursor of a previous page");
    let (created, id) = s.split_once('.').ok_or_else(bad)?;
    Ok((created.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?))
}

/// The invoice `id` of the authenticated merchant and its chain (404 for another merchant's
/// invoice).
fn merchant_invoice<'a>(
    state: &'a ApiState,
    caller: &auth::Caller,
    id: &str,
) -> Result<(&'a ChainState, Invoice), ApiError> {
    let merchant = auth::merchant(caller, state, Some(Scope::InvoicesRead))?;
    let id: B256 =
        id.parse().map_err(|_| ApiError::invalid("id", "invoice id must be 0x followed by 64 hex digits"))?;
    for chain in state.chains.iter() {
        if let Some(invoice) = chain.store.invoice(id)?.filter(|i| i.merchant_id == merchant.id) {
            return Ok((chain, invoice));
        }
    }
    Err(ApiError::not_found("invoice"))
}

/// Receipts of the invoice's settled payments: Merkle proof and aggregate signature, each
/// verifiable without trusting any node (docs/merchants.md).
#[utoipa::path(get, path = "/v1/invoices/{id}/receipt", tag = "invoices",
    params(("id" = String, Path, description = "Invoice id, 0x and 64 hex digits", pattern = "^0x[0-9a-fA-F]{64}$")),
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "The receipts", body = Receipts),
        (status = 400, description = "The id is not 0x and 64 hex digits", body = super::error::ErrorBody),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 403, description = "An API key without the `invoices:read` scope", body = super::error::ErrorBody),
        (status = 404, description = "No such invoice, or nothing of it settled yet", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn receipt(
    State(state): State<ApiState>,
    caller: auth::Caller,
    Path(id): Path<String>,
) -> Result<Json<Receipts>, ApiError> {
    let (chain, invoice) = merchant_invoice(&state, &caller, &id)?;
    let ctx = crate::receipt::ReceiptContext {
        chain_id: chain.chain_id,
        payments: chain.payments_contract,
        settlement: chain.settlement_contract,
        schedule: chain.schedule,
        halt: chain.halt.clone(),
    };
    let mut receipts = Vec::new();
    for p in chain.store.payments_of_invoice(invoice.id)? {
        let Some(round) = chain.schedule.round_of(p.leaf.block_number) else { continue };
        if let Some(record) = chain.store.settlement(round)?
            && let Some(r) = crate::receipt::build(&chain.store, &ctx, &p.leaf, &record, &invoice)?
        {
            receipts.push(r);
        }
    }
    if receipts.is_empty() {
        return Err(ApiError::not_found("receipt (no payment of this invoice is settled yet)"));
    }
    Ok(Json(Receipts { receipts }))
}

/// The merchant's webhook endpoint state and delivery counts.
#[utoipa::path(get, path = "/v1/merchant", tag = "merchant",
    security(("merchant_jwt" = [])),
    responses(
        (status = 200, description = "Endpoint state and counts", body = Object),
        (status = 401, description = "No or a wrong merchant token", body = super::error::ErrorBody),
        (status = 429, description = "Over the request budget", body = super::error::ErrorBody),
    ))]
pub(super) async fn merchant(
    State(state): State<ApiState>,
    caller: auth::Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let merchant = auth::merchant(&caller, &state, None)?;
    super::admin::merchant_status(&state, &merchant.id)
}

pub(super) fn random_id() -> B256 {
    let mut id = B256::ZERO;
    rand::thread_rng().fill_bytes(id.as_mut_slice());
    id
}

fn field_error(e: FieldError) -> ApiError {
    ApiError::invalid(e.field, e.problem)
}

/// An expiry this node takes now: in the future and within a year.
fn check_expiry(expires_at: Option<u64>, now: u64) -> Result<(), ApiError> {
    match expires_at {
        Some(at) if at <= now => Err(ApiError::invalid(
            "expires_at",
            "the invoice would be expired already: expires_at (or the JWT's nbf plus expires_in) must be in the future",
        )),
        Some(at) if at - now > MAX_LIFETIME_S => {
            Err(ApiError::invalid("expires_at", "expires_at must be within one year"))
        }
        _ => Ok(()),
    }
}

/// The checkout's redirect URL under this node's policy: no plain http unless
/// `tls.allow_insecure_http` (any node takes http(s) from another operator).
fn check_redirect(url: &str, insecure_http: bool) -> Result<(), ApiError> {
    settleproof_config::netpolicy::check_url(url, insecure_http)
        .map(|_| ())
        .map_err(|e| ApiError::invalid("redirect_url", format!("redirect_url: {e}")))
}

/// How a wallet pays `inv` on `state`'s chain.
pub(super) fn instructions(state: &ChainState, inv: &Invoice) -> PaymentInstructions {
    let transactions = if inv.token.is_zero() {
        vec![TxInstruction {
            description: "pay the invoice in the native coin",
            to: state.payments_contract,
            value: inv.amount.to_string(),
            data: InvoicePayments::payNativeCall { invoiceId: inv.id, merchant: inv.payout_address }
                .abi_encode()
                .into(),
        }]
    } else {
        vec![
            TxInstruction {
                description: "approve the payment contract to transfer the amount",
                to: inv.token,
                value: "0".into(),
                data: IERC20::approveCall { spender: state.payments_contract, value: inv.amount }.abi_encode().into(),
            },
            TxInstruction {
                description: "pay the invoice in the token",
                to: state.payments_contract,
                value: "0".into(),
                data: InvoicePayments::payTokenCall {
                    invoiceId: inv.id,
                    merchant: inv.payout_address,
                    token: inv.token,
                    amount: inv.amount,
                }
                .abi_encode()
                .into(),
            },
        ]
    };
    PaymentInstructions { chain_id: state.chain_id, contract: state.payments_contract, transactions }
}

#[cfg(test)]
mod idempotency_tests;
#[cfg(test)]
mod tests;
