//! Best-effort scrape of a proxy's identity certificate expiry gauge from `/metrics` on its admin
//! port (plain HTTP/1.1).
//!
//! The gauge's name depends on the proxy version (checked in linkerd2-proxy's sources):
//! - ≤ 2.14: `identity_cert_expiration_timestamp_seconds`, an integer gauge (with
//!   `identity_cert_refresh_count`);
//! - 2.15: the same name from a `prometheus-client` registry with prefix `identity_cert`, a float
//!   gauge (with `identity_cert_refresh_timestamp_seconds`, `identity_cert_refreshes_total`);
//! - ≥ 2.16: the same registry nested under `control_identity`:
//!   `control_identity_cert_expiration_timestamp_seconds`.
//!
//! A proxy that has no certificate yet reports 0 (the UNIX epoch): that is "unset", not an
//! expiry.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The largest `/metrics` body read (a busy proxy's output is well below 1 MiB).
pub const MAX_METRICS_BODY: usize = 4 * 1024 * 1024;

/// The gauge name used by proxies ≥ 2.16.
const CONTROL_METRIC: &str = "control_identity_cert_expiration_timestamp_seconds";
/// The gauge name used by proxies ≤ 2.15.
const LEGACY_METRIC: &str = "identity_cert_expiration_timestamp_seconds";

/// The identity certificate expiry a proxy reports in its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    /// The metric the value was read from (tells the proxy's metric generation).
    pub metric: String,
    /// When the proxy's current identity certificate expires.
    pub expires_at: DateTime<Utc>,
}

/// Why no expiry could be read from a proxy's metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// The scrape did not finish within its timeout.
    #[error("timed out")]
    Timeout,
    /// Nothing listens on the address.
    #[error("connection refused")]
    ConnectionRefused,
    /// The TCP connection could not be made for another reason.
    #[error("connect failed: {0}")]
    ConnectFailed(String),
    /// The HTTP exchange failed.
    #[error("http error: {0}")]
    Http(String),
    /// `/metrics` answered with a status other than 200.
    #[error("unexpected http status {0}")]
    Status(u16),
    /// The body exceeded the size limit (in bytes).
    #[error("metrics body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The expiry gauge is present but 0: the proxy has no certificate yet.
    #[error("expiry metric {0} is unset (no certificate yet)")]
    Unset(String),
    /// No identity certificate expiry gauge in the body.
    #[error("no identity certificate expiry metric")]
    NotFound,
}

impl MetricsError {
    /// A stable machine-readable name for the variant: `timeout`, `refused`, `connect_failed`,
    /// `http`, `status`, `body_too_large`, `unset`, `not_found`.
    pub fn kind(&self) -> &'static str {
        match self {
            MetricsError::Timeout => "timeout",
            MetricsError::ConnectionRefused => "refused",
            MetricsError::ConnectFailed(_) => "connect_failed",
            MetricsError::Http(_) => "http",
            MetricsError::Status(_) => "status",
            MetricsError::BodyTooLarge(_) => "body_too_large",
            MetricsError::Unset(_) => "unset",
            MetricsError::NotFound => "not_found",
        }
    }
}

