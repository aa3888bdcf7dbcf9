//! The agent's model of its node: every meshed pod, and what its proxy presented when probed.
//!
//! ```text
//!  pod watch ──apply/remove/replace_all──►  Inventory  ──view()──► NodeView ──► report stream
//!  probes ────────────record()───────────►  (uid → Entry{pod, probe, metrics, logs, revision})
//!  log reader ─────────set_logs()──────────►
//! ```
//! Pure and synchronous: the IO tasks feed it values and ask it what to probe. Every change that
//! the aggregator must learn about bumps the entry's revision; the reporter sends entries whose
//! revision it has not sent yet.

use crate::logs::LogEvidence;
use crate::pod::{DEFAULT_ADMIN_PORT, MeshedPod};
use crate::probe::PresentedChain;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A pod the agent can probe now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// Pod uid.
    pub uid: String,
    /// podIP:adminPort.
    pub addr: SocketAddr,
    /// SNI to send: the proxy's identity name.
    pub server_name: String,
}

/// The last probe of a proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRecord {
    /// When the agent first got this outcome; repeats of the same outcome keep it.
    pub since: DateTime<Utc>,
    /// The address probed, when one was.
    pub address: Option<SocketAddr>,
    /// What happened.
    pub outcome: ProbeOutcome,
}

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The proxy presented a chain.
    Chain(PresentedChain),
    /// The handshake failed: machine-readable kind and detail.
    Failed {
        /// e.g. `timeout`, `closed_before_server_hello`, `alert`.
        kind: String,
        /// Human-readable detail.
        detail: String,
    },
    /// Not probed, and why.
    Skipped(String),
}

/// The identity certificate expiry read from the proxy's metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsRecord {
    /// Found under this metric name.
    Expiry {
        /// Metric name.
        metric: String,
        /// Value.
        expires_at: DateTime<Utc>,
    },
    /// Not read, and why.
    Unavailable(String),
}

/// Everything the agent knows about one meshed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEvidence {
    /// From the API.
    pub pod: MeshedPod,
    /// From the last probe; `None` until the first one finished.
    pub probe: Option<ProbeRecord>,
    /// From the last metrics read; `None` until the first one.
    pub metrics: Option<MetricsRecord>,
    /// What the proxy's logs on the node say; `None` until the log reader first read them (or
    /// when it does not run).
    pub logs: Option<Arc<LogEvidence>>,
}

/// An immutable view of the node for the reporter.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// uid → (revision, evidence). A revision never repeats within the agent's lifetime.
    pub pods: BTreeMap<String, (u64, Arc<PodEvidence>)>,
}

#[derive(Debug)]
struct Entry {
    evidence: Arc<PodEvidence>,
    revision: u64,
}

/// The meshed pods of this node and their evidence.
#[derive(Debug)]
pub struct Inventory {
    /// Admin port used when a proxy's env does not name one, or always when `force_port`.
    admin_port: u16,
    force_port: bool,
    /// uid → entry; written by the pod watch (apply/remove) and probes (record).
    pods: BTreeMap<String, Entry>,
    /// Last revision handed out; increases on every change.
    revision: u64,
}

