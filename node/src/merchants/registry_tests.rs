//! Four operators' registries, each over its own store, exchanging approvals as gossip would:
//! a threshold-approved onboarding applies everywhere, one operator's change never does, and
//! forged, rival and replayed approvals change nothing.

use super::*;
use crate::merchants::CaughtUp;
use crate::operators::{Operator, OperatorSet};
use crate::store::temp_store;

const CHAIN: u64 = 31337;

fn key(i: usize) -> BlsSecretKey {
    BlsSecretKey::from_ikm(&[i as u8 + 1; 32]).expect("ikm")
}

struct Node {
    registry: Registry,
    peer: PeerId,
    _dir: tempfile::TempDir,
}

fn network() -> Vec<Node> {
    let ops: Vec<Operator> = (0..4)
        .map(|i| Operator {
            name: format!("op-{i}"),
            peer_id: PeerId::random(),
            p2p_addr: format!("/ip4/127.0.0.1/tcp/{}", 9000 + i).parse().expect("multiaddr"),
            bls: key(i).public_key(),
            evm: Address::repeat_byte(i as u8 + 1),
        })
        .collect();
    (0..4)
        .map(|i| {
            let set = OperatorSet { epoch: 0, start_round: 0, operators: ops.clone(), threshold: 3, me: Some(i) };
            let (dir, store) = temp_store();
            let home = Home {
                store,
                epochs: Epochs::new(ops[i].peer_id, CHAIN, Some(set)),
                chain_id: CHAIN,
                settlement: Address::repeat_byte(0x5e),
                url_policy: (true, true),
                secret_overlap_ms: 60_000,
                audience_optional_before_s: None,
            };
            Node { registry: Registry::open(home, &[demo()]).expect("open"), peer: ops[i].peer_id, _dir: dir }
        })
        .collect()
}

fn demo() -> MerchantConfig {
    crate::merchants::api_keys::tests::demo_merchant()
}

fn shop(payout: u8) -> MerchantConfig {
    let mut m = demo();
    m.id = "shop-2".into();
    m.payout_address = Address::repeat_byte(payout);
    m.root_key = Some(
        settleproof_merchant_auth::MerchantSigner::generate("shop-2", settleproof_merchant_auth::KeyAlg::EdDsa)
            .expect("key")
            .public_key()
            .clone(),
    );
    m
}

/// Hands node `from`'s own approvals to every other node, as gossip does.
fn gossip(nodes: &[Node], from: usize) {
    for a in nodes[from].registry.own_approvals() {
        let data = serde_json::to_vec(&a).expect("json");
        for (i, n) in nodes.iter().enumerate().filter(|(i, _)| *i != from) {
            n.registry.hear(&data, &nodes[from].peer).unwrap_or_else(|e| panic!("node {i} refused: {e}"));
        }
    }
}

fn payout(n: &Node, id: &str) -> Option<Address> {
    n.registry.get(id).map(|m| m.payout_address)
}

#[test]
fn a_merchant_applies_on_every_node_once_a_threshold_approved_it() {
    let nodes = network();
    let proposed = nodes[0].registry.propose(shop(0x22), false, true, &[key(0)]).expect("propose");
    assert_eq!((proposed.approvals, proposed.threshold, proposed.applied), (1, 3, false));
    gossip(&nodes, 0);
    assert!(nodes.iter().all(|n| payout(n, "shop-2").is_none()), "one approval of three");
    let hash = proposed.change_hash;
    assert_eq!(nodes[1].registry.approve(hash, &[key(1)]).expect("approve").approvals, 2);
    gossip(&nodes, 1);
    let third = nodes[2].registry.approve(hash, &[key(2)]).expect("approve");
    assert!(third.applied, "the third approval applies it on its node");
    gossip(&nodes, 2);
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(payout(n, "shop-2"), Some(Address::repeat_byte(0x22)), "node {i}");
        assert!(n.registry.pending().expect("pending").is_empty(), "node {i}");
    }
    // The audit log names the approvers.
    let audit = nodes[3].registry.store().expect("store").merchant_audit(10).expect("audit");
    let last = audit.last().expect("entry");
    assert_eq!((last.merchant_id.as_str(), last.version, last.approved_by.len()), ("shop-2", 1, 3));
    // A replay of an approval of version 1 changes nothing now.
    gossip(&nodes, 0);
    assert!(nodes[1].registry.pending().expect("pending").is_empty());
}

