//! A small meshed cluster in the middle of a trust-anchor rotation, served by the simulated API
//! server and simulated proxies. Used by the sandbox and the end-to-end tests.
//!
//! The current bundle holds Linkerd's test root `ca2`; the issuer Secret holds an issuer under
//! `ca2`. Some proxies still present leaves from an issuer under `ca1`, which has the same
//! subject (`OU=None`) and another key: a real BadSignature. One presents a leaf from a root of
//! another name (UnknownIssuer), one an expired leaf (Expired), one has no identity yet.

use crate::kubesim::KubeSim;
use crate::pki::{Ca, Leaf, window};
use crate::proxysim::{MetricsStyle, ProxyIdentity, SimProxy};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The trust domain of the simulated mesh.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// The Linkerd namespace.
pub const LINKERD_NS: &str = "linkerd";

/// What a simulated proxy presents.
pub enum Presents {
    /// A leaf under this issuer, valid (from, to) seconds relative to now.
    Leaf(Which, i64, i64),
    /// No identity yet (access_denied).
    Pending,
    /// Hung.
    Silent,
    /// A valid leaf, but for another identity name than the pod's (a wrong SNI gets no ServerHello).
    OtherName(&'static str),
}

/// Which certificate authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The issuer under `ca1` (the old root).
    OldIssuer,
    /// The issuer under `ca2` (the current root).
    NewIssuer,
    /// An issuer under a root of another name.
    ForeignIssuer,
}

/// Where a pod's anchors come from.
pub enum Anchors {
    /// Literal PEM of these roots.
    Roots(&'static [Which]),
    /// Literal, corrupt PEM.
    Corrupt,
    /// `configMapKeyRef` to the trust-roots ConfigMap (control plane).
    ConfigMap,
}

/// A pod of the scenario.
pub struct PodPlan {
    /// Namespace.
    pub namespace: &'static str,
    /// Name.
    pub name: &'static str,
    /// Service account.
    pub service_account: &'static str,
    /// Node index, 1-based.
    pub node: u8,
    /// What its proxy presents.
    pub presents: Presents,
    /// Its spec anchors.
    pub anchors: Anchors,
    /// Verdicts the aggregator must reach (names, with the reason for chain verdicts), sorted.
    pub expect: &'static [&'static str],
}

/// The sandbox's pods: three nodes, a dozen pods, mid-rotation.
pub fn rotation_pods() -> Vec<PodPlan> {
    use Anchors::*;
    use Presents::*;
    use Which::*;
    const NEW: &[Which] = &[NewIssuer];
    const OLD: &[Which] = &[OldIssuer];
    const BOTH: &[Which] = &[OldIssuer, NewIssuer];
    vec![
        PodPlan {
            namespace: "emojivoto",
            name: "web-7d9c5b-a1",
            service_account: "web",
            node: 1,
            presents: Leaf(NewIssuer, -60, 86_400),
            anchors: Roots(NEW),
            expect: &["OK"],
        },
        PodPlan {
            namespace: "emojivoto",
            name: "emoji-5f6b8c-b1",
            service_account: "emoji",
            node: 1,
            presents: Leaf(NewIssuer, -60, 86_400),
            anchors: Roots(BOTH),
            expect: &["OK"],
        },
        PodPlan {
            namespace: "emojivoto",
            name: "voting-6c8d9f-c1",
            service_account: "voting",
            node: 1,
            presents: Leaf(OldIssuer, -86_400, 86_400),
            anchors: Roots(OLD),
            expect: &["STALE_LEAF:BadSignature", "STALE_TRUST_BUNDLE"],
        },
        PodPlan {
            namespace: "emojivoto",
            name: "vote-bot-58f4d-d1",
            service_account: "default",
            node: 1,
            presents: Leaf(OldIssuer, -86_400, 86_400),
            anchors: Roots(BOTH),
            expect: &["STALE_LEAF:BadSignature"],
        },
        PodPlan {
            namespace: "emojivoto",
            name: "web-7d9c5b-a2",
            service_account: "web",
            node: 2,
            presents: Leaf(NewIssuer, -60, 86_400),
            anchors: Roots(NEW),
            expect: &["OK"],
        },
        PodPlan {
            namespace: "emojivoto",
            name: "emoji-5f6b8c-b2",
            service_account: "emoji",
            node: 2,
            presents: Leaf(OldIssuer, -86_400, 86_400),
            anchors: Roots(BOTH),
            expect: &["STALE_LEAF:BadSignature"],
        },
        PodPlan {
            namespace: "booksapp",
            name: "books-64c9b-e1",
            service_account: "books",
            node: 2,
            presents: Leaf(ForeignIssuer, -60, 86_400),
            anchors: Roots(NEW),
            expect: &["STALE_LEAF:UnknownIssuer"],
        },
        PodPlan {
            namespace: "booksapp",
            name: "authors-7bb5c-f1",
            service_account: "authors",
            node: 2,
            presents: Leaf(NewIssuer, -2 * 86_400, -3_600),
            anchors: Roots(NEW),
            expect: &["LEAF_EXPIRED:Expired"],
        },
        PodPlan {
            namespace: "emojivoto",
            name: "web-7d9c5b-a3",
            service_account: "web",
            node: 3,
            presents: Leaf(NewIssuer, -60, 86_400),
            anchors: Roots(NEW),
            expect: &["OK"],
        },
        PodPlan {
            namespace: "booksapp",
            name: "traffic-59d7f-g1",
            service_account: "traffic",
            node: 3,
            presents: Leaf(NewIssuer, -60, 86_400),
            anchors: Roots(NEW),
            expect: &["OK"],
        },
        PodPlan {
            namespace: "booksapp",
            name: "webapp-6f7c8-h1",
            service_account: "webapp",
            node: 3,
            presents: Pending,
            anchors: Roots(NEW),
            expect: &["UNPROBED:alert"],
        },
        PodPlan {
            namespace: LINKERD_NS,
            name: "linkerd-identity-5d6f7-i1",
            service_account: "linkerd-identity",
            node: 3,
            presents: Leaf(NewIssuer, -60, 86_400),
            anchors: Anchors::ConfigMap,
            expect: &["OK"],
        },
    ]
}

