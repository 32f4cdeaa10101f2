//! What a merchant's signed `POST /v1/invoices` makes: pure, no I/O.
//!
//! An invoice is the merchant's signed request (a [`SignedStatement`]: the JWT and the exact
//! body it hashes), and every term of the invoice is read from it ([`read`]):
//!
//! - the chain it is payable on (`chain_id`, required), the amount, the token, the expiry, the
//!   metadata and the redirect URL, as the merchant signed them (an expiry given as
//!   `expires_in` counts from the JWT's `nbf`, so every node computes the same one);
//! - the creation nonce: the body's `nonce` when the merchant chose one, else a hash of what
//!   the JWT signed ([`derived_nonce`]). Either way the merchant's client can compute the
//!   invoice id itself, before any node answers, and one signed request makes one invoice: an
//!   operator holding it can neither make a second invoice of it nor change a term.
//!
//! The payout address comes from the threshold-approved registry and the payment contract from
//! the chain's configuration; both are in what the id commits to. Checking who signed the
//! statement needs the registry: that is `super::invoice_signatures`' job.

use alloy::primitives::{Address, B256, U256, keccak256};
use serde::Deserialize;
use settleproof_merchant_auth::SignedStatement;

/// The path invoices are created at.
pub const INVOICES_PATH: &str = "/v1/invoices";
/// Longest body of an invoice's creation (metadata of 4096 bytes, a redirect URL of 2048
/// characters and the terms fit).
pub const MAX_INVOICE_BODY: usize = 8192;
/// Longest signed request kept with an invoice.
pub const MAX_INVOICE_JWT: usize = 2048;
/// Longest accepted invoice lifetime.
pub const MAX_LIFETIME_S: u64 = 365 * 24 * 3600;
/// Longest redirect URL.
pub const MAX_REDIRECT_URL: usize = 2048;

/// Body of `POST /v1/invoices`, as the merchant signs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvoice {
    /// Amount in base units, decimal string.
    #[schema(pattern = "^[1-9][0-9]{0,76}$", example = "1000000")]
    pub amount: String,
    /// `native` or an ERC-20 address.
    #[schema(pattern = "^(native|0x[0-9a-fA-F]{40})$", example = "native")]
    pub token: String,
    /// Expiry as unix seconds, in the future and within a year (not with `expires_in`).
    pub expires_at: Option<u64>,
    /// Expiry as seconds from the request's signing time (its JWT's `nbf`), 1 to 31536000
    /// (not with `expires_at`).
    #[schema(minimum = 1, maximum = 31536000)]
    pub expires_in: Option<u64>,
    /// Free-form JSON object (at most 4096 bytes serialised).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Chain the invoice is payable on (its EIP-155 id), one the node serves. The id commits to
    /// it, and a payment on another chain does not count.
    #[schema(required = true, example = 31337)]
    pub chain_id: Option<u64>,
    /// Where the checkout page sends the payer once the invoice is settled (https, at most 2048
    /// characters). The id commits to it.
    #[schema(max_length = 2048)]
    pub redirect_url: Option<String>,
    /// The creation nonce, 0x and 64 hex digits, chosen at random by the merchant: with it the
    /// id is known before sending, and a retry with the same body builds the same invoice on
    /// any node. Absent: derived from the request's JWT (docs/merchants.md, "Create an invoice").
    #[schema(pattern = "^0x[0-9a-fA-F]{64}$")]
    pub nonce: Option<String>,
    /// The idempotency key, signed (1 to 255 printable ASCII characters; equal to the
    /// `Idempotency-Key` header when both are sent). Signed, the key names this invoice at every
    /// node; a key sent only as the header holds at the node that took the request.
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
}

/// The terms a signed creation sets (everything of the invoice but the payout address, which
/// is the registry's, and the node-local fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInvoice {
    /// The merchant (the JWT's `iss`).
    pub merchant_id: String,
    /// The signing key's id.
    pub key_id: String,
    /// When it was signed (the JWT's `nbf`).
    pub signed_at: u64,
    /// The chain.
    pub chain_id: u64,
    /// Amount in base units.
    pub amount: U256,
    /// The token; zero for the native coin.
    pub token: Address,
    /// Expiry, unix seconds.
    pub expires_at: Option<u64>,
    /// Metadata, a JSON object.
    pub metadata: Option<serde_json::Value>,
    /// The checkout's redirect URL.
    pub redirect_url: Option<String>,
    /// The creation nonce.
    pub nonce: B256,
    /// The body as signed.
    pub request: CreateInvoice,
}

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Whether `key` is 1 to [`MAX_IDEMPOTENCY_KEY`] printable ASCII characters.
pub fn idempotency_key_is_valid(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// Why a statement makes no invoice; `field` names the body field (or `body`, `authorization`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The field.
    pub field: &'static str,
    /// What is wrong, and how to fix it.
    pub problem: String,
}

