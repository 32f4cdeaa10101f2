//! Keeps URLs and their credentials out of everything the node shows or logs. RPC URLs often
//! hold an API key in their path, query or user info; errors from HTTP clients quote the URL.
//! The node registers each configured URL with a label (`rpc-0`), and [`scrub`] replaces it,
//! and masks the path, query and user info of any other URL in the text.
//!
//! The registry is process-wide and append-only: errors are rendered far from where the URL
//! was configured (`Display` of a transport error), and one process may run several nodes in
//! tests.

use std::sync::{Mutex, OnceLock};

fn registry() -> &'static Mutex<Vec<(String, String)>> {
    static R: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    R.get_or_init(Mutex::default)
}

/// Registers `url` to be shown as `label`, in its written and its normalised form.
pub fn register(url: &str, label: &str) {
    let mut forms = vec![url.to_string()];
    if let Ok(parsed) = url::Url::parse(url) {
        forms.push(parsed.as_str().to_string());
        forms.push(parsed.as_str().trim_end_matches('/').to_string());
    }
    if let Ok(mut r) = registry().lock() {
        for f in forms {
            if f.len() >= 8 && !r.iter().any(|(k, _)| *k == f) {
                r.push((f, label.to_string()));
            }
        }
        // Longest first, so a URL is replaced before a prefix of it.
        r.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    }
}

/// `text` with every registered URL replaced by its label and every other URL cut to its
/// scheme and host.
pub fn scrub(text: &str) -> String {
    let mut out = text.to_string();
    if let Ok(r) = registry().lock() {
        for (url, label) in r.iter() {
            if out.contains(url.as_str()) {
                out = out.replace(url.as_str(), label);
            }
        }
    }
    settleproof_config::netpolicy::mask_urls(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_urls_become_labels_and_others_lose_their_secrets() {
        register("https://eth.example.com/v2/SECRETKEY123", "rpc-0");
        let e = "error sending request for url (https://eth.example.com/v2/SECRETKEY123): timed out";
        assert_eq!(scrub(e), "error sending request for url (rpc-0): timed out");
        let other = "redirect to http://user:hunter2@10.0.0.1:8080/admin?token=abc failed";
        let s = scrub(other);
        assert!(!s.contains("hunter2") && !s.contains("token=abc") && !s.contains("/admin"), "{s}");
        assert!(s.contains("http://10.0.0.1:8080/…"), "{s}");
        assert_eq!(scrub("no url here"), "no url here");
        assert_eq!(scrub("bare https://example.com ok"), "bare https://example.com ok");
    }
}
