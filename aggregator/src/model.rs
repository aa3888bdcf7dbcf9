//! The aggregator's cluster model: what each node's agent reported, the trust configuration,
//! and the verdicts derived from them.
//!
//! ```text
//!   agent streams ──replace_node / apply_delta / heartbeat / disconnect──┐
//!   trust watch ───────────set_bundle / set_issuer──────────────────────┤
//!   Link watch + gateway probe ───set_gateways / remove_link─────────────┤
//!   owner watches ─────────update_owners (OwnerIndex, for the plan)──────┤
//!   control-plane watches ─update_control_plane──────────────────────────┤
//!   agents' clock readings ─node_clock───────────────────────────────────┤
//!   clock ─────────────────────────tick──────────────────────────────────┤
//!                                                                        ▼
//!   Cluster { nodes: name → NodeRecord{clock}, pods: uid → PodEntry{record, basis, analysis},
//!             trust, owners, control_plane, verifier, judge,
//!             links: Link → [PodEntry{remote: Some(cluster)}] }
//!                                                                        │
//!   query service ◄──────────────── summary / pods / pod ◄───────────────┘
//! ```
//! Pure and synchronous; the gRPC and kube tasks hold it behind a mutex and call it with `now`.
//! A pod's analysis is recomputed when its evidence changes, for every pod when the trust
//! configuration changes, and on `tick` (time passes: expiry, stale nodes). Its `basis` (what the
//! evidence fixes) is computed with each report; re-judging takes the rest from the `judge`'s
//! memo, shared by the pods judged alike (`analysis::Judge`).
//!
//! Remote pods (the gateways of linked clusters, which the aggregator probes itself) are kept
//! apart from the pods agents report: they belong to no node, are not counted in the summary's
//! pods and verdicts, and carry only the verdicts a remote pod can have
//! ([`crate::analysis::remote_view`]).

use crate::analysis::cluster::{
    ClusterInput, IdentityInput, NodeClock, PodInput, Report, Settings, Workload, WorkloadFacts,
    analyse, signing_issuer,
};
use crate::analysis::{Judge, PodAnalysis, PodBasis, VerdictKind, pod_verdicts, remote_view};
use crate::clock::{ClockSettings, NodeClockState, Reading, Row as ClockRow, rows as clock_rows};
use crate::control_plane::ControlPlane;
use crate::owners::OwnerIndex;
use crate::trust::{BundleState, IssuerState, Trust};
use crate::verify::{ParsedCert, PemBundle, Proven, Prover, Verifier};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// A pod's evidence as received from its agent, with certificates parsed.
#[derive(Clone, Debug, Default)]
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
    /// The pod mirrors a static pod (annotation `kubernetes.io/config.mirror`).
    pub mirror: bool,
    /// linkerd-identity's flags, when this pod runs the identity controller.
    pub identity_controller: Option<IdentityFlags>,
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
    /// What the proxy's logs on the node say; `None` when the agent does not read them.
    pub logs: Option<Arc<LogEvidence>>,
    /// When the aggregator received this evidence.
    pub reported_at: DateTime<Utc>,
}

/// What a proxy's logs say about mTLS and identity, per kind (`cases/log-lines.md`), as its
/// agent counted them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogEvidence {
    /// One entry per kind logged.
    pub kinds: Vec<LogKindEvidence>,
    /// Why the agent could not read the logs.
    pub problem: Option<String>,
}

/// The lines of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogKindEvidence {
    /// The kind.
    pub kind: anchorwatch_proxylog::Kind,
    /// Lines since the agent started following the pod.
    pub total: u64,
    /// Lines in the 5 minutes and the hour before the agent sent this.
    pub last_5m: u64,
    /// See `last_5m`.
    pub last_1h: u64,
    /// Log time (node clock) of the first line.
    pub first_seen: Option<DateTime<Utc>>,
    /// Log time of the last line.
    pub last_seen: Option<DateTime<Utc>>,
    /// The last few lines.
    pub samples: Vec<String>,
    /// The peers the lines name, most recent first.
    pub peers: Vec<LogPeer>,
}

/// A peer named by log lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPeer {
    /// The address as logged.
    pub addr: std::net::SocketAddr,
    /// An inbound client's ephemeral port: matched to a pod by IP only.
    pub ephemeral_port: bool,
    /// Lines naming it.
    pub count: u64,
    /// Log time of the last one.
    pub last_seen: Option<DateTime<Utc>>,
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

