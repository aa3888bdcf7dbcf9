//! The aggregator's cluster model: what each node's agent reported, the trust configuration,
//! and the verdicts derived from them.
//!
//! ```text
//!   agent streams ──replace_node / apply_delta / heartbeat / disconnect──┐
//!   trust watch ───────────set_bundle / set_issuer──────────────────────┤
//!   clock ─────────────────────────tick──────────────────────────────────┤
//!                                                                        ▼
//!   Cluster { nodes: name → NodeRecord, pods: uid → PodEntry{record, basis, analysis},
//!             trust, verifier, judge }
//!                                                                        │
//!   query service ◄──────────────── summary / pods / pod ◄───────────────┘
//! ```
//! Pure and synchronous; the gRPC and kube tasks hold it behind a mutex and call it with `now`.
//! A pod's analysis is recomputed when its evidence changes, for every pod when the trust
//! configuration changes, and on `tick` (time passes: expiry, stale nodes). Its `basis` (what the
//! evidence fixes) is computed with each report; re-judging takes the rest from the `judge`'s
//! memo, shared by the pods judged alike (`analysis::Judge`).

use crate::analysis::cluster::{
    ClusterInput, IdentityInput, NodeClock, PodInput, Report, Settings, Workload, analyse,
};
use crate::analysis::{Judge, PodAnalysis, PodBasis, VerdictKind};
use crate::trust::{BundleState, IssuerState, Trust};
use crate::verify::{ParsedCert, PemBundle, Verifier};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// A pod's evidence as received from its agent, with certificates parsed.
#[derive(Clone, Debug)]
pub struct PodRecord {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid (the key).
    pub uid: String,
    /// Node it runs on.
    pub node: String,
    /// Service account.
    pub service_account: String,
    /// Owners as `Kind/name`, the controller first.
    pub owners: Vec<String>,
    /// The `pod-template-hash` label, when set.
    pub pod_template_hash: String,
    /// Pod IP, as reported.
    pub pod_ip: String,
    /// Pod phase.
    pub phase: String,
    /// Proxy version.
    pub proxy_version: String,
    /// When the proxy container started.
    pub proxy_started_at: Option<DateTime<Utc>>,
    /// The proxy's identity name.
    pub identity_name: Option<String>,
    /// The proxy's spec trust anchors.
    pub spec_anchors: SpecAnchorsEvidence,
    /// The last probe.
    pub probe: ProbeEvidence,
    /// When the probe outcome was first seen (agent clock).
    pub probed_at: Option<DateTime<Utc>>,
    /// The address probed.
    pub probe_address: String,
    /// The expiry gauge from the proxy's metrics.
    pub metrics_cert_expiry: Option<DateTime<Utc>>,
    /// Problems reported by the agent or found decoding the evidence.
    pub problems: Vec<String>,
    /// When the aggregator received this evidence.
    pub reported_at: DateTime<Utc>,
}

/// Where a pod's trust anchors come from.
#[derive(Clone, Debug)]
pub enum SpecAnchorsEvidence {
    /// Literal PEM, parsed.
    Pem(Arc<PemBundle>),
    /// From a ConfigMap at container start.
    ConfigMap {
        /// ConfigMap name.
        name: String,
        /// Key.
        key: String,
    },
    /// None in the spec; why.
    Missing(String),
}

/// The presented chain, parsed.
#[derive(Clone, Debug, Default)]
pub struct ChainEvidence {
    /// Certificates that parsed, in presented order.
    pub certs: Vec<Arc<ParsedCert>>,
    /// Certificates that did not parse: position and error.
    pub unreadable: Vec<String>,
    /// The first presented certificate did not parse: the chain cannot be judged.
    pub leaf_unreadable: bool,
}

/// What the last probe found.
#[derive(Clone, Debug)]
pub enum ProbeEvidence {
    /// Not probed yet.
    None,
    /// A chain.
    Chain(ChainEvidence),
    /// A failure: kind and detail.
    Failed {
        /// Machine-readable kind.
        kind: String,
        /// Detail.
        detail: String,
    },
    /// Skipped by the agent; why.
    Skipped(String),
}

/// One node and its agent.
#[derive(Clone, Debug)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// Id of the stream that owns the node; 0 when none is open.
    pub stream: u64,
    /// Last message from the agent.
    pub last_report_at: DateTime<Utc>,
    /// The agent's version.
    pub agent_version: String,
    /// Uids of its pods.
    pub pods: BTreeSet<String>,
    /// No stream, or no message for longer than the stale timeout; set by `tick`.
    pub stale: bool,
}