#[test]
fn one_operators_payout_change_never_applies_and_forged_approvals_are_refused() {
    let nodes = network();
    let byzantine = 3;
    // Its own genuine approval of a new payout address for `demo`: heard, kept waiting.
    let mut to_me = demo();
    to_me.payout_address = Address::repeat_byte(0xba);
    let own = nodes[byzantine].registry.propose(to_me.clone(), false, false, &[key(byzantine)]).expect("propose");
    gossip(&nodes, byzantine);
    let original = demo().payout_address;
    for n in &nodes[..3] {
        assert_eq!(payout(n, "demo"), Some(original));
        assert_eq!(n.registry.pending().expect("pending").len(), 1, "waiting for approvals that never come");
    }
    // Approvals it forges in the other operators' names: each refused, none counted.
    let change = MerchantChange { merchant: to_me, disabled: false, version: 1, epoch: 0 };
    let message = merchant_change_message(CHAIN, Address::repeat_byte(0x5e), 0, change.hash());
    let sign = |by: usize, over: B256| Bytes::from(key(by).sign(over.as_slice()).to_bytes().to_vec());
    let forged = |signer: usize, by: usize, over: B256| MerchantApproval {
        change: change.clone(),
        signer,
        signature: sign(by, over),
        others: Vec::new(),
        sent_at_ms: now_ms(),
    };
    // Its own valid approval relaying approvals of operators 0 and 1 that it made itself.
    let relaying = MerchantApproval {
        others: vec![(0, sign(byzantine, message)), (1, sign(byzantine, message))],
        ..forged(3, byzantine, message)
    };
    let other_chain = merchant_change_message(1, Address::repeat_byte(0x5e), 0, change.hash());
    let cases = [
        (forged(0, byzantine, message), "wrong_publisher", "filed under operator 0"),
        (forged(3, 0, message), "bad_signature", "signed with a key that is not its own"),
        (forged(3, byzantine, other_chain), "bad_signature", "signed for another chain"),
        (forged(9, byzantine, message), "unknown_signer", "no such operator"),
        (relaying, "bad_signature", "relayed approvals it forged"),
    ];
    for (approval, reason, what) in cases {
        let data = serde_json::to_vec(&approval).expect("json");
        let heard = nodes[0].registry.hear(&data, &nodes[byzantine].peer);
        assert_eq!(heard.map_err(|e| e.reason()), Err(reason), "{what}");
    }
    // A record no honest node would propose (not a URL) is refused even with a valid signature.
    let mut bad_url = change.clone();
    bad_url.merchant.webhook_url = "not a url".into();
    let hash = bad_url.hash();
    let bad = MerchantApproval {
        signature: Bytes::from(
            key(byzantine)
                .sign(merchant_change_message(CHAIN, Address::repeat_byte(0x5e), 0, hash).as_slice())
                .to_bytes()
                .to_vec(),
        ),
        change: bad_url,
        signer: byzantine,
        others: Vec::new(),
        sent_at_ms: now_ms(),
    };
    let heard = nodes[0].registry.hear(&serde_json::to_vec(&bad).expect("json"), &nodes[byzantine].peer);
    assert_eq!(heard.map_err(|e| e.reason()), Err("malformed"), "a record no node would accept");
    // A new merchant holding demo's root key (demo's requests would authenticate as it):
    // refused by every node, whoever proposes or approves it.
    let mut impostor = shop(0xba);
    impostor.root_key = demo().root_key;
    let err = nodes[0].registry.propose(impostor.clone(), false, true, &[key(0)]).expect_err("taken key");
    assert!(matches!(err, RegistryError::Invalid { field: "root_key", .. }), "{err}");
    let stolen = MerchantChange { merchant: impostor, disabled: false, version: 1, epoch: 0 };
    let m = merchant_change_message(CHAIN, Address::repeat_byte(0x5e), 0, stolen.hash());
    let signed = MerchantApproval {
        change: stolen,
        signer: byzantine,
        signature: sign(byzantine, m),
        others: Vec::new(),
        sent_at_ms: now_ms(),
    };
    let heard = nodes[0].registry.hear(&serde_json::to_vec(&signed).expect("json"), &nodes[byzantine].peer);
    // Refused; not blamed, since whether another merchant holds the key depends on the registry
    // this node holds.
    assert_eq!(heard.map_err(|e| e.reason()), Err("not_taken"));
    for n in &nodes[..3] {
        assert_eq!(payout(n, "demo"), Some(original), "the payout address never changed");
        let approvals: Vec<u32> =
            n.registry.pending().expect("pending").iter().flat_map(|p| p.approvals.iter().map(|a| a.0)).collect();
        assert_eq!(approvals, vec![3], "only its own approval counts");
    }
    assert!(!own.applied);
}

