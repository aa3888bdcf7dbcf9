//! Pod-level verdicts (DESIGN section 5), from the evidence an agent sent and the cluster's trust
//! configuration. Pure: `now` is an argument, and every signature check goes through the
//! [`Verifier`]'s cache of facts, so re-judging every pod after a bundle change or the passing of
//! time costs lookups, not signature verifications.
//!
//! ```text
//!  PodRecord (spec anchors, presented chain, probe failure)
//!      │            Trust (bundle anchors, bundle history, issuer)
//!      ▼                 │
//!  pod_verdicts ◄────────┘──► [Verdict{kind, reason, detail}] + chain facts for queries
//! ```
//! A chain is judged twice: with dates ignored (does it build to a bundle anchor at all? else
//! STALE_LEAF, with the error a proxy holding the bundle reports, BadSignature or UnknownIssuer),
//! and for time (a certificate of the chain other than an anchor outside its validity window at
//! `now`: LEAF_EXPIRED / LEAF_NOT_YET_VALID, the reason being what rustls reports: Expired,
//! NotValidYet).

pub mod cluster;
pub mod trust_config;

use crate::model::{ChainEvidence, PodRecord, ProbeEvidence, SpecAnchorsEvidence};
use crate::trust::Trust;
use crate::verify::{ChainError, Fingerprint, ParsedCert, Verifier, check_name};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// What the aggregator concluded about a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VerdictKind {
    /// Nothing wrong found.
    Ok,
    /// The presented chain builds to no bundle anchor (dates ignored).
    StaleLeaf,
    /// A certificate of the presented chain is past its notAfter.
    LeafExpired,
    /// A certificate of the presented chain is before its notBefore.
    LeafNotYetValid,
    /// The pod's anchors lack every bundle anchor the issuer chains to.
    StaleTrustBundle,
    /// A certificate in the spec anchors or the chain does not parse.
    CertUnreadable,
    /// No chain could be obtained.
    Unprobed,
    /// Evidence a verdict needs is missing.
    Inconclusive,
    /// The leaf is not certified for the pod's identity name.
    NameMismatch,
    /// A pod of a linked cluster presents a chain that builds to no bundle anchor (dates
    /// ignored): the clusters do not share a trust anchor. Only [`remote_view`] gives it.
    MulticlusterAnchorMismatch,
}

impl VerdictKind {
    /// Whether this is a fault (not OK, UNPROBED or INCONCLUSIVE).
    pub fn is_fault(self) -> bool {
        !matches!(
            self,
            VerdictKind::Ok | VerdictKind::Unprobed | VerdictKind::Inconclusive
        )
    }

    /// The name used in the design and in logs.
    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::Ok => "OK",
            VerdictKind::StaleLeaf => "STALE_LEAF",
            VerdictKind::LeafExpired => "LEAF_EXPIRED",
            VerdictKind::LeafNotYetValid => "LEAF_NOT_YET_VALID",
            VerdictKind::StaleTrustBundle => "STALE_TRUST_BUNDLE",
            VerdictKind::CertUnreadable => "CERT_UNREADABLE",
            VerdictKind::Unprobed => "UNPROBED",
            VerdictKind::Inconclusive => "INCONCLUSIVE",
            VerdictKind::NameMismatch => "NAME_MISMATCH",
            VerdictKind::MulticlusterAnchorMismatch => "MULTICLUSTER_ANCHOR_MISMATCH",
        }
    }
}

/// One verdict and the evidence behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What.
    pub kind: VerdictKind,
    /// The error a proxy holding the current bundle would log (rustls' name), or a short reason.
    pub reason: String,
    /// Evidence in words: certificates, anchors, fingerprints.
    pub detail: String,
}

