//! Measures this node's clock (DESIGN section 4): bursts of NTP exchanges over UDP with the
//! aggregator's clock port and with any configured NTP servers (SNTP, RFC 4330), each reduced to
//! its lowest-delay sample, plus the kernel's own view (`adjtimex`). The maths and the checks of
//! each reply are in the pure `anchorwatch-clock` crate; this module moves the bytes.

use crate::timex;
use anchorwatch_clock::exchange::{ReplyError, Sample, check_reply};
use anchorwatch_clock::filter::best;
use anchorwatch_clock::packet::{NtpTimestamp, Packet};
use anchorwatch_proto::v1 as pb;
use chrono::{DateTime, Utc};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// What to measure against, and how often.
#[derive(Clone, Debug)]
pub struct ClockConfig {
    /// The aggregator's clock port, `host:port`.
    pub aggregator: String,
    /// NTP servers, `host[:port]` (port 123 when absent).
    pub ntp_servers: Vec<String>,
    /// Between measurements.
    pub interval: Duration,
    /// Exchanges per burst.
    pub burst: usize,
    /// Wait for one reply at most this long.
    pub timeout: Duration,
}

/// One burst's outcome.
#[derive(Clone, Debug, Default)]
pub struct Burst {
    /// The lowest-delay accepted sample.
    pub best: Option<Sample>,
    /// Exchanges tried.
    pub tried: u32,
    /// Replies accepted.
    pub accepted: u32,
    /// The last reason a reply was rejected or missing.
    pub error: String,
}

/// Why one exchange produced no sample.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// No reply in time.
    #[error("timeout")]
    Timeout,
    /// The reply failed a check.
    #[error("{0}")]
    Reply(#[from] ReplyError),
    /// A datagram that is not an NTP packet.
    #[error("{0}")]
    Packet(#[from] anchorwatch_clock::packet::PacketError),
    /// Socket trouble.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The node's clock reads a time no exchange can be computed from.
    #[error(
        "this node's clock reads {}, outside the range a measurement can be computed in: set it right (it is off by millennia at least)",
        if *.0 == DateTime::<Utc>::MAX_UTC { "beyond the year 262143" } else { "before the year -262143" }
    )]
    OutOfRange(DateTime<Utc>),
}

/// Timeouts in a row, with no answer yet, after which a burst gives up on its server.
const MAX_TIMEOUTS_IN_A_ROW: u32 = 2;

/// Between exchanges of a burst: the aggregator is ours, public NTP servers want politeness.
fn spacing(server_is_reference: bool) -> Duration {
    if server_is_reference {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(500)
    }
}

/// One exchange with `server` on `socket`. Datagrams from any other address are ignored (and
/// logged), so a stray or spoofed reply can neither be taken nor end the wait early.
pub async fn exchange(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
    server_is_reference: bool,
) -> Result<Sample, ExchangeError> {
    let t1 = crate::time::now();
    if t1 == DateTime::<Utc>::MAX_UTC || t1 == DateTime::<Utc>::MIN_UTC {
        return Err(ExchangeError::OutOfRange(t1));
    }
    let request = Packet::request(NtpTimestamp::from_time(t1));
    socket.send_to(&request.encode(), server).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
            .await
            .map_err(|_| ExchangeError::Timeout)??;
        let t4 = crate::time::now();
        if from != server {
            debug!(%from, %server, "ignoring a datagram from another address");
            continue;
        }
        let reply = Packet::decode(&buf[..n])?;
        if reply.origin != request.transmit {
            // A late reply to an earlier exchange: keep waiting for ours.
            debug!(%server, "ignoring a reply to another request");
            continue;
        }
        return Ok(check_reply(
            &request,
            &reply,
            t1,
            t4,
            1e-6,
            server_is_reference,
        )?);
    }
}

/// A burst of `n` exchanges with `server`.
pub async fn burst(
    server: &str,
    default_port: u16,
    n: usize,
    timeout: Duration,
    server_is_reference: bool,
) -> Burst {
    let mut out = Burst::default();
    let addr = match resolve(server, default_port).await {
        Ok(a) => a,
        Err(e) => {
            out.error = e;
            return out;
        }
    };
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            out.error = format!("cannot open a UDP socket: {e}");
            return out;
        }
    };
    let mut samples = Vec::with_capacity(n);
    let mut timeouts_in_a_row = 0;
    for i in 0..n {
        if i > 0 {
            tokio::time::sleep(spacing(server_is_reference)).await;
        }
        out.tried += 1;
        match exchange(&socket, addr, timeout, server_is_reference).await {
            Ok(s) => {
                timeouts_in_a_row = 0;
                samples.push(s);
            }
            Err(e) => {
                let kod = matches!(e, ExchangeError::Reply(ReplyError::KissOfDeath(_)));
                let timed_out = matches!(e, ExchangeError::Timeout);
                out.error = e.to_string();
                if kod {
                    // A kiss-o'-death means stop asking now.
                    break;
                }
                timeouts_in_a_row = if timed_out { timeouts_in_a_row + 1 } else { 0 };
                if timeouts_in_a_row >= MAX_TIMEOUTS_IN_A_ROW && samples.is_empty() {
                    // A server that answered nothing twice is down or unreachable: waiting out
                    // the rest of the burst would delay the whole measurement.
                    break;
                }
            }
        }
    }
    out.accepted = samples.len() as u32;
    out.best = best(&samples);
    out
}

