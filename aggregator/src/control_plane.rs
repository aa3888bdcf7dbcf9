//! What the control plane shows besides the bundle and the issuer (DESIGN section 5, inputs):
//! the anchors `linkerd-config` records (`values.identityTrustAnchorsPEM`), and the issuer events
//! of `linkerd-identity` (`IssuerUpdated`, `IssuerUpdateSkipped`, `IssuerValidationFailed`),
//! which say whether identity took the Secret's issuer. Pure: the watch module feeds it the
//! objects' contents.

use crate::verify::{PemBundle, parse_pem_bundle};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What the model keeps of the control plane, for the analysis.
#[derive(Clone, Debug, Default)]
pub struct ControlPlane {
    /// `linkerd-config`'s recorded anchors.
    pub linkerd_config: LinkerdConfig,
    /// Certificate blocks of the issuer Secret that do not parse.
    pub issuer_unreadable: usize,
    /// The bundle's blocks that do not parse, when none does.
    pub bundle_unreadable: Vec<String>,
    /// When the issuer Secret's certificate last changed: seen changing by the watch, or its
    /// last write recorded by the API server (managedFields) when first read; `None`: unknown.
    pub issuer_changed_at: Option<DateTime<Utc>>,
    /// linkerd-identity's issuer events.
    pub identity_events: IdentityEvents,
    /// Namespaces labelled `linkerd.io/extension` (their pods restart in the extensions' tier).
    pub extension_namespaces: BTreeSet<String>,
}

/// Name of the ConfigMap that records Linkerd's install values.
pub const LINKERD_CONFIG: &str = "linkerd-config";

/// The anchors `linkerd-config` records.
#[derive(Clone, Debug, Default)]
pub enum LinkerdConfig {
    /// Not read yet, or the ConfigMap does not exist (it is optional for the analysis).
    #[default]
    Absent,
    /// The ConfigMap exists but records no anchors anyone could read; why.
    Unreadable(String),
    /// The recorded anchors, parsed (unreadable blocks kept for CERT_UNREADABLE).
    Anchors(Arc<PemBundle>),
}

impl LinkerdConfig {
    /// The parsed anchors, when there are any.
    pub fn anchors(&self) -> Option<&Arc<PemBundle>> {
        match self {
            LinkerdConfig::Anchors(b) => Some(b),
            _ => None,
        }
    }
}

/// Reads `linkerd-config`'s data: `values` (YAML, Linkerd ≥ 2.10) with
/// `identityTrustAnchorsPEM`, or `global` (JSON, older releases) with
/// `identityContext.trustAnchorsPem`.
pub fn read_linkerd_config(data: Option<&BTreeMap<String, String>>) -> LinkerdConfig {
    let Some(data) = data else {
        return LinkerdConfig::Unreadable(format!("ConfigMap {LINKERD_CONFIG} has no data"));
    };
    let pem = if let Some(values) = data.get("values") {
        match serde_yaml::from_str::<serde_yaml::Value>(values) {
            Ok(v) => v
                .get("identityTrustAnchorsPEM")
                .and_then(|p| p.as_str())
                .map(str::to_string),
            Err(e) => {
                return LinkerdConfig::Unreadable(format!(
                    "ConfigMap {LINKERD_CONFIG} key values is not YAML: {e}"
                ));
            }
        }
    } else if let Some(global) = data.get("global") {
        match serde_json::from_str::<serde_json::Value>(global) {
            Ok(v) => v
                .pointer("/identityContext/trustAnchorsPem")
                .and_then(|p| p.as_str())
                .map(str::to_string),
            Err(e) => {
                return LinkerdConfig::Unreadable(format!(
                    "ConfigMap {LINKERD_CONFIG} key global is not JSON: {e}"
                ));
            }
        }
    } else {
        return LinkerdConfig::Unreadable(format!(
            "ConfigMap {LINKERD_CONFIG} has neither values nor global"
        ));
    };
    match pem {
        Some(text) => LinkerdConfig::Anchors(Arc::new(parse_pem_bundle(&text))),
        None => LinkerdConfig::Unreadable(format!(
            "ConfigMap {LINKERD_CONFIG} records no identity trust anchors"
        )),
    }
}

/// The issuer events linkerd-identity records on its Deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuerEventKind {
    /// `IssuerUpdated`: it loaded the issuer the Secret now holds.
    Updated,
    /// `IssuerUpdateSkipped`: the new issuer failed to load or verify; it kept the previous one.
    Skipped,
    /// `IssuerValidationFailed`: its issuer failed validation when it tried to sign (expired or
    /// not yet valid at its clock); it signs nothing.
    ValidationFailed,
}

impl IssuerEventKind {
    /// From an Event's reason; `None` for reasons that are not about the issuer.
    pub fn from_reason(reason: &str) -> Option<Self> {
        match reason {
            "IssuerUpdated" => Some(IssuerEventKind::Updated),
            "IssuerUpdateSkipped" => Some(IssuerEventKind::Skipped),
            "IssuerValidationFailed" => Some(IssuerEventKind::ValidationFailed),
            _ => None,
        }
    }

    /// The Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            IssuerEventKind::Updated => "IssuerUpdated",
            IssuerEventKind::Skipped => "IssuerUpdateSkipped",
            IssuerEventKind::ValidationFailed => "IssuerValidationFailed",
        }
    }
}

/// One issuer event of linkerd-identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityEvent {
    /// What happened.
    pub kind: IssuerEventKind,
    /// The event's message (identity's own words).
    pub message: String,
    /// When it last happened (the Event's lastTimestamp, eventTime or creation); `None`: unknown.
    pub at: Option<DateTime<Utc>>,
}

/// The most events kept per Event object name; Kubernetes keeps them about an hour anyway.
const EVENTS_LIMIT: usize = 64;

/// linkerd-identity's issuer events, by Event object name, so a repeated event (count + 1) replaces
/// its earlier version.
#[derive(Clone, Debug, Default)]
pub struct IdentityEvents {
    by_name: BTreeMap<String, IdentityEvent>,
}

impl IdentityEvents {
    /// An Event was added or updated.
    pub fn apply(&mut self, name: &str, event: IdentityEvent) {
        self.by_name.insert(name.to_string(), event);
        while self.by_name.len() > EVENTS_LIMIT {
            let oldest = self
                .by_name
                .iter()
                .min_by_key(|(_, e)| e.at)
                .map(|(n, _)| n.clone());
            match oldest {
                Some(n) => self.by_name.remove(&n),
                None => break,
            };
        }
    }

    /// An Event was deleted (expired).
    pub fn delete(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    /// Replaces everything (after a re-list).
    pub fn replace(&mut self, events: impl IntoIterator<Item = (String, IdentityEvent)>) {
        self.by_name.clear();
        for (n, e) in events {
            self.apply(&n, e);
        }
    }

    /// Every event, oldest first (events with no time first).
    pub fn ordered(&self) -> Vec<IdentityEvent> {
        let mut v: Vec<IdentityEvent> = self.by_name.values().cloned().collect();
        v.sort_by_key(|e| e.at);
        v
    }
}

#[cfg(test)]
mod tests;