fn bad(field: &'static str, problem: impl Into<String>) -> FieldError {
    FieldError { field, problem: problem.into() }
}

/// The nonce of a creation without one in its body: keccak256 of
/// `"settleproof/invoice-nonce/1"`, a zero byte and the JWT's signing input (its header and
/// claims as sent, without the signature).
pub fn derived_nonce(jwt: &str) -> B256 {
    let input = jwt.rsplit_once('.').map_or(jwt, |(input, _)| input);
    keccak256([b"settleproof/invoice-nonce/1\0".as_slice(), input.as_bytes()].concat())
}

/// Reads the invoice `statement` creates (nothing is verified here: not the signature, nor the
/// times against a clock).
pub fn read(statement: &SignedStatement) -> Result<SignedInvoice, FieldError> {
    if statement.body.len() > MAX_INVOICE_BODY || statement.jwt.len() > MAX_INVOICE_JWT {
        return Err(bad(
            "body",
            format!("an invoice's creation is at most {MAX_INVOICE_BODY} bytes of body and {MAX_INVOICE_JWT} of JWT"),
        ));
    }
    let unreadable = || bad("authorization", "not a signed request with readable claims");
    let claims = settleproof_merchant_auth::header_free_claims(&statement.jwt).ok_or_else(unreadable)?;
    let key_id = settleproof_merchant_auth::header_key_id(&statement.jwt).ok_or_else(unreadable)?;
    let (method, target) = claims.uri.split_once(' ').ok_or_else(unreadable)?;
    if method != "POST" || target.find('/').map(|i| &target[i..]) != Some(INVOICES_PATH) {
        return Err(bad("authorization", format!("`{}` is not an invoice's creation", claims.uri)));
    }
    // The body must be the one the JWT hashes: checked here, since it depends on nothing but
    // the statement (a relayer that swaps the body is to blame, whatever its registry holds).
    if claims.req_hash.as_deref() != Some(settleproof_merchant_auth::body_hash(statement.body.as_bytes()).as_str()) {
        return Err(bad("body", "the body is not the one the JWT's reqHash signs"));
    }
    let req: CreateInvoice =
        serde_json::from_str(&statement.body).map_err(|e| bad("body", format!("invalid JSON body: {e}")))?;
    let chain_id = req.chain_id.ok_or_else(|| {
        bad("chain_id", "chain_id is required: the EIP-155 id of the chain the invoice is payable on")
    })?;
    if req.idempotency_key.as_deref().is_some_and(|k| !idempotency_key_is_valid(k)) {
        return Err(bad(
            "idempotency_key",
            "idempotency_key must be 1 to 255 printable ASCII characters (a UUID, say)",
        ));
    }
    let nonce = match &req.nonce {
        Some(n) => parse_nonce(n)?,
        None => derived_nonce(&statement.jwt),
    };
    Ok(SignedInvoice {
        merchant_id: claims.iss,
        key_id,
        signed_at: claims.nbf,
        chain_id,
        amount: parse_amount(&req.amount)?,
        token: parse_token(&req.token)?,
        expires_at: expiry(req.expires_at, req.expires_in, claims.nbf)?,
        metadata: check_metadata(req.metadata.clone())?,
        redirect_url: check_redirect(req.redirect_url.clone())?,
        nonce,
        request: req,
    })
}

impl SignedInvoice {
    /// The invoice these terms make, paid to `payout` (the merchant's in the registry) through
    /// `payments` (the chain's `InvoicePayments`), as node `created_by` stores it at
    /// `created_at`, with `statement` (the request these terms were read from) as its signature.
    pub fn into_invoice(
        self,
        statement: SignedStatement,
        payout: Address,
        payments: Address,
        (created_by, created_at): (String, u64),
    ) -> crate::store::Invoice {
        let chain_id = self.chain_id;
        let mut invoice = crate::store::Invoice {
            id: B256::ZERO,
            merchant_id: self.merchant_id,
            payout_address: payout,
            amount: self.amount,
            token: self.token,
            created_at,
            expires_at: self.expires_at,
            metadata: self.metadata,
            created_by,
            nonce: self.nonce,
            idempotency: None,
            redirect_url: self.redirect_url,
            statement: Some(statement),
        };
        // The id commits to the terms: no operator can alter them without changing it.
        invoice.id = invoice.terms(chain_id, payments).id();
        invoice
    }

