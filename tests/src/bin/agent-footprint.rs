//! Bench: one real agent on a node with N meshed pods (simulated proxies on loopback), reporting
//! to the real aggregator. Measures the agent's RSS (current and peak), its CPU time, and the
//! duration of its probe rounds (from its own "probe round complete" log lines).
//!
//! Full size, by hand:  cargo build --release --workspace --bins &&
//!                      target/release/agent-footprint --pods 110 --rounds 10
//! CI runs it small in debug to prove it works.

use anchorwatch_tests::kubesim::KubeSim;
use anchorwatch_tests::pki::{Ca, window};
use anchorwatch_tests::process::{self, Proc};
use anchorwatch_tests::proxysim::{MetricsStyle, ProxyIdentity, SimProxy};
use anchorwatch_tests::scenario::{self, Anchors, PodPlan, Presents, Which};
use clap::Parser;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Meshed pods on the node.
    #[arg(long, default_value_t = 110)]
    pods: usize,
    /// Probe rounds to measure after the first full report.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Agent probe interval.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

fn round_times(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("probe round complete"))
        .filter_map(|l| {
            l.split("elapsed_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::Builder::new()
        .prefix("anchorwatch-bench-")
        .tempdir()?;
    let kube = KubeSim::start("127.0.0.1:0".parse()?).await?;
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig)?;

    let root = Ca::linkerd_test_root("ca2")?;
    let issuer = root.issuer("identity.linkerd.cluster.local", window(-60, 86_400))?;
    kube.apply_config_map(scenario::trust_roots(&[&root.cert_pem]));
    kube.apply_secret(scenario::issuer_secret(&issuer));
    let pki = scenario::Pki::new()?;
    let mut proxies = Vec::new();
    for i in 0..args.pods {
        let ip = IpAddr::V4(Ipv4Addr::new(
            127,
            40,
            (i / 200) as u8,
            (i % 200) as u8 + 10,
        ));
        let sa: &'static str = Box::leak(format!("sa{i}").into_boxed_str());
        let name: &'static str = Box::leak(format!("pod-{i}").into_boxed_str());
        let plan = PodPlan {
            namespace: "bench",
            name,
            service_account: sa,
            node: 1,
            presents: Presents::Leaf(Which::NewIssuer, -60, 86_400),
            anchors: Anchors::Roots(&[Which::NewIssuer]),
            expect: &[],
        };
        let id = scenario::identity_name(sa, "bench");
        let leaf = issuer.leaf(&id, window(-60, 86_400))?;
        proxies.push(
            SimProxy::start(
                SocketAddr::new(ip, 4191),
                ProxyIdentity::Ready {
                    name: id,
                    chain: vec![leaf.der, issuer.cert_der.clone()],
                    key_pkcs8: leaf.key_pkcs8,
                },
                MetricsStyle::Control,
            )
            .await?,
        );
        kube.apply_pod(scenario::pod(&plan, ip, &pki)?);
    }

    let addr = format!("127.0.0.1:{}", process::free_port()?);
    let url = format!("http://{addr}");
    let _aggregator = process::aggregator(&kubeconfig, &addr, dir.path(), &[])?;
    let interval = humantime::format_duration(args.interval).to_string();
    let started = Instant::now();
    let mut agent: Proc = process::agent(
        &kubeconfig,
        "node-1",
        &url,
        dir.path(),
        &[
            "--probe-interval",
            &interval,
            "--probe-timeout",
            "3s",
            "--log-level",
            "info",
        ],
    )?;
    let pid = agent.pid();

    // First full view: every pod reported with its chain.
    let deadline = Instant::now() + Duration::from_secs(120);
    let first_view = loop {
        anyhow::ensure!(agent.is_running(), "agent exited:\n{}", agent.log_text());
        anyhow::ensure!(
            Instant::now() < deadline,
            "no full view within 120 s:\n{}",
            agent.log_text()
        );
        if !round_times(&agent.log_text()).is_empty() {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cpu0 = anchorwatch_tests::process::cpu_seconds(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let deadline =
        Instant::now() + args.interval * (args.rounds as u32 + 3) + Duration::from_secs(30);
    let mut rounds;
    loop {
        rounds = round_times(&agent.log_text());
        if rounds.len() > args.rounds || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu = anchorwatch_tests::process::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let window_secs = t0.elapsed().as_secs_f64();
    let rss = anchorwatch_tests::process::status_kib(pid, "VmRSS:").unwrap_or(0);
    let hwm = anchorwatch_tests::process::status_kib(pid, "VmHWM:").unwrap_or(0);
    anyhow::ensure!(agent.is_running(), "agent exited:\n{}", agent.log_text());
    let measured: Vec<u64> = rounds.iter().skip(1).copied().collect();
    anyhow::ensure!(
        !measured.is_empty(),
        "no probe round measured:\n{}",
        agent.log_text()
    );
    let mut sorted = measured.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    println!(
        "agent footprint: {} meshed pods, probe interval {interval}",
        args.pods
    );
    println!(
        "  start to first complete probe round (process start, pod list, probes): {:.0} ms",
        first_view.as_secs_f64() * 1000.0
    );
    println!(
        "  probe round of {} pods: min {} ms, median {median} ms, max {} ms over {} rounds",
        args.pods,
        sorted[0],
        sorted[sorted.len() - 1],
        sorted.len()
    );
    println!(
        "  RSS now {:.1} MiB, peak {:.1} MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "  CPU {:.2} s over {window_secs:.1} s ({:.2} % of one core)",
        cpu,
        100.0 * cpu / window_secs
    );
    agent.stop(Duration::from_secs(3));
    for p in proxies {
        p.stop().await;
    }
    kube.shutdown().await;
    Ok(())
}
