//! The whole-cluster analysis (DESIGN section 5): pod verdicts, cluster-level verdicts, which pods
//! are affected, the rotation phase, and the restart plan (Rules 1 to 6). Pure: a [`ClusterInput`]
//! and `now` in, a [`Report`] out; every signature check goes through the [`Verifier`]'s cache.
//!
//! ```text
//!  ClusterInput ─┬─ trust (bundle + history, issuer) ──► trust_config::check ─┐
//!                ├─ pods (evidence) ──────────────────► pod_verdicts ─────────┤
//!                ├─ identity, nodes (clocks) ─────────► identity / clock ─────┼─► findings
//!                ├─ pods' proxy logs + the above ─────► logs::correlate ──────┤   (+ Report::logs)
//!                └─ bundle history, effective anchors ► rollout / removal ────┘      │
//!                                                                    affected ◄──────┤
//!                                                     plan (Rules 1–4, 6) ◄──────────┘
//! ```

use super::logs::{self as log_evidence, LogCorrelation};
use super::trust_config::{self, Severity, TrustConfig};
use super::{PodAnalysis, VerdictKind, pod_verdicts};
use crate::control_plane::{IdentityEvent, IssuerEventKind};
use crate::model::{PodRecord, ProbeEvidence, SpecAnchorsEvidence};
use crate::trust::Trust;
use crate::verify::{Fingerprint, ParsedCert, PemBundle, Verifier};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Linkerd settings and operator policy the analysis depends on.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The control-plane namespace.
    pub linkerd_namespace: String,
    /// Identity's clock-skew allowance.
    pub allowance: TimeDelta,
    /// Lifetime of the leaves identity issues.
    pub issuance_lifetime: TimeDelta,
    /// Warn this long before the issuer or an anchor expires.
    pub warn_before: TimeDelta,
    /// Namespaces of Linkerd extensions (their own tier in the plan).
    pub extension_namespaces: BTreeSet<String>,
}

impl Settings {
    /// Linkerd's defaults for a control plane in `namespace`.
    pub fn new(namespace: &str) -> Self {
        Settings {
            linkerd_namespace: namespace.to_string(),
            allowance: TimeDelta::seconds(20),
            issuance_lifetime: TimeDelta::hours(24),
            warn_before: TimeDelta::days(60),
            extension_namespaces: [
                "linkerd-viz",
                "linkerd-multicluster",
                "linkerd-jaeger",
                "linkerd-smi",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

/// The workload that owns a pod, as the plan restarts it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    /// Namespace.
    pub namespace: String,
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`, `Job`, … or `Pod` for a bare pod.
    pub kind: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// How a StatefulSet or DaemonSet replaces its pods (`spec.updateStrategy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateStrategy {
    /// `RollingUpdate`: a template change replaces the pods; for a StatefulSet only the ordinals
    /// at or above `partition` (0 for a DaemonSet).
    RollingUpdate {
        /// `rollingUpdate.partition`.
        partition: i32,
    },
    /// `OnDelete`: a pod is replaced only when it is deleted.
    OnDelete,
    /// A type this version does not know, as written.
    Unrecognised(String),
}

/// What is known of how a pod's workload re-creates it, resolved from the cluster's workload
/// objects (DESIGN section 6): the plan picks its method from this and the workload's kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadFacts {
    /// A StatefulSet's or DaemonSet's update strategy; `None`: not known (not listed yet, not
    /// readable) or not applicable.
    pub strategy: Option<UpdateStrategy>,
    /// A Deployment's `spec.paused`; `None`: not known or not applicable.
    pub paused: Option<bool>,
    /// The pod mirrors a static pod (annotation `kubernetes.io/config.mirror`, or owned by its
    /// Node): only the kubelet re-creates it, from a manifest on the node.
    pub mirror: bool,
    /// What the resolution could not check, in words (e.g. ReplicaSets not listed yet, so the
    /// Deployment was inferred from the pod-template-hash label); said in the plan. Shared by
    /// the pods of a workload.
    pub caveat: Option<Arc<str>>,
}

/// One pod as the analysis sees it.
#[derive(Clone, Debug)]
pub struct PodInput {
    /// Its evidence (shared with the live model).
    pub record: Arc<PodRecord>,
    /// Its owning workload (Pod → ReplicaSet → Deployment resolved); `None`: a bare pod.
    pub workload: Option<Workload>,
    /// What is known of how that workload re-creates pods; default for a bare pod.
    pub workload_facts: WorkloadFacts,
    /// The linked cluster it belongs to, for multicluster gateways and mirrored endpoints.
    pub remote: Option<String>,
    /// Its pod verdicts when already judged (the live model keeps them current, stale nodes
    /// included); `None`: judged here.
    pub analysis: Option<Arc<PodAnalysis>>,
}

/// What is known of the running `linkerd-identity` controller.
#[derive(Clone, Debug, Default)]
pub struct IdentityInput {
    /// The node it runs on.
    pub node: Option<String>,
    /// The issuer it signs with (seen in the leaves it issues).
    pub issuer: Option<Fingerprint>,
    /// The anchors it read from the bundle at start-up.
    pub anchors: Option<Vec<Fingerprint>>,
    /// Whether it is up and reachable; `None`: unknown.
    pub reachable: Option<bool>,
    /// When its container started; issuer events from before belong to an earlier process.
    pub started_at: Option<DateTime<Utc>>,
    /// Its issuer events, oldest first.
    pub events: Vec<IdentityEvent>,
}

/// A node's clock against the reference.
#[derive(Clone, Debug, Default)]
pub struct NodeClock {
    /// Node clock minus reference, seconds; `None`: not measured.
    pub offset_s: Option<f64>,
    /// Error bound of the offset, seconds.
    pub bound_s: f64,
    /// The linked cluster the node belongs to.
    pub remote: Option<String>,
    /// The last offset measured, when `offset_s` is `None` because that measurement is no longer
    /// fresh: a node last seen beyond the allowance stays held until measured again.
    pub last_offset_s: Option<f64>,
}

/// Everything the analysis reads.
#[derive(Clone, Debug)]
pub struct ClusterInput {
    /// True time.
    pub now: DateTime<Utc>,
    /// Settings.
    pub settings: Settings,
    /// Bundle (with its history) and issuer.
    pub trust: Trust,
    /// linkerd-config's `identityTrustAnchorsPEM`.
    pub linkerd_config: Option<Arc<PemBundle>>,
    /// Certificate blocks of the issuer Secret that do not parse.
    pub issuer_unreadable: usize,
    /// The bundle's blocks that do not parse, when none does (the bundle is then unavailable).
    pub bundle_unreadable: Vec<String>,
    /// The identity controller.
    pub identity: IdentityInput,
    /// Nodes and their clocks.
    pub nodes: BTreeMap<String, NodeClock>,
    /// Meshed pods.
    pub pods: Vec<PodInput>,
}

/// A finding with its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The design's verdict name, e.g. `STALE_LEAF`, `CLOCK_SKEW`.
    pub name: &'static str,
    /// What it is about: a `namespace/name` pod, a node, `configmap/…`, `secret/…`, an anchor
    /// `sha256:…`; `None` for the cluster as a whole.
    pub subject: Option<String>,
    /// How serious.
    pub severity: Severity,
    /// Evidence in words.
    pub detail: String,
    /// Pods it names (proxies lacking an anchor, leaves chaining to a removed anchor, …).
    pub pods: Vec<String>,
}

/// How a workload is restarted (DESIGN section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Pod-template annotation `kubectl.kubernetes.io/restartedAt`.
    RolloutRestart,
    /// One pod at a time through the Eviction API.
    Evict,
}

/// Plan tiers, in restart order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// The Linkerd namespace.
    ControlPlane,
    /// Linkerd extensions.
    Extension,
    /// Everything else.
    Workload,
}

