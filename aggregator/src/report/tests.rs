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
    // -25 s is beyond the 20 s allowance: the critical lines are drawn.
    assert!(s.contains(">critical<"));
    let empty = svg(&pb::ClockReportResponse::default());
    assert!(empty.contains("no clock measurements yet"));
}
