//! `anchorwatch-aggregator diagnose`: the aggregator's analysis over `kubectl get … -o yaml|json`
//! dumps and copies of proxy log folders, with no cluster access.
//!
//! ```text
//!  dump files ──dump::read_paths──► objects ──Collected::accept──► pods (podspec::meshed_pod →
//!                                  (streamed,   (per kind, through     the evidence an agent sends
//!                                   bounded)     objects::*)           → wire::pod_record), bundle,
//!                                                                     issuer, events, owners, …
//!  Collected ──build──► model::Cluster (set_bundle, set_issuer, update_control_plane,
//!                       update_owners, replace_node, node_clock: as the watches and agents feed it)
//!            ──Cluster::analysis_input + proxy logs──► analyse ──► Report ──render──► table | JSON
//! ```
//! The model, the analysis and the planner are the live aggregator's. What a dump cannot show is
//! said, not guessed: no pod's presented chain (every pod UNPROBED, with that reason) and no node
//! clock (INCONCLUSIVE, unless `--clock` gives it). Private keys are never read; Secret data other
//! than the issuer's certificate is never kept.

pub mod dump;
pub mod logs;
mod render;
#[cfg(test)]
mod tests;

use crate::analysis::cluster::UpdateStrategy;
use crate::analysis::cluster::{ClusterInput, Report, Settings};
use crate::clock::{Kernel, Offset, Reading};
use crate::control_plane::{IdentityEvent, LINKERD_CONFIG};
use crate::model::{Cluster, PodRecord};
use crate::objects;
use crate::owners::{Controller, OwnerIndex};
use crate::trust::{BundleState, IssuerState, Trust, TrustSources};
use crate::verify::{Fingerprint, parse_pem_bundle};
use anchorwatch_proto::v1 as pb;
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Secret};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub use dump::Skipped;

/// Arguments of `diagnose`.
#[derive(clap::Args, Debug, Clone)]
pub struct DiagnoseArgs {
    /// Files or folders of `kubectl get … -o yaml` (or `-o json`) output: multi-document YAML,
    /// `List` objects (kinds may mix) or JSON. Pods (`kubectl get pods -A`), the Linkerd
    /// namespace's ConfigMaps, Secrets and Events, and optionally Deployments, ReplicaSets,
    /// StatefulSets, DaemonSets and Namespaces. Other kinds are ignored.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// A copy of proxy log folders: `/var/log/pods` itself, a `<namespace>_<pod>_<uid>` folder
    /// or its `linkerd-proxy` folder. Repeat for more.
    #[arg(
        long,
        env = "ANCHORWATCH_DIAGNOSE_LOGS",
        value_name = "DIR",
        value_delimiter = ','
    )]
    pub logs: Vec<PathBuf>,

    /// Output format.
    #[arg(
        long,
        env = "ANCHORWATCH_DIAGNOSE_OUTPUT",
        value_enum,
        default_value = "table"
    )]
    pub output: Output,

    /// A node's clock offset, measured by hand (`node-1=+0.3s`, `node-2=-25s`, `node-3=0`), for
    /// what a dump cannot show; nodes without one are INCONCLUSIVE. Repeat for more.
    #[arg(long = "clock", env = "ANCHORWATCH_DIAGNOSE_CLOCK", value_name = "NODE=OFFSET", value_parser = parse_clock, value_delimiter = ',')]
    pub clocks: Vec<(String, f64)>,

    /// A question to answer from the same rules: `remove-anchor=<sha256 fingerprint (a prefix
    /// of at least 8 hex digits) or PEM file>` (is it safe to remove this anchor from the bundle
    /// now?) or `issuer=<PEM file>` (is it safe to switch the issuer to this certificate?).
    #[arg(long = "what-if", env = "ANCHORWATCH_DIAGNOSE_WHAT_IF", value_name = "QUESTION", value_parser = parse_what_if)]
    pub what_if: Vec<WhatIf>,

    /// Judge at this time (RFC 3339) instead of now, e.g. the time the dump was taken.
    #[arg(long, env = "ANCHORWATCH_DIAGNOSE_NOW", value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,

    /// The Linkerd control-plane namespace.
    #[arg(
        long,
        env = "ANCHORWATCH_DIAGNOSE_LINKERD_NAMESPACE",
        default_value = "linkerd"
    )]
    pub linkerd_namespace: String,

    /// Lifetime of the leaves linkerd-identity issues, when its pod's flags do not say.
    #[arg(long, env = "ANCHORWATCH_DIAGNOSE_ISSUANCE_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration)]
    pub issuance_lifetime: std::time::Duration,

    /// linkerd-identity's clock-skew allowance, when its pod's flags do not say.
    #[arg(long, env = "ANCHORWATCH_DIAGNOSE_CLOCK_SKEW_ALLOWANCE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub clock_skew_allowance: std::time::Duration,

    /// Warn this long before the issuer or a trust anchor expires.
    #[arg(long, env = "ANCHORWATCH_DIAGNOSE_EXPIRY_WARNING", default_value = "60days", value_parser = humantime::parse_duration)]
    pub expiry_warning: std::time::Duration,

    /// The most input one object may take; a larger one is skipped (and said so), so memory
    /// stays bounded whatever the size of the dump.
    #[arg(
        long,
        env = "ANCHORWATCH_DIAGNOSE_MAX_OBJECT_MIB",
        default_value_t = 32
    )]
    pub max_object_mib: usize,
}

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Readable tables.
    Table,
    /// One JSON document (findings, rotation phase and plan named as the Summary RPC names them).
    Json,
}