/// One restart of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    /// What.
    pub workload: Workload,
    /// How.
    pub method: Method,
    /// Tier.
    pub tier: Tier,
    /// The affected pods it replaces.
    pub pods: Vec<String>,
    /// Why.
    pub reason: String,
}

/// Something the plan does not restart, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// What (`namespace/Kind/name`, Kind `Pod` for bare pods).
    pub target: Workload,
    /// Why.
    pub reason: String,
}

/// The restart plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Restarts in order.
    pub restarts: Vec<Restart>,
    /// What is held back.
    pub held: Vec<Held>,
    /// Findings that empty the plan (Rules 2 and 3).
    pub blockers: Vec<String>,
    /// The plan restarts nothing and some finding needs a human (Rule 6).
    pub escalate: bool,
}

/// Where a manual trust-anchor rotation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// One anchor; the issuer chains to it.
    Steady,
    /// The bundle holds a new anchor the issuer does not chain to yet. Next step: switch the
    /// issuer, once every proxy holds the new anchor (`waiting`: those that do not).
    BundleExtended {
        /// Proxies lacking the new anchor.
        waiting: Vec<String>,
    },
    /// The issuer chains to the newest anchor while older ones stay in the bundle. Next step:
    /// remove the old anchors, once no live leaf chains only to them (`waiting`: those leaves).
    IssuerSwitched {
        /// Pods whose leaves still chain only to an old anchor.
        waiting: Vec<String>,
        /// Pods whose leaf is not known (not probed, or unreadable): they may be waiting too.
        unknown: usize,
    },
    /// An anchor left the bundle; pods that still depend on it are `waiting`.
    OldAnchorRemoved {
        /// Pods still depending on a removed anchor.
        waiting: Vec<String>,
    },
    /// Not a rotation state the analysis can name (no bundle, issuer on no anchor).
    Unknown,
}

/// The analysis of the cluster.
#[derive(Clone, Debug)]
pub struct Report {
    /// Per pod (`namespace/name`), its analysis.
    pub pods: BTreeMap<String, Arc<PodAnalysis>>,
    /// Cluster-level findings.
    pub findings: Vec<Finding>,
    /// Affected pods.
    pub affected: BTreeSet<String>,
    /// Rotation phase.
    pub phase: Phase,
    /// The plan.
    pub plan: Plan,
    /// Proxy log errors of the last hour, each with what explains it, most lines first.
    pub logs: Vec<LogCorrelation>,
}

impl Report {
    /// Whether a verdict of this name is reported, for `subject` when given (pod-level verdicts
    /// are subject to their pod; cluster-level ones to theirs).
    pub fn has(&self, name: &str, subject: Option<&str>) -> bool {
        let pod_hit = self.pods.iter().any(|(pod, a)| {
            subject.is_none_or(|s| s == pod) && a.verdicts.iter().any(|v| v.kind.name() == name)
        });
        pod_hit
            || self.findings.iter().any(|f| {
                f.name == name
                    && subject.is_none_or(|s| {
                        f.subject.as_deref() == Some(s) || f.pods.iter().any(|p| p == s)
                    })
            })
    }
}

fn pod_key(r: &PodRecord) -> String {
    format!("{}/{}", r.namespace, r.name)
}

