//! Bench: how fast the agent reads proxy logs, and what memory it adds.
//!
//! Writes a CRI log of `--size` bytes under a `/var/log/pods`-shaped folder (typical proxy
//! lines, `--error-rate` of them TLS errors), then has the agent's own log follower read it in
//! one round, as it reads a pod's logs on a node, and reports the rate (wall and CPU time of the
//! process, which reads on one thread) and the peak RSS it added. It checks that every error line
//! was counted, and fails when one was not.
//!
//! ```sh
//! cargo build --release -p anchorwatch-agent --bin log-scan
//! target/release/log-scan --size 1GiB --error-rate 0.001
//! ```

use anchorwatch_agent::logs::{DEFAULT_MAX_LINE, Follower, LogConfig, LogTarget, state::State};
use anyhow::Context;
use clap::Parser;
use std::io::Write as _;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Measures the agent's proxy log reading rate and memory")]
struct Args {
    /// Size of the generated log, bytes (or with a unit: 64MiB, 1GiB).
    #[arg(long, default_value = "1GiB", value_parser = size)]
    size: u64,
    /// Share of lines that are TLS verification errors.
    #[arg(long, default_value_t = 0.001)]
    error_rate: f64,
    /// Folder to write the log under (a temporary one by default, removed at the end).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().map_err(|_| format!("bad size {s:?}"))?;
    let unit = match &t[split..] {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        u => return Err(format!("unknown unit {u:?}")),
    };
    Ok(n * unit)
}

/// Lines a busy proxy writes that say nothing about mTLS (some pass the classifier's cheap
/// pre-check: they mention identity or mTLS without being evidence).
const ORDINARY: [&str; 6] = [
    "[  {t}s]  INFO ThreadId(01) inbound:server{port=8080}:rescue{client.addr=10.42.1.5:43210}: linkerd_app_core::errors::respond: HTTP/1.1 request failed error=client 10.42.1.5:43210: server: 10.42.0.17:8080: service unavailable",
    "[  {t}s]  WARN ThreadId(01) outbound:proxy{addr=10.96.0.10:53}:service{ns=kube-system name=kube-dns port=53}:endpoint{addr=10.42.3.4:53}: linkerd_reconnect: Failed to connect error=Connection refused (os error 111)",
    "[  {t}s]  INFO ThreadId(01) outbound:proxy{addr=10.42.0.17:8080}:http: linkerd_proxy_http::client: Connection established peer=10.42.0.17:8080",
    "[  {t}s]  INFO ThreadId(02) daemon:identity: linkerd_app: Certified identity id=web.emojivoto.serviceaccount.identity.linkerd.cluster.local",
    "[  {t}s]  INFO ThreadId(01) inbound: linkerd_app_core::serve: Connection closed error=direct connections must be mutually authenticated",
    "[  {t}s]  WARN ThreadId(01) outbound:proxy{addr=10.42.7.9:9090}:http: linkerd_app_outbound::http::server: Unexpected error error=request timed out after 10s",
];

const ERROR: &str = "[  {t}s]  WARN ThreadId(02) identity:identity{server.addr=linkerd-identity-headless.linkerd.svc.cluster.local:8080}:controller{addr=linkerd-identity-headless.linkerd.svc.cluster.local:8080}:endpoint{addr=10.244.1.111:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.244.1.111:8080: invalid peer certificate: BadSignature error.sources=[invalid peer certificate: BadSignature]";

/// Resident and peak resident memory of this process, KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time of this process (user + system), seconds.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime), counted from after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.error_rate),
        "--error-rate is a share between 0 and 1"
    );
    let tmp = tempfile::tempdir()?;
    let root = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let target = LogTarget {
        uid: "9f1c2d3e-0000-4000-8000-000000000001".into(),
        namespace: "emojivoto".into(),
        name: "web-7d9c5b-a1".into(),
        container: "linkerd-proxy".into(),
    };
    let dir = root.join(format!(
        "{}_{}_{}/{}",
        target.namespace, target.name, target.uid, target.container
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("0.log");

    // Write the log: one line in `every` is an error, spread evenly.
    let started = Instant::now();
    let every = if args.error_rate > 0.0 {
        (1.0 / args.error_rate).round() as u64
    } else {
        u64::MAX
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
    let (mut written, mut lines, mut errors) = (0u64, 0u64, 0u64);
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    while written < args.size {
        let t = format!("{}.{:06}", 1000 + lines / 1_000_000, lines % 1_000_000);
        let template = if lines % every == every / 2 {
            errors += 1;
            ERROR
        } else {
            ORDINARY[(lines % ORDINARY.len() as u64) as usize]
        };
        let line = format!("{stamp} stderr F {}\n", template.replace("{t}", &t));
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
        lines += 1;
    }
    out.flush()?;
    drop(out);
    println!(
        "wrote {:.1} MiB, {lines} lines, {errors} TLS errors ({:.3} %) in {:.1} s",
        written as f64 / (1 << 20) as f64,
        errors as f64 * 100.0 / lines as f64,
        started.elapsed().as_secs_f64()
    );

    // Read it as the agent does: one round of its follower, with a budget that covers it. The
    // peak RSS is reset first (clear_refs 5), so that it is the reading's peak.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (rss_before, _) = rss();
    let cpu_before = cpu();
    let started = Instant::now();
    let mut follower = Follower::new(
        LogConfig {
            root: root.clone(),
            state_dir: None,
            budget: u64::MAX,
            max_line: DEFAULT_MAX_LINE,
        },
        State::new(),
    );
    let changed = follower.round(std::slice::from_ref(&target), chrono::Utc::now());
    let wall = started.elapsed().as_secs_f64();
    let cpu_s = cpu() - cpu_before;
    let (rss_after, peak) = rss();
    let counted: u64 = changed
        .iter()
        .flat_map(|(_, e)| e.kinds.iter())
        .filter(|k| k.kind.to_string() == "BAD_SIGNATURE")
        .map(|k| k.total)
        .sum();
    let read = follower.metrics().counters.bytes;
    let mib = read as f64 / (1 << 20) as f64;
    println!(
        "read {mib:.1} MiB in {wall:.2} s wall ({:.0} MiB/s), {cpu_s:.2} s CPU ({:.0} MiB/s of one core)",
        mib / wall,
        mib / cpu_s.max(1e-3)
    );
    println!(
        "RSS before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB: {:.1} MiB added at peak",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(rss_before) as f64 / 1024.0
    );
    println!("counted {counted} BAD_SIGNATURE lines of {errors} written");
    anyhow::ensure!(read == written, "read {read} bytes of {written}");
    anyhow::ensure!(counted == errors, "counted {counted} errors of {errors}");
    Ok(())
}