/// A what-if question.
#[derive(Clone, Debug)]
pub enum WhatIf {
    /// Remove the anchor with this fingerprint (or fingerprint prefix) from the bundle.
    RemoveAnchor(String),
    /// Remove this anchor (PEM text, from a file) from the bundle.
    RemoveAnchorPem(PathBuf, String),
    /// Switch the issuer to this certificate (PEM text, from a file).
    Issuer(PathBuf, String),
}

fn parse_clock(s: &str) -> Result<(String, f64), String> {
    let (node, offset) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: give NODE=OFFSET, e.g. node-1=+0.3s"))?;
    let o = offset.trim();
    let (sign, rest) = match o.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, o.strip_prefix('+').unwrap_or(o)),
    };
    let secs = if let Some(ms) = rest.strip_suffix("ms") {
        ms.parse::<f64>().map(|v| v / 1000.0)
    } else {
        rest.strip_suffix('s').unwrap_or(rest).parse::<f64>()
    }
    .ok()
    .filter(|v| v.is_finite())
    .ok_or_else(|| format!("{offset:?} is not an offset like +0.3s, -25s or 150ms"))?;
    if node.is_empty() {
        return Err(format!("{s:?}: the node name is empty"));
    }
    Ok((node.to_string(), sign * secs))
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

fn parse_what_if(s: &str) -> Result<WhatIf, String> {
    let read = |p: &str| -> Result<(PathBuf, String), String> {
        let text = std::fs::read(p).map_err(|e| format!("cannot read {p}: {e}"))?;
        if text.len() > 1 << 20 {
            return Err(format!("{p} is larger than 1 MiB: not a certificate"));
        }
        Ok((p.into(), String::from_utf8_lossy(&text).into_owned()))
    };
    match s.split_once('=') {
        Some(("remove-anchor", v)) => {
            let hex = v.trim_start_matches("sha256:").to_ascii_lowercase();
            let all_hex = !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
            if all_hex && hex.len() >= 8 {
                Ok(WhatIf::RemoveAnchor(hex))
            } else if v.starts_with("sha256:") || (all_hex && !std::path::Path::new(v).exists()) {
                Err(format!(
                    "{s:?}: give at least 8 hex digits of the anchor's sha256 fingerprint (or a PEM file)"
                ))
            } else {
                let (p, t) = read(v)?;
                Ok(WhatIf::RemoveAnchorPem(p, t))
            }
        }
        Some(("issuer", v)) => {
            let (p, t) = read(v)?;
            Ok(WhatIf::Issuer(p, t))
        }
        _ => Err(format!(
            "{s:?}: ask remove-anchor=<sha256 or PEM file> or issuer=<PEM file>"
        )),
    }
}

/// What the dump holds that the analysis uses; everything else is dropped as it is read.
#[derive(Default)]
pub struct Collected {
    /// Meshed pods, as an agent would report them.
    pub pods: Vec<PodRecord>,
    /// Meshed pods with no node (not scheduled): not running, not judged.
    pub unscheduled: Vec<String>,
    /// Pods without a Linkerd proxy (`namespace/name`).
    pub unmeshed: Vec<String>,
    /// The trust-roots ConfigMap.
    pub trust_roots: Option<ConfigMap>,
    /// `linkerd-config`.
    pub linkerd_config: Option<ConfigMap>,
    /// The issuer Secret, with its certificate keys only.
    pub issuer: Option<Secret>,
    /// Private-key entries seen in the issuer Secret (`key.pem`, `tls.key`): ignored, never read.
    pub ignored_keys: Vec<String>,
    /// linkerd-identity's issuer events.
    pub events: Vec<(String, IdentityEvent)>,
    /// Namespaces labelled as Linkerd extensions'.
    pub extension_namespaces: BTreeSet<String>,
    /// Workload facts, per kind; `None`: the dump holds none of that kind.
    pub replica_sets: Option<Vec<(String, String, Option<Controller>)>>,
    /// Deployments: paused.
    pub deployments: Option<Vec<(String, String, bool)>>,
    /// StatefulSets: update strategy.
    pub stateful_sets: Option<Vec<(String, String, UpdateStrategy)>>,
    /// DaemonSets: update strategy.
    pub daemon_sets: Option<Vec<(String, String, UpdateStrategy)>>,
    /// Objects read, per kind.
    pub kinds: BTreeMap<String, usize>,
    /// Objects of kinds the diagnosis does not use, per kind.
    pub ignored_kinds: BTreeMap<String, usize>,
    /// What could not be read.
    pub skipped: Vec<Skipped>,
    /// Objects met again (same kind, namespace and name: a file given twice, overlapping
    /// dumps), per kind: the first one read is kept.
    pub duplicates: BTreeMap<String, usize>,
    seen: std::collections::HashSet<(String, String, String)>,
    sources: Option<TrustSources>,
    interner: crate::wire::Interner,
}