/// Runs the whole analysis.
pub fn analyse(input: &ClusterInput, verifier: &mut Verifier) -> Report {
    let now = input.now;
    let s = &input.settings;
    let bundle = input.trust.bundle().cloned();
    let anchors: Vec<Arc<ParsedCert>> =
        bundle.as_ref().map(|b| b.certs.clone()).unwrap_or_default();
    let bundle_fps: BTreeSet<Fingerprint> = anchors.iter().map(|a| a.fingerprint).collect();
    let issuer = input.trust.issuer_cert().cloned();
    let issuer_anchors: BTreeSet<Fingerprint> = super::issuer_anchors(&input.trust, verifier)
        .iter()
        .copied()
        .collect();
    let mut findings: Vec<Finding> = Vec::new();

    // Clocks first (Rule 1).
    let skewed = clock_skew(input, &mut findings);
    let identity_node_skewed = input
        .identity
        .node
        .as_ref()
        .is_some_and(|n| skewed.contains(n));

    // Pod verdicts. Remote pods get only time verdicts (and the multicluster one below).
    let mut pods: BTreeMap<String, Arc<PodAnalysis>> = BTreeMap::new();
    for p in &input.pods {
        let mut a = match &p.analysis {
            Some(a) => a.clone(),
            None => Arc::new(pod_verdicts(&p.record, &input.trust, verifier, None, now)),
        };
        if p.remote.is_some() {
            Arc::make_mut(&mut a).verdicts.retain(|v| {
                matches!(
                    v.kind,
                    VerdictKind::LeafExpired | VerdictKind::LeafNotYetValid | VerdictKind::Unprobed
                )
            });
        }
        pods.insert(pod_key(&p.record), a);
    }

    // Anchors of linked clusters: bundle anchors the issuer does not chain to but a remote pod's
    // chain builds to. They are no rotation and no pending rollout.
    let linked_anchors: BTreeSet<Fingerprint> = input
        .pods
        .iter()
        .filter(|p| p.remote.is_some())
        .filter_map(|p| pods.get(&pod_key(&p.record)).and_then(|a| a.chain_anchor))
        .filter(|a| !issuer_anchors.contains(a))
        .collect();
    let local_anchors: Vec<Arc<ParsedCert>> = anchors
        .iter()
        .filter(|a| !linked_anchors.contains(&a.fingerprint))
        .cloned()
        .collect();

    // The trust configuration.
    let issuer_chain = match &input.trust.issuer {
        crate::trust::IssuerState::Available(c) => Some(c.clone()),
        _ => None,
    };
    let cfg = TrustConfig {
        bundle: bundle.as_deref(),
        linkerd_config: input.linkerd_config.as_deref(),
        issuer: issuer_chain.as_deref(),
        issuer_unreadable: input.issuer_unreadable,
        issuance_lifetime: s.issuance_lifetime,
        allowance: s.allowance,
        warn_before: s.warn_before,
        linked_anchors: &linked_anchors,
    };
    for f in trust_config::check(&cfg, verifier, now) {
        // Time verdicts about the issuer and anchors are judged at true time; a skewed identity
        // node is reported as CLOCK_SKEW, not as a certificate window problem.
        findings.push(Finding {
            name: f.kind.name(),
            subject: Some(f.subject),
            severity: f.severity,
            detail: f.detail,
            pods: vec![],
        });
    }
    if bundle.is_none() && !input.bundle_unreadable.is_empty() {
        findings.push(Finding {
            name: "CERT_UNREADABLE",
            subject: Some(trust_config::BUNDLE_SUBJECT.into()),
            severity: Severity::Critical,
            detail: format!(
                "no certificate block of the bundle parses: {}",
                input.bundle_unreadable.join("; ")
            ),
            pods: vec![],
        });
    }
    if bundle.is_none() {
        findings.push(Finding {
            name: "INCONCLUSIVE",
            subject: Some(trust_config::BUNDLE_SUBJECT.into()),
            severity: Severity::Critical,
            detail: input.trust.bundle_problem().unwrap_or_default(),
            pods: vec![],
        });
    }

    // Effective anchors of every local running proxy.
    let local: Vec<&PodInput> = input.pods.iter().filter(|p| p.remote.is_none()).collect();
    // Proxies share a few anchor sets: one copy of each (a set per pod was 200 MiB at 550,000).
    let mut sets: HashMap<Vec<Fingerprint>, Arc<BTreeSet<Fingerprint>>> = HashMap::new();
    let effective: BTreeMap<String, Option<Arc<BTreeSet<Fingerprint>>>> = local
        .iter()
        .map(|p| {
            let set = super::effective_anchors(&p.record, &input.trust).map(|v| {
                sets.entry(v)
                    .or_insert_with_key(|v| Arc::new(v.iter().copied().collect()))
                    .clone()
            });
            (pod_key(&p.record), set)
        })
        .collect();

    // Identity.
    identity_findings(
        input,
        &issuer,
        &bundle_fps,
        identity_node_skewed,
        &mut findings,
    );

    // PENDING_BUNDLE_ROLLOUT: a bundle anchor the issuer does not chain to, lacked by some proxy.
    let mut pending_pods: BTreeSet<String> = BTreeSet::new();
    if issuer.is_some() && !issuer_anchors.is_empty() {
        for n in local_anchors
            .iter()
            .filter(|a| !issuer_anchors.contains(&a.fingerprint))
        {
            let lacking: Vec<String> = effective
                .iter()
                .filter(|(_, e)| e.as_ref().is_none_or(|set| !set.contains(&n.fingerprint)))
                .map(|(k, _)| k.clone())
                .collect();
            let identity_lacks = input
                .identity
                .anchors
                .as_ref()
                .is_some_and(|a| !a.contains(&n.fingerprint));
            if !lacking.is_empty() || identity_lacks {
                let mut detail = format!(
                    "the bundle holds anchor sha256:{} ({}) that the issuer does not chain to yet; {} running proxies lack it",
                    n.fingerprint,
                    n.subject,
                    lacking.len()
                );
                if identity_lacks {
                    detail.push_str(", and so does the bundle identity read at start-up");
                }
                detail.push_str(": restart them before an issuer under it is installed");
                pending_pods.extend(lacking.iter().cloned());
                findings.push(Finding {
                    name: "PENDING_BUNDLE_ROLLOUT",
                    subject: Some(format!("sha256:{}", n.fingerprint)),
                    severity: Severity::Warning,
                    detail,
                    pods: lacking,
                });
            }
        }
    }

    // UNSAFE_ANCHOR_REMOVAL: live leaves that chain only to anchors gone from the bundle.
    let mut removed: BTreeMap<Fingerprint, Arc<ParsedCert>> = BTreeMap::new();
    for v in &input.trust.history {
        for fp in &v.anchors {
            if !bundle_fps.contains(fp)
                && let Some(c) = input.trust.history_cert(fp)
            {
                removed.insert(*fp, c);
            }
        }
    }
    for p in &local {
        if let SpecAnchorsEvidence::Pem(b) = &p.record.spec_anchors {
            for c in b
                .certs
                .iter()
                .filter(|c| !bundle_fps.contains(&c.fingerprint))
            {
                removed.insert(c.fingerprint, c.clone());
            }
        }
    }
    let removed: Vec<Arc<ParsedCert>> = removed.into_values().collect();
    let mut unsafe_pods = Vec::new();
    if bundle.is_some() && !removed.is_empty() {
        for p in &local {
            let ProbeEvidence::Chain(chain) = &p.record.probe else {
                continue;
            };
            let Some(leaf) = chain.certs.first() else {
                continue;
            };
            if chain.leaf_unreadable || now > leaf.not_after {
                continue;
            }
            if verifier.verify(&chain.certs, &anchors, None).is_ok() {
                continue;
            }
            if let Ok(v) = verifier.verify(&chain.certs, &removed, None) {
                unsafe_pods.push((pod_key(&p.record), v.anchor));
            }
        }
    }
    if !unsafe_pods.is_empty() {
        let gone: BTreeSet<Fingerprint> = unsafe_pods.iter().map(|(_, a)| *a).collect();
        findings.push(Finding {
            name: "UNSAFE_ANCHOR_REMOVAL",
            subject: Some(trust_config::BUNDLE_SUBJECT.into()),
            severity: Severity::Critical,
            detail: format!(
                "{} live leaves chain only to anchors no longer in the bundle ({}): peers holding the current bundle reject them",
                unsafe_pods.len(),
                gone.iter().map(|f| format!("sha256:{f}")).collect::<Vec<_>>().join(", ")
            ),
            pods: unsafe_pods.iter().map(|(p, _)| p.clone()).collect(),
        });
    }

    // MULTICLUSTER_ANCHOR_MISMATCH: a remote pod's chain builds to no bundle anchor.
    let mut mc_pods = Vec::new();
    let mut mc_evidence = Vec::new();
    for p in input.pods.iter().filter(|p| p.remote.is_some()) {
        if let ProbeEvidence::Chain(chain) = &p.record.probe
            && !chain.certs.is_empty()
            && verifier.verify(&chain.certs, &anchors, None).is_err()
        {
            mc_pods.push(pod_key(&p.record));
            mc_evidence.push(remote_chain_evidence(p, &chain.certs));
        }
    }
    if !mc_pods.is_empty() {
        let held: Vec<String> = bundle_fps.iter().map(|f| format!("sha256:{f}")).collect();
        findings.push(Finding {
            name: "MULTICLUSTER_ANCHOR_MISMATCH",
            subject: None,
            severity: Severity::Critical,
            detail: format!(
                "pods of a linked cluster present chains that build to no anchor of this cluster's bundle ({}): the clusters do not share a trust anchor. {}",
                held.join(", "),
                mc_evidence.join("; ")
            ),
            pods: mc_pods.clone(),
        });
    }

    // What the proxies log, against what the certificates predict.
    let (logs, unexplained) = log_evidence::correlate(&log_evidence::Context {
        input,
        pods: &pods,
        findings: &findings,
    });
    findings.extend(unexplained);

    // IDENTITY_UNREACHABLE scoped to nodes whose proxies log it.
    if input.identity.reachable != Some(false) {
        let unreachable = log_evidence::identity_unreachable(&logs);
        let mut by_node: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for p in local
            .iter()
            .filter(|p| unreachable.contains(pod_key(&p.record).as_str()))
        {
            by_node
                .entry(p.record.node.as_str())
                .or_default()
                .push(pod_key(&p.record));
        }
        for (node, pods) in by_node {
            findings.push(Finding {
                name: "IDENTITY_UNREACHABLE",
                subject: Some(node.to_string()),
                severity: Severity::Critical,
                detail: format!(
                    "proxies on node {node} log that they cannot reach linkerd-identity"
                ),
                pods,
            });
        }
    }

    // Affected.
    let identity_pods: Vec<String> = local
        .iter()
        .filter(|p| is_identity(p, s))
        .map(|p| pod_key(&p.record))
        .collect();
    let identity_stale = findings
        .iter()
        .any(|f| f.name.starts_with("IDENTITY_STALE_"));
    let mut affected: BTreeSet<String> = BTreeSet::new();
    for p in &input.pods {
        let k = pod_key(&p.record);
        if pods
            .get(&k)
            .is_some_and(|a| a.verdicts.iter().any(|v| v.kind.is_fault()))
        {
            affected.insert(k);
        }
    }
    affected.extend(pending_pods.iter().cloned());
    affected.extend(unsafe_pods.iter().map(|(p, _)| p.clone()));
    affected.extend(mc_pods.iter().cloned());
    if identity_stale {
        affected.extend(identity_pods.iter().cloned());
    }

    // Leaves that build only to an anchor the issuer no longer chains to.
    let old_leaves: Vec<String> = local
        .iter()
        .map(|p| pod_key(&p.record))
        .filter(|k| {
            pods.get(k)
                .and_then(|a| a.chain_anchor)
                .is_some_and(|a| !issuer_anchors.contains(&a))
        })
        .collect();
    let unknown_leaves = local
        .iter()
        .filter(|p| {
            pods.get(&pod_key(&p.record))
                .is_none_or(|a| a.chain_anchor.is_none())
        })
        .count();
    let phase = phase(
        input,
        &local_anchors,
        &issuer_anchors,
        (&old_leaves, unknown_leaves),
        &unsafe_pods,
        &pending_pods,
    );
    let ctx = PlanContext {
        input,
        findings: &findings,
        pods: &pods,
        affected: &affected,
        skewed: &skewed,
        identity_node_skewed,
        issuer_anchors: &issuer_anchors,
        effective: &effective,
        identity_pods: &identity_pods,
        identity_stale,
        bundle_ok: bundle.is_some(),
    };
    let plan = plan(&ctx);
    Report {
        pods,
        findings,
        affected,
        phase,
        plan,
        logs,
    }
}

