//! The case runner: a materialised case becomes the aggregator's analysis input (the same types
//! the live pipeline builds from agent reports and watches), the real analysis and planner run,
//! and every `expect` field is checked.

use super::{Materialised, PodMaterial, Presented, SpecAnchors, pem_blocks};
use anchorwatch_aggregator::analysis::cluster::{
    ClusterInput, IdentityInput, NodeClock, PodInput, Report, Settings, UpdateStrategy, analyse,
};
use anchorwatch_aggregator::control_plane::{IdentityEvent, IssuerEventKind};
use anchorwatch_aggregator::model::{ChainEvidence, PodRecord, ProbeEvidence, SpecAnchorsEvidence};
use anchorwatch_aggregator::owners::{Controller, OwnerIndex};
use anchorwatch_aggregator::trust::{BundleState, Trust, TrustSources, read_bundle, read_issuer};
use anchorwatch_aggregator::verify::{Fingerprint, Verifier, parse_der, parse_pem_bundle};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const CONFIG_MAP: &str = "linkerd-identity-trust-roots";
const KEY: &str = "ca-bundle.crt";

fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// The analysis input a cluster in this state gives the aggregator.
pub fn input(m: &Materialised) -> ClusterInput {
    let ns = m.linkerd.namespace.clone();
    let mut settings = Settings::new(&ns);
    settings.allowance = delta(m.linkerd.clock_skew_allowance);
    settings.issuance_lifetime = delta(m.linkerd.issuance_lifetime);
    let sources = TrustSources {
        namespace: ns.clone(),
        config_map: CONFIG_MAP.into(),
        key: KEY.into(),
        secret: "linkerd-identity-issuer".into(),
    };
    let mut trust = Trust::new(sources.clone());
    let bundle = |text: &str| {
        read_bundle(
            Some(&BTreeMap::from([(KEY.to_string(), text.to_string())])),
            &sources,
        )
    };
    // The bundle's history: what it held before its last change, then what it holds now.
    let mut current_since = DateTime::<Utc>::MIN_UTC;
    if let (Some(before), Some(changed)) = (&m.trust_roots_before, m.trust_roots_changed) {
        trust.set_bundle(bundle(before), "before".into(), DateTime::<Utc>::MIN_UTC);
        current_since = changed;
    }
    match &m.trust_roots {
        Some(text) => trust.set_bundle(bundle(text), "current".into(), current_since),
        None => trust.set_bundle(
            BundleState::Unavailable(format!("ConfigMap {ns}/{CONFIG_MAP} not found")),
            String::new(),
            current_since,
        ),
    };
    let mut issuer_unreadable = 0;
    if let Some(secret) = &m.issuer_secret {
        trust.set_issuer(read_issuer(Some(&secret.data), &sources));
        issuer_unreadable = anchorwatch_aggregator::trust::issuer_unreadable(Some(&secret.data));
    } else {
        trust.set_issuer(anchorwatch_aggregator::trust::IssuerState::Unavailable(
            "Secret not found".into(),
        ));
    }
    let identity = m
        .identity
        .as_ref()
        .map(|id| IdentityInput {
            node: Some(id.node.clone()),
            issuer: (!id.issuer_der.is_empty()).then(|| Fingerprint::of(&id.issuer_der)),
            anchors: Some(
                parse_pem_bundle(&id.anchors_pem)
                    .certs
                    .iter()
                    .map(|c| c.fingerprint)
                    .collect(),
            ),
            reachable: Some(id.reachable),
            started_at: m
                .pods
                .iter()
                .find(|p| {
                    p.namespace == ns
                        && (p.service_account == "linkerd-identity"
                            || p.owner
                                .as_ref()
                                .is_some_and(|o| o.name == "linkerd-identity"))
                })
                .and_then(|p| p.started),
            events: identity_events(m),
        })
        .unwrap_or_else(|| IdentityInput {
            events: identity_events(m),
            ..IdentityInput::default()
        });
    let nodes = m
        .nodes
        .iter()
        .map(|(n, spec)| {
            (
                n.clone(),
                NodeClock {
                    offset_s: spec.offset_s,
                    bound_s: 0.0,
                    remote: spec.remote.clone(),
                    last_offset_s: None,
                },
            )
        })
        .collect();
    let mut interner = anchorwatch_aggregator::wire::Interner::default();
    let owners = owner_index(&m.pods);
    let pods = m
        .pods
        .iter()
        .map(|p| {
            let probe = match &p.presented {
                Presented::Nothing => ProbeEvidence::Failed {
                    kind: "closed_before_server_hello".into(),
                    detail: "the proxy presents no certificate".into(),
                },
                Presented::Chain(ders) => {
                    ProbeEvidence::Chain(anchorwatch_aggregator::wire::chain(ders, &mut interner))
                }
                Presented::Raw { text, .. } => ProbeEvidence::Chain(raw_chain(text)),
            };
            let spec_anchors = match &p.anchors {
                SpecAnchors::Pem(text) => {
                    SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(text)))
                }
                SpecAnchors::ConfigMap => SpecAnchorsEvidence::ConfigMap {
                    name: CONFIG_MAP.into(),
                    key: KEY.into(),
                },
            };
            let logs = (!p.log.is_empty()).then(|| Arc::new(log_evidence(&p.log, m.now)));
            let record = PodRecord {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                uid: p.full_name(),
                node: p.node.clone(),
                service_account: p.service_account.clone(),
                owners: p
                    .owner
                    .iter()
                    .map(|o| pod_owner(&o.kind, &o.name))
                    .collect(),
                pod_template_hash: match &p.owner {
                    Some(o) if o.kind == "Deployment" => TEMPLATE_HASH.into(),
                    _ => String::new(),
                },
                mirror: false,
                identity_controller: None,
                pod_ip: p.ip.map(|i| i.to_string()).unwrap_or_default(),
                phase: "Running".into(),
                proxy_version: m.linkerd.version.clone().unwrap_or_default(),
                proxy_started_at: p.started,
                identity_name: Some(p.identity_name.clone()),
                spec_anchors,
                probe,
                probed_at: Some(m.now),
                probe_address: String::new(),
                metrics_cert_expiry: None,
                problems: vec![],
                logs,
                reported_at: m.now,
            };
            let (workload, workload_facts) = owners.resolve(&record);
            PodInput {
                record: record.into(),
                workload,
                workload_facts,
                remote: p.remote.clone(),
                analysis: None,
            }
        })
        .collect();
    ClusterInput {
        now: m.now,
        settings,
        trust,
        linkerd_config: m
            .linkerd_config_anchors
            .as_deref()
            .map(|t| Arc::new(parse_pem_bundle(t))),
        issuer_unreadable,
        bundle_unreadable: m
            .trust_roots
            .as_deref()
            .map(|t| {
                anchorwatch_aggregator::trust::bundle_unreadable(
                    Some(&BTreeMap::from([(KEY.to_string(), t.to_string())])),
                    &sources,
                )
            })
            .unwrap_or_default(),
        identity,
        nodes,
        pods,
    }
}

