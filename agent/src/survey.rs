//! The agent's survey of its node: follows the pods on the node through the Kubernetes API,
//! probes each meshed proxy (on change and every round), and publishes the node's view for the
//! reporter. One task owns the [`Inventory`]; probes run in their own tasks, bounded by a
//! semaphore, and send their results back on a channel, as the log reader sends what the
//! proxies' logs say.

use crate::inventory::{Inventory, MetricsRecord, NodeView, ProbeOutcome, ProbeTarget};
use crate::pod::meshed_pod;
use crate::probe::{Prober, scrape_cert_expiry};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

/// How the survey probes.
#[derive(Clone, Debug)]
pub struct SurveyConfig {
    /// This node's name.
    pub node: String,
    /// Admin port override; `None` = the proxy's own, else 4191.
    pub admin_port: Option<u16>,
    /// Interval between full probe rounds.
    pub interval: Duration,
    /// Bound on one probe (TLS) and on one metrics read.
    pub timeout: Duration,
    /// Probes in flight at most.
    pub concurrency: usize,
    /// Whether to read the proxies' identity expiry gauge.
    pub metrics: bool,
}

struct ProbeDone {
    uid: String,
    addr: SocketAddr,
    outcome: ProbeOutcome,
    metrics: Option<MetricsRecord>,
}

/// Runs until the pod watch ends for good (it retries with backoff on errors).
pub async fn run(
    client: kube::Client,
    cfg: SurveyConfig,
    prober: Prober,
    view: watch::Sender<Arc<NodeView>>,
    mut logs: mpsc::Receiver<crate::logs::LogBatch>,
) -> anyhow::Result<()> {
    let api: kube::Api<Pod> = kube::Api::all(client);
    let selector = format!("spec.nodeName={}", cfg.node);
    let mut pods = watcher(api, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut inventory = Inventory::new(cfg.admin_port);
    let (done_tx, mut done_rx) = mpsc::channel::<ProbeDone>(cfg.concurrency.max(1) * 2);
    let limit = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut round = tokio::time::interval(cfg.interval);
    round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut relist: Option<Vec<crate::pod::MeshedPod>> = None;
    // The probe round in progress: when it started and the pods it still waits for.
    let mut round_pending: Option<(tokio::time::Instant, HashSet<String>)> = None;

    let start = |t: ProbeTarget, in_flight: &mut HashSet<String>| {
        if !in_flight.insert(t.uid.clone()) {
            return;
        }
        let (prober, limit, done, metrics) =
            (prober.clone(), limit.clone(), done_tx.clone(), cfg.metrics);
        let span = info_span!("probe", uid = %t.uid, addr = %t.addr);
        tokio::spawn(
            async move {
                let Ok(_permit) = limit.acquire_owned().await else {
                    return;
                };
                let outcome = match prober.probe_chain(t.addr, &t.server_name).await {
                    Ok(chain) => ProbeOutcome::Chain(chain),
                    Err(e) => ProbeOutcome::Failed {
                        kind: e.kind().to_string(),
                        detail: e.to_string(),
                    },
                };
                debug!(?outcome, "probed");
                let metrics = if metrics {
                    Some(match scrape_cert_expiry(t.addr, prober.timeout()).await {
                        Ok(m) => MetricsRecord::Expiry {
                            metric: m.metric,
                            expires_at: m.expires_at,
                        },
                        Err(e) => MetricsRecord::Unavailable(e.to_string()),
                    })
                } else {
                    None
                };
                let _ = done
                    .send(ProbeDone {
                        uid: t.uid,
                        addr: t.addr,
                        outcome,
                        metrics,
                    })
                    .await;
            }
            .instrument(span),
        );
    };

    info!(node = %cfg.node, "watching pods on this node");
    loop {
        let now = crate::time::now();
        let changed = tokio::select! {
            event = pods.next() => match event {
                Some(Ok(watcher::Event::Apply(pod))) => match meshed_pod(&pod) {
                    Some(m) => {
                        debug!(pod = %m.name, namespace = %m.namespace, "pod changed");
                        if let Some(t) = inventory.apply(m, now) { start(t, &mut in_flight); }
                        true
                    }
                    None => pod.metadata.uid.as_deref().is_some_and(|uid| inventory.remove(uid)),
                },
                Some(Ok(watcher::Event::Delete(pod))) => {
                    let uid = pod.metadata.uid.unwrap_or_default();
                    if let Some((_, pending)) = round_pending.as_mut() { pending.remove(&uid); }
                    inventory.remove(&uid)
                }
                Some(Ok(watcher::Event::Init)) => { relist = Some(Vec::new()); false }
                Some(Ok(watcher::Event::InitApply(pod))) => {
                    if let (Some(list), Some(m)) = (relist.as_mut(), meshed_pod(&pod)) { list.push(m); }
                    false
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    let listed = relist.take().unwrap_or_default();
                    info!(meshed = listed.len(), "pods on this node listed");
                    let targets = inventory.replace_all(listed, now);
                    if !targets.is_empty() && round_pending.is_none() {
                        round_pending = Some((tokio::time::Instant::now(), targets.iter().map(|t| t.uid.clone()).collect()));
                    }
                    for t in targets { start(t, &mut in_flight); }
                    true
                }
                Some(Err(e)) => { warn!(error = %e, "pod watch failed; retrying"); false }
                None => anyhow::bail!("the pod watch ended"),
            },
            Some(done) = done_rx.recv() => {
                in_flight.remove(&done.uid);
                if let Some((started, pending)) = round_pending.as_mut()
                    && pending.remove(&done.uid)
                    && pending.is_empty()
                {
                    info!(pods = inventory.len(), elapsed_ms = started.elapsed().as_millis() as u64, "probe round complete");
                    round_pending = None;
                }
                inventory.record(&done.uid, done.addr, done.outcome, done.metrics, now)
            }
            Some(batch) = logs.recv() => {
                let mut changed = false;
                for (uid, evidence) in batch {
                    changed |= inventory.set_logs(&uid, evidence);
                }
                changed
            }
            _ = round.tick() => {
                let targets = inventory.targets();
                debug!(pods = targets.len(), "probe round");
                if let Some((_, pending)) = round_pending.take() {
                    warn!(unfinished = pending.len(), "previous probe round still running; probes are slower than the interval");
                }
                if !targets.is_empty() {
                    round_pending = Some((tokio::time::Instant::now(), targets.iter().map(|t| t.uid.clone()).collect()));
                }
                for t in targets { start(t, &mut in_flight); }
                false
            }
        };
        if changed {
            view.send_replace(Arc::new(inventory.view()));
        }
    }
}
