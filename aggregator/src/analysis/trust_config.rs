//! Cluster-level verdicts about the trust configuration itself (DESIGN section 5): the issuer
//! against the bundle, validity windows of the issuer and of the anchors, algorithms, subject
//! collisions, unreadable blocks. Pure: certificates and `now` in, findings out.

use super::issued_by;
use crate::verify::{Fingerprint, ParsedCert, PemBundle, Verifier};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Cluster-level verdict kinds about the trust configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigVerdict {
    /// The bundle holds several distinct anchors.
    RotationInProgress,
    /// The issuer chains to no bundle anchor.
    IssuerNotChainedToAnchor,
    /// A bundle anchor has the issuer's issuer name but another key.
    AnchorKeyMismatch,
    /// The issuer is past its notAfter.
    IssuerExpired,
    /// The issuer is before its notBefore.
    IssuerNotYetValid,
    /// The issuer expires soon.
    IssuerExpiring,
    /// An anchor is past its notAfter.
    AnchorExpired,
    /// An anchor is before its notBefore.
    AnchorNotYetValid,
    /// An anchor expires soon.
    AnchorExpiring,
    /// The issuer's key is not ECDSA P-256, the only kind Linkerd's identity controller uses.
    UnsupportedAlgorithm,
    /// An anchor and the issuer share a subject name.
    SubjectCollision,
    /// A CERTIFICATE block of the bundle, linkerd-config or the issuer Secret does not parse.
    CertUnreadable,
}

impl ConfigVerdict {
    /// The design's name.
    pub fn name(self) -> &'static str {
        match self {
            ConfigVerdict::RotationInProgress => "ROTATION_IN_PROGRESS",
            ConfigVerdict::IssuerNotChainedToAnchor => "ISSUER_NOT_CHAINED_TO_ANCHOR",
            ConfigVerdict::AnchorKeyMismatch => "ANCHOR_KEY_MISMATCH",
            ConfigVerdict::IssuerExpired => "ISSUER_EXPIRED",
            ConfigVerdict::IssuerNotYetValid => "ISSUER_NOT_YET_VALID",
            ConfigVerdict::IssuerExpiring => "ISSUER_EXPIRING",
            ConfigVerdict::AnchorExpired => "ANCHOR_EXPIRED",
            ConfigVerdict::AnchorNotYetValid => "ANCHOR_NOT_YET_VALID",
            ConfigVerdict::AnchorExpiring => "ANCHOR_EXPIRING",
            ConfigVerdict::UnsupportedAlgorithm => "UNSUPPORTED_ALGORITHM",
            ConfigVerdict::SubjectCollision => "SUBJECT_COLLISION",
            ConfigVerdict::CertUnreadable => "CERT_UNREADABLE",
        }
    }
}

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// For information.
    Info,
    /// Needs attention, blocks nothing.
    Warning,
    /// Blocks remediation (Rule 3) or breaks the mesh.
    Critical,
}

/// One finding about the trust configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFinding {
    /// What.
    pub kind: ConfigVerdict,
    /// How serious.
    pub severity: Severity,
    /// What it is about: `configmap/linkerd-identity-trust-roots`, `secret/linkerd-identity-issuer`,
    /// `configmap/linkerd-config`, or an anchor `sha256:<fingerprint>`.
    pub subject: String,
    /// Evidence in words.
    pub detail: String,
}

/// What the trust checks need to know.
pub struct TrustConfig<'a> {
    /// The bundle; `None` when it cannot be read (that is reported elsewhere).
    pub bundle: Option<&'a PemBundle>,
    /// linkerd-config's `identityTrustAnchorsPEM`, when known.
    pub linkerd_config: Option<&'a PemBundle>,
    /// The issuer chain from the Secret, issuer first.
    pub issuer: Option<&'a [Arc<ParsedCert>]>,
    /// Blocks of the issuer Secret's certificate entries that did not parse.
    pub issuer_unreadable: usize,
    /// Lifetime of leaves the identity controller issues (`issuanceLifetime`, default 24 h).
    pub issuance_lifetime: TimeDelta,
    /// The identity controller's clock-skew allowance (default 20 s).
    pub allowance: TimeDelta,
    /// Warn this long before an issuer or anchor expires (`linkerd check` uses 60 days).
    pub warn_before: TimeDelta,
    /// Bundle anchors that belong to a linked cluster: not part of a rotation.
    pub linked_anchors: &'a BTreeSet<Fingerprint>,
}

