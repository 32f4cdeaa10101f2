//! Throttles guessing of API tokens: a client address (an IPv6 /64) with too many `401`s in a
//! window is answered `429` without looking at its token until the lockout ends. Applied as a
//! layer around the whole router, so every route that checks a token is covered.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failures within [`WINDOW`] that lock a client out.
pub const MAX_FAILURES: u32 = 10;
/// Window of counted failures.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Length of a lockout.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Clients tracked at most (the oldest windows are dropped first).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

/// Failed authentications per client address.
#[derive(Debug, Clone, Default)]
pub struct AuthThrottle {
    clients: Arc<Mutex<HashMap<IpAddr, Entry>>>,
    /// `api.trusted_proxies`: only their `X-Forwarded-For` is believed.
    trusted: Arc<Vec<ipnet::IpNet>>,
}

impl AuthThrottle {
    /// A throttle that takes the client's address from `X-Forwarded-For` on connections from
    /// `trusted` proxies.
    pub fn with_trusted_proxies(trusted: Vec<ipnet::IpNet>) -> Self {
        Self { clients: Arc::default(), trusted: Arc::new(trusted) }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client a request is counted for: the connection's `peer`, or, when that is a
    /// trusted proxy, the last `X-Forwarded-For` entry that is not itself one (each proxy
    /// appends the address it was reached from, so the entries before it are the client's word).
    pub fn client_ip(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        // From the right: past the listed proxies, the first entry is the client. One that is
        // not a bare address (a port appended, `unknown`) ends the walk at the last address
        // known good, so no entry a client wrote itself is ever taken.
        let mut client = peer;
        for entry in entries.iter().rev() {
            match entry.parse::<IpAddr>() {
                Ok(ip) if self.trusts(ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => return client,
            }
        }
        client
    }

    /// `Err(seconds)` while `ip` is locked out.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let Ok(clients) = self.clients.lock() else { return Ok(()) };
        match clients.get(&key(ip)).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until.duration_since(now).as_secs().max(1)),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication of `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let Ok(mut clients) = self.clients.lock() else { return };
        if clients.len() >= MAX_TRACKED && !clients.contains_key(&key(ip)) {
            clients
                .retain(|_, e| now.duration_since(e.window_start) < WINDOW || e.locked_until.is_some_and(|u| u > now));
            if clients.len() >= MAX_TRACKED {
                return;
            }
        }
        let e = clients.entry(key(ip)).or_insert(Entry { failures: 0, window_start: now, locked_until: None });
        if now.duration_since(e.window_start) >= WINDOW {
            *e = Entry { failures: 0, window_start: now, locked_until: None };
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= MAX_FAILURES {
            e.locked_until = Some(now + LOCKOUT);
            metrics::counter!("api_auth_lockouts_total").increment(1);
            tracing::warn!(client = %key(ip), "repeated authentication failures: client locked out");
        }
    }
}

/// The address a client is counted by: IPv6 per /64 (one host usually holds a whole /64),
/// IPv4-mapped IPv6 as its IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    key(ip)
}

fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)),
        v4 => v4,
    }
}

/// Whether `path` authenticates (merchant and admin routes): only those are locked. The
/// checkout, health, metrics and status answer a locked-out address as any other, so an
/// outsider failing logins from a payer's address (or a proxy's) cannot lock payers out.
fn authenticates(path: &str) -> bool {
    (path.starts_with("/v1/") && path != "/v1/openapi.json") || path.starts_with("/admin/")
}

/// The layer: on routes that authenticate, locked-out clients get 429; answers of 401 count. A
/// success does not clear the count (a client holding one valid token could otherwise guess
/// others without limit): it expires with its window.
pub async fn layer(State(throttle): State<AuthThrottle>, req: Request, next: Next) -> Response {
    if !authenticates(req.uri().path()) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let ip = throttle.client_ip(peer, req.headers());
    let now = Instant::now();
    if let Err(retry_s) = throttle.check(ip, now) {
        let body = super::ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "auth_locked_out",
            field: None,
            message: format!("too many failed authentications from this address; retry in {retry_s} s"),
        };
        let mut resp = body.into_response();
        if let Ok(v) = HeaderValue::from_str(&retry_s.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        throttle.failed(ip, now);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_locked_out_address_still_reaches_the_checkout() {
        use tower::ServiceExt;
        let throttle = AuthThrottle::default();
        let app = axum::Router::new()
            .route("/v1/invoices", axum::routing::get(|| async { StatusCode::UNAUTHORIZED }))
            .route("/checkout/{id}", axum::routing::get(|| async { "page" }))
            .layer(axum::middleware::from_fn_with_state(throttle.clone(), layer));
        let ip: SocketAddr = "203.0.113.9:4000".parse().expect("addr");
        let call = |path: &str| {
            let mut req = Request::builder().uri(path).body(axum::body::Body::empty()).expect("request");
            req.extensions_mut().insert(ConnectInfo(ip));
            app.clone().oneshot(req)
        };
        for _ in 0..MAX_FAILURES {
            assert_eq!(call("/v1/invoices").await.expect("answer").status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(call("/v1/invoices").await.expect("answer").status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(call("/checkout/abc").await.expect("answer").status(), StatusCode::OK, "the payer's page");
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let t = AuthThrottle::with_trusted_proxies(vec!["10.0.0.0/8".parse().expect("net")]);
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.7, 203.0.113.5, 10.1.2.3".parse().expect("header"));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // Through the proxy: the last address it did not add itself.
        assert_eq!(t.client_ip(ip("10.0.0.2"), &h), ip("203.0.113.5"));
        // Straight from a client, the header is its own word and ignored.
        assert_eq!(t.client_ip(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        // No header, or none configured: the connection's address.
        assert_eq!(t.client_ip(ip("10.0.0.2"), &axum::http::HeaderMap::new()), ip("10.0.0.2"));
        assert_eq!(AuthThrottle::default().client_ip(ip("10.0.0.2"), &h), ip("10.0.0.2"));
        // IPv4-mapped IPv6 from the proxy counts as the proxy.
        assert_eq!(t.client_ip(ip("::ffff:10.0.0.2"), &h), ip("203.0.113.5"));
        // An entry the proxy wrote in another form ends the walk: the client's own entries
        // before it are never taken.
        let mut odd = axum::http::HeaderMap::new();
        odd.insert("x-forwarded-for", "198.51.100.7, 203.0.113.5:4444".parse().expect("header"));
        assert_eq!(t.client_ip(ip("10.0.0.2"), &odd), ip("10.0.0.2"));
    }

    #[tokio::test]
    async fn clients_behind_a_trusted_proxy_are_locked_out_one_by_one() {
        use tower::ServiceExt;
        let throttle = AuthThrottle::with_trusted_proxies(vec!["127.0.0.1/32".parse().expect("net")]);
        let app = axum::Router::new()
            .route("/v1/invoices", axum::routing::get(|| async { StatusCode::UNAUTHORIZED }))
            .layer(axum::middleware::from_fn_with_state(throttle.clone(), layer));
        let proxy: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let call = |client: &str| {
            let mut req = Request::builder()
                .uri("/v1/invoices")
                .header("x-forwarded-for", client)
                .body(axum::body::Body::empty())
                .expect("request");
            req.extensions_mut().insert(ConnectInfo(proxy));
            app.clone().oneshot(req)
        };
        for _ in 0..MAX_FAILURES {
            call("203.0.113.66").await.expect("answer");
        }
        assert_eq!(call("203.0.113.66").await.expect("answer").status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(call("198.51.100.1").await.expect("answer").status(), StatusCode::UNAUTHORIZED, "another client");
    }

    #[test]
    fn lockout_after_repeated_failures_then_release() {
        let t = AuthThrottle::default();
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        let other: IpAddr = "198.51.100.1".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed(ip, t0);
        }
        assert!(t.check(ip, t0).is_ok());
        t.failed(ip, t0);
        assert_eq!(t.check(ip, t0), Err(LOCKOUT.as_secs()));
        assert!(t.check(other, t0).is_ok(), "another client is not affected");
        assert!(t.check(ip, t0 + LOCKOUT).is_ok(), "the lockout ends");
        let v6a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let v6b: IpAddr = "2001:db8:1:2::ffff".parse().expect("ip");
        for _ in 0..MAX_FAILURES {
            t.failed(v6a, t0);
        }
        assert!(t.check(v6b, t0).is_err(), "one /64 is one client");
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let t = AuthThrottle::default();
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        let t0 = Instant::now();
        for k in 0..MAX_FAILURES * 2 {
            t.failed(ip, t0 + WINDOW * k / (MAX_FAILURES / 2));
        }
        assert!(t.check(ip, t0 + WINDOW * 4).is_ok());
    }
}