/// The names the live aggregator follows by default.
pub fn default_sources(namespace: &str) -> TrustSources {
    TrustSources {
        namespace: namespace.to_string(),
        config_map: "linkerd-identity-trust-roots".into(),
        key: "ca-bundle.crt".into(),
        secret: "linkerd-identity-issuer".into(),
    }
}

/// The probe outcome every pod of a dump gets: a dump holds no presented chain.
pub const NO_CHAIN: &str = "offline diagnosis: a dump holds no presented chain (the certificate lives only in the proxy's memory; the live aggregator's agents probe it)";

impl Collected {
    /// An empty collection for a control plane described by `sources`.
    pub fn new(sources: TrustSources) -> Self {
        Collected {
            sources: Some(sources),
            ..Collected::default()
        }
    }

    fn sources(&self) -> TrustSources {
        self.sources
            .clone()
            .unwrap_or_else(|| default_sources("linkerd"))
    }

    /// Takes one object of the dump.
    pub fn accept(&mut self, v: Value, origin: &str, now: DateTime<Utc>) {
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let sources = self.sources();
        let in_linkerd = v
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .is_some_and(|n| n == sources.namespace);
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !name.is_empty() {
            let namespace = v
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !self.seen.insert((kind.clone(), namespace, name.clone())) {
                *self.duplicates.entry(kind).or_default() += 1;
                return;
            }
        }
        let result: Result<(), serde_json::Error> = (|| {
            match kind.as_str() {
                "Pod" => {
                    let incomplete = incomplete_containers(&v);
                    let pod: Pod = serde_json::from_value(v)?;
                    self.pod(&pod, origin, incomplete, now);
                }
                "ConfigMap" if in_linkerd && name == sources.config_map => {
                    self.trust_roots = Some(serde_json::from_value(v)?);
                }
                "ConfigMap" if in_linkerd && name == LINKERD_CONFIG => {
                    self.linkerd_config = Some(serde_json::from_value(v)?);
                }
                "Secret" if in_linkerd && name == sources.secret => {
                    self.issuer_secret(v)?;
                }
                "ConfigMap" | "Secret" => {
                    // Read only to be dropped: not what the diagnosis uses.
                    *self
                        .ignored_kinds
                        .entry(format!("{kind} (not Linkerd's)"))
                        .or_default() += 1;
                    return Ok(());
                }
                "Event" => {
                    let e: Event = serde_json::from_value(v)?;
                    if e.metadata.namespace.as_deref() == Some(sources.namespace.as_str())
                        && objects::is_identity_event(&e)
                        && let Some(ev) = objects::identity_event(&e)
                    {
                        self.events.push(ev);
                    }
                }
                "Namespace" => {
                    let ns: Namespace = serde_json::from_value(v)?;
                    if objects::is_extension_namespace(&ns) {
                        self.extension_namespaces.insert(name.clone());
                    }
                }
                "ReplicaSet" => {
                    let rs: ReplicaSet = serde_json::from_value(v)?;
                    let fact = crate::owners::replica_set_controller(&rs.metadata);
                    push(&mut self.replica_sets, &rs.metadata, fact);
                }
                "Deployment" => {
                    let d: Deployment = serde_json::from_value(v)?;
                    let fact = crate::owners::deployment_paused(&d);
                    push(&mut self.deployments, &d.metadata, fact);
                }
                "StatefulSet" => {
                    let s: StatefulSet = serde_json::from_value(v)?;
                    let fact = crate::owners::stateful_set_strategy(&s);
                    push(&mut self.stateful_sets, &s.metadata, fact);
                }
                "DaemonSet" => {
                    let d: DaemonSet = serde_json::from_value(v)?;
                    let fact = crate::owners::daemon_set_strategy(&d);
                    push(&mut self.daemon_sets, &d.metadata, fact);
                }
                _ => {
                    *self.ignored_kinds.entry(kind.clone()).or_default() += 1;
                    return Ok(());
                }
            }
            *self.kinds.entry(kind.clone()).or_default() += 1;
            Ok(())
        })();
        if let Err(e) = result {
            self.skipped.push(Skipped {
                origin: origin.to_string(),
                why: format!("{kind} {name:?} does not read as a Kubernetes {kind}: {e}"),
            });
        }
    }

