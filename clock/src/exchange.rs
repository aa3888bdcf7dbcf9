//! One on-wire exchange (RFC 5905 section 8): the client sends at t1 (its clock), the server
//! receives at t2 and replies at t3 (its clock), the client receives at t4. Offset
//! θ = ((t2 − t1) + (t3 − t4)) / 2 and delay δ = (t4 − t1) − (t3 − t2); whatever the path's
//! asymmetry, the server's clock at the midpoint lies within θ ± δ/2 of the client's.

use crate::packet::{Mode, NtpTimestamp, Packet};
use chrono::{DateTime, Utc};

/// One accepted measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When it was taken (t4, client clock).
    pub at: DateTime<Utc>,
    /// Client clock minus server clock, seconds (−θ: positive when the client is ahead).
    pub offset_s: f64,
    /// Round-trip delay δ, seconds, the server's processing time excluded.
    pub delay_s: f64,
    /// Half the delay plus both clocks' reading precision: the truth lies within
    /// `offset_s ± bound_s` of the server's clock.
    pub bound_s: f64,
    /// The server's own distance to true time (root delay / 2 + root dispersion), seconds; zero
    /// for the aggregator, which is a reference by definition.
    pub root_distance_s: f64,
    /// Server stratum.
    pub stratum: u8,
}

impl Sample {
    /// The bound against true time, when the server is an NTP server: its root distance added.
    pub fn bound_to_true_time_s(&self) -> f64 {
        self.bound_s + self.root_distance_s
    }
}

/// Why a reply is not used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReplyError {
    /// Not a server-mode reply.
    #[error("not a server reply (mode {0:?})")]
    WrongMode(Mode),
    /// An unknown NTP version.
    #[error("unsupported NTP version {0}")]
    BadVersion(u8),
    /// Stratum 0: the server tells the client to go away or slow down.
    #[error("kiss-o'-death {0}")]
    KissOfDeath(String),
    /// Leap indicator 3 or stratum 16: the server's own clock is not synchronised.
    #[error("the server's clock is unsynchronised (leap {leap}, stratum {stratum})")]
    Unsynchronised {
        /// Leap indicator.
        leap: u8,
        /// Stratum.
        stratum: u8,
    },
    /// The origin timestamp does not echo our request: a stale, duplicated or forged reply.
    #[error("the reply does not answer our request (origin timestamp mismatch)")]
    WrongOrigin,
    /// A zero receive or transmit timestamp.
    #[error("the reply has a zero {0} timestamp")]
    ZeroTimestamp(&'static str),
    /// The server says it sent before it received.
    #[error("the server's transmit time precedes its receive time by {0:.6} s")]
    ServerTimeReversed(f64),
    /// Negative round trip: a clock stepped during the exchange.
    #[error("negative round-trip delay {0:.6} s: a clock stepped during the exchange")]
    NegativeDelay(f64),
}

/// Reading precision of a clock, seconds, from its NTP precision exponent (at least 1 µs).
pub fn precision_s(exponent: i8) -> f64 {
    2f64.powi(exponent as i32).max(1e-6)
}

/// Checks `reply` against the request the client sent (`sent`, whose transmit field the reply
/// must echo as origin), and computes the sample from t1 (send) and t4 (receive), both on the
/// client's clock. `server_is_reference`: the aggregator's own exchange (root distance ignored).
pub fn check_reply(
    sent: &Packet,
    reply: &Packet,
    t1: DateTime<Utc>,
    t4: DateTime<Utc>,
    client_precision_s: f64,
    server_is_reference: bool,
) -> Result<Sample, ReplyError> {
    if reply.mode != Mode::Server {
        return Err(ReplyError::WrongMode(reply.mode));
    }
    if !(1..=4).contains(&reply.version) {
        return Err(ReplyError::BadVersion(reply.version));
    }
    if let Some(code) = reply.kiss_code() {
        return Err(ReplyError::KissOfDeath(code));
    }
    if reply.leap == 3 || reply.stratum >= 16 {
        return Err(ReplyError::Unsynchronised {
            leap: reply.leap,
            stratum: reply.stratum,
        });
    }
    if reply.origin != sent.transmit {
        return Err(ReplyError::WrongOrigin);
    }
    if reply.receive.is_zero() {
        return Err(ReplyError::ZeroTimestamp("receive"));
    }
    if reply.transmit.is_zero() {
        return Err(ReplyError::ZeroTimestamp("transmit"));
    }
    let t2 = reply.receive.to_time();
    let t3 = reply.transmit.to_time();
    let secs = |d: chrono::TimeDelta| d.as_seconds_f64();
    let processing = secs(t3 - t2);
    if processing < 0.0 {
        return Err(ReplyError::ServerTimeReversed(-processing));
    }
    let delay = secs(t4 - t1) - processing;
    let precision = client_precision_s + precision_s(reply.precision);
    if delay < -precision {
        return Err(ReplyError::NegativeDelay(delay));
    }
    let delay = delay.max(0.0);
    let theta = (secs(t2 - t1) + secs(t3 - t4)) / 2.0;
    Ok(Sample {
        at: t4,
        offset_s: -theta,
        delay_s: delay,
        bound_s: delay / 2.0 + precision,
        root_distance_s: if server_is_reference {
            0.0
        } else {
            reply.root_distance_s()
        },
        stratum: reply.stratum,
    })
}

/// The reply a server sends to `request`, received at `t2` and sent at `t3` (its clock).
pub fn reply_to(
    request: &Packet,
    t2: DateTime<Utc>,
    t3: DateTime<Utc>,
    stratum: u8,
    reference_id: [u8; 4],
    precision: i8,
) -> Packet {
    Packet {
        leap: if stratum >= 16 { 3 } else { 0 },
        version: request.version.clamp(3, 4),
        mode: Mode::Server,
        stratum,
        poll: request.poll,
        precision,
        root_delay: 0,
        root_dispersion: 0,
        reference_id,
        reference: NtpTimestamp::from_time(t2),
        origin: request.transmit,
        receive: NtpTimestamp::from_time(t2),
        transmit: NtpTimestamp::from_time(t3),
    }
}

#[cfg(test)]
mod tests;
