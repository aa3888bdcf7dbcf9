//! What a pod's spec and status say: is it meshed, which identity name does its proxy use, which
//! trust anchors was it given, where is its admin port.
//!
//! Shared by the agent (pods it watches on its node) and the aggregator's offline `diagnose`
//! (pods in a `kubectl get pods -o yaml` dump), so both read a pod the same way and hand the
//! aggregator the same evidence ([`evidence`]).
//!
//! Pure: a `k8s_openapi` `Pod` in, a [`MeshedPod`] out. Facts relied on (DESIGN section 1):
//! data-plane proxies carry the anchors as literal PEM in `LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS`
//! of the `linkerd-proxy` container (an init container for native sidecars); control-plane pods
//! take them from a ConfigMap through `valueFrom.configMapKeyRef`. The identity name is
//! `LINKERD2_PROXY_IDENTITY_LOCAL_NAME` with Kubernetes `$(VAR)` references expanded.

use anchorwatch_proto::v1 as pb;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, EnvVar, Pod};

/// Name of the Linkerd proxy container.
pub const PROXY_CONTAINER: &str = "linkerd-proxy";
const ENV_TRUST_ANCHORS: &str = "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS";
const ENV_LOCAL_NAME: &str = "LINKERD2_PROXY_IDENTITY_LOCAL_NAME";
const ENV_IDENTITY_DISABLED: &str = "LINKERD2_PROXY_IDENTITY_DISABLED";
const ENV_ADMIN_LISTEN: &str = "LINKERD2_PROXY_ADMIN_LISTEN_ADDR";
const ANNOTATION_PROXY_VERSION: &str = "linkerd.io/proxy-version";
/// Set by the kubelet on the API mirror of a static pod.
const ANNOTATION_MIRROR: &str = "kubernetes.io/config.mirror";
/// The admin port of a proxy whose environment does not say otherwise.
pub const DEFAULT_ADMIN_PORT: u16 = 4191;

/// A meshed pod as the agent sees it in the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshedPod {
    /// metadata.namespace.
    pub namespace: String,
    /// metadata.name.
    pub name: String,
    /// metadata.uid.
    pub uid: String,
    /// spec.nodeName.
    pub node: String,
    /// spec.serviceAccountName, `default` when unset.
    pub service_account: String,
    /// metadata.ownerReferences.
    pub owners: Vec<Owner>,
    /// The `pod-template-hash` label (names the Deployment behind a ReplicaSet owner).
    pub pod_template_hash: String,
    /// The pod mirrors a static pod (annotation `kubernetes.io/config.mirror`).
    pub mirror: bool,
    /// status.podIP, when assigned.
    pub pod_ip: Option<std::net::IpAddr>,
    /// status.phase.
    pub phase: String,
    /// The proxy container.
    pub proxy: Proxy,
    /// The expanded identity name; `None` with identity disabled or no name in the spec.
    pub identity_name: Option<String>,
    /// The trust anchors the proxy was given.
    pub anchors: SpecAnchors,
    /// Problems met while reading the spec, in words.
    pub problems: Vec<String>,
    /// The identity controller's flags, when the pod runs one (a container named `identity`).
    pub identity_controller: Option<IdentityFlags>,
}

/// Flags of Linkerd's identity controller container, as written (Go durations).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityFlags {
    /// `-identity-clock-skew-allowance`.
    pub clock_skew_allowance: String,
    /// `-identity-issuance-lifetime`.
    pub issuance_lifetime: String,
}

/// The identity controller's flags from its container's args (`-flag=value`, `--flag=value` or
/// `-flag value`), when the pod has a container named `identity`.
fn identity_flags(spec: &k8s_openapi::api::core::v1::PodSpec) -> Option<IdentityFlags> {
    let c = spec.containers.iter().find(|c| c.name == "identity")?;
    let args: Vec<&str> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(String::as_str)
        .collect();
    let value = |flag: &str| -> String {
        for (i, a) in args.iter().enumerate() {
            let name = a.trim_start_matches('-');
            if !a.starts_with('-') {
                continue;
            }
            if let Some(v) = name.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                return v.to_string();
            }
            if name == flag {
                return args.get(i + 1).map(|v| v.to_string()).unwrap_or_default();
            }
        }
        String::new()
    };
    Some(IdentityFlags {
        clock_skew_allowance: value("identity-clock-skew-allowance"),
        issuance_lifetime: value("identity-issuance-lifetime"),
    })
}

/// An owner reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Kind, e.g. ReplicaSet.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
    /// Whether it is the managing controller.
    pub controller: bool,
}

