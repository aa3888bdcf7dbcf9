//! Proxy log evidence against the certificate analysis: who rejected whom, and whether the
//! certificates explain it.
//!
//! ```text
//!  pod X's logs: kind K, peer address A ──A's IP──► pod Y (or none)
//!        │
//!        ▼  what the certificates predict, most specific first
//!  BAD_SIGNATURE / UNKNOWN_ISSUER / ALERT_SENT   Y: STALE_LEAF (CERT_UNREADABLE, MULTICLUSTER…)
//!                                                X: STALE_TRUST_BUNDLE
//!  EXPIRED / NOT_VALID_YET                       CLOCK_SKEW of X's node (Rule 1), then Y's dates
//!  NOT_VALID_FOR_NAME                            Y: NAME_MISMATCH
//!  ALERT_RECEIVED (Y rejected X)                 X: a fault of its own chain; Y: STALE_TRUST_BUNDLE;
//!                                                CLOCK_SKEW of Y's node
//!  LOCAL_CERT_REJECTED                           X: STALE_TRUST_BUNDLE, IDENTITY_STALE_ISSUER,
//!                                                issuer findings, CLOCK_SKEW of X's node
//!  IDENTITY_UNREACHABLE, WAITING_FOR_IDENTITY    IDENTITY_UNREACHABLE(node) (a minute of waiting,
//!    (> a minute, nothing else logged)           with no certificate error beside it)
//!        │
//!        ▼
//!  LogCorrelation{status: confirmed | unexplained | identity_unreachable | informational}
//!  unexplained ─► INCONCLUSIVE(namespace/pod): the logs show a failure no verdict predicts
//! ```
//! Only lines from the last hour before `now` ([`RECENT`]) count: older errors say nothing about
//! the mesh now. Peers are matched to pods by IP (the port names the container, or is an inbound
//! client's ephemeral port); an address no reported pod has stays unmatched.

use super::cluster::{ClusterInput, Finding};
use super::trust_config::Severity;
use super::{PodAnalysis, VerdictKind};
use crate::model::{LogKindEvidence, PodRecord};
use anchorwatch_proxylog::{IDENTITY_WAIT_ESCALATION, Kind};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Lines older than this before `now` are not evidence about the mesh now.
pub const RECENT: TimeDelta = TimeDelta::hours(1);

/// What explains a logged error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogStatus {
    /// A verdict or finding predicts this failure: it is confirmed by the logs.
    Confirmed {
        /// The verdict or finding, in words, e.g. `STALE_LEAF of emojivoto/voting (BadSignature)`.
        by: String,
        /// The pod verdict it confirms, when it is one: (`namespace/name`, verdict).
        verdict: Option<(String, VerdictKind)>,
    },
    /// No verdict or finding explains it.
    Unexplained,
    /// Evidence that the proxy cannot reach linkerd-identity.
    IdentityUnreachable,
    /// Not a fault (a short wait for identity at start-up).
    Informational,
}

impl LogStatus {
    /// The name shown to users.
    pub fn name(&self) -> &'static str {
        match self {
            LogStatus::Confirmed { .. } => "confirmed",
            LogStatus::Unexplained => "unexplained",
            LogStatus::IdentityUnreachable => "identity_unreachable",
            LogStatus::Informational => "informational",
        }
    }
}

/// One kind of error one pod logged about one peer (or about none), and what explains it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCorrelation {
    /// The pod whose proxy logged it (`namespace/name`).
    pub pod: String,
    /// Its node.
    pub node: String,
    /// The kind, e.g. `BAD_SIGNATURE`, `ALERT_RECEIVED(BadCertificate)`.
    pub kind: Kind,
    /// The peer address as logged; `None` when the lines name none.
    pub peer_address: Option<String>,
    /// The pod at that address (`namespace/name`), when a reported pod has its IP.
    pub peer: Option<String>,
    /// Lines (naming this peer, when there is one).
    pub count: u64,
    /// Lines of the kind in the last hour before the agent sent them.
    pub last_hour: u64,
    /// Log time of the first line of the kind.
    pub first_seen: Option<DateTime<Utc>>,
    /// Log time of the last line (naming this peer, when there is one).
    pub last_seen: Option<DateTime<Utc>>,
    /// What explains it.
    pub status: LogStatus,
    /// The last lines of the kind.
    pub samples: Vec<String>,
}

impl LogCorrelation {
    /// Whether it concerns pod `key`, as the logger or as the peer.
    pub fn involves(&self, key: &str) -> bool {
        self.pod == key || self.peer.as_deref() == Some(key)
    }
}

/// Everything the correlation reads besides the pods' logs.
pub struct Context<'a> {
    /// The analysis input (pods, their nodes and IPs, `now`).
    pub input: &'a ClusterInput,
    /// Pod verdicts by `namespace/name`.
    pub pods: &'a BTreeMap<String, std::sync::Arc<PodAnalysis>>,
    /// The cluster findings so far (clock skew, identity, issuer).
    pub findings: &'a [Finding],
}