/// GETs `http://addr/metrics` (HTTP/1.1, bounded by `timeout` and by [`MAX_METRICS_BODY`]) and
/// extracts the identity certificate expiry gauge under whichever name the proxy uses.
pub async fn scrape_cert_expiry(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<CertExpiry, MetricsError> {
    let body = match tokio::time::timeout(timeout, fetch_metrics(addr)).await {
        Ok(result) => result?,
        Err(_) => return Err(MetricsError::Timeout),
    };
    expiry_from_body(&body)
}

/// [`parse_cert_expiry`], telling an unset gauge from a missing one.
pub(super) fn expiry_from_body(body: &str) -> Result<CertExpiry, MetricsError> {
    match scan(body) {
        Scan::Found(expiry) => Ok(expiry),
        Scan::Unset(metric) => Err(MetricsError::Unset(metric)),
        Scan::Absent => Err(MetricsError::NotFound),
    }
}

/// Extracts the identity certificate expiry from a Prometheus text (or OpenMetrics) body.
///
/// Prefers `control_identity_cert_expiration_timestamp_seconds`, then
/// `identity_cert_expiration_timestamp_seconds`, then any other name ending in
/// `identity_cert_expiration_timestamp_seconds`, then any `identity_cert…expir…` name. Among
/// several samples of the chosen name (different labels) the earliest expiry wins. Labels,
/// comments, timestamps and exponent floats are accepted; garbage lines are skipped; zero,
/// negative and non-finite values are unset and yield `None`.
pub fn parse_cert_expiry(body: &str) -> Option<CertExpiry> {
    match scan(body) {
        Scan::Found(expiry) => Some(expiry),
        Scan::Unset(_) | Scan::Absent => None,
    }
}

async fn fetch_metrics(addr: SocketAddr) -> Result<String, MetricsError> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => MetricsError::ConnectionRefused,
        _ => MetricsError::ConnectFailed(e.to_string()),
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| MetricsError::Http(e.to_string()))?;
    // The connection task ends with the response (the proxy may close), or when this future is
    // dropped (timeout): the guard aborts it either way.
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));

    let request = http::Request::builder()
        .method(http::Method::GET)
        .uri("/metrics")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::ACCEPT, "text/plain")
        .header(http::header::USER_AGENT, "anchorwatch-agent")
        .body(Empty::<Bytes>::new())
        .map_err(|e| MetricsError::Http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| MetricsError::Http(e.to_string()))?;
    if response.status() != http::StatusCode::OK {
        return Err(MetricsError::Status(response.status().as_u16()));
    }
    let body = Limited::new(response.into_body(), MAX_METRICS_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                MetricsError::BodyTooLarge(MAX_METRICS_BODY)
            } else {
                MetricsError::Http(e.to_string())
            }
        })?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Scan {
    Found(CertExpiry),
    /// The best-ranked expiry metric is present but only with unset values.
    Unset(String),
    Absent,
}

fn scan(body: &str) -> Scan {
    // The best-ranked samples seen so far: the earliest expiry, or the name if all are unset.
    let mut best_rank = u8::MAX;
    let mut found: Option<CertExpiry> = None;
    let mut unset: Option<String> = None;
    for line in body.lines() {
        let Some((name, value)) = parse_sample(line) else {
            continue;
        };
        let Some(rank) = metric_rank(name) else {
            continue;
        };
        if rank > best_rank {
            continue;
        }
        if rank < best_rank {
            best_rank = rank;
            found = None;
            unset = None;
        }
        match timestamp(value) {
            Some(expires_at) => {
                if found.as_ref().is_none_or(|f| expires_at < f.expires_at) {
                    found = Some(CertExpiry {
                        metric: name.to_owned(),
                        expires_at,
                    });
                }
            }
            None => {
                if unset.is_none() {
                    unset = Some(name.to_owned());
                }
            }
        }
    }
    match (found, unset) {
        (Some(expiry), _) => Scan::Found(expiry),
        (None, Some(metric)) => Scan::Unset(metric),
        (None, None) => Scan::Absent,
    }
}

/// Lower is preferred; `None`: not an identity certificate expiry metric.
fn metric_rank(name: &str) -> Option<u8> {
    if name == CONTROL_METRIC {
        Some(0)
    } else if name == LEGACY_METRIC {
        Some(1)
    } else if name.ends_with(LEGACY_METRIC) {
        Some(2)
    } else if name.contains("identity_cert")
        && name.contains("expir")
        && !name.ends_with("_created")
        && !name.ends_with("_total")
        && !name.ends_with("_count")
    {
        Some(3)
    } else {
        None
    }
}

/// A positive, finite number of seconds since the UNIX epoch.
fn timestamp(seconds: f64) -> Option<DateTime<Utc>> {
    if !seconds.is_finite() || seconds <= 0.0 || seconds >= i64::MAX as f64 {
        return None;
    }
    let whole = seconds.trunc();
    let nanos = ((seconds - whole) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
    DateTime::from_timestamp(whole as i64, nanos)
}

/// One sample line: `name{labels} value [timestamp]` → (name, value).
fn parse_sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        let close = label_set_end(rest)?;
        rest = &rest[close + 1..];
    }
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let value = rest.split_ascii_whitespace().next()?;
    let value: f64 = value.parse().ok()?;
    Some((name, value))
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Index of the `}` closing a label set that starts at `s[0] == '{'`, honouring quoted values
/// with backslash escapes.
fn label_set_end(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate().skip(1) {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = false;
            }
        } else if b == b'"' {
            in_quotes = true;
        } else if b == b'}' {
            return Some(i);
        }
    }
    None
}
