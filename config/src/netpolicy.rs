//! Which outgoing URLs and addresses a node may use: `http://` only to loopback (unless allowed),
//! and webhook targets only on the public internet (unless allowed). Used by validation here and
//! by the node's HTTP clients at connect time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why a URL is refused; the text names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    /// Not an absolute http(s) URL with a host.
    #[error("`{0}` is not an http:// or https:// URL with a host")]
    NotHttp(String),
    /// Plain http to a host other than loopback.
    #[error(
        "http:// to `{0}` would send it in clear over the network: use https://, or set tls.allow_insecure_http = true"
    )]
    Insecure(String),
    /// A webhook target on a non-public address.
    #[error(
        "`{0}` is a loopback, private, link-local, multicast or metadata address: use a public host, or set webhooks.allow_private_targets = true"
    )]
    Private(String),
    /// Not an absolute ws(s) URL with a host.
    #[error("`{0}` is not a ws:// or wss:// URL with a host")]
    NotWs(String),
    /// Plain ws to a host other than loopback.
    #[error(
        "ws:// to `{0}` would send it in clear over the network: use wss://, or set tls.allow_insecure_http = true"
    )]
    InsecureWs(String),
    /// Credentials in a webhook URL would be sent to the endpoint and stored in logs.
    #[error("the URL holds a user name or password; remove it")]
    Credentials,
}

/// Checks an outgoing URL: http(s), with a host, and `http://` only to loopback unless
/// `allow_insecure`. Returns the parsed URL.
pub fn check_url(raw: &str, allow_insecure: bool) -> Result<url::Url, UrlProblem> {
    let parsed = url::Url::parse(raw).map_err(|_| UrlProblem::NotHttp(mask_urls(raw)))?;
    let host = match parsed.host() {
        Some(h) if matches!(parsed.scheme(), "http" | "https") => h.to_string(),
        _ => return Err(UrlProblem::NotHttp(mask_urls(raw))),
    };
    if parsed.scheme() == "http" && !allow_insecure && !is_loopback_host(&parsed) {
        return Err(UrlProblem::Insecure(host));
    }
    Ok(parsed)
}

/// Checks a WebSocket URL: ws(s), with a host, and `ws://` only to loopback unless
/// `allow_insecure`. Returns the parsed URL.
pub fn check_ws_url(raw: &str, allow_insecure: bool) -> Result<url::Url, UrlProblem> {
    let parsed = url::Url::parse(raw).map_err(|_| UrlProblem::NotWs(mask_urls(raw)))?;
    let host = match parsed.host() {
        Some(h) if matches!(parsed.scheme(), "ws" | "wss") => h.to_string(),
        _ => return Err(UrlProblem::NotWs(mask_urls(raw))),
    };
    if parsed.scheme() == "ws" && !allow_insecure && !is_loopback_host(&parsed) {
        return Err(UrlProblem::InsecureWs(host));
    }
    Ok(parsed)
}