impl Default for SpecAnchorsEvidence {
    fn default() -> Self {
        SpecAnchorsEvidence::Missing("not reported".into())
    }
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
#[derive(Clone, Debug, Default)]
pub enum ProbeEvidence {
    /// Not probed yet.
    #[default]
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
    /// Its clock, as its agent measures it.
    pub clock: NodeClockState,
}

/// Flags of linkerd-identity's controller that the analysis uses; `None` when not set (Linkerd's
/// defaults apply) or not readable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityFlags {
    /// `-identity-clock-skew-allowance`.
    pub allowance: Option<chrono::TimeDelta>,
    /// `-identity-issuance-lifetime`.
    pub issuance_lifetime: Option<chrono::TimeDelta>,
}

/// A pod and its analysis.
#[derive(Clone, Debug)]
pub struct PodEntry {
    /// Evidence.
    pub record: Arc<PodRecord>,
    /// Verdicts. Both shared behind `Arc`: the whole-cluster analysis takes every pod's, and
    /// copying 550,000 records for each summary cost a second and a gigabyte.
    pub analysis: Arc<PodAnalysis>,
    /// The linked cluster, for a gateway of a multicluster Link; `None` for pods agents report.
    pub remote: Option<String>,
    /// What the evidence fixes of the verdicts; written with `record`.
    basis: PodBasis,
    /// When the passing of time alone may change `analysis` (a certificate's notAfter, or the
    /// next tick while one is out of its window); `None`: never. A tick re-judges only the pods
    /// that are due, and those on nodes that turned stale or fresh.
    recheck_at: Option<DateTime<Utc>>,
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
    /// Pods of linked clusters (gateways of multicluster Links); not in `pods` or `verdicts`.
    pub remote_pods: usize,
}

/// The cluster model.
pub struct Cluster {
    /// Trust configuration; written by the trust watch.
    pub trust: Trust,
    /// linkerd-config, the issuer Secret's unreadable blocks, identity's events; written by the
    /// control-plane watches through `update_control_plane`.
    control_plane: ControlPlane,
    /// How node clocks are judged.
    clock_settings: ClockSettings,
    /// Signature facts cache, shared by every analysis.
    verifier: Verifier,
    /// Memo of what pods judged alike share; used with `verifier` only.
    judge: Judge,
    /// Nodes by name; written by the ingest streams.
    nodes: BTreeMap<String, NodeRecord>,
    /// Pods by uid. Boxed: the table then holds pointers, so its free slots cost 8 bytes
    /// rather than a whole entry, and growing it copies no pod.
    pods: HashMap<String, Box<PodEntry>>,
    /// Workload objects the plan resolves pod owners with; written by the owner watches.
    owners: OwnerIndex,
    /// (namespace, name) → uid.
    by_name: BTreeMap<(String, String), String>,
    /// Gateways of linked clusters by Link (`namespace/name`), one entry per gateway address;
    /// written by the Link follower after each probe round, removed with their Link.
    links: BTreeMap<String, Vec<PodEntry>>,
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
            control_plane: ControlPlane::default(),
            clock_settings: ClockSettings::default(),
            verifier: Verifier::new(),
            judge: Judge::new(),
            nodes: BTreeMap::new(),
            pods: HashMap::new(),
            owners: OwnerIndex::default(),
            by_name: BTreeMap::new(),
            links: BTreeMap::new(),
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
                clock: NodeClockState::new(&self.clock_settings),
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