/// The proxy container of a meshed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proxy {
    /// Container name.
    pub container: String,
    /// An init container with restartPolicy Always.
    pub native_sidecar: bool,
    /// Container image.
    pub image: String,
    /// Proxy version: the `linkerd.io/proxy-version` annotation, else the image tag.
    pub version: String,
    /// When the container last started, from its status.
    pub started_at: Option<DateTime<Utc>>,
    /// Restart count, from its status.
    pub restart_count: i32,
    /// Ready, from its status.
    pub ready: bool,
    /// `Some(false)` when the status says the container is waiting or terminated; `None` without status.
    pub running: Option<bool>,
    /// Admin port, from `LINKERD2_PROXY_ADMIN_LISTEN_ADDR` when set.
    pub admin_port: Option<u16>,
    /// `LINKERD2_PROXY_IDENTITY_DISABLED` is set.
    pub identity_disabled: bool,
}

/// Where a proxy's trust anchors come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecAnchors {
    /// Literal PEM in the environment.
    Pem(String),
    /// A `configMapKeyRef`, resolved by the kubelet at container start.
    ConfigMap {
        /// ConfigMap name.
        name: String,
        /// Key.
        key: String,
    },
    /// No anchors in the spec; why.
    Missing(String),
}

/// Reads a pod; `None` when it is not meshed (no `linkerd-proxy` container or init container).
pub fn meshed_pod(pod: &Pod) -> Option<MeshedPod> {
    let spec = pod.spec.as_ref()?;
    let (container, native_sidecar) =
        match spec.containers.iter().find(|c| c.name == PROXY_CONTAINER) {
            Some(c) => (c, false),
            None => {
                let c = spec
                    .init_containers
                    .as_ref()?
                    .iter()
                    .find(|c| c.name == PROXY_CONTAINER)?;
                (c, c.restart_policy.as_deref() == Some("Always"))
            }
        };
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let mut problems = Vec::new();

    let container_status = status.and_then(|s| {
        let list = if native_sidecar {
            s.init_container_statuses.as_ref()
        } else {
            s.container_statuses.as_ref()
        };
        list.and_then(|l| l.iter().find(|cs| cs.name == PROXY_CONTAINER))
    });
    let service_account = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let env = container.env.as_deref().unwrap_or_default();
    let identity_disabled = env.iter().any(|e| e.name == ENV_IDENTITY_DISABLED);

    let identity_name = if identity_disabled {
        None
    } else {
        match env.iter().find(|e| e.name == ENV_LOCAL_NAME) {
            Some(var) => match &var.value {
                Some(v) => {
                    let expanded = expand(v, env, pod, &service_account);
                    if expanded.contains("$(") {
                        problems.push(format!(
                            "{ENV_LOCAL_NAME} has an unresolved reference: {expanded}"
                        ));
                    }
                    Some(expanded)
                }
                None => {
                    problems.push(format!("{ENV_LOCAL_NAME} is not a literal value"));
                    None
                }
            },
            None => {
                problems.push(format!("{ENV_LOCAL_NAME} is not set on the proxy"));
                None
            }
        }
    };
    let anchors = spec_anchors(container);
    let admin_port = env
        .iter()
        .find(|e| e.name == ENV_ADMIN_LISTEN)
        .and_then(|e| e.value.as_deref())
        .and_then(|v| v.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok());

    let pod_ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| match ip.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                problems.push(format!("status.podIP {ip:?} is not an IP address"));
                None
            }
        });

    Some(MeshedPod {
        identity_controller: identity_flags(spec),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        node: spec.node_name.clone().unwrap_or_default(),
        service_account,
        owners: meta
            .owner_references
            .iter()
            .flatten()
            .map(|o| Owner {
                kind: o.kind.clone(),
                name: o.name.clone(),
                uid: o.uid.clone(),
                controller: o.controller.unwrap_or(false),
            })
            .collect(),
        pod_template_hash: meta
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
            .cloned()
            .unwrap_or_default(),
        mirror: meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANNOTATION_MIRROR)),
        pod_ip,
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        proxy: proxy(
            container,
            native_sidecar,
            container_status,
            meta,
            admin_port,
            identity_disabled,
        ),
        identity_name,
        anchors,
        problems,
    })
}

fn proxy(
    container: &Container,
    native_sidecar: bool,
    status: Option<&ContainerStatus>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    admin_port: Option<u16>,
    identity_disabled: bool,
) -> Proxy {
    let image = container.image.clone().unwrap_or_default();
    let version = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_PROXY_VERSION))
        .cloned()
        .unwrap_or_else(|| image_tag(&image).to_string());
    let state = status.and_then(|s| s.state.as_ref());
    Proxy {
        container: container.name.clone(),
        native_sidecar,
        image,
        version,
        started_at: state
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
            .and_then(from_k8s),
        restart_count: status.map(|s| s.restart_count).unwrap_or(0),
        ready: status.map(|s| s.ready).unwrap_or(false),
        running: state.map(|s| s.running.is_some()),
        admin_port,
        identity_disabled,
    }
}

