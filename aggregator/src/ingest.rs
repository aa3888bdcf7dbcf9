//! The Ingest service: one bidirectional stream per agent. The first message must be a snapshot;
//! it binds the stream to its node. Snapshots replace the node's pods, deltas update them,
//! heartbeats keep the node fresh; when the stream ends the node turns stale (never healthy).

use crate::model::{Cluster, PodRecord};
use crate::wire;
use anchorwatch_proto::v1 as pb;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info, info_span, warn};

/// The Ingest gRPC service.
#[derive(Clone)]
pub struct IngestService {
    cluster: Arc<Mutex<Cluster>>,
    idle_timeout: Duration,
    /// Turns true when the aggregator shuts down: every stream ends, so agents reconnect.
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Shares certificates and anchor bundles that many pods report.
    interner: Arc<Mutex<wire::Interner>>,
}

impl IngestService {
    /// A service writing into `cluster`. A stream silent for `idle_timeout` is closed; every
    /// stream ends when `shutdown` turns true.
    pub fn new(
        cluster: Arc<Mutex<Cluster>>,
        idle_timeout: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        IngestService {
            cluster,
            idle_timeout,
            shutdown,
            interner: Arc::default(),
        }
    }

    /// The tonic service.
    pub fn svc(self) -> pb::ingest_server::IngestServer<Self> {
        pb::ingest_server::IngestServer::new(self)
    }
}

type Outbound = Pin<Box<dyn futures::Stream<Item = Result<pb::AggregatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::ingest_server::Ingest for IngestService {
    type ReportStream = Outbound;

    async fn report(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        let svc = self.clone();
        tokio::spawn(
            async move {
                if let Err(status) = svc.session(inbound, &tx).await {
                    warn!(code = ?status.code(), message = status.message(), "agent stream ended with an error");
                    let _ = tx.send(Err(status)).await;
                }
            }
            .instrument(info_span!("agent", %peer)),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type Replies = mpsc::Sender<Result<pb::AggregatorMessage, Status>>;

impl IngestService {
    async fn next(
        &self,
        inbound: &mut Streaming<pb::AgentMessage>,
    ) -> Result<Option<pb::AgentMessage>, Status> {
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow_and_update() {
            return Err(Status::unavailable(
                "the aggregator is shutting down; reconnect",
            ));
        }
        tokio::select! {
            r = tokio::time::timeout(self.idle_timeout, inbound.message()) => match r {
                Ok(r) => r,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "no message for {:?}; reconnect and send a snapshot",
                    self.idle_timeout
                ))),
            },
            _ = shutdown.changed() => Err(Status::unavailable("the aggregator is shutting down; reconnect")),
        }
    }

    async fn session(
        &self,
        mut inbound: Streaming<pb::AgentMessage>,
        tx: &Replies,
    ) -> Result<(), Status> {
        let snapshot = match self.next(&mut inbound).await? {
            Some(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Snapshot(s)),
            }) => s,
            Some(_) => {
                return Err(Status::failed_precondition(
                    "the first message of a report stream must be a snapshot",
                ));
            }
            None => return Ok(()),
        };
        if snapshot.node.is_empty() {
            return Err(Status::invalid_argument("snapshot without a node name"));
        }
        let node = snapshot.node.clone();
        let stream = lock(&self.cluster).open_stream();
        let span = info_span!("node", %node, stream);
        async {
            info!(pods = snapshot.pods.len(), agent = %snapshot.agent_version, "agent connected");
            let result = self.serve(&node, stream, snapshot, &mut inbound, tx).await;
            lock(&self.cluster).disconnect(&node, stream, crate::time::now());
            info!("agent disconnected");
            result
        }
        .instrument(span)
        .await
    }

    async fn serve(
        &self,
        node: &str,
        stream: u64,
        snapshot: pb::NodeSnapshot,
        inbound: &mut Streaming<pb::AgentMessage>,
        tx: &Replies,
    ) -> Result<(), Status> {
        let seq = snapshot.seq;
        let pods = decode(snapshot.pods, node, &self.interner);
        let now = crate::time::now();
        {
            let mut cluster = lock(&self.cluster);
            cluster.replace_node(node, stream, &snapshot.agent_version, pods, now);
            if let Some(c) = snapshot.clock {
                cluster.node_clock(node, stream, wire::clock_reading(c, now), now);
            }
        }
        ack(tx, seq).await?;
        while let Some(msg) = self.next(inbound).await? {
            let now = crate::time::now();
            match msg.kind {
                Some(pb::agent_message::Kind::Snapshot(s)) => {
                    check_node(&s.node, node)?;
                    let seq = s.seq;
                    let pods = decode(s.pods, node, &self.interner);
                    debug!(pods = pods.len(), "snapshot");
                    {
                        let mut cluster = lock(&self.cluster);
                        cluster.replace_node(node, stream, &s.agent_version, pods, now);
                        if let Some(c) = s.clock {
                            cluster.node_clock(node, stream, wire::clock_reading(c, now), now);
                        }
                    }
                    ack(tx, seq).await?;
                }
                Some(pb::agent_message::Kind::Delta(d)) => {
                    check_node(&d.node, node)?;
                    let seq = d.seq;
                    let pods = decode(d.upserted, node, &self.interner);
                    debug!(
                        upserted = pods.len(),
                        removed = d.removed_uids.len(),
                        "delta"
                    );
                    let applied =
                        lock(&self.cluster).apply_delta(node, stream, pods, &d.removed_uids, now);
                    if !applied {
                        return Err(Status::aborted("another stream took over this node"));
                    }
                    ack(tx, seq).await?;
                }
                Some(pb::agent_message::Kind::Heartbeat(h)) => {
                    check_node(&h.node, node)?;
                    let mut cluster = lock(&self.cluster);
                    if !cluster.heartbeat(node, stream, now) {
                        return Err(Status::aborted("another stream took over this node"));
                    }
                    if let Some(c) = h.clock {
                        debug!("clock measurement");
                        cluster.node_clock(node, stream, wire::clock_reading(c, now), now);
                    }
                }
                None => return Err(Status::invalid_argument("empty agent message")),
            }
        }
        Ok(())
    }
}

fn check_node(named: &str, node: &str) -> Result<(), Status> {
    if !named.is_empty() && named != node {
        return Err(Status::invalid_argument(format!(
            "this stream reports node {node:?}; a message named {named:?}"
        )));
    }
    Ok(())
}

/// Decodes pods, dropping (and logging) those that cannot be accepted.
fn decode(
    pods: Vec<pb::PodEvidence>,
    node: &str,
    interner: &Mutex<wire::Interner>,
) -> Vec<PodRecord> {
    let now = crate::time::now();
    let mut interner = interner.lock().unwrap_or_else(|p| p.into_inner());
    pods.into_iter()
        .filter_map(|p| match wire::pod_record(p, node, now, &mut interner) {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(error = %e, "pod evidence refused");
                None
            }
        })
        .collect()
}

async fn ack(tx: &Replies, seq: u64) -> Result<(), Status> {
    let msg = pb::AggregatorMessage {
        kind: Some(pb::aggregator_message::Kind::Ack(pb::Ack { seq })),
    };
    tx.send(Ok(msg))
        .await
        .map_err(|_| Status::cancelled("agent went away"))
}

/// Locks the model; a panic while holding the lock would be a bug, and the data stays usable.
pub fn lock(cluster: &Mutex<Cluster>) -> std::sync::MutexGuard<'_, Cluster> {
    cluster
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