/// What the aggregator receives of a pod whose proxy logged `lines` (messages, as a case gives
/// them, all logged at `now`): counted by the agent's own code, sent and decoded as live
/// evidence is, so that cases and live clusters are judged alike.
pub fn log_evidence(
    lines: &[String],
    now: DateTime<Utc>,
) -> anchorwatch_aggregator::model::LogEvidence {
    let mut logs = anchorwatch_agent::logs::PodLogs::default();
    for line in lines {
        logs.record(&anchorwatch_proxylog::classify(line), now, line);
    }
    let sent = anchorwatch_agent::wire::log_evidence(&logs.snapshot(now));
    anchorwatch_aggregator::wire::log_evidence(sent, &mut Vec::new())
}

/// The case's issuer events of linkerd-identity (on its Deployment), in the order given; cases
/// carry no event times.
fn identity_events(m: &Materialised) -> Vec<IdentityEvent> {
    m.events
        .iter()
        .filter(|e| e.object == "Deployment/linkerd-identity")
        .filter_map(|e| {
            Some(IdentityEvent {
                kind: IssuerEventKind::from_reason(&e.reason)?,
                message: e.message.clone(),
                at: None,
            })
        })
        .collect()
}

/// The `pod-template-hash` of every case pod owned by a Deployment.
pub(crate) const TEMPLATE_HASH: &str = "5c8d9f7b6";

/// The owner reference a case pod carries: `owner: Deployment/api` means a ReplicaSet of it.
pub(crate) fn pod_owner(kind: &str, name: &str) -> String {
    match kind {
        "Deployment" => format!("ReplicaSet/{name}-{TEMPLATE_HASH}"),
        _ => format!("{kind}/{name}"),
    }
}

/// The workload objects a cluster in this state holds, as the aggregator's owner watches would
/// list them: each Deployment with its ReplicaSet, not paused; StatefulSets and DaemonSets with
/// the Kubernetes default update strategy, RollingUpdate.
fn owner_index(pods: &[PodMaterial]) -> OwnerIndex {
    let mut replica_sets = Vec::new();
    let mut deployments = Vec::new();
    let mut stateful_sets = Vec::new();
    let mut daemon_sets = Vec::new();
    let rolling = UpdateStrategy::RollingUpdate { partition: 0 };
    for p in pods {
        let Some(o) = &p.owner else { continue };
        let ns = p.namespace.clone();
        match o.kind.as_str() {
            "Deployment" => {
                let controller = Controller {
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                };
                let rs = format!("{}-{TEMPLATE_HASH}", o.name);
                replica_sets.push((ns.clone(), rs, Some(controller)));
                deployments.push((ns, o.name.clone(), false));
            }
            "StatefulSet" => stateful_sets.push((ns, o.name.clone(), rolling.clone())),
            "DaemonSet" => daemon_sets.push((ns, o.name.clone(), rolling.clone())),
            _ => {}
        }
    }
    let mut index = OwnerIndex::default();
    index.replica_sets.replace_all(replica_sets);
    index.deployments.replace_all(deployments);
    index.stateful_sets.replace_all(stateful_sets);
    index.daemon_sets.replace_all(daemon_sets);
    index
}

