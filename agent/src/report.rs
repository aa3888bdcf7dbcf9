//! The report stream to the aggregator: a full snapshot on every (re)connect, deltas as the
//! node's view changes, heartbeats in between, reconnects with jittered exponential backoff.
//!
//! The reporter reads the node through a `watch` channel of immutable [`NodeView`]s, so a slow or
//! absent aggregator never makes the agent buffer: changes coalesce into the latest view, and what
//! was not sent goes out in the next delta or snapshot.

use crate::inventory::NodeView;
use crate::wire;
use anchorwatch_proto::parts;
use anchorwatch_proto::v1 as pb;
use anchorwatch_proto::v1::ingest_client::IngestClient;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tracing::{debug, info, warn};

/// How the reporter talks to the aggregator.
#[derive(Clone, Debug)]
pub struct ReportConfig {
    /// Aggregator gRPC URL, e.g. `http://anchorwatch-aggregator.anchorwatch:8443`.
    pub aggregator: String,
    /// This node's name.
    pub node: String,
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// Changes are gathered for this long before a delta is sent.
    pub coalesce: Duration,
    /// Bound on connecting, and on handing one message to the stream.
    pub timeout: Duration,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
    /// The projected ServiceAccount token, re-read on every connect (the kubelet rotates it);
    /// when the file does not exist the stream carries no token.
    pub token_file: Option<std::path::PathBuf>,
    /// CA bundle (PEM) that the aggregator's certificate must chain to, for an `https://`
    /// address; re-read on every connect.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Why a stream session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("invalid aggregator address: {0}")]
    Address(String),
    #[error("cannot connect: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot use the token in {0}: {1}")]
    Token(String, String),
    #[error("stream refused: {0}")]
    Refused(tonic::Status),
    #[error("stream failed: {0}")]
    Stream(tonic::Status),
    #[error("aggregator closed the stream")]
    Closed,
    #[error("aggregator did not take a message within {0:?}")]
    Stalled(Duration),
}

/// The node's latest clock measurement, published by the clock task.
pub type ClockView = watch::Receiver<Option<Arc<pb::NodeClock>>>;

/// Streams the node's view to the aggregator until `view`'s sender is dropped. Each new clock
/// measurement goes out at once, in a heartbeat; a snapshot carries the latest one.
pub async fn run(
    cfg: ReportConfig,
    mut view: watch::Receiver<Arc<NodeView>>,
    mut clock: ClockView,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), cfg.max_backoff);
    loop {
        let started = tokio::time::Instant::now();
        match session(&cfg, &mut view, &mut clock).await {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() > Duration::from_secs(30) {
                    backoff.reset();
                }
                let wait = backoff.next();
                warn!(aggregator = %cfg.aggregator, error = %chain(&e), retry_in = ?wait, "report stream down");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn session(
    cfg: &ReportConfig,
    view: &mut watch::Receiver<Arc<NodeView>>,
    clock: &mut ClockView,
) -> Result<(), SessionError> {
    let mut endpoint = Endpoint::from_shared(cfg.aggregator.clone())
        .map_err(|e| SessionError::Address(e.to_string()))?;
    if cfg.aggregator.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tls_config(cfg)?)
            .map_err(|e| SessionError::Tls(e.to_string()))?;
    }
    let endpoint = endpoint
        .connect_timeout(cfg.timeout)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await.map_err(SessionError::Connect)?;
    let mut client = IngestClient::new(channel);
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(4);
    let mut stream = Stream {
        tx,
        seq: 0,
        sent: HashMap::new(),
        node: cfg.node.clone(),
        timeout: cfg.timeout,
    };
    let mut clock_open = true;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token(cfg)? {
        request.metadata_mut().insert("authorization", token);
    }
    let mut responses = client
        .report(request)
        .await
        .map_err(SessionError::Refused)?
        .into_inner();
    // The snapshot goes out once the stream is open: in parts, it may be more than the channel
    // holds.
    let current = view.borrow_and_update().clone();
    let measured = clock.borrow_and_update().clone();
    stream.snapshot(&current, measured.as_deref()).await?;
    info!(aggregator = %cfg.aggregator, pods = current.pods.len(), "report stream open, snapshot sent");

    let mut heartbeat = tokio::time::interval(cfg.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            changed = view.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                tokio::time::sleep(cfg.coalesce).await;
                let current = view.borrow_and_update().clone();
                stream.delta(&current).await?;
            }
            changed = clock.changed(), if clock_open => match changed {
                Ok(()) => {
                    let measured = clock.borrow_and_update().clone();
                    stream.heartbeat(measured.as_deref()).await?;
                }
                Err(_) => clock_open = false,
            },
            _ = heartbeat.tick() => stream.heartbeat(None).await?,
            msg = responses.message() => match msg {
                Ok(Some(pb::AggregatorMessage { kind: Some(pb::aggregator_message::Kind::ResendSnapshot(r)) })) => {
                    info!(reason = %r.reason, "aggregator asked for a snapshot");
                    let current = view.borrow_and_update().clone();
                    let measured = clock.borrow().clone();
                    stream.snapshot(&current, measured.as_deref()).await?;
                }
                Ok(Some(m)) => debug!(?m, "from aggregator"),
                Ok(None) => return Err(SessionError::Closed),
                Err(status) => return Err(SessionError::Stream(status)),
            },
        }
    }
}

