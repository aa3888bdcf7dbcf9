use super::*;

fn t(min: i64) -> DateTime<Utc> {
    "2026-12-03T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + TimeDelta::minutes(min)
}

fn reading(at: DateTime<Utc>, agg: Option<f64>, ntp: Option<f64>) -> Reading {
    Reading {
        received_at: at,
        aggregator: Offset {
            offset_s: agg,
            bound_s: 0.001,
            error: if agg.is_none() {
                "timeout".into()
            } else {
                String::new()
            },
        },
        ntp: ntp
            .map(|o| {
                vec![NtpReading {
                    server: "127.0.0.1:123".into(),
                    offset: Offset {
                        offset_s: Some(o),
                        bound_s: 0.0005,
                        error: String::new(),
                    },
                    root_distance_s: 0.01,
                }]
            })
            .unwrap_or_default(),
        kernel: Kernel::default(),
    }
}

#[test]
fn ntp_is_the_reference_when_measured_with_its_root_distance_in_the_bound() {
    let r = reading(t(0), Some(0.5), Some(0.2));
    let o = r.reference_offset().unwrap();
    assert_eq!(o.reference, "ntp:127.0.0.1:123");
    assert_eq!(o.offset_s, 0.2);
    assert!((o.bound_s - 0.0105).abs() < 1e-12);
    let r = reading(t(0), Some(0.5), None);
    assert_eq!(r.reference_offset().unwrap().reference, "aggregator");
    assert_eq!(reading(t(0), None, None).reference_offset(), None);
}

#[test]
fn levels_take_the_bound_off_before_comparing() {
    let s = ClockSettings::default();
    assert_eq!(level(3.0, 0.01, &s), Level::Warn);
    assert_eq!(level(-25.0, 0.01, &s), Level::Critical);
    assert_eq!(level(0.05, 0.01, &s), Level::Ok);
    // 20.5 s ± 1 s may be within the allowance: not critical.
    assert_eq!(level(20.5, 1.0, &s), Level::Warn);
}

#[test]
fn rows_say_stale_unmeasured_relative_to_identity_and_forecast() {
    let s = ClockSettings::default();
    let mut id = NodeClockState::new(&s);
    let mut drifting = NodeClockState::new(&s);
    let mut quiet = NodeClockState::new(&s);
    let never = NodeClockState::new(&s);
    for i in 0..30 {
        id.apply(reading(t(i), Some(1.0), None), &s);
        // +100 ppm: 6 ms a minute, from 2 s.
        drifting.apply(reading(t(i), Some(2.0 + 0.006 * i as f64), None), &s);
    }
    quiet.apply(reading(t(0), Some(0.0), None), &s);
    let nodes = [
        ("n1", &id, false),
        ("n2", &drifting, false),
        ("n3", &quiet, false),
        ("n4", &never, false),
        ("n5", &drifting, true),
    ];
    let rows = rows(nodes, Some("n1"), 5, t(29), &s);
    let by = |n: &str| rows.iter().find(|r| r.node == n).unwrap();
    assert_eq!(by("n1").level, Level::Warn);
    assert_eq!(by("n1").to_identity, Some((0.0, 0.002)));
    let n2 = by("n2");
    assert_eq!(n2.level, Level::Warn);
    let (rel, bound) = n2.to_identity.unwrap();
    assert!((rel - (2.0 + 0.174 - 1.0)).abs() < 1e-9 && bound == 0.002);
    let d = n2.drift.unwrap();
    assert!((d.ppm - 100.0).abs() < 1.0, "{d:?}");
    assert_eq!(n2.warn_forecast, Some(Forecast::Beyond));
    assert!(matches!(n2.critical_forecast, Some(Forecast::At(_))));
    assert_eq!(n2.history.len(), 5);
    // Last measured 29 min ago, beyond the 5 min freshness.
    assert_eq!(by("n3").level, Level::Stale);
    assert!(
        by("n3").problem.contains("no clock measurement since")
            && by("n3").problem.contains("last measured +0.000 s"),
        "{}",
        by("n3").problem
    );
    assert_eq!(by("n4").level, Level::Unmeasured);
    assert_eq!(by("n5").level, Level::Stale);
    assert_eq!(by("n5").offset, None);
    // A stopped agent: the row says so, with the last offset it measured.
    assert!(
        by("n5")
            .problem
            .starts_with("the agent stopped reporting; last measured +2.174 s"),
        "{}",
        by("n5").problem
    );
}

