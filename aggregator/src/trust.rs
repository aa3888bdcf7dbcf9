//! The cluster's trust configuration as the aggregator holds it: the trust bundle (ConfigMap
//! `linkerd-identity-trust-roots`, key `ca-bundle.crt`) with the history of its changes, and the
//! issuer certificate (Secret `linkerd-identity-issuer`). Pure: the watch module feeds it the
//! objects' contents; nothing here reads a private key.

use crate::verify::{Fingerprint, ParsedCert, PemBundle, parse_pem_bundle};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where the bundle and issuer live.
#[derive(Clone, Debug)]
pub struct TrustSources {
    /// The Linkerd control-plane namespace.
    pub namespace: String,
    /// Trust-roots ConfigMap name.
    pub config_map: String,
    /// Key of the bundle in the ConfigMap.
    pub key: String,
    /// Issuer Secret name.
    pub secret: String,
}

impl TrustSources {
    /// `namespace/name` of the ConfigMap.
    pub fn bundle_source(&self) -> String {
        format!("{}/{}", self.namespace, self.config_map)
    }

    /// `namespace/name` of the Secret.
    pub fn issuer_source(&self) -> String {
        format!("{}/{}", self.namespace, self.secret)
    }
}

/// The trust bundle, as last read.
#[derive(Clone, Debug)]
pub enum BundleState {
    /// Nothing read yet (the watch has not listed).
    Unknown,
    /// The ConfigMap or its key is missing, or it holds no certificate; why.
    Unavailable(String),
    /// Parsed bundle.
    Available(Arc<PemBundle>),
}

/// One version of the bundle, for judging pods that read it at start.
#[derive(Clone, Debug)]
pub struct BundleVersion {
    /// When the aggregator saw this version appear.
    pub seen_at: DateTime<Utc>,
    /// The anchors' fingerprints.
    pub anchors: Vec<Fingerprint>,
    /// The anchors.
    pub certs: Vec<Arc<ParsedCert>>,
}

/// The issuer, as last read.
#[derive(Clone, Debug)]
pub enum IssuerState {
    /// Nothing read yet.
    Unknown,
    /// The Secret is missing or holds no readable certificate; why.
    Unavailable(String),
    /// The issuer certificate first, then any other certificate that came with it.
    Available(Vec<Arc<ParsedCert>>),
}

/// The trust configuration.
#[derive(Clone, Debug)]
pub struct Trust {
    /// Where it comes from.
    pub sources: TrustSources,
    /// Written by `set_bundle`; the current bundle.
    pub bundle: BundleState,
    /// The ConfigMap's resourceVersion behind `bundle`.
    pub bundle_resource_version: String,
    /// When the bundle's anchor set last changed (aggregator clock).
    pub bundle_changed_at: Option<DateTime<Utc>>,
    /// Every anchor set seen, oldest first (bounded).
    pub history: Vec<BundleVersion>,
    /// Written by `set_issuer`.
    pub issuer: IssuerState,
    /// Memo: the bundle anchors the issuer chains to; cleared whenever the bundle or the issuer
    /// changes.
    issuer_anchors: std::sync::OnceLock<Arc<[Fingerprint]>>,
    /// Names this state for memos kept outside: a new value, never seen before, at every
    /// `set_bundle` and `set_issuer`.
    generation: u64,
}

/// Source of [`Trust::generation`] values, unique across every `Trust` of the process.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

const HISTORY_LIMIT: usize = 32;

/// Result of reading the bundle from a ConfigMap's data.
pub fn read_bundle(data: Option<&BTreeMap<String, String>>, sources: &TrustSources) -> BundleState {
    let Some(text) = data.and_then(|d| d.get(&sources.key)) else {
        return BundleState::Unavailable(format!(
            "ConfigMap {} has no key {}",
            sources.bundle_source(),
            sources.key
        ));
    };
    let bundle = parse_pem_bundle(text);
    if bundle.certs.is_empty() {
        let why = if bundle.unreadable.is_empty() {
            "holds no certificate".to_string()
        } else {
            format!(
                "holds no readable certificate ({} unreadable)",
                bundle.unreadable.len()
            )
        };
        return BundleState::Unavailable(format!(
            "{} key {} {why}",
            sources.bundle_source(),
            sources.key
        ));
    }
    BundleState::Available(Arc::new(bundle))
}

/// Result of reading the issuer certificate from a Secret's data: `crt.pem` (Linkerd's own
/// scheme) or `tls.crt` (`kubernetes.io/tls`). Key entries are never looked at.
pub fn read_issuer(
    data: Option<&BTreeMap<String, Vec<u8>>>,
    sources: &TrustSources,
) -> IssuerState {
    let Some(data) = data else {
        return IssuerState::Unavailable(format!("Secret {} has no data", sources.issuer_source()));
    };
    let Some((key, bytes)) = ["crt.pem", "tls.crt"]
        .iter()
        .find_map(|k| data.get(*k).map(|v| (*k, v)))
    else {
        return IssuerState::Unavailable(format!(
            "Secret {} has neither crt.pem nor tls.crt",
            sources.issuer_source()
        ));
    };
    let text = String::from_utf8_lossy(bytes);
    let parsed = parse_pem_bundle(&text);
    if parsed.certs.is_empty() {
        return IssuerState::Unavailable(format!(
            "Secret {} key {key} holds no readable certificate",
            sources.issuer_source()
        ));
    }
    IssuerState::Available(parsed.certs.clone())
}

