//! Conversion of the agent's domain values to the `anchorwatch.v1` wire types, in one place.

use crate::inventory::{MetricsRecord, PodEvidence, ProbeOutcome};
use crate::logs::LogEvidence;
use crate::time::to_proto;
use anchorwatch_proto::v1 as pb;

/// One pod's evidence as sent to the aggregator: what its spec says, what the probe and the
/// metrics read found.
pub fn pod_evidence(e: &PodEvidence) -> pb::PodEvidence {
    let mut out = anchorwatch_podspec::evidence(&e.pod);
    if let Some(proxy) = out.proxy.as_mut() {
        proxy.admin_port = e
            .probe
            .as_ref()
            .and_then(|p| p.address)
            .map(|a| u32::from(a.port()))
            .unwrap_or_default();
    }
    out.probe = e.probe.as_ref().map(|p| pb::ProbeResult {
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
    });
    out.metrics = e.metrics.as_ref().map(|m| pb::ProxyMetrics {
        outcome: Some(match m {
            MetricsRecord::Expiry { metric, expires_at } => {
                pb::proxy_metrics::Outcome::Expiry(pb::CertExpiryGauge {
                    metric: metric.clone(),
                    expires_at: Some(to_proto(*expires_at)),
                })
            }
            MetricsRecord::Unavailable(why) => pb::proxy_metrics::Outcome::Error(why.clone()),
        }),
    });
    out.logs = e.logs.as_deref().map(log_evidence);
    out
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
