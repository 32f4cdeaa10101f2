//! A Byzantine operator, for tests and drills only. It joins the network with a real operator's
//! keys (the configured peer id, BLS key and EVM account), so every honest node lets it connect
//! and hears it, and then does on purpose what the fault model allows one of f operators to do:
//!
//! - [`ByzantineOperator::announce`] any invoice: altered terms under a real id, or a ghost;
//! - [`ByzantineOperator::answer_fetches_with`]: hand those to nodes that ask for invoices;
//! - [`ByzantineOperator::forge_ack`]: claim it delivered events, also before they exist;
//! - [`ByzantineOperator::attest`]: sign any batch, so two different ones for a round
//!   (equivocation);
//! - [`ByzantineOperator::flood`]: re-send one valid attestation many times, each a new gossip
//!   message that costs a receiver a pairing unless it caches verified signatures;
//! - [`ByzantineOperator::forge_votes`]: vote for the batch the honest operators sign, each
//!   round, with a signature that does not verify (nodes count votes without a pairing, so the
//!   forged one lands in quorums);
//! - [`ByzantineOperator::approve_set`]: approve a set change in another operator's name, or
//!   with a signature over another set;
//! - withhold: it signs nothing unless told to.
//!
//! Settling through a wrapping contract needs no operator: any account can do it (see the
//! `Relay` contract).

