//! The merchants' records heard on gossip (registry approvals, API keys, webhook endpoints) are
//! judged on a task of their own, not on the first chain's round loop: the loop checks a
//! message's author and budget, hands it over ([`Registry::offer`]) and goes on with votes and
//! invoices. The task judges one message at a time off the runtime (signatures, a registry read,
//! a durable write for what is new) and reports each verdict; it also announces again, every
//! rebroadcast interval, the records this node still announces. So no merchant record, however
//! many are sent, can hold back the first chain's settlement, and a full inbox costs the sender
//! its message (ignored, counted as `merchant_records_dropped_total`), never the loop its time:
//! what was dropped comes back with the next announcement or catch-up.
//!
//! Digests of what each node holds are heard here too, and a node pulls from a peer whose
//! digest keeps differing from its own ([`super::digests`]).
//!
//! One author cannot fill the inbox for the others: each may have [`PER_AUTHOR`] messages
//! waiting, and registry approvals (a threshold's votes) wait apart and are judged first. A
//! message that waited longer than [`MAX_WAIT`] is ignored unjudged: gossip keeps a message
//! for its verdict only a few seconds, after which a verdict would be lost anyway.

use super::Registry;
use crate::gossip::GossipRejection;
use settleproof_p2p::{MessageRef, NetworkHandle, PeerId, Verdict};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

/// Key and endpoint messages waiting to be judged, at most.
pub const INBOX: usize = 1024;
/// Registry approvals waiting to be judged, at most.
pub const APPROVALS: usize = 256;
/// Messages of one author waiting, at most.
pub const PER_AUTHOR: usize = 128;
/// Longest a message waits to be judged.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// What kind of merchant record a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// An operator's approval of a registry change ([`super::TOPIC`]).
    Approval,
    /// A merchant's API key ([`super::KEYS_TOPIC`]).
    Key,
    /// A merchant's webhook endpoint ([`super::ENDPOINTS_TOPIC`]).
    Endpoint,
    /// A peer's digest of the records it holds ([`super::DIGESTS_TOPIC`]).
    Digest,
}

impl RecordKind {
    /// The kind carried on `topic` (as the code names it), if a merchant record's.
    pub fn of(topic: &str) -> Option<Self> {
        match topic {
            super::TOPIC => Some(Self::Approval),
            super::KEYS_TOPIC => Some(Self::Key),
            super::ENDPOINTS_TOPIC => Some(Self::Endpoint),
            super::DIGESTS_TOPIC => Some(Self::Digest),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Approval => "merchant change approval",
            Self::Key => "API key",
            Self::Endpoint => "webhook endpoint",
            Self::Digest => "merchant digest",
        }
    }

    /// The `kind` label of `merchant_records_dropped_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Approval => "approval",
            Self::Key => "api_key",
            Self::Endpoint => "webhook_endpoint",
            Self::Digest => "digest",
        }
    }
}

/// A message waiting in the inbox.
#[derive(Debug)]
pub(super) struct Heard {
    kind: RecordKind,
    data: Vec<u8>,
    source: PeerId,
    reference: MessageRef,
    at: tokio::time::Instant,
}

/// Where the round loop hands merchant records: approvals apart, and a count of each
/// author's messages waiting.
#[derive(Debug)]
pub(super) struct Inbox {
    records: mpsc::Sender<Heard>,
    approvals: mpsc::Sender<Heard>,
    waiting: std::sync::Mutex<std::collections::HashMap<PeerId, usize>>,
}

impl Inbox {
    /// Counts one more message of `author` waiting, unless it has [`PER_AUTHOR`] already.
    fn admit(&self, author: PeerId) -> bool {
        let mut w = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = w.entry(author).or_insert(0);
        if *n >= PER_AUTHOR {
            return false;
        }
        *n += 1;
        true
    }

    /// One message of `author` judged (or not sent).
    fn done(&self, author: &PeerId) {
        let mut w = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = w.get_mut(author) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                w.remove(author);
            }
        }
    }
}