    /// Whether `record` names the key the merchant signed (a key sent only as a header is the
    /// word of the node that took the request, and holds only there).
    pub fn signs_key_of(&self, record: &crate::store::IdempotencyRecord) -> bool {
        self.request
            .idempotency_key
            .as_deref()
            .is_some_and(|k| crate::store::key_hash(&self.merchant_id, k) == record.key_hash)
    }

    /// The first field of `invoice` that is not what was signed (`None`: all are).
    pub fn differs_from(&self, invoice: &crate::store::Invoice) -> Option<&'static str> {
        [
            ("merchant_id", self.merchant_id == invoice.merchant_id),
            ("amount", self.amount == invoice.amount),
            ("token", self.token == invoice.token),
            ("expires_at", self.expires_at == invoice.expires_at),
            ("metadata", self.metadata == invoice.metadata),
            ("redirect_url", self.redirect_url == invoice.redirect_url),
            ("nonce", self.nonce == invoice.nonce),
        ]
        .into_iter()
        .find(|(_, same)| !same)
        .map(|(field, _)| field)
    }
}

impl SignedInvoice {
    /// The request's fields an idempotency key is bound to, parsed (so `"0x00…"` and `"native"`
    /// are one token), in the order a conflict is reported. A key's record carries them, and a
    /// record that is not exactly these is refused with its invoice.
    pub fn idempotency_request(&self) -> Vec<(String, serde_json::Value)> {
        use serde_json::Value;
        let mut fields: Vec<(String, Value)> = vec![
            ("chain_id".into(), self.chain_id.into()),
            ("amount".into(), self.amount.to_string().into()),
            ("token".into(), self.token.to_string().to_lowercase().into()),
            ("expires_at".into(), self.request.expires_at.map_or(Value::Null, Into::into)),
            ("expires_in".into(), self.request.expires_in.map_or(Value::Null, Into::into)),
            ("metadata".into(), self.request.metadata.clone().unwrap_or(Value::Null)),
        ];
        // Only when given, so that records made before the field existed still match.
        if let Some(url) = &self.request.redirect_url {
            fields.push(("redirect_url".into(), url.clone().into()));
        }
        if let Some(nonce) = &self.request.nonce {
            fields.push(("nonce".into(), nonce.to_lowercase().into()));
        }
        fields
    }
}

fn parse_nonce(s: &str) -> Result<B256, FieldError> {
    let hint = "nonce must be 0x and 64 hex digits (32 random bytes)";
    if s.len() != 66 || !s.starts_with("0x") {
        return Err(bad("nonce", hint));
    }
    s.parse().map_err(|_| bad("nonce", hint))
}

/// An amount: a positive decimal integer of at most 256 bits.
pub fn parse_amount(s: &str) -> Result<U256, FieldError> {
    const HINT: &str =
        "amount must be a positive integer in the token's base units, as a decimal string (e.g. \"1000000\")";
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("amount", HINT));
    }
    let v = U256::from_str_radix(s, 10).map_err(|_| bad("amount", "amount does not fit in 256 bits"))?;
    if v.is_zero() {
        return Err(bad("amount", HINT));
    }
    Ok(v)
}

/// A token: `native`, or an ERC-20 address (EIP-55 checked when in mixed case).
pub fn parse_token(s: &str) -> Result<Address, FieldError> {
    if s == "native" {
        return Ok(Address::ZERO);
    }
    let addr: Address =
        s.parse().map_err(|_| bad("token", "token must be \"native\" or a 0x-prefixed ERC-20 address"))?;
    let has_mixed_case = s.bytes().any(|b| b.is_ascii_uppercase()) && s.bytes().any(|b| b.is_ascii_lowercase());
    if has_mixed_case && Address::parse_checksummed(s, None).is_err() {
        return Err(bad("token", "token address has a wrong EIP-55 checksum; check it or send it in lower case"));
    }
    if addr.is_zero() {
        return Err(bad("token", "use \"native\" for the native coin, not the zero address"));
    }
    Ok(addr)
}

