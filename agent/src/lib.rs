//! anchorwatch node agent: finds the meshed pods on its node, inspects what each Linkerd proxy
//! really presents (TLS probe of the admin port) and holds (spec trust anchors), and streams the
//! evidence to the aggregator. It decides nothing about restarts.

pub mod clock;
pub mod inventory;
pub mod logs;
pub mod metrics;
pub mod probe;
pub mod report;
pub mod survey;
pub mod time;
pub mod timex;
pub mod wire;

/// What a pod's spec says; shared with the aggregator's offline diagnosis.
pub use anchorwatch_podspec as pod;

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use std::time::Duration;

/// Command-line arguments of `anchorwatch-agent`.
#[derive(Parser, Debug, Clone)]
#[command(name = "anchorwatch-agent", version, about)]
pub struct Args {
    /// Name of the node this agent runs on (from the Downward API: spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,

    /// gRPC address of the aggregator.
    #[arg(
        long,
        env = "ANCHORWATCH_AGENT_AGGREGATOR",
        default_value = "http://anchorwatch-aggregator.anchorwatch:8443"
    )]
    pub aggregator: String,

    /// Probe every proxy on this admin port instead of the one in its environment (default 4191).
    #[arg(long, env = "ANCHORWATCH_AGENT_ADMIN_PORT")]
    pub admin_port: Option<u16>,

    /// Interval between full probe rounds (pods are also probed as soon as they change).
    #[arg(long, env = "ANCHORWATCH_AGENT_PROBE_INTERVAL", default_value = "30s", value_parser = interval)]
    pub probe_interval: Duration,

    /// Bound on one TLS probe, and on one metrics read.
    #[arg(long, env = "ANCHORWATCH_AGENT_PROBE_TIMEOUT", default_value = "3s", value_parser = interval)]
    pub probe_timeout: Duration,

    /// Probes in flight at most.
    #[arg(
        long,
        env = "ANCHORWATCH_AGENT_PROBE_CONCURRENCY",
        default_value_t = 16
    )]
    pub probe_concurrency: usize,

    /// Read each proxy's identity-certificate expiry gauge from its /metrics.
    #[arg(long, env = "ANCHORWATCH_AGENT_PROXY_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub proxy_metrics: bool,

    /// Interval between heartbeats to the aggregator.
    #[arg(long, env = "ANCHORWATCH_AGENT_HEARTBEAT", default_value = "10s", value_parser = interval)]
    pub heartbeat: Duration,

    /// CA bundle (PEM) the aggregator's certificate must chain to; needed for an `https://`
    /// `--aggregator`. Re-read on every connect.
    #[arg(long, env = "ANCHORWATCH_AGENT_AGGREGATOR_CA")]
    pub aggregator_ca: Option<std::path::PathBuf>,

    /// The projected ServiceAccount token presented to the aggregator (audience `anchorwatch`),
    /// re-read on every connect. When the file does not exist the agent connects without one.
    #[arg(
        long,
        env = "ANCHORWATCH_AGENT_TOKEN_FILE",
        default_value = "/var/run/secrets/anchorwatch/token"
    )]
    pub token_file: std::path::PathBuf,

    /// Longest wait between attempts to reach the aggregator.
    #[arg(long, env = "ANCHORWATCH_AGENT_MAX_BACKOFF", default_value = "30s", value_parser = interval)]
    pub max_backoff: Duration,

    /// The aggregator's clock port (UDP, NTP on-wire exchange), `host:port`; by default the
    /// host of `--aggregator` and port 8123.
    #[arg(long, env = "ANCHORWATCH_AGENT_CLOCK_SERVER", value_parser = udp_server)]
    pub clock_server: Option<String>,

    /// NTP servers to measure the node's clock against (SNTP), `host[:port]`, comma-separated;
    /// when given they are the reference for clock skew, else the aggregator's clock is.
    #[arg(long, env = "ANCHORWATCH_AGENT_NTP_SERVERS", value_delimiter = ',', value_parser = udp_server)]
    pub ntp_servers: Vec<String>,

    /// Interval between clock measurements.
    #[arg(long, env = "ANCHORWATCH_AGENT_CLOCK_INTERVAL", default_value = "30s", value_parser = interval)]
    pub clock_interval: Duration,

    /// Exchanges per clock measurement burst (the lowest-delay one is kept).
    #[arg(long, env = "ANCHORWATCH_AGENT_CLOCK_BURST", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub clock_burst: u32,

    /// The kubelet's pod log directory: each proxy's logs are read from
    /// `<root>/<namespace>_<pod>_<uid>/<proxy container>/*.log` (mount it read-only).
    #[arg(
        long,
        env = "ANCHORWATCH_AGENT_LOG_ROOT",
        default_value = "/var/log/pods"
    )]
    pub log_root: std::path::PathBuf,

    /// Writable directory for the log reader's state (read positions and counts), so that a
    /// restart neither re-counts nor misses lines; a hostPath in the DaemonSet.
    #[arg(
        long,
        env = "ANCHORWATCH_AGENT_LOG_STATE_DIR",
        default_value = "/var/lib/anchorwatch"
    )]
    pub log_state_dir: std::path::PathBuf,

    /// Interval between reads of the proxies' logs; 0s turns log reading off.
    #[arg(long, env = "ANCHORWATCH_AGENT_LOG_INTERVAL", default_value = "10s", value_parser = interval_or_off)]
    pub log_interval: Duration,

    /// Bytes of logs read per interval at most, over all pods (e.g. 32MiB): bounds the CPU a
    /// noisy proxy can cost; the reader catches up over the next intervals.
    #[arg(long, env = "ANCHORWATCH_AGENT_LOG_READ_BUDGET", default_value = "32MiB", value_parser = byte_size)]
    pub log_read_budget: u64,

    /// Address of the Prometheus metrics endpoint (`/metrics`).
    #[arg(
        long,
        env = "ANCHORWATCH_AGENT_METRICS_LISTEN",
        default_value = "0.0.0.0:9990"
    )]
    pub metrics_listen: std::net::SocketAddr,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `anchorwatch_agent=debug`.
    #[arg(long, env = "ANCHORWATCH_AGENT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(
        long,
        env = "ANCHORWATCH_AGENT_LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    pub log_format: LogFormat,
}