impl Verdict {
    fn new(kind: VerdictKind, reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Verdict {
            kind,
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// The analysis of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodAnalysis {
    /// Verdicts, at least one once analysed; OK alone when nothing is wrong.
    pub verdicts: Vec<Verdict>,
    /// The bundle anchor the presented chain builds to (dates ignored).
    pub chain_anchor: Option<Fingerprint>,
    /// For each presented certificate, the fingerprint of the certificate whose key signed it
    /// (an anchor or a later certificate of the chain), when found.
    pub signed_by: Vec<Option<Fingerprint>>,
}

impl PodAnalysis {
    /// Whether the pod carries this verdict.
    pub fn has(&self, kind: VerdictKind) -> bool {
        self.verdicts.iter().any(|v| v.kind == kind)
    }
}

/// Judges one pod. `node_stale` = the pod's agent stopped reporting: nothing is judged healthy.
pub fn pod_verdicts(
    pod: &PodRecord,
    trust: &Trust,
    verifier: &mut Verifier,
    node_stale: Option<&str>,
    now: DateTime<Utc>,
) -> PodAnalysis {
    let mut out = PodAnalysis::default();

    if let SpecAnchorsEvidence::Pem(bundle) = &pod.spec_anchors
        && !bundle.unreadable.is_empty()
    {
        let blocks: Vec<String> = bundle.unreadable.iter().map(|u| u.to_string()).collect();
        out.verdicts.push(Verdict::new(
            VerdictKind::CertUnreadable,
            "unreadable spec trust anchors",
            format!(
                "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS: {}",
                blocks.join("; ")
            ),
        ));
    }

    match &pod.probe {
        ProbeEvidence::Chain(chain) => judge_chain(pod, chain, trust, verifier, now, &mut out),
        ProbeEvidence::Failed { kind, detail } => out.verdicts.push(Verdict::new(
            VerdictKind::Unprobed,
            kind.clone(),
            format!("probe of the proxy failed: {detail}"),
        )),
        ProbeEvidence::Skipped(why) => out.verdicts.push(Verdict::new(
            VerdictKind::Unprobed,
            "not probed",
            why.clone(),
        )),
        ProbeEvidence::None => out.verdicts.push(Verdict::new(
            VerdictKind::Unprobed,
            "not probed yet",
            "the agent has not finished a probe of this proxy",
        )),
    }

    stale_trust_bundle(pod, trust, verifier, &mut out);

    if let Some(why) = node_stale
        && !out.verdicts.iter().any(|v| v.kind.is_fault())
    {
        out.verdicts.retain(|v| v.kind != VerdictKind::Unprobed);
        out.verdicts
            .push(Verdict::new(VerdictKind::Inconclusive, "node stale", why));
    }
    if out.verdicts.is_empty() {
        out.verdicts
            .push(Verdict::new(VerdictKind::Ok, "", describe_ok(&out, pod)));
    }
    out.verdicts.sort_by_key(|v| v.kind);
    out
}

/// The verdicts of a pod of linked cluster `cluster` (DESIGN section 5: remote pods get only
/// MULTICLUSTER_ANCHOR_MISMATCH and time verdicts): a chain that builds to no bundle anchor is
/// MULTICLUSTER_ANCHOR_MISMATCH, not STALE_LEAF (no restart here fixes it); verdicts about this
/// cluster's own proxies (STALE_TRUST_BUNDLE, NAME_MISMATCH) are dropped; time verdicts, probe
/// failures and unreadable or unjudgeable evidence stay.
pub fn remote_view(mut a: PodAnalysis, cluster: &str) -> PodAnalysis {
    a.verdicts.retain_mut(|v| match v.kind {
        VerdictKind::StaleLeaf => {
            v.kind = VerdictKind::MulticlusterAnchorMismatch;
            v.detail = format!(
                "this pod of linked cluster {cluster} presents a chain that builds to no anchor of this cluster's bundle: {}",
                v.detail
            );
            true
        }
        VerdictKind::StaleTrustBundle | VerdictKind::NameMismatch => false,
        _ => true,
    });
    if a.verdicts.is_empty() {
        a.verdicts.push(Verdict::new(VerdictKind::Ok, "", ""));
    }
    a.verdicts.sort_by_key(|v| v.kind);
    a
}

fn describe_ok(out: &PodAnalysis, pod: &PodRecord) -> String {
    match (&out.chain_anchor, &pod.probe) {
        // The anchor is in the pod's evidence (chain_anchor); formatting it here for every
        // healthy pod on every re-judgement costs more than it tells.
        (Some(_), ProbeEvidence::Chain(_)) => {
            "the presented chain builds to a bundle anchor".into()
        }
        _ => String::new(),
    }
}

fn judge_chain(
    pod: &PodRecord,
    chain: &ChainEvidence,
    trust: &Trust,
    verifier: &mut Verifier,
    now: DateTime<Utc>,
    out: &mut PodAnalysis,
) {
    if !chain.unreadable.is_empty() {
        out.verdicts.push(Verdict::new(
            VerdictKind::CertUnreadable,
            "unreadable presented certificate",
            chain.unreadable.join("; "),
        ));
    }
    let certs = &chain.certs;
    let Some(leaf) = certs.first() else {
        if chain.unreadable.is_empty() {
            out.verdicts.push(Verdict::new(
                VerdictKind::Unprobed,
                "no certificate",
                "the proxy presented an empty chain",
            ));
        }
        return;
    };
    if chain.leaf_unreadable {
        return;
    }

    if let Some(name) = &pod.identity_name
        && let Err(e) = chain.name_check.get_or_init(|| check_name(leaf, name))
    {
        out.verdicts.push(Verdict::new(
            VerdictKind::NameMismatch,
            e.to_string(),
            format!(
                "leaf {} is certified for {:?}, not {name}",
                leaf.subject, leaf.dns_sans
            ),
        ));
    }

    let Some(bundle) = trust.bundle() else {
        let why = trust.bundle_problem().unwrap_or_default();
        out.verdicts.push(Verdict::new(
            VerdictKind::Inconclusive,
            "trust bundle unavailable",
            format!("cannot judge the presented chain: {why}"),
        ));
        return;
    };
    let anchors = &bundle.certs;

    match verifier.verify(certs, anchors, None) {
        Ok(path) => {
            out.chain_anchor = Some(path.anchor);
            out.signed_by = signers(certs, &path.path, path.anchor);
        }
        Err(e) => {
            // Who signed what, even though no path reaches the bundle: the next certificate of
            // the chain, or an anchor of the bundle or of the pod's own spec.
            let spec: Vec<Arc<ParsedCert>> = match &pod.spec_anchors {
                SpecAnchorsEvidence::Pem(b) => b.certs.clone(),
                _ => Vec::new(),
            };
            out.signed_by = certs
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    certs[i + 1..]
                        .iter()
                        .chain(anchors.iter())
                        .chain(spec.iter())
                        .find(|p| p.fingerprint != c.fingerprint && issued_by(verifier, c, p))
                        .map(|p| p.fingerprint)
                })
                .collect();
            out.verdicts.push(Verdict::new(
                VerdictKind::StaleLeaf,
                e.to_string(),
                stale_leaf_detail(leaf, certs, anchors, &e),
            ));
        }
    }