/// The expiry: `at` as given, or `within` seconds after `signed_at`. Whether it lies in the
/// future is the API's check, against its clock when the request arrives.
fn expiry(at: Option<u64>, within: Option<u64>, signed_at: u64) -> Result<Option<u64>, FieldError> {
    match (at, within) {
        (Some(_), Some(_)) => Err(bad("expires_at", "give either expires_at or expires_in, not both")),
        (Some(0), None) => Err(bad("expires_at", "expires_at must be in the future (unix seconds)")),
        (Some(at), None) => Ok(Some(at)),
        (None, Some(0)) => Err(bad("expires_in", "expires_in must be at least 1 second")),
        (None, Some(s)) if s > MAX_LIFETIME_S => Err(bad("expires_in", "expires_in must be at most one year")),
        (None, Some(s)) => Ok(Some(signed_at.saturating_add(s))),
        (None, None) => Ok(None),
    }
}

fn check_metadata(m: Option<serde_json::Value>) -> Result<Option<serde_json::Value>, FieldError> {
    let max = crate::store::MAX_METADATA_BYTES;
    match m {
        None => Ok(None),
        Some(v) if !v.is_object() => Err(bad("metadata", "metadata must be a JSON object")),
        Some(v) if v.to_string().len() > max => {
            Err(bad("metadata", format!("metadata must be at most {max} bytes of JSON")))
        }
        Some(v) => Ok(Some(v)),
    }
}

/// A redirect URL any node takes: http(s), at most [`MAX_REDIRECT_URL`] characters. A node
/// that refuses plain http checks that for the requests it takes itself.
fn check_redirect(url: Option<String>) -> Result<Option<String>, FieldError> {
    let Some(url) = url else { return Ok(None) };
    if url.len() > MAX_REDIRECT_URL {
        return Err(bad("redirect_url", format!("redirect_url must be at most {MAX_REDIRECT_URL} characters")));
    }
    settleproof_config::netpolicy::check_url(&url, true)
        .map_err(|e| bad("redirect_url", format!("redirect_url: {e}")))?;
    Ok(Some(url))
}

