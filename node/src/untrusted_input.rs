//! Property tests: every decoder of network, user or file input is fed arbitrary bytes and
//! structure-aware mutations of valid input (flipped bytes, cuts, splices, absurd numbers, deep
//! nesting), and must answer with an error, never a panic or an unbounded allocation. The case
//! counts are bounded so the suite stays quick. The API's bodies and query strings are covered
//! in `api::invoices::tests` (they need the router's test state).

use crate::gossip::{
    Attestation, DeliveryAck, Heartbeat, InvoiceAnnouncement, InvoiceScope, SyncRequest, SyncResponse, fresh,
};
use crate::keys::OperatorKeys;
use crate::operators::{Operator, OperatorSet};
use crate::store::Invoice;
use alloy::primitives::{Address, B256, Bytes, U256};
use proptest::prelude::*;
use settleproof_config::{EXAMPLE, NodeConfig};
use settleproof_consensus::{Batch, InvoiceTerms, PaymentLeaf, Receipt};
use std::sync::OnceLock;

/// A mutation of valid input.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Splice(usize, Vec<u8>),
    Remove(usize, usize),
    /// The number at or after the position becomes this text.
    Number(usize, &'static str),
    /// Wrapped in this many arrays.
    Nest(usize),
}

const ABSURD: &[&str] = &[
    "18446744073709551616",
    "-1",
    "1e400",
    "340282366920938463463374607431768211456999",
    "0.5",
    "\"0x\"",
    "null",
    "9999999999999999999999999999999999999999999999999999999999999999999999999999999999",
];

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(p, b)| Mutation::Flip(p, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..24)).prop_map(|(p, b)| Mutation::Splice(p, b)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Remove(p, n)),
        (any::<usize>(), proptest::sample::select(ABSURD)).prop_map(|(p, n)| Mutation::Number(p, n)),
        (1usize..4000).prop_map(Mutation::Nest),
    ]
}

/// Applies `m` to `valid`.
pub(crate) fn mutate(valid: &[u8], m: &Mutation) -> Vec<u8> {
    let mut v = valid.to_vec();
    let at = |p: usize| if v.is_empty() { 0 } else { p % v.len() };
    match m {
        Mutation::Flip(p, b) => {
            let i = at(*p);
            if let Some(x) = v.get_mut(i) {
                *x ^= b;
            }
        }
        Mutation::Cut(p) => v.truncate(at(*p)),
        Mutation::Splice(p, bytes) => {
            let i = at(*p);
            v.splice(i..i, bytes.iter().copied());
        }
        Mutation::Remove(p, n) => {
            let i = at(*p);
            let end = (i + n).min(v.len());
            v.drain(i..end);
        }
        Mutation::Number(p, text) => {
            let i = at(*p);
            if let Some(start) = v[i..].iter().position(u8::is_ascii_digit).map(|s| s + i) {
                let end = v[start..].iter().position(|c| !c.is_ascii_digit()).map_or(v.len(), |e| e + start);
                v.splice(start..end, text.bytes());
            }
        }
        Mutation::Nest(depth) => {
            let mut out = vec![b'['; *depth];
            out.extend_from_slice(&v);
            out.extend(std::iter::repeat_n(b']', *depth));
            v = out;
        }
    }
    v
}

