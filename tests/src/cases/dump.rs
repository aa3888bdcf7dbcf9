//! An incident case rendered as the files `diagnose` reads: what `kubectl get pods -A -o yaml`,
//! `kubectl -n linkerd get cm,secret,events -o yaml` and `kubectl get deploy,rs,sts,ds -A -o yaml`
//! would print for a cluster in that state, plus each pod's proxy log as the kubelet writes it
//! (`<ns>_<pod>_<uid>/linkerd-proxy/0.log`, CRI lines). Then the case runs through the offline
//! diagnosis, and [`dump_limits`] says which cases need what no dump holds.

use super::run::{TEMPLATE_HASH, pod_owner};
use super::{Materialised, SecretScheme, SpecAnchors};
use anchorwatch_aggregator::analysis::cluster::{Report, Settings};
use anchorwatch_aggregator::diagnose;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const CONFIG_MAP: &str = "linkerd-identity-trust-roots";
const KEY: &str = "ca-bundle.crt";

/// Verdicts only a presented chain (or a leaf identity issued) can give.
const CHAIN_VERDICTS: [&str; 7] = [
    "STALE_LEAF",
    "LEAF_EXPIRED",
    "LEAF_NOT_YET_VALID",
    "NAME_MISMATCH",
    "UNSAFE_ANCHOR_REMOVAL",
    "MULTICLUSTER_ANCHOR_MISMATCH",
    "IDENTITY_STALE_ISSUER",
];

/// What of a case step no dump can show, in words; empty: `diagnose` must decide it alone.
/// `live` is the case runner's report (the live analysis path) on the same step.
pub fn dump_limits(m: &Materialised, live: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for v in &m.expect.verdicts {
        // A pod is OK only once its presented chain is judged; a dump leaves it UNPROBED.
        if CHAIN_VERDICTS.contains(&v.name.as_str()) || v.name == "OK" {
            out.push(format!(
                "expects {}, which only a presented chain shows",
                v.name
            ));
        }
    }
    for pod in &m.expect.affected {
        let chain_only = live.pods.get(pod).is_some_and(|a| {
            let faults: Vec<&str> = a
                .verdicts
                .iter()
                .filter(|v| v.kind.is_fault())
                .map(|v| v.kind.name())
                .collect();
            !faults.is_empty()
                && faults
                    .iter()
                    .all(|f| CHAIN_VERDICTS.contains(f) || *f == "CERT_UNREADABLE")
                && !live.findings.iter().any(|f| f.pods.contains(pod))
        });
        if chain_only {
            out.push(format!("{pod} is affected by its presented chain alone"));
        }
    }
    if let (Some(_), Some(changed)) = (&m.trust_roots_before, m.trust_roots_changed)
        && m.pods
            .iter()
            .any(|p| p.anchors == SpecAnchors::ConfigMap && p.started.is_none_or(|s| s < changed))
    {
        out.push(
            "a pod read the bundle before its last change: a dump holds only the current ConfigMap"
                .into(),
        );
    }
    if let (Some(id), Some(secret)) = (&m.identity, &m.issuer_secret) {
        let secret_issuer = ["crt.pem", "tls.crt"]
            .iter()
            .find_map(|k| secret.data.get(*k))
            .map(|b| super::certificate_ders(&String::from_utf8_lossy(b)))
            .and_then(|d| d.into_iter().next());
        if !id.issuer_der.is_empty() && secret_issuer.as_deref() != Some(id.issuer_der.as_slice()) {
            out.push(
                "identity signs with another issuer than the Secret's: only its leaves show it"
                    .into(),
            );
        }
        let logs_say = m.pods.iter().any(|p| {
            p.log.iter().any(|l| {
                anchorwatch_proxylog::classify(l)
                    .contains(anchorwatch_proxylog::Kind::IdentityUnreachable)
            })
        });
        if !id.reachable && !logs_say {
            out.push("identity is unreachable, and no proxy log in the case says so".into());
        }
    }
    if m.pods.iter().any(|p| p.remote.is_some()) {
        out.push("linked clusters' gateways are probed live, never dumped".into());
    }
    out
}

