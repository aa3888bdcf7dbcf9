//! Bench: N simulated agents against the real aggregator. One process opens N agent streams
//! (over `--connections` HTTP/2 connections), each reporting P meshed pods with real
//! certificate chains (unique P-256 leaves under three issuers of two roots, spec anchors drawn
//! from four bundles, as in a rotation), then heartbeats. It measures:
//!
//! 1. connect: from the first stream to every snapshot acknowledged, and to the aggregator's
//!    Summary counting every pod (the full view);
//! 2. steady state: the aggregator's CPU and RSS over a window of heartbeats;
//! 3. mass reconnect: the aggregator is SIGKILLed and restarted on the same port (a failover),
//!    every agent reconnects at once with the agents' backoff, and the time to the full view
//!    again.
//!
//! The simulated API server runs in this process; the aggregator runs with `--agent-auth none`
//! (the TokenReview path is measured by its own cache, not here).
//!
//! Full size, by hand:  cargo build --release -p anchorwatch-tests --bins &&
//!                      cargo build --release -p anchorwatch-aggregator &&
//!                      target/release/agent-load --agents 5000 --pods 110
//! CI runs it small in debug to prove it works.

use anchorwatch_proto::v1 as pb;
use anchorwatch_tests::kubesim::KubeSim;
use anchorwatch_tests::pki::{Ca, window};
use anchorwatch_tests::process::{self, Proc};
use anchorwatch_tests::scenario;
use clap::Parser;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Parser)]
struct Args {
    /// Simulated agents (nodes).
    #[arg(long, default_value_t = 5_000)]
    agents: usize,
    /// Meshed pods per agent.
    #[arg(long, default_value_t = 110)]
    pods: usize,
    /// HTTP/2 connections the streams share; by default one per agent, as real agents have.
    /// (Sharing one connection among streams that the aggregator reads in turn lets the unread
    /// ones fill the connection's flow-control window and stall the one being read.)
    #[arg(long)]
    connections: Option<usize>,
    /// Seconds of steady state measured.
    #[arg(long, default_value_t = 30)]
    steady: u64,
    /// Heartbeat interval of every agent, seconds.
    #[arg(long, default_value_t = 10)]
    heartbeat: u64,
    /// Bound on each phase, seconds.
    #[arg(long, default_value_t = 600)]
    limit: u64,
}

/// Everything one simulated agent sends.
struct Node {
    name: String,
    pods: Vec<pb::PodEvidence>,
}

