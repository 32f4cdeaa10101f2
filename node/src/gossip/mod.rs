//! Messages operators exchange on gossipsub, and their validation; the direct requests of
//! catch-up are in [`sync`].

use crate::epochs::Epochs;
use crate::operators::OperatorSet;
use crate::store::Invoice;
use alloy::primitives::{Address, B256, Bytes};
use serde::{Deserialize, Serialize};
use settleproof_consensus::{Batch, BlsSignature};
use settleproof_p2p::PeerId;

mod invoices;
mod sync;
pub use invoices::{InvoiceScope, check_invoice, check_invoice_terms, without_unsigned_key};
pub use sync::{CreatedSince, SyncRequest, SyncResponse};

/// Topic of batch attestations.
pub const ATTESTATIONS: &str = "settleproof/attestations/1";
/// Topic of invoice announcements, one a message (still heard; no longer sent).
pub const INVOICES: &str = "settleproof/invoices/1";
/// Topic of invoice announcements, many a message ([`InvoiceAnnouncements`]).
pub const INVOICE_BATCHES: &str = "settleproof/invoices/2";
/// Topic of operator heartbeats.
pub const HEARTBEATS: &str = "settleproof/heartbeats/1";
/// Topic of webhook delivery acknowledgements, one a message (still heard; no longer sent).
pub const DELIVERIES: &str = "settleproof/deliveries/1";
/// Topic of webhook delivery acknowledgements, many a message ([`DeliveryAcks`]).
pub const DELIVERY_BATCHES: &str = "settleproof/deliveries/2";

/// The topics of a chain's pipeline, as the code names them.
pub const TOPICS: [&str; 11] = [
    ATTESTATIONS,
    INVOICES,
    INVOICE_BATCHES,
    HEARTBEATS,
    DELIVERIES,
    DELIVERY_BATCHES,
    crate::set_approval::TOPIC,
    crate::merchants::TOPIC,
    crate::merchants::KEYS_TOPIC,
    crate::merchants::ENDPOINTS_TOPIC,
    crate::merchants::DIGESTS_TOPIC,
];

/// Every topic of chain `chain_id`'s pipeline on the wire: `<topic>/<chain_id>`
/// ([`settleproof_p2p::scoped_topic`]), so each chain's messages travel apart, and with `plain`
/// the plain names too (a node's first chain, heard by and hearing nodes of the version before
/// several chains).
pub fn topics(chain_id: u64, plain: bool) -> Vec<String> {
    let scope = chain_id.to_string();
    let scoped = TOPICS.iter().map(|t| settleproof_p2p::scoped_topic(t, &scope));
    let plain = TOPICS.iter().filter(|_| plain).map(|t| t.to_string());
    scoped.chain(plain).collect()
}

/// An operator telling the others it delivered a webhook event, so they need not deliver it
/// too. The sender is the operator whose key signed the gossip message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAck {
    /// The event.
    pub webhook_id: String,
    /// When it was delivered.
    pub delivered_at_ms: u64,
}

impl DeliveryAck {
    /// Longest webhook id accepted (ours are 36 characters).
    pub const MAX_ID_LEN: usize = 128;
}

/// The acknowledgements an operator gathered over a short while, in one gossip message: one
/// signature, one check and one store write for all of them instead of one each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAcks {
    /// When it was sent (the message's freshness).
    pub sent_at_ms: u64,
    /// The acknowledgements, at most [`DeliveryAcks::MAX_ACKS`].
    pub acks: Vec<DeliveryAck>,
}

impl DeliveryAcks {
    /// Most acknowledgements in one message.
    pub const MAX_ACKS: usize = 256;

    /// The acknowledgements of a message heard at `now_ms` that are fresh (delivered within
    /// [`MESSAGE_MAX_AGE_MS`]). A message that is not one, holds too many, or names an id too
    /// long is refused whole: an honest operator never sends one.
    pub fn validate(data: &[u8], now_ms: u64) -> Result<Vec<DeliveryAck>, GossipRejection> {
        let batch: DeliveryAcks =
            serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        if batch.acks.len() > Self::MAX_ACKS {
            return Err(GossipRejection::Malformed(format!(
                "{} acknowledgements in one message, at most {}",
                batch.acks.len(),
                Self::MAX_ACKS
            )));
        }
        if batch.acks.iter().any(|a| a.webhook_id.len() > DeliveryAck::MAX_ID_LEN) {
            return Err(GossipRejection::Malformed(format!(
                "a webhook id over {} characters",
                DeliveryAck::MAX_ID_LEN
            )));
        }
        Ok(batch.acks.into_iter().filter(|a| now_ms.abs_diff(a.delivered_at_ms) <= MESSAGE_MAX_AGE_MS).collect())
    }
}