    // Time, at true time; anchors' dates are never used, so certificates of the presented chain
    // that are themselves bundle anchors are skipped.
    let is_anchor = |c: &Arc<ParsedCert>| anchors.iter().any(|a| a.fingerprint == c.fingerprint);
    for (i, cert) in certs.iter().enumerate().filter(|(_, c)| !is_anchor(c)) {
        let role = if i == 0 { "leaf" } else { "CA certificate" };
        if now > cert.not_after {
            out.verdicts.push(Verdict::new(
                VerdictKind::LeafExpired,
                "Expired",
                format!(
                    "{role} {} expired at {} ({} ago)",
                    cert.subject,
                    cert.not_after.to_rfc3339(),
                    humanize(now - cert.not_after)
                ),
            ));
        } else if now < cert.not_before {
            out.verdicts.push(Verdict::new(
                VerdictKind::LeafNotYetValid,
                "NotValidYet",
                format!(
                    "{role} {} is valid from {} (in {})",
                    cert.subject,
                    cert.not_before.to_rfc3339(),
                    humanize(cert.not_before - now)
                ),
            ));
        }
    }
}

/// For each certificate of the chain, who signed it, by the path the verifier found.
fn signers(
    certs: &[Arc<ParsedCert>],
    path: &[Fingerprint],
    anchor: Fingerprint,
) -> Vec<Option<Fingerprint>> {
    certs
        .iter()
        .map(|c| {
            let pos = path.iter().position(|f| *f == c.fingerprint)?;
            Some(path.get(pos + 1).copied().unwrap_or(anchor))
        })
        .collect()
}

