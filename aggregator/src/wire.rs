//! Conversion between the `anchorwatch.v1` wire types and the aggregator's domain, in one place.
//! Everything an agent sends is re-parsed here: raw DER and PEM in, parsed certificates out; an
//! agent's own conclusions are never taken.

use crate::analysis::cluster::{Finding, Method, Phase, Plan, Tier};
use crate::analysis::logs::{LogCorrelation, LogStatus, describe};
use crate::analysis::trust_config::Severity;
use crate::analysis::{PodAnalysis, Verdict, VerdictKind};
use crate::model::{
    ChainEvidence, LogEvidence, LogKindEvidence, LogPeer, NodeRecord, PodEntry, PodRecord,
    ProbeEvidence, SpecAnchorsEvidence,
};
use crate::time::{from_proto, to_proto};
use crate::trust::{BundleState, IssuerState, Trust};
use crate::verify::{Fingerprint, ParsedCert, PemBundle, parse_der, parse_pem_bundle};
use anchorwatch_proto::v1 as pb;
use anchorwatch_proxylog::Kind;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// Why a pod's evidence was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvidenceError {
    /// No pod reference or uid.
    #[error("pod evidence without a pod uid")]
    MissingUid,
    /// A pod reference without a namespace or name.
    #[error("pod evidence for uid {0:?} without a namespace or name")]
    MissingName(String),
    /// The pod is on another node than the stream's.
    #[error("pod {pod} is reported on node {reported:?}, not on the stream's node {stream:?}")]
    WrongNode {
        /// namespace/name.
        pod: String,
        /// Node named in the evidence.
        reported: String,
        /// Node of the stream.
        stream: String,
    },
}

/// Shares what many pods report identically: the issuer every proxy presents and the anchors
/// PEM injected into every pod are parsed and held once. Entries are weak: what no pod holds any
/// more is dropped at the next prune.
#[derive(Default)]
pub struct Interner {
    /// Certificates by fingerprint of their DER.
    certs: HashMap<Fingerprint, Weak<ParsedCert>>,
    /// Anchor bundles by fingerprint of their text.
    bundles: HashMap<Fingerprint, Weak<PemBundle>>,
    /// Size at the last prune; the maps are pruned when they double.
    pruned_at: usize,
}

impl Interner {
    /// The parsed certificate of `der`, shared when already held.
    pub fn cert(&mut self, der: &[u8]) -> Result<Arc<ParsedCert>, crate::verify::CertError> {
        let fp = Fingerprint::of(der);
        if let Some(c) = self.certs.get(&fp).and_then(Weak::upgrade) {
            return Ok(c);
        }
        let c = Arc::new(parse_der(der)?);
        self.certs.insert(fp, Arc::downgrade(&c));
        self.prune();
        Ok(c)
    }

    /// The parsed bundle of `text`, shared when already held.
    pub fn bundle(&mut self, text: &str) -> Arc<PemBundle> {
        let fp = Fingerprint::of(text.as_bytes());
        if let Some(b) = self.bundles.get(&fp).and_then(Weak::upgrade) {
            return b;
        }
        let b = Arc::new(parse_pem_bundle(text));
        self.bundles.insert(fp, Arc::downgrade(&b));
        self.prune();
        b
    }

    fn prune(&mut self) {
        let size = self.certs.len() + self.bundles.len();
        if size > 2 * self.pruned_at.max(512) {
            self.certs.retain(|_, w| w.strong_count() > 0);
            self.bundles.retain(|_, w| w.strong_count() > 0);
            self.pruned_at = self.certs.len() + self.bundles.len();
        }
    }
}

