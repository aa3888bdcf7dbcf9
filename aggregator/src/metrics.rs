//! Prometheus metrics of the aggregator (text exposition format 0.0.4). The node clock gauges
//! are named after node_exporter's timex collector (`node_timex_*`), per node, so the dashboards
//! and alerts people already have for one node's kernel view read the same for anchorwatch's
//! measured view of every node.

use crate::clock::{Level, Row};
use anchorwatch_promtext::{family, label};
use std::fmt::Write as _;

/// Clock port counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClockPort {
    /// Requests answered.
    pub answered: u64,
    /// Datagrams dropped.
    pub dropped: u64,
}

/// Whether this replica leads.
pub fn render_leader(leading: bool) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "anchorwatch_aggregator_leader",
        "gauge",
        "1 when this aggregator replica holds the Lease (serves agents and queries, and acts).",
    );
    let _ = writeln!(out, "anchorwatch_aggregator_leader {}", u8::from(leading));
    out
}

/// Agent authentication counters.
pub fn render_auth(c: &crate::auth::Counters) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::new();
    family(
        &mut out,
        "anchorwatch_agent_streams_accepted_total",
        "counter",
        "Agent streams whose token was accepted.",
    );
    let _ = writeln!(
        out,
        "anchorwatch_agent_streams_accepted_total {}",
        c.accepted.load(Relaxed)
    );
    family(
        &mut out,
        "anchorwatch_agent_streams_rejected_total",
        "counter",
        "Agent streams refused, by reason (no_token, invalid_token, wrong_service_account, unbound, api_unavailable).",
    );
    let rejected = c.rejected.lock().unwrap_or_else(|p| p.into_inner());
    let mut reasons: Vec<_> = rejected.iter().collect();
    reasons.sort();
    for (reason, n) in reasons {
        let _ = writeln!(
            out,
            "anchorwatch_agent_streams_rejected_total{{reason=\"{reason}\"}} {n}"
        );
    }
    family(
        &mut out,
        "anchorwatch_agent_reports_rejected_total",
        "counter",
        "Reports refused from authenticated agents: about a pod the API does not place on the agent's node (foreign_pod), or naming another node (wrong_node).",
    );
    let _ = writeln!(
        out,
        "anchorwatch_agent_reports_rejected_total{{reason=\"foreign_pod\"}} {}",
        c.foreign_pods.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "anchorwatch_agent_reports_rejected_total{{reason=\"wrong_node\"}} {}",
        c.wrong_node.load(Relaxed)
    );
    out
}