use alloy::primitives::{Address, B256, Bytes};
use settleproof_config::NodeConfig;
use settleproof_consensus::Batch;
use settleproof_node::gossip::{self, Attestation, DeliveryAck, InvoiceAnnouncement, SyncRequest, SyncResponse};
use settleproof_node::keys::OperatorKeys;
use settleproof_node::store::Invoice;
use settleproof_p2p::{NetworkConfig, NetworkEvent, NetworkHandle, PeerId, parse_multiaddr};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why the Byzantine operator could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum ByzantineError {
    /// Its keys could not be read.
    #[error("keys: {0}")]
    Keys(String),
    /// The configuration names something unusable.
    #[error("config: {0}")]
    Config(String),
    /// The network failed.
    #[error("p2p: {0}")]
    P2p(#[from] settleproof_p2p::P2pError),
}

/// The Byzantine operator.
#[derive(Debug, Clone)]
pub struct ByzantineOperator {
    net: NetworkHandle,
    keys: Arc<OperatorKeys>,
    /// Its index in the operator set.
    pub index: usize,
    /// Its operator name.
    pub name: String,
    chain_id: u64,
    settlement: Address,
    /// Invoice copies handed to nodes that ask for invoices.
    answers: Arc<Mutex<HashMap<B256, Invoice>>>,
    /// The merchants' snapshot it answers catch-ups with.
    merchants: Arc<Mutex<Option<settleproof_node::merchants::MerchantSnapshot>>>,
    /// Whether it answers each round's first honest attestation with a forged vote.
    forging: Arc<std::sync::atomic::AtomicBool>,
    serving: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl ByzantineOperator {
    /// Joins the network as the operator `cfg` configures (its node must not be running): same
    /// keys, same listen address, same peers.
    pub async fn start(cfg: &NodeConfig) -> Result<Self, ByzantineError> {
        let keys = OperatorKeys::load(&cfg.node.keys_dir).map_err(|e| ByzantineError::Keys(e.to_string()))?;
        let index = cfg
            .network
            .operators
            .iter()
            .position(|o| o.name == cfg.node.name)
            .ok_or_else(|| ByzantineError::Config(format!("`{}` is not in network.operators", cfg.node.name)))?;
        let mut peers = Vec::new();
        for o in cfg.network.operators.iter().filter(|o| o.name != cfg.node.name) {
            let peer: PeerId = o.peer_id.parse().map_err(|e| ByzantineError::Config(format!("peer id: {e}")))?;
            peers.push((peer, parse_multiaddr(&o.p2p_addr)?));
        }
        // It takes part on the first chain only, in that chain's scope of the gossip.
        let chain = cfg.chains.first().ok_or_else(|| ByzantineError::Config("no chain configured".into()))?;
        let (net, events) = settleproof_p2p::spawn(NetworkConfig {
            keypair: keys.libp2p.clone(),
            listen: parse_multiaddr(&cfg.p2p.listen)?,
            peers,
            topics: settleproof_node::gossip::topics(chain.chain_id, false),
            redial_interval: Duration::from_secs(1),
        })?;
        let net = net.scoped(&chain.chain_id.to_string());
        let me = Self {
            net,
            keys: Arc::new(keys),
            index,
            name: cfg.node.name.clone(),
            chain_id: chain.chain_id,
            settlement: chain.settlement_contract,
            answers: Arc::default(),
            merchants: Arc::default(),
            forging: Arc::default(),
            serving: Arc::default(),
        };
        let task = tokio::spawn(me.clone().serve(events));
        if let Ok(mut s) = me.serving.lock() {
            *s = Some(task.abort_handle());
        }
        Ok(me)
    }

    /// Leaves the network: once this and every clone are dropped, its listen address is free
    /// for the real node again.
    pub fn stop(self) {
        if let Ok(mut s) = self.serving.lock()
            && let Some(task) = s.take()
        {
            task.abort();
        }
    }

    /// Operators connected to it now.
    pub fn connected(&self) -> usize {
        self.net.connected_peers()
    }

    /// From now on, answers the first honest attestation it hears of each round with a vote of
    /// its own for the same batch, signed with its real key over another message (the batch
    /// on another chain), so the signature is well formed and does not verify.
    pub fn forge_votes(&self) {
        self.forging.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Answers requests (with its own invoice copies, never an attestation), forges votes when
    /// told to, and takes no part in anything else.
    async fn serve(self, mut events: tokio::sync::mpsc::Receiver<NetworkEvent>) {
        let attestations = settleproof_p2p::scoped_topic(gossip::ATTESTATIONS, &self.chain_id.to_string());
        let mut forged_rounds = std::collections::HashSet::new();
        while let Some(ev) = events.recv().await {
            match ev {
                NetworkEvent::Request { data, reference, .. } => {
                    // Requests come tagged with their chain (`<chain_id>\n<json>`).
                    let body = data.split_once('\n').map_or(data.as_str(), |(_, body)| body);
                    let asked: Vec<B256> =
                        serde_json::from_str::<SyncRequest>(body).map(|r| r.invoices).unwrap_or_default();
                    let invoices = self
                        .answers
                        .lock()
                        .map(|a| asked.iter().filter_map(|id| a.get(id).cloned()).collect())
                        .unwrap_or_default();
                    let merchants = serde_json::from_str::<SyncRequest>(body)
                        .ok()
                        .filter(|r| r.merchants)
                        .and_then(|_| self.merchants.lock().ok().and_then(|m| m.clone()));
                    let answer = SyncResponse { attestations: Vec::new(), invoices, merchants, ..Default::default() };
                    self.net.respond(reference, serde_json::to_string(&answer).unwrap_or_default()).await;
                }
                NetworkEvent::Message { reference, topic, data, .. } => {
                    // Forwards nothing.
                    self.net.report(reference, settleproof_p2p::Verdict::Ignore).await;
                    if topic == attestations
                        && self.forging.load(std::sync::atomic::Ordering::Relaxed)
                        && let Ok(heard) = serde_json::from_slice::<Attestation>(&data)
                        && forged_rounds.insert(heard.batch.round)
                    {
                        let wrong = heard.batch.message(self.chain_id.wrapping_add(1), self.settlement);
                        let signature = Bytes::from(self.keys.bls.sign(wrong.as_slice()).to_bytes().to_vec());
                        let vote =
                            Attestation { batch: heard.batch, signer: self.index, signature, sent_at_ms: now_ms() };
                        let _ =
                            self.net.publish(gossip::ATTESTATIONS, serde_json::to_vec(&vote).unwrap_or_default()).await;
                    }
                }
                _ => {}
            }
        }
    }

    /// Publishes `invoice` as if it had been created here (altered, invented, or in another's
    /// name). Returns whether gossip took it.
    pub async fn announce(&self, invoice: Invoice) -> bool {
        let ann = InvoiceAnnouncement { invoice, sent_at_ms: now_ms() };
        self.net.publish(gossip::INVOICES, serde_json::to_vec(&ann).unwrap_or_default()).await.is_ok()
    }

    /// Publishes `invoices` packed in announcements, as honest nodes replicate the invoices
    /// they create. Returns whether gossip took every message.
    pub async fn announce_packed(&self, invoices: &[Invoice]) -> bool {
        let mut all = true;
        for data in gossip::InvoiceAnnouncements::pack(invoices, now_ms()) {
            all &= self.net.publish(gossip::INVOICE_BATCHES, data).await.is_ok();
        }
        all
    }

    /// Publishes `key` as an API key created or revoked here (minted, altered, or revoked in
    /// the merchant's name). Returns whether gossip took it.
    pub async fn announce_key(&self, key: settleproof_node::store::ApiKey) -> bool {
        let ann = settleproof_node::merchants::KeyAnnouncement { key, sent_at_ms: now_ms() };
        let data = serde_json::to_vec(&ann).unwrap_or_default();
        self.net.publish(settleproof_node::merchants::KEYS_TOPIC, data).await.is_ok()
    }

    /// Publishes `statements` as the signed changes of endpoint `endpoint_id` of `merchant`
    /// (its own, or the merchant's mixed with its own). Returns whether gossip took it.
    pub async fn announce_endpoint(
        &self,
        merchant: &str,
        endpoint_id: &str,
        statements: Vec<settleproof_merchant_auth::SignedStatement>,
    ) -> bool {
        let ann = settleproof_node::merchants::EndpointAnnouncement {
            merchant_id: merchant.into(),
            endpoint_id: endpoint_id.into(),
            statements,
            sent_at_ms: now_ms(),
        };
        let data = serde_json::to_vec(&ann).unwrap_or_default();
        self.net.publish(settleproof_node::merchants::ENDPOINTS_TOPIC, data).await.is_ok()
    }

    /// Answers every merchants' catch-up with `snapshot`.
    pub fn serve_merchants(&self, snapshot: settleproof_node::merchants::MerchantSnapshot) {
        if let Ok(mut m) = self.merchants.lock() {
            *m = Some(snapshot);
        }
    }

    /// Publishes a digest of merchant records (`records`, whatever it holds).
    pub async fn announce_digest(&self, records: B256) -> bool {
        let d = settleproof_node::merchants::MerchantDigest { records, sent_at_ms: now_ms() };
        self.net
            .publish(settleproof_node::merchants::DIGESTS_TOPIC, serde_json::to_vec(&d).unwrap_or_default())
            .await
            .is_ok()
    }

    /// Hands `invoice` to every node that asks for its id.
    pub fn answer_fetches_with(&self, invoice: Invoice) {
        if let Ok(mut a) = self.answers.lock() {
            a.insert(invoice.id, invoice);
        }
    }

    /// Claims it delivered event `webhook_id`, in a batch of acknowledgements as honest nodes
    /// send them, and in a message of its own as earlier versions did.
    pub async fn forge_ack(&self, webhook_id: &str) -> bool {
        let ack = DeliveryAck { webhook_id: webhook_id.to_string(), delivered_at_ms: now_ms() };
        let batch = gossip::DeliveryAcks { sent_at_ms: now_ms(), acks: vec![ack.clone()] };
        let batched =
            self.net.publish(gossip::DELIVERY_BATCHES, serde_json::to_vec(&batch).unwrap_or_default()).await.is_ok();
        let single = self.net.publish(gossip::DELIVERIES, serde_json::to_vec(&ack).unwrap_or_default()).await.is_ok();
        batched || single
    }

    /// Signs `batch` with its real BLS key and publishes the attestation.
    pub async fn attest(&self, batch: Batch) -> bool {
        let att = self.attestation(batch);
        self.net.publish(gossip::ATTESTATIONS, serde_json::to_vec(&att).unwrap_or_default()).await.is_ok()
    }

    /// Publishes the same signature over `batch` `count` times, each a new gossip message;
    /// returns how many went out.
    pub async fn flood(&self, batch: Batch, count: usize) -> usize {
        let mut att = self.attestation(batch);
        let mut sent = 0;
        for k in 0..count {
            att.sent_at_ms = now_ms().wrapping_add(k as u64);
            if self.net.publish(gossip::ATTESTATIONS, serde_json::to_vec(&att).unwrap_or_default()).await.is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Publishes an approval of the set `set_hash` proposed to epoch 0, filed under operator
    /// `signer`, signed with its own BLS key over the update message of `signed_over`.
    pub async fn approve_set(&self, set_hash: B256, signer: usize, signed_over: B256) -> bool {
        let message = settleproof_consensus::update_message(self.chain_id, self.settlement, signed_over);
        let approval = settleproof_node::set_approval::SetApproval {
            epoch: 0,
            set_hash,
            signer,
            signature: Bytes::from(self.keys.bls.sign(message.as_slice()).to_bytes().to_vec()),
            sent_at_ms: now_ms(),
        };
        let data = serde_json::to_vec(&approval).unwrap_or_default();
        self.net.publish(settleproof_node::set_approval::TOPIC, data).await.is_ok()
    }

    fn attestation(&self, batch: Batch) -> Attestation {
        let message = batch.message(self.chain_id, self.settlement);
        let signature = Bytes::from(self.keys.bls.sign(message.as_slice()).to_bytes().to_vec());
        Attestation { batch, signer: self.index, signature, sent_at_ms: now_ms() }
    }
}
