//! The Ingest service: one bidirectional stream per agent. With authentication on, the stream's
//! token binds it to the node its agent pod runs on ([`crate::auth`]); the first message must be
//! a snapshot of that node. Snapshots replace the node's pods, deltas update them, heartbeats
//! keep the node fresh; when the stream ends the node turns stale (never healthy). Pods the API
//! does not place on the stream's node are dropped and counted.

use crate::auth::{Agent, Authenticator, NodePods};
use crate::model::{Cluster, PodRecord, ProbeEvidence};
use crate::verify::{Proven, Prover};
use crate::wire;
use anchorwatch_proto::v1 as pb;
use std::pin::Pin;
use std::sync::atomic::Ordering;
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
    /// Checks agents' tokens; `None` accepts anyone (development only).
    auth: Option<Arc<Authenticator>>,
    /// Streams are served only while this replica leads.
    leadership: tokio::sync::watch::Receiver<crate::leader::Leadership>,
    /// Limits on what one stream may send.
    limits: Limits,
    /// First snapshots read and applied at once. When thousands of agents reconnect together
    /// (a failover), the others wait unread — their bytes held back by HTTP/2 flow control — so
    /// memory holds a few decoded snapshots, not thousands.
    first_snapshots: Arc<tokio::sync::Semaphore>,
    /// Checks the signatures of reported chains before the model is locked.
    prover: Prover,
}

/// First snapshots decoded and applied at a time.
const FIRST_SNAPSHOT_CONCURRENCY: usize = 8;

/// Once a stream's turn has come, how long its first snapshot may take to arrive.
const FIRST_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds on one agent stream.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest message accepted, bytes.
    pub max_message_bytes: usize,
    /// Most pods one node may hold.
    pub max_pods_per_node: usize,
    /// Longest wait for the agent to take a reply before the stream is closed.
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 * 1024 * 1024,
            max_pods_per_node: 1_000,
            send_timeout: Duration::from_secs(10),
        }
    }
}

impl IngestService {
    /// A service writing into `cluster`. A stream silent for `idle_timeout` is closed; every
    /// stream ends when `shutdown` turns true.
    pub fn new(
        cluster: Arc<Mutex<Cluster>>,
        idle_timeout: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let prover = lock(&cluster).prover();
        IngestService {
            cluster,
            prover,
            idle_timeout,
            shutdown,
            interner: Arc::default(),
            auth: None,
            leadership: tokio::sync::watch::Sender::new(crate::leader::Leadership::sole(""))
                .subscribe(),
            limits: Limits::default(),
            first_snapshots: Arc::new(tokio::sync::Semaphore::new(FIRST_SNAPSHOT_CONCURRENCY)),
        }
    }

    /// Bounds streams by `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves streams only while `leadership` says this replica leads, and ends them when it
    /// stops leading (agents then reconnect, through the Service, to the new leader).
    pub fn with_leadership(
        mut self,
        leadership: tokio::sync::watch::Receiver<crate::leader::Leadership>,
    ) -> Self {
        self.leadership = leadership;
        self
    }

