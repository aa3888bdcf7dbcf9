//! anchorwatch aggregator: keeps the cluster's trust bundle and issuer, re-verifies every chain
//! the node agents report, and answers queries over gRPC (with server reflection and health).

pub mod analysis;
pub mod auth;
pub mod clock;
pub mod control_plane;
pub mod diagnose;
pub mod ingest;
pub mod leader;
pub mod link;
pub mod metrics;
pub mod model;
pub mod multicluster;
pub mod objects;
pub mod owners;
pub mod probe;
pub mod query;
pub mod report;
pub mod time;
pub mod timeserver;
pub mod tls;
pub mod trust;
pub mod verify;
pub mod watch;
pub mod wire;

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Command-line arguments of `anchorwatch-aggregator`.
#[derive(Parser, Debug, Clone)]
#[command(name = "anchorwatch-aggregator", version, about)]
pub struct Args {
    /// Run a report against a running aggregator instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address of the gRPC server (agent ingest, queries, reflection, health).
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,

    /// The Linkerd control-plane namespace.
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_LINKERD_NAMESPACE",
        default_value = "linkerd"
    )]
    pub linkerd_namespace: String,

    /// ConfigMap holding the trust bundle.
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_TRUST_ROOTS_CONFIGMAP",
        default_value = "linkerd-identity-trust-roots"
    )]
    pub trust_roots_configmap: String,

    /// Key of the trust bundle in that ConfigMap.
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_TRUST_ROOTS_KEY",
        default_value = "ca-bundle.crt"
    )]
    pub trust_roots_key: String,

    /// Secret holding the issuer certificate (crt.pem, or tls.crt for kubernetes.io/tls); its key is never read.
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_ISSUER_SECRET",
        default_value = "linkerd-identity-issuer"
    )]
    pub issuer_secret: String,

    /// A node whose agent sent nothing for this long is stale: its pods are not judged healthy.
    /// A node whose agent stream closed is stale at once.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_STALE_AFTER", default_value = "60s", value_parser = interval)]
    pub stale_after: Duration,

    /// Interval at which every pod is judged again as time passes (certificate validity, stale nodes).
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_RECHECK_INTERVAL", default_value = "5s", value_parser = interval)]
    pub recheck_interval: Duration,

    /// Lifetime of the leaves linkerd-identity issues (Helm `identity.issuer.issuanceLifetime`).
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_ISSUANCE_LIFETIME", default_value = "24h", value_parser = humantime::parse_duration)]
    pub issuance_lifetime: Duration,

    /// linkerd-identity's clock-skew allowance (Helm `identity.issuer.clockSkewAllowance`).
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_CLOCK_SKEW_ALLOWANCE", default_value = "20s", value_parser = interval)]
    pub clock_skew_allowance: Duration,

    /// Warn this long before the issuer or a trust anchor expires (as `linkerd check`).
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_EXPIRY_WARNING", default_value = "60days", value_parser = humantime::parse_duration)]
    pub expiry_warning: Duration,

    /// Address of the Prometheus metrics endpoint (`/metrics`).
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,

    /// UDP address of the clock port, where agents measure their node's clock offset (NTP
    /// on-wire exchange).
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_CLOCK_LISTEN",
        default_value = "0.0.0.0:8123"
    )]
    pub clock_listen: SocketAddr,

    /// A node whose clock is off by more than this (beyond its error bound) is reported at level
    /// `warn` (a level and a metric, not a verdict); the critical level is the clock-skew
    /// allowance.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_CLOCK_WARN", default_value = "100ms", value_parser = interval)]
    pub clock_warn: Duration,

    /// A clock measurement older than this no longer counts: the node is INCONCLUSIVE.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_CLOCK_STALE_AFTER", default_value = "5m", value_parser = interval)]
    pub clock_stale_after: Duration,

    /// How much clock history per node the drift fit uses.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_CLOCK_WINDOW", default_value = "6h", value_parser = interval)]
    pub clock_window: Duration,
    /// Interval at which the gateway of every Linkerd multicluster Link is probed (TLS to each
    /// address of spec.gatewayAddress, port spec.probeSpec.port); a changed Link is probed at once.
    /// A cluster without the Link CRD is asked again at this interval.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_LINK_PROBE_INTERVAL", default_value = "30s", value_parser = interval)]
    pub link_probe_interval: Duration,

    /// Bound on one gateway probe (name resolution, connect and TLS handshake).
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_LINK_PROBE_TIMEOUT", default_value = "3s", value_parser = interval)]
    pub link_probe_timeout: Duration,

    /// How agents authenticate: `tokenreview` (each stream presents its projected
    /// ServiceAccount token, reviewed with a TokenReview and bound to its pod's node) or `none`
    /// (anyone may report any node: development only).
    #[arg(
        long,
        value_enum,
        env = "ANCHORWATCH_AGGREGATOR_AGENT_AUTH",
        default_value = "tokenreview"
    )]
    pub agent_auth: auth::Mode,

    /// The audience agents' tokens must be minted for.
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_TOKEN_AUDIENCE",
        default_value = "anchorwatch"
    )]
    pub token_audience: String,

    /// The agents' ServiceAccount, `namespace/name`: the only one whose tokens are accepted.
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_AGENT_SERVICE_ACCOUNT",
        default_value = "anchorwatch/anchorwatch-agent",
        value_parser = namespaced_name
    )]
    pub agent_service_account: String,

    /// The `kubernetes.io/tls` Secret (`namespace/name`) whose `tls.crt` and `tls.key` the gRPC
    /// port serves, followed and reloaded on change. Without it gRPC is plaintext.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_TLS_SECRET", value_parser = namespaced_name)]
    pub tls_secret: Option<String>,

    /// How long a TokenReview's answer is reused for the same token.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_TOKEN_REVIEW_CACHE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub token_review_cache: Duration,

    /// An agent stream with no message for this long is closed (agents heartbeat every 10 s).
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_STREAM_IDLE_TIMEOUT", default_value = "60s", value_parser = interval)]
    pub stream_idle_timeout: Duration,

    /// An agent that takes no reply for this long (it does not read its stream) is cut off.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_STREAM_SEND_TIMEOUT", default_value = "10s", value_parser = interval)]
    pub stream_send_timeout: Duration,

    /// Largest agent message accepted, bytes; a larger one closes the stream.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Most meshed pods one node may report; a snapshot or delta beyond it closes the stream.
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_MAX_PODS_PER_NODE",
        default_value_t = 1_000
    )]
    pub max_pods_per_node: usize,

    /// Elect a leader among aggregator replicas with a Lease; only the leader is ready, serves
    /// agents and queries, and acts. `false` for a single replica that always leads.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// The Lease's name.
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_LEASE_NAME",
        default_value = "anchorwatch-aggregator"
    )]
    pub lease_name: String,

    /// The Lease's namespace (the aggregator's own, from the Downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "anchorwatch")]
    pub lease_namespace: String,

    /// This replica's identity in the Lease (its pod name, from the Downward API); by default
    /// the host name and process id.
    #[arg(long, env = "POD_NAME")]
    pub leader_identity: Option<String>,

    /// How long a Lease that stopped being renewed is honoured before a standby takes over.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_LEASE_DURATION", default_value = "15s", value_parser = interval)]
    pub lease_duration: Duration,

    /// How long the leader may fail to renew before it steps down (less than the duration).
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = interval)]
    pub lease_renew_deadline: Duration,

    /// How often the Lease is renewed or checked (less than the renew deadline).
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = interval)]
    pub lease_retry_period: Duration,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `anchorwatch_aggregator=debug`.
    #[arg(long, env = "ANCHORWATCH_AGGREGATOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(
        long,
        env = "ANCHORWATCH_AGGREGATOR_LOG_FORMAT",
        value_enum,
        default_value = "plain"
    )]
    pub log_format: LogFormat,
}

/// Subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Reports of a running aggregator.
    Report {
        /// Which report.
        #[command(subcommand)]
        what: ReportKind,
    },
    /// The same analysis and plan over `kubectl get … -o yaml` dumps (and copies of proxy log
    /// folders), with no cluster access. Exits 0 when nothing needs attention, 1 when something
    /// does, 2 on unusable input.
    Diagnose(diagnose::DiagnoseArgs),
}

/// Reports.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ReportKind {
    /// Every node's clock: offset ± bound, to linkerd-identity's node, drift, forecasts, level.
    Clock(report::ClockArgs),
}

/// HTTP/2 flow-control window of each stream the aggregator serves, bytes.
const STREAM_WINDOW: u32 = 64 * 1024;

/// A duration flag that must be at least 10 ms (a zero interval would spin or panic).
/// The host name and process id: unique among replicas on one host, as the Lease needs.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "aggregator".into());
    format!("{host}-{}", std::process::id())
}

fn namespaced_name(s: &str) -> Result<String, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(s.to_string())
        }
        _ => Err(format!("{s:?}: expected namespace/name")),
    }
}

fn interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(10) {
        return Err(format!("{s:?} is too short: give at least 10ms"));
    }
    Ok(d)
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

/// Flag combinations that contradict each other, refused at start-up.
pub fn check(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.clock_warn < args.clock_skew_allowance,
        "--clock-warn ({:?}) must be below --clock-skew-allowance ({:?}): warn is the early alarm before the allowance",
        args.clock_warn,
        args.clock_skew_allowance
    );
    anyhow::ensure!(
        args.clock_window > args.clock_stale_after,
        "--clock-window ({:?}) must be longer than --clock-stale-after ({:?}), or no drift can be fitted",
        args.clock_window,
        args.clock_stale_after
    );
    Ok(())
}