/// What a remote pod presented, in words: where it was probed, its issuer and the anchor its
/// chain names (with its fingerprint when presented).
fn remote_chain_evidence(p: &PodInput, certs: &[Arc<ParsedCert>]) -> String {
    let r = &p.record;
    let mut out = pod_key(r);
    let mut from: Vec<String> = r.owners.clone();
    from.extend(p.remote.as_ref().map(|c| format!("cluster {c}")));
    if !r.probe_address.is_empty() {
        from.push(format!("probed at {}", r.probe_address));
    }
    if !from.is_empty() {
        out.push_str(&format!(" ({})", from.join(", ")));
    }
    if let Some(issuer) = certs.get(1) {
        out.push_str(&format!(
            " presents issuer {} sha256:{}",
            issuer.subject, issuer.fingerprint
        ));
    }
    if let Some(top) = certs.last() {
        out.push_str(&format!(" chaining to {:?}", top.issuer));
        if top.subject == top.issuer {
            out.push_str(&format!(" (presented, sha256:{})", top.fingerprint));
        }
    }
    out
}

fn is_identity(p: &PodInput, s: &Settings) -> bool {
    p.record.namespace == s.linkerd_namespace
        && (p
            .workload
            .as_ref()
            .is_some_and(|w| w.name == "linkerd-identity")
            || p.record.service_account == "linkerd-identity")
}