/// Pods that exercise bad input on the probe path.
pub fn bad_input_pods() -> Vec<PodPlan> {
    use Anchors::*;
    use Presents::*;
    use Which::*;
    const NEW: &[Which] = &[NewIssuer];
    vec![
        PodPlan {
            namespace: "faulty",
            name: "hung-1",
            service_account: "hung",
            node: 1,
            presents: Silent,
            anchors: Roots(NEW),
            expect: &["UNPROBED:timeout"],
        },
        PodPlan {
            namespace: "faulty",
            name: "wrong-sni-1",
            service_account: "sni",
            node: 1,
            presents: OtherName(
                "someone-else.faulty.serviceaccount.identity.linkerd.cluster.local",
            ),
            anchors: Roots(NEW),
            expect: &["UNPROBED:closed_before_server_hello"],
        },
        PodPlan {
            namespace: "faulty",
            name: "corrupt-env-1",
            service_account: "corrupt",
            node: 1,
            presents: Leaf(NewIssuer, -60, 86_400),
            anchors: Corrupt,
            expect: &["CERT_UNREADABLE", "STALE_TRUST_BUNDLE"],
        },
    ]
}

/// The certificate authorities of the scenario.
pub struct Pki {
    /// Linkerd's test root ca1 (old).
    pub ca1: Ca,
    /// Linkerd's test root ca2 (current), same subject as ca1.
    pub ca2: Ca,
    /// A root of another name.
    pub foreign_root: Ca,
    /// Issuer under ca1.
    pub old_issuer: Ca,
    /// Issuer under ca2: the one in the issuer Secret.
    pub new_issuer: Ca,
    /// Issuer under the foreign root.
    pub foreign_issuer: Ca,
}

impl Pki {
    /// Builds the material (Linkerd's roots from the fixtures, the rest generated).
    pub fn new() -> anyhow::Result<Pki> {
        let ca1 = Ca::linkerd_test_root("ca1")?;
        let ca2 = Ca::linkerd_test_root("ca2")?;
        let foreign_root = Ca::root("root.linkerd.other-cluster.example")?;
        let year = window(-30 * 86_400, 365 * 86_400);
        Ok(Pki {
            old_issuer: ca1.issuer("identity.linkerd.cluster.local", year)?,
            new_issuer: ca2.issuer("identity.linkerd.cluster.local", year)?,
            foreign_issuer: foreign_root.issuer("identity.linkerd.other-cluster.example", year)?,
            ca1,
            ca2,
            foreign_root,
        })
    }

    /// The root of an issuer.
    pub fn root(&self, w: Which) -> &Ca {
        match w {
            Which::OldIssuer => &self.ca1,
            Which::NewIssuer => &self.ca2,
            Which::ForeignIssuer => &self.foreign_root,
        }
    }

