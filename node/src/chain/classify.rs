//! Transient or permanent: whether an RPC failure is worth retrying on the same provider.

use alloy::transports::{RpcError, TransportError, TransportErrorKind};

/// How an RPC failure is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Worth retrying (timeouts, connection errors, 5xx, 429, rate limits, node not synced).
    Transient,
    /// Retrying will not help (bad request, unsupported method, malformed answer, auth).
    Permanent,
}

/// Classifies an alloy transport error.
pub fn classify(e: &TransportError) -> ErrorClass {
    match e {
        RpcError::Transport(TransportErrorKind::HttpError(h)) => http_status(h.status),
        RpcError::Transport(_) => ErrorClass::Transient,
        RpcError::ErrorResp(p) => json_rpc_code(p.code, p.is_retry_err()),
        RpcError::NullResp => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// HTTP status of a failed call.
pub fn http_status(status: u16) -> ErrorClass {
    match status {
        408 | 425 | 429 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// JSON-RPC error code of a failed call (`rate_limited` from the provider-specific checks).
pub fn json_rpc_code(code: i64, rate_limited: bool) -> ErrorClass {
    if rate_limited {
        return ErrorClass::Transient;
    }
    match code {
        // Parse error, invalid request, method not found, invalid params.
        -32700 | -32600 | -32601 | -32602 => ErrorClass::Permanent,
        // Internal and server errors ("header not found", "missing trie node", overload).
        _ => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorClass::*;
    use super::*;

    #[test]
    fn http_table() {
        for (status, want) in [
            (408, Transient),
            (429, Transient),
            (500, Transient),
            (503, Transient),
            (400, Permanent),
            (401, Permanent),
            (404, Permanent),
        ] {
            assert_eq!(http_status(status), want, "{status}");
        }
    }

    #[test]
    fn json_rpc_table() {
        for (code, rl, want) in [
            (-32603, false, Transient),
            (-32000, false, Transient),
            (-32601, false, Permanent),
            (-32602, false, Permanent),
            (-32602, true, Transient),
        ] {
            assert_eq!(json_rpc_code(code, rl), want, "{code}");
        }
        assert_eq!(classify(&RpcError::NullResp), Transient);
        assert_eq!(classify(&TransportErrorKind::custom_str("connection refused")), Transient);
    }
}
