//! Node clocks as the aggregator keeps them (DESIGN section 4): each node's latest measurement,
//! its offset to the reference (the NTP servers when agents measure them, else the aggregator's
//! clock) with the error bound, a drift history, and the levels and forecasts of the clock
//! report. Pure: readings arrive converted from the wire, `now` is passed in.

use anchorwatch_clock::drift::{Drift, Forecast, History, Point};
use chrono::{DateTime, TimeDelta, Utc};

/// One offset a burst measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Offset {
    /// Node clock minus the server's, seconds; `None` when no exchange succeeded.
    pub offset_s: Option<f64>,
    /// Error bound, seconds.
    pub bound_s: f64,
    /// Why there is no offset, or why replies were rejected.
    pub error: String,
}

/// A burst against one NTP server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NtpReading {
    /// The server as the agent was configured.
    pub server: String,
    /// The offset.
    pub offset: Offset,
    /// The server's own distance to true time, seconds (added to the bound).
    pub root_distance_s: f64,
}

/// The kernel's view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kernel {
    /// Synchronised per the kernel.
    pub synchronised: bool,
    /// Maximum error, seconds.
    pub max_error_s: f64,
    /// Estimated error, seconds.
    pub est_error_s: f64,
    /// Frequency adjustment, ppm.
    pub frequency_ppm: f64,
    /// Why it could not be read.
    pub error: String,
}

/// One measurement an agent reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// When it arrived (aggregator clock).
    pub received_at: DateTime<Utc>,
    /// Against the aggregator.
    pub aggregator: Offset,
    /// Against each NTP server.
    pub ntp: Vec<NtpReading>,
    /// The kernel.
    pub kernel: Kernel,
}

/// The offset a reading gives against its reference.
#[derive(Clone, Debug, PartialEq)]
pub struct RefOffset {
    /// `ntp:<server>` or `aggregator`.
    pub reference: String,
    /// Node clock minus the reference, seconds.
    pub offset_s: f64,
    /// Error bound, seconds (for NTP, the server's root distance included).
    pub bound_s: f64,
}

impl Reading {
    /// The best offset to true time the NTP servers give (tightest bound), else the offset to the
    /// aggregator; `None` when nothing was measured.
    pub fn reference_offset(&self) -> Option<RefOffset> {
        let ntp = self
            .ntp
            .iter()
            .filter_map(|n| {
                n.offset.offset_s.map(|o| RefOffset {
                    reference: format!("ntp:{}", n.server),
                    offset_s: o,
                    bound_s: n.offset.bound_s + n.root_distance_s,
                })
            })
            .min_by(|a, b| a.bound_s.total_cmp(&b.bound_s));
        ntp.or_else(|| {
            self.aggregator.offset_s.map(|o| RefOffset {
                reference: "aggregator".into(),
                offset_s: o,
                bound_s: self.aggregator.bound_s,
            })
        })
    }

    /// Why the reading gives no offset.
    pub fn problem(&self) -> String {
        let mut why = vec![];
        if !self.aggregator.error.is_empty() {
            why.push(format!("aggregator: {}", self.aggregator.error));
        }
        for n in &self.ntp {
            if n.offset.offset_s.is_none() {
                why.push(format!("ntp {}: {}", n.server, n.offset.error));
            }
        }
        why.join("; ")
    }
}

/// How the report judges clocks.
#[derive(Clone, Debug)]
pub struct ClockSettings {
    /// Above this (beyond the bound) a node is `warn`: a level and a metric, never a verdict.
    pub warn_s: f64,
    /// Above this a node is `critical`: identity's clock-skew allowance.
    pub critical_s: f64,
    /// A measurement older than this is stale: the node is not judged.
    pub fresh_for: TimeDelta,
    /// Drift history window.
    pub window: TimeDelta,
    /// Drift history points, at most.
    pub max_points: usize,
}

impl Default for ClockSettings {
    fn default() -> Self {
        ClockSettings {
            warn_s: 0.1,
            critical_s: 20.0,
            fresh_for: TimeDelta::minutes(5),
            window: TimeDelta::hours(6),
            max_points: 720,
        }
    }
}

/// A node's clock as known.
#[derive(Clone, Debug)]
pub struct NodeClockState {
    /// The latest reading.
    pub last: Option<Reading>,
    /// Offsets to the reference over time (restarted when the reference changes).
    pub history: History,
    /// The reference of the history.
    reference: String,
}

impl NodeClockState {
    /// Nothing measured yet.
    pub fn new(s: &ClockSettings) -> Self {
        NodeClockState {
            last: None,
            history: History::new(s.window, s.max_points),
            reference: String::new(),
        }
    }

    /// A new reading; its offset joins the history. A step (the offset moved by more than a
    /// second and far more than both bounds since the last point: the clock was set, or the
    /// agent restarted on a fixed node) starts the history again, so no drift is fitted across it.
    pub fn apply(&mut self, r: Reading, s: &ClockSettings) {
        if let Some(o) = r.reference_offset() {
            let stepped = self.history.last().is_some_and(|p| {
                let jump = (o.offset_s - p.offset_s).abs();
                jump > 1.0 && jump > 100.0 * (o.bound_s + p.bound_s)
            });
            if o.reference != self.reference || stepped {
                self.history = History::new(s.window, s.max_points);
                self.reference = o.reference.clone();
            }
            self.history.push(Point {
                at: r.received_at,
                offset_s: o.offset_s,
                bound_s: o.bound_s,
            });
        }
        self.last = Some(r);
    }

    /// The current offset to the reference, when fresh at `now`.
    pub fn current(&self, now: DateTime<Utc>, s: &ClockSettings) -> Option<RefOffset> {
        let r = self.last.as_ref()?;
        if now - r.received_at > s.fresh_for {
            return None;
        }
        r.reference_offset()
    }