    /// The issuer.
    pub fn issuer(&self, w: Which) -> &Ca {
        match w {
            Which::OldIssuer => &self.old_issuer,
            Which::NewIssuer => &self.new_issuer,
            Which::ForeignIssuer => &self.foreign_issuer,
        }
    }
}

/// The identity name of a pod's proxy.
pub fn identity_name(sa: &str, ns: &str) -> String {
    format!("{sa}.{ns}.serviceaccount.identity.{LINKERD_NS}.{TRUST_DOMAIN}")
}

/// Node name for an index.
pub fn node_name(i: u8) -> String {
    format!("node-{i}")
}

/// A running scenario: its proxies stop when it is dropped.
pub struct Scenario {
    /// Material.
    pub pki: Pki,
    /// The pods, as planned.
    pub pods: Vec<PodPlan>,
    /// Their simulated proxies.
    pub proxies: Vec<SimProxy>,
}

impl Scenario {
    /// Applies the trust objects and `pods` to `kube`, and starts a simulated proxy per pod on
    /// `127.<net>.<node>.<n>:4191`.
    pub async fn start(kube: &KubeSim, net: u8, pods: Vec<PodPlan>) -> anyhow::Result<Scenario> {
        let pki = Pki::new()?;
        kube.apply_config_map(trust_roots(&[&pki.ca2.cert_pem]));
        kube.apply_secret(issuer_secret(&pki.new_issuer));
        let mut proxies = Vec::new();
        for (i, plan) in pods.iter().enumerate() {
            let ip = IpAddr::V4(Ipv4Addr::new(127, net, plan.node, 10 + i as u8));
            let name = identity_name(plan.service_account, plan.namespace);
            let identity = match plan.presents {
                Presents::Leaf(w, from, to) => ready(&pki, w, &name, from, to)?,
                Presents::OtherName(other) => ready(&pki, Which::NewIssuer, other, -60, 86_400)?,
                Presents::Pending => ProxyIdentity::Pending { name: name.clone() },
                Presents::Silent => ProxyIdentity::Silent,
            };
            proxies.push(
                SimProxy::start(SocketAddr::new(ip, 4191), identity, MetricsStyle::Control).await?,
            );
            kube.apply_pod(pod(plan, ip, &pki)?);
        }
        Ok(Scenario { pki, pods, proxies })
    }

    /// Stops every simulated proxy.
    pub async fn stop(self) {
        for p in self.proxies {
            p.stop().await;
        }
    }
}

fn ready(pki: &Pki, w: Which, name: &str, from: i64, to: i64) -> anyhow::Result<ProxyIdentity> {
    let issuer = pki.issuer(w);
    let Leaf { der, key_pkcs8 } = issuer.leaf(name, window(from, to))?;
    Ok(ProxyIdentity::Ready {
        name: name.to_string(),
        chain: vec![der, issuer.cert_der.clone()],
        key_pkcs8,
    })
}

/// The trust-roots ConfigMap holding these PEM texts, concatenated.
pub fn trust_roots(pems: &[&str]) -> ConfigMap {
    let bundle: String = pems.concat();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "linkerd-identity-trust-roots", "namespace": LINKERD_NS},
        "data": {"ca-bundle.crt": bundle}
    }))
    .unwrap_or_default()
}

/// The issuer Secret (Linkerd's own scheme). The key is a placeholder: anchorwatch never reads it.
pub fn issuer_secret(issuer: &Ca) -> Secret {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "linkerd-identity-issuer", "namespace": LINKERD_NS},
        "data": {"crt.pem": b64(&issuer.cert_pem), "key.pem": b64("not a key: anchorwatch must never read this")}
    }))
    .unwrap_or_default()
}

