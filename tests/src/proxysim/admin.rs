//! The plain HTTP/1.1 side of the simulated admin port: `/metrics`, `/ready`, `/live`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{Active, CLOSE_TIMEOUT, MetricsStyle, Shared, discard_until_eof};

/// Bound on receiving a request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Answers one HTTP/1.1 request, then closes the connection.
pub(super) async fn serve_http(mut tcp: TcpStream, active: &Active, shared: &Shared) {
    let response = match timeout(REQUEST_TIMEOUT, read_head(&mut tcp)).await {
        Err(_) | Ok(Head::Closed) => return,
        Ok(Head::TooLarge) => Response::text(431, "request head too large\n"),
        Ok(Head::Complete(head)) => match parse_request_line(&head) {
            Some((method, path)) => route(method, path, active, shared),
            None => Response::text(400, "bad request\n"),
        },
    };
    let bytes = response.encode();
    if let Ok(Ok(())) = timeout(CLOSE_TIMEOUT, tcp.write_all(&bytes)).await {
        let _ = timeout(CLOSE_TIMEOUT, tcp.shutdown()).await;
        // Drain what the client still sends so closing does not reset the connection (and
        // lose the response) when a request body was left unread.
        let _ = timeout(CLOSE_TIMEOUT, discard_until_eof(&mut tcp)).await;
    }
}

enum Head {
    Complete(Vec<u8>),
    TooLarge,
    Closed,
}

async fn read_head(tcp: &mut TcpStream) -> Head {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 2048];
    loop {
        let n = match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return Head::Closed,
            Ok(n) => n,
        };
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_head_end(&head[searched_from..]) {
            head.truncate(searched_from + end);
            return Head::Complete(head);
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Head::TooLarge;
        }
    }
}

/// Offset just past the blank line ending a head (`\r\n\r\n`, or a bare `\n\n`).
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `(method, path)` from an HTTP/1.x request line; the path without its query.
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    // Absolute form (`http://host:4191/metrics`) → path.
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = target.split(['?', '#']).next()?;
    Some((method, path))
}