/// A presented chain given as literal PEM: every CERTIFICATE block in order, unreadable ones named.
fn raw_chain(text: &str) -> ChainEvidence {
    let mut out = ChainEvidence::default();
    for (i, b) in pem_blocks(text)
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .enumerate()
    {
        match b.der.as_deref().map(parse_der) {
            Some(Ok(c)) => out.certs.push(Arc::new(c)),
            other => {
                let why = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "not base64".to_string(),
                };
                out.unreadable
                    .push(format!("presented certificate {}: {why}", i + 1));
                if i == 0 {
                    out.leaf_unreadable = true;
                }
            }
        }
    }
    out
}

/// Runs the real analysis on a case and returns every `expect` mismatch (empty: the case passes).
pub fn run(m: &Materialised) -> (Report, Vec<String>) {
    let input = input(m);
    let report = analyse(&input, &mut Verifier::new());
    let failures = check(m, &report);
    (report, failures)
}

/// Every `expect` mismatch of a report (empty: the case passes).
pub fn check(m: &Materialised, r: &Report) -> Vec<String> {
    let e = &m.expect;
    let mut out = Vec::new();
    for v in &e.verdicts {
        if !r.has(&v.name, v.subject.as_deref()) {
            out.push(format!(
                "expected verdict {} not reported",
                show(&v.name, &v.subject)
            ));
        }
    }
    for v in &e.must_not {
        if r.has(&v.name, v.subject.as_deref()) {
            out.push(format!(
                "forbidden verdict {} reported",
                show(&v.name, &v.subject)
            ));
        }
    }
    let want: BTreeSet<String> = e.affected.iter().cloned().collect();
    if want != r.affected {
        out.push(format!("affected: expected {want:?}, got {:?}", r.affected));
    }
    let restarted: Vec<String> = r
        .plan
        .restarts
        .iter()
        .map(|x| x.workload.to_string())
        .collect();
    let mut last = None;
    for w in &e.restart {
        let name = format!("{}/{}/{}", w.namespace, w.kind, w.name);
        match restarted.iter().position(|x| *x == name) {
            None => out.push(format!(
                "plan does not restart {name} (restarts {restarted:?})"
            )),
            Some(i) => {
                if e.ordered && last.is_some_and(|l| i < l) {
                    out.push(format!("plan restarts {name} out of order ({restarted:?})"));
                }
                last = Some(i);
            }
        }
    }
    for x in &r.plan.restarts {
        let w = super::WorkloadRef {
            namespace: x.workload.namespace.clone(),
            kind: x.workload.kind.clone(),
            name: x.workload.name.clone(),
        };
        for g in &e.no_restart {
            if g.matches(&w) {
                out.push(format!(
                    "plan restarts {} which no_restart forbids ({g:?})",
                    x.workload
                ));
            }
        }
    }
    for h in &e.held {
        let name = format!("{}/{}/{}", h.namespace, h.kind, h.name);
        if !r
            .plan
            .held
            .iter()
            .any(|x| x.target.to_string() == name && !x.reason.is_empty())
        {
            out.push(format!(
                "plan does not hold {name} (holds {:?})",
                r.plan
                    .held
                    .iter()
                    .map(|h| h.target.to_string())
                    .collect::<Vec<_>>()
            ));
        }
    }
    if e.escalate != r.plan.escalate {
        out.push(format!(
            "escalate: expected {}, got {}",
            e.escalate, r.plan.escalate
        ));
    }
    out
}

fn show(name: &str, subject: &Option<String>) -> String {
    match subject {
        Some(s) => format!("{name}({s})"),
        None => name.to_string(),
    }
}

/// A human-readable dump of a report, for failures.
pub fn describe(r: &Report) -> String {
    let mut s = String::new();
    for (pod, a) in &r.pods {
        let v: Vec<String> = a
            .verdicts
            .iter()
            .map(|v| format!("{}[{}]", v.kind.name(), v.reason))
            .collect();
        s.push_str(&format!("  pod {pod}: {}\n", v.join(", ")));
    }
    for f in &r.findings {
        s.push_str(&format!(
            "  finding {}({}) {:?}: {} {:?}\n",
            f.name,
            f.subject.clone().unwrap_or_default(),
            f.severity,
            f.detail,
            f.pods
        ));
    }
    s.push_str(&format!(
        "  affected: {:?}\n  phase: {:?}\n",
        r.affected, r.phase
    ));
    for x in &r.plan.restarts {
        s.push_str(&format!(
            "  restart {} ({:?}, {:?}): {}\n",
            x.workload, x.method, x.tier, x.reason
        ));
    }
    for h in &r.plan.held {
        s.push_str(&format!("  held {}: {}\n", h.target, h.reason));
    }
    s.push_str(&format!(
        "  blockers: {:?}\n  escalate: {}\n",
        r.plan.blockers, r.plan.escalate
    ));
    s
}
