//! One error type for every handler: a status and a JSON body naming the field and the fix.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// The request field at fault, if any.
    pub field: Option<&'static str>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ApiError {
    /// 400 for a bad field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: "invalid_request", field: Some(field), message: message.into() }
    }

    /// 401.
    pub fn unauthorized() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            field: None,
            message: "send the merchant API token as `Authorization: Bearer <token>`".into(),
        }
    }

    /// 401 naming what is wrong with the credential.
    pub fn unauthorized_because(message: impl Into<String>) -> Self {
        Self { status: StatusCode::UNAUTHORIZED, code: "unauthorized", field: None, message: message.into() }
    }

    /// 503: this node cannot take the request now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", field: None, message: message.into() }
    }

    /// 403: authenticated, but the credential may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self { status: StatusCode::FORBIDDEN, code: "insufficient_scope", field: None, message: message.into() }
    }

    /// 429 with the seconds to wait.
    pub fn rate_limited(retry_after_s: u64) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited",
            field: None,
            message: format!("too many requests for this merchant; retry in {retry_after_s} s"),
        }
    }

    /// 409: the request is valid but this node's state does not allow it.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self { status: StatusCode::CONFLICT, code: "conflict", field: None, message: message.into() }
    }

    /// 409: the signed request's nonce made invoice `made` already (under the payout address
    /// or payments contract of then): one signed request makes one invoice.
    pub fn nonce_taken(made: alloy::primitives::B256) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            code: "nonce_taken",
            field: Some("nonce"),
            message: format!(
                "this signed request (its nonce) made invoice {made} already; sign a new request (a new nonce) for another invoice"
            ),
        }
    }

    /// 409: an idempotency key reused with a request that differs in `field`.
    pub fn idempotency_conflict(field: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::CONFLICT, code: "idempotency_conflict", field: Some(field), message: message.into() }
    }

    /// A registry refusal as an answer: 400 naming the field, 404 for `missing` (what was
    /// asked for), 409 for a conflict, 500 for the store.
    pub fn from_registry(e: crate::merchants::RegistryError, missing: &str) -> Self {
        use crate::merchants::RegistryError;
        match e {
            RegistryError::Invalid { field, problem } => Self::invalid(field, problem),
            RegistryError::UnknownMerchant(_) => Self::not_found(missing),
            RegistryError::Conflict(m) | RegistryError::CannotApprove(m) => Self::conflict(m),
            other => Self::internal(other),
        }
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "not_found", field: None, message: format!("{what} not found") }
    }

    /// 500; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal API error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            field: None,
            message: "internal error".into(),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`invalid_request`, `unauthorized`, `not_found`,
    /// `rate_limited`, `auth_locked_out`, `internal`).
    pub code: &'static str,
    /// The request field at fault, if any.
    pub field: Option<&'static str>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code, field: self.field, message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}