    /// How many pods `node` would hold after a delta upserting `upserted` and removing
    /// `removed` (uids).
    pub fn pods_after_delta<'a>(
        &self,
        node: &str,
        upserted: impl Iterator<Item = &'a str>,
        removed: &[String],
    ) -> usize {
        let Some(n) = self.nodes.get(node) else {
            return upserted.count();
        };
        let gone = removed.iter().filter(|u| n.pods.contains(*u)).count();
        let mut new: Vec<&str> = upserted.filter(|u| !n.pods.contains(*u)).collect();
        new.sort_unstable();
        new.dedup();
        n.pods.len() - gone + new.len()
    }

    /// A heartbeat from the stream that owns the node.
    pub fn heartbeat(&mut self, node: &str, stream: u64, now: DateTime<Utc>) -> bool {
        if !self.owns(node, stream) {
            return false;
        }
        self.touch(node, now);
        true
    }

    /// A clock measurement from the agent that owns `node`; returns false when `stream` does not
    /// own it.
    pub fn node_clock(
        &mut self,
        node: &str,
        stream: u64,
        reading: Reading,
        now: DateTime<Utc>,
    ) -> bool {
        if !self.owns(node, stream) {
            return false;
        }
        let settings = self.clock_settings.clone();
        if let Some(n) = self.nodes.get_mut(node) {
            n.clock.apply(reading, &settings);
        }
        self.touch_revision(now);
        true
    }

    /// Sets how node clocks are judged (before any measurement arrives).
    pub fn set_clock_settings(&mut self, s: ClockSettings) {
        self.clock_settings = s;
    }

    /// How node clocks are judged.
    pub fn clock_settings(&self) -> &ClockSettings {
        &self.clock_settings
    }

    /// linkerd-identity's pod.
    fn identity_record(&self, settings: &Settings) -> Option<&PodRecord> {
        self.pods()
            .find(|e| {
                let (workload, _) = self.owners.resolve(&e.record);
                is_identity_pod(&e.record, workload.as_ref(), settings)
            })
            .map(|e| &*e.record)
    }

    /// The node running linkerd-identity, from its pod.
    pub fn identity_node(&self, settings: &Settings) -> Option<String> {
        self.identity_record(settings).map(|r| r.node.clone())
    }

    /// The settings with what linkerd-identity's own flags say, when its pod shows them: its
    /// clock-skew allowance and issuance lifetime override the configured ones.
    pub fn effective_settings(&self, settings: &Settings) -> Settings {
        let mut s = settings.clone();
        if let Some(f) = self
            .identity_record(settings)
            .and_then(|r| r.identity_controller.as_ref())
        {
            s.allowance = f.allowance.unwrap_or(s.allowance);
            s.issuance_lifetime = f.issuance_lifetime.unwrap_or(s.issuance_lifetime);
        }
        s
    }

    /// The clock report's rows, with `history` recent offsets each, identity's node, and the
    /// settings they were judged with (critical = identity's allowance, from its flags when
    /// visible).
    pub fn clock_rows(
        &self,
        settings: &Settings,
        history: usize,
        now: DateTime<Utc>,
    ) -> (Vec<ClockRow>, Option<String>, ClockSettings) {
        let identity = self.identity_node(settings);
        let mut clock = self.clock_settings.clone();
        clock.critical_s = self
            .effective_settings(settings)
            .allowance
            .as_seconds_f64()
            .max(0.0);
        let rows = clock_rows(
            self.nodes
                .values()
                .map(|n| (n.name.as_str(), &n.clock, n.stale)),
            identity.as_deref(),
            history,
            now,
            &clock,
        );
        (rows, identity, clock)
    }

    /// The stream closed; the node stays, marked stale, until a new stream takes it.
    pub fn disconnect(&mut self, node: &str, stream: u64, now: DateTime<Utc>) {
        if !self.owns(node, stream) {
            return;
        }
        let became_stale = match self.nodes.get_mut(node) {
            Some(n) => {
                n.stream = 0;
                !std::mem::replace(&mut n.stale, true)
            }
            None => false,
        };
        // Only this node's pods change: re-judging every pod here made a wave of disconnects
        // (a failover) hold the model for a full analysis per node.
        if became_stale {
            self.revision += 1;
            self.reanalyse_node(node, now);
        }
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

    /// A change from the owner watches; `change` returns whether the index changed, which the
    /// plan may show.
    pub fn update_owners(
        &mut self,
        change: impl FnOnce(&mut OwnerIndex) -> bool,
        now: DateTime<Utc>,
    ) -> bool {
        let changed = change(&mut self.owners);
        if changed {
            self.touch_revision(now);
        }
        changed
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

    /// What the control plane shows besides bundle and issuer changed (it affects only the
    /// cluster-level analysis).
    pub fn update_control_plane(&mut self, now: DateTime<Utc>, f: impl FnOnce(&mut ControlPlane)) {
        f(&mut self.control_plane);
        self.touch_revision(now);
    }

    /// What the model holds of the control plane.
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// The issuer changed; every pod is judged again.
    pub fn set_issuer(&mut self, state: IssuerState, now: DateTime<Utc>) {
        let fingerprint = |s: &IssuerState| match s {
            IssuerState::Available(c) => c.first().map(|c| c.fingerprint),
            _ => None,
        };
        let (old, new) = (fingerprint(&self.trust.issuer), fingerprint(&state));
        if old.is_some() && new.is_some() && old != new {
            self.control_plane.issuer_changed_at = Some(now);
        }
        self.trust.set_issuer(state);
        self.revision += 1;
        self.reanalyse_all(now);
    }

    /// Time passed: marks nodes stale and judges every pod again (validity windows).
    pub fn tick(&mut self, now: DateTime<Utc>) {
        let mut flipped = HashSet::new();
        for n in self.nodes.values_mut() {
            let stale = n.stream == 0 || now - n.last_report_at > self.stale_after;
            if stale != n.stale {
                flipped.insert(n.name.clone());
            }
            n.stale = stale;
        }
        if !flipped.is_empty() {
            self.revision += 1;
        }
        // The pods whose verdicts time may have changed, and those whose node turned stale or
        // fresh; the rest would be judged exactly as before (`Judge::judge_until`).
        self.reanalyse(now, |e| {
            e.recheck_at.is_some_and(|t| t <= now)
                || (!flipped.is_empty() && flipped.contains(&e.record.node))
        });
    }

    fn upsert_pod(&mut self, record: PodRecord) {
        let uid = record.uid.clone();
        if let Some(old) = self.pods.get(&uid)
            && old.record.node != record.node
            && let Some(n) = self.nodes.get_mut(&old.record.node)
        {
            n.pods.remove(&uid);
        }
        // The same uid under another name (a confused or lying reporter): the old name no longer
        // points at it, so no name ever resolves to another pod's evidence.
        if let Some(old) = self.pods.get(&uid) {
            let old_key = (old.record.namespace.clone(), old.record.name.clone());
            if old_key != (record.namespace.clone(), record.name.clone())
                && self.by_name.get(&old_key) == Some(&uid)
            {
                self.by_name.remove(&old_key);
            }
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
        let (analysis, recheck_at) = self.judge.judge_until(
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
                record: Arc::new(record),
                analysis: Arc::new(analysis),
                remote: None,
                basis,
                recheck_at,
            }),
        );
    }

    /// The gateways of Link `link` (`namespace/name`), a remote view of linked cluster
    /// `cluster`, become exactly `records`. A gateway whose probe outcome is unchanged keeps the
    /// time it was first seen. Returns whether anything a query shows changed.
    pub fn set_gateways(
        &mut self,
        link: &str,
        cluster: &str,
        records: Vec<PodRecord>,
        now: DateTime<Utc>,
    ) -> bool {
        let old = self.links.remove(link).unwrap_or_default();
        let mut changed = old.len() != records.len();
        let mut entries = Vec::with_capacity(records.len());
        for mut record in records {
            match old.iter().find(|e| e.record.uid == record.uid) {
                Some(e)
                    if same_evidence(&e.record, &record)
                        && e.remote.as_deref() == Some(cluster) =>
                {
                    record.probed_at = e.record.probed_at;
                }
                _ => changed = true,
            }
            let analysis = self.judge_remote(&record, cluster, now);
            let basis = self.judge.basis(&record, &mut self.verifier);
            entries.push(PodEntry {
                record: Arc::new(record),
                analysis: Arc::new(analysis),
                remote: Some(cluster.to_string()),
                basis,
                recheck_at: None,
            });
        }
        entries.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        self.links.insert(link.to_string(), entries);
        if changed {
            self.touch_revision(now);
        }
        changed
    }

    /// Link `link` is gone: so are its gateways. Returns whether it had any.
    pub fn remove_link(&mut self, link: &str, now: DateTime<Utc>) -> bool {
        let had = self.links.remove(link).is_some_and(|e| !e.is_empty());
        if had {
            self.touch_revision(now);
        }
        had
    }

    /// The Links that have gateways in the model (`namespace/name`).
    pub fn links(&self) -> impl Iterator<Item = &str> {
        self.links.keys().map(String::as_str)
    }

    /// Pods of linked clusters, ordered by Link, then name.
    pub fn remote_pods(&self) -> impl Iterator<Item = &PodEntry> {
        self.links.values().flatten()
    }

    fn judge_remote(&mut self, r: &PodRecord, cluster: &str, now: DateTime<Utc>) -> PodAnalysis {
        let local = pod_verdicts(r, &self.trust, &mut self.verifier, None, now);
        remote_view(local, cluster)
    }

    fn remove_pod(&mut self, uid: &str) {
        if let Some(e) = self.pods.remove(uid) {
            if let Some(n) = self.nodes.get_mut(&e.record.node) {
                n.pods.remove(uid);
            }
            let key = (e.record.namespace.clone(), e.record.name.clone());
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
                let (analysis, recheck_at) = self.judge.judge_until(
                    &e.record,
                    &e.basis,
                    &self.trust,
                    &mut self.verifier,
                    stale.as_ref(),
                    now,
                );
                e.analysis = Arc::new(analysis);
                e.recheck_at = recheck_at;
            }
        }
    }

    fn reanalyse_all(&mut self, now: DateTime<Utc>) {
        self.reanalyse(now, |_| true);
    }

    /// Judges again the pods `due` picks, and every linked cluster's gateway.
    fn reanalyse(&mut self, now: DateTime<Utc>, due: impl Fn(&PodEntry) -> bool) {
        let stale: HashMap<String, Arc<str>> = self
            .nodes
            .keys()
            .filter_map(|n| self.stale_reason(n).map(|r| (n.clone(), r)))
            .collect();
        let mut changed = false;
        for e in self.pods.values_mut().filter(|e| due(e)) {
            let node_stale = match stale.is_empty() {
                true => None,
                false => stale.get(&e.record.node),
            };
            let (analysis, recheck_at) = self.judge.judge_until(
                &e.record,
                &e.basis,
                &self.trust,
                &mut self.verifier,
                node_stale,
                now,
            );
            e.recheck_at = recheck_at;
            if analysis != *e.analysis {
                e.analysis = Arc::new(analysis);
                changed = true;
            }
        }
        for e in self.links.values_mut().flatten() {
            let local = pod_verdicts(&e.record, &self.trust, &mut self.verifier, None, now);
            let analysis = remote_view(local, e.remote.as_deref().unwrap_or_default());
            if analysis != *e.analysis {
                e.analysis = Arc::new(analysis);
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
            remote_pods: self.remote_pods().count(),
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

    /// One pod by namespace and name: a pod an agent reports, else a gateway of a linked cluster.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&PodEntry> {
        self.by_name
            .get(&(namespace.to_string(), name.to_string()))
            .and_then(|uid| self.pods.get(uid).map(|e| &**e))
            .or_else(|| {
                self.remote_pods()
                    .find(|e| e.record.namespace == namespace && e.record.name == name)
            })
    }

    /// Every node, ordered by name.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// A prover with the verifier's algorithms, to check reported chains' signatures before
    /// the model is locked.
    pub fn prover(&self) -> Prover {
        self.verifier.prover()
    }

    /// Takes signature facts a [`prover`](Self::prover) computed.
    pub fn learn(&mut self, proven: Vec<Proven>) {
        self.verifier.learn(proven);
    }

    /// Signature checks run so far (the rest were answered from cached facts).
    pub fn signature_checks(&self) -> u64 {
        self.verifier.signature_checks()
    }

    /// The whole-cluster analysis at `now` (DESIGN section 5): findings, affected pods, phase,
    /// plan. Identity is located by its pod (its node, the bundle it read at start); the issuer
    /// it signs with comes from the freshest leaf issued since the Secret changed, and its issuer
    /// events. A node whose clock is not measured lately is INCONCLUSIVE.
    pub fn report(&mut self, settings: &Settings, now: DateTime<Utc>) -> Report {
        let input = self.analysis_input(settings, now);
        analyse(&input, &mut self.verifier)
    }

    /// What [`report`](Self::report) analyses: the model as the whole-cluster analysis reads it.
    /// Offline diagnosis adds what only it knows (proxy logs) before analysing.
    pub fn analysis_input(&self, settings: &Settings, now: DateTime<Utc>) -> ClusterInput {
        // Pods of one workload resolve alike: once per owner, not once per pod (at 550,000 pods
        // the caveats alone were 150 MiB of every summary).
        type OwnerKey<'a> = (&'a str, Option<&'a String>, &'a str, bool);
        let mut resolved: HashMap<OwnerKey<'_>, (Option<Workload>, WorkloadFacts)> = HashMap::new();
        let mut pods: Vec<PodInput> = self
            .pods()
            .map(|e| {
                let r = &e.record;
                let key = (
                    r.namespace.as_str(),
                    r.owners.first(),
                    r.pod_template_hash.as_str(),
                    r.mirror,
                );
                let (workload, workload_facts) = resolved
                    .entry(key)
                    .or_insert_with(|| self.owners.resolve(r))
                    .clone();
                PodInput {
                    record: e.record.clone(),
                    workload,
                    workload_facts,
                    remote: None,
                    analysis: Some(e.analysis.clone()),
                }
            })
            .collect();
        let identity_pod = pods
            .iter()
            .find(|p| is_identity_pod(&p.record, p.workload.as_ref(), settings));
        let cp = &self.control_plane;
        // What identity signs with: the issuer of the freshest leaf issued since the Secret last
        // changed (identity's own proxy renews like any other); the events say the rest.
        let signing = signing_issuer(&pods, settings.allowance, cp.issuer_changed_at);
        let identity = match identity_pod {
            Some(p) => IdentityInput {
                node: Some(p.record.node.clone()),
                issuer: signing.map(|(fp, _)| fp),
                anchors: match &p.record.spec_anchors {
                    SpecAnchorsEvidence::ConfigMap { .. } => self
                        .trust
                        .anchors_at(p.record.proxy_started_at)
                        .map(|v| v.anchors.clone()),
                    _ => None,
                },
                reachable: None,
                started_at: p.record.proxy_started_at,
                events: cp.identity_events.ordered(),
            },
            None => IdentityInput {
                issuer: signing.map(|(fp, _)| fp),
                events: cp.identity_events.ordered(),
                ..IdentityInput::default()
            },
        };
        // A node's clock counts while its agent reports and the measurement is fresh; otherwise
        // it is unmeasured (INCONCLUSIVE), never healthy.
        let nodes = self
            .nodes
            .values()
            .map(|n| {
                let current = (!n.stale)
                    .then(|| n.clock.current(now, &self.clock_settings))
                    .flatten();
                (
                    n.name.clone(),
                    NodeClock {
                        last_offset_s: n
                            .clock
                            .last
                            .as_ref()
                            .and_then(|r| r.reference_offset())
                            .map(|o| o.offset_s),
                        offset_s: current.as_ref().map(|c| c.offset_s),
                        bound_s: current.map_or(0.0, |c| c.bound_s),
                        remote: None,
                    },
                )
            })
            .collect();
        let mut settings = self.effective_settings(settings);
        settings
            .extension_namespaces
            .extend(self.control_plane.extension_namespaces.iter().cloned());
        pods.extend(self.remote_pods().map(|e| PodInput {
            record: e.record.clone(),
            workload: None,
            workload_facts: Default::default(),
            remote: e.remote.clone(),
            analysis: Some(e.analysis.clone()),
        }));
        ClusterInput {
            now,
            settings,
            trust: self.trust.clone(),
            linkerd_config: self.control_plane.linkerd_config.anchors().cloned(),
            issuer_unreadable: self.control_plane.issuer_unreadable,
            bundle_unreadable: self.control_plane.bundle_unreadable.clone(),
            identity,
            nodes,
            pods,
        }
    }

    /// Runs the whole-cluster analysis on `input` with the model's signature cache.
    pub fn analyse(&mut self, input: &ClusterInput) -> Report {
        analyse(input, &mut self.verifier)
    }

    /// Bundle anchors the issuer chains to (signature and name, dates ignored).
    pub fn issuer_anchors(&mut self) -> Vec<crate::verify::Fingerprint> {
        crate::analysis::issuer_anchors(&self.trust, &mut self.verifier).to_vec()
    }
}