#[test]
fn an_honest_node_approves_one_change_per_merchant_version() {
    let nodes = network();
    let mut a = demo();
    a.payout_address = Address::repeat_byte(0xa1);
    let mut b = demo();
    b.payout_address = Address::repeat_byte(0xb2);
    let first = nodes[1].registry.propose(a, false, false, &[key(1)]).expect("first");
    gossip(&nodes, 1);
    let rival = nodes[2].registry.propose(b, false, false, &[key(2)]).expect("rival proposal");
    gossip(&nodes, 2);
    // Node 0 approves the first; the rival of the same version it then refuses.
    nodes[0].registry.approve(first.change_hash, &[key(0)]).expect("approve");
    let refused = nodes[0].registry.approve(rival.change_hash, &[key(0)]).expect_err("rival");
    assert!(matches!(refused, RegistryError::Conflict(_)), "{refused}");
    // Bad input names the field; a key that is not this node's is refused.
    let mut zero = demo();
    zero.payout_address = Address::ZERO;
    let err = nodes[0].registry.propose(zero, false, false, &[key(0)]).expect_err("zero payout");
    assert!(matches!(err, RegistryError::Invalid { field: "payout_address", .. }), "{err}");
    let err = nodes[0].registry.propose(shop(1), false, true, &[key(1)]).expect_err("another key");
    assert!(matches!(err, RegistryError::CannotApprove(_)), "{err}");
    let err = nodes[0].registry.propose(demo(), false, true, &[key(0)]).expect_err("exists");
    assert!(matches!(err, RegistryError::Conflict(_)), "{err}");
}

#[test]
fn disabling_a_merchant_takes_it_off_the_served_list() {
    let nodes = network();
    let proposed = nodes[0].registry.propose(demo(), true, false, &[key(0)]).expect("propose");
    gossip(&nodes, 0);
    for i in [1, 2] {
        nodes[i].registry.approve(proposed.change_hash, &[key(i)]).expect("approve");
        gossip(&nodes, i);
    }
    for n in &nodes {
        assert!(n.registry.get("demo").is_none() && n.registry.is_disabled("demo"));
    }
}