    fn pod(&mut self, pod: &Pod, origin: &str, incomplete: Option<String>, now: DateTime<Utc>) {
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        // A document cut short (a dump truncated at a line boundary still parses) must not pass
        // for a pod without a proxy: that would leave it out of the plan in silence.
        if let Some(why) = incomplete {
            self.skipped.push(Skipped {
                origin: origin.to_string(),
                why: format!("Pod {key} looks truncated ({why}): not judged"),
            });
            return;
        }
        let Some(meshed) = anchorwatch_podspec::meshed_pod(pod) else {
            if let Some(sign) = proxy_expected(pod) {
                self.skipped.push(Skipped {
                    origin: origin.to_string(),
                    why: format!(
                        "Pod {key} has no linkerd-proxy container although {sign}: the document may be truncated; not judged"
                    ),
                });
            } else {
                self.unmeshed.push(key);
            }
            return;
        };
        if meshed.node.is_empty() {
            self.unscheduled
                .push(format!("{}/{}", meshed.namespace, meshed.name));
            return;
        }
        let mut evidence = anchorwatch_podspec::evidence(&meshed);
        if evidence.pod.as_ref().is_some_and(|p| p.uid.is_empty())
            && let Some(p) = evidence.pod.as_mut()
        {
            // Manifests written by hand carry no uid; the model keys pods by it.
            p.uid = format!("{}/{}", p.namespace, p.name);
        }
        evidence.probe = Some(pb::ProbeResult {
            at: Some(crate::time::to_proto(now)),
            address: String::new(),
            outcome: Some(pb::probe_result::Outcome::Skipped(NO_CHAIN.into())),
        });
        let node = meshed.node.clone();
        match crate::wire::pod_record(evidence, &node, now, &mut self.interner) {
            Ok(r) => self.pods.push(r),
            Err(e) => self.skipped.push(Skipped {
                origin: format!("Pod {}/{}", meshed.namespace, meshed.name),
                why: e.to_string(),
            }),
        }
    }

    /// Keeps the issuer Secret's certificate entries only; key entries are named, never kept.
    fn issuer_secret(&mut self, mut v: Value) -> Result<(), serde_json::Error> {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(data)) = v.get_mut(field) {
                let keys: Vec<String> = data.keys().cloned().collect();
                for k in keys {
                    if !objects::CERTIFICATE_KEYS.contains(&k.as_str()) {
                        data.remove(&k);
                        self.ignored_keys.push(k);
                    }
                }
            }
        }
        // `stringData` is what a hand-written manifest may carry: the API server would have
        // turned it into `data`.
        if let Some(Value::Object(sd)) = v.as_object_mut().and_then(|o| o.remove("stringData")) {
            use base64::Engine;
            let data = v.as_object_mut().map(|o| {
                o.entry("data")
                    .or_insert_with(|| Value::Object(Default::default()))
            });
            if let Some(Value::Object(d)) = data {
                for (k, val) in sd {
                    if let Some(text) = val.as_str() {
                        let b64 = base64::engine::general_purpose::STANDARD.encode(text);
                        d.insert(k, Value::String(b64));
                    }
                }
            }
        }
        self.issuer = Some(serde_json::from_value(v)?);
        Ok(())
    }
}

/// Why a pod's containers look cut short: a container without the `name` every container has
/// (`kubectl` prints a container's keys in order, so a cut inside `env:` leaves no `name`), or
/// no containers at all.
fn incomplete_containers(pod: &Value) -> Option<String> {
    let containers = pod.pointer("/spec/containers");
    let Some(list) = containers.and_then(Value::as_array) else {
        return Some("no spec.containers".into());
    };
    if list.is_empty() {
        return Some("an empty spec.containers".into());
    }
    for (i, c) in list.iter().enumerate() {
        for field in ["name"] {
            if c.get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Some(format!("container #{} has no {field}", i + 1));
            }
        }
    }
    None
}

/// Why a pod without a proxy container should have one: the injector's annotations, an
/// `inject` annotation that is not `disabled`, or a `linkerd-proxy` container status.
fn proxy_expected(pod: &Pod) -> Option<String> {
    let annotations = pod.metadata.annotations.as_ref();
    if let Some((k, v)) = annotations.and_then(|a| {
        a.iter()
            .find(|(k, v)| k.as_str() == "linkerd.io/inject" && v.as_str() != "disabled")
    }) {
        return Some(format!("it is annotated {k}={v}"));
    }
    if let Some(k) = annotations.and_then(|a| {
        a.keys().find(|k| {
            k.as_str() == "linkerd.io/proxy-version" || k.as_str() == "linkerd.io/created-by"
        })
    }) {
        return Some(format!("the proxy injector annotated it ({k})"));
    }
    let statuses = pod.status.as_ref().into_iter().flat_map(|s| {
        s.container_statuses
            .iter()
            .flatten()
            .chain(s.init_container_statuses.iter().flatten())
    });
    for cs in statuses {
        if cs.name == anchorwatch_podspec::PROXY_CONTAINER {
            return Some("its status names a linkerd-proxy container".into());
        }
    }
    None
}

