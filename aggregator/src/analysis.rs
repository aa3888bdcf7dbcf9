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
//!
//! A judgement is put together from three parts: what the pod's own evidence fixes (spec and
//! probe verdicts, the leaf's name), what the trust configuration decides with dates ignored
//! (the chain against the bundle, the pod's anchors against the issuer's), and the dates at
//! `now`. [`pod_verdicts`] computes all three; the live model keeps the first with each pod and
//! shares the second between pods judged alike ([`Judge`]), so that a bundle change costs a
//! lookup per pod.

pub mod cluster;
pub mod logs;
mod memo;
pub mod trust_config;

pub use memo::{Judge, PodBasis};

use crate::model::{PodRecord, ProbeEvidence, SpecAnchorsEvidence};
use crate::trust::Trust;
use crate::verify::{ChainError, Fingerprint, ParsedCert, Verifier, check_name};
use chrono::{DateTime, Utc};
use std::sync::{Arc, LazyLock};

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

/// One verdict and the evidence behind it. Texts are shared: pods judged alike carry the same
/// evidence, held once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What.
    pub kind: VerdictKind,
    /// The error a proxy holding the current bundle would log (rustls' name), or a short reason.
    pub reason: Arc<str>,
    /// Evidence in words: certificates, anchors, fingerprints.
    pub detail: Arc<str>,
}

impl Verdict {
    fn new(kind: VerdictKind, reason: impl Into<Arc<str>>, detail: impl Into<Arc<str>>) -> Self {
        Verdict {
            kind,
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// Texts that most pods carry, allocated once for all of them.
static NO_TEXT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));
static CHAIN_BUILDS: LazyLock<Arc<str>> =
    LazyLock::new(|| Arc::from("the presented chain builds to a bundle anchor"));
static NODE_STALE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("node stale"));

/// The analysis of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodAnalysis {
    /// Verdicts, at least one once analysed; OK alone when nothing is wrong.
    pub verdicts: Vec<Verdict>,
    /// The bundle anchor the presented chain builds to (dates ignored).
    pub chain_anchor: Option<Fingerprint>,
    /// For each presented certificate, the fingerprint of the certificate whose key signed it
    /// (an anchor or a later certificate of the chain), when found.
    pub signed_by: Arc<[Option<Fingerprint>]>,
}

impl PodAnalysis {
    /// Whether the pod carries this verdict.
    pub fn has(&self, kind: VerdictKind) -> bool {
        self.verdicts.iter().any(|v| v.kind == kind)
    }
}

/// Judges one pod. `node_stale` = the pod's agent stopped reporting: nothing is judged healthy.
///
/// A judgement has three parts, which [`Judge`] memoises apart: what the pod's own evidence
/// fixes, what the trust configuration decides with dates ignored (the chain against the bundle;
/// the pod's anchors against the issuer's), and time.
pub fn pod_verdicts(
    pod: &PodRecord,
    trust: &Trust,
    verifier: &mut Verifier,
    node_stale: Option<&str>,
    now: DateTime<Utc>,
) -> PodAnalysis {
    let own = own_verdicts(pod);
    let certs = judged_chain(pod);
    let chain = certs.map(|certs| chain_part(pod, certs, trust, verifier));
    let stale_bundle = stale_trust_bundle(pod, trust, verifier);
    let leaf = certs.and_then(|c| c.first());
    assemble(
        pod,
        &own,
        chain
            .as_ref()
            .zip(leaf.map(|l| (l.not_before, l.not_after))),
        stale_bundle.as_ref(),
        node_stale.map(Arc::from).as_ref(),
        now,
    )
}

