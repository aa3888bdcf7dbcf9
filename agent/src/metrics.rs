//! Prometheus metrics of the agent (text exposition format 0.0.4): what the proxies on this node
//! log, per pod and kind, named and labelled the way Linkerd's own proxy metrics are
//! (`namespace`, `pod`), and what reading the logs costs.

use crate::logs::LogMetrics;
use anchorwatch_promtext::{family, label};
use std::fmt::Write as _;

/// The log metrics as Prometheus text.
pub fn render(m: &LogMetrics) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "anchorwatch_proxy_log_errors_total",
        "counter",
        "Proxy log lines per pod and kind (cases/log-lines.md: BAD_SIGNATURE, UNKNOWN_ISSUER, EXPIRED, ALERT_RECEIVED(<alert>), IDENTITY_UNREACHABLE, ...), since the agent started following the pod.",
    );
    for ((namespace, pod, kind), n) in &m.errors {
        let _ = writeln!(
            out,
            "anchorwatch_proxy_log_errors_total{{namespace=\"{}\",pod=\"{}\",kind=\"{}\"}} {n}",
            label(namespace),
            label(pod),
            label(kind)
        );
    }
    let c = &m.counters;
    family(
        &mut out,
        "anchorwatch_proxy_log_read_bytes_total",
        "counter",
        "Bytes of proxy container logs read (decompressed bytes of rotated .gz files).",
    );
    let _ = writeln!(out, "anchorwatch_proxy_log_read_bytes_total {}", c.bytes);
    family(
        &mut out,
        "anchorwatch_proxy_log_lines_total",
        "counter",
        "Proxy container log lines read.",
    );
    let _ = writeln!(out, "anchorwatch_proxy_log_lines_total {}", c.lines);
    family(
        &mut out,
        "anchorwatch_proxy_log_skipped_lines_total",
        "counter",
        "Log lines skipped: longer than the line cap (too_long), or not CRI log lines (not_cri).",
    );
    let _ = writeln!(
        out,
        "anchorwatch_proxy_log_skipped_lines_total{{reason=\"too_long\"}} {}",
        c.too_long
    );
    let _ = writeln!(
        out,
        "anchorwatch_proxy_log_skipped_lines_total{{reason=\"not_cri\"}} {}",
        c.not_cri
    );
    family(
        &mut out,
        "anchorwatch_proxy_log_behind_rounds_total",
        "counter",
        "Reading rounds that ran out of their byte budget before reaching the end of every log: the reader is behind.",
    );
    let _ = writeln!(
        out,
        "anchorwatch_proxy_log_behind_rounds_total {}",
        c.behind_rounds
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_counted_per_pod_and_kind_with_escaped_labels() {
        let mut m = LogMetrics::default();
        m.errors.insert(
            ("emojivoto".into(), "web-1".into(), "BAD_SIGNATURE".into()),
            12,
        );
        m.errors.insert(
            (
                "x".into(),
                "we\"ird".into(),
                "ALERT_RECEIVED(BadCertificate)".into(),
            ),
            1,
        );
        m.counters.too_long = 2;
        let text = render(&m);
        assert!(text.contains(
            "anchorwatch_proxy_log_errors_total{namespace=\"emojivoto\",pod=\"web-1\",kind=\"BAD_SIGNATURE\"} 12\n"
        ));
        assert!(text.contains("pod=\"we\\\"ird\",kind=\"ALERT_RECEIVED(BadCertificate)\"} 1\n"));
        assert!(
            text.contains("anchorwatch_proxy_log_skipped_lines_total{reason=\"too_long\"} 2\n")
        );
        assert!(text.contains("# TYPE anchorwatch_proxy_log_errors_total counter\n"));
    }
}
