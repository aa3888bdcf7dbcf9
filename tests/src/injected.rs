//! A cluster built from Linkerd's real injected manifests (`fixtures/linkerd/injected/`: a bare
//! Pod, a Deployment and a StatefulSet after `linkerd inject`), mid-rotation: the trust bundle
//! holds the anchor those manifests were injected with plus Linkerd's test root `ca2`, and the
//! issuer Secret now holds an issuer under `ca2`. The injected pods hold only the old anchor:
//! they reject every leaf the current issuer signs (STALE_TRUST_BUNDLE).
//!
//! The same state is applied to the simulated API server (for the live aggregator and agents)
//! and written out as `kubectl get … -o json|yaml` dumps (for `diagnose`).

use crate::kubesim::KubeSim;
use crate::pki::{Ca, fixture};
use crate::proxysim::{MetricsStyle, ProxyIdentity, SimProxy};
use crate::scenario::{self, Anchors, PodPlan, Presents};
use anyhow::Context;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

/// The pod-template-hash of the Deployment's ReplicaSet.
const HASH: &str = "5c8d9f7b6";

/// The running state: its simulated proxies stop when dropped.
pub struct InjectedCluster {
    /// One simulated proxy per pod.
    pub proxies: Vec<SimProxy>,
    /// The pods, `namespace/name`.
    pub pods: Vec<String>,
}

fn first_doc(path: &str) -> anyhow::Result<Value> {
    let text = fixture(path)?;
    let doc = serde_yaml::Deserializer::from_str(&text)
        .next()
        .context("no document")?;
    Ok(serde::Deserialize::deserialize(doc)?)
}

/// A pod as the scheduler and kubelet leave it: on `node`, with an IP, its containers running.
fn scheduled(mut pod: Value, node: &str, ip: IpAddr) -> Value {
    let started = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    pod["spec"]["nodeName"] = node.into();
    let statuses: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({"name": c["name"], "ready": true, "restartCount": 0, "image": c["image"],
                   "imageID": "", "state": {"running": {"startedAt": started}}})
        })
        .collect();
    pod["status"] = json!({"phase": "Running", "podIP": ip.to_string(), "hostIP": "127.0.0.1",
                           "containerStatuses": statuses});
    pod
}