/// Checks a webhook URL as [`check_url`] does, and, unless `allow_private`, that a host given
/// as an address is public (names are checked when they are resolved, at each delivery).
pub fn check_webhook_url(raw: &str, allow_insecure: bool, allow_private: bool) -> Result<url::Url, UrlProblem> {
    let parsed = check_url(raw, allow_insecure)?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    if !allow_private {
        let blocked = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => !is_public(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => !is_public(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => is_localhost_name(d),
            None => true,
        };
        if blocked {
            return Err(UrlProblem::Private(parsed.host_str().unwrap_or_default().to_string()));
        }
    }
    Ok(parsed)
}

/// `text` with every URL cut to its scheme and host (`/…` marks what was cut): paths, queries
/// and user info often hold API keys.
pub fn mask_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        // Byte index after the last character that cannot be part of a scheme (of any width).
        let scheme_start = rest[..start]
            .char_indices()
            .rev()
            .find(|(_, c)| !c.is_ascii_alphanumeric() && *c != '+')
            .map_or(0, |(i, c)| i + c.len_utf8());
        let after = &rest[start + 3..];
        let end =
            after.find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ',')).unwrap_or(after.len());
        let authority_end = after[..end].find(['/', '?', '#']).unwrap_or(end);
        let authority = &after[..authority_end];
        let host = authority.rsplit('@').next().unwrap_or(authority);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&rest[scheme_start..start + 3]);
        out.push_str(host);
        if authority_end < end || host.len() < authority.len() {
            out.push_str("/…");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Whether the URL's host is loopback: `localhost` (or a name under it), 127.0.0.0/8 or ::1.
pub fn is_loopback_host(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => is_localhost_name(d),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn is_localhost_name(d: &str) -> bool {
    let d = d.trim_end_matches('.').to_ascii_lowercase();
    d == "localhost" || d.ends_with(".localhost")
}

/// Whether `ip` is on the public internet: not loopback, private, shared (CGNAT), link-local
/// (cloud metadata 169.254.169.254 among them), multicast, documentation, benchmarking,
/// reserved or unspecified. IPv4 addresses inside IPv6 (mapped, compatible, NAT64) are judged
/// as the IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let blocked = a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224;
    !blocked
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    // 6to4 (2002:AABB:CCDD::/48) carries an IPv4 address in its prefix.
    if s[0] == 0x2002 {
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    // NAT64 (64:ff9b::/96), IPv4-translated (::ffff:0:a.b.c.d) and the deprecated
    // IPv4-compatible form (::a.b.c.d).
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4];
    let translated = s[0..4] == [0; 4] && s[4] == 0xffff && s[5] == 0;
    if nat64 || translated || (s[0..6] == [0; 6] && (s[6] != 0 || s[7] > 1)) {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    let blocked = ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard-only, 100::/64
        || (s[0] == 0x2001 && s[1] == 0) // Teredo, 2001::/32 (tunnels to any IPv4 address)
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1); // local-use NAT64, 64:ff9b:1::/48
    !blocked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_table() {
        let cases = [
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("127.0.0.1", false),
            ("127.9.9.9", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("172.32.0.1", true),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("100.128.0.1", true),
            ("0.0.0.0", false),
            ("224.0.0.1", false),
            ("255.255.255.255", false),
            ("192.0.2.1", false),
            ("198.18.0.1", false),
            ("::1", false),
            ("::", false),
            ("fe80::1", false),
            ("fd00:ec2::254", false),
            ("ff02::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::a00:1", false),
            ("::10.0.0.1", false),
            ("2001:db8::1", false),
            ("2606:4700:4700::1111", true),
            ("2002:7f00:1::", false),
            ("2002:0808:0808::", true),
            ("2001:0:4136:e378::1", false),
            ("64:ff9b:1::a00:1", false),
            ("::ffff:0:7f00:1", false),
        ];
        for (ip, public) in cases {
            assert_eq!(is_public(ip.parse().expect("ip")), public, "{ip}");
        }
    }

    #[test]
    fn url_table() {
        assert!(check_url("https://rpc.example.com/v2/KEY", false).is_ok());
        assert!(check_url("http://127.0.0.1:8545", false).is_ok());
        assert!(check_url("http://localhost:8545", false).is_ok());
        assert!(check_url("http://[::1]:8545", false).is_ok());
        assert!(matches!(check_url("http://rpc.example.com", false), Err(UrlProblem::Insecure(_))));
        assert!(check_url("http://rpc.example.com", true).is_ok());
        assert!(matches!(check_url("ftp://x", false), Err(UrlProblem::NotHttp(_))));
        assert!(matches!(check_url("nope", false), Err(UrlProblem::NotHttp(_))));
        assert!(matches!(check_url("https://", false), Err(UrlProblem::NotHttp(_))));
        let hook = |u: &str, private| check_webhook_url(u, false, private);
        assert!(hook("https://shop.example.com/hooks", false).is_ok());
        // Found by the property tests: a multi-byte character before a URL.
        assert_eq!(mask_urls("𖵇https://h/KEY x"), "𖵇https://h/… x");
        assert_eq!(mask_urls("é://x/y"), "é://x/…");
        assert!(matches!(hook("https://169.254.169.254/latest", false), Err(UrlProblem::Private(_))));
        assert!(matches!(hook("https://[::ffff:10.0.0.1]/", false), Err(UrlProblem::Private(_))));
        assert!(matches!(hook("http://localhost:9999/hooks", false), Err(UrlProblem::Private(_))));
        assert!(hook("http://localhost:9999/hooks", true).is_ok());
        assert!(matches!(hook("https://user:pw@shop.example.com/", false), Err(UrlProblem::Credentials)));
    }
}
