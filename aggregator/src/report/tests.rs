use super::*;
use crate::time::to_proto;
use chrono::TimeDelta;

fn at(s: i64) -> Option<prost_types::Timestamp> {
    Some(to_proto(
        "2026-12-03T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::seconds(s),
    ))
}

fn row(node: &str, level: &str, offset: Option<f64>) -> pb::NodeClockRow {
    pb::NodeClockRow {
        node: node.into(),
        level: level.into(),
        reference: "aggregator".into(),
        offset_seconds: offset,
        bound_seconds: 0.0004,
        offset_to_identity_seconds: offset,
        bound_to_identity_seconds: 0.0008,
        kernel: Some(pb::KernelClock {
            synchronised: false,
            ..Default::default()
        }),
        drift_ppm: offset.map(|_| 12.5),
        drift_ppm_uncertainty: 0.5,
        critical_at: at(86_400),
        beyond_warn: offset.is_some_and(|o| o.abs() > 0.1),
        last_sample_at: at(60),
        problem: if offset.is_none() {
            "no clock measurement received, \"yet\"".into()
        } else {
            String::new()
        },
        history: offset
            .map(|o| {
                (0..5)
                    .map(|i| pb::ClockPoint {
                        at: at(i * 10),
                        offset_seconds: o + i as f64 * 0.001,
                        bound_seconds: 0.0004,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn report() -> pb::ClockReportResponse {
    pb::ClockReportResponse {
        at: at(60),
        reference: "aggregator".into(),
        warn_seconds: 0.1,
        critical_seconds: 20.0,
        identity_node: "node-1".into(),
        nodes: vec![
            row("node-1", "ok", Some(0.0002)),
            row("node-2", "warn", Some(3.0)),
            row("node-3", "critical", Some(-25.0)),
            row("node-<4>", "unmeasured", None),
        ],
    }
}

#[test]
fn the_table_says_what_the_reference_is_and_shows_each_node() {
    let t = table(&report());
    assert!(t.contains("relative skew only"), "{t}");
    assert!(t.contains("linkerd-identity runs on node-1"));
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 6, "{t}");
    assert!(lines[1].starts_with("NODE"));
    assert!(
        lines[3].contains("node-2")
            && lines[3].contains("warn")
            && lines[3].contains("+3000.000 ± 0.400")
    );
    assert!(lines[4].contains("-25000.000") && lines[4].contains("critical"));
    assert!(
        lines[3].contains("now"),
        "past the warn threshold: {}",
        lines[3]
    );
    assert!(lines[5].contains("unmeasured") && lines[5].contains("no clock measurement"));
}

#[test]
fn csv_has_one_row_per_node_and_quotes_what_needs_it() {
    let c = csv(&report());
    let lines: Vec<&str> = c.lines().collect();
    assert_eq!(lines.len(), 5);
    let columns = lines[0].split(',').count();
    assert_eq!(lines[2].split(',').count(), columns, "{}", lines[2]);
    assert!(lines[2].starts_with("node-2,warn,aggregator,3,0.0004,"));
    assert!(
        lines[4].ends_with(r#""no clock measurement received, ""yet""""#),
        "{}",
        lines[4]
    );
}

#[test]
fn json_keeps_the_numbers_and_the_history() {
    let j = json(&report());
    assert_eq!(j["nodes"][2]["offset_seconds"], -25.0);
    assert_eq!(j["nodes"][1]["warn_at"], "now");
    assert_eq!(j["nodes"][0]["history"].as_array().unwrap().len(), 5);
    assert!(j["nodes"][3]["offset_seconds"].is_null());
}

#[test]
fn the_picture_has_a_line_and_a_band_per_measured_node_and_escapes_names() {
    let s = svg(&report());
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    assert_eq!(s.matches("<polyline").count(), 3);
    assert_eq!(s.matches("<polygon").count(), 3);
    assert!(s.contains("node-&lt;4&gt;") && !s.contains("node-<4>"));
    // -25 s is beyond the 20 s allowance: the critical lines are drawn and labelled, in seconds.
    assert!(
        s.contains(">critical +20<") && s.contains(">critical −20<"),
        "{s}"
    );
    assert!(s.contains("to the aggregator (s)"), "{s}");
    // Each level in its colour in the legend, worst first.
    assert!(s.contains(r##"<tspan fill="#d62728" font-weight="bold">critical</tspan>"##));
    assert!(s.contains(r##"<tspan fill="#2ca02c" font-weight="bold">ok</tspan>"##));
    assert!(s.find("node-3").unwrap() < s.find("node-1").unwrap());
    let empty = svg(&pb::ClockReportResponse::default());
    assert!(empty.contains("no clock measurements yet"));
}

/// Tick labels from the SVG's y axis.
fn ticks(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| l.contains(r#"text-anchor="end">"#) && l.starts_with("<line"))
        .filter_map(|l| {
            let t = l.split(r#"text-anchor="end">"#).nth(1)?;
            Some(t.split('<').next()?.to_string())
        })
        .collect()
}

#[test]
fn the_axis_fits_any_offset_and_says_its_unit() {
    // Milliseconds for a healthy cluster, seconds for tens of seconds, days for a clock set a
    // year wrong: every tick label stays short enough for the margin.
    for (offset, unit) in [(0.0003, "(ms)"), (-25.0, "(s)"), (-3.2e7, "(days)")] {
        let mut r = report();
        r.nodes = vec![row("node-1", "critical", Some(offset))];
        let s = svg(&r);
        assert!(s.contains(unit), "{offset}: {s}");
        let t = ticks(&s);
        assert_eq!(t.len(), 5, "{s}");
        assert!(t.iter().all(|t| t.chars().count() <= 8), "{offset}: {t:?}");
    }
    let mut r = report();
    r.nodes = vec![row("node-1", "critical", Some(8.2e12))];
    let t = ticks(&svg(&r));
    assert!(t.iter().all(|t| t.chars().count() <= 8), "{t:?}");
}

#[test]
fn a_large_cluster_draws_the_worst_nodes_and_counts_the_rest() {
    let mut r = report();
    r.nodes = (0..500)
        .map(|i| row(&format!("node-{i}"), "ok", Some(0.0001)))
        .collect();
    r.nodes[321] = row("node-321", "critical", Some(-25.0));
    let s = svg(&r);
    assert_eq!(s.matches("<polyline").count(), MAX_DRAWN);
    assert!(s.contains("node-321 <tspan"), "the critical node is drawn");
    assert!(s.contains(&format!("+{} more (see the table)", 500 - MAX_DRAWN)));
    // Long cloud node names keep both ends in the legend.
    assert_eq!(
        short("ip-10-0-99-201.eu-west-1.compute.internal"),
        "ip-10-0-99…e.internal"
    );
    assert_eq!(short("node-1"), "node-1");
}

#[test]
fn the_server_may_be_given_with_or_without_a_scheme_and_tls_needs_a_ca() {
    assert_eq!(
        server_url("10.0.0.5:8443", false).unwrap(),
        "http://10.0.0.5:8443"
    );
    assert_eq!(
        server_url("10.0.0.5:8443", true).unwrap(),
        "https://10.0.0.5:8443"
    );
    assert_eq!(
        server_url("http://anchorwatch.anchorwatch:8443", false).unwrap(),
        "http://anchorwatch.anchorwatch:8443"
    );
    let e = server_url("https://anchorwatch:8443", false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--ca"), "{e}");
    let e = server_url("http://anchorwatch:8443", true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("https://anchorwatch:8443"), "{e}");
    assert!(server_url("", false).is_err());
    assert!(server_url("grpc://x:1", false).is_err());
}

#[test]
fn csv_numbers_are_plain_decimals() {
    let mut r = report();
    r.nodes = vec![row("node-1", "ok", Some(0.1 + 0.2 - 0.3 + 1.234e-5))];
    let c = csv(&r);
    let line = c.lines().nth(1).unwrap();
    // Not 0.000012340000000000029 nor 1.234e-5: to the nanosecond, trailing zeros dropped.
    assert!(
        line.starts_with("node-1,ok,aggregator,0.00001234,0.0004,"),
        "{line}"
    );
}

#[test]
fn values_that_round_to_zero_carry_no_minus_sign() {
    assert_eq!(signed(-0.0004, 2), "+0.00");
    assert_eq!(signed(-0.004, 2), "+0.00");
    assert_eq!(signed(-0.006, 2), "-0.01");
    assert_eq!(ms(-2e-7), "+0.000");
    assert_eq!(ms(-0.025), "-25.000");
}
