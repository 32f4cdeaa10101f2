//! What a merchant signs, as a merchant's client does: requests (a JWT bound to the method,
//! host, path and body) and the invoices an operator holds once a merchant signed them.

use crate::harness::Testnet;
use alloy::primitives::Address;
use eyre::{Result, eyre};
use serde_json::Value;

/// A request to `url` signed by `key`: a JWT bound to the method, the host and path of `url`
/// and the body (sent as JSON), valid for a minute.
pub fn signed(
    http: &reqwest::Client,
    key: &settleproof_merchant_auth::MerchantSigner,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<reqwest::RequestBuilder> {
    let bytes = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let jwt = key
        .sign_request(method.as_str(), url, &bytes, now, settleproof_merchant_auth::DEFAULT_LIFETIME_S)
        .map_err(|e| eyre!("signing: {e}"))?;
    let req = http.request(method, url).bearer_auth(jwt);
    Ok(if body.is_some() { req.header("content-type", "application/json").body(bytes) } else { req })
}

/// The invoice `key`'s merchant signs with `body` (on the network's first chain unless it names
/// one), paid to `payout`, as operator `created_by` would announce it: what any operator that
/// received the request holds.
pub fn signed_invoice(
    net: &Testnet,
    key: &settleproof_merchant_auth::MerchantSigner,
    body: Value,
    payout: Address,
    created_by: &str,
) -> Result<settleproof_node::store::Invoice> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    signed_invoice_at(net, key, body, payout, created_by, now)
}

/// [`signed_invoice`] signed at `now` (unix s), which may be any time the signer chooses.
pub fn signed_invoice_at(
    net: &Testnet,
    key: &settleproof_merchant_auth::MerchantSigner,
    body: Value,
    payout: Address,
    created_by: &str,
    now: u64,
) -> Result<settleproof_node::store::Invoice> {
    let body = net.on_first_chain(body).to_string();
    let url = format!("{}/v1/invoices", net.api(0));
    let jwt = key
        .sign_request("POST", &url, body.as_bytes(), now, settleproof_merchant_auth::DEFAULT_LIFETIME_S)
        .map_err(|e| eyre!("signing: {e}"))?;
    let statement = settleproof_merchant_auth::SignedStatement { jwt, body };
    let terms = settleproof_node::merchants::invoice_record::read(&statement).map_err(|e| eyre!("{e}"))?;
    Ok(terms.into_invoice(statement, payout, net.devnet.deployment.payments, (created_by.into(), now)))
}

impl Testnet {
    /// This network's `aud`, which every merchant request must name.
    pub fn audience(&self) -> String {
        settleproof_merchant_auth::network_audience(
            self.devnet.chain_id,
            &format!("{:#x}", self.devnet.deployment.settlement),
        )
    }

    /// A new key of merchant `id`, signing for this network.
    pub fn merchant_signer(
        &self,
        id: &str,
        alg: settleproof_merchant_auth::KeyAlg,
    ) -> Result<settleproof_merchant_auth::MerchantSigner> {
        Ok(settleproof_merchant_auth::MerchantSigner::generate(id, alg)
            .map_err(|e| eyre!("{e}"))?
            .with_audience(self.audience()))
    }
}