/// A meshed pod as `linkerd inject` and the scheduler leave it.
pub fn pod(plan: &PodPlan, ip: IpAddr, pki: &Pki) -> anyhow::Result<Pod> {
    let anchors_env = match &plan.anchors {
        Anchors::Roots(roots) => {
            let pem: String = roots
                .iter()
                .map(|w| pki.root(*w).cert_pem.clone())
                .collect();
            json!({"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", "value": pem})
        }
        Anchors::Corrupt => json!({"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS",
            "value": "-----BEGIN CERTIFICATE-----\nMIIB!!not*base64\n-----END CERTIFICATE-----\n"}),
        Anchors::ConfigMap => json!({"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS",
            "valueFrom": {"configMapKeyRef": {"name": "linkerd-identity-trust-roots", "key": "ca-bundle.crt"}}}),
    };
    let owner = plan
        .name
        .rsplit_once('-')
        .map(|(o, _)| o)
        .unwrap_or(plan.name);
    // Pods of a Deployment: owned by ReplicaSet `<deployment>-<hash>`, labelled with the hash.
    let hash = owner.rsplit_once('-').map(|(_, h)| h).unwrap_or_default();
    let started = chrono::Utc::now() - chrono::Duration::hours(1);
    let value = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": plan.name, "namespace": plan.namespace,
            "annotations": {"linkerd.io/proxy-version": "edge-25.4.1"},
            "labels": {"linkerd.io/control-plane-ns": LINKERD_NS, "pod-template-hash": hash},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": format!("rs-{owner}"), "controller": true}]
        },
        "spec": {
            "nodeName": node_name(plan.node),
            "serviceAccountName": plan.service_account,
            "containers": [
                {"name": "app", "image": "example/app:v1"},
                {"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy:edge-25.4.1", "env": [
                    {"name": "_pod_name", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "_pod_ns", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "_pod_sa", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                    {"name": "LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "value": "[::]:4191"},
                    anchors_env,
                    {"name": "LINKERD2_PROXY_IDENTITY_LOCAL_NAME", "value": format!("$(_pod_sa).$(_pod_ns).serviceaccount.identity.{LINKERD_NS}.{TRUST_DOMAIN}")},
                    {"name": "LINKERD2_PROXY_IDENTITY_SVC_NAME", "value": format!("linkerd-identity.{LINKERD_NS}.serviceaccount.identity.{LINKERD_NS}.{TRUST_DOMAIN}")}
                ]}
            ]
        },
        "status": {
            "phase": "Running", "podIP": ip.to_string(), "hostIP": "127.0.0.1",
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "image": "example/app:v1", "imageID": "", "state": {"running": {"startedAt": started.to_rfc3339()}}},
                {"name": "linkerd-proxy", "ready": true, "restartCount": 0, "image": "cr.l5d.io/linkerd/proxy:edge-25.4.1", "imageID": "", "state": {"running": {"startedAt": started.to_rfc3339()}}}
            ]
        }
    });
    Ok(serde_json::from_value(value)?)
}

/// The identity of a linked cluster's `linkerd-gateway` (the SNI of a gateway probe).
pub const GATEWAY_IDENTITY: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";
/// The namespace Links live in.
pub const MULTICLUSTER_NS: &str = "linkerd-multicluster";

/// The Linkerd multicluster Link CRD (`links.multicluster.linkerd.io/v1alpha1`), for
/// [`KubeSim::register`]: a cluster serves Links only once it is registered.
pub fn link_kind() -> crate::kubesim::ResourceType {
    crate::kubesim::ResourceType::new("multicluster.linkerd.io", "v1alpha1", "links", "Link", true)
}

/// A Link to cluster `name` as `linkerd multicluster link` writes it (ports as strings), with
/// `gateway_addresses` comma-separated, probed on `probe_port`.
pub fn link(name: &str, gateway_addresses: &str, probe_port: u16) -> serde_json::Value {
    json!({
        "apiVersion": "multicluster.linkerd.io/v1alpha1", "kind": "Link",
        "metadata": {"name": name, "namespace": MULTICLUSTER_NS},
        "spec": {
            "clusterCredentialsSecret": format!("cluster-credentials-{name}"),
            "gatewayAddress": gateway_addresses,
            "gatewayIdentity": GATEWAY_IDENTITY,
            "gatewayPort": "4143",
            "probeSpec": {"path": "/ready", "period": "3s", "port": probe_port.to_string()},
            "selector": {"matchLabels": {"mirror.linkerd.io/exported": "true"}},
            "targetClusterDomain": TRUST_DOMAIN,
            "targetClusterLinkerdNamespace": LINKERD_NS,
            "targetClusterName": name
        }
    })
}

/// A linked cluster's gateway proxy on `addr`, presenting a leaf for [`GATEWAY_IDENTITY`] under
/// the issuer `w`.
pub async fn gateway(pki: &Pki, w: Which, addr: SocketAddr) -> anyhow::Result<SimProxy> {
    let identity = ready(pki, w, GATEWAY_IDENTITY, -60, 86_400)?;
    SimProxy::start(addr, identity, MetricsStyle::Control).await
}