/// The verdicts a pod's own evidence fixes, in the order they are reported: unreadable spec
/// anchors, then the probe's outcome (unreadable or missing certificates, a failed probe, the
/// leaf's name). They change only with a new report.
fn own_verdicts(pod: &PodRecord) -> Vec<Verdict> {
    let mut out = Vec::new();
    if let SpecAnchorsEvidence::Pem(bundle) = &pod.spec_anchors
        && !bundle.unreadable.is_empty()
    {
        let blocks: Vec<String> = bundle.unreadable.iter().map(|u| u.to_string()).collect();
        out.push(Verdict::new(
            VerdictKind::CertUnreadable,
            "unreadable spec trust anchors",
            format!(
                "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS: {}",
                blocks.join("; ")
            ),
        ));
    }

    match &pod.probe {
        ProbeEvidence::Chain(chain) => {
            if !chain.unreadable.is_empty() {
                out.push(Verdict::new(
                    VerdictKind::CertUnreadable,
                    "unreadable presented certificate",
                    chain.unreadable.join("; "),
                ));
            }
            match chain.certs.first() {
                None if chain.unreadable.is_empty() => out.push(Verdict::new(
                    VerdictKind::Unprobed,
                    "no certificate",
                    "the proxy presented an empty chain",
                )),
                Some(leaf) if !chain.leaf_unreadable => {
                    if let Some(name) = &pod.identity_name
                        && let Err(e) = check_name(leaf, name)
                    {
                        out.push(Verdict::new(
                            VerdictKind::NameMismatch,
                            e.to_string(),
                            format!(
                                "leaf {} is certified for {:?}, not {name}",
                                leaf.subject,
                                leaf.dns_sans()
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        ProbeEvidence::Failed { kind, detail } => out.push(Verdict::new(
            VerdictKind::Unprobed,
            kind.as_str(),
            format!("probe of the proxy failed: {detail}"),
        )),
        ProbeEvidence::Skipped(why) => out.push(Verdict::new(
            VerdictKind::Unprobed,
            "not probed",
            why.as_str(),
        )),
        ProbeEvidence::None => out.push(Verdict::new(
            VerdictKind::Unprobed,
            "not probed yet",
            "the agent has not finished a probe of this proxy",
        )),
    }
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
            )
            .into();
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

/// The presented chain when it is judged against the bundle: its leaf parsed.
fn judged_chain(pod: &PodRecord) -> Option<&[Arc<ParsedCert>]> {
    match &pod.probe {
        ProbeEvidence::Chain(c) if !c.certs.is_empty() && !c.leaf_unreadable => Some(&c.certs),
        _ => None,
    }
}

/// A presented chain judged against the trust configuration with dates ignored: all of a chain's
/// judgement that does not change with time. Chains of one [`ChainShape`](crate::verify::ChainShape)
/// share it (see [`Judge`]).
#[derive(Clone, Debug)]
struct ChainPart {
    /// INCONCLUSIVE when there is no bundle, STALE_LEAF when no path reaches it.
    verdict: Option<Verdict>,
    /// A bundle was there to judge against: the certificates' dates are judged too.
    dated: bool,
    /// The anchor the chain builds to.
    anchor: Option<Fingerprint>,
    /// Who signed each presented certificate.
    signed_by: Arc<[Option<Fingerprint>]>,
    /// The leaf is not itself a bundle anchor (anchors' dates are never judged).
    leaf_dated: bool,
    /// The presented CA certificates that are not bundle anchors, in presented order.
    dated_cas: Vec<Arc<ParsedCert>>,
}

fn chain_part(
    pod: &PodRecord,
    certs: &[Arc<ParsedCert>],
    trust: &Trust,
    verifier: &mut Verifier,
) -> ChainPart {
    let Some(bundle) = trust.bundle() else {
        let why = trust.bundle_problem().unwrap_or_default();
        return ChainPart {
            verdict: Some(Verdict::new(
                VerdictKind::Inconclusive,
                "trust bundle unavailable",
                format!("cannot judge the presented chain: {why}"),
            )),
            dated: false,
            anchor: None,
            signed_by: Arc::default(),
            leaf_dated: false,
            dated_cas: Vec::new(),
        };
    };
    let anchors = &bundle.certs;

    let (anchor, signed_by, verdict) = match verifier.verify(certs, anchors, None) {
        Ok(path) => (
            Some(path.anchor),
            signers(certs, &path.path, path.anchor),
            None,
        ),
        Err(e) => {
            // Who signed what, even though no path reaches the bundle: the next certificate of
            // the chain, or an anchor of the bundle or of the pod's own spec.
            let spec: &[Arc<ParsedCert>] = match &pod.spec_anchors {
                SpecAnchorsEvidence::Pem(b) => &b.certs,
                _ => &[],
            };
            let signed_by = certs
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
            let verdict = Verdict::new(
                VerdictKind::StaleLeaf,
                e.to_string(),
                stale_leaf_detail(&certs[0], certs, anchors, &e),
            );
            (None, signed_by, Some(verdict))
        }
    };

    // Time is judged at true time by `dated_verdict`; anchors' dates are never used, so
    // certificates of the presented chain that are themselves bundle anchors are skipped.
    let is_anchor = |c: &Arc<ParsedCert>| anchors.iter().any(|a| a.fingerprint == c.fingerprint);
    ChainPart {
        verdict,
        dated: true,
        anchor,
        signed_by,
        leaf_dated: !is_anchor(&certs[0]),
        dated_cas: certs[1..]
            .iter()
            .filter(|c| !is_anchor(c))
            .cloned()
            .collect(),
    }
}

/// A certificate's validity window: notBefore, notAfter.
type Validity = (DateTime<Utc>, DateTime<Utc>);

/// Puts a judgement together from its parts, in the order the verdicts are reported. `chain`
/// comes with the leaf's validity window; the leaf itself is read only when outside it.
fn assemble(
    pod: &PodRecord,
    own: &[Verdict],
    chain: Option<(&ChainPart, Validity)>,
    stale_bundle: Option<&Verdict>,
    node_stale: Option<&Arc<str>>,
    now: DateTime<Utc>,
) -> PodAnalysis {
    let mut out = PodAnalysis::default();
    out.verdicts.extend_from_slice(own);
    if let Some((chain, (not_before, not_after))) = chain {
        out.verdicts.extend(chain.verdict.iter().cloned());
        out.chain_anchor = chain.anchor;
        out.signed_by = chain.signed_by.clone();
        if chain.dated {
            if chain.leaf_dated
                && (now > not_after || now < not_before)
                && let Some(leaf) = judged_chain(pod).and_then(|c| c.first())
            {
                out.verdicts.extend(dated_verdict("leaf", leaf, now));
            }
            for ca in &chain.dated_cas {
                out.verdicts
                    .extend(dated_verdict("CA certificate", ca, now));
            }
        }
    }
    out.verdicts.extend(stale_bundle.cloned());

    if let Some(why) = node_stale
        && !out.verdicts.iter().any(|v| v.kind.is_fault())
    {
        out.verdicts.retain(|v| v.kind != VerdictKind::Unprobed);
        out.verdicts.push(Verdict {
            kind: VerdictKind::Inconclusive,
            reason: NODE_STALE.clone(),
            detail: why.clone(),
        });
    }
    if out.verdicts.is_empty() {
        // The anchor is in the pod's evidence (chain_anchor); formatting it here for every
        // healthy pod on every re-judgement costs more than it tells.
        let detail = match (&out.chain_anchor, &pod.probe) {
            (Some(_), ProbeEvidence::Chain(_)) => CHAIN_BUILDS.clone(),
            _ => NO_TEXT.clone(),
        };
        out.verdicts.push(Verdict {
            kind: VerdictKind::Ok,
            reason: NO_TEXT.clone(),
            detail,
        });
    }
    out.verdicts.sort_by_key(|v| v.kind);
    out
}

/// The first instant after which [`assemble`] may judge `chain`'s dates otherwise than at `now`:
/// the notAfter of a certificate within its window; `now` itself while one is out of it (the
/// verdict's text says how long ago it expired, or how long until it is valid); `None` when no
/// date is judged.
fn next_change(chain: Option<(&ChainPart, Validity)>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (part, leaf) = chain.filter(|(part, _)| part.dated)?;
    let cas = part.dated_cas.iter().map(|c| (c.not_before, c.not_after));
    part.leaf_dated
        .then_some(leaf)
        .into_iter()
        .chain(cas)
        .map(
            |(not_before, not_after)| match now < not_before || now > not_after {
                true => now,
                false => not_after,
            },
        )
        .min()
}

/// LEAF_EXPIRED / LEAF_NOT_YET_VALID for one certificate of the presented chain, at true time.
fn dated_verdict(role: &str, cert: &ParsedCert, now: DateTime<Utc>) -> Option<Verdict> {
    if now > cert.not_after {
        Some(Verdict::new(
            VerdictKind::LeafExpired,
            "Expired",
            format!(
                "{role} {} expired at {} ({} ago)",
                cert.subject,
                cert.not_after.to_rfc3339(),
                humanize(now - cert.not_after)
            ),
        ))
    } else if now < cert.not_before {
        Some(Verdict::new(
            VerdictKind::LeafNotYetValid,
            "NotValidYet",
            format!(
                "{role} {} is valid from {} (in {})",
                cert.subject,
                cert.not_before.to_rfc3339(),
                humanize(cert.not_before - now)
            ),
        ))
    } else {
        None
    }
}

/// For each certificate of the chain, who signed it, by the path the verifier found.
fn signers(
    certs: &[Arc<ParsedCert>],
    path: &[Fingerprint],
    anchor: Fingerprint,
) -> Arc<[Option<Fingerprint>]> {
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

/// STALE_TRUST_BUNDLE: the issuer chains to bundle anchors, none of which the pod holds. Depends
/// on the pod's anchors (its spec, or the bundle version it started with) and the trust
/// configuration only.
fn stale_trust_bundle(pod: &PodRecord, trust: &Trust, verifier: &mut Verifier) -> Option<Verdict> {
    let issuer = trust.issuer_cert()?;
    let issuer_anchors = issuer_anchors(trust, verifier);
    if issuer_anchors.is_empty() {
        return None;
    }
    let held = effective_anchors(pod, trust)?;
    if held.iter().any(|f| issuer_anchors.contains(f)) {
        return None;
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
    Some(Verdict::new(
        VerdictKind::StaleTrustBundle,
        "proxy lacks the issuer's anchor",
        format!(
            "the issuer {} chains to {}, but {source} hold only {}: this proxy rejects peers certified by the current issuer",
            issuer.subject,
            list(&issuer_anchors),
            if held.is_empty() {
                "nothing".to_string()
            } else {
                list(&held)
            }
        ),
    ))
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