/// The files of the dump, and the logs folder.
pub struct Rendered {
    /// Dump files.
    pub files: Vec<PathBuf>,
    /// A copy of `/var/log/pods`.
    pub logs: PathBuf,
}

/// Writes the case as dump files into `dir`.
pub fn render(m: &Materialised, dir: &Path) -> anyhow::Result<Rendered> {
    use base64::Engine;
    let ns = &m.linkerd.namespace;
    let list = |items: Vec<Value>| json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}});
    let started_default = m.now - chrono::Duration::hours(1);
    let mut pods = Vec::new();
    let logs = dir.join("pods");
    for (i, p) in m.pods.iter().filter(|p| p.remote.is_none()).enumerate() {
        let anchors = match &p.anchors {
            SpecAnchors::Pem(text) => {
                json!({"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", "value": text})
            }
            SpecAnchors::ConfigMap => json!({"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS",
                "valueFrom": {"configMapKeyRef": {"name": CONFIG_MAP, "key": KEY}}}),
        };
        let mut containers = vec![
            json!({"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy:stable", "env": [
                {"name": "_pod_ns", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "_pod_sa", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                anchors,
                {"name": "LINKERD2_PROXY_IDENTITY_LOCAL_NAME",
                 "value": format!("$(_pod_sa).$(_pod_ns).serviceaccount.identity.{ns}.{}", m.linkerd.trust_domain)},
            ]}),
        ];
        if p.namespace == *ns && p.service_account == "linkerd-identity" {
            containers.push(json!({"name": "identity", "args": [
                format!("-identity-clock-skew-allowance={}s", m.linkerd.clock_skew_allowance.as_secs()),
                format!("-identity-issuance-lifetime={}s", m.linkerd.issuance_lifetime.as_secs()),
            ]}));
        }
        let uid = format!("uid-{i}");
        let mut meta = json!({"name": p.name, "namespace": p.namespace, "uid": uid, "labels": {}});
        if let Some(o) = &p.owner {
            let (kind, name) = pod_owner(&o.kind, &o.name)
                .split_once('/')
                .map(|(k, n)| (k.to_string(), n.to_string()))
                .unwrap_or_default();
            meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind, "name": name,
                                              "uid": format!("uid-{kind}-{name}"), "controller": true}]);
            if o.kind == "Deployment" {
                meta["labels"]["pod-template-hash"] = TEMPLATE_HASH.into();
            }
        }
        let started = p.started.unwrap_or(started_default).to_rfc3339();
        let mut status = json!({"phase": "Running", "containerStatuses": [
            {"name": "linkerd-proxy", "ready": true, "restartCount": 0, "image": "", "imageID": "",
             "state": {"running": {"startedAt": started}}}]});
        if let Some(ip) = p.ip {
            status["podIP"] = ip.to_string().into();
        }
        pods.push(json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": p.node, "serviceAccountName": p.service_account, "containers": containers},
            "status": status}));
        if !p.log.is_empty() {
            let folder = logs
                .join(format!("{}_{}_{uid}", p.namespace, p.name))
                .join("linkerd-proxy");
            std::fs::create_dir_all(&folder)?;
            let offset = m.nodes.get(&p.node).and_then(|n| n.offset_s).unwrap_or(0.0);
            let at = m.now + chrono::Duration::milliseconds((offset * 1000.0) as i64);
            let text: String = p
                .log
                .iter()
                .map(|l| {
                    format!(
                        "{} stderr F {l}\n",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    )
                })
                .collect();
            std::fs::write(folder.join("0.log"), text)?;
        }
    }

    let mut linkerd = Vec::new();
    if let Some(text) = &m.trust_roots {
        let mut meta = json!({"name": CONFIG_MAP, "namespace": ns});
        if let Some(changed) = m.trust_roots_changed {
            meta["managedFields"] = json!([{"manager": "kubectl", "operation": "Update", "time": changed.to_rfc3339()}]);
        }
        linkerd.push(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {KEY: text}}),
        );
    }
    if let Some(text) = &m.linkerd_config_anchors {
        let values = serde_yaml::to_string(&json!({"identityTrustAnchorsPEM": text}))?;
        linkerd.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "linkerd-config", "namespace": ns}, "data": {"values": values}}));
    }
    if let Some(s) = &m.issuer_secret {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let data: BTreeMap<&String, String> = s.data.iter().map(|(k, v)| (k, b64(v))).collect();
        let kind = match s.scheme {
            SecretScheme::LinkerdTls => "Opaque",
            SecretScheme::KubernetesTls => "kubernetes.io/tls",
        };
        linkerd.push(json!({"apiVersion": "v1", "kind": "Secret", "type": kind,
            "metadata": {"name": "linkerd-identity-issuer", "namespace": ns}, "data": data}));
    }
    for (i, e) in m.events.iter().enumerate() {
        let (kind, name) = e.object.split_once('/').unwrap_or(("", &e.object));
        linkerd.push(json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.{i:04}"), "namespace": ns},
            "involvedObject": {"kind": kind, "name": name, "namespace": ns},
            "reason": e.reason, "message": e.message, "type": "Normal"}));
    }

    // The workloads a cluster in this state holds (as the case runner's owner index does).
    let mut workloads = Vec::new();
    for p in m.pods.iter().filter(|p| p.remote.is_none()) {
        let Some(o) = &p.owner else { continue };
        let meta = |kind: &str, name: &str| json!({"name": name, "namespace": p.namespace, "uid": format!("uid-{kind}-{name}")});
        match o.kind.as_str() {
            "Deployment" => {
                workloads.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("Deployment", &o.name),
                    "spec": {"selector": {}, "template": {}}}));
                let rs = format!("{}-{TEMPLATE_HASH}", o.name);
                let mut m = meta("ReplicaSet", &rs);
                m["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": o.name,
                                               "uid": format!("uid-Deployment-{}", o.name), "controller": true}]);
                workloads.push(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": m,
                    "spec": {"selector": {}, "template": {}}}));
            }
            "StatefulSet" | "DaemonSet" => workloads.push(json!({"apiVersion": "apps/v1", "kind": o.kind,
                "metadata": meta(&o.kind, &o.name),
                "spec": {"selector": {}, "template": {}, "serviceName": "", "updateStrategy": {"type": "RollingUpdate"}}})),
            _ => {}
        }
    }
    workloads.dedup();

    let mut files = Vec::new();
    for (name, items) in [
        ("pods.yaml", pods),
        ("linkerd.yaml", linkerd),
        ("workloads.yaml", workloads),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, serde_yaml::to_string(&list(items))?)?;
        files.push(path);
    }
    Ok(Rendered { files, logs })
}