/// An operator saying it is alive, and whether it can pay for a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Index of the operator.
    pub operator: usize,
    /// Whether its settlement account holds enough to submit.
    pub can_pay: bool,
    /// Send time.
    pub sent_at_ms: u64,
}

/// An operator's signature over a round's batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The batch.
    pub batch: Batch,
    /// Index of the signer in the operator set of the batch's epoch.
    pub signer: usize,
    /// Compressed BLS signature over the batch message.
    pub signature: Bytes,
    /// Send time; makes every re-broadcast a new gossip message.
    pub sent_at_ms: u64,
}

/// A newly created invoice, replicated to every operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceAnnouncement {
    /// The invoice.
    pub invoice: Invoice,
    /// Send time.
    pub sent_at_ms: u64,
}

/// The invoices an operator created (or announces again) over a short while, in one gossip
/// message: one signature and one check of it, and one store write for the new ones, instead
/// of one each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceAnnouncements {
    /// Send time.
    pub sent_at_ms: u64,
    /// The invoices, at most [`InvoiceAnnouncements::MAX_INVOICES`].
    pub invoices: Vec<Invoice>,
}

impl InvoiceAnnouncements {
    /// Most invoices in one message.
    pub const MAX_INVOICES: usize = 64;
    /// Most bytes of one message as the sender packs it (gossip carries at most 64 KiB).
    pub const MAX_BYTES: usize = 48 * 1024;

    /// The invoices of a message, unchecked ([`check_invoice`] judges each); one that is not
    /// such a message or holds too many is refused whole.
    pub fn decode(data: &[u8]) -> Result<Vec<Invoice>, GossipRejection> {
        let batch: Self = serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        if batch.invoices.len() > Self::MAX_INVOICES {
            return Err(GossipRejection::Malformed(format!(
                "{} invoices in one message, at most {}",
                batch.invoices.len(),
                Self::MAX_INVOICES
            )));
        }
        Ok(batch.invoices)
    }

    /// `invoices` packed into messages of at most [`Self::MAX_INVOICES`] and about
    /// [`Self::MAX_BYTES`] each (an invoice larger than that alone goes in one of its own).
    pub fn pack(invoices: &[Invoice], sent_at_ms: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut batch: Vec<Invoice> = Vec::new();
        let mut bytes = 0;
        for inv in invoices {
            let size = serde_json::to_vec(inv).map(|v| v.len()).unwrap_or(0) + 1;
            if !batch.is_empty() && (batch.len() >= Self::MAX_INVOICES || bytes + size > Self::MAX_BYTES) {
                out.push(Self { sent_at_ms, invoices: std::mem::take(&mut batch) });
                bytes = 0;
            }
            batch.push(inv.clone());
            bytes += size;
        }
        if !batch.is_empty() {
            out.push(Self { sent_at_ms, invoices: batch });
        }
        out.into_iter().map(|b| serde_json::to_vec(&b).unwrap_or_default()).collect()
    }
}

/// Why a gossip message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipRejection {
    /// Not valid JSON of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The signer index is outside the operator set.
    #[error("signer {0} is not in the operator set")]
    UnknownSigner(usize),
    /// The batch names an epoch this node does not know (yet).
    #[error("epoch {0} is not known here")]
    UnknownEpoch(u64),
    /// The batch names another epoch than the one that settles its round.
    #[error("round {round} is settled by epoch {expected}, the batch names epoch {named}")]
    WrongEpoch {
        /// Round.
        round: u64,
        /// The epoch that settles it, as known here.
        expected: u64,
        /// The epoch the batch names.
        named: u64,
    },
    /// The gossip publisher is not the operator the attestation names.
    #[error("published by {publisher}, but claims signer {signer}")]
    WrongPublisher {
        /// Publisher peer id.
        publisher: String,
        /// Claimed signer.
        signer: usize,
    },
    /// The BLS signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The heartbeat names another operator than its publisher.
    #[error("heartbeat of operator {0} from another peer")]
    ForeignHeartbeat(usize),
    /// The invoice is not one any node takes: a redirect URL or an idempotency record that does
    /// not hold.
    #[error("invoice rejected: {0}")]
    BadInvoice(String),
    /// The invoice names a merchant, or a payout address, that this node's copy of the merchant
    /// registry does not hold: it may only lag the creating operator's.
    #[error("invoice not taken yet: {0}")]
    NotInRegistry(String),
    /// The invoice's id is not the commitment to its terms: altered or invented.
    #[error("invoice {0}: the id does not commit to these terms")]
    InvoiceIdMismatch(B256),
    /// The invoice is not what the merchant's signed request it carries says (`field` differs,
    /// or the request makes no invoice of this chain): altered or invented.
    #[error("invoice {id}: `{field}` is not what its merchant signed")]
    NotAsSigned {
        /// The invoice.
        id: B256,
        /// The first term that differs.
        field: &'static str,
    },
    /// An operator sent an invoice as its own that names another operator as its creator.
    #[error("invoice {0} names another operator as its creator")]
    ForeignCreator(B256),
    /// A merchant record this node does not take: its merchant signatures do not verify against
    /// this node's registry, or this node could not store it. Depends on this node's view, so
    /// the relayer is not blamed (`Ignore`), and it goes no further from here.
    #[error("merchant record not taken here: {0}")]
    NotTaken(String),
}