/// CLOCK_SKEW and INCONCLUSIVE(node); returns the skewed nodes.
fn clock_skew(input: &ClusterInput, findings: &mut Vec<Finding>) -> BTreeSet<String> {
    let allowance = input.settings.allowance.as_seconds_f64();
    let mut skewed = BTreeSet::new();
    for (name, c) in &input.nodes {
        match c.offset_s {
            Some(o) if o.abs() - c.bound_s > allowance => {
                skewed.insert(name.clone());
                findings.push(Finding {
                    name: "CLOCK_SKEW",
                    subject: Some(name.clone()),
                    severity: Severity::Critical,
                    detail: format!(
                        "node {name} is {o:+.3} s ± {:.3} s off the reference, beyond identity's {allowance} s clock-skew allowance",
                        c.bound_s
                    ),
                    pods: vec![],
                });
            }
            Some(_) => {}
            None if c.remote.is_none() => findings.push(match c.last_offset_s {
                // Last seen skewed: the skew is what is known, and nothing says it was fixed.
                Some(last) if last.abs() > allowance => Finding {
                    name: "INCONCLUSIVE",
                    subject: Some(name.clone()),
                    severity: Severity::Warning,
                    detail: format!(
                        "node {name} is not measured now; it was last measured {last:+.3} s off the reference, beyond identity's {allowance} s clock-skew allowance, and its pods stay held until it is measured again"
                    ),
                    pods: vec![],
                },
                _ => Finding {
                    name: "INCONCLUSIVE",
                    subject: Some(name.clone()),
                    severity: Severity::Info,
                    detail: format!("node {name} has no clock measurement"),
                    pods: vec![],
                },
            }),
            None => {}
        }
    }
    // No node off the reference: a pair beyond the allowance apart, one running identity, names
    // the one farther from the reference.
    if skewed.is_empty()
        && let Some(idn) = &input.identity.node
        && let Some(id_off) = input.nodes.get(idn).and_then(|c| c.offset_s)
    {
        for (name, c) in input
            .nodes
            .iter()
            .filter(|(n, c)| *n != idn && c.remote.is_none())
        {
            let Some(o) = c.offset_s else { continue };
            let bounds = c.bound_s + input.nodes.get(idn).map(|c| c.bound_s).unwrap_or(0.0);
            if (o - id_off).abs() - bounds > allowance {
                let farther = if o.abs() >= id_off.abs() {
                    name.clone()
                } else {
                    idn.clone()
                };
                if skewed.insert(farther.clone()) {
                    findings.push(Finding {
                        name: "CLOCK_SKEW",
                        subject: Some(farther.clone()),
                        severity: Severity::Critical,
                        detail: format!(
                            "nodes {name} and {idn} (running linkerd-identity) are {:.3} s apart, beyond the {allowance} s allowance",
                            (o - id_off).abs()
                        ),
                        pods: vec![],
                    });
                }
            }
        }
    }
    // Name the pods on each skewed node: they are the ones its clock affects.
    for f in findings.iter_mut().filter(|f| f.name == "CLOCK_SKEW") {
        if let Some(node) = &f.subject {
            f.pods = input
                .pods
                .iter()
                .filter(|p| p.remote.is_none() && &p.record.node == node)
                .map(|p| pod_key(&p.record))
                .collect();
        }
    }
    skewed
}

/// The issuer the freshest leaf of a local running proxy presents, and when identity issued that
/// leaf (its not_before plus the allowance: identity backdates by the allowance). This is what
/// identity signs with now, unless the Secret changed after that leaf was issued (`since`), in
/// which case the leaves say nothing yet and `None` is returned.
pub fn signing_issuer(
    pods: &[PodInput],
    allowance: TimeDelta,
    since: Option<DateTime<Utc>>,
) -> Option<(Fingerprint, DateTime<Utc>)> {
    let (issued, issuer) = pods
        .iter()
        .filter(|p| p.remote.is_none())
        .filter_map(|p| match &p.record.probe {
            ProbeEvidence::Chain(c) if !c.leaf_unreadable => {
                let leaf = c.certs.first()?;
                let issuer = c.certs.get(1)?;
                Some((leaf.not_before + allowance, issuer.fingerprint))
            }
            _ => None,
        })
        .max_by_key(|(issued, _)| *issued)?;
    match since {
        Some(t) if issued < t => None,
        _ => Some((issuer, issued)),
    }
}

/// When identity last issued a leaf that a local running proxy presents.
fn last_issued(pods: &[PodInput], allowance: TimeDelta) -> Option<DateTime<Utc>> {
    signing_issuer(pods, allowance, None).map(|(_, t)| t)
}

/// The issuer event of the running identity process that says most about now: the newest one
/// from after identity started.
fn current_issuer_event(id: &IdentityInput) -> Option<&IdentityEvent> {
    id.events
        .iter()
        .rev()
        .find(|e| match (e.at, id.started_at) {
            (Some(at), Some(started)) => at >= started,
            _ => true,
        })
}