/// Runs the offline diagnosis on a rendered case, with the node offsets it gives as `--clock`.
pub fn diagnose_case(m: &Materialised, rendered: &Rendered) -> Result<Report, String> {
    let delta =
        |d: std::time::Duration| chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
    let mut settings = Settings::new(&m.linkerd.namespace);
    settings.allowance = delta(m.linkerd.clock_skew_allowance);
    settings.issuance_lifetime = delta(m.linkerd.issuance_lifetime);
    let collected = diagnose::collect(
        &rendered.files,
        diagnose::default_sources(&m.linkerd.namespace),
        32 << 20,
        m.now,
    );
    if !collected.skipped.is_empty() {
        return Err(format!(
            "the rendered dump did not read whole: {:?}",
            collected.skipped
        ));
    }
    let (logs, _) =
        diagnose::logs::read(std::slice::from_ref(&rendered.logs), &collected.pods, m.now);
    let opts = diagnose::Options {
        settings,
        clocks: m
            .nodes
            .iter()
            .filter(|(_, n)| n.remote.is_none())
            .filter_map(|(name, n)| n.offset_s.map(|o| (name.clone(), o)))
            .collect(),
        now: m.now,
    };
    diagnose::diagnose(&collected, &opts, &logs, &[]).map(|d| d.report)
}