/// Invoices as merchants sign them, for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use settleproof_merchant_auth::MerchantSigner;

    /// The invoice `signer`'s merchant creates with `body` (to which `chain_id` is added) on
    /// `chain_id` through `payments`, paid to `payout`, as node `created_by` stores it.
    pub(crate) fn signed_invoice(
        signer: &MerchantSigner,
        mut body: serde_json::Value,
        (chain_id, payments): (u64, Address),
        payout: Address,
        created_by: &str,
    ) -> crate::store::Invoice {
        body["chain_id"] = chain_id.into();
        let body = body.to_string();
        let now = crate::time::now_s();
        let jwt =
            signer.sign_request("POST", "http://127.0.0.1:8700/v1/invoices", body.as_bytes(), now, 60).expect("sign");
        let statement = SignedStatement { jwt, body };
        read(&statement).expect("an invoice's creation").into_invoice(
            statement,
            payout,
            payments,
            (created_by.into(), now),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use settleproof_merchant_auth::KeyAlg;

    /// The bodies the self-hosted checkout's tests read too (`tests/browser/self_hosted_units.mjs`):
    /// the page and the nodes take and refuse the same ones.
    #[test]
    fn the_bodies_shared_with_the_self_hosted_checkout_are_read_or_refused_as_listed() {
        #[derive(Deserialize)]
        struct Case {
            why: String,
            body: String,
            read: bool,
        }
        let cases: Vec<Case> = serde_json::from_str(include_str!("invoice_bodies.json")).expect("the shared cases");
        let signer = crate::merchants::test_network::signer("shop", KeyAlg::EdDsa);
        for c in cases {
            let url = "http://127.0.0.1:8700/v1/invoices";
            let jwt = signer.sign_request("POST", url, c.body.as_bytes(), 1_000_000, 60).expect("sign");
            let got = read(&SignedStatement { jwt, body: c.body.clone() });
            assert_eq!(got.is_ok(), c.read, "{}: {:?}", c.why, got.err());
        }
    }

    fn signed(body: &serde_json::Value) -> SignedStatement {
        let signer = crate::merchants::test_network::signer("shop", KeyAlg::EdDsa);
        let body = body.to_string();
        let jwt =
            signer.sign_request("POST", "http://127.0.0.1:8700/v1/invoices", body.as_bytes(), 1_000, 60).expect("sign");
        SignedStatement { jwt, body }
    }

    #[test]
    fn every_term_is_read_from_what_the_merchant_signed() {
        let s = signed(&json!({"amount": "5", "token": "native", "chain_id": 7, "expires_in": 60,
            "metadata": {"order": "A-1"}, "redirect_url": "https://shop.example/done"}));
        let inv = read(&s).expect("reads");
        let claims = settleproof_merchant_auth::header_free_claims(&s.jwt).expect("claims");
        assert_eq!((inv.merchant_id.as_str(), inv.chain_id, inv.amount), ("shop", 7, U256::from(5)));
        assert_eq!(inv.expires_at, Some(claims.nbf + 60), "counted from the signing time, the same at every node");
        assert_eq!(inv.nonce, derived_nonce(&s.jwt));
        assert_eq!(inv.redirect_url.as_deref(), Some("https://shop.example/done"));
        // Another signature over the same body is another invoice; the same one is the same.
        let again = signed(&json!({"amount": "5", "token": "native", "chain_id": 7}));
        let again_2 = signed(&json!({"amount": "5", "token": "native", "chain_id": 7}));
        assert_ne!(read(&again).expect("reads").nonce, read(&again_2).expect("reads").nonce);
        assert_eq!(read(&again).expect("reads"), read(&again).expect("reads"));
    }

    #[test]
    fn a_nonce_the_merchant_chose_is_kept_and_makes_the_id_known_in_advance() {
        let nonce = B256::repeat_byte(9);
        let a = signed(&json!({"amount": "5", "token": "native", "chain_id": 7, "nonce": nonce.to_string()}));
        let b = signed(&json!({"amount": "5", "token": "native", "chain_id": 7, "nonce": nonce.to_string()}));
        assert_eq!(read(&a).expect("reads").nonce, nonce);
        assert_eq!(read(&b).expect("reads").nonce, nonce, "a retry signed again builds the same invoice");
    }

    #[test]
    fn a_statement_that_makes_no_invoice_names_the_field() {
        let cases = [
            (json!({"amount": "5", "token": "native"}), "chain_id"),
            (json!({"amount": "0", "token": "native", "chain_id": 7}), "amount"),
            (json!({"amount": "5", "token": "0x00", "chain_id": 7}), "token"),
            (json!({"amount": "5", "token": "native", "chain_id": 7, "nonce": "0x12"}), "nonce"),
            (json!({"amount": "5", "token": "native", "chain_id": 7, "expires_at": 5, "expires_in": 5}), "expires_at"),
            (json!({"amount": "5", "token": "native", "chain_id": 7, "expires_in": 0}), "expires_in"),
            (json!({"amount": "5", "token": "native", "chain_id": 7, "metadata": [1]}), "metadata"),
            (json!({"amount": "5", "token": "native", "chain_id": 7, "redirect_url": "javascript:x"}), "redirect_url"),
            (json!({"amount": "5", "token": "native", "chain_id": 7, "payout": "0x01"}), "body"),
        ];
        for (body, field) in cases {
            assert_eq!(read(&signed(&body)).map_err(|e| e.field), Err(field), "{body}");
        }
        // A body the JWT does not hash.
        let mut swapped = signed(&json!({"amount": "5", "token": "native", "chain_id": 7}));
        swapped.body = json!({"amount": "50", "token": "native", "chain_id": 7}).to_string();
        assert_eq!(read(&swapped).map_err(|e| e.field), Err("body"));
        // Signed for another route: not an invoice, whatever its body.
        let signer = crate::merchants::test_network::signer("shop", KeyAlg::EdDsa);
        let body = json!({"amount": "5", "token": "native", "chain_id": 7}).to_string();
        let jwt = signer.sign_request("POST", "http://h/v1/api-keys", body.as_bytes(), 1, 60).expect("sign");
        assert_eq!(read(&SignedStatement { jwt, body }).map_err(|e| e.field), Err("authorization"));
    }

    #[test]
    fn a_term_not_as_signed_is_named() {
        let s = signed(&json!({"amount": "5", "token": "native", "chain_id": 7, "metadata": {"o": 1}}));
        let t = read(&s).expect("reads");
        let mut inv = crate::store::Invoice {
            id: B256::ZERO,
            merchant_id: "shop".into(),
            payout_address: Address::repeat_byte(1),
            amount: t.amount,
            token: t.token,
            created_at: 1,
            expires_at: t.expires_at,
            metadata: t.metadata.clone(),
            created_by: "node-0".into(),
            nonce: t.nonce,
            idempotency: None,
            redirect_url: None,
            statement: Some(s.clone()),
        };
        assert_eq!(t.differs_from(&inv), None);
        inv.redirect_url = Some("https://evil.example".into());
        assert_eq!(t.differs_from(&inv), Some("redirect_url"));
        inv.redirect_url = None;
        inv.amount = U256::from(4);
        assert_eq!(t.differs_from(&inv), Some("amount"));
        inv.amount = t.amount;
        inv.merchant_id = "other".into();
        assert_eq!(t.differs_from(&inv), Some("merchant_id"));
    }
}