fn identity_findings(
    input: &ClusterInput,
    issuer: &Option<Arc<ParsedCert>>,
    bundle_fps: &BTreeSet<Fingerprint>,
    identity_node_skewed: bool,
    findings: &mut Vec<Finding>,
) {
    let id = &input.identity;
    let event = current_issuer_event(id);
    let event_text = |e: &IdentityEvent| {
        let at =
            e.at.map(|t| format!(" at {}", t.to_rfc3339()))
                .unwrap_or_default();
        format!("event {}{at}: {}", e.kind.reason(), e.message)
    };
    if let Some(secret) = issuer {
        let stale = match (&id.issuer, event) {
            (Some(signing), _) if *signing != secret.fingerprint => Some(format!(
                "linkerd-identity signs with issuer sha256:{signing}, not the Secret's sha256:{}: it has not loaded the new issuer",
                secret.fingerprint
            )),
            (None, Some(e)) if e.kind == IssuerEventKind::Skipped => Some(format!(
                "linkerd-identity skipped loading the Secret's issuer sha256:{} and still signs with the previous one ({})",
                secret.fingerprint,
                event_text(e)
            )),
            _ => None,
        };
        if let Some(mut detail) = stale {
            if id.issuer.is_some()
                && let Some(e) = event.filter(|e| e.kind != IssuerEventKind::Updated)
            {
                detail.push_str(&format!(" ({})", event_text(e)));
            }
            findings.push(Finding {
                name: "IDENTITY_STALE_ISSUER",
                subject: Some(trust_config::ISSUER_SUBJECT.into()),
                severity: Severity::Warning,
                detail,
                pods: vec![],
            });
        }
    }
    if let Some(loaded) = &id.anchors
        && !bundle_fps.is_empty()
    {
        let loaded: BTreeSet<Fingerprint> = loaded.iter().copied().collect();
        if &loaded != bundle_fps {
            findings.push(Finding {
                name: "IDENTITY_STALE_BUNDLE",
                subject: Some(trust_config::BUNDLE_SUBJECT.into()),
                severity: Severity::Warning,
                detail: "the anchors linkerd-identity read at start-up differ from the bundle's: it reads the bundle only when it starts".into(),
                pods: vec![],
            });
        }
    }
    if id.reachable == Some(false) {
        findings.push(Finding {
            name: "IDENTITY_UNREACHABLE",
            subject: None,
            severity: Severity::Critical,
            detail: "linkerd-identity is down or unreachable: no proxy can obtain or renew a certificate".into(),
            pods: vec![],
        });
    }
    // IssuerValidationFailed: identity's issuer failed validation when it tried to sign, so it
    // signs nothing, unless a leaf issued after the event shows it signs again. The event is
    // evidence for the finding that explains it (identity's node clock, the issuer's window or
    // chain); with no explanation, identity is unusable for certification.
    if let Some(e) = event.filter(|e| e.kind == IssuerEventKind::ValidationFailed) {
        let refuted = match (e.at, last_issued(&input.pods, input.settings.allowance)) {
            (Some(at), Some(issued)) => issued > at,
            _ => false,
        };
        if !refuted {
            let node = id.node.clone().unwrap_or_default();
            let explains = |f: &Finding| match f.name {
                "CLOCK_SKEW" => identity_node_skewed && f.subject.as_deref() == Some(&node),
                "ISSUER_EXPIRED"
                | "ISSUER_NOT_YET_VALID"
                | "ISSUER_NOT_CHAINED_TO_ANCHOR"
                | "UNSUPPORTED_ALGORITHM" => true,
                "ANCHOR_EXPIRED" | "ANCHOR_NOT_YET_VALID" => f.severity == Severity::Critical,
                _ => false,
            };
            let evidence = format!("linkerd-identity reports {}", event_text(e));
            match findings.iter_mut().find(|f| explains(f)) {
                Some(f) => {
                    f.detail.push_str("; ");
                    f.detail.push_str(&evidence);
                }
                None => findings.push(Finding {
                    name: "IDENTITY_UNREACHABLE",
                    subject: None,
                    severity: Severity::Critical,
                    detail: format!(
                        "linkerd-identity refuses to sign: {evidence}; no proxy can obtain or renew a certificate"
                    ),
                    pods: vec![],
                }),
            }
        }
    }
}

fn phase(
    input: &ClusterInput,
    anchors: &[Arc<ParsedCert>],
    issuer_anchors: &BTreeSet<Fingerprint>,
    (old_leaves, unknown_leaves): (&[String], usize),
    unsafe_pods: &[(String, Fingerprint)],
    pending: &BTreeSet<String>,
) -> Phase {
    if anchors.is_empty() || issuer_anchors.is_empty() {
        return Phase::Unknown;
    }
    if !unsafe_pods.is_empty() {
        return Phase::OldAnchorRemoved {
            waiting: unsafe_pods.iter().map(|(p, _)| p.clone()).collect(),
        };
    }
    if anchors.len() == 1 {
        return Phase::Steady;
    }
    let others: BTreeSet<Fingerprint> = anchors
        .iter()
        .map(|a| a.fingerprint)
        .filter(|f| !issuer_anchors.contains(f))
        .collect();
    // Which of the anchors is newer: the one that entered the bundle last.
    let newest = input.trust.history.last().and_then(|v| {
        let before: BTreeSet<Fingerprint> = input
            .trust
            .history
            .iter()
            .rev()
            .nth(1)
            .map(|p| p.anchors.iter().copied().collect())
            .unwrap_or_default();
        v.anchors.iter().find(|f| !before.contains(f)).copied()
    });
    match newest {
        Some(n) if others.contains(&n) => Phase::BundleExtended {
            waiting: pending.iter().cloned().collect(),
        },
        // The issuer is on the new anchor; leaves that still chain only to an old anchor must be
        // renewed before the old anchor goes.
        _ => Phase::IssuerSwitched {
            waiting: old_leaves.to_vec(),
            unknown: unknown_leaves,
        },
    }
}

struct PlanContext<'a> {
    input: &'a ClusterInput,
    findings: &'a [Finding],
    pods: &'a BTreeMap<String, Arc<PodAnalysis>>,
    affected: &'a BTreeSet<String>,
    skewed: &'a BTreeSet<String>,
    identity_node_skewed: bool,
    issuer_anchors: &'a BTreeSet<Fingerprint>,
    effective: &'a BTreeMap<String, Option<Arc<BTreeSet<Fingerprint>>>>,
    identity_pods: &'a [String],
    identity_stale: bool,
    bundle_ok: bool,
}

/// Findings that need a human when nothing is restarted (Rule 6).
fn needs_human(f: &Finding) -> bool {
    match f.name {
        "ROTATION_IN_PROGRESS" | "INCONCLUSIVE" => false,
        "ISSUER_EXPIRING" | "ANCHOR_EXPIRING" | "ANCHOR_EXPIRED" | "ANCHOR_NOT_YET_VALID" => {
            f.severity == Severity::Critical
        }
        _ => true,
    }
}

/// The plan, each held target listed once per reason (a workload with several pods on a skewed
/// node is held once).
fn plan(ctx: &PlanContext<'_>) -> Plan {
    let mut p = plan_with_repeats(ctx);
    let mut seen = BTreeSet::new();
    p.held
        .retain(|h| seen.insert((h.target.clone(), h.reason.clone())));
    p
}