fn spec_anchors(container: &Container) -> SpecAnchors {
    let Some(var) = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == ENV_TRUST_ANCHORS)
    else {
        return SpecAnchors::Missing(format!("{ENV_TRUST_ANCHORS} is not set on the proxy"));
    };
    if let Some(v) = &var.value {
        return SpecAnchors::Pem(v.clone());
    }
    match var
        .value_from
        .as_ref()
        .and_then(|f| f.config_map_key_ref.as_ref())
    {
        Some(r) => SpecAnchors::ConfigMap {
            name: r.name.clone(),
            key: r.key.clone(),
        },
        None => SpecAnchors::Missing(format!(
            "{ENV_TRUST_ANCHORS} is neither a literal nor a configMapKeyRef"
        )),
    }
}

/// Expands `$(VAR)` references the way the kubelet does: a variable defined earlier in the
/// container's env, literal or from a pod field; `$$` escapes `$`; unresolved references stay.
fn expand(value: &str, env: &[EnvVar], pod: &Pod, service_account: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("$(")
            && let Some(end) = after.find(')')
        {
            let name = &after[..end];
            match lookup(name, env, pod, service_account) {
                Some(v) => out.push_str(&v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn lookup(name: &str, env: &[EnvVar], pod: &Pod, service_account: &str) -> Option<String> {
    // Only variables defined before the one being expanded are visible; LOCAL_NAME comes after
    // `_pod_sa`/`_pod_ns` in injected pods, and a later definition would not be used either.
    let var = env
        .iter()
        .take_while(|e| e.name != ENV_LOCAL_NAME)
        .find(|e| e.name == name)?;
    if let Some(v) = &var.value {
        return Some(v.clone());
    }
    let path = var
        .value_from
        .as_ref()?
        .field_ref
        .as_ref()?
        .field_path
        .as_str();
    let meta = &pod.metadata;
    match path {
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.name" => meta.name.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.serviceAccountName" => Some(service_account.to_string()),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone(),
        "status.podIP" => pod.status.as_ref()?.pod_ip.clone(),
        _ => None,
    }
}

fn image_tag(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') && !repo.is_empty() => tag,
        _ => "",
    }
}

/// A Kubernetes `Time` (a `jiff` timestamp in k8s-openapi ≥ 0.27) as a chrono time.
pub fn from_k8s(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

fn to_proto(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// What the spec says of a meshed pod, as the evidence an agent sends the aggregator; the probe
/// and metrics are left for whoever observed them, and `admin_port` is the spec's (0: default).
pub fn evidence(pod: &MeshedPod) -> pb::PodEvidence {
    pb::PodEvidence {
        pod: Some(pb::PodRef {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }),
        node: pod.node.clone(),
        service_account: pod.service_account.clone(),
        owners: pod
            .owners
            .iter()
            .map(|o| pb::OwnerRef {
                kind: o.kind.clone(),
                name: o.name.clone(),
                uid: o.uid.clone(),
                controller: o.controller,
            })
            .collect(),
        pod_ip: pod.pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        phase: pod.phase.clone(),
        proxy: Some(pb::ProxyContainer {
            name: pod.proxy.container.clone(),
            native_sidecar: pod.proxy.native_sidecar,
            image: pod.proxy.image.clone(),
            version: pod.proxy.version.clone(),
            started_at: pod.proxy.started_at.map(to_proto),
            restart_count: pod.proxy.restart_count,
            ready: pod.proxy.ready,
            admin_port: pod.proxy.admin_port.map(u32::from).unwrap_or_default(),
        }),
        identity_name: pod.identity_name.clone().unwrap_or_default(),
        spec_anchors: Some(pb::SpecAnchors {
            source: Some(match &pod.anchors {
                SpecAnchors::Pem(pem) => pb::spec_anchors::Source::Pem(pem.clone()),
                SpecAnchors::ConfigMap { name, key } => {
                    pb::spec_anchors::Source::ConfigMap(pb::ConfigMapKeyRef {
                        name: name.clone(),
                        key: key.clone(),
                    })
                }
                SpecAnchors::Missing(why) => pb::spec_anchors::Source::Missing(why.clone()),
            }),
        }),
        probe: None,
        metrics: None,
        spec_problems: pod.problems.clone(),
        pod_template_hash: pod.pod_template_hash.clone(),
        mirror: pod.mirror,
        identity_controller: pod.identity_controller.as_ref().map(|f| {
            pb::IdentityControllerFlags {
                clock_skew_allowance: f.clock_skew_allowance.clone(),
                issuance_lifetime: f.issuance_lifetime.clone(),
            }
        }),
        // Log evidence is the agent's to add: a spec says nothing about logs.
        logs: None,
    }
}

#[cfg(test)]
mod tests;