/// A duration flag that must be at least 10 ms (a zero interval would spin or panic).
fn interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(10) {
        return Err(format!("{s:?} is too short: give at least 10ms"));
    }
    Ok(d)
}

/// An interval flag that may be `0s` (off), else at least 10 ms like the others.
fn interval_or_off(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Ok(d),
        _ => interval(s),
    }
}

/// A byte size: a number with an optional unit (`B`, `KiB`, `MiB`, `GiB`; `K`, `M`, `G` are
/// the same binary units), at least 64 KiB.
fn byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 32MiB"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use B, KiB, MiB or GiB"
            ));
        }
    };
    let bytes = n
        .checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes < 64 * 1024 {
        return Err(format!("{s:?} is too small: give at least 64KiB"));
    }
    Ok(bytes)
}

/// Log line format.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Sets up logging once for the process.
pub fn init_tracing(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    // One crypto provider for the process: kube's client, the probe and tonic all use it.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let prober = probe::Prober::new(args.probe_timeout).context("cannot build the TLS prober")?;
    let (view_tx, view_rx) = tokio::sync::watch::channel(Arc::new(inventory::NodeView::default()));
    let (clock_tx, clock_rx) = tokio::sync::watch::channel(None);
    let reporter = tokio::spawn(report::run(
        report::ReportConfig {
            aggregator: args.aggregator.clone(),
            node: args.node_name.clone(),
            heartbeat: args.heartbeat,
            coalesce: Duration::from_millis(200),
            timeout: Duration::from_secs(10),
            max_backoff: args.max_backoff,
            token_file: Some(args.token_file.clone()),
            ca_file: args.aggregator_ca.clone(),
        },
        view_rx,
        clock_rx,
    ));
    let clock_cfg = clock::ClockConfig {
        aggregator: args
            .clock_server
            .clone()
            .unwrap_or_else(|| clock_server_for(&args.aggregator)),
        ntp_servers: args.ntp_servers.clone(),
        interval: args.clock_interval,
        burst: args.clock_burst as usize,
        // A slow link still yields a measurement, with the wide bound it deserves.
        timeout: Duration::from_secs(3),
    };
    tracing::info!(aggregator = %clock_cfg.aggregator, ntp = ?clock_cfg.ntp_servers, "measuring the node's clock");
    let clock_task = tokio::spawn(clock::run(clock_cfg, clock_tx));
    let log_metrics = Arc::new(std::sync::Mutex::new(logs::LogMetrics::default()));
    let (logs_tx, logs_rx) = tokio::sync::mpsc::channel(4);
    if !args.log_interval.is_zero() {
        let state_dir = match std::fs::create_dir_all(&args.log_state_dir) {
            Ok(()) => Some(args.log_state_dir.clone()),
            Err(e) => {
                tracing::warn!(dir = %args.log_state_dir.display(), error = %e, "cannot create the log state directory: a restart will read pod logs again");
                None
            }
        };
        logs::spawn(
            logs::LogConfig {
                root: args.log_root.clone(),
                state_dir,
                budget: args.log_read_budget,
                max_line: logs::DEFAULT_MAX_LINE,
            },
            args.log_interval,
            view_tx.subscribe(),
            logs_tx,
            log_metrics.clone(),
        )
        .context("cannot start the log reader")?;
    }
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
    tracing::info!(listen = %metrics_listener.local_addr()?, "metrics serving");
    let metrics_task = tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = log_metrics.lock().map(|m| m.clone()).unwrap_or_default();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics::render(&m),
                    )
                }
            }),
        );
        if let Err(e) = axum::serve(metrics_listener, app).await {
            tracing::warn!(error = %e, "metrics server failed");
        }
    });
    let survey = survey::run(
        client,
        survey::SurveyConfig {
            node: args.node_name.clone(),
            admin_port: args.admin_port,
            interval: args.probe_interval,
            timeout: args.probe_timeout,
            concurrency: args.probe_concurrency,
            metrics: args.proxy_metrics,
        },
        prober,
        view_tx,
        logs_rx,
    );
    tracing::info!(node = %args.node_name, aggregator = %args.aggregator, "anchorwatch agent starting");
    let result = tokio::select! {
        r = survey => r,
        _ = shutdown_signal() => { tracing::info!("shutting down"); Ok(()) }
    };
    reporter.abort();
    clock_task.abort();
    metrics_task.abort();
    result
}

