//! The faults a proxy can inject.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the proxy does to requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Fault {
    /// Forward faithfully.
    #[default]
    None,
    /// Answer every request with HTTP 503, as a provider that is down.
    Down,
    /// Forward after a delay.
    Delay {
        /// Milliseconds added to each request.
        ms: u64,
    },
    /// Answer every request with a JSON-RPC internal error.
    Error,
    /// Answer `eth_getLogs` with an empty list; forward the rest.
    HideLogs,
    /// Answer `eth_sendRawTransaction` with an error and keep the transaction, as a public
    /// mempool an outsider reads: [`crate::ProxyHandle::held`] returns what was kept.
    HoldSends,
    /// Answer `eth_getTransactionCount` with 0, as a provider far behind the chain.
    StaleNonce,
    /// Add `log` to every `eth_getLogs` answer whose block range contains its `blockNumber`.
    ForgeLog {
        /// A log in JSON-RPC form (`address`, `topics`, `data`, `blockNumber`, `blockHash`,
        /// `transactionHash`, `transactionIndex`, `logIndex`, `removed`).
        log: Value,
    },
}

/// Parses a JSON-RPC block tag or hex quantity; `latest`-like tags give `None`.
pub(crate) fn quantity(v: &Value) -> Option<u64> {
    v.as_str().and_then(|s| s.strip_prefix("0x")).and_then(|h| u64::from_str_radix(h, 16).ok())
}

/// Whether the `eth_getLogs` params select blocks that include `block`.
pub(crate) fn range_contains(params: &Value, block: u64) -> bool {
    let filter = &params[0];
    let from = quantity(&filter["fromBlock"]).unwrap_or(0);
    let to = quantity(&filter["toBlock"]).unwrap_or(u64::MAX);
    from <= block && block <= to
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn faults_parse_from_json() {
        let f: Fault = serde_json::from_value(json!({"mode": "delay", "ms": 250})).expect("delay");
        assert_eq!(f, Fault::Delay { ms: 250 });
        let f: Fault = serde_json::from_value(json!({"mode": "down"})).expect("down");
        assert_eq!(f, Fault::Down);
        assert!(serde_json::from_value::<Fault>(json!({"mode": "explode"})).is_err());
    }

    #[test]
    fn range_table() {
        let p = json!([{"fromBlock": "0x5", "toBlock": "0xa"}]);
        assert!(range_contains(&p, 5) && range_contains(&p, 10));
        assert!(!range_contains(&p, 4) && !range_contains(&p, 11));
        assert!(range_contains(&json!([{"fromBlock": "0x5", "toBlock": "latest"}]), 99));
    }
}