struct Fixture {
    epochs: std::sync::Arc<crate::epochs::Epochs>,
    scope: InvoiceScope,
    samples: Vec<Vec<u8>>,
    receipt: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys = OperatorKeys::random().expect("keys");
        let public = keys.public();
        let operator = Operator {
            name: "node-0".into(),
            peer_id: public.peer_id.parse().expect("peer id"),
            p2p_addr: settleproof_p2p::parse_multiaddr("/ip4/127.0.0.1/tcp/9000").expect("multiaddr"),
            bls: keys.bls.public_key(),
            evm: public.evm_address,
        };
        let me = operator.peer_id;
        let set = OperatorSet { epoch: 0, start_round: 0, operators: vec![operator], threshold: 1, me: Some(0) };
        let epochs = crate::epochs::Epochs::new(me, 31337, Some(set));
        let merchant: settleproof_config::NodeConfig =
            NodeConfig::from_toml_str(EXAMPLE, std::iter::empty()).expect("example config");
        let scope = InvoiceScope {
            merchants: crate::merchants::Registry::fixed(merchant.merchants),
            chain_id: 31337,
            payments: Address::repeat_byte(7),
        };
        let batch = Batch {
            epoch: 0,
            round: 3,
            from_block: 10,
            to_block: 14,
            to_block_hash: B256::repeat_byte(4),
            root: B256::repeat_byte(1),
            leaf_count: 5,
        };
        let attestation = Attestation { batch, signer: 0, signature: Bytes::from(vec![7u8; 96]), sent_at_ms: 1 };
        let invoice = Invoice {
            id: B256::repeat_byte(2),
            merchant_id: "demo".into(),
            payout_address: Address::repeat_byte(3),
            amount: U256::from(1000),
            token: Address::ZERO,
            created_at: 1,
            expires_at: Some(100),
            metadata: Some(serde_json::json!({"order": 42})),
            created_by: "node-0".into(),
            idempotency: None,
            redirect_url: None,
            statement: None,
            nonce: B256::repeat_byte(4),
        };
        let samples = vec![
            serde_json::to_vec(&attestation).expect("json"),
            serde_json::to_vec(&Heartbeat { operator: 0, can_pay: true, sent_at_ms: 5 }).expect("json"),
            serde_json::to_vec(&InvoiceAnnouncement { invoice: invoice.clone(), sent_at_ms: 5 }).expect("json"),
            crate::gossip::InvoiceAnnouncements::pack(std::slice::from_ref(&invoice), 5).concat(),
            serde_json::to_vec(&SyncRequest {
                rounds: vec![1, 2, 3],
                invoices: vec![B256::repeat_byte(9)],
                ..Default::default()
            })
            .expect("json"),
            serde_json::to_vec(&SyncResponse {
                attestations: vec![attestation],
                invoices: vec![invoice],
                ..Default::default()
            })
            .expect("json"),
            serde_json::to_vec(&DeliveryAck { webhook_id: "msg_1".into(), delivered_at_ms: 9 }).expect("json"),
            serde_json::to_vec(&crate::gossip::DeliveryAcks {
                sent_at_ms: 9,
                acks: vec![DeliveryAck { webhook_id: "msg_1".into(), delivered_at_ms: 9 }],
            })
            .expect("json"),
        ];
        let leaf = PaymentLeaf {
            chain_id: 31337,
            tx_hash: B256::repeat_byte(5),
            log_index: 0,
            block_number: 12,
            invoice_id: B256::repeat_byte(2),
            merchant: Address::repeat_byte(3),
            payer: Address::repeat_byte(6),
            token: Address::ZERO,
            amount: U256::from(1000),
        };
        let receipt = Receipt {
            version: 2,
            chain_id: 31337,
            payments_contract: Address::repeat_byte(7),
            settlement_contract: Address::repeat_byte(8),
            leaf: leaf.hash(),
            payment: leaf,
            leaf_index: 1,
            proof: vec![B256::repeat_byte(10), B256::repeat_byte(11), B256::repeat_byte(12)],
            batch,
            batch_message: B256::repeat_byte(13),
            signers: vec![0],
            signer_bitmap: U256::from(1),
            signer_keys: vec![Bytes::from(vec![1u8; 128])],
            aggregate_signature: Bytes::from(vec![2u8; 256]),
            settlement_tx: B256::repeat_byte(14),
            invoice: Some(InvoiceTerms {
                chain_id: 31337,
                payments_contract: Address::repeat_byte(7),
                merchant_id: "demo".into(),
                payout_address: Address::repeat_byte(3),
                token: Address::ZERO,
                amount: U256::from(1000),
                expires_at: 100,
                nonce: B256::repeat_byte(4),
                metadata_hash: B256::ZERO,
            }),
        };
        let receipt = serde_json::to_vec(&serde_json::json!({ "receipts": [receipt] })).expect("json");
        Fixture { epochs, scope, samples, receipt }
    })
}