impl Inventory {
    /// An empty inventory. With `admin_port` set, every proxy is probed on that port; otherwise
    /// on the port of its `LINKERD2_PROXY_ADMIN_LISTEN_ADDR`, else 4191.
    pub fn new(admin_port: Option<u16>) -> Self {
        Inventory {
            admin_port: admin_port.unwrap_or(DEFAULT_ADMIN_PORT),
            force_port: admin_port.is_some(),
            pods: BTreeMap::new(),
            revision: 0,
        }
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    /// Adds or updates a pod. Returns the target to probe now when the pod is new or something a
    /// probe depends on changed (address, identity name, proxy restart), else `None`.
    pub fn apply(&mut self, pod: MeshedPod, now: DateTime<Utc>) -> Option<ProbeTarget> {
        let uid = pod.uid.clone();
        let plan = self.plan(&pod);
        let logs = self.pods.get(&uid).and_then(|e| e.evidence.logs.clone());
        let (probe, metrics, reprobe) = match self.pods.get(&uid) {
            Some(e) if e.evidence.pod == pod => return None,
            Some(e) => {
                let old = &e.evidence.pod;
                let reprobe = old.pod_ip != pod.pod_ip
                    || old.identity_name != pod.identity_name
                    || old.proxy.started_at != pod.proxy.started_at
                    || old.proxy.restart_count != pod.proxy.restart_count
                    || old.proxy.running != pod.proxy.running;
                (
                    e.evidence.probe.clone(),
                    e.evidence.metrics.clone(),
                    reprobe,
                )
            }
            None => (None, None, true),
        };
        let probe = match &plan {
            Err(reason) => Some(skipped(reason, probe.as_ref(), now)),
            Ok(_) => probe.filter(|p| !matches!(p.outcome, ProbeOutcome::Skipped(_))),
        };
        let revision = self.next_revision();
        self.pods.insert(
            uid,
            Entry {
                evidence: Arc::new(PodEvidence {
                    pod,
                    probe,
                    metrics,
                    logs,
                }),
                revision,
            },
        );
        plan.ok().filter(|_| reprobe)
    }

    /// Forgets a pod. Returns whether it was known.
    pub fn remove(&mut self, uid: &str) -> bool {
        self.pods.remove(uid).is_some()
    }

    /// Replaces the whole set after the pod watch (re)listed: pods not in `pods` are forgotten.
    /// Returns what to probe now.
    pub fn replace_all(&mut self, pods: Vec<MeshedPod>, now: DateTime<Utc>) -> Vec<ProbeTarget> {
        let keep: std::collections::BTreeSet<String> = pods.iter().map(|p| p.uid.clone()).collect();
        self.pods.retain(|uid, _| keep.contains(uid));
        pods.into_iter()
            .filter_map(|p| self.apply(p, now))
            .collect()
    }

    /// Records a probe result for a pod still known; returns whether the evidence changed.
    pub fn record(
        &mut self,
        uid: &str,
        address: SocketAddr,
        outcome: ProbeOutcome,
        metrics: Option<MetricsRecord>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(entry) = self.pods.get(uid) else {
            return false;
        };
        let old = &entry.evidence;
        let same_probe = old
            .probe
            .as_ref()
            .is_some_and(|p| p.outcome == outcome && p.address == Some(address));
        let metrics = metrics.or_else(|| old.metrics.clone());
        if same_probe && metrics == old.metrics {
            return false;
        }
        let probe = if same_probe {
            old.probe.clone()
        } else {
            Some(ProbeRecord {
                since: now,
                address: Some(address),
                outcome,
            })
        };
        let evidence = Arc::new(PodEvidence {
            pod: old.pod.clone(),
            probe,
            metrics,
            logs: old.logs.clone(),
        });
        let revision = self.next_revision();
        self.pods
            .insert(uid.to_string(), Entry { evidence, revision });
        true
    }

    /// Records what a pod's logs say, for a pod still known; returns whether the evidence
    /// changed.
    pub fn set_logs(&mut self, uid: &str, logs: LogEvidence) -> bool {
        let Some(entry) = self.pods.get(uid) else {
            return false;
        };
        if entry.evidence.logs.as_deref() == Some(&logs) {
            return false;
        }
        let evidence = Arc::new(PodEvidence {
            logs: Some(Arc::new(logs)),
            ..(*entry.evidence).clone()
        });
        let revision = self.next_revision();
        self.pods
            .insert(uid.to_string(), Entry { evidence, revision });
        true
    }

    /// Every pod that can be probed now.
    pub fn targets(&self) -> Vec<ProbeTarget> {
        self.pods
            .values()
            .filter_map(|e| self.plan(&e.evidence.pod).ok())
            .collect()
    }

    /// The target for one pod, if it can be probed.
    pub fn target(&self, uid: &str) -> Option<ProbeTarget> {
        self.pods
            .get(uid)
            .and_then(|e| self.plan(&e.evidence.pod).ok())
    }

    /// Number of meshed pods known.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether no meshed pod is known.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// An immutable view for the reporter.
    pub fn view(&self) -> NodeView {
        NodeView {
            pods: self
                .pods
                .iter()
                .map(|(uid, e)| (uid.clone(), (e.revision, e.evidence.clone())))
                .collect(),
        }
    }

    fn plan(&self, pod: &MeshedPod) -> Result<ProbeTarget, String> {
        if pod.proxy.identity_disabled {
            return Err("identity is disabled on this proxy".into());
        }
        if matches!(pod.phase.as_str(), "Succeeded" | "Failed") {
            return Err(format!("pod phase is {}", pod.phase));
        }
        if pod.proxy.running == Some(false) {
            return Err("proxy container is not running".into());
        }
        let Some(ip) = pod.pod_ip else {
            return Err("pod has no IP address yet".into());
        };
        let Some(name) = pod.identity_name.clone() else {
            return Err("no identity name in the proxy's spec".into());
        };
        if name.contains("$(") {
            return Err(format!(
                "identity name {name:?} has an unresolved reference"
            ));
        }
        let port = if self.force_port {
            self.admin_port
        } else {
            pod.proxy.admin_port.unwrap_or(self.admin_port)
        };
        Ok(ProbeTarget {
            uid: pod.uid.clone(),
            addr: SocketAddr::new(ip, port),
            server_name: name,
        })
    }
}

fn skipped(reason: &str, old: Option<&ProbeRecord>, now: DateTime<Utc>) -> ProbeRecord {
    let outcome = ProbeOutcome::Skipped(reason.to_string());
    match old {
        Some(p) if p.outcome == outcome => p.clone(),
        _ => ProbeRecord {
            since: now,
            address: None,
            outcome,
        },
    }
}

#[cfg(test)]
mod tests;