/// `server` with `default_port` when it names none (`host`, `1.2.3.4`, `::1`, `[::1]:123`).
fn with_port(server: &str, default_port: u16) -> String {
    if server.parse::<SocketAddr>().is_ok() {
        return server.to_string();
    }
    if server.parse::<std::net::Ipv6Addr>().is_ok() {
        return format!("[{server}]:{default_port}");
    }
    match server.rsplit_once(':') {
        Some((_, p)) if p.parse::<u16>().is_ok() => server.to_string(),
        _ => format!("{server}:{default_port}"),
    }
}

async fn resolve(server: &str, default_port: u16) -> Result<SocketAddr, String> {
    let target = with_port(server, default_port);
    tokio::net::lookup_host(&target)
        .await
        .map_err(|e| format!("cannot resolve {target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target} resolves to no address"))
}

fn offset(b: &Burst) -> pb::ClockOffset {
    pb::ClockOffset {
        offset_seconds: b.best.map(|s| s.offset_s),
        bound_seconds: b.best.map_or(0.0, |s| s.bound_s),
        delay_seconds: b.best.map_or(0.0, |s| s.delay_s),
        tried: b.tried,
        accepted: b.accepted,
        error: b.error.clone(),
    }
}

fn kernel() -> pb::KernelTime {
    match timex::read() {
        Ok(k) => pb::KernelTime {
            synchronised: k.synchronised,
            offset_seconds: k.offset_s,
            frequency_ppm: k.frequency_ppm,
            max_error_seconds: k.max_error_s,
            est_error_seconds: k.est_error_s,
            tai_offset_seconds: k.tai_offset_s,
            state: k.state,
            status: k.status,
            error: String::new(),
        },
        Err(e) => pb::KernelTime {
            error: format!("adjtimex: {e}"),
            ..Default::default()
        },
    }
}

/// One full measurement: the aggregator, every NTP server, the kernel.
pub async fn measure(cfg: &ClockConfig) -> pb::NodeClock {
    // Every server at once: a dead one costs two timeouts, not the others' time.
    let (aggregator, bursts) = tokio::join!(
        burst(&cfg.aggregator, 8123, cfg.burst, cfg.timeout, true),
        futures::future::join_all(cfg.ntp_servers.iter().map(|server| burst(
            server,
            123,
            cfg.burst,
            cfg.timeout,
            false
        )),)
    );
    let ntp = cfg
        .ntp_servers
        .iter()
        .zip(bursts)
        .map(|(server, b)| pb::NtpOffset {
            server: server.clone(),
            stratum: b.best.map_or(0, |s| s.stratum as u32),
            root_distance_seconds: b.best.map_or(0.0, |s| s.root_distance_s),
            offset: Some(offset(&b)),
        })
        .collect();
    pb::NodeClock {
        measured_at: Some(crate::time::to_proto(crate::time::now())),
        aggregator: Some(offset(&aggregator)),
        ntp,
        kernel: Some(kernel()),
    }
}

/// Measures every `interval` and publishes the result for the report stream, until the
/// receiving side is gone.
pub async fn run(cfg: ClockConfig, tx: watch::Sender<Option<Arc<pb::NodeClock>>>) {
    let mut every = tokio::time::interval(cfg.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logged_failure = false;
    loop {
        every.tick().await;
        let m = measure(&cfg).await;
        match m
            .aggregator
            .as_ref()
            .and_then(|a| a.offset_seconds.map(|o| (o, a)))
        {
            Some((o, a)) => {
                if logged_failure {
                    info!("clock exchange with the aggregator works again");
                }
                logged_failure = false;
                debug!(
                    offset_s = o,
                    bound_s = a.bound_seconds,
                    "clock measured against the aggregator"
                );
            }
            None if !logged_failure => {
                logged_failure = true;
                let why = m
                    .aggregator
                    .as_ref()
                    .map(|a| a.error.clone())
                    .unwrap_or_default();
                warn!(server = %cfg.aggregator, error = %why, "no clock exchange with the aggregator succeeded");
            }
            None => {}
        }
        for n in &m.ntp {
            if let Some(o) = n.offset.as_ref().filter(|o| o.offset_seconds.is_none()) {
                warn!(server = %n.server, error = %o.error, "no usable reply from an NTP server");
            }
        }
        if tx.send(Some(Arc::new(m))).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