/// Decodes one pod's evidence from the agent of `node`, received at `now`.
pub fn pod_record(
    e: pb::PodEvidence,
    node: &str,
    now: DateTime<Utc>,
    interner: &mut Interner,
) -> Result<PodRecord, EvidenceError> {
    let pod = e.pod.unwrap_or_default();
    if pod.uid.is_empty() {
        return Err(EvidenceError::MissingUid);
    }
    if pod.namespace.is_empty() || pod.name.is_empty() {
        return Err(EvidenceError::MissingName(pod.uid));
    }
    if !e.node.is_empty() && e.node != node {
        return Err(EvidenceError::WrongNode {
            pod: format!("{}/{}", pod.namespace, pod.name),
            reported: e.node,
            stream: node.to_string(),
        });
    }
    let proxy = e.proxy.unwrap_or_default();
    let mut problems = e.spec_problems;
    let logs = e.logs.map(|l| Arc::new(log_evidence(l, &mut problems)));
    let spec_anchors = match e.spec_anchors.and_then(|s| s.source) {
        Some(pb::spec_anchors::Source::Pem(pem)) => SpecAnchorsEvidence::Pem(interner.bundle(&pem)),
        Some(pb::spec_anchors::Source::ConfigMap(r)) => SpecAnchorsEvidence::ConfigMap {
            name: r.name,
            key: r.key,
        },
        Some(pb::spec_anchors::Source::Missing(why)) => SpecAnchorsEvidence::Missing(why),
        None => SpecAnchorsEvidence::Missing("the agent sent no spec anchors".into()),
    };
    if let SpecAnchorsEvidence::Missing(why) = &spec_anchors {
        problems.push(format!("no trust anchors in the proxy spec: {why}"));
    }
    let (probe, probed_at, probe_address) = match e.probe {
        None => (ProbeEvidence::None, None, String::new()),
        Some(p) => {
            let at = p.at.as_ref().and_then(from_proto);
            let outcome = match p.outcome {
                Some(pb::probe_result::Outcome::Chain(c)) => {
                    ProbeEvidence::Chain(chain(&c.certificates, interner))
                }
                Some(pb::probe_result::Outcome::Failure(f)) => ProbeEvidence::Failed {
                    kind: f.kind,
                    detail: f.detail,
                },
                Some(pb::probe_result::Outcome::Skipped(why)) => ProbeEvidence::Skipped(why),
                None => ProbeEvidence::None,
            };
            (outcome, at, p.address)
        }
    };
    let metrics_cert_expiry = match e.metrics.and_then(|m| m.outcome) {
        Some(pb::proxy_metrics::Outcome::Expiry(g)) => g.expires_at.as_ref().and_then(from_proto),
        Some(pb::proxy_metrics::Outcome::Error(why)) => {
            problems.push(format!("proxy metrics: {why}"));
            None
        }
        None => None,
    };
    Ok(PodRecord {
        namespace: pod.namespace,
        name: pod.name,
        uid: pod.uid,
        node: node.to_string(),
        service_account: e.service_account,
        owners: {
            let mut owners = e.owners;
            owners.sort_by_key(|o| !o.controller);
            // Not `into_iter().map().collect()`: collecting in place would keep the decoded
            // owner references' allocation (over 300 bytes a pod, for the model's lifetime).
            let mut out = Vec::with_capacity(owners.len());
            out.extend(owners.iter().map(|o| format!("{}/{}", o.kind, o.name)));
            out
        },
        pod_template_hash: e.pod_template_hash,
        mirror: e.mirror,
        identity_controller: e.identity_controller.map(|f| {
            let mut parse = |what: &str, text: &str| {
                if text.is_empty() {
                    return None;
                }
                let d =
                    crate::time::from_go_duration(text).filter(|d| *d >= chrono::TimeDelta::zero());
                if d.is_none() {
                    problems.push(format!(
                        "identity controller flag {what}={text:?} is not a duration"
                    ));
                }
                d
            };
            crate::model::IdentityFlags {
                allowance: parse("-identity-clock-skew-allowance", &f.clock_skew_allowance),
                issuance_lifetime: parse("-identity-issuance-lifetime", &f.issuance_lifetime),
            }
        }),
        pod_ip: e.pod_ip,
        phase: e.phase,
        proxy_version: proxy.version,
        proxy_started_at: proxy.started_at.as_ref().and_then(from_proto),
        identity_name: Some(e.identity_name).filter(|n| !n.is_empty()),
        spec_anchors,
        probe,
        probed_at,
        probe_address,
        metrics_cert_expiry,
        logs,
        problems,
        reported_at: now,
    })
}