fn plan_with_repeats(ctx: &PlanContext<'_>) -> Plan {
    let input = ctx.input;
    let s = &input.settings;
    let mut plan = Plan::default();

    // Rules 2 and 3: global blockers.
    for f in ctx.findings {
        let global = match f.name {
            "ISSUER_EXPIRED"
            | "ISSUER_NOT_YET_VALID"
            | "ISSUER_NOT_CHAINED_TO_ANCHOR"
            | "UNSUPPORTED_ALGORITHM"
            | "MULTICLUSTER_ANCHOR_MISMATCH" => true,
            "ISSUER_EXPIRING" | "ANCHOR_EXPIRED" | "ANCHOR_NOT_YET_VALID" | "ANCHOR_EXPIRING" => {
                f.severity == Severity::Critical
            }
            "IDENTITY_UNREACHABLE" => f.subject.is_none(),
            "CERT_UNREADABLE" => f.subject.as_deref() == Some(trust_config::BUNDLE_SUBJECT),
            _ => false,
        };
        if global {
            plan.blockers.push(format!("{}: {}", f.name, f.detail));
        }
    }
    if ctx.identity_node_skewed {
        plan.blockers.push(format!(
            "CLOCK_SKEW of linkerd-identity's node {}: every leaf it issues is misdated",
            input.identity.node.clone().unwrap_or_default()
        ));
    }
    if !ctx.bundle_ok {
        plan.blockers
            .push("the trust bundle cannot be read: restarted pods would get no anchors".into());
    }

    // Nodes more than the allowance behind identity's node reject every fresh leaf.
    let id_off = input
        .identity
        .node
        .as_ref()
        .and_then(|n| input.nodes.get(n))
        .and_then(|c| c.offset_s);
    let behind = |node: &str| -> bool {
        match (id_off, input.nodes.get(node).and_then(|c| c.offset_s)) {
            (Some(i), Some(o)) => i - o > s.allowance.as_seconds_f64(),
            _ => false,
        }
    };

    // Why pods on `node` must not be restarted now, for its clock (Rule 1).
    let clock_hold = |node: &str| -> Option<String> {
        let clock = input.nodes.get(node);
        if !ctx.skewed.contains(node) && behind(node) {
            let gap = id_off.unwrap_or(0.0) - clock.and_then(|c| c.offset_s).unwrap_or(0.0);
            return Some(format!(
                "whose clock is {gap:.3} s behind linkerd-identity's node, beyond the allowance: a new pod there rejects fresh leaves as not yet valid"
            ));
        }
        if ctx.skewed.contains(node) {
            let why = match clock.and_then(|c| c.offset_s) {
                Some(o) if o > 0.0 => format!(
                    "{o:+.3} s ahead: its proxies see leaves expire early and pods it starts get misdated evidence"
                ),
                _ => "behind: a new pod there rejects fresh leaves as not yet valid".to_string(),
            };
            return Some(format!("whose clock is beyond the allowance, {why}"));
        }
        clock
            .filter(|c| c.offset_s.is_none())
            .and_then(|c| c.last_offset_s)
            .filter(|o| o.abs() > s.allowance.as_seconds_f64())
            .map(|last| format!("whose clock was last measured {last:+.3} s off, beyond the allowance, and is not measured now: a stopped agent is no sign the clock was fixed"))
    };

    // Candidates: affected local pods, by workload.
    let mut by_workload: BTreeMap<Workload, Vec<&PodInput>> = BTreeMap::new();
    for p in &input.pods {
        let k = pod_key(&p.record);
        if !ctx.affected.contains(&k) || p.remote.is_some() {
            continue;
        }
        let node = p.record.node.as_str();
        let target = p.workload.clone().unwrap_or_else(|| Workload {
            namespace: p.record.namespace.clone(),
            kind: "Pod".into(),
            name: p.record.name.clone(),
        });
        if let Some(why) = clock_hold(node) {
            plan.held.push(Held {
                target,
                reason: format!("runs on node {node}, {why}"),
            });
            continue;
        }
        if ctx
            .findings
            .iter()
            .any(|f| f.name == "IDENTITY_UNREACHABLE" && f.subject.as_deref() == Some(node))
        {
            plan.held.push(Held {
                target,
                reason: format!("proxies on node {node} cannot reach linkerd-identity"),
            });
            continue;
        }
        if p.workload_facts.mirror {
            plan.held.push(Held {
                target,
                reason: format!("a static pod's mirror: only the kubelet re-creates it, from the manifest on node {node}; never evicted; needs manual re-create"),
            });
            continue;
        }
        if p.workload.is_none() {
            plan.held.push(Held {
                target,
                reason: "a bare pod: nothing would re-create it; needs manual re-create".into(),
            });
            continue;
        }
        by_workload.entry(target).or_default().push(p);
    }

    // A restart replaces every pod of the workload (or may reschedule onto any node): one with a
    // pod on a held node is held whole.
    by_workload.retain(|w, _| {
        let on_held_node = input.pods.iter().find_map(|p| {
            (p.workload.as_ref() == Some(w) && p.remote.is_none())
                .then(|| clock_hold(&p.record.node).map(|why| (pod_key(&p.record), p.record.node.clone(), why)))
                .flatten()
        });
        match on_held_node {
            Some((pod, node, why)) => {
                if !plan.held.iter().any(|h| &h.target == w) {
                    plan.held.push(Held {
                        target: w.clone(),
                        reason: format!("its pod {pod} runs on node {node}, {why}; a restart would replace it there"),
                    });
                }
                false
            }
            None => true,
        }
    });

    if !plan.blockers.is_empty() {
        for (w, _) in by_workload {
            plan.held.push(Held {
                target: w,
                reason: format!("blocked: {}", plan.blockers.join("; ")),
            });
        }
        plan.escalate = ctx.findings.iter().any(needs_human)
            || ctx
                .pods
                .values()
                .any(|a| a.verdicts.iter().any(|v| v.kind.is_fault()));
        return plan;
    }

    // Identity restarts when it is stale (it reads the bundle and the issuer at start).
    let identity_pod = input
        .pods
        .iter()
        .find(|p| ctx.identity_pods.contains(&pod_key(&p.record)));
    let identity_workload = identity_pod.and_then(|p| p.workload.clone());
    if ctx.identity_stale
        && let Some(w) = &identity_workload
    {
        by_workload.entry(w.clone()).or_default();
    }

    let tier = |w: &Workload| -> Tier {
        if w.namespace == s.linkerd_namespace {
            Tier::ControlPlane
        } else if s.extension_namespaces.contains(&w.namespace) {
            Tier::Extension
        } else {
            Tier::Workload
        }
    };
    let lacks_issuer_anchor = |pods: &[&PodInput]| {
        pods.iter().any(|p| {
            ctx.effective.get(&pod_key(&p.record)).is_none_or(|e| {
                e.as_ref()
                    .is_none_or(|set| set.is_disjoint(ctx.issuer_anchors))
            })
        })
    };
    let some_proxy_lacks = ctx.effective.values().any(|e| {
        e.as_ref()
            .is_none_or(|set| set.is_disjoint(ctx.issuer_anchors))
    });

    // The pods each finding names, as sets: a finding may name every pod of the cluster, and
    // each workload asks which findings name one of its pods.
    let finding_pods: Vec<(&'static str, HashSet<&str>)> = ctx
        .findings
        .iter()
        .filter(|f| !f.pods.is_empty())
        .map(|f| (f.name, f.pods.iter().map(String::as_str).collect()))
        .collect();
    let decided: Vec<Result<(u8, Restart), Held>> = by_workload
        .into_iter()
        .map(|(w, pods)| {
            let is_identity = Some(&w) == identity_workload.as_ref();
            let facts = pods
                .first()
                .copied()
                .or(identity_pod.filter(|_| is_identity))
                .map(|p| &p.workload_facts);
            let names: Vec<String> = pods.iter().map(|p| pod_key(&p.record)).collect();
            let (method, note) =
                match restart_method(&w, facts.unwrap_or(&WorkloadFacts::default())) {
                    Ok(decision) => decision,
                    Err(why) if names.is_empty() => {
                        return Err(Held {
                            target: w,
                            reason: why,
                        });
                    }
                    Err(why) => {
                        let reason = format!("{why} (affected: {})", names.join(", "));
                        return Err(Held { target: w, reason });
                    }
                };
            let t = tier(&w);
            // Rule 4: with every proxy holding the issuer's anchor, identity goes first; otherwise
            // proxies lacking it go first, tier by tier, and identity last.
            let rank = if !some_proxy_lacks {
                if is_identity { 0 } else { 1 + t as u8 }
            } else if is_identity {
                9
            } else if lacks_issuer_anchor(&pods) {
                1 + t as u8
            } else {
                4 + t as u8
            };
            let mut kinds: BTreeSet<&str> = names
                .iter()
                .filter_map(|n| ctx.pods.get(n))
                .flat_map(|a| {
                    a.verdicts
                        .iter()
                        .filter(|v| v.kind.is_fault())
                        .map(|v| v.kind.name())
                })
                .collect();
            kinds.extend(
                finding_pods
                    .iter()
                    .filter(|(_, set)| names.iter().any(|n| set.contains(n.as_str())))
                    .map(|(name, _)| *name),
            );
            if is_identity && ctx.identity_stale {
                kinds.extend(
                    ctx.findings
                        .iter()
                        .filter(|f| f.name.starts_with("IDENTITY_STALE_"))
                        .map(|f| f.name),
                );
            }
            let kinds = kinds.into_iter().collect::<Vec<_>>().join(", ");
            let mut reason = if names.is_empty() {
                format!(
                    "{kinds}: linkerd-identity reads the bundle and the issuer only when it starts"
                )
            } else {
                format!("{kinds}: {}", names.join(", "))
            };
            let caveat = facts.and_then(|f| f.caveat.as_deref());
            for why in note.as_deref().into_iter().chain(caveat) {
                reason.push_str("; ");
                reason.push_str(why);
            }
            Ok((
                rank,
                Restart {
                    workload: w,
                    method,
                    tier: t,
                    pods: names,
                    reason,
                },
            ))
        })
        .collect();
    let mut restarts = Vec::new();
    for d in decided {
        match d {
            Ok(r) => restarts.push(r),
            Err(held) => plan.held.push(held),
        }
    }
    restarts.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.workload.cmp(&b.1.workload)));
    plan.restarts = restarts.into_iter().map(|(_, r)| r).collect();
    plan.escalate = plan.restarts.is_empty()
        && (ctx.findings.iter().any(needs_human)
            || ctx
                .pods
                .values()
                .any(|a| a.verdicts.iter().any(|v| v.kind.is_fault())));
    plan
}