fn push<T>(
    catalog: &mut Option<Vec<(String, String, T)>>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    fact: T,
) {
    catalog.get_or_insert_with(Vec::new).push((
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
        fact,
    ));
}

/// Reads the dump files into a collection.
pub fn collect(
    files: &[PathBuf],
    sources: TrustSources,
    max_object: usize,
    now: DateTime<Utc>,
) -> Collected {
    let mut c = Collected::new(sources);
    let skipped = dump::read_paths(files, max_object, &mut |v, origin| c.accept(v, origin, now));
    c.skipped.splice(0..0, skipped);
    c
}

/// Settings and hand-given facts for one analysis.
#[derive(Clone, Debug)]
pub struct Options {
    /// Analysis settings (identity's flags, when its pod shows them, take precedence).
    pub settings: Settings,
    /// Node clock offsets given by hand, seconds.
    pub clocks: BTreeMap<String, f64>,
    /// True time.
    pub now: DateTime<Utc>,
}

/// A change to the trust configuration, for what-if questions.
#[derive(Clone, Debug, Default)]
pub struct Hypothesis {
    /// Anchors removed from the bundle.
    pub remove: Vec<Fingerprint>,
    /// The issuer certificate (PEM) installed instead of the Secret's.
    pub issuer_pem: Option<String>,
}

/// Builds the live model from the collection, exactly as the watches and agent streams feed it,
/// and returns it with the analysis input it gives (proxy logs added).
pub fn model(
    c: &Collected,
    opts: &Options,
    logs: &BTreeMap<String, logs::PodLogs>,
    what_if: Option<&Hypothesis>,
) -> (Cluster, ClusterInput) {
    let sources = c.sources();
    let now = opts.now;
    // Nothing is stale in a dump: the agents' staleness has no meaning here.
    let mut cluster = Cluster::new(Trust::new(sources.clone()), std::time::Duration::MAX, now);
    cluster.set_clock_settings(crate::clock::ClockSettings {
        critical_s: opts.settings.allowance.as_seconds_f64(),
        ..crate::clock::ClockSettings::default()
    });
    let bundle = objects::bundle(c.trust_roots.as_ref(), &sources);
    // The ConfigMap's last write, when recorded: when this anchor set appeared.
    let bundle_written = c
        .trust_roots
        .as_ref()
        .and_then(|cm| {
            cm.metadata
                .managed_fields
                .iter()
                .flatten()
                .filter_map(|f| f.time.as_ref().and_then(crate::time::from_k8s))
                .max()
        })
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    cluster.set_bundle(
        bundle.state.clone(),
        bundle.resource_version.clone(),
        bundle_written,
    );
    let issuer = objects::issuer(c.issuer.as_ref(), &sources);
    cluster.set_issuer(issuer.state.clone(), bundle_written);
    if let Some(h) = what_if {
        if !h.remove.is_empty()
            && let BundleState::Available(b) = &bundle.state
        {
            let mut kept = (**b).clone();
            kept.certs.retain(|a| !h.remove.contains(&a.fingerprint));
            let state = if kept.certs.is_empty() {
                BundleState::Unavailable(format!(
                    "{} would hold no anchor",
                    sources.bundle_source()
                ))
            } else {
                BundleState::Available(std::sync::Arc::new(kept))
            };
            cluster.set_bundle(state, "what-if".into(), now);
        }
        if let Some(pem) = &h.issuer_pem {
            let parsed = parse_pem_bundle(pem);
            let state = if parsed.certs.is_empty() {
                IssuerState::Unavailable("the what-if issuer holds no readable certificate".into())
            } else {
                IssuerState::Available(parsed.certs.clone())
            };
            cluster.set_issuer(state, now);
        }
    }
    cluster.update_control_plane(now, |cp| {
        cp.bundle_unreadable = bundle.unreadable.clone();
        cp.issuer_unreadable = issuer.unreadable;
        if what_if.is_none_or(|h| h.issuer_pem.is_none()) {
            cp.issuer_changed_at = issuer.written_at;
        }
        cp.linkerd_config = objects::linkerd_config(c.linkerd_config.as_ref());
        cp.identity_events.replace(c.events.iter().cloned());
        cp.extension_namespaces = c.extension_namespaces.clone();
    });
    cluster.update_owners(
        |i: &mut OwnerIndex| {
            if let Some(v) = &c.replica_sets {
                i.replica_sets.replace_all(v.iter().cloned());
            }
            if let Some(v) = &c.deployments {
                i.deployments.replace_all(v.iter().cloned());
            }
            if let Some(v) = &c.stateful_sets {
                i.stateful_sets.replace_all(v.iter().cloned());
            }
            if let Some(v) = &c.daemon_sets {
                i.daemon_sets.replace_all(v.iter().cloned());
            }
            true
        },
        now,
    );
    let mut by_node: BTreeMap<String, Vec<PodRecord>> = BTreeMap::new();
    for p in &c.pods {
        let mut p = p.clone();
        // The copied proxy logs enter as an agent's would.
        if let Some(l) = logs.get(&format!("{}/{}", p.namespace, p.name)) {
            p.logs = Some(std::sync::Arc::new(l.to_evidence()));
        }
        by_node.entry(p.node.clone()).or_default().push(p);
    }
    for (node, pods) in &by_node {
        let node = node.as_str();
        let pods = pods.clone();
        let stream = cluster.open_stream();
        cluster.replace_node(node, stream, "kubectl dump", pods, now);
        if let Some(offset) = opts.clocks.get(node) {
            let reading = Reading {
                received_at: now,
                aggregator: Offset {
                    offset_s: Some(*offset),
                    bound_s: 0.0,
                    error: String::new(),
                },
                ntp: vec![],
                kernel: Kernel::default(),
            };
            cluster.node_clock(node, stream, reading, now);
        }
    }
    let input = cluster.analysis_input(&opts.settings, now);
    (cluster, input)
}