    /// The fitted drift.
    pub fn drift(&self) -> Option<Drift> {
        self.history.fit()
    }

    /// The newest offset measured, fresh or not, and when it arrived.
    pub fn last_offset(&self) -> Option<(f64, DateTime<Utc>)> {
        self.history.last().map(|p| (p.offset_s, p.at))
    }
}

/// A node's clock level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Within the warn threshold.
    Ok,
    /// Beyond warn (after taking the bound off).
    Warn,
    /// Beyond the allowance (after taking the bound off).
    Critical,
    /// Measured once, but not lately (or the agent stopped reporting).
    Stale,
    /// Never measured.
    Unmeasured,
}

impl Level {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Critical => "critical",
            Level::Stale => "stale",
            Level::Unmeasured => "unmeasured",
        }
    }
}

/// The level of an offset: how far it is certainly off (|offset| − bound) against the thresholds.
pub fn level(offset_s: f64, bound_s: f64, s: &ClockSettings) -> Level {
    let certain = offset_s.abs() - bound_s;
    if certain > s.critical_s {
        Level::Critical
    } else if certain > s.warn_s {
        Level::Warn
    } else {
        Level::Ok
    }
}

/// One row of the clock report.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Node.
    pub node: String,
    /// Level.
    pub level: Level,
    /// Offset to the reference, when fresh.
    pub offset: Option<RefOffset>,
    /// Offset to identity's node and its bound, when both are known.
    pub to_identity: Option<(f64, f64)>,
    /// Kernel view of the latest reading.
    pub kernel: Option<Kernel>,
    /// Drift.
    pub drift: Option<Drift>,
    /// Forecasts for the warn and critical thresholds.
    pub warn_forecast: Option<Forecast>,
    /// Forecast for the critical threshold.
    pub critical_forecast: Option<Forecast>,
    /// When the latest reading arrived.
    pub last_sample_at: Option<DateTime<Utc>>,
    /// Why there is no offset.
    pub problem: String,
    /// Recent offsets, oldest first.
    pub history: Vec<Point>,
}

/// The rows of the clock report for `nodes` (name, state, whether the node's agent is stale).
pub fn rows<'a>(
    nodes: impl IntoIterator<Item = (&'a str, &'a NodeClockState, bool)>,
    identity_node: Option<&str>,
    history_points: usize,
    now: DateTime<Utc>,
    s: &ClockSettings,
) -> Vec<Row> {
    let nodes: Vec<_> = nodes.into_iter().collect();
    let identity = identity_node.and_then(|id| {
        nodes
            .iter()
            .find(|(n, _, stale)| *n == id && !stale)
            .and_then(|(_, c, _)| c.current(now, s))
    });
    nodes
        .iter()
        .map(|(name, c, agent_stale)| {
            let current = (!agent_stale).then(|| c.current(now, s)).flatten();
            let drift = c.drift();
            let to_identity = match (&current, &identity) {
                (Some(o), Some(i)) if o.reference == i.reference => {
                    Some((o.offset_s - i.offset_s, o.bound_s + i.bound_s))
                }
                _ => None,
            };
            // The worse of the offset to the reference and the offset to identity's node: a
            // pair of nodes can be beyond the allowance apart while each is within it of the
            // reference, and that pair breaks fresh leaves too.
            let to_reference = current.as_ref().map(|o| level(o.offset_s, o.bound_s, s));
            let to_identity_level = to_identity.map(|(d, b)| level(d, b, s));
            let level = match (to_reference, &c.last) {
                (Some(l), _) => l.max(to_identity_level.unwrap_or(Level::Ok)),
                (None, Some(_)) => Level::Stale,
                (None, None) => Level::Unmeasured,
            };
            let last = c.last_offset();
            let problem = match (&current, &c.last) {
                (Some(_), _)
                    if to_identity_level > to_reference
                        && let (Some((d, _)), Some(id)) = (to_identity, identity_node) =>
                {
                    format!("{d:+.3} s from linkerd-identity's node {id}: identity's fresh leaves are misdated here")
                }
                // NTP servers configured but none answered: measured against the aggregator.
                (Some(o), Some(r)) if o.reference == "aggregator" && !r.ntp.is_empty() => {
                    format!(
                        "no NTP server answered ({}); offset to the aggregator instead",
                        r.problem()
                    )
                }
                (Some(_), _) => String::new(),
                (None, None) => "no clock measurement received from this node's agent".into(),
                (None, Some(r)) if *agent_stale => format!(
                    "the agent stopped reporting{}",
                    last.map(|(o, at)| format!("; last measured {o:+.3} s at {}", at.to_rfc3339()))
                        .unwrap_or_else(|| format!("; its last clock message arrived at {}", r.received_at.to_rfc3339()))
                ),
                (None, Some(r)) if now - r.received_at > s.fresh_for => format!(
                    "no clock measurement since {}{}",
                    r.received_at.to_rfc3339(),
                    last.map(|(o, _)| format!("; last measured {o:+.3} s")).unwrap_or_default()
                ),
                (None, Some(r)) => r.problem(),
            };
            let history: Vec<Point> = c.history.points().copied().collect();
            let skip = history.len().saturating_sub(history_points);
            Row {
                node: name.to_string(),
                level,
                to_identity,
                kernel: c.last.as_ref().map(|r| r.kernel.clone()),
                warn_forecast: current.as_ref().and(drift).map(|d| d.forecast(s.warn_s)),
                critical_forecast: current
                    .as_ref()
                    .and(drift)
                    .map(|d| d.forecast(s.critical_s)),
                drift,
                offset: current,
                last_sample_at: c.last.as_ref().map(|r| r.received_at),
                problem,
                history: history.into_iter().skip(skip).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