/// How old (or how far ahead of this node's clock) a gossip message's own timestamp may be:
/// older ones are replays, dropped before they cost their author budget. Gossip remembers
/// message ids longer than this, so a replay inside the window is a duplicate.
pub const MESSAGE_MAX_AGE_MS: u64 = 5 * 60 * 1000;

/// Whether a gossip message's own timestamp (`sent_at_ms`, or `delivered_at_ms` of an
/// acknowledgement) is within [`MESSAGE_MAX_AGE_MS`] of `now_ms`. A message without one is
/// judged by its topic's rules.
pub fn fresh(data: &[u8], now_ms: u64) -> bool {
    Stamp::of(data).fresh(now_ms)
}

/// The timestamps a gossip message carries (none when it is not a JSON object with them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Stamp {
    /// When its author sent it.
    pub sent_at_ms: Option<u64>,
    /// When the event it acknowledges was delivered.
    pub delivered_at_ms: Option<u64>,
}

impl Stamp {
    /// The stamp of `data`.
    pub fn of(data: &[u8]) -> Self {
        serde_json::from_slice(data).unwrap_or_default()
    }

    /// See [`fresh`].
    pub fn fresh(&self, now_ms: u64) -> bool {
        self.sent_at_ms.or(self.delivered_at_ms).is_none_or(|at| now_ms.abs_diff(at) <= MESSAGE_MAX_AGE_MS)
    }
}

/// What became of a gossiped attestation, for the verdict gossip gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationFate {
    /// Invalid in itself: malformed, not published by its signer, or a bad signature.
    Invalid(GossipRejection),
    /// Names a round outside the window this node considers.
    OutsideWindow,
    /// Names an epoch this node does not know, or not the one it knows for the round: its
    /// view of the operator sets may lag, so it is not counted but not held against anyone.
    OtherEpoch(GossipRejection),
    /// Its round is settled here already.
    Settled,
    /// Together with the signature held here for the round, it proves its signer equivocated.
    Equivocation,
    /// Counted after its signature verified (or a repeat of one counted so).
    Counted,
    /// Counted with its signature parsed but not verified (checked later, in a quorum's
    /// aggregate): not forwarded, so no node ever relays a signature nobody checked. Its
    /// signer publishes to every operator itself.
    CountedUnchecked,
}

impl AttestationFate {
    /// The verdict for gossip and whether to penalise the author (the signer, never the
    /// forwarder). `Reject` costs the peer that forwarded the message its score (gossipsub P4),
    /// so it is kept for what any honest node would find invalid too; whatever depends on this
    /// node's state is `Ignore`d. A bad BLS signature, found only by a node that checks its
    /// signer's votes on arrival, penalises its signer, who published it, and is `Ignore`d:
    /// the check depends on what this node learned of that signer. A vote counted unchecked is
    /// `Ignore`d too: it is not forwarded.
    pub fn verdict(&self) -> (settleproof_p2p::Verdict, bool) {
        use settleproof_p2p::Verdict;
        match self {
            Self::Invalid(GossipRejection::BadSignature(_)) => (Verdict::Ignore, true),
            Self::Invalid(_) => (Verdict::Reject, false),
            Self::OutsideWindow | Self::Settled | Self::OtherEpoch(_) => (Verdict::Ignore, false),
            Self::Equivocation => (Verdict::Ignore, true),
            Self::Counted => (Verdict::Accept, false),
            Self::CountedUnchecked => (Verdict::Ignore, false),
        }
    }
}