/// The diagnosis: the report, and what went into it.
pub struct Diagnosis {
    /// The analysis.
    pub report: Report,
    /// The trust configuration it judged.
    pub trust: Trust,
    /// Bundle anchors the issuer chains to.
    pub issuer_anchors: Vec<Fingerprint>,
    /// Node names, and whether each one's clock was given.
    pub nodes: BTreeMap<String, bool>,
    /// Answers to the what-if questions.
    pub what_if: Vec<WhatIfAnswer>,
}

/// The answer to one what-if question.
#[derive(Clone, Debug)]
pub struct WhatIfAnswer {
    /// The question, in words.
    pub question: String,
    /// Safe: nothing the change would bring is a fault.
    pub safe: bool,
    /// Findings the change would raise (verdict, subject, detail), beyond today's.
    pub findings: Vec<(String, String, String)>,
    /// Pods that would break: affected after the change and not before.
    pub would_break: Vec<String>,
    /// What the dump cannot tell about this question.
    pub caveats: Vec<String>,
}

/// Runs the analysis on the collection, and answers each what-if question.
pub fn diagnose(
    c: &Collected,
    opts: &Options,
    logs: &BTreeMap<String, logs::PodLogs>,
    questions: &[WhatIf],
) -> Result<Diagnosis, String> {
    let (mut cluster, input) = model(c, opts, logs, None);
    let report = cluster.analyse(&input);
    let issuer_anchors = cluster.issuer_anchors();
    let nodes = cluster
        .nodes()
        .map(|n| (n.name.clone(), opts.clocks.contains_key(&n.name)))
        .collect();
    let trust = cluster.trust.clone();
    let mut answers = Vec::new();
    for q in questions {
        answers.push(what_if(c, opts, logs, &report, &trust, q)?);
    }
    Ok(Diagnosis {
        report,
        trust,
        issuer_anchors,
        nodes,
        what_if: answers,
    })
}

/// Verdicts that, raised by a change, make it unsafe.
const BREAKING: [&str; 7] = [
    "UNSAFE_ANCHOR_REMOVAL",
    "PENDING_BUNDLE_ROLLOUT",
    "ISSUER_NOT_CHAINED_TO_ANCHOR",
    "ISSUER_EXPIRED",
    "ISSUER_NOT_YET_VALID",
    "UNSUPPORTED_ALGORITHM",
    "INCONCLUSIVE",
];

/// Findings a change raises that a restart of linkerd-identity fixes (the plan does it first):
/// a step to take, not a breakage.
const IDENTITY_RESTART: [&str; 2] = ["IDENTITY_STALE_BUNDLE", "IDENTITY_STALE_ISSUER"];