/// At most this many kinds, samples and peers are kept of what an agent sends, each sample
/// at most [`SAMPLE_BYTES`]: an agent's report cannot make the aggregator hold more.
const MAX_KINDS: usize = 32;
const MAX_SAMPLES: usize = 3;
const MAX_PEERS: usize = 16;
const SAMPLE_BYTES: usize = 300;

/// Decodes what a pod's logs say; kinds this version does not know are named in `problems`.
pub fn log_evidence(l: pb::LogEvidence, problems: &mut Vec<String>) -> LogEvidence {
    let mut kinds = Vec::new();
    for k in l.kinds.into_iter().take(MAX_KINDS) {
        let Ok(kind) = k.kind.parse::<Kind>() else {
            problems.push(format!(
                "proxy logs: unknown kind {:?}",
                k.kind.chars().take(64).collect::<String>()
            ));
            continue;
        };
        kinds.push(LogKindEvidence {
            kind,
            total: k.total,
            last_5m: k.last_5m,
            last_1h: k.last_1h,
            first_seen: k.first_seen.as_ref().and_then(from_proto),
            last_seen: k.last_seen.as_ref().and_then(from_proto),
            samples: k
                .samples
                .into_iter()
                .take(MAX_SAMPLES)
                .map(|s| clip(s, SAMPLE_BYTES))
                .collect(),
            peers: k
                .peers
                .into_iter()
                .take(MAX_PEERS)
                .filter_map(|p| {
                    Some(LogPeer {
                        addr: p.address.parse().ok()?,
                        ephemeral_port: p.ephemeral_port,
                        count: p.count,
                        last_seen: p.last_seen.as_ref().and_then(from_proto),
                    })
                })
                .collect(),
        });
    }
    LogEvidence {
        kinds,
        problem: Some(clip(l.problem, SAMPLE_BYTES)).filter(|p| !p.is_empty()),
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Parses a presented chain; certificates that do not parse are named, never fatal.
pub fn chain(ders: &[Vec<u8>], interner: &mut Interner) -> ChainEvidence {
    let mut out = ChainEvidence::default();
    for (i, der) in ders.iter().enumerate() {
        match interner.cert(der) {
            Ok(c) => out.certs.push(c),
            Err(e) => {
                let role = if i == 0 {
                    "leaf".to_string()
                } else {
                    format!("certificate {}", i + 1)
                };
                out.unreadable
                    .push(format!("presented {role} ({} bytes): {e}", der.len()));
                if i == 0 {
                    out.leaf_unreadable = true;
                }
            }
        }
    }
    out
}

/// A verdict kind on the wire.
pub fn verdict_kind(k: VerdictKind) -> pb::Verdict {
    match k {
        VerdictKind::Ok => pb::Verdict::Ok,
        VerdictKind::StaleLeaf => pb::Verdict::StaleLeaf,
        VerdictKind::LeafExpired => pb::Verdict::LeafExpired,
        VerdictKind::LeafNotYetValid => pb::Verdict::LeafNotYetValid,
        VerdictKind::StaleTrustBundle => pb::Verdict::StaleTrustBundle,
        VerdictKind::CertUnreadable => pb::Verdict::CertUnreadable,
        VerdictKind::Unprobed => pb::Verdict::Unprobed,
        VerdictKind::Inconclusive => pb::Verdict::Inconclusive,
        VerdictKind::NameMismatch => pb::Verdict::NameMismatch,
        VerdictKind::MulticlusterAnchorMismatch => pb::Verdict::MulticlusterAnchorMismatch,
    }
}

/// A wire verdict as a domain kind; `None` for UNSPECIFIED.
pub fn verdict_from_wire(v: pb::Verdict) -> Option<VerdictKind> {
    Some(match v {
        pb::Verdict::Unspecified => return None,
        pb::Verdict::Ok => VerdictKind::Ok,
        pb::Verdict::StaleLeaf => VerdictKind::StaleLeaf,
        pb::Verdict::LeafExpired => VerdictKind::LeafExpired,
        pb::Verdict::LeafNotYetValid => VerdictKind::LeafNotYetValid,
        pb::Verdict::StaleTrustBundle => VerdictKind::StaleTrustBundle,
        pb::Verdict::CertUnreadable => VerdictKind::CertUnreadable,
        pb::Verdict::Unprobed => VerdictKind::Unprobed,
        pb::Verdict::Inconclusive => VerdictKind::Inconclusive,
        pb::Verdict::NameMismatch => VerdictKind::NameMismatch,
        pb::Verdict::MulticlusterAnchorMismatch => VerdictKind::MulticlusterAnchorMismatch,
    })
}

fn verdict(v: &Verdict) -> pb::VerdictDetail {
    pb::VerdictDetail {
        verdict: verdict_kind(v.kind) as i32,
        reason: v.reason.to_string(),
        detail: v.detail.to_string(),
        confirmed_by_logs: vec![],
    }
}

/// A parsed certificate on the wire.
pub fn certificate(c: &ParsedCert, signed_by: Option<Fingerprint>) -> pb::CertificateInfo {
    pb::CertificateInfo {
        fingerprint_sha256: c.fingerprint.to_string(),
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        not_before: Some(to_proto(c.not_before)),
        not_after: Some(to_proto(c.not_after)),
        dns_sans: c.dns_sans(),
        serial: c.serial(),
        key_algorithm: c.key_algorithm.to_string(),
        is_ca: c.is_ca,
        signed_by: signed_by.map(|f| f.to_string()).unwrap_or_default(),
    }
}

/// A pod without evidence.
pub fn pod_summary(e: &PodEntry) -> pb::PodSummary {
    let r = &e.record;
    pb::PodSummary {
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        node: r.node.clone(),
        pod_ip: r.pod_ip.clone(),
        verdicts: e.analysis.verdicts.iter().map(verdict).collect(),
        remote: e.remote.clone().unwrap_or_default(),
    }
}

/// A pod with all its evidence.
pub fn pod_detail(e: &PodEntry) -> pb::PodDetail {
    let r = &e.record;
    let a: &PodAnalysis = &e.analysis;
    let (source, spec_anchors, spec_unreadable) = match &r.spec_anchors {
        SpecAnchorsEvidence::Pem(b) => (
            "env".to_string(),
            b.certs.iter().map(|c| certificate(c, None)).collect(),
            b.unreadable.iter().map(|u| u.to_string()).collect(),
        ),
        SpecAnchorsEvidence::ConfigMap { name, key } => {
            (format!("configmap {name}/{key}"), vec![], vec![])
        }
        SpecAnchorsEvidence::Missing(_) => ("missing".to_string(), vec![], vec![]),
    };
    let (presented_chain, probe_error) = match &r.probe {
        ProbeEvidence::Chain(c) => (
            c.certs
                .iter()
                .enumerate()
                .map(|(i, cert)| certificate(cert, a.signed_by.get(i).copied().flatten()))
                .collect(),
            String::new(),
        ),
        ProbeEvidence::Failed { kind, detail } => (vec![], format!("{kind}: {detail}")),
        ProbeEvidence::Skipped(why) => (vec![], format!("skipped: {why}")),
        ProbeEvidence::None => (vec![], "not probed yet".to_string()),
    };
    pb::PodDetail {
        summary: Some(pod_summary(e)),
        uid: r.uid.clone(),
        service_account: r.service_account.clone(),
        identity_name: r.identity_name.clone().unwrap_or_default(),
        owners: r.owners.clone(),
        proxy_version: r.proxy_version.clone(),
        proxy_started_at: r.proxy_started_at.map(to_proto),
        spec_anchors_source: source,
        spec_anchors,
        spec_anchors_unreadable: spec_unreadable,
        presented_chain,
        probed_at: r.probed_at.map(to_proto),
        probe_error,
        chain_anchor: a.chain_anchor.map(|f| f.to_string()).unwrap_or_default(),
        metrics_cert_expiry: r.metrics_cert_expiry.map(to_proto),
        problems: r.problems.clone(),
        reported_at: Some(to_proto(r.reported_at)),
        log_evidence: vec![],
        logs_problem: r
            .logs
            .as_deref()
            .and_then(|l| l.problem.clone())
            .unwrap_or_default(),
    }
}

/// A log correlation on the wire.
pub fn log_correlation(c: &LogCorrelation) -> pb::LogCorrelation {
    pb::LogCorrelation {
        pod: c.pod.clone(),
        node: c.node.clone(),
        kind: c.kind.to_string(),
        peer_address: c.peer_address.clone().unwrap_or_default(),
        peer: c.peer.clone().unwrap_or_default(),
        count: c.count,
        last_hour: c.last_hour,
        first_seen: c.first_seen.map(to_proto),
        last_seen: c.last_seen.map(to_proto),
        status: c.status.name().to_string(),
        explained_by: match &c.status {
            LogStatus::Confirmed { by, .. } => by.clone(),
            _ => String::new(),
        },
        samples: c.samples.clone(),
    }
}

/// The pod verdicts that log errors confirm, by pod (`namespace/name`): the verdict and what
/// confirms it, in words. Built once per analysis, so that listing pods stays linear.
pub type Confirmations = HashMap<String, Vec<(VerdictKind, String)>>;

/// The confirmations among `correlations`.
pub fn confirmations(correlations: &[LogCorrelation]) -> Confirmations {
    let mut out = Confirmations::new();
    for c in correlations {
        if let LogStatus::Confirmed {
            verdict: Some((pod, kind)),
            ..
        } = &c.status
        {
            out.entry(pod.clone())
                .or_default()
                .push((*kind, format!("{} logged by {}", describe(c), c.pod)));
        }
    }
    out
}

/// A pod's summary with the log errors that confirm its verdicts.
pub fn with_logs(mut s: pb::PodSummary, confirmations: &Confirmations) -> pb::PodSummary {
    let Some(confirmed) = confirmations.get(&format!("{}/{}", s.namespace, s.name)) else {
        return s;
    };
    for (kind, text) in confirmed {
        let wire = verdict_kind(*kind) as i32;
        for v in s.verdicts.iter_mut().filter(|v| v.verdict == wire) {
            v.confirmed_by_logs.push(text.clone());
        }
    }
    s
}

/// A node on the wire.
pub fn node_info(n: &NodeRecord) -> pb::NodeInfo {
    pb::NodeInfo {
        name: n.name.clone(),
        connected: n.stream != 0,
        stale: n.stale,
        last_report_at: Some(to_proto(n.last_report_at)),
        pods: n.pods.len() as u32,
        agent_version: n.agent_version.clone(),
    }
}

/// The bundle on the wire.
pub fn trust_bundle(t: &Trust) -> pb::TrustBundle {
    let (available, error, anchors, unreadable) = match &t.bundle {
        BundleState::Available(b) => (
            true,
            String::new(),
            b.certs.iter().map(|c| certificate(c, None)).collect(),
            b.unreadable.iter().map(|u| u.to_string()).collect(),
        ),
        BundleState::Unavailable(why) => (false, why.clone(), vec![], vec![]),
        BundleState::Unknown => (false, "not read yet".to_string(), vec![], vec![]),
    };
    pb::TrustBundle {
        source: t.sources.bundle_source(),
        available,
        error,
        anchors,
        unreadable_blocks: unreadable,
        changed_at: t.bundle_changed_at.map(to_proto),
        resource_version: t.bundle_resource_version.clone(),
    }
}

/// The issuer on the wire.
pub fn issuer(t: &Trust, chains_to: &[Fingerprint]) -> pb::IssuerInfo {
    let (available, error, certificates) = match &t.issuer {
        IssuerState::Available(certs) => (
            true,
            String::new(),
            certs.iter().map(|c| certificate(c, None)).collect(),
        ),
        IssuerState::Unavailable(why) => (false, why.clone(), vec![]),
        IssuerState::Unknown => (false, "not read yet".to_string(), vec![]),
    };
    pb::IssuerInfo {
        source: t.sources.issuer_source(),
        available,
        error,
        certificates,
        chains_to_anchors: chains_to.iter().map(|f| f.to_string()).collect(),
    }
}

/// Cluster findings on the wire, most severe first.
pub fn findings(f: &[Finding]) -> Vec<pb::ClusterFinding> {
    let mut sorted: Vec<&Finding> = f.iter().collect();
    sorted.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.name.cmp(b.name)));
    sorted
        .into_iter()
        .map(|f| pb::ClusterFinding {
            verdict: f.name.to_string(),
            severity: match f.severity {
                Severity::Critical => "critical",
                Severity::Warning => "warning",
                Severity::Info => "info",
            }
            .to_string(),
            subject: f.subject.clone().unwrap_or_default(),
            detail: f.detail.clone(),
            pods: f.pods.clone(),
        })
        .collect()
}