impl GossipRejection {
    /// The verdict gossip gets for a message refused for this reason. `Reject` costs the peer
    /// that forwarded it its score (gossipsub P4), so it is kept for what every honest node finds
    /// invalid whatever it has seen: malformed, a signature or publisher that does not hold, an
    /// invoice altered, invented or announced in another's name. What depends on this node's view
    /// (an epoch, an operator or a merchant record it has not read yet) is `Ignore`d: not
    /// forwarded, no one blamed. The table is in this module's tests.
    pub fn verdict(&self) -> settleproof_p2p::Verdict {
        use settleproof_p2p::Verdict;
        match self {
            Self::Malformed(_)
            | Self::UnknownSigner(_)
            | Self::WrongPublisher { .. }
            | Self::BadSignature(_)
            | Self::BadInvoice(_)
            | Self::InvoiceIdMismatch(_)
            | Self::NotAsSigned { .. }
            | Self::ForeignCreator(_) => Verdict::Reject,
            Self::UnknownEpoch(_)
            | Self::WrongEpoch { .. }
            | Self::ForeignHeartbeat(_)
            | Self::NotInRegistry(_)
            | Self::NotTaken(_) => Verdict::Ignore,
        }
    }

    /// Whether an invoice was altered or invented by whoever sent it: its id does not commit to
    /// its terms, or its terms are not what its merchant signed. No honest operator sends one,
    /// whatever its registry holds.
    pub fn is_altered_invoice(&self) -> bool {
        matches!(self, Self::InvoiceIdMismatch(_) | Self::NotAsSigned { .. })
    }

    /// Label of the `attestations_rejected_total{reason}` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownSigner(_) => "unknown_signer",
            Self::UnknownEpoch(_) => "unknown_epoch",
            Self::WrongEpoch { .. } => "wrong_epoch",
            Self::WrongPublisher { .. } => "wrong_publisher",
            Self::BadSignature(_) => "bad_signature",
            Self::ForeignHeartbeat(_) => "foreign_heartbeat",
            Self::BadInvoice(_) => "bad_invoice",
            Self::NotInRegistry(_) => "not_in_registry",
            Self::InvoiceIdMismatch(_) => "invoice_id_mismatch",
            Self::NotAsSigned { .. } => "invoice_not_as_signed",
            Self::ForeignCreator(_) => "foreign_creator",
            Self::NotTaken(_) => "not_taken",
        }
    }
}

/// Operator `signer` of `set`, when `source` (the gossip author) is that operator: what an
/// operator signs, it publishes itself.
pub(crate) fn published_by_signer<'a>(
    set: &'a OperatorSet,
    signer: usize,
    source: &PeerId,
) -> Result<&'a crate::operators::Operator, GossipRejection> {
    let op = set.operators.get(signer).ok_or(GossipRejection::UnknownSigner(signer))?;
    if &op.peer_id != source {
        return Err(GossipRejection::WrongPublisher { publisher: source.to_string(), signer });
    }
    Ok(op)
}

impl Attestation {
    /// Decodes and fully validates an attestation published on gossip by `source`: the
    /// publisher must be the signer itself. Returns it with the parsed signature.
    pub fn validate(
        data: &[u8],
        source: &PeerId,
        epochs: &Epochs,
        chain_id: u64,
        settlement: Address,
    ) -> Result<(Self, BlsSignature), GossipRejection> {
        let att = Self::decode(data, source, epochs)?;
        let sig = att.verify(epochs, chain_id, settlement)?;
        Ok((att, sig))
    }

    /// Decodes an attestation published by `source` and checks, without any pairing, that its
    /// epoch is the one settling its round and that the publisher is the signer it names.
    pub fn decode(data: &[u8], source: &PeerId, epochs: &Epochs) -> Result<Self, GossipRejection> {
        let att: Self = serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        published_by_signer(&*att.set(epochs)?, att.signer, source)?;
        Ok(att)
    }

    /// The operator set of the batch's epoch, which must be the one settling its round.
    pub fn set(&self, epochs: &Epochs) -> Result<std::sync::Arc<OperatorSet>, GossipRejection> {
        let (round, named) = (self.batch.round, self.batch.epoch);
        let set = epochs.get(named).ok_or(GossipRejection::UnknownEpoch(named))?;
        match epochs.for_round(round) {
            Some(s) if s.epoch == named => Ok(set),
            Some(s) => Err(GossipRejection::WrongEpoch { round, expected: s.epoch, named }),
            None => Err(GossipRejection::UnknownEpoch(named)),
        }
    }

