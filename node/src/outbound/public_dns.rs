//! A resolver that hands out only public addresses, for webhook deliveries: a merchant's URL
//! must not reach the operator's loopback, private network or cloud metadata service.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use settleproof_config::netpolicy::is_public;
use std::net::SocketAddr;

/// A target refused because it is not on the public internet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` resolves only to loopback, private, link-local, multicast or metadata addresses")]
pub struct TargetRefused(pub String);

/// Resolves with the system resolver and keeps only public addresses; a name with none fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = resolved.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                metrics::counter!("webhook_targets_refused_total").increment(1);
                return Err(Box::new(TargetRefused(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// A URL whose host is an address is dialled without the resolver: check it here.
pub fn check_literal_target(url: &str) -> Result<(), TargetRefused> {
    let Ok(parsed) = url::Url::parse(url) else { return Ok(()) };
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
        _ => return Ok(()),
    };
    if is_public(ip) { Ok(()) } else { Err(TargetRefused(ip.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_names_resolve_to_nothing() {
        let name: Name = "localhost".parse().expect("name");
        let e = match PublicOnly.resolve(name).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(e.to_string().contains("localhost"), "{e}");
    }

    #[test]
    fn address_literals_are_checked() {
        assert!(check_literal_target("http://127.0.0.1:9/x").is_err());
        assert!(check_literal_target("https://[fe80::1]/x").is_err());
        assert!(check_literal_target("https://169.254.169.254/latest/meta-data").is_err());
        assert!(check_literal_target("https://8.8.8.8/x").is_ok());
        assert!(check_literal_target("https://shop.example.com/x").is_ok());
    }
}