/// A pod and its analysis.
#[derive(Clone, Debug)]
pub struct PodEntry {
    /// Evidence.
    pub record: PodRecord,
    /// Verdicts.
    pub analysis: PodAnalysis,
    /// What the evidence fixes of the verdicts; written with `record`.
    basis: PodBasis,
}

/// Counts for the summary.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Pods known.
    pub pods: usize,
    /// Pods per verdict.
    pub verdicts: BTreeMap<VerdictKind, usize>,
    /// Nodes with an open stream that is not stale.
    pub nodes_reporting: usize,
    /// Stale nodes.
    pub nodes_stale: usize,
}

/// The cluster model.
pub struct Cluster {
    /// Trust configuration; written by the trust watch.
    pub trust: Trust,
    /// Signature facts cache, shared by every analysis.
    verifier: Verifier,
    /// Memo of what pods judged alike share; used with `verifier` only.
    judge: Judge,
    /// Nodes by name; written by the ingest streams.
    nodes: BTreeMap<String, NodeRecord>,
    /// Pods by uid. Boxed: the table then holds pointers, so its free slots cost 8 bytes
    /// rather than a whole entry, and growing it copies no pod.
    pods: HashMap<String, Box<PodEntry>>,
    /// (namespace, name) → uid.
    by_name: BTreeMap<(String, String), String>,
    /// A node with no message for longer is stale.
    stale_after: chrono::TimeDelta,
    /// Last change of anything a query shows.
    pub updated_at: DateTime<Utc>,
    /// Counts those changes, and every change of the trust configuration or of node staleness.
    revision: u64,
    next_stream: u64,
}

impl Cluster {
    /// An empty model.
    pub fn new(trust: Trust, stale_after: std::time::Duration, now: DateTime<Utc>) -> Self {
        Cluster {
            trust,
            verifier: Verifier::new(),
            judge: Judge::new(),
            nodes: BTreeMap::new(),
            pods: HashMap::new(),
            by_name: BTreeMap::new(),
            stale_after: chrono::TimeDelta::from_std(stale_after).unwrap_or(chrono::TimeDelta::MAX),
            updated_at: now,
            revision: 0,
            next_stream: 0,
        }
    }

