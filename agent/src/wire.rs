//! Conversion of the agent's domain values to the `anchorwatch.v1` wire types, in one place.

use crate::inventory::{MetricsRecord, PodEvidence, ProbeOutcome};
use crate::logs::LogEvidence;
use crate::pod::SpecAnchors;
use crate::time::to_proto;
use anchorwatch_proto::v1 as pb;

/// One pod's evidence as sent to the aggregator.
pub fn pod_evidence(e: &PodEvidence) -> pb::PodEvidence {
    let pod = &e.pod;
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
            admin_port: e
                .probe
                .as_ref()
                .and_then(|p| p.address)
                .map(|a| u32::from(a.port()))
                .unwrap_or_default(),
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
        probe: e.probe.as_ref().map(|p| pb::ProbeResult {
            at: Some(to_proto(p.since)),
            address: p.address.map(|a| a.to_string()).unwrap_or_default(),
            outcome: Some(match &p.outcome {
                ProbeOutcome::Chain(c) => pb::probe_result::Outcome::Chain(pb::PresentedChain {
                    certificates: c.certificates.clone(),
                    tls_version: c.tls_version.clone(),
                    cipher_suite: c.cipher_suite.clone(),
                }),
                ProbeOutcome::Failed { kind, detail } => {
                    pb::probe_result::Outcome::Failure(pb::ProbeFailure {
                        kind: kind.clone(),
                        detail: detail.clone(),
                    })
                }
                ProbeOutcome::Skipped(why) => pb::probe_result::Outcome::Skipped(why.clone()),
            }),
        }),
        metrics: e.metrics.as_ref().map(|m| pb::ProxyMetrics {
            outcome: Some(match m {
                MetricsRecord::Expiry { metric, expires_at } => {
                    pb::proxy_metrics::Outcome::Expiry(pb::CertExpiryGauge {
                        metric: metric.clone(),
                        expires_at: Some(to_proto(*expires_at)),
                    })
                }
                MetricsRecord::Unavailable(why) => pb::proxy_metrics::Outcome::Error(why.clone()),
            }),
        }),
        spec_problems: pod.problems.clone(),
        pod_template_hash: pod.pod_template_hash.clone(),
        mirror: pod.mirror,
        identity_controller: pod.identity_controller.as_ref().map(|f| {
            pb::IdentityControllerFlags {
                clock_skew_allowance: f.clock_skew_allowance.clone(),
                issuance_lifetime: f.issuance_lifetime.clone(),
            }
        }),
        logs: e.logs.as_deref().map(log_evidence),
    }
}

/// What a pod's logs say, as sent to the aggregator.
pub fn log_evidence(e: &LogEvidence) -> pb::LogEvidence {
    pb::LogEvidence {
        kinds: e
            .kinds
            .iter()
            .map(|k| pb::LogKindEvidence {
                kind: k.kind.to_string(),
                total: k.total,
                last_5m: k.last_5m,
                last_1h: k.last_1h,
                first_seen: Some(to_proto(k.first_seen)),
                last_seen: Some(to_proto(k.last_seen)),
                samples: k.samples.clone(),
                peers: k
                    .peers
                    .iter()
                    .map(|p| pb::LogPeer {
                        address: p.addr.to_string(),
                        ephemeral_port: p.ephemeral_port,
                        count: p.count,
                        last_seen: Some(to_proto(p.last_seen)),
                    })
                    .collect(),
            })
            .collect(),
        problem: e.problem.clone().unwrap_or_default(),
    }
}