/// The rotation phase on the wire.
pub fn phase(p: &Phase) -> pb::RotationPhase {
    let (phase, next, waiting) = match p {
        Phase::Steady => (
            "steady",
            "none: one anchor, and the issuer chains to it".to_string(),
            vec![],
        ),
        Phase::BundleExtended { waiting } => (
            "bundle_extended",
            format!(
                "switch the issuer to one under the new anchor once every proxy holds it ({} do not yet)",
                waiting.len()
            ),
            waiting.clone(),
        ),
        Phase::IssuerSwitched { waiting, unknown } => (
            "issuer_switched",
            format!(
                "remove the old anchor once no live leaf chains only to it ({} still do{})",
                waiting.len(),
                match unknown {
                    0 => String::new(),
                    n => format!("; the leaves of {n} pods are not known"),
                }
            ),
            waiting.clone(),
        ),
        Phase::OldAnchorRemoved { waiting } => (
            "old_anchor_removed",
            format!(
                "{} pods still depend on the removed anchor: restart them, or put the anchor back",
                waiting.len()
            ),
            waiting.clone(),
        ),
        Phase::Unknown => (
            "unknown",
            "the bundle or the issuer cannot be judged".to_string(),
            vec![],
        ),
    };
    pb::RotationPhase {
        phase: phase.to_string(),
        next_step: next,
        waiting,
    }
}

