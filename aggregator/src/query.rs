//! The Query service: the cluster summary, pods with their verdicts and evidence, and nodes.

use crate::analysis::cluster::Settings;
use crate::ingest::lock;
use crate::model::{Cluster, PodEntry};
use crate::time::to_proto;
use crate::wire;
use anchorwatch_proto::v1 as pb;
use std::sync::{Arc, Mutex};
use tonic::{Request, Response, Status};

/// The Query gRPC service.
#[derive(Clone)]
pub struct QueryService {
    cluster: Arc<Mutex<Cluster>>,
    settings: Settings,
    /// Turns true when the aggregator shuts down: watch streams end.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl QueryService {
    /// A service reading `cluster`, analysing it with `settings`.
    pub fn new(
        cluster: Arc<Mutex<Cluster>>,
        settings: Settings,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        QueryService {
            cluster,
            settings,
            shutdown,
        }
    }

    /// The summary now, with the whole-cluster analysis.
    fn summary_now(&self) -> pb::ClusterSummary {
        let mut cluster = lock(&self.cluster);
        let chains_to = cluster.issuer_anchors();
        let report = cluster.report(&self.settings, chrono::Utc::now());
        let s = cluster.summary();
        pb::ClusterSummary {
            bundle: Some(wire::trust_bundle(&cluster.trust)),
            issuer: Some(wire::issuer(&cluster.trust, &chains_to)),
            pods: s.pods as u32,
            verdicts: s
                .verdicts
                .iter()
                .map(|(k, n)| pb::VerdictCount {
                    verdict: wire::verdict_kind(*k) as i32,
                    pods: *n as u32,
                })
                .collect(),
            nodes_reporting: s.nodes_reporting as u32,
            nodes_stale: s.nodes_stale as u32,
            updated_at: Some(to_proto(cluster.updated_at)),
            findings: wire::findings(&report.findings),
            rotation_phase: Some(wire::phase(&report.phase)),
            plan: Some(wire::plan(&report.plan)),
            affected: report.affected.iter().cloned().collect(),
            remote_pods: s.remote_pods as u32,
        }
    }

    /// The tonic service.
    pub fn svc(self) -> pb::query_server::QueryServer<Self> {
        pb::query_server::QueryServer::new(self)
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
enum QueryError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("no meshed pod {0} is reported by any agent")]
    NoSuchPod(String),
    #[error("unknown verdict value {0}")]
    BadVerdict(i32),
}

/// A caller's string, cut short for an error message.
fn clip(s: &str) -> String {
    let shown: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().nth(80).is_some() {
        format!("{shown}…")
    } else {
        shown
    }
}

fn status(e: QueryError) -> Status {
    match e {
        QueryError::Missing(_) | QueryError::BadVerdict(_) => {
            Status::invalid_argument(e.to_string())
        }
        QueryError::NoSuchPod(_) => Status::not_found(e.to_string()),
    }
}

#[tonic::async_trait]
impl pb::query_server::Query for QueryService {
    async fn summary(
        &self,
        _: Request<pb::SummaryRequest>,
    ) -> Result<Response<pb::ClusterSummary>, Status> {
        Ok(Response::new(self.summary_now()))
    }

    type WatchStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::ClusterSummary, Status>> + Send>>;

    async fn watch(
        &self,
        _: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let svc = self.clone();
        tokio::spawn(async move {
            // Sends the summary whenever what it says changes (the timestamp aside); ends when
            // the caller goes away.
            // The analysis runs again only when the model changed, or every 30 s for what time
            // alone changes (an issuer nearing expiry), not on every poll.
            let mut last: Option<pb::ClusterSummary> = None;
            let mut seen: Option<(u64, tokio::time::Instant)> = None;
            let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
            let mut shutdown = svc.shutdown.clone();
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let revision = lock(&svc.cluster).revision();
                if seen.is_some_and(|(r, at)| {
                    r == revision && at.elapsed() < std::time::Duration::from_secs(30)
                }) {
                    if tx.is_closed() {
                        return;
                    }
                    continue;
                }
                seen = Some((revision, tokio::time::Instant::now()));
                let now = svc.summary_now();
                let mut key = now.clone();
                key.updated_at = None;
                if last.as_ref() != Some(&key) {
                    if tx.send(Ok(now)).await.is_err() {
                        return;
                    }
                    last = Some(key);
                } else if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_pods(
        &self,
        request: Request<pb::ListPodsRequest>,
    ) -> Result<Response<pb::ListPodsResponse>, Status> {
        let q = request.into_inner();
        let verdict = match pb::Verdict::try_from(q.verdict) {
            Ok(v) => wire::verdict_from_wire(v),
            Err(_) => return Err(status(QueryError::BadVerdict(q.verdict))),
        };
        let cluster = lock(&self.cluster);
        let wanted = |e: &&PodEntry| {
            (q.namespace.is_empty() || e.record.namespace == q.namespace)
                && (q.node.is_empty() || e.record.node == q.node)
                && verdict.is_none_or(|k| e.analysis.has(k))
                && (!q.only_faulty || e.analysis.verdicts.iter().any(|v| v.kind.is_fault()))
        };
        let mut pods: Vec<&PodEntry> = cluster.pods().filter(wanted).collect();
        let local = pods.len();
        pods.extend(cluster.remote_pods().filter(wanted));
        if pods.len() > local {
            pods.sort_by(|a, b| {
                (&a.record.namespace, &a.record.name).cmp(&(&b.record.namespace, &b.record.name))
            });
        }
        Ok(Response::new(pb::ListPodsResponse {
            pods: pods.into_iter().map(wire::pod_summary).collect(),
        }))
    }

    async fn get_pod(
        &self,
        request: Request<pb::GetPodRequest>,
    ) -> Result<Response<pb::PodDetail>, Status> {
        let q = request.into_inner();
        if q.namespace.is_empty() {
            return Err(status(QueryError::Missing("namespace")));
        }
        if q.name.is_empty() {
            return Err(status(QueryError::Missing("name")));
        }
        let cluster = lock(&self.cluster);
        match cluster.pod(&q.namespace, &q.name) {
            Some(e) => Ok(Response::new(wire::pod_detail(e))),
            None => Err(status(QueryError::NoSuchPod(format!(
                "{}/{}",
                clip(&q.namespace),
                clip(&q.name)
            )))),
        }
    }

    async fn list_nodes(
        &self,
        _: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let cluster = lock(&self.cluster);
        Ok(Response::new(pb::ListNodesResponse {
            nodes: cluster.nodes().map(wire::node_info).collect(),
        }))
    }
}