/// The node clock gauges and the clock port counters.
pub fn render_clock(rows: &[Row], port: ClockPort) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "anchorwatch_node_timex_offset_seconds",
        "gauge",
        "Node clock minus the reference (NTP servers, else the aggregator), as measured.",
    );
    for r in rows {
        if let Some(o) = &r.offset {
            let _ = writeln!(
                out,
                "anchorwatch_node_timex_offset_seconds{{node=\"{}\",reference=\"{}\"}} {}",
                label(&r.node),
                label(&o.reference),
                o.offset_s
            );
        }
    }
    family(
        &mut out,
        "anchorwatch_node_timex_offset_bound_seconds",
        "gauge",
        "Error bound of the measured offset: the truth lies within offset ± bound.",
    );
    for r in rows {
        if let Some(o) = &r.offset {
            let _ = writeln!(
                out,
                "anchorwatch_node_timex_offset_bound_seconds{{node=\"{}\"}} {}",
                label(&r.node),
                o.bound_s
            );
        }
    }
    family(
        &mut out,
        "anchorwatch_node_timex_offset_to_identity_seconds",
        "gauge",
        "Node clock minus the clock of the node running linkerd-identity.",
    );
    for r in rows {
        if let Some((o, _)) = r.to_identity {
            let _ = writeln!(
                out,
                "anchorwatch_node_timex_offset_to_identity_seconds{{node=\"{}\"}} {o}",
                label(&r.node)
            );
        }
    }
    family(
        &mut out,
        "anchorwatch_node_timex_drift_ppm",
        "gauge",
        "Drift of the measured offset, parts per million (fitted over the history window).",
    );
    for r in rows {
        if let Some(d) = r.drift {
            let _ = writeln!(
                out,
                "anchorwatch_node_timex_drift_ppm{{node=\"{}\"}} {}",
                label(&r.node),
                d.ppm
            );
        }
    }
    family(
        &mut out,
        "anchorwatch_node_timex_sync_status",
        "gauge",
        "Is the node's kernel clock synchronised (adjtimex: STA_UNSYNC clear, no TIME_ERROR).",
    );
    for r in rows {
        if let Some(k) = r.kernel.as_ref().filter(|k| k.error.is_empty()) {
            let _ = writeln!(
                out,
                "anchorwatch_node_timex_sync_status{{node=\"{}\"}} {}",
                label(&r.node),
                u8::from(k.synchronised)
            );
        }
    }
    family(
        &mut out,
        "anchorwatch_node_timex_maxerror_seconds",
        "gauge",
        "The node kernel's maximum error estimate (adjtimex maxerror).",
    );
    for r in rows {
        if let Some(k) = r.kernel.as_ref().filter(|k| k.error.is_empty()) {
            let _ = writeln!(
                out,
                "anchorwatch_node_timex_maxerror_seconds{{node=\"{}\"}} {}",
                label(&r.node),
                k.max_error_s
            );
        }
    }
    family(
        &mut out,
        "anchorwatch_node_clock_level",
        "gauge",
        "The node's clock level (1 for its current level): ok, warn, critical, stale, unmeasured.",
    );
    for r in rows {
        for l in [
            Level::Ok,
            Level::Warn,
            Level::Critical,
            Level::Stale,
            Level::Unmeasured,
        ] {
            let _ = writeln!(
                out,
                "anchorwatch_node_clock_level{{node=\"{}\",level=\"{}\"}} {}",
                label(&r.node),
                l.name(),
                u8::from(r.level == l)
            );
        }
    }
    family(
        &mut out,
        "anchorwatch_clock_port_requests_total",
        "counter",
        "NTP requests on the clock port, by outcome.",
    );
    let _ = writeln!(
        out,
        "anchorwatch_clock_port_requests_total{{outcome=\"answered\"}} {}",
        port.answered
    );
    let _ = writeln!(
        out,
        "anchorwatch_clock_port_requests_total{{outcome=\"dropped\"}} {}",
        port.dropped
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ClockSettings, NodeClockState, Offset, Reading, rows};

    #[test]
    fn gauges_per_node_with_escaped_labels_and_only_what_is_known() {
        let s = ClockSettings::default();
        let mut measured = NodeClockState::new(&s);
        measured.apply(
            Reading {
                received_at: crate::time::now(),
                aggregator: Offset {
                    offset_s: Some(-25.0),
                    bound_s: 0.0005,
                    error: String::new(),
                },
                ..Reading::default()
            },
            &s,
        );
        let never = NodeClockState::new(&s);
        let rows = rows(
            [("n\"1", &measured, false), ("n2", &never, false)],
            Some("n2"),
            0,
            crate::time::now(),
            &s,
        );
        let text = render_clock(
            &rows,
            ClockPort {
                answered: 7,
                dropped: 1,
            },
        );
        assert!(text.contains(
            "anchorwatch_node_timex_offset_seconds{node=\"n\\\"1\",reference=\"aggregator\"} -25\n"
        ), "{text}");
        assert!(
            text.contains("anchorwatch_node_timex_offset_bound_seconds{node=\"n\\\"1\"} 0.0005")
        );
        assert!(!text.contains("anchorwatch_node_timex_offset_seconds{node=\"n2\""));
        assert!(
            text.contains("anchorwatch_node_clock_level{node=\"n\\\"1\",level=\"critical\"} 1")
        );
        assert!(text.contains("anchorwatch_node_clock_level{node=\"n2\",level=\"unmeasured\"} 1"));
        assert!(text.contains("anchorwatch_clock_port_requests_total{outcome=\"answered\"} 7"));
        // Every sample line belongs to a declared family.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{l}");
        }
    }
}