    /// Increases with every change a query could show; unchanged means the summary is too
    /// (but for the passing of time, which `tick` turns into changes).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn touch_revision(&mut self, now: DateTime<Utc>) {
        self.updated_at = now;
        self.revision += 1;
    }

    /// A fresh id for an agent stream.
    pub fn open_stream(&mut self) -> u64 {
        self.next_stream += 1;
        self.next_stream
    }

    /// A snapshot: the node's pods become exactly `pods`, and `stream` owns the node.
    pub fn replace_node(
        &mut self,
        node: &str,
        stream: u64,
        agent_version: &str,
        pods: Vec<PodRecord>,
        now: DateTime<Utc>,
    ) {
        let old: BTreeSet<String> = self
            .nodes
            .get(node)
            .map(|n| n.pods.clone())
            .unwrap_or_default();
        let keep: BTreeSet<String> = pods.iter().map(|p| p.uid.clone()).collect();
        for uid in old.difference(&keep) {
            self.remove_pod(uid);
        }
        let record = self
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| NodeRecord {
                name: node.to_string(),
                stream,
                last_report_at: now,
                agent_version: String::new(),
                pods: BTreeSet::new(),
                stale: false,
            });
        record.stream = stream;
        record.last_report_at = now;
        record.agent_version = agent_version.to_string();
        record.stale = false;
        for pod in pods {
            self.upsert_pod(pod);
        }
        self.touch_revision(now);
    }

    /// A delta from the stream that owns the node; ignored (false) from any other stream.
    pub fn apply_delta(
        &mut self,
        node: &str,
        stream: u64,
        upserted: Vec<PodRecord>,
        removed: &[String],
        now: DateTime<Utc>,
    ) -> bool {
        if !self.owns(node, stream) {
            return false;
        }
        for uid in removed {
            if self.nodes.get(node).is_some_and(|n| n.pods.contains(uid)) {
                self.remove_pod(uid);
            }
        }
        for pod in upserted {
            self.upsert_pod(pod);
        }
        self.touch(node, now);
        self.touch_revision(now);
        true
    }

    /// A heartbeat from the stream that owns the node.
    pub fn heartbeat(&mut self, node: &str, stream: u64, now: DateTime<Utc>) -> bool {
        if !self.owns(node, stream) {
            return false;
        }
        self.touch(node, now);
        true
    }

    /// The stream closed; the node stays, marked stale, until a new stream takes it.
    pub fn disconnect(&mut self, node: &str, stream: u64, now: DateTime<Utc>) {
        if !self.owns(node, stream) {
            return;
        }
        if let Some(n) = self.nodes.get_mut(node) {
            n.stream = 0;
        }
        self.tick(now);
    }

    /// Whether `stream` owns `node`.
    pub fn owns(&self, node: &str, stream: u64) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.stream == stream && stream != 0)
    }

    fn touch(&mut self, node: &str, now: DateTime<Utc>) {
        let became_fresh = match self.nodes.get_mut(node) {
            Some(n) => {
                n.last_report_at = now;
                std::mem::replace(&mut n.stale, false)
            }
            None => false,
        };
        if became_fresh {
            self.revision += 1;
            self.reanalyse_node(node, now);
        }
    }

    /// The bundle changed; every pod is judged again. Returns whether the anchor set changed.
    pub fn set_bundle(
        &mut self,
        state: BundleState,
        resource_version: String,
        now: DateTime<Utc>,
    ) -> bool {
        let changed = self.trust.set_bundle(state, resource_version, now);
        self.revision += 1;
        self.reanalyse_all(now);
        changed
    }

    /// The issuer changed; every pod is judged again.
    pub fn set_issuer(&mut self, state: IssuerState, now: DateTime<Utc>) {
        self.trust.set_issuer(state);
        self.revision += 1;
        self.reanalyse_all(now);
    }

    /// Time passed: marks nodes stale and judges every pod again (validity windows).
    pub fn tick(&mut self, now: DateTime<Utc>) {
        let mut flipped = false;
        for n in self.nodes.values_mut() {
            let stale = n.stream == 0 || now - n.last_report_at > self.stale_after;
            flipped |= stale != n.stale;
            n.stale = stale;
        }
        if flipped {
            self.revision += 1;
        }
        self.reanalyse_all(now);
    }

    fn upsert_pod(&mut self, record: PodRecord) {
        let uid = record.uid.clone();
        if let Some(old) = self.pods.get(&uid)
            && old.record.node != record.node
            && let Some(n) = self.nodes.get_mut(&old.record.node)
        {
            n.pods.remove(&uid);
        }
        if let Some(n) = self.nodes.get_mut(&record.node) {
            n.pods.insert(uid.clone());
        }
        let key = (record.namespace.clone(), record.name.clone());
        if let Some(old_uid) = self.by_name.insert(key, uid.clone())
            && old_uid != uid
        {
            // A pod re-created under the same name: the old uid is gone.
            self.remove_pod(&old_uid);
            self.by_name
                .insert((record.namespace.clone(), record.name.clone()), uid.clone());
        }
        let stale = self.stale_reason(&record.node);
        let basis = self.judge.basis(&record, &mut self.verifier);
        let analysis = self.judge.judge(
            &record,
            &basis,
            &self.trust,
            &mut self.verifier,
            stale.as_ref(),
            record.reported_at,
        );
        self.pods.insert(
            uid,
            Box::new(PodEntry {
                record,
                analysis,
                basis,
            }),
        );
    }

    fn remove_pod(&mut self, uid: &str) {
        if let Some(e) = self.pods.remove(uid) {
            if let Some(n) = self.nodes.get_mut(&e.record.node) {
                n.pods.remove(uid);
            }
            let key = (e.record.namespace, e.record.name);
            if self.by_name.get(&key).map(String::as_str) == Some(uid) {
                self.by_name.remove(&key);
            }
        }
    }

    fn stale_reason(&self, node: &str) -> Option<Arc<str>> {
        let n = self.nodes.get(node)?;
        n.stale.then(|| {
            format!(
                "the agent on node {node} has not reported since {}",
                n.last_report_at.to_rfc3339()
            )
            .into()
        })
    }

    fn reanalyse_node(&mut self, node: &str, now: DateTime<Utc>) {
        let uids: Vec<String> = self
            .nodes
            .get(node)
            .map(|n| n.pods.iter().cloned().collect())
            .unwrap_or_default();
        let stale = self.stale_reason(node);
        for uid in uids {
            if let Some(e) = self.pods.get_mut(&uid) {
                e.analysis = self.judge.judge(
                    &e.record,
                    &e.basis,
                    &self.trust,
                    &mut self.verifier,
                    stale.as_ref(),
                    now,
                );
            }
        }
    }

    fn reanalyse_all(&mut self, now: DateTime<Utc>) {
        let stale: HashMap<String, Arc<str>> = self
            .nodes
            .keys()
            .filter_map(|n| self.stale_reason(n).map(|r| (n.clone(), r)))
            .collect();
        let mut changed = false;
        for e in self.pods.values_mut() {
            let node_stale = match stale.is_empty() {
                true => None,
                false => stale.get(&e.record.node),
            };
            let analysis = self.judge.judge(
                &e.record,
                &e.basis,
                &self.trust,
                &mut self.verifier,
                node_stale,
                now,
            );
            if analysis != e.analysis {
                e.analysis = analysis;
                changed = true;
            }
        }
        if changed {
            self.touch_revision(now);
        }
    }

    /// Counts for the summary.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            pods: self.pods.len(),
            ..Summary::default()
        };
        for e in self.pods.values() {
            let kinds: BTreeSet<VerdictKind> = e.analysis.verdicts.iter().map(|v| v.kind).collect();
            for k in kinds {
                *s.verdicts.entry(k).or_default() += 1;
            }
        }
        for n in self.nodes.values() {
            if n.stale {
                s.nodes_stale += 1;
            } else if n.stream != 0 {
                s.nodes_reporting += 1;
            }
        }
        s
    }

    /// Every pod, ordered by namespace and name.
    pub fn pods(&self) -> impl Iterator<Item = &PodEntry> {
        self.by_name
            .values()
            .filter_map(|uid| self.pods.get(uid).map(|e| &**e))
    }

    /// One pod by namespace and name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodEntry> {
        let uid = self
            .by_name
            .get(&(namespace.to_string(), name.to_string()))?;
        self.pods.get(uid).map(|e| &**e)
    }

    /// Every node, ordered by name.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// Signature checks run so far (the rest were answered from cached facts).
    pub fn signature_checks(&self) -> u64 {
        self.verifier.signature_checks()
    }

    /// The whole-cluster analysis at `now` (DESIGN section 5): findings, affected pods, phase,
    /// plan. Identity is located by its pod: its node, the issuer its own fresh leaf reveals, and
    /// the bundle it read at start. Node clocks are not measured yet, so nodes are INCONCLUSIVE.
    pub fn report(&mut self, settings: &Settings, now: DateTime<Utc>) -> Report {
        let pods: Vec<PodInput> = self
            .pods()
            .map(|e| PodInput {
                record: e.record.clone(),
                workload: workload(&e.record),
                remote: None,
                logs_identity_unreachable: false,
                analysis: Some(e.analysis.clone()),
            })
            .collect();
        let identity_pod = pods.iter().find(|p| {
            p.record.namespace == settings.linkerd_namespace
                && (p.record.service_account == "linkerd-identity"
                    || p.workload
                        .as_ref()
                        .is_some_and(|w| w.name == "linkerd-identity"))
        });
        let identity = match identity_pod {
            Some(p) => IdentityInput {
                node: Some(p.record.node.clone()),
                issuer: match &p.record.probe {
                    ProbeEvidence::Chain(c) => c.certs.get(1).map(|i| i.fingerprint),
                    _ => None,
                },
                anchors: match &p.record.spec_anchors {
                    SpecAnchorsEvidence::ConfigMap { .. } => self
                        .trust
                        .anchors_at(p.record.proxy_started_at)
                        .map(|v| v.anchors.clone()),
                    _ => None,
                },
                reachable: None,
            },
            None => IdentityInput::default(),
        };
        let nodes = self
            .nodes
            .keys()
            .map(|n| (n.clone(), NodeClock::default()))
            .collect();
        let input = ClusterInput {
            now,
            settings: settings.clone(),
            trust: self.trust.clone(),
            linkerd_config: None,
            issuer_unreadable: 0,
            identity,
            nodes,
            pods,
        };
        analyse(&input, &mut self.verifier)
    }

    /// Bundle anchors the issuer chains to (signature and name, dates ignored).
    pub fn issuer_anchors(&mut self) -> Vec<crate::verify::Fingerprint> {
        crate::analysis::issuer_anchors(&self.trust, &mut self.verifier).to_vec()
    }
}

/// The workload a restart rolls: the controller owner, with a ReplicaSet named
/// `<deployment>-<pod-template-hash>` resolved to its Deployment; `None` for a bare pod.
pub fn workload(r: &PodRecord) -> Option<Workload> {
    let (kind, name) = r.owners.first()?.split_once('/')?;
    let (kind, name) = match name.strip_suffix(&format!("-{}", r.pod_template_hash)) {
        Some(deployment) if kind == "ReplicaSet" && !r.pod_template_hash.is_empty() => {
            ("Deployment", deployment)
        }
        _ => (kind, name),
    };
    Some(Workload {
        namespace: r.namespace.clone(),
        kind: kind.to_string(),
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests;