/// The plan on the wire.
pub fn plan(p: &Plan) -> pb::Plan {
    pb::Plan {
        restarts: p
            .restarts
            .iter()
            .map(|r| pb::PlannedRestart {
                workload: r.workload.to_string(),
                method: match r.method {
                    Method::RolloutRestart => "rollout_restart",
                    Method::Evict => "evict",
                }
                .to_string(),
                tier: match r.tier {
                    Tier::ControlPlane => "control_plane",
                    Tier::Extension => "extension",
                    Tier::Workload => "workload",
                }
                .to_string(),
                pods: r.pods.clone(),
                reason: r.reason.clone(),
            })
            .collect(),
        held: p
            .held
            .iter()
            .map(|h| pb::HeldTarget {
                target: h.target.to_string(),
                reason: h.reason.clone(),
            })
            .collect(),
        blockers: p.blockers.clone(),
        escalate: p.escalate,
    }
}

/// An agent's clock measurement, as it arrived at `now`.
pub fn clock_reading(c: pb::NodeClock, now: DateTime<Utc>) -> crate::clock::Reading {
    use crate::clock::{Kernel, NtpReading, Offset, Reading};
    let offset = |o: Option<pb::ClockOffset>| {
        let o = o.unwrap_or_default();
        Offset {
            // A non-finite value is no measurement; a huge one is a clock set millennia wrong.
            offset_s: o.offset_seconds.filter(|v| v.is_finite()),
            bound_s: if o.bound_seconds.is_finite() {
                o.bound_seconds.max(0.0)
            } else {
                f64::MAX
            },
            error: o.error,
        }
    };
    let k = c.kernel.unwrap_or_default();
    Reading {
        received_at: now,
        aggregator: offset(c.aggregator),
        ntp: c
            .ntp
            .into_iter()
            .map(|n| NtpReading {
                server: n.server,
                offset: offset(n.offset),
                root_distance_s: if n.root_distance_seconds.is_finite() {
                    n.root_distance_seconds.max(0.0)
                } else {
                    f64::MAX
                },
            })
            .collect(),
        kernel: Kernel {
            synchronised: k.synchronised,
            max_error_s: k.max_error_seconds,
            est_error_s: k.est_error_seconds,
            frequency_ppm: k.frequency_ppm,
            error: k.error,
        },
    }
}