/// Bundle subject of the ConfigMap, for findings.
pub const BUNDLE_SUBJECT: &str = "configmap/linkerd-identity-trust-roots";
/// linkerd-config subject, for findings.
pub const CONFIG_SUBJECT: &str = "configmap/linkerd-config";
/// Issuer Secret subject, for findings.
pub const ISSUER_SUBJECT: &str = "secret/linkerd-identity-issuer";

/// Every finding about the trust configuration at `now`.
pub fn check(
    cfg: &TrustConfig<'_>,
    verifier: &mut Verifier,
    now: DateTime<Utc>,
) -> Vec<ConfigFinding> {
    let mut out = Vec::new();
    let mut push = |kind, severity, subject: &str, detail: String| {
        out.push(ConfigFinding {
            kind,
            severity,
            subject: subject.to_string(),
            detail,
        })
    };
    for (subject, bundle) in [
        (BUNDLE_SUBJECT, cfg.bundle),
        (CONFIG_SUBJECT, cfg.linkerd_config),
    ] {
        if let Some(b) = bundle
            && !b.unreadable.is_empty()
        {
            let blocks: Vec<String> = b.unreadable.iter().map(|u| u.to_string()).collect();
            let severity = if subject == BUNDLE_SUBJECT {
                Severity::Critical
            } else {
                Severity::Warning
            };
            push(
                ConfigVerdict::CertUnreadable,
                severity,
                subject,
                blocks.join("; "),
            );
        }
    }
    if cfg.issuer_unreadable > 0 {
        push(
            ConfigVerdict::CertUnreadable,
            Severity::Critical,
            ISSUER_SUBJECT,
            format!(
                "{} certificate block(s) do not parse",
                cfg.issuer_unreadable
            ),
        );
    }
    let anchors: &[Arc<ParsedCert>] = cfg.bundle.map(|b| b.certs.as_slice()).unwrap_or_default();
    let local: Vec<Fingerprint> = anchors
        .iter()
        .map(|a| a.fingerprint)
        .filter(|f| !cfg.linked_anchors.contains(f))
        .collect();
    if local.len() > 1 {
        let linked = if local.len() < anchors.len() {
            format!(
                " (besides {} of linked clusters)",
                anchors.len() - local.len()
            )
        } else {
            String::new()
        };
        push(
            ConfigVerdict::RotationInProgress,
            Severity::Info,
            BUNDLE_SUBJECT,
            format!(
                "the bundle holds {} distinct anchors{linked}: {}",
                local.len(),
                list(local.iter().copied())
            ),
        );
    }
    let Some(issuer) = cfg.issuer.and_then(|c| c.first()) else {
        return out;
    };

    // The issuer against the bundle.
    let chained: Vec<&Arc<ParsedCert>> = anchors
        .iter()
        .filter(|a| issued_by(verifier, issuer, a))
        .collect();
    if cfg.bundle.is_some() && chained.is_empty() {
        push(
            ConfigVerdict::IssuerNotChainedToAnchor,
            Severity::Critical,
            ISSUER_SUBJECT,
            format!(
                "the issuer {} (issued by {:?}) chains to no anchor of the bundle",
                issuer.subject, issuer.issuer
            ),
        );
        for a in anchors
            .iter()
            .filter(|a| a.subject_der() == issuer.issuer_der())
        {
            push(
                ConfigVerdict::AnchorKeyMismatch,
                Severity::Critical,
                &format!("sha256:{}", a.fingerprint),
                format!(
                    "bundle anchor {} has the issuer's issuer name but another key: the issuer was signed by a different root of the same name",
                    a.subject
                ),
            );
        }
    }

    // The issuer's own window. Every fresh leaf is clamped to the issuer's notAfter, so an issuer
    // that expires within one issuance lifetime (plus the allowance) already shortens leaves.
    if now > issuer.not_after {
        push(
            ConfigVerdict::IssuerExpired,
            Severity::Critical,
            ISSUER_SUBJECT,
            format!("the issuer expired at {}", issuer.not_after.to_rfc3339()),
        );
    } else if now < issuer.not_before {
        push(
            ConfigVerdict::IssuerNotYetValid,
            Severity::Critical,
            ISSUER_SUBJECT,
            format!(
                "the issuer is valid from {}",
                issuer.not_before.to_rfc3339()
            ),
        );
    } else {
        let left = issuer.not_after - now;
        if left < cfg.issuance_lifetime + cfg.allowance {
            push(
                ConfigVerdict::IssuerExpiring,
                Severity::Critical,
                ISSUER_SUBJECT,
                format!(
                    "the issuer expires at {}, within one issuance lifetime",
                    issuer.not_after.to_rfc3339()
                ),
            );
        } else if left < cfg.warn_before {
            push(
                ConfigVerdict::IssuerExpiring,
                Severity::Warning,
                ISSUER_SUBJECT,
                format!("the issuer expires at {}", issuer.not_after.to_rfc3339()),
            );
        }
    }

    // Anchors' windows: proxies ignore them, linkerd-identity (Go crypto/x509) does not. When every
    // anchor the issuer chains to is outside its window, identity signs nothing: critical.
    let usable = |a: &ParsedCert| now >= a.not_before && now <= a.not_after;
    let issuer_stuck = !chained.is_empty() && chained.iter().all(|a| !usable(a));
    for a in anchors {
        let is_issuers = chained.iter().any(|c| c.fingerprint == a.fingerprint);
        let subject = format!("sha256:{}", a.fingerprint);
        if now > a.not_after {
            let severity = if is_issuers && issuer_stuck {
                Severity::Critical
            } else {
                Severity::Warning
            };
            push(
                ConfigVerdict::AnchorExpired,
                severity,
                &subject,
                format!(
                    "anchor {} expired at {}",
                    a.subject,
                    a.not_after.to_rfc3339()
                ),
            );
        } else if now < a.not_before {
            let severity = if is_issuers && issuer_stuck {
                Severity::Critical
            } else {
                Severity::Warning
            };
            push(
                ConfigVerdict::AnchorNotYetValid,
                severity,
                &subject,
                format!(
                    "anchor {} is valid from {}",
                    a.subject,
                    a.not_before.to_rfc3339()
                ),
            );
        } else {
            let left = a.not_after - now;
            let all_issuers_expiring = is_issuers
                && chained
                    .iter()
                    .all(|c| c.not_after - now < cfg.issuance_lifetime);
            if left < cfg.issuance_lifetime && all_issuers_expiring {
                push(
                    ConfigVerdict::AnchorExpiring,
                    Severity::Critical,
                    &subject,
                    format!(
                        "anchor {} expires at {}, within one issuance lifetime",
                        a.subject,
                        a.not_after.to_rfc3339()
                    ),
                );
            } else if left < cfg.warn_before {
                push(
                    ConfigVerdict::AnchorExpiring,
                    Severity::Warning,
                    &subject,
                    format!(
                        "anchor {} expires at {}",
                        a.subject,
                        a.not_after.to_rfc3339()
                    ),
                );
            }
        }
    }

    if issuer.key_algorithm != "ECDSA P-256" {
        push(
            ConfigVerdict::UnsupportedAlgorithm,
            Severity::Critical,
            ISSUER_SUBJECT,
            format!(
                "the issuer's key is {}; Linkerd's identity controller needs ECDSA P-256",
                issuer.key_algorithm
            ),
        );
    }
    for a in anchors
        .iter()
        .filter(|a| a.subject_der() == issuer.subject_der() && a.fingerprint != issuer.fingerprint)
    {
        push(
            ConfigVerdict::SubjectCollision,
            Severity::Warning,
            ISSUER_SUBJECT,
            format!(
                "the issuer and anchor sha256:{} share the subject {}",
                a.fingerprint, a.subject
            ),
        );
    }
    out
}

fn list(fps: impl Iterator<Item = Fingerprint>) -> String {
    fps.map(|f| format!("sha256:{f}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