fn what_if(
    c: &Collected,
    opts: &Options,
    logs: &BTreeMap<String, logs::PodLogs>,
    today: &Report,
    trust: &Trust,
    q: &WhatIf,
) -> Result<WhatIfAnswer, String> {
    let anchors: Vec<&std::sync::Arc<crate::verify::ParsedCert>> = trust
        .bundle()
        .map(|b| b.certs.iter().collect())
        .unwrap_or_default();
    let mut caveats = Vec::new();
    let (question, hypothesis) = match q {
        WhatIf::RemoveAnchor(prefix) => {
            let hits: Vec<_> = anchors
                .iter()
                .filter(|a| a.fingerprint.to_string().starts_with(prefix.as_str()))
                .collect();
            match hits.as_slice() {
                [a] => (
                    format!(
                        "remove anchor sha256:{} ({}) from the bundle now?",
                        a.fingerprint, a.subject
                    ),
                    Hypothesis {
                        remove: vec![a.fingerprint],
                        issuer_pem: None,
                    },
                ),
                [] => {
                    return Err(format!(
                        "--what-if remove-anchor={prefix}: no anchor of the bundle has that fingerprint"
                    ));
                }
                _ => {
                    return Err(format!(
                        "--what-if remove-anchor={prefix}: several anchors of the bundle match; give more digits"
                    ));
                }
            }
        }
        WhatIf::RemoveAnchorPem(path, text) => {
            let b = parse_pem_bundle(text);
            let Some(cert) = b.certs.first() else {
                return Err(format!(
                    "--what-if remove-anchor={}: no readable certificate in it",
                    path.display()
                ));
            };
            if !anchors.iter().any(|a| a.fingerprint == cert.fingerprint) {
                return Err(format!(
                    "--what-if remove-anchor={}: that certificate (sha256:{}) is not in the bundle",
                    path.display(),
                    cert.fingerprint
                ));
            }
            (
                format!(
                    "remove anchor sha256:{} ({}) from the bundle now?",
                    cert.fingerprint, cert.subject
                ),
                Hypothesis {
                    remove: vec![cert.fingerprint],
                    issuer_pem: None,
                },
            )
        }
        WhatIf::Issuer(path, text) => {
            let b = parse_pem_bundle(text);
            let Some(cert) = b.certs.first() else {
                return Err(format!(
                    "--what-if issuer={}: no readable certificate in it",
                    path.display()
                ));
            };
            (
                format!(
                    "switch the issuer to {} (sha256:{}, from {})?",
                    cert.subject,
                    cert.fingerprint,
                    path.display()
                ),
                Hypothesis {
                    remove: vec![],
                    issuer_pem: Some(text.clone()),
                },
            )
        }
    };
    let (mut cluster, input) = model(c, opts, logs, Some(&hypothesis));
    let after = cluster.analyse(&input);
    let before: BTreeSet<(String, String)> = today
        .findings
        .iter()
        .map(|f| (f.name.to_string(), f.subject.clone().unwrap_or_default()))
        .collect();
    let mut findings = Vec::new();
    let mut safe = true;
    for f in &after.findings {
        let key = (f.name.to_string(), f.subject.clone().unwrap_or_default());
        if before.contains(&key) {
            continue;
        }
        if IDENTITY_RESTART.contains(&f.name) {
            caveats.push(format!(
                "{}: restart linkerd-identity after the change ({})",
                f.name, f.detail
            ));
            continue;
        }
        if BREAKING.contains(&f.name)
            || f.severity == crate::analysis::trust_config::Severity::Critical
        {
            safe = false;
        }
        findings.push((f.name.to_string(), key.1, f.detail.clone()));
    }
    // Switching the issuer: proxies that lack its anchor today are named by today's
    // PENDING_BUNDLE_ROLLOUT; they reject every leaf the new issuer signs.
    if let Some(h) = hypothesis.issuer_pem.as_deref() {
        let new_anchor = {
            let mut probe = model(
                c,
                opts,
                logs,
                Some(&Hypothesis {
                    remove: vec![],
                    issuer_pem: Some(h.to_string()),
                }),
            )
            .0;
            probe.issuer_anchors()
        };
        for f in &today.findings {
            if f.name == "PENDING_BUNDLE_ROLLOUT"
                && new_anchor
                    .iter()
                    .any(|a| f.subject.as_deref() == Some(&format!("sha256:{a}")))
            {
                safe = false;
                findings.push((
                    f.name.to_string(),
                    f.subject.clone().unwrap_or_default(),
                    f.detail.clone(),
                ));
            }
        }
    }
    let mut would_break: Vec<String> = after
        .affected
        .difference(&today.affected)
        // A pod a finding names without a fault of its own (identity, which only needs the
        // restart the plan gives it) does not break; breaking findings name theirs below.
        .filter(|p| {
            after
                .pods
                .get(*p)
                .is_some_and(|a| a.verdicts.iter().any(|v| v.kind.is_fault()))
        })
        .cloned()
        .collect();
    for (name, _, _) in &findings {
        if name == "PENDING_BUNDLE_ROLLOUT" {
            for f in today
                .findings
                .iter()
                .chain(after.findings.iter())
                .filter(|f| f.name == "PENDING_BUNDLE_ROLLOUT")
            {
                would_break.extend(f.pods.iter().cloned());
            }
        }
        if name == "ISSUER_NOT_CHAINED_TO_ANCHOR" {
            // No new leaf would verify: every meshed pod breaks as its leaf renews.
            would_break.extend(after.pods.keys().cloned());
        }
    }
    would_break.sort();
    would_break.dedup();
    if !would_break.is_empty() {
        safe = false;
    }
    if !hypothesis.remove.is_empty() {
        caveats.push(
            "UNSAFE_ANCHOR_REMOVAL is judged on the leaves proxies present, which a dump does not hold: \
             a leaf issued under the removed anchor before the issuer changed lives up to one issuance \
             lifetime; ask the live aggregator, or wait one issuance lifetime after the issuer switch"
                .into(),
        );
        if let Some(changed) = objects::issuer(c.issuer.as_ref(), &c.sources()).written_at {
            let lifetime = cluster.effective_settings(&opts.settings).issuance_lifetime;
            let since = opts.now - changed;
            if since < lifetime + opts.settings.allowance {
                safe = false;
                caveats.push(format!(
                    "the issuer Secret was last written at {} ({} ago), less than one issuance lifetime ({}) ago: \
                     leaves signed by the previous issuer may still be live",
                    changed.to_rfc3339(),
                    human(since),
                    human(lifetime)
                ));
            }
        }
    }
    Ok(WhatIfAnswer {
        question,
        safe,
        findings,
        would_break,
        caveats,
    })
}