#[test]
fn a_node_that_missed_the_approvals_applies_the_change_from_one_relayed_message() {
    let nodes = network();
    let (online, late) = (&nodes[..3], &nodes[3]);
    let proposed = online[0].registry.propose(shop(0x33), false, true, &[key(0)]).expect("propose");
    gossip(online, 0);
    online[1].registry.approve(proposed.change_hash, &[key(1)]).expect("approve");
    gossip(online, 1);
    online[2].registry.approve(proposed.change_hash, &[key(2)]).expect("approve");
    assert!(payout(late, "shop-2").is_none());
    // Node 2's rebroadcast carries the two approvals it relays beside its own.
    let relayed = online[2].registry.own_approvals();
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].others.len(), 2);
    let data = serde_json::to_vec(&relayed[0]).expect("json");
    assert!(late.registry.hear(&data, &online[2].peer).expect("heard"));
    assert_eq!(payout(late, "shop-2"), Some(Address::repeat_byte(0x33)));
}

#[test]
fn a_changed_webhook_secret_signs_beside_the_old_one_for_the_overlap() {
    let nodes = network();
    let old = demo().webhook_secret;
    let mut rotated = demo();
    rotated.webhook_secret = settleproof_config::Secret::new("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let proposed = nodes[0].registry.propose(rotated.clone(), false, false, &[key(0)]).expect("propose");
    gossip(&nodes, 0);
    for i in [1, 2] {
        nodes[i].registry.approve(proposed.change_hash, &[key(i)]).expect("approve");
        gossip(&nodes, i);
    }
    for n in &nodes {
        let current = n.registry.get("demo").expect("served");
        assert_eq!(n.registry.signing_secrets(&current), vec![rotated.webhook_secret.clone(), old.clone()]);
    }
    // A later change that keeps the secret keeps the overlap.
    let mut moved = rotated.clone();
    moved.payout_address = Address::repeat_byte(0x77);
    let proposed = nodes[0].registry.propose(moved, false, false, &[key(0)]).expect("propose");
    gossip(&nodes, 0);
    for i in [1, 2] {
        nodes[i].registry.approve(proposed.change_hash, &[key(i)]).expect("approve");
        gossip(&nodes, i);
    }
    let current = nodes[3].registry.get("demo").expect("served");
    assert_eq!(current.payout_address, Address::repeat_byte(0x77));
    assert_eq!(nodes[3].registry.signing_secrets(&current), vec![rotated.webhook_secret.clone(), old]);
}

#[test]
fn a_node_that_missed_everything_catches_up_from_a_snapshot_and_forgeries_in_one_are_refused() {
    let nodes = network();
    // Nodes 0..3 apply a new merchant and a key; node 3 hears none of it.
    let hash = nodes[0].registry.propose(shop(0x22), false, true, &[key(0)]).expect("propose").change_hash;
    let data = |i: usize| nodes[i].registry.own_approvals();
    for a in data(0) {
        for n in &nodes[1..3] {
            n.registry.hear(&serde_json::to_vec(&a).expect("json"), &nodes[0].peer).expect("heard");
        }
    }
    nodes[1].registry.approve(hash, &[key(1)]).expect("approve");
    for a in data(1) {
        nodes[2].registry.hear(&serde_json::to_vec(&a).expect("json"), &nodes[1].peer).expect("heard");
    }
    assert!(nodes[2].registry.approve(hash, &[key(2)]).expect("approve").applied);
    // The root key, signing for these nodes' network.
    let root = settleproof_merchant_auth::MerchantSigner::from_pem(
        "demo",
        crate::merchants::api_keys::tests::ROOT.private_key_pem(),
    )
    .expect("pem")
    .with_audience(nodes[2].registry.audience());
    let (grant, made) = crate::merchants::api_keys::tests::grant(&root, "ci", &["invoices:read"]);
    let key_made = nodes[2].registry.create_key("demo", grant).expect("key");
    assert!(payout(&nodes[3], "shop-2").is_none());

    // A snapshot whose entry carries approvals forged in other operators' names is refused.
    let mut forged = nodes[2].registry.snapshot_page(None);
    forged.keys.clear();
    let entry = forged.entries.iter_mut().find(|e| e.change.merchant.id == "shop-2").expect("entry");
    let mut cheat = entry.change.clone();
    cheat.merchant.payout_address = Address::repeat_byte(0xba);
    entry.change = cheat;
    let done = nodes[3].registry.take_snapshot(forged, &PeerId::random(), CaughtUp::default());
    assert_eq!((done.entries, done.refused >= 1), (0, true), "{done:?}");
    assert!(payout(&nodes[3], "shop-2").is_none());
    let mut short = nodes[2].registry.snapshot_page(None);
    short.keys.clear();
    short.entries.iter_mut().for_each(|e| e.approvals.truncate(2));
    assert_eq!(
        nodes[3].registry.take_snapshot(short, &PeerId::random(), CaughtUp::default()).entries,
        0,
        "two approvals of three"
    );

    // The genuine snapshot, with a refused record taken first: the catch-up goes on past it,
    // the merchant applies with its payout, and the key works.
    let mut genuine = nodes[2].registry.snapshot_page(None);
    let mut refused = genuine.entries.iter().find(|e| e.change.merchant.id == "shop-2").expect("entry").clone();
    refused.change.merchant.payout_address = Address::repeat_byte(0xbb);
    genuine.entries.insert(0, refused);
    let done = nodes[3].registry.take_snapshot(genuine, &PeerId::random(), CaughtUp::default());
    assert_eq!((done.entries, done.keys, done.refused), (1, 1, 1), "{done:?}");
    assert_eq!(payout(&nodes[3], "shop-2"), Some(Address::repeat_byte(0x22)));
    assert_eq!(nodes[3].registry.live_key("demo", made.key_id()).map(|k| k.id), Some(key_made.id));
    assert_eq!(
        nodes[3]
            .registry
            .take_snapshot(nodes[2].registry.snapshot_page(None), &PeerId::random(), CaughtUp::default())
            .entries,
        0,
        "once"
    );
}

/// Each settled payment's event looks its merchant up in the registry: the lookup reads the
/// in-memory view, and decodes no registry record however many there are.
#[test]
fn merchant_lookups_decode_no_registry_record() {
    let nodes = network();
    let registry = &nodes[0].registry;
    let id = demo().id;
    crate::store::decodes::take("merchant_registry");
    for _ in 0..1000 {
        assert!(registry.get(&id).is_some());
        assert!(registry.all().iter().any(|m| m.id == id));
        assert!(registry.list().iter().any(|m| m.id == id));
    }
    assert_eq!(crate::store::decodes::take("merchant_registry"), 0, "a lookup decoded registry records");
}

#[test]
fn a_record_from_before_signed_requests_is_still_read_and_only_a_signed_one_is_approved_now() {
    let nodes = network();
    let mut old = demo();
    (old.root_key, old.api_token_sha256) = (None, Some(B256::repeat_byte(7)));
    // It encodes as it was approved: the retired field in its old place, before the root key.
    let mut both = old.clone();
    both.root_key = demo().root_key;
    let json = serde_json::to_string(&both).expect("json");
    assert!(json.find("api_token_sha256") < json.find("root_key"), "{json}");
    // Every node still reads and applies such a record (a catch-up or an approval heard)...
    let change = MerchantChange { merchant: old.clone(), disabled: false, version: 1, epoch: 0 };
    assert_eq!(nodes[0].registry.record_problem(&change).expect("read"), None);
    // ...but approves a record made now only with a root key and without the retired hash.
    let err = nodes[0].registry.propose(old.clone(), false, false, &[key(0)]).expect_err("no root key");
    assert!(matches!(err, RegistryError::Invalid { field: "root_key", .. }), "{err}");
    let err = nodes[0].registry.propose(both.clone(), false, false, &[key(0)]).expect_err("retired hash");
    assert!(matches!(err, RegistryError::Invalid { field: "api_token_sha256", .. }), "{err}");
    both.api_token_sha256 = None;
    nodes[0].registry.propose(both, false, false, &[key(0)]).expect("a record made now");
}