/// CERTIFICATE blocks of the bundle that do not parse, when none does: the bundle is then
/// unavailable, and these are reported as CERT_UNREADABLE of the ConfigMap.
pub fn bundle_unreadable(
    data: Option<&BTreeMap<String, String>>,
    sources: &TrustSources,
) -> Vec<String> {
    let Some(text) = data.and_then(|d| d.get(&sources.key)) else {
        return vec![];
    };
    let b = parse_pem_bundle(text);
    if b.certs.is_empty() {
        b.unreadable.iter().map(|u| u.to_string()).collect()
    } else {
        vec![]
    }
}

/// Certificate blocks of the issuer Secret's certificate key that do not parse (CERT_UNREADABLE).
pub fn issuer_unreadable(data: Option<&BTreeMap<String, Vec<u8>>>) -> usize {
    data.and_then(|d| ["crt.pem", "tls.crt"].iter().find_map(|k| d.get(*k)))
        .map(|bytes| {
            parse_pem_bundle(&String::from_utf8_lossy(bytes))
                .unreadable
                .len()
        })
        .unwrap_or(0)
}

impl Trust {
    /// Nothing known yet.
    pub fn new(sources: TrustSources) -> Self {
        Trust {
            sources,
            bundle: BundleState::Unknown,
            bundle_resource_version: String::new(),
            bundle_changed_at: None,
            history: Vec::new(),
            issuer: IssuerState::Unknown,
            issuer_anchors: std::sync::OnceLock::new(),
            generation: next_generation(),
        }
    }

    /// Changes with every `set_bundle` and `set_issuer` (and differs between `Trust` values
    /// built apart): what is memoised under one generation holds while it stays the same. The
    /// public fields are written through those two methods only; a direct write would leave
    /// such memos stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes a new bundle state; returns whether the anchor set (or availability) changed.
    /// When the bundle last changed from one set of anchors to another, as seen here (not its
    /// first reading).
    pub fn bundle_replaced_at(&self) -> Option<DateTime<Utc>> {
        (self.history.len() >= 2)
            .then(|| self.history.last().map(|v| v.seen_at))
            .flatten()
    }

    pub fn set_bundle(
        &mut self,
        state: BundleState,
        resource_version: String,
        now: DateTime<Utc>,
    ) -> bool {
        self.issuer_anchors = std::sync::OnceLock::new();
        self.generation = next_generation();
        let old = self.anchor_fingerprints();
        let was_available = matches!(self.bundle, BundleState::Available(_));
        self.bundle = state;
        self.bundle_resource_version = resource_version;
        let new = self.anchor_fingerprints();
        let is_available = matches!(self.bundle, BundleState::Available(_));
        if let Some(anchors) = &new
            && old.as_ref() != Some(anchors)
        {
            self.bundle_changed_at = Some(now);
            self.history.push(BundleVersion {
                seen_at: now,
                anchors: anchors.clone(),
                certs: self.bundle().map(|b| b.certs.clone()).unwrap_or_default(),
            });
            if self.history.len() > HISTORY_LIMIT {
                self.history.remove(0);
            }
        }
        old != new || was_available != is_available
    }

    /// Takes a new issuer state.
    pub fn set_issuer(&mut self, state: IssuerState) {
        self.issuer = state;
        self.issuer_anchors = std::sync::OnceLock::new();
        self.generation = next_generation();
    }

    /// The bundle anchors the issuer chains to, computed by `compute` once per bundle and issuer.
    pub fn issuer_anchors(&self, compute: impl FnOnce() -> Vec<Fingerprint>) -> Arc<[Fingerprint]> {
        self.issuer_anchors.get_or_init(|| compute().into()).clone()
    }

    /// The current bundle, when readable.
    pub fn bundle(&self) -> Option<&Arc<PemBundle>> {
        match &self.bundle {
            BundleState::Available(b) => Some(b),
            _ => None,
        }
    }

    /// The issuer certificate, when readable.
    pub fn issuer_cert(&self) -> Option<&Arc<ParsedCert>> {
        match &self.issuer {
            IssuerState::Available(certs) => certs.first(),
            _ => None,
        }
    }

    /// Why the bundle cannot be used, when it cannot.
    pub fn bundle_problem(&self) -> Option<String> {
        match &self.bundle {
            BundleState::Unknown => Some(format!(
                "trust bundle {} not read yet",
                self.sources.bundle_source()
            )),
            BundleState::Unavailable(why) => Some(why.clone()),
            BundleState::Available(_) => None,
        }
    }

    /// The anchor set a proxy that started at `started_at` read from the ConfigMap, by the
    /// bundle history; the oldest known version when it started before anything was seen.
    pub fn anchors_at(&self, started_at: Option<DateTime<Utc>>) -> Option<&BundleVersion> {
        self.history.get(self.version_at(started_at)?)
    }

    /// The index in `history` of [`anchors_at`](Self::anchors_at)'s answer.
    pub fn version_at(&self, started_at: Option<DateTime<Utc>>) -> Option<usize> {
        match started_at {
            Some(t) => self
                .history
                .iter()
                .rposition(|v| v.seen_at <= t)
                .or_else(|| (!self.history.is_empty()).then_some(0)),
            None => self.history.len().checked_sub(1),
        }
    }

    /// An anchor the bundle held at some point, by fingerprint.
    pub fn history_cert(&self, fp: &Fingerprint) -> Option<Arc<ParsedCert>> {
        self.history
            .iter()
            .rev()
            .flat_map(|v| v.certs.iter())
            .find(|c| c.fingerprint == *fp)
            .cloned()
    }

    fn anchor_fingerprints(&self) -> Option<Vec<Fingerprint>> {
        self.bundle()
            .map(|b| b.certs.iter().map(|c| c.fingerprint).collect())
    }
}

#[cfg(test)]
mod tests;