    /// Requires every stream to authenticate with `auth`.
    pub fn with_auth(mut self, auth: Arc<Authenticator>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The tonic service.
    pub fn svc(self) -> pb::ingest_server::IngestServer<Self> {
        let max = self.limits.max_message_bytes;
        pb::ingest_server::IngestServer::new(self).max_decoding_message_size(max)
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
        {
            let l = self.leadership.borrow();
            if !l.leader {
                return Err(l.refusal());
            }
        }
        let agent = match &self.auth {
            Some(auth) => match auth.authenticate(request.metadata()).await {
                Ok(agent) => Some(agent),
                Err(rejection) => {
                    warn!(%peer, reason = rejection.reason(), error = %rejection, "agent stream refused");
                    return Err(rejection.status());
                }
            },
            None => None,
        };
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        let svc = self.clone();
        tokio::spawn(
            async move {
                if let Err(status) = svc.session(inbound, &tx, agent).await {
                    warn!(code = ?status.code(), message = status.message(), "agent stream ended with an error");
                    // An agent that does not read gets no status: the stream just ends.
                    let _ = tx.try_send(Err(status));
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
        expires: Option<tokio::time::Instant>,
    ) -> Result<Option<pb::AgentMessage>, Status> {
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow_and_update() {
            return Err(Status::unavailable(
                "the aggregator is shutting down; reconnect",
            ));
        }
        let mut leadership = self.leadership.clone();
        if !leadership.borrow_and_update().leader {
            return Err(Status::unavailable(
                "this aggregator replica stopped leading; reconnect",
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
            _ = stops_leading(&mut leadership) => Err(Status::unavailable(
                "this aggregator replica stopped leading; reconnect",
            )),
            _ = until(expires) => Err(Status::unauthenticated(
                "the stream's token expired; reconnect with the fresh one",
            )),
        }
    }

    async fn session(
        &self,
        mut inbound: Streaming<pb::AgentMessage>,
        tx: &Replies,
        agent: Option<Agent>,
    ) -> Result<(), Status> {
        let expires = agent.as_ref().and_then(|a| a.expires_at).map(|at| {
            let left = (at - crate::time::now()).to_std().unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        let turn = self
            .first_snapshots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the aggregator is shutting down; reconnect"))?;
        let deadline = tokio::time::Instant::now() + FIRST_SNAPSHOT_TIMEOUT;
        let late = || {
            Status::deadline_exceeded(format!(
                "no whole snapshot within {FIRST_SNAPSHOT_TIMEOUT:?} of the stream's turn"
            ))
        };
        let first = tokio::time::timeout_at(deadline, self.next(&mut inbound, expires))
            .await
            .map_err(|_| late())?;
        let snapshot = match first? {
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
        if let (Some(agent), Some(auth)) = (&agent, &self.auth)
            && snapshot.node != agent.node
        {
            auth.counters.wrong_node.fetch_add(1, Ordering::Relaxed);
            return Err(Status::permission_denied(format!(
                "this agent's pod {} runs on node {}; it may not report node {:?}",
                agent.pod, agent.node, snapshot.node
            )));
        }
        let snapshot = tokio::time::timeout_at(
            deadline,
            self.rest_of_snapshot(snapshot, &mut inbound, expires),
        )
        .await
        .map_err(|_| late())??;
        let node = snapshot.node.clone();
        let stream = with_cluster(&self.cluster, |c| c.open_stream()).await;
        let span = info_span!("node", %node, stream);
        async {
            info!(pods = snapshot.pods.len(), agent = %snapshot.agent_version, "agent connected");
            let mut session = Session {
                node: &node,
                stream,
                expires,
                pods: agent.as_ref().map(|_| NodePods::new(POD_LIST_REFRESH)),
            };
            let result = self
                .serve(&mut session, snapshot, turn, &mut inbound, tx)
                .await;
            with_cluster(&self.cluster, |c| {
                c.disconnect(&node, stream, crate::time::now())
            })
            .await;
            info!("agent disconnected");
            result
        }
        .instrument(span)
        .await
    }

    async fn serve(
        &self,
        session: &mut Session<'_>,
        snapshot: pb::NodeSnapshot,
        turn: tokio::sync::OwnedSemaphorePermit,
        inbound: &mut Streaming<pb::AgentMessage>,
        tx: &Replies,
    ) -> Result<(), Status> {
        let (node, stream) = (session.node, session.stream);
        self.check_pods(snapshot.pods.len())?;
        let seq = snapshot.seq;
        let pods = self.confirm(session, snapshot.pods).await;
        let pods = decode(pods, node, &self.interner, &self.prover);
        let now = crate::time::now();
        with_cluster(&self.cluster, |cluster| {
            cluster.learn(pods.proven);
            cluster.replace_node(node, stream, &snapshot.agent_version, pods.records, now);
            if let Some(c) = snapshot.clock {
                cluster.node_clock(node, stream, wire::clock_reading(c, now), now);
            }
        })
        .await;
        drop(turn);
        self.ack(tx, seq).await?;
        while let Some(msg) = self.next(inbound, session.expires).await? {
            let now = crate::time::now();
            match msg.kind {
                Some(pb::agent_message::Kind::Snapshot(s)) => {
                    check_node(&s.node, node)?;
                    let s = self.rest_of_snapshot(s, inbound, session.expires).await?;
                    let seq = s.seq;
                    let pods = self.confirm(session, s.pods).await;
                    let pods = decode(pods, node, &self.interner, &self.prover);
                    debug!(pods = pods.records.len(), "snapshot");
                    with_cluster(&self.cluster, |cluster| {
                        cluster.learn(pods.proven);
                        cluster.replace_node(node, stream, &s.agent_version, pods.records, now);
                        if let Some(c) = s.clock {
                            cluster.node_clock(node, stream, wire::clock_reading(c, now), now);
                        }
                    })
                    .await;
                    self.ack(tx, seq).await?;
                }
                Some(pb::agent_message::Kind::Delta(d)) => {
                    check_node(&d.node, node)?;
                    let after = with_cluster(&self.cluster, |c| {
                        c.pods_after_delta(
                            node,
                            d.upserted
                                .iter()
                                .map(|p| p.pod.as_ref().map_or("", |r| r.uid.as_str())),
                            &d.removed_uids,
                        )
                    })
                    .await;
                    self.check_pods(after)?;
                    let seq = d.seq;
                    let pods = self.confirm(session, d.upserted).await;
                    let pods = decode(pods, node, &self.interner, &self.prover);
                    debug!(
                        upserted = pods.records.len(),
                        removed = d.removed_uids.len(),
                        "delta"
                    );
                    let applied = with_cluster(&self.cluster, |c| {
                        c.learn(pods.proven);
                        c.apply_delta(node, stream, pods.records, &d.removed_uids, now)
                    })
                    .await;
                    if !applied {
                        return Err(Status::aborted("another stream took over this node"));
                    }
                    self.ack(tx, seq).await?;
                }
                Some(pb::agent_message::Kind::Heartbeat(h)) => {
                    check_node(&h.node, node)?;
                    let alive = with_cluster(&self.cluster, |cluster| {
                        let alive = cluster.heartbeat(node, stream, now);
                        if let (true, Some(c)) = (alive, h.clock) {
                            debug!("clock measurement");
                            cluster.node_clock(node, stream, wire::clock_reading(c, now), now);
                        }
                        alive
                    })
                    .await;
                    if !alive {
                        return Err(Status::aborted("another stream took over this node"));
                    }
                }
                None => return Err(Status::invalid_argument("empty agent message")),
            }
        }
        Ok(())
    }

    /// The whole snapshot that `first` begins: when it `continues`, the pods of the parts that
    /// follow, up to the last, whose `seq` and clock the result takes. Nothing is applied until
    /// then; any other message between the parts ends the stream.
    async fn rest_of_snapshot(
        &self,
        mut whole: pb::NodeSnapshot,
        inbound: &mut Streaming<pb::AgentMessage>,
        expires: Option<tokio::time::Instant>,
    ) -> Result<pb::NodeSnapshot, Status> {
        self.check_pods(whole.pods.len())?;
        while whole.continues {
            let part = match self.next(inbound, expires).await? {
                Some(pb::AgentMessage {
                    kind: Some(pb::agent_message::Kind::Snapshot(part)),
                }) => part,
                Some(_) => {
                    return Err(Status::failed_precondition(
                        "a snapshot sent in parts was interrupted by another message; nothing of it was applied",
                    ));
                }
                None => {
                    return Err(Status::cancelled(
                        "the stream ended in the middle of a snapshot; nothing of it was applied",
                    ));
                }
            };
            if part.node != whole.node {
                return Err(Status::invalid_argument(format!(
                    "a part of the snapshot of node {:?} names node {:?}",
                    whole.node, part.node
                )));
            }
            self.check_pods(whole.pods.len() + part.pods.len())?;
            whole.pods.extend(part.pods);
            whole.seq = part.seq;
            whole.sent_at = part.sent_at.or(whole.sent_at);
            whole.clock = part.clock.or(whole.clock);
            whole.continues = part.continues;
        }
        Ok(whole)
    }

    fn check_pods(&self, n: usize) -> Result<(), Status> {
        if n > self.limits.max_pods_per_node {
            return Err(Status::resource_exhausted(format!(
                "{n} pods on one node; at most {} are accepted (--max-pods-per-node)",
                self.limits.max_pods_per_node
            )));
        }
        Ok(())
    }

    /// Acknowledges `seq`; an agent that takes no reply within the send timeout (it does not
    /// read its stream) has the stream closed.
    async fn ack(&self, tx: &Replies, seq: u64) -> Result<(), Status> {
        let msg = pb::AggregatorMessage {
            kind: Some(pb::aggregator_message::Kind::Ack(pb::Ack { seq })),
        };
        match tokio::time::timeout(self.limits.send_timeout, tx.send(Ok(msg))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Status::cancelled("agent went away")),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the agent took no reply for {:?}: it does not read its stream",
                self.limits.send_timeout
            ))),
        }
    }

    /// The pods the API places on the session's node; the others are dropped, logged and
    /// counted. Without authentication every pod passes.
    async fn confirm(
        &self,
        session: &mut Session<'_>,
        pods: Vec<pb::PodEvidence>,
    ) -> Vec<pb::PodEvidence> {
        let (Some(auth), Some(known)) = (&self.auth, session.pods.as_mut()) else {
            return pods;
        };
        let uid = |p: &pb::PodEvidence| p.pod.as_ref().map(|r| r.uid.clone()).unwrap_or_default();
        let now = std::time::Instant::now();
        if pods.iter().any(|p| !known.contains(&uid(p))) && known.may_refresh(now) {
            match auth.pods_on(session.node).await {
                Ok(uids) => known.replace(uids, now),
                Err(e) => warn!(error = %e, "cannot list the node's pods to confirm a report"),
            }
        }
        let (mine, foreign): (Vec<_>, Vec<_>) =
            pods.into_iter().partition(|p| known.contains(&uid(p)));
        for p in &foreign {
            auth.counters.foreign_pods.fetch_add(1, Ordering::Relaxed);
            let r = p.pod.clone().unwrap_or_default();
            warn!(pod = %format!("{}/{}", r.namespace, r.name), uid = %r.uid,
                "report about a pod the API does not place on this node: dropped");
        }
        mine
    }
}

/// How often a stream may re-list its node's pods when an unknown pod is reported.
const POD_LIST_REFRESH: Duration = Duration::from_secs(5);

/// One authenticated (or not) stream's state.
struct Session<'a> {
    node: &'a str,
    stream: u64,
    /// When the token expires.
    expires: Option<tokio::time::Instant>,
    /// The node's pods per the API; `None` without authentication.
    pods: Option<NodePods>,
}

/// Returns when this replica stops leading; never if nobody publishes leadership any more.
async fn stops_leading(leadership: &mut tokio::sync::watch::Receiver<crate::leader::Leadership>) {
    if leadership.wait_for(|l| !l.leader).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sleeps until `at`, forever when `None`.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
/// The pods of `pods` that decode, and the signature facts their chains need, checked here,
/// before the model is locked (see [`Prover`]).
fn decode(
    pods: Vec<pb::PodEvidence>,
    node: &str,
    interner: &Mutex<wire::Interner>,
    prover: &Prover,
) -> Decoded {
    let now = crate::time::now();
    let records: Vec<PodRecord> = {
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
    };
    let proven = records
        .iter()
        .filter_map(|r| match &r.probe {
            ProbeEvidence::Chain(c) if !c.leaf_unreadable => Some(prover.leaf_facts(&c.certs)),
            _ => None,
        })
        .flatten()
        .collect();
    Decoded { records, proven }
}

/// Decoded pods, with facts for the model's verifier.
struct Decoded {
    records: Vec<PodRecord>,
    proven: Vec<Proven>,
}

/// Runs `f` on the locked model, off the async worker threads when the runtime has several:
/// a bundle change or a tick re-judges every pod (most of a second at 550,000 pods), and a
/// worker blocked that long, or waiting that long for the lock, answers no HTTP/2 PING, so
/// 5,000 agents' connections time out and reconnect at once.
///
/// Callers take turns first, as tasks: each call that waited for the lock inside
/// `block_in_place` held a thread, and 5,000 agents' heartbeats behind one long analysis grew
/// the runtime to its 512 blocking threads (and glibc to as many arenas as it allows).
pub async fn with_cluster<R>(cluster: &Mutex<Cluster>, f: impl FnOnce(&mut Cluster) -> R) -> R {
    // Never closed, so acquiring cannot fail; the turn ends when `_turn` drops.
    let _turn = TURNS.acquire().await;
    with_cluster_blocking(cluster, f)
}

/// [`with_cluster`] for synchronous callers (the trust watches' callbacks, a few calls an
/// hour): waits for the lock on a thread of its own, without taking a turn.
pub fn with_cluster_blocking<R>(cluster: &Mutex<Cluster>, f: impl FnOnce(&mut Cluster) -> R) -> R {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| f(&mut lock(cluster)))
    } else {
        f(&mut lock(cluster))
    }
}

/// One [`with_cluster`] at a time in the process (there is one model; tests that build several
/// only take turns), in arrival order.
static TURNS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Locks the model; a panic while holding the lock would be a bug, and the data stays usable.
pub fn lock(cluster: &Mutex<Cluster>) -> std::sync::MutexGuard<'_, Cluster> {
    cluster
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