/// The template of a workload fixture as a pod of it.
fn from_template(workload: &Value, name: &str, owner: Value) -> Value {
    let t = &workload["spec"]["template"];
    let mut meta = t["metadata"].clone();
    meta["name"] = name.into();
    meta["namespace"] = workload["metadata"]["namespace"].clone();
    meta["uid"] = format!("uid-{name}").into();
    meta["ownerReferences"] = json!([owner]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": t["spec"].clone()})
}

/// Applies the state to `kube` and starts a simulated proxy per pod on `127.<net>.<node>.<n>`.
pub async fn start(kube: &KubeSim, net: u8) -> anyhow::Result<InjectedCluster> {
    let pki = scenario::Pki::new()?;
    let old_anchor = fixture("cli-testdata/valid-trust-anchors.pem")?;
    kube.apply_config_map(scenario::trust_roots(&[&old_anchor, &pki.ca2.cert_pem]));
    kube.apply_secret(scenario::issuer_secret(&pki.new_issuer));
    let mut deployment = first_doc("injected/inject_emojivoto_deployment.golden.yml")?;
    deployment["metadata"]["uid"] = "uid-deploy-web".into();
    let mut stateful_set = first_doc("injected/inject_emojivoto_statefulset.golden.yml")?;
    stateful_set["metadata"]["uid"] = "uid-sts-web".into();
    let rs_name = format!("web-{HASH}");
    let replica_set = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": rs_name, "namespace": "emojivoto", "uid": "uid-rs-web",
            "labels": {"pod-template-hash": HASH},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                 "uid": "uid-deploy-web", "controller": true}]},
        "spec": {"selector": {}, "template": {}}});
    for o in [&deployment, &stateful_set, &replica_set] {
        kube.apply_json(o.clone())?;
    }
    let mut dpod = from_template(
        &deployment,
        &format!("web-{HASH}-x7k2p"),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
               "uid": "uid-rs-web", "controller": true}),
    );
    dpod["metadata"]["labels"]["pod-template-hash"] = HASH.into();
    let spod = from_template(
        &stateful_set,
        "web-0",
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
               "uid": "uid-sts-web", "controller": true}),
    );
    let mut bare = first_doc("injected/inject_emojivoto_pod.golden.yml")?;
    bare["metadata"]["uid"] = "uid-vote-bot".into();

    let mut proxies = Vec::new();
    let mut names = Vec::new();
    let injected = [(dpod, 1u8), (spod, 2), (bare, 2)];
    for (i, (pod, node)) in injected.into_iter().enumerate() {
        let ip = IpAddr::V4(Ipv4Addr::new(127, net, node, 10 + i as u8));
        let pod = scheduled(pod, &scenario::node_name(node), ip);
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let sa = pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default");
        // Their proxies renewed under the current issuer, like every proxy does within a day.
        proxies.push(proxy(&pki.new_issuer, sa, ns, ip).await?);
        names.push(format!("{ns}/{name}"));
        kube.apply_json(pod)?;
    }
    // linkerd-identity, reading the bundle from the ConfigMap at start, on node 1.
    let identity = PodPlan {
        namespace: scenario::LINKERD_NS,
        name: "linkerd-identity-5d6f7-i1",
        service_account: "linkerd-identity",
        node: 1,
        presents: Presents::Pending,
        anchors: Anchors::ConfigMap,
        expect: &[],
    };
    let ip = IpAddr::V4(Ipv4Addr::new(127, net, 1, 20));
    proxies.push(
        proxy(
            &pki.new_issuer,
            "linkerd-identity",
            scenario::LINKERD_NS,
            ip,
        )
        .await?,
    );
    kube.apply_pod(scenario::pod(&identity, ip, &pki)?);
    names.push(format!("{}/{}", scenario::LINKERD_NS, identity.name));
    kube.apply_json(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "linkerd-identity", "namespace": "linkerd", "uid": "uid-identity"},
        "spec": {"selector": {}, "template": {}}}))?;
    kube.apply_json(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "linkerd-identity-5d6f7", "namespace": "linkerd", "uid": "uid-identity-rs",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "linkerd-identity",
                                 "uid": "uid-identity", "controller": true}]},
        "spec": {"selector": {}, "template": {}}}))?;
    let now = chrono::Utc::now().to_rfc3339();
    kube.apply_json(json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "linkerd-identity.issuer-updated", "namespace": "linkerd"},
        "involvedObject": {"kind": "Deployment", "name": "linkerd-identity", "namespace": "linkerd"},
        "reason": "IssuerUpdated", "type": "Normal",
        "message": "Updated identity issuer", "lastTimestamp": now, "firstTimestamp": now}))?;
    Ok(InjectedCluster {
        proxies,
        pods: names,
    })
}

async fn proxy(issuer: &Ca, sa: &str, ns: &str, ip: IpAddr) -> anyhow::Result<SimProxy> {
    let name = scenario::identity_name(sa, ns);
    let leaf = issuer.leaf(&name, crate::pki::window(-60, 86_400))?;
    let identity = ProxyIdentity::Ready {
        name,
        chain: vec![leaf.der, issuer.cert_der.clone()],
        key_pkcs8: leaf.key_pkcs8,
    };
    SimProxy::start(SocketAddr::new(ip, 4191), identity, MetricsStyle::Control).await
}

/// Writes what a user would run against this cluster: `kubectl get pods -A -o json` (a List),
/// `kubectl -n linkerd get cm,secret,events -o yaml` and `kubectl get deploy,rs,sts,ds -A -o yaml`
/// (Lists, kinds mixed).
pub fn write_dump(kube: &KubeSim, dir: &Path) -> anyhow::Result<()> {
    fn values<K: serde::Serialize>(objects: Vec<K>) -> Vec<Value> {
        objects
            .into_iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect()
    }
    let list = |items: Vec<Value>| json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}});
    std::fs::write(
        dir.join("pods.json"),
        serde_json::to_string_pretty(&list(values(kube.list::<Pod>())))?,
    )?;
    let in_linkerd = |v: &Value| v["metadata"]["namespace"] == "linkerd";
    let mut linkerd: Vec<Value> = values(kube.list::<ConfigMap>());
    linkerd.extend(values(kube.list::<Secret>()));
    linkerd.extend(values(kube.list::<Event>()));
    linkerd.retain(in_linkerd);
    std::fs::write(
        dir.join("linkerd.yaml"),
        serde_yaml::to_string(&list(linkerd))?,
    )?;
    let mut workloads = values(kube.list::<Deployment>());
    workloads.extend(values(kube.list::<ReplicaSet>()));
    workloads.extend(values(kube.list::<StatefulSet>()));
    workloads.extend(values(kube.list::<DaemonSet>()));
    std::fs::write(
        dir.join("workloads.yaml"),
        serde_yaml::to_string(&list(workloads))?,
    )?;
    Ok(())
}