/// Runs the aggregator until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let sources = trust::TrustSources {
        namespace: args.linkerd_namespace.clone(),
        config_map: args.trust_roots_configmap.clone(),
        key: args.trust_roots_key.clone(),
        secret: args.issuer_secret.clone(),
    };
    let cluster = Arc::new(Mutex::new(model::Cluster::new(
        trust::Trust::new(sources.clone()),
        args.stale_after,
        crate::time::now(),
    )));
    let delta = |d: Duration| chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
    let mut settings = analysis::cluster::Settings::new(&args.linkerd_namespace);
    settings.issuance_lifetime = delta(args.issuance_lifetime);
    settings.allowance = delta(args.clock_skew_allowance);
    settings.warn_before = delta(args.expiry_warning);
    {
        ingest::lock(&cluster).set_clock_settings(clock::ClockSettings {
            warn_s: args.clock_warn.as_secs_f64(),
            critical_s: args.clock_skew_allowance.as_secs_f64(),
            fresh_for: delta(args.clock_stale_after),
            window: delta(args.clock_window),
            max_points: 2_000,
        });
    }
    check(&args)?;
    let authenticator = match args.agent_auth {
        auth::Mode::Tokenreview => Some(Arc::new(auth::Authenticator::new(
            client.clone(),
            auth::Settings {
                audience: args.token_audience.clone(),
                service_account: args.agent_service_account.clone(),
                cache_for: args.token_review_cache,
            },
        ))),
        auth::Mode::None => {
            tracing::warn!(
                "--agent-auth none: any client that reaches the gRPC port may report any node; use only for development"
            );
            None
        }
    };
    let clock_socket = tokio::net::UdpSocket::bind(args.clock_listen)
        .await
        .with_context(|| format!("cannot listen on {} (UDP)", args.clock_listen))?;
    tracing::info!(listen = %clock_socket.local_addr()?, "clock port serving");
    let mut tasks = tokio::task::JoinSet::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let identity = args
        .leader_identity
        .clone()
        .unwrap_or_else(default_identity);
    let (leadership_tx, leadership) = tokio::sync::watch::channel(if args.leader_elect {
        leader::Leadership::default()
    } else {
        leader::Leadership::sole(&identity)
    });
    let elector = if args.leader_elect {
        anyhow::ensure!(
            args.lease_retry_period < args.lease_renew_deadline
                && args.lease_renew_deadline < args.lease_duration,
            "need --lease-retry-period < --lease-renew-deadline < --lease-duration"
        );
        tracing::info!(lease = %format!("{}/{}", args.lease_namespace, args.lease_name), %identity, "electing a leader");
        Some(tokio::spawn(leader::run(
            client.clone(),
            leader::Config {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                lease_duration: args.lease_duration,
                renew_deadline: args.lease_renew_deadline,
                retry_period: args.lease_retry_period,
            },
            leadership_tx,
            stop_rx.clone(),
        )))
    } else {
        None
    };
    let clock_counters = Arc::new(timeserver::Counters::default());
    tasks.spawn(timeserver::serve(clock_socket, clock_counters.clone()));
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_listen))?;
    tracing::info!(listen = %metrics_listener.local_addr()?, "metrics serving");
    {
        let cluster = cluster.clone();
        let settings = settings.clone();
        let auth_for_metrics = authenticator.clone();
        let leading = leadership.clone();
        let ready = leadership.clone();
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let cluster = cluster.clone();
                    let counters = clock_counters.clone();
                    let settings = settings.clone();
                    let auth = auth_for_metrics.clone();
                    let leading = leading.borrow().leader;
                    async move {
                        let cluster = ingest::lock(&cluster);
                        let (rows, _, _) = cluster.clock_rows(&settings, 0, crate::time::now());
                        let port = metrics::ClockPort {
                            answered: counters.answered.load(std::sync::atomic::Ordering::Relaxed),
                            dropped: counters.dropped.load(std::sync::atomic::Ordering::Relaxed),
                        };
                        let mut text = metrics::render_clock(&rows, port);
                        if let Some(auth) = &auth {
                            text.push_str(&metrics::render_auth(&auth.counters));
                        }
                        text.push_str(&metrics::render_leader(leading));
                        ([("content-type", "text/plain; version=0.0.4")], text)
                    }
                }),
            )
            // Liveness: the process serves. Readiness: it leads (a Service then sends agents and
            // queries only to the leader).
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route(
                "/readyz",
                axum::routing::get(move || {
                    let l = ready.borrow().clone();
                    async move {
                        if l.leader {
                            (axum::http::StatusCode::OK, "leader".to_string())
                        } else {
                            (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                format!(
                                    "standby; leader: {}",
                                    l.holder.as_deref().unwrap_or("none yet")
                                ),
                            )
                        }
                    }
                }),
            );
        tasks.spawn(async move {
            if let Err(e) = axum::serve(metrics_listener, app).await {
                tracing::warn!(error = %e, "metrics server failed");
            }
        });
    }
    tasks.spawn(watch::follow_bundle(
        client.clone(),
        sources.clone(),
        cluster.clone(),
    ));
    tasks.spawn(watch::follow_issuer(
        client.clone(),
        sources,
        cluster.clone(),
    ));
    tasks.spawn(watch::follow_linkerd_config(
        client.clone(),
        args.linkerd_namespace.clone(),
        cluster.clone(),
    ));
    tasks.spawn(watch::follow_extension_namespaces(
        client.clone(),
        cluster.clone(),
    ));
    tasks.spawn(watch::follow_identity_events(
        client.clone(),
        args.linkerd_namespace.clone(),
        cluster.clone(),
    ));
    tasks.spawn(multicluster::follow_links(
        client.clone(),
        cluster.clone(),
        args.link_probe_interval,
        args.link_probe_timeout,
    ));
    tasks.spawn(watch::follow_owners(client.clone(), cluster.clone()));
    let ticker = cluster.clone();
    let interval = args.recheck_interval;
    tasks.spawn(async move {
        let mut every = tokio::time::interval(interval);
        loop {
            every.tick().await;
            ingest::with_cluster(&ticker, |c| c.tick(crate::time::now())).await;
        }
    });

    let (health, health_svc) = tonic_health::server::health_reporter();
    {
        let mut leadership = leadership.clone();
        tasks.spawn(async move {
            loop {
                let leading = leadership.borrow_and_update().leader;
                let status = if leading {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                for service in ["", "anchorwatch.v1.Query", "anchorwatch.v1.Ingest"] {
                    health.set_service_status(service, status).await;
                }
                if leadership.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    // Both reflection versions list every service, themselves included: grpcurl 1.8 speaks
    // only v1alpha, newer clients v1.
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        b.register_encoded_file_descriptor_set(anchorwatch_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .context("cannot build the reflection service")?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .context("cannot build the reflection service")?;

    let serving_cert = match &args.tls_secret {
        Some(secret) => {
            let (namespace, name) = secret.split_once('/').unwrap_or(("", secret));
            let current = Arc::new(tls::CurrentCert::default());
            tasks.spawn(tls::follow_secret(
                client.clone(),
                namespace.to_string(),
                name.to_string(),
                current.clone(),
            ));
            Some(current)
        }
        None => {
            tracing::warn!(
                "no --tls-secret: gRPC is served in plaintext; agents' tokens and reports cross the network in the clear"
            );
            None
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        tls = serving_cert.is_some(),
        "anchorwatch aggregator serving gRPC"
    );
    let idle = args.stream_idle_timeout;
    let mut stop_server = stop_rx.clone();
    let mut ingest = ingest::IngestService::new(cluster.clone(), idle, stop_rx.clone())
        .with_leadership(leadership.clone())
        .with_limits(ingest::Limits {
            max_message_bytes: args.max_message_bytes,
            max_pods_per_node: args.max_pods_per_node,
            send_timeout: args.stream_send_timeout,
        });
    if let Some(auth) = &authenticator {
        ingest = ingest.with_auth(auth.clone());
    }
    // Small HTTP/2 windows: what an agent may send before the aggregator reads it is buffered
    // per connection, and 5,000 agents reconnecting at once each send a whole snapshot. With
    // hyper's 1 MiB defaults that was over a gigabyte held in receive buffers; 64 KiB per stream
    // bounds it to a few hundred MiB and costs nothing on a cluster network.
    let router = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(2 * STREAM_WINDOW))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ingest.svc())
        .add_service(
            query::QueryService::new(cluster, settings, stop_rx).svc_for(leadership.clone()),
        );
    let stopped = async move {
        let _ = stop_server.changed().await;
    };
    type Serving = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>,
    >;
    let mut server: Serving = match serving_cert {
        Some(current) => {
            let config = Arc::new(tls::server_config(current));
            Box::pin(router.serve_with_incoming_shutdown(tls::incoming(listener, config), stopped))
        }
        None => Box::pin(router.serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            stopped,
        )),
    };
    tokio::select! {
        r = &mut server => r.context("gRPC server failed")?,
        _ = shutdown_signal() => {
            tracing::info!("shutting down: closing agent streams");
            let _ = stop_tx.send(true);
            // Streams end at once; in-flight queries get a moment, never more.
            match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
                Ok(r) => r.context("gRPC server failed")?,
                Err(_) => tracing::warn!("connections still open after 5 s; exiting anyway"),
            }
        }
    }
    // The Lease is released on the stop signal; give that a moment.
    if let Some(elector) = elector {
        let _ = tokio::time::timeout(Duration::from_secs(3), elector).await;
    }
    tasks.abort_all();
    tracing::info!("shut down");
    Ok(())
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
    fn zero_durations_are_refused_at_start_up() {
        for flag in [
            "--stale-after",
            "--recheck-interval",
            "--link-probe-interval",
            "--link-probe-timeout",
            "--clock-warn",
            "--clock-skew-allowance",
        ] {
            let err = Args::try_parse_from(["aggregator", flag, "0s"]).unwrap_err();
            assert!(err.to_string().contains("too short"), "{flag}: {err}");
        }
    }

    #[test]
    fn contradictory_clock_thresholds_are_refused_at_start_up() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["aggregator"];
            argv.extend_from_slice(extra);
            check(&Args::try_parse_from(argv).unwrap())
        };
        assert!(parse(&[]).is_ok());
        let e = parse(&["--clock-warn", "1h"]).unwrap_err().to_string();
        assert!(e.contains("below --clock-skew-allowance"), "{e}");
        let e = parse(&["--clock-window", "1m"]).unwrap_err().to_string();
        assert!(e.contains("--clock-stale-after"), "{e}");
    }
}