fn human(d: TimeDelta) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.num_seconds().max(0) as u64))
        .to_string()
}

/// The `diagnose` subcommand: its exit status (0: nothing needs attention, 1: something does,
/// 2: the input could not be used).
pub fn main(args: DiagnoseArgs) -> i32 {
    match run(args) {
        Ok(attention) => i32::from(attention),
        Err(e) => {
            eprintln!("anchorwatch-aggregator diagnose: {e:#}");
            2
        }
    }
}

/// Runs `diagnose` and prints the result; returns whether the cluster needs attention (a fault
/// verdict, a critical finding, a blocked plan, an unsafe what-if) or some input was skipped, for
/// the exit status. Each skipped input is named on stderr as `input skipped: …`.
pub fn run(args: DiagnoseArgs) -> anyhow::Result<bool> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let now = args.now.unwrap_or_else(crate::time::now);
    let delta = |d: std::time::Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
    let mut settings = Settings::new(&args.linkerd_namespace);
    settings.issuance_lifetime = delta(args.issuance_lifetime);
    settings.allowance = delta(args.clock_skew_allowance);
    settings.warn_before = delta(args.expiry_warning);
    let max_object = args.max_object_mib.max(1).saturating_mul(1024 * 1024);
    let collected = collect(
        &args.files,
        default_sources(&args.linkerd_namespace),
        max_object,
        now,
    );
    if collected.kinds.is_empty() {
        let mut msg =
            String::from("no Kubernetes object this diagnosis uses was found in the input");
        for s in &collected.skipped {
            msg.push_str(&format!("\n  skipped {}: {}", s.origin, s.why));
        }
        if !collected.ignored_kinds.is_empty() {
            msg.push_str(&format!("\n  ignored kinds: {:?}", collected.ignored_kinds));
        }
        anyhow::bail!(msg);
    }
    let (logs, log_skipped) = logs::read(&args.logs, &collected.pods, now);
    let opts = Options {
        settings,
        clocks: args.clocks.iter().cloned().collect(),
        now,
    };
    let d = diagnose(&collected, &opts, &logs, &args.what_if).map_err(anyhow::Error::msg)?;
    let out = match args.output {
        Output::Table => render::table(&collected, &d, &logs, &log_skipped, &opts),
        Output::Json => render::json(&collected, &d, &logs, &log_skipped, &opts),
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is no error worth a panic.
    let _ = stdout.write_all(out.as_bytes());
    let skipped: Vec<&Skipped> = collected.skipped.iter().chain(&log_skipped).collect();
    for s in &skipped {
        eprintln!("input skipped: {}: {}", s.origin, s.why);
    }
    Ok(needs_attention(&d) || !skipped.is_empty())
}

/// Whether the diagnosis asks for action: a fault verdict, a critical finding (an
/// `INCONCLUSIVE` one too: a trust bundle that cannot be read is no clean bill), a plan blocked
/// or escalated, or an unsafe what-if.
fn needs_attention(d: &Diagnosis) -> bool {
    d.report
        .pods
        .values()
        .any(|a| a.verdicts.iter().any(|v| v.kind.is_fault()))
        || d.report
            .findings
            .iter()
            .any(|f| f.severity == crate::analysis::trust_config::Severity::Critical)
        || !d.report.plan.blockers.is_empty()
        || d.report.plan.escalate
        || d.what_if.iter().any(|w| !w.safe)
}