fn route(method: &str, path: &str, active: &Active, shared: &Shared) -> Response {
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Response::text(404, "not found\n");
    }
    let response = match path {
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: render_metrics(shared.metrics, active, shared.started_at),
            head_only: false,
        },
        "/ready" => match active {
            Active::Ready { .. } => Response::text(200, "ready\n"),
            _ => Response::text(503, "not ready\n"),
        },
        "/live" => Response::text(200, "live\n"),
        _ => Response::text(404, "not found\n"),
    };
    Response {
        head_only,
        ..response
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    head_only: bool,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain",
            body: body.to_owned(),
            head_only: false,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Unknown",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\ndate: {}\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// Prometheus text as a proxy of the given generation serves it. The expiry gauge is the leaf's
/// not_after in unix seconds, or 0 while the proxy has no certificate.
fn render_metrics(style: MetricsStyle, active: &Active, started_at: DateTime<Utc>) -> String {
    let (expiry, refreshes) = match active {
        Active::Ready { expires_at, .. } => (expires_at.unwrap_or(0), 1),
        _ => (0, 0),
    };
    let started = started_at.timestamp();
    let refreshed = if refreshes > 0 { started } else { 0 };
    const EXPIRY_HELP: &str = "Time when the this proxy's current mTLS identity certificate will expire (in seconds since the UNIX epoch).";
    const REFRESH_HELP: &str =
        "Time when the this proxy's current mTLS identity certificate were last updated.";
    const REFRESHES_HELP: &str = "The total number of times this proxy's mTLS identity certificate has been refreshed by the Identity provider.";

    let mut lines: Vec<String> = vec![
        "# HELP process_start_time_seconds Time that the process started (in seconds since the UNIX epoch)".into(),
        "# TYPE process_start_time_seconds gauge".into(),
        format!("process_start_time_seconds {started}"),
    ];
    match style {
        MetricsStyle::Legacy => lines.extend([
            format!("# HELP identity_cert_expiration_timestamp_seconds {EXPIRY_HELP}"),
            "# TYPE identity_cert_expiration_timestamp_seconds gauge".into(),
            format!("identity_cert_expiration_timestamp_seconds {expiry}"),
            "# HELP identity_cert_refresh_count The total number of times this proxy's mTLS identity certificate has been refreshed by the Identity service.".into(),
            "# TYPE identity_cert_refresh_count counter".into(),
            format!("identity_cert_refresh_count {refreshes}"),
        ]),
        MetricsStyle::V2_15 | MetricsStyle::Control => {
            let prefix = match style {
                MetricsStyle::Control => "control_identity_cert",
                _ => "identity_cert",
            };
            // prometheus-client writes floats; 2.15 is rendered with an exponent to exercise
            // parsers, ≥ 2.16 in plain decimal.
            let float = |v: i64| match style {
                MetricsStyle::V2_15 => format!("{:e}", v as f64),
                _ => format!("{:?}", v as f64),
            };
            lines.extend([
                format!("# HELP {prefix}_expiration_timestamp_seconds {EXPIRY_HELP}"),
                format!("# TYPE {prefix}_expiration_timestamp_seconds gauge"),
                format!("# UNIT {prefix}_expiration_timestamp_seconds seconds"),
                format!("{prefix}_expiration_timestamp_seconds {}", float(expiry)),
                format!("# HELP {prefix}_refresh_timestamp_seconds {REFRESH_HELP}"),
                format!("# TYPE {prefix}_refresh_timestamp_seconds gauge"),
                format!("# UNIT {prefix}_refresh_timestamp_seconds seconds"),
                format!("{prefix}_refresh_timestamp_seconds {}", float(refreshed)),
                format!("# HELP {prefix}_refreshes {REFRESHES_HELP}"),
                format!("# TYPE {prefix}_refreshes counter"),
                format!("{prefix}_refreshes_total {refreshes}"),
            ]);
        }
        MetricsStyle::None => {}
    }
    lines.extend([
        "# HELP request_total Total count of HTTP requests.".into(),
        "# TYPE request_total counter".into(),
        "request_total{direction=\"inbound\",target_addr=\"0.0.0.0:4191\",target_ip=\"0.0.0.0\",target_port=\"4191\",tls=\"disabled\",srv_group=\"\",srv_kind=\"default\",srv_name=\"all-unauthenticated\",srv_port=\"4191\",route_group=\"\",route_kind=\"default\",route_name=\"probe\"} 12".into(),
        "# HELP tcp_open_connections Number of currently-open connections.".into(),
        "# TYPE tcp_open_connections gauge".into(),
        "tcp_open_connections{direction=\"inbound\",peer=\"src\",target_addr=\"0.0.0.0:4191\",target_ip=\"0.0.0.0\",target_port=\"4191\",tls=\"disabled\",srv_group=\"\",srv_kind=\"default\",srv_name=\"all-unauthenticated\",srv_port=\"4191\"} 1".into(),
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.".into(),
        "# TYPE process_cpu_seconds_total counter".into(),
        "process_cpu_seconds_total 0.42".into(),
    ]);
    let mut body = lines.join("\n");
    body.push('\n');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"GET /ready?x=1 HTTP/1.0\r\n\r\n"),
            Some(("GET", "/ready"))
        );
        assert_eq!(
            parse_request_line(b"GET http://10.0.0.1:4191/live HTTP/1.1\r\n\r\n"),
            Some(("GET", "/live"))
        );
        assert_eq!(parse_request_line(b"\xff\xfe garbage\r\n\r\n"), None);
        assert_eq!(parse_request_line(b"GET /metrics SPDY/3\r\n\r\n"), None);
        assert_eq!(parse_request_line(b"\r\n\r\n"), None);
    }

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
