//! What the aggregator takes from each Kubernetes object it reads, whether a watch delivers it
//! (live) or a `kubectl get … -o yaml` dump holds it (`diagnose`): one conversion per object, so
//! both paths feed the model the same values. Pure: objects in, model values out; a Secret's
//! key entries are never looked at.

use crate::control_plane::{IdentityEvent, IssuerEventKind, LinkerdConfig, read_linkerd_config};
use crate::trust::{
    BundleState, IssuerState, TrustSources, bundle_unreadable, issuer_unreadable, read_bundle,
    read_issuer,
};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret};

/// The trust bundle as a ConfigMap gives it (`None`: the ConfigMap does not exist).
#[derive(Clone, Debug)]
pub struct BundleRead {
    /// The bundle.
    pub state: BundleState,
    /// The ConfigMap's resourceVersion.
    pub resource_version: String,
    /// Its certificate blocks that do not parse, when none does.
    pub unreadable: Vec<String>,
}

/// Reads the trust-roots ConfigMap.
pub fn bundle(cm: Option<&ConfigMap>, sources: &TrustSources) -> BundleRead {
    match cm {
        Some(cm) => BundleRead {
            state: read_bundle(cm.data.as_ref(), sources),
            resource_version: cm.metadata.resource_version.clone().unwrap_or_default(),
            unreadable: bundle_unreadable(cm.data.as_ref(), sources),
        },
        None => BundleRead {
            state: BundleState::Unavailable(format!(
                "ConfigMap {} not found",
                sources.bundle_source()
            )),
            resource_version: String::new(),
            unreadable: vec![],
        },
    }
}

/// The issuer as its Secret gives it.
#[derive(Clone, Debug)]
pub struct IssuerRead {
    /// The issuer.
    pub state: IssuerState,
    /// Certificate blocks of its certificate key that do not parse.
    pub unreadable: usize,
    /// The API server's record of the Secret's last write (managedFields), for when nobody saw
    /// the change itself.
    pub written_at: Option<DateTime<Utc>>,
}

/// Reads the issuer Secret: only `crt.pem` / `tls.crt` (and never a key).
pub fn issuer(secret: Option<&Secret>, sources: &TrustSources) -> IssuerRead {
    let Some(s) = secret else {
        return IssuerRead {
            state: IssuerState::Unavailable(format!(
                "Secret {} not found",
                sources.issuer_source()
            )),
            unreadable: 0,
            written_at: None,
        };
    };
    let written_at = s
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.time.as_ref().and_then(crate::time::from_k8s))
        .max();
    let data: Option<std::collections::BTreeMap<String, Vec<u8>>> = s.data.as_ref().map(|d| {
        d.iter()
            .filter(|(k, _)| CERTIFICATE_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect()
    });
    IssuerRead {
        state: read_issuer(data.as_ref(), sources),
        unreadable: issuer_unreadable(data.as_ref()),
        written_at,
    }
}

/// The Secret keys that hold certificates; everything else (`key.pem`, `tls.key`) is private.
pub const CERTIFICATE_KEYS: [&str; 3] = ["crt.pem", "tls.crt", "ca.crt"];

/// Reads `linkerd-config` (`None`: it does not exist; it is optional).
pub fn linkerd_config(cm: Option<&ConfigMap>) -> LinkerdConfig {
    match cm {
        Some(cm) => read_linkerd_config(cm.data.as_ref()),
        None => LinkerdConfig::Absent,
    }
}

/// Whether an Event is about linkerd-identity's Deployment (where it records issuer events).
pub fn is_identity_event(e: &Event) -> bool {
    e.involved_object.kind.as_deref() == Some("Deployment")
        && e.involved_object.name.as_deref() == Some("linkerd-identity")
}

/// An Event as an issuer event, with its object name; `None` for other reasons.
pub fn identity_event(e: &Event) -> Option<(String, IdentityEvent)> {
    let kind = IssuerEventKind::from_reason(e.reason.as_deref()?)?;
    let at = e
        .last_timestamp
        .as_ref()
        .and_then(crate::time::from_k8s)
        .or_else(|| {
            e.series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .and_then(crate::time::from_k8s_micro)
        })
        .or_else(|| e.event_time.as_ref().and_then(crate::time::from_k8s_micro))
        .or_else(|| e.first_timestamp.as_ref().and_then(crate::time::from_k8s))
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .and_then(crate::time::from_k8s)
        });
    Some((
        e.metadata.name.clone().unwrap_or_default(),
        IdentityEvent {
            kind,
            message: e.message.clone().unwrap_or_default(),
            at,
        },
    ))
}

/// The label that marks a namespace as a Linkerd extension's.
pub const EXTENSION_LABEL: &str = "linkerd.io/extension";

/// Whether a namespace is a Linkerd extension's (labelled `linkerd.io/extension`).
pub fn is_extension_namespace(ns: &Namespace) -> bool {
    ns.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(EXTENSION_LABEL))
}
