//! Linkerd multicluster `Link` resources (`links.multicluster.linkerd.io`, v1alpha1) and the
//! evidence the aggregator records for the gateways they name. Pure: a Link's spec in, a
//! [`Link`] out; probe outcomes in, [`PodRecord`]s of remote pods out.
//!
//! ```text
//!  Link spec ──parse──► Link { target_cluster, addresses, target: identity + probe port }
//!                           │  (the IO shell probes each address: crate::probe)
//!                           ▼
//!  GatewayOutcome per address ──records──► PodRecord "gateway-<link>-<address>" (remote pod)
//! ```
//! The gateway's proxy is probed on `spec.probeSpec.port` (its admin port, 4191 by default) as
//! agents probe local proxies, with SNI = `spec.gatewayIdentity`. `spec.gatewayPort` (the data
//! port) is not used.

use crate::model::{PodRecord, ProbeEvidence, SpecAnchorsEvidence};
use crate::wire::{self, Interner};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The API group of the Link CRD.
pub const GROUP: &str = "multicluster.linkerd.io";
/// The version the aggregator reads.
pub const VERSION: &str = "v1alpha1";
/// The kind.
pub const KIND: &str = "Link";
/// The plural resource name (what RBAC names).
pub const PLURAL: &str = "links";
/// The probe port when `spec.probeSpec.port` is not set (the gateway proxy's admin port).
pub const DEFAULT_PROBE_PORT: u16 = 4191;

/// What the aggregator needs of one Link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The Link's namespace; its gateways are recorded there.
    pub namespace: String,
    /// The Link's name.
    pub name: String,
    /// `spec.targetClusterName`; the Link's name when it is not set (`linkerd multicluster link`
    /// names the Link after the cluster).
    pub target_cluster: String,
    /// `spec.gatewayAddress`, split on commas; empty for a Link without a gateway.
    pub addresses: Vec<String>,
    /// How to probe the gateway, or why it cannot be probed.
    pub target: Result<GatewayTarget, LinkError>,
}

/// How a gateway is probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayTarget {
    /// `spec.gatewayIdentity`: the SNI of the probe and the name the gateway's leaf carries.
    pub identity: String,
    /// `spec.probeSpec.port`.
    pub port: u16,
}

/// Why a Link's gateway cannot be probed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// A field the probe needs is not set.
    #[error("spec.{0} is not set")]
    Missing(&'static str),
    /// A port that is not a number from 1 to 65535 (Linkerd writes ports as strings).
    #[error("spec.{field} is not a port: {value}")]
    BadPort {
        /// Which field.
        field: &'static str,
        /// What it holds.
        value: String,
    },
}

impl Link {
    /// `namespace/name`, the key of its gateways in the model.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Reads a Link's spec (`None`: no spec at all). Never fails: a Link whose gateway cannot be
/// probed says why in [`Link::target`].
pub fn parse(namespace: &str, name: &str, spec: Option<&Value>) -> Link {
    let text = |field: &str| {
        spec.and_then(|s| s.get(field))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let addresses = text("gatewayAddress")
        .map(|a| {
            a.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let port = match spec.and_then(|s| s.pointer("/probeSpec/port")) {
        None | Some(Value::Null) => Ok(DEFAULT_PROBE_PORT),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(DEFAULT_PROBE_PORT),
        Some(v) => port(v),
    };
    let target = match (text("gatewayIdentity"), port) {
        (_, Err(e)) => Err(e),
        (None, _) => Err(LinkError::Missing("gatewayIdentity")),
        (Some(identity), Ok(port)) => Ok(GatewayTarget {
            identity: identity.to_string(),
            port,
        }),
    };
    Link {
        namespace: namespace.to_string(),
        name: name.to_string(),
        target_cluster: text("targetClusterName").unwrap_or(name).to_string(),
        addresses,
        target,
    }
}

fn port(v: &Value) -> Result<u16, LinkError> {
    let n = match v {
        Value::String(s) => s.trim().parse::<u16>().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    };
    n.filter(|p| *p != 0).ok_or_else(|| LinkError::BadPort {
        field: "probeSpec.port",
        value: v.to_string(),
    })
}

/// What probing one gateway address gave.
#[derive(Clone, Debug)]
pub enum GatewayOutcome {
    /// The chain the gateway presented, raw DER, leaf first.
    Chain {
        /// The socket address probed.
        address: SocketAddr,
        /// The certificates.
        certificates: Vec<Vec<u8>>,
    },
    /// No chain.
    Failed {
        /// The socket address probed, when the host resolved.
        address: Option<SocketAddr>,
        /// Machine-readable kind (`unresolvable`, `timeout`, `refused`, …).
        kind: String,
        /// Detail.
        detail: String,
    },
}

/// The remote pods of `link`: one per gateway address, named `gateway-<link>-<address>`, with the
/// outcome of its probe (`outcomes` by address), or the reason it was not probed.
pub fn records(
    link: &Link,
    mut outcomes: BTreeMap<String, GatewayOutcome>,
    now: DateTime<Utc>,
    interner: &mut Interner,
) -> Vec<PodRecord> {
    let (identity, port) = match &link.target {
        Ok(t) => (Some(t.identity.clone()), t.port),
        Err(_) => (None, DEFAULT_PROBE_PORT),
    };
    link.addresses
        .iter()
        .map(|address| {
            let (probe, probed) = match (&link.target, outcomes.remove(address)) {
                (Err(e), _) => (
                    ProbeEvidence::Skipped(format!("Link {} cannot be probed: {e}", link.key())),
                    None,
                ),
                (Ok(_), None) => (ProbeEvidence::None, None),
                (
                    Ok(_),
                    Some(GatewayOutcome::Chain {
                        address,
                        certificates,
                    }),
                ) => (
                    ProbeEvidence::Chain(wire::chain(&certificates, interner)),
                    Some(address),
                ),
                (
                    Ok(_),
                    Some(GatewayOutcome::Failed {
                        address,
                        kind,
                        detail,
                    }),
                ) => (ProbeEvidence::Failed { kind, detail }, address),
            };
            PodRecord {
                mirror: false,
                identity_controller: None,
                namespace: link.namespace.clone(),
                name: format!("gateway-{}-{address}", link.name),
                uid: format!("link:{}/{address}", link.key()),
                node: String::new(),
                service_account: identity
                    .as_deref()
                    .and_then(|i| i.split('.').next())
                    .unwrap_or_default()
                    .to_string(),
                owners: vec![format!("{KIND}/{}", link.name)],
                pod_template_hash: String::new(),
                pod_ip: probed.map(|a| a.ip().to_string()).unwrap_or_default(),
                phase: String::new(),
                proxy_version: String::new(),
                proxy_started_at: None,
                identity_name: identity.clone(),
                spec_anchors: SpecAnchorsEvidence::Missing(format!(
                    "a gateway of linked cluster {}: its trust anchors are not visible from here",
                    link.target_cluster
                )),
                probe,
                probed_at: Some(now),
                probe_address: probed
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| host_port(address, port)),
                metrics_cert_expiry: None,
                problems: vec![],
                logs: None,
                reported_at: now,
            }
        })
        .collect()
}

/// `host:port`, with an IPv6 literal in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests;
