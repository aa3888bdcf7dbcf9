//! Bench: the aggregator's cluster model at scale. N pods across M nodes, 4 anchors and 3 issuers,
//! each pod presenting its own leaf. Measures the initial verdicts (one signature check per leaf
//! is the floor), the full re-verdict after a bundle change (from cached facts), and peak RSS.
//!
//! Full size, by hand:  cargo build --release -p anchorwatch-tests --bin analysis-scale &&
//!                      target/release/analysis-scale --pods 550000 --nodes 5000
//! CI runs it small in debug to prove it works.

use anchorwatch_aggregator::model::{
    ChainEvidence, Cluster, PodRecord, ProbeEvidence, SpecAnchorsEvidence,
};
use anchorwatch_aggregator::trust::{Trust, TrustSources, read_bundle, read_issuer};
use anchorwatch_aggregator::verify::parse_pem_bundle;
use anchorwatch_tests::pki::{Ca, window};
use chrono::Utc;
use clap::Parser;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Meshed pods in all.
    #[arg(long, default_value_t = 550_000)]
    pods: usize,
    /// Nodes they spread over.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Extra bundle changes after the measured one (to profile the re-verdict).
    #[arg(long, default_value_t = 0)]
    repeat: usize,
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time this thread has run, from the scheduler's accounting (`/proc/thread-self/schedstat`,
/// nanoseconds): on a shared machine, wall time also counts the other tenants' turns.
fn thread_cpu() -> std::time::Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .map(std::time::Duration::from_nanos)
        .unwrap_or_default()
}

/// Wall and CPU time of a phase.
struct Phase {
    wall: Instant,
    cpu: std::time::Duration,
}

impl Phase {
    fn start() -> Self {
        Phase {
            wall: Instant::now(),
            cpu: thread_cpu(),
        }
    }