/// Every gossip and sync decoder on `data`; only the absence of a panic is checked.
fn decode_all(data: &[u8]) {
    let f = fixture();
    let peer = f.epochs.me();
    let _ = Attestation::validate(data, &peer, &f.epochs, 31337, Address::repeat_byte(8));
    let _ = Heartbeat::validate(data, &peer, &f.epochs);
    let _ = InvoiceAnnouncement::validate(data, &f.scope);
    let _ = serde_json::from_slice::<DeliveryAck>(data);
    let _ = crate::gossip::DeliveryAcks::validate(data, 1_000_000);
    if let Ok(invoices) = crate::gossip::InvoiceAnnouncements::decode(data) {
        for inv in invoices {
            let _ = crate::gossip::check_invoice(inv, &f.scope);
        }
    }
    let _ = fresh(data, 1_000_000);
    if let Ok(r) = serde_json::from_slice::<SyncRequest>(data) {
        assert!(r.rounds.len() <= data.len() && r.invoices.len() <= data.len(), "allocation beyond the input");
    }
    if let Ok(r) = serde_json::from_slice::<SyncResponse>(data) {
        for a in &r.attestations {
            let _ = a.verify(&f.epochs, 31337, Address::repeat_byte(8));
        }
        for inv in r.invoices {
            let _ = crate::gossip::check_invoice(inv, &f.scope);
        }
    }
}

fn receipts_of(data: &[u8]) {
    if let Ok(receipts) = crate::receipt::parse_receipts(&String::from_utf8_lossy(data)) {
        for r in receipts {
            let _ = r.verify_offchain();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn gossip_and_sync_decoders_never_panic_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&data);
    }

    #[test]
    fn gossip_and_sync_decoders_never_panic_on_mutations(which in 0usize..6, ms in proptest::collection::vec(mutation(), 1..4)) {
        let mut data = fixture().samples[which].clone();
        for m in &ms {
            data = mutate(&data, m);
        }
        decode_all(&data);
    }

    #[test]
    fn receipt_files_never_panic(ms in proptest::collection::vec(mutation(), 0..4), raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut data = fixture().receipt.clone();
        for m in &ms {
            data = mutate(&data, m);
        }
        receipts_of(&data);
        receipts_of(&raw);
    }

    /// Receipts well-formed as JSON but with hostile numbers: proof lengths, leaf positions and
    /// counts, signer lists and keys of any size.
    #[test]
    fn receipts_with_hostile_fields_never_panic(
        leaf_index in any::<u64>(),
        leaf_count in any::<u32>(),
        proof in proptest::collection::vec(any::<[u8; 32]>(), 0..80),
        signers in proptest::collection::vec(any::<usize>(), 0..8),
        keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..160), 0..8),
        signature in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut v: serde_json::Value = serde_json::from_slice(&fixture().receipt).expect("json");
        let r = &mut v["receipts"][0];
        r["leaf_index"] = leaf_index.into();
        r["batch"]["leaf_count"] = leaf_count.into();
        r["proof"] = proof.iter().map(|p| B256::from(*p).to_string()).collect::<Vec<_>>().into();
        r["signers"] = signers.into();
        r["signer_keys"] = keys.iter().map(|k| Bytes::from(k.clone()).to_string()).collect::<Vec<_>>().into();
        r["aggregate_signature"] = Bytes::from(signature).to_string().into();
        receipts_of(v.to_string().as_bytes());
    }

    #[test]
    fn config_files_never_panic(ms in proptest::collection::vec(mutation(), 1..4), raw in "\\PC{0,400}") {
        let mut text = EXAMPLE.as_bytes().to_vec();
        for m in &ms {
            text = mutate(&text, m);
        }
        let _ = NodeConfig::from_toml_str(&String::from_utf8_lossy(&text), std::iter::empty());
        let _ = NodeConfig::from_toml_str(&raw, std::iter::empty());
    }

    #[test]
    fn config_overrides_never_panic(key in "[A-Z_]{0,40}", value in "\\PC{0,60}") {
        let vars = [(format!("SETTLEPROOF__{key}"), value)];
        let _ = NodeConfig::from_toml_str(EXAMPLE, vars);
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let deep = mutate(&fixture().samples[0], &Mutation::Nest(100_000));
    decode_all(&deep);
    receipts_of(&deep);
    let toml = format!("a = {}1{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(NodeConfig::from_toml_str(&toml, std::iter::empty()).is_err());
}