/// The verdict on a record heard, and whether its author is penalised besides: an approval
/// invalid in itself (an operator signs and publishes its own) is its author's doing; a key
/// or endpoint that does not verify may depend on this node's registry, so it is ignored and
/// its relayer not blamed ([`GossipRejection::NotTaken`]).
pub(super) fn verdict(kind: RecordKind, heard: &Result<bool, GossipRejection>) -> (Verdict, bool) {
    match (kind, heard) {
        (_, Ok(_)) => (Verdict::Accept, false),
        (_, Err(e)) if e.verdict() == Verdict::Ignore => (Verdict::Ignore, false),
        (RecordKind::Approval, Err(_)) => (Verdict::Reject, true),
        (_, Err(_)) => (Verdict::Reject, false),
    }
}

impl Registry {
    /// Starts the task that judges the merchant records heard on gossip and announces this
    /// node's again every `rebroadcast`, until `shutdown` turns true. Call once, after
    /// [`Registry::attach`].
    pub fn spawn_inbox(&self, rebroadcast: Duration, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        let (records, mut records_rx) = mpsc::channel::<Heard>(INBOX);
        let (approvals, mut approvals_rx) = mpsc::channel::<Heard>(APPROVALS);
        let _ = self.0.inbox.set(Inbox { records, approvals, waiting: std::sync::Mutex::default() });
        let (registry, net) = (self.clone(), self.0.net.get().cloned());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(rebroadcast);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut digest = tokio::time::interval(super::DIGEST_EVERY);
            digest.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => return,
                    // The ticks before the queues: a flood of messages never stops this node's
                    // own digest and announcements.
                    _ = digest.tick() => {
                        let r = registry.clone();
                        let _ = tokio::task::spawn_blocking(move || r.publish_digest()).await;
                    }
                    _ = tick.tick() => {
                        let r = registry.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            r.rebroadcast();
                            r.rebroadcast_keys();
                            r.rebroadcast_endpoints();
                        })
                        .await;
                    }
                    Some(h) = approvals_rx.recv() => registry.judge(h, net.as_ref()).await,
                    Some(h) = records_rx.recv() => registry.judge(h, net.as_ref()).await,
                }
            }
        })
    }

    /// Hands a merchant record heard on gossip to the inbox task, which reports its verdict;
    /// `false` when the inbox, or its author's share of it, is full, or it is not running (the
    /// caller ignores the message).
    pub fn offer(&self, kind: RecordKind, data: &[u8], source: PeerId, reference: MessageRef) -> bool {
        let Some(inbox) = self.0.inbox.get() else { return false };
        let sent = inbox.admit(source) && {
            let heard = Heard { kind, data: data.to_vec(), source, reference, at: tokio::time::Instant::now() };
            let queue = if kind == RecordKind::Approval { &inbox.approvals } else { &inbox.records };
            let sent = queue.try_send(heard).is_ok();
            if !sent {
                inbox.done(&source);
            }
            sent
        };
        if !sent {
            metrics::counter!("merchant_records_dropped_total", "kind" => kind.label()).increment(1);
        }
        sent
    }

    async fn judge(&self, h: Heard, net: Option<&NetworkHandle>) {
        if let Some(inbox) = self.0.inbox.get() {
            inbox.done(&h.source);
        }
        let (registry, kind, source, reference) = (self.clone(), h.kind, h.source, h.reference);
        if h.at.elapsed() > MAX_WAIT {
            metrics::counter!("merchant_records_dropped_total", "kind" => kind.label()).increment(1);
            if let Some(net) = net {
                net.report(reference, Verdict::Ignore).await;
            }
            return;
        }
        if kind == RecordKind::Digest {
            let heard = self.hear_digest(&h.data, &source);
            if let Ok(true) = heard {
                let registry = self.clone();
                tokio::spawn(async move { registry.pull(source).await });
            }
            let (verdict, _) = verdict(kind, &heard);
            if let Some(net) = net {
                net.report(reference, verdict).await;
            }
            return;
        }
        let heard = tokio::task::spawn_blocking(move || match kind {
            RecordKind::Approval => registry.hear(&h.data, &source),
            RecordKind::Key => registry.hear_key(&h.data, &source),
            RecordKind::Endpoint => registry.hear_endpoint(&h.data, &source),
            RecordKind::Digest => Ok(false),
        })
        .await;
        let heard = match heard {
            Ok(heard) => heard,
            // This node's failure, not the author's.
            Err(e) => {
                error!(error = %e, "{} check failed", kind.as_str());
                Err(GossipRejection::NotTaken(e.to_string()))
            }
        };
        match &heard {
            Err(e @ (GossipRejection::NotTaken(_) | GossipRejection::UnknownEpoch(_))) => {
                debug!(peer = %source, error = %e, "{} not taken", kind.as_str());
            }
            Err(e) => {
                warn!(peer = %source, error = %e, "{} rejected", kind.as_str());
                if kind == RecordKind::Approval {
                    metrics::counter!("merchant_approvals_rejected_total", "reason" => e.reason()).increment(1);
                }
            }
            Ok(_) => {}
        }
        let (verdict, penalize) = verdict(kind, &heard);
        let Some(net) = net else { return };
        if penalize {
            net.penalize(source).await;
        }
        net.report(reference, verdict).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_kind_and_outcome_has_its_verdict() {
        let bad = || GossipRejection::Malformed("x".into());
        type Row = (RecordKind, Result<bool, GossipRejection>, (Verdict, bool), &'static str);
        let table: [Row; 10] = [
            (RecordKind::Approval, Ok(true), (Verdict::Accept, false), "new, kept"),
            (RecordKind::Approval, Ok(false), (Verdict::Accept, false), "a repeat, forwarded"),
            (
                RecordKind::Approval,
                Err(GossipRejection::UnknownEpoch(9)),
                (Verdict::Ignore, false),
                "an epoch not read here yet",
            ),
            (
                RecordKind::Approval,
                Err(GossipRejection::NotTaken("url policy".into())),
                (Verdict::Ignore, false),
                "a record this node's policy refuses, or its own failure: the author not blamed",
            ),
            (
                RecordKind::Approval,
                Err(bad()),
                (Verdict::Reject, true),
                "an operator's own approval, invalid in itself",
            ),
            (RecordKind::Key, Ok(false), (Verdict::Accept, false), "a repeat"),
            (
                RecordKind::Key,
                Err(GossipRejection::NotTaken("root".into())),
                (Verdict::Ignore, false),
                "depends on this registry",
            ),
            (RecordKind::Key, Err(bad()), (Verdict::Reject, false), "malformed: not forwarded, relayer not scored"),
            (
                RecordKind::Endpoint,
                Err(GossipRejection::NotTaken("sig".into())),
                (Verdict::Ignore, false),
                "depends on this registry",
            ),
            (RecordKind::Endpoint, Ok(true), (Verdict::Accept, false), "new"),
        ];
        for (kind, heard, want, why) in table {
            assert_eq!(verdict(kind, &heard), want, "{kind:?}: {why}");
        }
    }

    #[tokio::test]
    async fn one_author_cannot_fill_the_inbox_for_the_others() {
        let inbox = Inbox {
            records: mpsc::channel(INBOX).0,
            approvals: mpsc::channel(APPROVALS).0,
            waiting: std::sync::Mutex::default(),
        };
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let admitted = (0..10 * PER_AUTHOR).filter(|_| inbox.admit(flooder)).count();
        assert_eq!(admitted, PER_AUTHOR);
        assert!(inbox.admit(honest), "another author still gets in");
        inbox.done(&flooder);
        assert!(inbox.admit(flooder), "a judged message frees its author's place");
        assert!(!inbox.admit(flooder));
    }

    #[test]
    fn only_merchant_topics_are_records() {
        assert_eq!(RecordKind::of(super::super::TOPIC), Some(RecordKind::Approval));
        assert_eq!(RecordKind::of(super::super::KEYS_TOPIC), Some(RecordKind::Key));
        assert_eq!(RecordKind::of(super::super::ENDPOINTS_TOPIC), Some(RecordKind::Endpoint));
        assert_eq!(RecordKind::of(crate::gossip::ATTESTATIONS), None);
    }
}