    /// (wall, cpu) seconds since `start`.
    fn end(&self) -> (f64, f64) {
        (
            self.wall.elapsed().as_secs_f64(),
            (thread_cpu().saturating_sub(self.cpu)).as_secs_f64(),
        )
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let nodes = args.nodes.max(1);
    let per_node = args.pods.div_ceil(nodes);

    // Four anchors (two share a name, as in a regenerated root), three issuers.
    let roots = [
        Ca::root("root.linkerd.cluster.local")?,
        Ca::root("root.linkerd.cluster.local")?,
        Ca::root("root-2026.linkerd.cluster.local")?,
        Ca::root("root.linkerd.other.example")?,
    ];
    let year = window(-86_400, 365 * 86_400);
    let issuers = [
        roots[0].issuer("identity.linkerd.cluster.local", year)?,
        roots[1].issuer("identity.linkerd.cluster.local", year)?,
        roots[2].issuer("identity.linkerd.cluster.local", year)?,
    ];
    let sources = TrustSources {
        namespace: "linkerd".into(),
        config_map: "linkerd-identity-trust-roots".into(),
        key: "ca-bundle.crt".into(),
        secret: "linkerd-identity-issuer".into(),
    };
    let bundle = |idx: &[usize]| {
        let pem: String = idx.iter().map(|i| roots[*i].cert_pem.clone()).collect();
        read_bundle(
            Some(&BTreeMap::from([("ca-bundle.crt".to_string(), pem)])),
            &sources,
        )
    };
    // Spec anchor sets, parsed once each and shared, as identical env PEMs would be interned.
    let spec_sets: Vec<SpecAnchorsEvidence> = [vec![0], vec![0, 1], vec![1], vec![1, 2]]
        .iter()
        .map(|idx| {
            let pem: String = idx.iter().map(|i| roots[*i].cert_pem.clone()).collect();
            SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(&pem)))
        })
        .collect();

    println!("generating {} leaves...", args.pods);
    let t = Instant::now();
    let now = Utc::now();
    // As the ingest does: the issuer every pod presents is parsed and held once.
    let mut interner = anchorwatch_aggregator::wire::Interner::default();
    let mut pods_by_node: Vec<Vec<PodRecord>> = vec![Vec::with_capacity(per_node); nodes];
    for i in 0..args.pods {
        let issuer = &issuers[i % 3];
        let name = format!(
            "sa{}.ns{}.serviceaccount.identity.linkerd.cluster.local",
            i % 50,
            i % 200
        );
        let leaf = issuer.leaf(&name, window(-60, 86_400))?;
        let chain: ChainEvidence = anchorwatch_aggregator::wire::chain(
            &[leaf.der, issuer.cert_der.clone()],
            &mut interner,
        );
        let node = i % nodes;
        pods_by_node[node].push(PodRecord {
            namespace: format!("ns{}", i % 200),
            name: format!("pod-{i}"),
            uid: format!("uid-{i}"),
            node: format!("node-{node}"),
            service_account: format!("sa{}", i % 50),
            owners: vec![],
            pod_template_hash: String::new(),
            mirror: false,
            identity_controller: None,
            pod_ip: String::new(),
            phase: "Running".into(),
            proxy_version: String::new(),
            proxy_started_at: None,
            identity_name: Some(name),
            spec_anchors: spec_sets[i % spec_sets.len()].clone(),
            probe: ProbeEvidence::Chain(chain),
            probed_at: None,
            probe_address: String::new(),
            metrics_cert_expiry: None,
            problems: vec![],
            logs: None,
            reported_at: now,
        });
    }
    println!("  generated in {:.1} s", t.elapsed().as_secs_f64());

    let mut cluster = Cluster::new(
        Trust::new(sources.clone()),
        std::time::Duration::from_secs(3600),
        now,
    );
    cluster.set_bundle(bundle(&[0, 1]), "1".into(), now);
    let secret = BTreeMap::from([(
        "crt.pem".to_string(),
        issuers[1].cert_pem.as_bytes().to_vec(),
    )]);
    cluster.set_issuer(read_issuer(Some(&secret), &sources), now);

    let t = Phase::start();
    for (n, pods) in pods_by_node.into_iter().enumerate() {
        let stream = cluster.open_stream();
        cluster.replace_node(&format!("node-{n}"), stream, "bench", pods, now);
    }
    let initial = t.end();
    let checks_initial = cluster.signature_checks();
    let summary = cluster.summary();

    let t = Phase::start();
    cluster.set_bundle(bundle(&[1, 2, 3]), "2".into(), now);
    let rejudge = t.end();
    let checks_rejudge = cluster.signature_checks() - checks_initial;
    let after = cluster.summary();

    for i in 0..args.repeat {
        let set: &[usize] = if i % 2 == 0 { &[0, 1] } else { &[1, 2, 3] };
        cluster.set_bundle(bundle(set), format!("r{i}"), now);
    }

    let t = Phase::start();
    cluster.tick(now + chrono::Duration::seconds(30));
    let tick = t.end();

    // The whole-cluster analysis a Summary runs: findings, affected pods, phase, plan.
    let t = Phase::start();
    let report = cluster.report(
        &anchorwatch_aggregator::analysis::cluster::Settings::new("linkerd"),
        now + chrono::Duration::seconds(30),
    );
    let whole = t.end();

    println!(
        "analysis scale: {} pods on {nodes} nodes, 4 anchors, 3 issuers",
        summary.pods
    );
    println!(
        "  initial verdicts: {:.2} s, cpu {:.2} s ({:.0} pods/s of cpu, {checks_initial} signature checks)",
        initial.0,
        initial.1,
        summary.pods as f64 / initial.1
    );
    println!(
        "  re-verdict after a bundle change: {:.3} s, cpu {:.3} s ({checks_rejudge} new signature checks)",
        rejudge.0, rejudge.1
    );
    println!(
        "  re-verdict as time passes (tick): {:.3} s, cpu {:.3} s",
        tick.0, tick.1
    );
    println!(
        "  whole-cluster analysis (findings, phase, plan): {:.3} s, cpu {:.3} s ({} findings, {} affected)",
        whole.0,
        whole.1,
        report.findings.len(),
        report.affected.len()
    );
    println!(
        "  verdicts before: {:?}",
        summary
            .verdicts
            .iter()
            .map(|(k, n)| format!("{}={n}", k.name()))
            .collect::<Vec<_>>()
    );
    println!(
        "  verdicts after:  {:?}",
        after
            .verdicts
            .iter()
            .map(|(k, n)| format!("{}={n}", k.name()))
            .collect::<Vec<_>>()
    );
    println!(
        "  RSS now {:.0} MiB, peak {:.0} MiB",
        rss_kib("VmRSS:") as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
    anyhow::ensure!(
        after.verdicts != summary.verdicts,
        "the bundle change changed no verdict"
    );
    Ok(())
}
