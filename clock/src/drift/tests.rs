use super::*;

fn t0() -> DateTime<Utc> {
    "2026-12-03T00:00:00Z".parse().unwrap()
}

fn history(ppm: f64, start_s: f64, n: i64, step_s: i64, bound_s: f64) -> History {
    let mut h = History::new(TimeDelta::hours(24), 10_000);
    for i in 0..n {
        let x = (i * step_s) as f64;
        h.push(Point {
            at: t0() + TimeDelta::seconds(i * step_s),
            offset_s: start_s + ppm * 1e-6 * x,
            bound_s,
        });
    }
    h
}

#[test]
fn a_steady_drift_is_fitted_and_the_crossing_forecast() {
    // +50 ppm from +10 ms, a point a minute for an hour: 50 ppm = 0.18 s an hour.
    let h = history(50.0, 0.010, 61, 60, 0.0005);
    let d = h.fit().unwrap();
    assert!((d.ppm - 50.0).abs() < 0.5, "{d:?}");
    assert!(d.ppm_uncertainty < 1.0, "{d:?}");
    assert!((d.offset_now_s - (0.010 + 0.18)).abs() < 1e-3, "{d:?}");
    // From 0.19 s to 20 s at 50 µs/s: (20 - 0.19) / 50e-6 s ≈ 4.6 days.
    match d.forecast(20.0) {
        Forecast::At(when) => {
            let secs = (when - d.at).num_seconds();
            assert!((secs - 396_200).abs() < 2_000, "{secs}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.forecast(0.1), Forecast::Beyond);
}

#[test]
fn a_negative_drift_crosses_the_negative_threshold() {
    let d = history(-100.0, 0.0, 30, 60, 0.0001).fit().unwrap();
    assert!(d.span_s >= MIN_FORECAST_SPAN_S);
    assert!(d.offset_now_s < -0.17, "{d:?}");
    match d.forecast(1.0) {
        Forecast::At(when) => assert!(when > d.at),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_trend_within_the_noise_never_crosses() {
    // Offsets jitter ±1 ms around 5 ms with 1 ms bounds: no drift distinguishable from zero.
    let mut h = History::new(TimeDelta::hours(1), 100);
    for i in 0..40 {
        h.push(Point {
            at: t0() + TimeDelta::seconds(i * 10),
            offset_s: 0.005 + if i % 2 == 0 { 0.001 } else { -0.001 },
            bound_s: 0.001,
        });
    }
    let d = h.fit().unwrap();
    assert_eq!(d.forecast(0.1), Forecast::Never, "{d:?}");
}

#[test]
fn a_stepped_clock_inflates_the_uncertainty() {
    let mut h = history(0.0, 0.0, 20, 60, 0.0001);
    for i in 20..40 {
        h.push(Point {
            at: t0() + TimeDelta::seconds(i * 60),
            offset_s: 2.0,
            bound_s: 0.0001,
        });
    }
    let d = h.fit().unwrap();
    let smooth = history(0.0, 0.0, 40, 60, 0.0001).fit().unwrap();
    assert!(
        d.ppm_uncertainty > 100.0 * smooth.ppm_uncertainty.max(1e-9),
        "{d:?}"
    );
}

#[test]
fn the_history_is_bounded_by_window_and_count_and_ignores_bad_points() {
    let mut h = History::new(TimeDelta::minutes(10), 5);
    for i in 0..20 {
        h.push(Point {
            at: t0() + TimeDelta::minutes(i),
            offset_s: 0.0,
            bound_s: 0.001,
        });
    }
    assert_eq!(h.points().count(), 5);
    let mut w = History::new(TimeDelta::minutes(10), 1000);
    for i in 0..20 {
        w.push(Point {
            at: t0() + TimeDelta::minutes(i),
            offset_s: 0.0,
            bound_s: 0.001,
        });
    }
    assert_eq!(w.points().count(), 11);
    let before = w.points().count();
    w.push(Point {
        at: t0(),
        offset_s: 0.0,
        bound_s: 0.001,
    });
    w.push(Point {
        at: t0() + TimeDelta::hours(1),
        offset_s: f64::NAN,
        bound_s: 0.001,
    });
    assert_eq!(w.points().count(), before);
}

#[test]
fn too_few_points_fit_nothing() {
    assert!(history(10.0, 0.0, 2, 60, 0.001).fit().is_none());
    assert!(history(10.0, 0.0, 5, 0, 0.001).fit().is_none());
}

/// What a healthy node on a LAN looks like: no drift, but the measured offset wanders inside
/// its ~50 µs bounds (path asymmetry changes slowly), one sample every 2 s. Over 20 minutes a
/// wander from −40 µs to +40 µs is 0.07 ppm; with 600 points the plain fit calls that a trend
/// with a tiny standard error, and would forecast a crossing. The bound floor does not.
#[test]
fn a_healthy_node_wandering_inside_its_bounds_forecasts_nothing() {
    let mut h = History::new(TimeDelta::hours(6), 10_000);
    for i in 0..=600 {
        h.push(Point {
            at: t0() + TimeDelta::seconds(i * 2),
            offset_s: -40e-6 + 80e-6 * i as f64 / 600.0,
            bound_s: 50e-6,
        });
    }
    let d = h.fit().unwrap();
    assert!(d.span_s >= MIN_FORECAST_SPAN_S);
    assert!(
        d.ppm_uncertainty >= 2.0 * 50e-6 / 1200.0 * 1e6 - 1e-9,
        "the floor: two bounds over the span: {d:?}"
    );
    assert_eq!(d.forecast(0.1), Forecast::Never, "{d:?}");
    assert_eq!(d.forecast(20.0), Forecast::Never, "{d:?}");
}

#[test]
fn a_real_drift_is_forecast_once_the_history_is_long_enough() {
    // 20 ppm (an unsynchronised quartz clock), 50 µs bounds: clear within minutes, but forecast
    // only from ten minutes of history on.
    let short = history(20.0, 0.0, 10, 30, 50e-6).fit().unwrap();
    assert!(short.ppm.abs() > 2.0 * short.ppm_uncertainty, "{short:?}");
    assert_eq!(short.forecast(0.1), Forecast::Never, "{short:?}");
    let long = history(20.0, 0.0, 21, 30, 50e-6).fit().unwrap();
    match long.forecast(0.1) {
        // From 12 ms at 20 µs/s: (0.1 - 0.012) / 20e-6 = 4400 s.
        Forecast::At(when) => {
            let secs = (when - long.at).num_seconds();
            assert!((secs - 4_400).abs() < 60, "{secs}");
        }
        other => panic!("{other:?}"),
    }
}