fn evidence(
    node: &str,
    i: usize,
    chain: Vec<Vec<u8>>,
    anchors: &str,
    identity: String,
) -> pb::PodEvidence {
    pb::PodEvidence {
        pod: Some(pb::PodRef {
            namespace: format!("ns{}", i % 200),
            name: format!("pod-{i}"),
            uid: format!("uid-{i}"),
        }),
        node: node.to_string(),
        service_account: format!("sa{}", i % 50),
        owners: vec![pb::OwnerRef {
            kind: "ReplicaSet".into(),
            name: format!("app{}-5d8f9c", i % 400),
            uid: format!("rs-{}", i % 400),
            controller: true,
        }],
        pod_template_hash: "5d8f9c".into(),
        pod_ip: format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        phase: "Running".into(),
        proxy: Some(pb::ProxyContainer {
            name: "linkerd-proxy".into(),
            native_sidecar: true,
            image: "cr.l5d.io/linkerd/proxy:edge-25.4.1".into(),
            version: "edge-25.4.1".into(),
            ready: true,
            admin_port: 4191,
            ..Default::default()
        }),
        identity_name: identity,
        spec_anchors: Some(pb::SpecAnchors {
            source: Some(pb::spec_anchors::Source::Pem(anchors.to_string())),
        }),
        probe: Some(pb::ProbeResult {
            address: "10.0.0.1:4191".into(),
            outcome: Some(pb::probe_result::Outcome::Chain(pb::PresentedChain {
                certificates: chain,
                tls_version: "TLSv1_3".into(),
                cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Connects `node`'s stream over `channel`, sends its snapshot, signals `acked` on the first
/// acknowledgement, then heartbeats until the stream fails; reconnects with the agents'
/// jittered backoff (500 ms doubling to 2 s) and sends the snapshot again.
async fn agent(
    channel: tonic::transport::Channel,
    node: Arc<Node>,
    heartbeat: Duration,
    acked: Arc<AtomicUsize>,
    progress: Arc<Notify>,
) {
    let mut backoff = Duration::from_millis(500);
    let mut seed = node.name.len() as u64 ^ 0x9e37_79b9;
    loop {
        // The snapshot in parts, as the agent sends it.
        let whole = pb::NodeSnapshot {
            node: node.name.clone(),
            agent_version: "agent-load".into(),
            pods: node.pods.clone(),
            ..Default::default()
        };
        let parts =
            anchorwatch_proto::parts::snapshot(whole, 1, anchorwatch_proto::parts::PART_BYTES);
        let (tx, rx) = tokio::sync::mpsc::channel(parts.len() + 4);
        for part in parts {
            let msg = pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Snapshot(part)),
            };
            let _ = tx.send(msg).await;
        }
        let mut client = pb::ingest_client::IngestClient::new(channel.clone())
            .max_encoding_message_size(64 * 1024 * 1024);
        let ok = async {
            let mut replies = client
                .report(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .ok()?
                .into_inner();
            replies.message().await.ok()??;
            acked.fetch_add(1, Ordering::Relaxed);
            progress.notify_one();
            let mut every = tokio::time::interval(heartbeat);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let hb = pb::AgentMessage {
                            kind: Some(pb::agent_message::Kind::Heartbeat(pb::Heartbeat {
                                node: node.name.clone(),
                                ..Default::default()
                            })),
                        };
                        tx.send(hb).await.ok()?;
                    }
                    m = replies.message() => { m.ok()??; }
                }
            }
            #[allow(unreachable_code)]
            Some(())
        }
        .await;
        if ok.is_none() {
            // Jitter in [d/2, d].
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let half = backoff.as_millis() as u64 / 2;
            tokio::time::sleep(Duration::from_millis(half + seed % (half + 1))).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// Waits until `acked` reaches `want`; the elapsed time.
async fn all_acked(
    acked: &AtomicUsize,
    progress: &Notify,
    want: usize,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    while acked.load(Ordering::Relaxed) < want {
        assert!(
            start.elapsed() < limit,
            "only {} of {want} snapshots acknowledged after {limit:?}",
            acked.load(Ordering::Relaxed)
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), progress.notified()).await;
    }
    start.elapsed()
}

/// Polls the aggregator's Summary until it counts `pods` pods; the elapsed time.
async fn full_view(url: &str, pods: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let counted = async {
            // A Summary of 550,000 pods names every affected pod: tens of MiB.
            let mut q = pb::query_client::QueryClient::connect(url.to_string())
                .await
                .ok()?
                .max_decoding_message_size(512 * 1024 * 1024);
            let s = match q.summary(pb::SummaryRequest {}).await {
                Ok(s) => s.into_inner(),
                Err(e) => {
                    eprintln!("  summary: {}", e.message());
                    return None;
                }
            };
            let size = prost::Message::encoded_len(&s);
            if s.pods as usize == pods {
                println!(
                    "  summary of {} pods: {:.1} MiB",
                    s.pods,
                    size as f64 / 1048576.0
                );
            }
            Some(s.pods as usize)
        }
        .await;
        if counted == Some(pods) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "the aggregator counts {counted:?} of {pods} pods after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn aggregator(kubeconfig: &std::path::Path, listen: &str, dir: &std::path::Path) -> Proc {
    process::aggregator(
        kubeconfig,
        listen,
        dir,
        // The production re-judging interval (the test harness's default is 1 s).
        &[
            "--leader-elect",
            "false",
            "--log-level",
            "info",
            "--recheck-interval",
            "5s",
        ],
    )
    .expect("aggregator starts")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let limit = Duration::from_secs(args.limit);
    let total = args.agents * args.pods;

    // Two roots mid-rotation, three issuers, four spec bundles.
    let roots = [
        Ca::root("root.linkerd.cluster.local")?,
        Ca::root("root-2026.linkerd.cluster.local")?,
    ];
    let year = window(-86_400, 365 * 86_400);
    let issuers = [
        roots[0].issuer("identity.linkerd.cluster.local", year)?,
        roots[1].issuer("identity.linkerd.cluster.local", year)?,
        roots[1].issuer("identity.linkerd.cluster.local", year)?,
    ];
    let spec_bundles = [
        roots[0].cert_pem.clone(),
        format!("{}{}", roots[0].cert_pem, roots[1].cert_pem),
        roots[1].cert_pem.clone(),
        format!("{}{}", roots[1].cert_pem, roots[0].cert_pem),
    ];
    println!("generating {total} leaves...");
    let t = Instant::now();
    let nodes: Vec<Arc<Node>> = (0..args.agents)
        .map(|n| {
            let name = format!("node-{n}");
            let pods = (0..args.pods)
                .map(|k| {
                    let i = n * args.pods + k;
                    let issuer = &issuers[i % 3];
                    let identity = format!(
                        "sa{}.ns{}.serviceaccount.identity.linkerd.cluster.local",
                        i % 50,
                        i % 200
                    );
                    let leaf = issuer.leaf(&identity, window(-60, 86_400))?;
                    Ok(evidence(
                        &name,
                        i,
                        vec![leaf.der, issuer.cert_der.clone()],
                        &spec_bundles[i % 4],
                        identity,
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Arc::new(Node { name, pods }))
        })
        .collect::<anyhow::Result<_>>()?;
    println!("  generated in {:.1} s", t.elapsed().as_secs_f64());

    let kube = KubeSim::start("127.0.0.1:0".parse()?).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig)?;
    kube.apply_config_map(scenario::trust_roots(&[
        &roots[0].cert_pem,
        &roots[1].cert_pem,
    ]));
    kube.apply_secret(scenario::issuer_secret(&issuers[1]));

    let listen = format!("127.0.0.1:{}", process::free_port()?);
    let url = format!("http://{listen}");
    let mut agg = aggregator(&kubeconfig, &listen, dir.path());
    // The aggregator is up when it answers.
    full_view(&url, 0, Duration::from_secs(30)).await;

    let connections = args
        .connections
        .unwrap_or(args.agents)
        .clamp(1, args.agents.max(1));
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(
            tonic::transport::Endpoint::from_shared(url.clone())?
                .http2_keep_alive_interval(Duration::from_secs(20))
                .connect_lazy(),
        );
    }
    let acked = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Notify::new());
    let heartbeat = Duration::from_secs(args.heartbeat);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, node) in nodes.iter().enumerate() {
        tasks.spawn(agent(
            channels[n % connections].clone(),
            node.clone(),
            heartbeat,
            acked.clone(),
            progress.clone(),
        ));
    }
    let acks = all_acked(&acked, &progress, args.agents, limit).await;
    full_view(&url, total, limit).await;
    println!(
        "connect: {} agents x {} pods = {total} pods; all snapshots acknowledged in {:.1} s, full view in {:.1} s",
        args.agents,
        args.pods,
        acks.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );

    let pid = agg.pid();
    let cpu0 = process::cpu_seconds(pid).unwrap_or(0.0);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.steady)).await;
    let cpu = (process::cpu_seconds(pid).unwrap_or(0.0) - cpu0) / t.elapsed().as_secs_f64();
    let rss = process::status_kib(pid, "VmRSS:").unwrap_or(0);
    let hwm = process::status_kib(pid, "VmHWM:").unwrap_or(0);
    println!(
        "steady state ({} s, heartbeats every {} s): aggregator CPU {:.1} % of a core, RSS {:.0} MiB, peak RSS {:.0} MiB",
        args.steady,
        args.heartbeat,
        cpu * 100.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );

    // Failover: the aggregator dies and comes back empty; everyone reconnects at once.
    agg.kill();
    acked.store(0, Ordering::Relaxed);
    let killed = Instant::now();
    let mut agg = aggregator(&kubeconfig, &listen, dir.path());
    let acks = all_acked(&acked, &progress, args.agents, limit).await;
    full_view(&url, total, limit).await;
    let whole = killed.elapsed();
    let hwm = process::status_kib(agg.pid(), "VmHWM:").unwrap_or(0);
    println!(
        "mass reconnect: all snapshots acknowledged {:.1} s after the restart began, full view in {:.1} s (target < 60 s); peak RSS {:.0} MiB (target < 2048 MiB)",
        acks.as_secs_f64(),
        whole.as_secs_f64(),
        hwm as f64 / 1024.0
    );
    tasks.abort_all();
    agg.stop(Duration::from_secs(10));
    kube.shutdown().await;
    Ok(())
}