/// How the plan restarts workload `w`, given what is known of it (DESIGN section 6), with a word
/// on the choice where the kind alone does not explain it; `Err`: it is held, and why.
///
/// When a StatefulSet's or DaemonSet's update strategy is not known (not listed yet, RBAC
/// forbids reading it, a type this version does not know), the plan evicts rather than holds:
/// eviction replaces a pod under either strategy and honours PodDisruptionBudgets, whereas a
/// rollout restart under `OnDelete` would replace nothing while the plan claimed a fix; holding
/// would leave pods broken that a safe method can fix. A Deployment whose `paused` is not known
/// gets its rollout restart: the annotation is harmless on a paused Deployment (it rolls when
/// resumed), and every Deployment rolls on a template change.
pub fn restart_method(
    w: &Workload,
    facts: &WorkloadFacts,
) -> Result<(Method, Option<String>), String> {
    match w.kind.as_str() {
        "Deployment" => match facts.paused {
            Some(true) => Err("a paused Deployment: a rollout restart waits until it is resumed; resume it, or re-create its pods by hand".into()),
            Some(false) => Ok((Method::RolloutRestart, None)),
            None => Ok((
                Method::RolloutRestart,
                Some("whether the Deployment is paused is not known".into()),
            )),
        },
        "StatefulSet" | "DaemonSet" => match &facts.strategy {
            Some(UpdateStrategy::RollingUpdate { partition }) if *partition <= 0 => {
                Ok((Method::RolloutRestart, None))
            }
            Some(UpdateStrategy::RollingUpdate { partition }) => Ok((
                Method::Evict,
                Some(format!("RollingUpdate partitioned at {partition}: a rollout restart would not replace the ordinals below it")),
            )),
            Some(UpdateStrategy::OnDelete) => Ok((
                Method::Evict,
                Some("update strategy OnDelete: a rollout restart would replace no pod".into()),
            )),
            Some(UpdateStrategy::Unrecognised(t)) => Ok((
                Method::Evict,
                Some(format!("update strategy {t:?} is not one this version knows: evicting, which replaces pods under any strategy")),
            )),
            None => Ok((
                Method::Evict,
                Some("update strategy not known: evicting, which replaces pods under either strategy".into()),
            )),
        },
        // Nothing re-creates a bare pod, and only the kubelet a static one; the plan holds their
        // pods before it gets here.
        "Pod" | "Node" => Err("no controller re-creates it; needs manual re-create".into()),
        // ReplicaSets without a Deployment, Jobs (a CronJob's included: the Job re-creates the
        // pod), and other controllers that re-create pods.
        _ => Ok((Method::Evict, None)),
    }
}

#[cfg(test)]
mod tests;