    /// Checks the signature against the signer's key in the batch's epoch (also for
    /// attestations relayed in a sync response, whose sender is not the signer).
    pub fn verify(&self, epochs: &Epochs, chain_id: u64, settlement: Address) -> Result<BlsSignature, GossipRejection> {
        let set = self.set(epochs)?;
        let op = set.operators.get(self.signer).ok_or(GossipRejection::UnknownSigner(self.signer))?;
        let sig =
            BlsSignature::from_bytes(&self.signature).map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
        sig.verify(&op.bls, self.batch.message(chain_id, settlement).as_slice())
            .map_err(|e| GossipRejection::BadSignature(e.to_string()))?;
        Ok(sig)
    }
}

impl Heartbeat {
    /// Decodes a heartbeat published by `source`, which must be an operator of a known epoch.
    /// The liveness it proves is the publisher's, whatever index the heartbeat names (the
    /// sender's index may be of another epoch than the receiver's latest).
    pub fn validate(data: &[u8], source: &PeerId, epochs: &Epochs) -> Result<Self, GossipRejection> {
        let hb: Self = serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        if epochs.knows_peer(source) { Ok(hb) } else { Err(GossipRejection::ForeignHeartbeat(hb.operator)) }
    }
}

impl InvoiceAnnouncement {
    /// Decodes an announcement and checks it ([`check_invoice`]).
    pub fn validate(data: &[u8], scope: &InvoiceScope) -> Result<Invoice, GossipRejection> {
        let ann: Self = serde_json::from_slice(data).map_err(|e| GossipRejection::Malformed(e.to_string()))?;
        check_invoice(ann.invoice, scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_verdict_and_why() {
        use settleproof_p2p::Verdict::{Ignore, Reject};
        let id = B256::repeat_byte(1);
        let table: [(GossipRejection, settleproof_p2p::Verdict, &str); 13] = [
            (GossipRejection::Malformed("x".into()), Reject, "not the message type: invalid anywhere"),
            (GossipRejection::UnknownSigner(9), Reject, "an epoch's set is the same at every node that knows it"),
            (GossipRejection::UnknownEpoch(9), Ignore, "this node has not read that epoch yet"),
            (GossipRejection::WrongEpoch { round: 1, expected: 0, named: 1 }, Ignore, "this node's schedule may lag"),
            (
                GossipRejection::WrongPublisher { publisher: "p".into(), signer: 0 },
                Reject,
                "an operator publishes what it signs",
            ),
            (
                GossipRejection::BadSignature("x".into()),
                Reject,
                "a signature under a key every node of the epoch holds",
            ),
            (GossipRejection::ForeignHeartbeat(3), Ignore, "its operator may be of a set not read here yet"),
            (GossipRejection::BadInvoice("x".into()), Reject, "no node takes it"),
            (GossipRejection::NotInRegistry("m".into()), Ignore, "this node's registry may lag"),
            (GossipRejection::InvoiceIdMismatch(id), Reject, "altered or invented by its sender"),
            (GossipRejection::NotAsSigned { id, field: "amount" }, Reject, "not what the merchant signed"),
            (GossipRejection::ForeignCreator(id), Reject, "announced in another operator's name"),
            (GossipRejection::NotTaken("x".into()), Ignore, "depends on this node's merchant records"),
        ];
        for (rejection, verdict, why) in table {
            assert_eq!(rejection.verdict(), verdict, "{rejection}: {why}");
            assert_eq!(
                rejection.is_altered_invoice(),
                matches!(rejection, GossipRejection::InvoiceIdMismatch(_) | GossipRejection::NotAsSigned { .. })
            );
        }
    }
    use settleproof_p2p::Verdict;

    #[test]
    fn replays_older_than_the_window_are_stale() {
        let now = 10 * MESSAGE_MAX_AGE_MS;
        assert!(fresh(br#"{"sent_at_ms": 9000000, "x": 1}"#, 9_000_100));
        assert!(!fresh(format!(r#"{{"sent_at_ms": {}}}"#, now - MESSAGE_MAX_AGE_MS - 1).as_bytes(), now));
        assert!(!fresh(format!(r#"{{"delivered_at_ms": {}}}"#, now + MESSAGE_MAX_AGE_MS + 1).as_bytes(), now));
        assert!(fresh(b"{}", now), "no stamp: the topic's rules judge it");
    }

    #[test]
    fn only_what_is_invalid_in_itself_costs_the_forwarder() {
        let table = [
            // Found by a node that checks this signer on arrival: the signer pays.
            (AttestationFate::Invalid(GossipRejection::BadSignature("x".into())), Verdict::Ignore, true),
            (AttestationFate::Invalid(GossipRejection::Malformed("x".into())), Verdict::Reject, false),
            (AttestationFate::OutsideWindow, Verdict::Ignore, false),
            (AttestationFate::Settled, Verdict::Ignore, false),
            // Another node that saw the other batch first forwards this one in good faith: its
            // score must not pay for the equivocator, who is penalised as the author.
            (AttestationFate::Equivocation, Verdict::Ignore, true),
            (AttestationFate::Counted, Verdict::Accept, false),
            // Nobody relays a signature nobody checked.
            (AttestationFate::CountedUnchecked, Verdict::Ignore, false),
        ];
        for (fate, verdict, penalize) in table {
            assert_eq!(fate.verdict(), (verdict, penalize), "{fate:?}");
        }
    }

    fn invoice(n: u64, metadata_bytes: usize) -> Invoice {
        Invoice {
            id: B256::from(alloy::primitives::U256::from(n)),
            nonce: B256::repeat_byte(4),
            merchant_id: "shop".into(),
            payout_address: Address::repeat_byte(0x11),
            amount: alloy::primitives::U256::from(5u64),
            token: Address::ZERO,
            created_at: 1,
            expires_at: None,
            metadata: (metadata_bytes > 0).then(|| serde_json::json!({ "note": "x".repeat(metadata_bytes) })),
            created_by: "node-0".into(),
            idempotency: None,
            redirect_url: None,
            statement: None,
        }
    }

    /// Announcements pack into messages of at most 64 invoices and about 48 KiB, which decode
    /// back to the same invoices in order; a message holding more is refused whole.
    #[test]
    fn invoice_announcements_pack_within_bounds_and_decode_back() {
        let small: Vec<Invoice> = (0..200).map(|n| invoice(n, 0)).collect();
        let large: Vec<Invoice> = (0..10).map(|n| invoice(1000 + n, 20_000)).collect();
        for set in [small, large] {
            let messages = InvoiceAnnouncements::pack(&set, 7);
            let mut back = Vec::new();
            for m in &messages {
                assert!(m.len() <= 64 * 1024, "{} bytes", m.len());
                let invoices = InvoiceAnnouncements::decode(m).expect("decodes");
                assert!(invoices.len() <= InvoiceAnnouncements::MAX_INVOICES);
                back.extend(invoices);
            }
            assert_eq!(back, set);
        }
        let over = InvoiceAnnouncements { sent_at_ms: 7, invoices: (0..65).map(|n| invoice(n, 0)).collect() };
        let err = InvoiceAnnouncements::decode(&serde_json::to_vec(&over).expect("json")).expect_err("too many");
        assert!(matches!(err, GossipRejection::Malformed(_)), "{err}");
    }

    /// A batch of acknowledgements keeps the fresh ones; one too large or with an id too long is
    /// refused whole.
    #[test]
    fn delivery_acknowledgements_in_one_message_are_bounded() {
        let now = 10 * MESSAGE_MAX_AGE_MS;
        let ack = |id: &str, at: u64| DeliveryAck { webhook_id: id.into(), delivered_at_ms: at };
        let batch =
            DeliveryAcks { sent_at_ms: now, acks: vec![ack("a", now - 5), ack("old", now - MESSAGE_MAX_AGE_MS - 1)] };
        let kept = DeliveryAcks::validate(&serde_json::to_vec(&batch).expect("json"), now).expect("valid");
        assert_eq!(kept, vec![ack("a", now - 5)], "the stale one is dropped");
        let many =
            DeliveryAcks { sent_at_ms: now, acks: (0..=DeliveryAcks::MAX_ACKS).map(|_| ack("a", now)).collect() };
        assert!(DeliveryAcks::validate(&serde_json::to_vec(&many).expect("json"), now).is_err());
        let long = DeliveryAcks { sent_at_ms: now, acks: vec![ack(&"x".repeat(DeliveryAck::MAX_ID_LEN + 1), now)] };
        assert!(DeliveryAcks::validate(&serde_json::to_vec(&long).expect("json"), now).is_err());
    }
}