/// Correlates every pod's recent log evidence; returns the correlations (most lines first) and
/// an INCONCLUSIVE finding per pod that logs errors no verdict explains.
pub fn correlate(ctx: &Context<'_>) -> (Vec<LogCorrelation>, Vec<Finding>) {
    let now = ctx.input.now;
    // Most pods log nothing: then there is nothing to index.
    let logged = ctx
        .input
        .pods
        .iter()
        .any(|p| p.record.logs.as_ref().is_some_and(|l| !l.kinds.is_empty()));
    if !logged {
        return (Vec::new(), Vec::new());
    }
    let by_ip: BTreeMap<IpAddr, String> = ctx
        .input
        .pods
        .iter()
        .filter_map(|p| Some((p.record.pod_ip.parse().ok()?, key(&p.record))))
        .collect();
    let node_of: BTreeMap<String, &str> = ctx
        .input
        .pods
        .iter()
        .map(|p| (key(&p.record), p.record.node.as_str()))
        .collect();
    let mut out = Vec::new();
    for p in &ctx.input.pods {
        let Some(logs) = &p.record.logs else { continue };
        let x = key(&p.record);
        let recent = |t: Option<DateTime<Utc>>| t.is_some_and(|t| now - t <= RECENT);
        let certificate_errors = logs.kinds.iter().any(|k| {
            recent(k.last_seen) && (k.kind.is_verification() || k.kind == Kind::LocalCertRejected)
        });
        for k in logs
            .kinds
            .iter()
            .filter(|k| recent(k.last_seen) && k.kind != Kind::Ignore)
        {
            // (address, pod, lines, last seen) per peer named, and the lines naming none.
            type Row = (Option<String>, Option<String>, u64, Option<DateTime<Utc>>);
            let mut rows: Vec<Row> = k
                .peers
                .iter()
                .filter(|peer| recent(peer.last_seen))
                .map(|peer| {
                    let pod = by_ip.get(&peer.addr.ip()).cloned();
                    (Some(peer.addr.to_string()), pod, peer.count, peer.last_seen)
                })
                .collect();
            let named: u64 = k.peers.iter().map(|peer| peer.count).sum();
            if k.total > named || rows.is_empty() {
                rows.push((
                    None,
                    None,
                    k.total.saturating_sub(named).max(1),
                    k.last_seen,
                ));
            }
            for (peer_address, peer, count, last_seen) in rows {
                let mut status = explain(
                    ctx,
                    &x,
                    &p.record.node,
                    k,
                    (peer.as_deref(), peer_address.is_some()),
                    &node_of,
                    certificate_errors,
                );
                // Lines from before the trust bundle last changed are about the configuration
                // that was: once the change fixed what they showed, they are history, not a new
                // fault.
                if status == LogStatus::Unexplained
                    && let (Some(changed), Some(last)) =
                        (ctx.input.trust.bundle_replaced_at(), last_seen)
                    && last < changed
                {
                    status = LogStatus::Informational;
                }
                out.push(LogCorrelation {
                    pod: x.clone(),
                    node: p.record.node.clone(),
                    kind: k.kind,
                    peer_address,
                    peer,
                    count,
                    last_hour: k.last_1h,
                    first_seen: k.first_seen,
                    last_seen,
                    status,
                    samples: k.samples.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.pod.cmp(&b.pod)));
    let mut unexplained: BTreeMap<&str, Vec<&LogCorrelation>> = BTreeMap::new();
    for c in out.iter().filter(|c| c.status == LogStatus::Unexplained) {
        unexplained.entry(c.pod.as_str()).or_default().push(c);
    }
    let findings = unexplained
        .into_iter()
        .map(|(pod, cs)| {
            let what: Vec<String> = cs.iter().map(|c| describe(c)).collect();
            let mut pods: BTreeSet<String> = BTreeSet::from([pod.to_string()]);
            pods.extend(cs.iter().filter_map(|c| c.peer.clone()));
            Finding {
                name: "INCONCLUSIVE",
                subject: Some(pod.to_string()),
                severity: Severity::Warning,
                detail: format!(
                    "the proxy of {pod} logs errors that no certificate verdict explains: {}; the chains and anchors anchorwatch sees do not predict them (a peer outside the mesh, or evidence it lacks)",
                    what.join("; ")
                ),
                pods: pods.into_iter().collect(),
            }
        })
        .collect();
    (out, findings)
}

/// `12× BAD_SIGNATURE toward 10.1.2.3:8080 (shop/api)`.
pub fn describe(c: &LogCorrelation) -> String {
    let toward = match (&c.peer_address, &c.peer) {
        (Some(a), Some(p)) => format!(" naming {a} ({p})"),
        (Some(a), None) => format!(" naming {a} (no reported pod)"),
        _ => String::new(),
    };
    format!("{}× {}{toward}", c.count, c.kind)
}

fn key(r: &PodRecord) -> String {
    format!("{}/{}", r.namespace, r.name)
}

/// What explains kind `k` logged by pod `x` on `node` about peer `y`.
fn explain(
    ctx: &Context<'_>,
    x: &str,
    node: &str,
    k: &LogKindEvidence,
    (y, named): (Option<&str>, bool),
    node_of: &BTreeMap<String, &str>,
    certificate_errors: bool,
) -> LogStatus {
    // `y`: the reported pod the line's peer is; `named`: the line names a peer at all. A peer
    // that is no reported pod (outside the mesh, or unknown) is not explained by this proxy's
    // own certificates.
    let verdict = |pod: &str, kinds: &[VerdictKind]| -> Option<LogStatus> {
        let a = ctx.pods.get(pod)?;
        let v = a.verdicts.iter().find(|v| kinds.contains(&v.kind))?;
        let reason = if v.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", v.reason)
        };
        Some(LogStatus::Confirmed {
            by: format!("{} of {pod}{reason}", v.kind.name()),
            verdict: Some((pod.to_string(), v.kind)),
        })
    };
    let finding = |names: &[&str], subject: Option<&str>| -> Option<LogStatus> {
        let f = ctx.findings.iter().find(|f| {
            names.contains(&f.name) && subject.is_none_or(|s| f.subject.as_deref() == Some(s))
        })?;
        let on = f
            .subject
            .as_deref()
            .map(|s| format!("({s})"))
            .unwrap_or_default();
        Some(LogStatus::Confirmed {
            by: format!("{}{on}", f.name),
            verdict: None,
        })
    };
    let skew = |n: &str| finding(&["CLOCK_SKEW"], Some(n));
    let peer_chain = [
        VerdictKind::StaleLeaf,
        VerdictKind::CertUnreadable,
        VerdictKind::MulticlusterAnchorMismatch,
    ];
    let own_chain = [
        VerdictKind::StaleLeaf,
        VerdictKind::LeafExpired,
        VerdictKind::LeafNotYetValid,
        VerdictKind::NameMismatch,
        VerdictKind::CertUnreadable,
    ];
    let local_cert = || {
        verdict(x, &[VerdictKind::StaleTrustBundle])
            .or_else(|| {
                finding(
                    &[
                        "IDENTITY_STALE_ISSUER",
                        "ISSUER_EXPIRED",
                        "ISSUER_NOT_YET_VALID",
                        "ISSUER_NOT_CHAINED_TO_ANCHOR",
                    ],
                    None,
                )
            })
            .or_else(|| skew(node))
    };
    let found = match k.kind {
        Kind::BadSignature | Kind::UnknownIssuer | Kind::AlertSent(_) => y
            .and_then(|y| verdict(y, &peer_chain))
            .or_else(|| verdict(x, &[VerdictKind::StaleTrustBundle]))
            .or_else(|| {
                y.filter(|_| matches!(k.kind, Kind::AlertSent(_)))
                    .and_then(|y| verdict(y, &own_chain))
            })
            .or_else(|| (!named).then(local_cert).flatten()),
        // Rule 1: time errors on a skewed node are the skew's.
        Kind::Expired => skew(node)
            .or_else(|| y.and_then(|y| verdict(y, &[VerdictKind::LeafExpired])))
            .or_else(|| (!named).then(local_cert).flatten()),
        Kind::NotValidYet => skew(node)
            .or_else(|| y.and_then(|y| verdict(y, &[VerdictKind::LeafNotYetValid])))
            .or_else(|| (!named).then(local_cert).flatten()),
        Kind::NotValidForName => y.and_then(|y| verdict(y, &[VerdictKind::NameMismatch])),
        Kind::AlertReceived(_) => verdict(x, &own_chain)
            .or_else(|| y.and_then(|y| verdict(y, &[VerdictKind::StaleTrustBundle])))
            .or_else(|| y.and_then(|y| node_of.get(y)).and_then(|n| skew(n))),
        Kind::LocalCertRejected => local_cert(),
        Kind::IdentityUnreachable => return LogStatus::IdentityUnreachable,
        Kind::WaitingForIdentity => {
            let waited = match (k.first_seen, k.last_seen) {
                (Some(a), Some(b)) => {
                    b - a > TimeDelta::from_std(IDENTITY_WAIT_ESCALATION).unwrap_or(TimeDelta::MAX)
                }
                _ => false,
            };
            // Counts only when nothing else explains the wait.
            return if waited && !certificate_errors {
                LogStatus::IdentityUnreachable
            } else {
                LogStatus::Informational
            };
        }
        Kind::Ignore => return LogStatus::Informational,
    };
    found.unwrap_or(LogStatus::Unexplained)
}

/// The pods whose recent logs say they cannot reach linkerd-identity.
pub fn identity_unreachable(correlations: &[LogCorrelation]) -> BTreeSet<&str> {
    correlations
        .iter()
        .filter(|c| c.status == LogStatus::IdentityUnreachable)
        .map(|c| c.pod.as_str())
        .collect()
}

#[cfg(test)]
mod tests;