/// Whether a pod is linkerd-identity's: in the control-plane namespace, with its service account
/// or owned by its Deployment.
fn is_identity_pod(r: &PodRecord, workload: Option<&Workload>, settings: &Settings) -> bool {
    r.namespace == settings.linkerd_namespace
        && (r.service_account == "linkerd-identity"
            || workload.is_some_and(|w| w.name == "linkerd-identity"))
}

/// Whether two reports of one gateway say the same: same address and name, same probe outcome
/// (the same certificates, or the same failure).
fn same_evidence(a: &PodRecord, b: &PodRecord) -> bool {
    let outcome_eq = match (&a.probe, &b.probe) {
        (ProbeEvidence::None, ProbeEvidence::None) => true,
        (ProbeEvidence::Chain(x), ProbeEvidence::Chain(y)) => {
            x.unreadable == y.unreadable
                && x.certs
                    .iter()
                    .map(|c| c.fingerprint)
                    .eq(y.certs.iter().map(|c| c.fingerprint))
        }
        (
            ProbeEvidence::Failed { kind, detail },
            ProbeEvidence::Failed {
                kind: k2,
                detail: d2,
            },
        ) => kind == k2 && detail == d2,
        (ProbeEvidence::Skipped(x), ProbeEvidence::Skipped(y)) => x == y,
        _ => false,
    };
    outcome_eq
        && a.probe_address == b.probe_address
        && a.pod_ip == b.pod_ip
        && a.identity_name == b.identity_name
        && a.owners == b.owners
}

#[cfg(test)]
mod tests;
