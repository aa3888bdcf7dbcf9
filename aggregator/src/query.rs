//! The Query service: the cluster summary, pods with their verdicts and evidence, and nodes.

use crate::analysis::cluster::Settings;
use crate::analysis::logs::LogCorrelation;
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
    /// The last summary, with the model revision and the time it was computed at: the
    /// whole-cluster analysis runs again only when the model changed, or after `SUMMARY_MAX_AGE`
    /// for what time alone changes (an issuer nearing expiry).
    last: Arc<Mutex<Option<Last>>>,
}

/// The last whole-cluster analysis, as served.
#[derive(Clone)]
struct Last {
    /// Model revision it was computed at.
    revision: u64,
    /// When.
    at: tokio::time::Instant,
    /// The summary.
    summary: pb::ClusterSummary,
    /// Every log correlation (the summary holds the first [`SUMMARY_LOG_EVIDENCE`]).
    logs: Arc<Vec<LogCorrelation>>,
    /// The verdicts they confirm, by pod.
    confirmations: Arc<wire::Confirmations>,
}

/// Log correlations the summary carries at most.
const SUMMARY_LOG_EVIDENCE: usize = 50;

/// How long a summary of an unchanged model is served again.
const SUMMARY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

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
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// The summary now, with the whole-cluster analysis (or the last one, when the model has not
    /// changed since and it is recent).
    async fn summary_now(&self) -> pb::ClusterSummary {
        self.analysis_now().await.summary
    }

    /// The last analysis when the model has not changed since and it is recent, else a new one.
    async fn analysis_now(&self) -> Last {
        crate::ingest::with_cluster(&self.cluster, |cluster| self.analysis_of(cluster)).await
    }

    fn analysis_of(&self, cluster: &mut Cluster) -> Last {
        let revision = cluster.revision();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(l) = last.as_ref()
            && l.revision == revision
            && l.at.elapsed() < SUMMARY_MAX_AGE
        {
            return l.clone();
        }
        let (summary, logs) = Self::summarise(cluster, &self.settings);
        let l = Last {
            revision,
            at: tokio::time::Instant::now(),
            summary,
            confirmations: Arc::new(wire::confirmations(&logs)),
            logs: Arc::new(logs),
        };
        *last = Some(l.clone());
        l
    }

    fn summarise(
        cluster: &mut Cluster,
        settings: &Settings,
    ) -> (pb::ClusterSummary, Vec<LogCorrelation>) {
        let chains_to = cluster.issuer_anchors();
        let report = cluster.report(settings, crate::time::now());
        let s = cluster.summary();
        let summary = pb::ClusterSummary {
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
            log_evidence: report
                .logs
                .iter()
                .take(SUMMARY_LOG_EVIDENCE)
                .map(wire::log_correlation)
                .collect(),
            log_evidence_total: report.logs.len() as u32,
        };
        (summary, report.logs)
    }

    /// The tonic service.
    /// The tonic service, answering only while `leadership` says this replica leads (a
    /// standby's model is empty: it would answer wrongly).
    pub fn svc_for(
        self,
        leadership: tokio::sync::watch::Receiver<crate::leader::Leadership>,
    ) -> tonic::service::interceptor::InterceptedService<
        pb::query_server::QueryServer<Self>,
        impl tonic::service::Interceptor + Clone,
    > {
        let server = self.svc();
        tonic::service::interceptor::InterceptedService::new(
            server,
            move |request: tonic::Request<()>| {
                let l = leadership.borrow();
                if l.leader {
                    Ok(request)
                } else {
                    Err(l.refusal())
                }
            },
        )
    }

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
        Ok(Response::new(self.summary_now().await))
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
            // The summary is shared with every caller and recomputed only when the model
            // changed (or it is older than SUMMARY_MAX_AGE), not on every poll.
            let mut last: Option<pb::ClusterSummary> = None;
            let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
            let mut shutdown = svc.shutdown.clone();
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let now = svc.summary_now().await;
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

    async fn clock_report(
        &self,
        request: Request<pb::ClockReportRequest>,
    ) -> Result<Response<pb::ClockReportResponse>, Status> {
        let history = request.into_inner().history.min(10_000) as usize;
        let now = crate::time::now();
        let cluster = lock(&self.cluster);
        let (rows, identity, clock) = cluster.clock_rows(&self.settings, history, now);
        Ok(Response::new(wire::clock_report(
            &rows, identity, &clock, now,
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
        let confirmations = self.analysis_now().await.confirmations;
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
            pods: pods
                .into_iter()
                .map(|e| wire::with_logs(wire::pod_summary(e), &confirmations))
                .collect(),
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
        let analysis = self.analysis_now().await;
        let cluster = lock(&self.cluster);
        match cluster.pod(&q.namespace, &q.name) {
            Some(e) => {
                let mut d = wire::pod_detail(e);
                let key = format!("{}/{}", e.record.namespace, e.record.name);
                d.summary = d
                    .summary
                    .map(|s| wire::with_logs(s, &analysis.confirmations));
                d.log_evidence = analysis
                    .logs
                    .iter()
                    .filter(|c| c.involves(&key))
                    .map(wire::log_correlation)
                    .collect();
                Ok(Response::new(d))
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_plane::{IdentityEvent, IssuerEventKind};
    use crate::trust::{Trust, TrustSources, read_bundle, read_issuer};
    use anchorwatch_tests::pki::{Ca, window};
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn a_model_change_shows_in_the_next_summary_and_repeats_are_served_from_the_last() {
        let root = Ca::root("root.linkerd.cluster.local").unwrap();
        let issuer = root
            .issuer("identity.linkerd.cluster.local", window(-60, 86_400 * 300))
            .unwrap();
        let sources = TrustSources {
            namespace: "linkerd".into(),
            config_map: "linkerd-identity-trust-roots".into(),
            key: "ca-bundle.crt".into(),
            secret: "linkerd-identity-issuer".into(),
        };
        let now = crate::time::now();
        let mut c = Cluster::new(
            Trust::new(sources.clone()),
            std::time::Duration::from_secs(60),
            now,
        );
        let data = BTreeMap::from([("ca-bundle.crt".to_string(), root.cert_pem.clone())]);
        c.set_bundle(read_bundle(Some(&data), &sources), "1".into(), now);
        let secret = BTreeMap::from([("crt.pem".to_string(), issuer.cert_pem.into_bytes())]);
        c.set_issuer(read_issuer(Some(&secret), &sources), now);
        let cluster = Arc::new(Mutex::new(c));
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let svc = QueryService::new(cluster.clone(), Settings::new("linkerd"), shutdown);

        let first = svc.summary_now().await;
        assert!(
            !first
                .findings
                .iter()
                .any(|f| f.verdict == "IDENTITY_STALE_ISSUER")
        );
        let revision = lock(&cluster).revision();
        assert_eq!(svc.summary_now().await, first);
        assert_eq!(lock(&cluster).revision(), revision);

        lock(&cluster).update_control_plane(crate::time::now(), |cp| {
            cp.identity_events.apply(
                "e1",
                IdentityEvent {
                    kind: IssuerEventKind::Skipped,
                    message: "could not be read from disk".into(),
                    at: None,
                },
            )
        });
        let next = svc.summary_now().await;
        assert!(
            next.findings
                .iter()
                .any(|f| f.verdict == "IDENTITY_STALE_ISSUER" && f.detail.contains("from disk")),
            "{:?}",
            next.findings
        );
    }
}
