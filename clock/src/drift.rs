//! Drift: a bounded history of a node's offsets, a straight-line fit giving the drift rate (ppm)
//! with its uncertainty, and forecasts of when the offset crosses a threshold.

use chrono::{DateTime, TimeDelta, Utc};
use std::collections::VecDeque;

/// One offset measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// When (reference time).
    pub at: DateTime<Utc>,
    /// Offset, seconds.
    pub offset_s: f64,
    /// Error bound, seconds.
    pub bound_s: f64,
}

/// Offsets over a sliding window, oldest first.
#[derive(Clone, Debug)]
pub struct History {
    window: TimeDelta,
    max_points: usize,
    points: VecDeque<Point>,
}

/// A fitted drift.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drift {
    /// Rate, parts per million (µs per s): positive when the offset grows.
    pub ppm: f64,
    /// One standard error of the rate, ppm.
    pub ppm_uncertainty: f64,
    /// The fitted offset at the newest point, seconds.
    pub offset_now_s: f64,
    /// When the newest point was taken.
    pub at: DateTime<Utc>,
    /// Points used.
    pub points: usize,
    /// Time the points span, seconds.
    pub span_s: f64,
}

/// The shortest history a forecast is made from. Over a few minutes, path noise that the bounds
/// allow (tens of µs on a LAN) looks like a drift of a fraction of a ppm, and a forecast of a
/// threshold crossing days away from it would be noise extrapolated.
pub const MIN_FORECAST_SPAN_S: f64 = 600.0;

/// When a threshold will be crossed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Forecast {
    /// |offset| is already beyond it.
    Beyond,
    /// At this time, if the drift holds.
    At(DateTime<Utc>),
    /// Not while the drift holds (moving away from it, or no drift distinguishable from zero),
    /// or too little history to say ([`MIN_FORECAST_SPAN_S`]).
    Never,
}

impl History {
    /// An empty history keeping `window` of time and at most `max_points` points.
    pub fn new(window: TimeDelta, max_points: usize) -> Self {
        History {
            window,
            max_points: max_points.max(2),
            points: VecDeque::new(),
        }
    }

    /// Adds a point; points older than the window (from this one) or beyond the count go. A
    /// point older than the newest is ignored (clocks are measured in order).
    pub fn push(&mut self, p: Point) {
        if !(p.offset_s.is_finite() && p.bound_s.is_finite()) {
            return;
        }
        if self.points.back().is_some_and(|last| p.at < last.at) {
            return;
        }
        self.points.push_back(p);
        while self
            .points
            .front()
            .is_some_and(|f| p.at - f.at > self.window)
            || self.points.len() > self.max_points
        {
            self.points.pop_front();
        }
    }

    /// The points, oldest first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    /// The newest point.
    pub fn last(&self) -> Option<&Point> {
        self.points.back()
    }

    /// Weighted least-squares line through the points (weights 1/bound², a bound taken as one
    /// standard error); the rate's uncertainty grows when the points scatter more than their
    /// bounds say (a stepped clock). It is never below what the bounds allow at the ends of the
    /// span: the bounds are hard limits, not random errors, so a systematic error (an asymmetric
    /// path) can sit anywhere inside them, and averaging many points does not remove it; two
    /// typical bounds over the span is the floor. `None` with fewer than 3 points or no time
    /// between them.
    pub fn fit(&self) -> Option<Drift> {
        let n = self.points.len();
        if n < 3 {
            return None;
        }
        let t0 = self.points.front()?.at;
        let last = *self.points.back()?;
        let xs: Vec<f64> = self
            .points
            .iter()
            .map(|p| (p.at - t0).as_seconds_f64())
            .collect();
        let span = xs[n - 1] - xs[0];
        if span <= 0.0 {
            return None;
        }
        let ws: Vec<f64> = self
            .points
            .iter()
            .map(|p| 1.0 / p.bound_s.max(1e-6).powi(2))
            .collect();
        let sw: f64 = ws.iter().sum();
        let xm = xs.iter().zip(&ws).map(|(x, w)| x * w).sum::<f64>() / sw;
        let ym = self
            .points
            .iter()
            .zip(&ws)
            .map(|(p, w)| p.offset_s * w)
            .sum::<f64>()
            / sw;
        let sxx: f64 = xs.iter().zip(&ws).map(|(x, w)| w * (x - xm).powi(2)).sum();
        if sxx <= 0.0 {
            return None;
        }
        let sxy: f64 = xs
            .iter()
            .zip(&ws)
            .zip(self.points.iter())
            .map(|((x, w), p)| w * (x - xm) * (p.offset_s - ym))
            .sum();
        let slope = sxy / sxx;
        let intercept = ym - slope * xm;
        let chi2: f64 = xs
            .iter()
            .zip(&ws)
            .zip(self.points.iter())
            .map(|((x, w), p)| w * (p.offset_s - intercept - slope * x).powi(2))
            .sum();
        let scatter = (chi2 / (n as f64 - 2.0)).max(1.0);
        let mut bounds: Vec<f64> = self.points.iter().map(|p| p.bound_s).collect();
        bounds.sort_by(f64::total_cmp);
        let typical_bound = bounds[n / 2];
        let slope_se = (scatter / sxx).sqrt().max(2.0 * typical_bound / span);
        Some(Drift {
            ppm: slope * 1e6,
            ppm_uncertainty: slope_se * 1e6,
            offset_now_s: intercept + slope * xs[n - 1],
            at: last.at,
            points: n,
            span_s: span,
        })
    }
}

impl Drift {
    /// When |offset| reaches `threshold_s`, if the drift holds. A rate within two standard
    /// errors of zero is no trend, and a history shorter than [`MIN_FORECAST_SPAN_S`] forecasts
    /// nothing.
    pub fn forecast(&self, threshold_s: f64) -> Forecast {
        if self.offset_now_s.abs() >= threshold_s {
            return Forecast::Beyond;
        }
        let rate = self.ppm / 1e6;
        if self.span_s < MIN_FORECAST_SPAN_S
            || self.ppm.abs() <= 2.0 * self.ppm_uncertainty
            || rate == 0.0
        {
            return Forecast::Never;
        }
        let target = threshold_s.copysign(rate);
        let secs = (target - self.offset_now_s) / rate;
        if secs <= 0.0 || !secs.is_finite() {
            return Forecast::Never;
        }
        match TimeDelta::try_milliseconds((secs * 1000.0).min(i64::MAX as f64 / 2.0) as i64) {
            Some(d) => self
                .at
                .checked_add_signed(d)
                .map_or(Forecast::Never, Forecast::At),
            None => Forecast::Never,
        }
    }
}

#[cfg(test)]
mod tests;