fn stale_leaf_detail(
    leaf: &ParsedCert,
    certs: &[Arc<ParsedCert>],
    anchors: &[Arc<ParsedCert>],
    e: &ChainError,
) -> String {
    let top = certs.last().map(|c| c.issuer.as_str()).unwrap_or_default();
    let same_name: Vec<String> = anchors
        .iter()
        .filter(|a| certs.iter().any(|c| c.issuer == a.subject))
        .map(|a| format!("sha256:{}", a.fingerprint))
        .collect();
    match e {
        ChainError::BadSignature if !same_name.is_empty() => format!(
            "leaf {} chains to an anchor named {top:?}, but the bundle's anchor of that name ({}) has another key",
            leaf.subject,
            same_name.join(", ")
        ),
        ChainError::UnknownIssuer => format!(
            "leaf {} chains to {top:?}: no anchor of the bundle has that name",
            leaf.subject
        ),
        other => format!("leaf {}: {other}", leaf.subject),
    }
}

/// Whether `parent` issued `child`: its subject is `child`'s issuer name and its key signed
/// `child` (dates ignored; a cached fact).
pub fn issued_by(verifier: &mut Verifier, child: &ParsedCert, parent: &ParsedCert) -> bool {
    child.issuer_der() == parent.subject_der() && verifier.signed_by(child, parent).is_ok()
}

/// The anchors a proxy holds: its env PEM, or for `configMapKeyRef` pods the bundle as it was
/// when the proxy started; `None` when unknown (no anchors in the spec, no bundle history).
pub fn effective_anchors(pod: &PodRecord, trust: &Trust) -> Option<Vec<Fingerprint>> {
    match &pod.spec_anchors {
        SpecAnchorsEvidence::Pem(b) => Some(b.certs.iter().map(|c| c.fingerprint).collect()),
        SpecAnchorsEvidence::ConfigMap { .. } => trust
            .anchors_at(pod.proxy_started_at)
            .map(|v| v.anchors.clone()),
        SpecAnchorsEvidence::Missing(_) => None,
    }
}

/// The bundle anchors the issuer chains to (signature and name, dates ignored); empty without a
/// bundle or an issuer. Memoised in `trust` until the bundle or the issuer changes.
pub fn issuer_anchors(trust: &Trust, verifier: &mut Verifier) -> Arc<[Fingerprint]> {
    trust.issuer_anchors(|| match (trust.bundle(), trust.issuer_cert()) {
        (Some(bundle), Some(issuer)) => bundle
            .certs
            .iter()
            .filter(|a| issued_by(verifier, issuer, a))
            .map(|a| a.fingerprint)
            .collect(),
        _ => Vec::new(),
    })
}

/// STALE_TRUST_BUNDLE: the issuer chains to bundle anchors, none of which the pod holds.
fn stale_trust_bundle(
    pod: &PodRecord,
    trust: &Trust,
    verifier: &mut Verifier,
    out: &mut PodAnalysis,
) {
    let Some(issuer) = trust.issuer_cert() else {
        return;
    };
    let issuer_anchors = issuer_anchors(trust, verifier);
    if issuer_anchors.is_empty() {
        return;
    }
    let Some(held) = effective_anchors(pod, trust) else {
        return;
    };
    if held.iter().any(|f| issuer_anchors.contains(f)) {
        return;
    }
    let source = match &pod.spec_anchors {
        SpecAnchorsEvidence::ConfigMap { name, key } => {
            format!("the bundle it read from ConfigMap {name}/{key} when it started")
        }
        _ => "its spec anchors (LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS)".to_string(),
    };
    let list = |fps: &[Fingerprint]| {
        fps.iter()
            .map(|f| format!("sha256:{f}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.verdicts.push(Verdict::new(
        VerdictKind::StaleTrustBundle,
        "proxy lacks the issuer's anchor",
        format!(
            "the issuer {} chains to {}, but {source} hold only {}: this proxy rejects peers certified by the current issuer",
            issuer.subject,
            list(&issuer_anchors),
            if held.is_empty() { "nothing".to_string() } else { list(&held) }
        ),
    ));
}

fn humanize(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().abs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests;