/// The aggregator's clock port: the host of its gRPC URL, port 8123.
/// A UDP server address as given: `host`, `host:port`, `1.2.3.4[:port]`, `::1` or
/// `[::1]:port`; no scheme, no empty entry, a port in range.
fn udp_server(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("an empty server address".into());
    }
    if s.contains("://") || s.contains('/') {
        return Err(format!("{s:?}: give host[:port], without a scheme or path"));
    }
    if s.parse::<std::net::SocketAddr>().is_ok() || s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(s.to_string());
    }
    if s.starts_with('[') {
        return Err(format!("{s:?}: not an [IPv6]:port address"));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => Ok(s.to_string()),
                _ => Err(format!("{s:?}: the port must be 1-65535")),
            }
        }
        Some(_) => Err(format!("{s:?}: not host:port")),
        None => Ok(s.to_string()),
    }
}

fn clock_server_for(aggregator: &str) -> String {
    let host = aggregator
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_else(|| "anchorwatch-aggregator.anchorwatch".to_string());
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:8123")
    } else {
        format!("{host}:8123")
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_server_addresses_are_checked_at_start() {
        for ok in [
            "ntp.example.org",
            "ntp.example.org:123",
            "10.0.0.1",
            "10.0.0.1:1123",
            "::1",
            "[::1]:123",
        ] {
            assert_eq!(udp_server(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            " ",
            "http://10.0.0.1:8123",
            "127.0.0.1:99999",
            "host:0",
            "host:",
            ":123",
            "[::1",
            "a:b:c",
        ] {
            assert!(udp_server(bad).is_err(), "{bad:?}");
        }
        let args = Args::try_parse_from(["agent", "--node-name", "n", "--ntp-servers", ",,"]);
        assert!(args.is_err());
    }

    #[test]
    fn the_clock_port_defaults_to_the_aggregators_host() {
        assert_eq!(
            clock_server_for("http://anchorwatch-aggregator.anchorwatch:8443"),
            "anchorwatch-aggregator.anchorwatch:8123"
        );
        assert_eq!(clock_server_for("http://127.0.0.1:9"), "127.0.0.1:8123");
        assert_eq!(clock_server_for("http://[::1]:9"), "[::1]:8123");
    }

    #[test]
    fn zero_durations_are_refused_at_start_up() {
        for flag in [
            "--probe-interval",
            "--probe-timeout",
            "--heartbeat",
            "--max-backoff",
        ] {
            let err = Args::try_parse_from(["agent", "--node-name", "n", flag, "0s"]).unwrap_err();
            assert!(err.to_string().contains("too short"), "{flag}: {err}");
        }
        let ok = Args::try_parse_from(["agent", "--node-name", "n", "--probe-interval", "250ms"])
            .unwrap();
        assert_eq!(ok.probe_interval, Duration::from_millis(250));
    }

    #[test]
    fn log_reading_is_off_at_zero_and_never_spins() {
        let parse =
            |v: &str| Args::try_parse_from(["agent", "--node-name", "n", "--log-interval", v]);
        assert_eq!(parse("0s").unwrap().log_interval, Duration::ZERO);
        assert!(parse("1ms").unwrap_err().to_string().contains("too short"));
        assert_eq!(
            parse("300ms").unwrap().log_interval,
            Duration::from_millis(300)
        );
    }

    #[test]
    fn the_log_read_budget_takes_binary_units_and_refuses_nonsense() {
        assert_eq!(byte_size("32MiB"), Ok(32 << 20));
        assert_eq!(byte_size("1G"), Ok(1 << 30));
        assert_eq!(byte_size("65536"), Ok(65536));
        assert!(byte_size("12").unwrap_err().contains("too small"));
        assert!(byte_size("3 parsecs").unwrap_err().contains("unit"));
        assert!(byte_size("MiB").is_err());
        assert!(byte_size("99999999999999999999GiB").is_err());
        let args = Args::try_parse_from(["agent", "--node-name", "n"]).unwrap();
        assert_eq!(args.log_root, std::path::Path::new("/var/log/pods"));
        assert_eq!(args.log_read_budget, 32 << 20);
    }
}
