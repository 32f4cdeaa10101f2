//! The proxy server.

use crate::fault::{Fault, range_contains};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Errors of starting a proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
}

#[derive(Debug, Clone)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    fault: Arc<RwLock<Fault>>,
    held: Arc<Mutex<Vec<String>>>,
}

/// A running proxy.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    fault: Arc<RwLock<Fault>>,
    held: Arc<Mutex<Vec<String>>>,
}

impl ProxyHandle {
    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the fault to inject from now on.
    pub fn set_fault(&self, fault: Fault) {
        if let Ok(mut f) = self.fault.write() {
            *f = fault;
        }
    }

    /// The raw transactions (hex) held back under [`Fault::HoldSends`], oldest first.
    pub fn held(&self) -> Vec<String> {
        self.held.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// Starts a proxy on `listen` forwarding to `upstream`, in a background task.
pub async fn spawn(listen: SocketAddr, upstream: &str) -> Result<ProxyHandle, ProxyError> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|source| ProxyError::Bind { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| ProxyError::Bind { addr: listen, source })?;
    let fault = Arc::new(RwLock::new(Fault::None));
    let held = Arc::new(Mutex::new(Vec::new()));
    let shared = Shared {
        upstream: upstream.to_string(),
        client: reqwest::Client::builder().build()?,
        fault: fault.clone(),
        held: held.clone(),
    };
    let app = Router::new()
        .route("/", post(forward))
        // Hosted providers carry the API key in the path: `/rpc/<key>` forwards too.
        .route("/rpc/{*key}", post(forward))
        .route("/_fault", get(get_fault).post(set_fault))
        .route("/_held", get(get_held))
        .with_state(shared);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "rpc proxy stopped");
        }
    });
    Ok(ProxyHandle { addr, fault, held })
}

async fn get_held(State(s): State<Shared>) -> axum::Json<Vec<String>> {
    axum::Json(s.held.lock().map(|h| h.clone()).unwrap_or_default())
}

async fn get_fault(State(s): State<Shared>) -> axum::Json<Fault> {
    axum::Json(s.fault.read().map(|f| f.clone()).unwrap_or_default())
}

async fn set_fault(State(s): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(f) => {
            tracing::info!(fault = ?f, "fault set");
            if let Ok(mut cur) = s.fault.write() {
                *cur = f;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid fault: {e}; e.g. {{\"mode\":\"delay\",\"ms\":500}}"))
            .into_response(),
    }
}

/// Whether the `eth_getLogs` params select block number `block`: a block range that holds it,
/// or a block hash (EIP-234) that upstream knows as that block's.
async fn selects(s: &Shared, params: &Value, block: u64) -> bool {
    let Some(hash) = params[0].get("blockHash") else { return range_contains(params, block) };
    let ask = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByHash", "params": [hash, false]});
    let number = match s.client.post(&s.upstream).json(&ask).send().await {
        Ok(answer) => answer.json::<Value>().await.ok().and_then(|a| crate::fault::quantity(&a["result"]["number"])),
        Err(_) => None,
    };
    if number.is_none() {
        eprintln!("rpc-proxy: the block of hash {hash} is unknown upstream; the forged log is not added");
    }
    number == Some(block)
}

async fn forward(State(s): State<Shared>, body: Bytes) -> Response {
    let fault = s.fault.read().map(|f| f.clone()).unwrap_or_default();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let method = request["method"].as_str().unwrap_or_default().to_string();
    match &fault {
        Fault::Down => {
            return (StatusCode::SERVICE_UNAVAILABLE, "provider down (injected)").into_response();
        }
        Fault::Error => {
            let err = json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32603, "message": "internal error (injected)"}});
            return axum::Json(err).into_response();
        }
        Fault::Delay { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Fault::HideLogs if method == "eth_getLogs" => {
            return axum::Json(json!({"jsonrpc": "2.0", "id": request["id"], "result": []})).into_response();
        }
        Fault::HoldSends if method == "eth_sendRawTransaction" => {
            if let (Some(raw), Ok(mut held)) = (request["params"][0].as_str(), s.held.lock()) {
                held.push(raw.to_string());
            }
            let err = json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32000, "message": "transaction held (injected)"}});
            return axum::Json(err).into_response();
        }
        Fault::StaleNonce if method == "eth_getTransactionCount" => {
            return axum::Json(json!({"jsonrpc": "2.0", "id": request["id"], "result": "0x0"})).into_response();
        }
        _ => {}
    }
    let upstream = match s.client.post(&s.upstream).header("content-type", "application/json").body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("upstream: {e}")).into_response(),
    };
    let status = upstream.status();
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("upstream body: {e}")).into_response(),
    };
    if let Fault::ForgeLog { log } = &fault
        && method == "eth_getLogs"
        && let Some(block) = crate::fault::quantity(&log["blockNumber"])
        && selects(&s, &request["params"], block).await
        && let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes)
        && let Some(list) = answer["result"].as_array_mut()
    {
        // Asked by hash, the forger names that hash, so its log passes for one of that block.
        let mut log = log.clone();
        if let Some(hash) = request["params"][0].get("blockHash") {
            log["blockHash"] = hash.clone();
        }
        list.push(log);
        return axum::Json(answer).into_response();
    }
    (
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        [("content-type", "application/json")],
        bytes,
    )
        .into_response()
}