/// The clock report on the wire.
pub fn clock_report(
    rows: &[crate::clock::Row],
    identity_node: Option<String>,
    settings: &crate::clock::ClockSettings,
    now: DateTime<Utc>,
) -> pb::ClockReportResponse {
    use anchorwatch_clock::drift::Forecast;
    let at = |f: Option<Forecast>| match f {
        Some(Forecast::At(t)) => Some(to_proto(t)),
        _ => None,
    };
    let beyond = |f: Option<Forecast>| matches!(f, Some(Forecast::Beyond));
    let measured: Vec<bool> = rows
        .iter()
        .filter_map(|r| r.offset.as_ref())
        .map(|o| o.reference.starts_with("ntp:"))
        .collect();
    let reference = match (measured.iter().any(|n| *n), measured.iter().all(|n| *n)) {
        (true, true) => "ntp",
        (true, false) => "mixed",
        _ => "aggregator",
    };
    pb::ClockReportResponse {
        at: Some(to_proto(now)),
        reference: reference.into(),
        warn_seconds: settings.warn_s,
        critical_seconds: settings.critical_s,
        identity_node: identity_node.unwrap_or_default(),
        nodes: rows
            .iter()
            .map(|r| pb::NodeClockRow {
                node: r.node.clone(),
                level: r.level.name().into(),
                reference: r
                    .offset
                    .as_ref()
                    .map(|o| o.reference.clone())
                    .unwrap_or_default(),
                offset_seconds: r.offset.as_ref().map(|o| o.offset_s),
                bound_seconds: r.offset.as_ref().map_or(0.0, |o| o.bound_s),
                offset_to_identity_seconds: r.to_identity.map(|(o, _)| o),
                bound_to_identity_seconds: r.to_identity.map_or(0.0, |(_, b)| b),
                kernel: r.kernel.as_ref().map(|k| pb::KernelClock {
                    synchronised: k.synchronised,
                    max_error_seconds: k.max_error_s,
                    est_error_seconds: k.est_error_s,
                    frequency_ppm: k.frequency_ppm,
                    error: k.error.clone(),
                }),
                drift_ppm: r.drift.map(|d| d.ppm),
                drift_ppm_uncertainty: r.drift.map_or(0.0, |d| d.ppm_uncertainty),
                warn_at: at(r.warn_forecast),
                critical_at: at(r.critical_forecast),
                beyond_warn: beyond(r.warn_forecast),
                beyond_critical: beyond(r.critical_forecast),
                last_sample_at: r.last_sample_at.map(to_proto),
                problem: r.problem.clone(),
                history: r
                    .history
                    .iter()
                    .map(|p| pb::ClockPoint {
                        at: Some(to_proto(p.at)),
                        offset_seconds: p.offset_s,
                        bound_seconds: p.bound_s,
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_evidence_from_an_agent_is_bounded_and_unknown_kinds_are_named() {
        let kind = |name: &str| pb::LogKindEvidence {
            kind: name.into(),
            total: 3,
            samples: vec!["é".repeat(1000); 50],
            peers: (0..100)
                .map(|i| pb::LogPeer {
                    address: format!("10.0.0.{i}:8080"),
                    count: 1,
                    ..Default::default()
                })
                .chain([pb::LogPeer {
                    address: "not an address".into(),
                    ..Default::default()
                }])
                .collect(),
            ..Default::default()
        };
        let sent = pb::LogEvidence {
            kinds: std::iter::once(kind("NO_SUCH_KIND"))
                .chain(std::iter::repeat_with(|| kind("BAD_SIGNATURE")).take(500))
                .collect(),
            problem: String::new(),
        };
        let mut problems = vec![];
        let got = log_evidence(sent, &mut problems);
        assert_eq!(problems, ["proxy logs: unknown kind \"NO_SUCH_KIND\""]);
        assert!(got.kinds.len() <= MAX_KINDS);
        assert!(got.kinds.iter().all(|k| k.samples.len() <= MAX_SAMPLES
            && k.samples.iter().all(|s| s.len() <= SAMPLE_BYTES)
            && k.peers.len() <= MAX_PEERS));
        assert_eq!(got.problem, None);
    }
}