/// The sending half of one session: sequence numbers and what the aggregator already has.
struct Stream {
    tx: mpsc::Sender<pb::AgentMessage>,
    seq: u64,
    /// uid → revision last sent on this stream.
    sent: HashMap<String, u64>,
    node: String,
    timeout: Duration,
}

impl Stream {
    async fn snapshot(
        &mut self,
        view: &NodeView,
        clock: Option<&pb::NodeClock>,
    ) -> Result<(), SessionError> {
        self.sent = view
            .pods
            .iter()
            .map(|(uid, (rev, _))| (uid.clone(), *rev))
            .collect();
        let whole = pb::NodeSnapshot {
            node: self.node.clone(),
            sent_at: Some(crate::time::to_proto(crate::time::now())),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            pods: view
                .pods
                .values()
                .map(|(_, e)| wire::pod_evidence(e))
                .collect(),
            clock: clock.cloned(),
            ..Default::default()
        };
        // In parts of a few tens of KiB: the aggregator holds each stream's largest message in
        // a buffer for the stream's life, 5,000 times over.
        for part in parts::snapshot(whole, self.seq + 1, parts::PART_BYTES) {
            self.seq = part.seq;
            let msg = pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Snapshot(part)),
            };
            self.send(msg).await?;
        }
        Ok(())
    }

    async fn delta(&mut self, view: &NodeView) -> Result<(), SessionError> {
        let upserted: Vec<_> = view
            .pods
            .iter()
            .filter(|(uid, (rev, _))| self.sent.get(*uid) != Some(rev))
            .map(|(_, (_, e))| wire::pod_evidence(e))
            .collect();
        let removed_uids: Vec<String> = self
            .sent
            .keys()
            .filter(|uid| !view.pods.contains_key(*uid))
            .cloned()
            .collect();
        if upserted.is_empty() && removed_uids.is_empty() {
            return Ok(());
        }
        self.sent = view
            .pods
            .iter()
            .map(|(uid, (rev, _))| (uid.clone(), *rev))
            .collect();
        debug!(
            upserted = upserted.len(),
            removed = removed_uids.len(),
            "sending delta"
        );
        let whole = pb::NodeDelta {
            node: self.node.clone(),
            seq: 0,
            sent_at: Some(crate::time::to_proto(crate::time::now())),
            upserted,
            removed_uids,
        };
        for part in parts::delta(whole, self.seq + 1, parts::PART_BYTES) {
            self.seq = part.seq;
            let msg = pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Delta(part)),
            };
            self.send(msg).await?;
        }
        Ok(())
    }

    async fn heartbeat(&mut self, clock: Option<&pb::NodeClock>) -> Result<(), SessionError> {
        let msg = pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Heartbeat(pb::Heartbeat {
                node: self.node.clone(),
                sent_at: Some(crate::time::to_proto(crate::time::now())),
                clock: clock.cloned(),
            })),
        };
        self.send(msg).await
    }

    async fn send(&self, msg: pb::AgentMessage) -> Result<(), SessionError> {
        match tokio::time::timeout(self.timeout, self.tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SessionError::Closed),
            Err(_) => Err(SessionError::Stalled(self.timeout)),
        }
    }
}

/// An error with its sources, `a: b: c`: tonic's transport errors say little at the top level.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// TLS to the aggregator: its certificate must chain to the CA bundle in `cfg.ca_file` and name
/// the address's host.
fn tls_config(cfg: &ReportConfig) -> Result<tonic::transport::ClientTlsConfig, SessionError> {
    let path = cfg.ca_file.as_ref().ok_or_else(|| {
        SessionError::Tls(
            "an https:// aggregator needs --aggregator-ca (the CA bundle its certificate chains to)"
                .into(),
        )
    })?;
    let pem = std::fs::read(path)
        .map_err(|e| SessionError::Tls(format!("cannot read {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(SessionError::Tls(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pem)))
}

/// The `authorization` value for the token in `cfg.token_file`, read now; `None` without a
/// file.
fn token(
    cfg: &ReportConfig,
) -> Result<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>, SessionError> {
    let Some(path) = &cfg.token_file else {
        return Ok(None);
    };
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            debug!(file = %shown, "no token file: connecting without a token");
            return Ok(None);
        }
        Err(e) => return Err(SessionError::Token(shown, e.to_string())),
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(SessionError::Token(shown, "the file is empty".into()));
    }
    format!("Bearer {token}")
        .parse()
        .map(Some)
        .map_err(|_| SessionError::Token(shown, "not a valid header value".into()))
}

/// Jittered exponential backoff: each wait is uniform in [d/2, d], d doubling up to `max`.
struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Self {
        // Never below the base: a zero maximum would retry in a tight loop.
        Backoff {
            base,
            max: max.max(base),
            current: base,
        }
    }

    fn reset(&mut self) {
        self.current = self.base;
    }

    fn next(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = d / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_bound_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<_> = (0..8).map(|_| b.next()).collect();
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        assert!(waits[7] >= Duration::from_millis(500), "{waits:?}");
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
