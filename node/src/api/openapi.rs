//! The OpenAPI 3.1 document of the merchant API, generated from the handlers and their types
//! (utoipa), served at `GET /v1/openapi.json` and committed as `docs/openapi.json`; the webhook
//! event bodies are described the same way in `docs/webhooks.json`. Tests fail when either
//! file is stale.

use super::error::{ErrorBody, ErrorDetail};
use super::invoices::{self, CreateInvoice, Created, InvoicePage, PaymentInstructions, Receipts, TxInstruction};
use crate::invoice_view::{InvoiceStatus, InvoiceView, PaymentView, SettlementView};
use crate::webhook::events;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The merchant API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "settleproof merchant API",
        description = "Invoices paid on chain and settled by a quorum of operators. Every node serves the same API; \
            authenticate with the merchant's API token as `Authorization: Bearer <token>`.",
        license(name = "Apache-2.0")
    ),
    paths(
        invoices::create,
        invoices::list,
        invoices::get,
        invoices::receipt,
        super::events::test_event,
        invoices::merchant,
        super::api_keys::create,
        super::api_keys::list,
        super::api_keys::revoke,
        super::events::list,
        super::events::replay_one,
        super::events::replay_since,
        super::webhook_endpoints::create,
        super::webhook_endpoints::list,
        super::webhook_endpoints::get,
        super::webhook_endpoints::update,
        super::webhook_endpoints::delete,
        super::webhook_endpoints::rotate_secret,
        super::webhook_endpoints::deliveries,
        super::webhook_endpoints::replay,
        super::checkout::page,
        super::checkout::status,
        openapi_json,
    ),
    components(schemas(
        CreateInvoice, Created, InvoicePage, InvoiceView, InvoiceStatus, PaymentView, SettlementView,
        PaymentInstructions, TxInstruction, Receipts, super::events::TestQueued, ErrorBody, ErrorDetail,
        crate::merchants::KeyGrant, super::api_keys::ApiKeyView,
        super::api_keys::ApiKeyList, crate::store::Scope, super::events::EventList, super::events::EventView,
        crate::store::Attempt, super::events::ReplaySince, super::events::Replayed,
        super::webhook_endpoints::CreateEndpoint, super::webhook_endpoints::UpdateEndpoint,
        super::webhook_endpoints::EndpointView, super::webhook_endpoints::EndpointWithSecret,
        super::webhook_endpoints::EndpointList, super::checkout::CheckoutStatus
    )),
    modifiers(&SignedJwt),
    tags(
        (name = "invoices", description = "Create invoices, read their status and receipts"),
        (name = "webhooks", description = "Webhook events, their delivery attempts and replays (event bodies: docs/webhooks.json)"),
        (name = "merchant", description = "The merchant's own state and API keys"),
        (name = "checkout", description = "The hosted payment page of every invoice, public, on any node that holds it"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The webhook event bodies (components only: the events are POSTed to the merchant).
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "settleproof webhook events",
        description = "Bodies POSTed to the merchant's endpoint, signed per Standard Webhooks \
            (`webhook-id`, `webhook-timestamp`, `webhook-signature`); see docs/merchants.md."
    ),
    components(schemas(
        events::SettlementEvent,
        events::SettlementEventData,
        events::EventPayment,
        events::InvoiceRef,
        events::RevertedEvent,
        events::RevertedEventData,
        events::RevertedPayment,
        events::ExpiredEvent,
        events::ExpiredEventData,
        events::TestEvent,
        events::TestEventData,
        InvoiceView,
        InvoiceStatus,
        PaymentView,
        SettlementView
    ))
)]
pub struct WebhookDoc;

struct SignedJwt;

impl Modify for SignedJwt {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT signed by one of the merchant's keys for this one request (header kid, nonce; claims iss, \
                     sub, nbf, exp, uri, reqHash: see docs/merchants.md, \"Signed requests\"); plain bearer \
                     tokens are refused",
                ))
                .build(),
        );
        doc.components.get_or_insert_with(Default::default).add_security_scheme("merchant_jwt", scheme);
    }
}

/// The document, pretty JSON with a final newline (the form committed in docs/).
pub fn api_json() -> String {
    ApiDoc::openapi().to_pretty_json().map(|s| s + "\n").unwrap_or_default()
}

/// The webhook document, as committed.
pub fn webhooks_json() -> String {
    WebhookDoc::openapi().to_pretty_json().map(|s| s + "\n").unwrap_or_default()
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub(super) async fn openapi_json() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], api_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(name);
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// `settleproof openapi > docs/openapi.json` and `settleproof openapi --webhooks >
    /// docs/webhooks.json` refresh them.
    #[test]
    fn the_committed_documents_are_current() {
        let api = api_json();
        assert!(api.contains("\"openapi\": \"3.1.0\""));
        for route in
            ["/v1/invoices", "/v1/invoices/{id}", "/v1/invoices/{id}/receipt", "/v1/webhooks/test", "/v1/merchant"]
        {
            assert!(api.contains(&format!("\"{route}\"")), "{route} undocumented");
        }
        for status in ["\"401\"", "\"404\"", "\"413\"", "\"429\""] {
            assert!(api.contains(status), "status {status} undocumented");
        }
        assert!(
            committed("openapi.json") == api,
            "docs/openapi.json is stale: run `settleproof openapi > docs/openapi.json`"
        );
        assert!(
            committed("webhooks.json") == webhooks_json(),
            "docs/webhooks.json is stale: run `settleproof openapi --webhooks > docs/webhooks.json`"
        );
    }
}