/// The pair rule in the report: two nodes each within the allowance of the reference but
/// beyond it apart, one running identity, are critical, and the row says why.
#[test]
fn a_node_far_from_identitys_node_is_critical_though_near_the_reference() {
    let s = ClockSettings::default();
    let mut id = NodeClockState::new(&s);
    let mut behind = NodeClockState::new(&s);
    id.apply(reading(t(0), Some(15.0), None), &s);
    behind.apply(reading(t(0), Some(-10.0), None), &s);
    let rows = rows(
        [("n1", &behind, false), ("n3", &id, false)],
        Some("n3"),
        0,
        t(0),
        &s,
    );
    assert_eq!(rows[0].level, Level::Critical);
    assert!(
        rows[0]
            .problem
            .contains("-25.000 s from linkerd-identity's node n3"),
        "{}",
        rows[0].problem
    );
    assert_eq!(rows[1].level, Level::Warn);
}

#[test]
fn a_failed_burst_keeps_the_reason_and_gives_no_offset() {
    let s = ClockSettings::default();
    let mut c = NodeClockState::new(&s);
    c.apply(reading(t(0), None, None), &s);
    let rows = rows([("n1", &c, false)], None, 0, t(1), &s);
    assert_eq!(rows[0].level, Level::Stale);
    assert!(
        rows[0].problem.contains("aggregator: timeout"),
        "{}",
        rows[0].problem
    );
}

#[test]
fn a_new_reference_restarts_the_history() {
    let s = ClockSettings::default();
    let mut c = NodeClockState::new(&s);
    for i in 0..5 {
        c.apply(reading(t(i), Some(1.0), None), &s);
    }
    c.apply(reading(t(6), Some(1.0), Some(0.0)), &s);
    assert_eq!(c.history.points().count(), 1);
}

#[test]
fn a_clock_step_restarts_the_history_so_no_drift_is_fitted_across_it() {
    let s = ClockSettings::default();
    let mut c = NodeClockState::new(&s);
    for i in 0..10 {
        c.apply(reading(t(i), Some(-25.0), None), &s);
    }
    // chrony set the clock: the offset jumps to zero.
    c.apply(reading(t(10), Some(0.0), None), &s);
    assert_eq!(c.history.points().count(), 1);
    for i in 11..14 {
        c.apply(reading(t(i), Some(0.0), None), &s);
    }
    let d = c.drift().unwrap();
    assert!(d.ppm.abs() < 1.0, "{d:?}");
    // Small wander is not a step.
    c.apply(reading(t(15), Some(0.01), None), &s);
    assert_eq!(c.history.points().count(), 5);
}

#[test]
fn configured_ntp_servers_that_fail_are_said_while_the_aggregator_stands_in() {
    let s = ClockSettings::default();
    let mut c = NodeClockState::new(&s);
    let mut r = reading(t(0), Some(0.2), None);
    r.ntp = vec![NtpReading {
        server: "127.0.0.1:9".into(),
        offset: Offset {
            offset_s: None,
            bound_s: 0.0,
            error: "timeout".into(),
        },
        root_distance_s: 0.0,
    }];
    c.apply(r, &s);
    let rows = rows([("n1", &c, false)], None, 0, t(1), &s);
    assert_eq!(rows[0].offset.as_ref().unwrap().reference, "aggregator");
    assert!(
        rows[0].problem.contains("ntp 127.0.0.1:9: timeout"),
        "{}",
        rows[0].problem
    );
}
