//! The NTP packet header (48 bytes; no extension fields, no MAC) and NTP timestamps.

use chrono::{DateTime, TimeDelta, Utc};

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch.
const UNIX_OFFSET: i64 = 2_208_988_800;
/// Seconds in one NTP era (2^32).
const ERA: i64 = 1 << 32;

/// A 64-bit NTP timestamp: seconds since 1900 (mod 2^32) and a binary fraction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// The all-zero timestamp ("unknown" on the wire).
    pub const ZERO: NtpTimestamp = NtpTimestamp(0);

    /// A time as an NTP timestamp (era folded away, as on the wire).
    pub fn from_time(t: DateTime<Utc>) -> Self {
        let secs = (t.timestamp() + UNIX_OFFSET).rem_euclid(ERA) as u64;
        let frac = ((t.timestamp_subsec_nanos() as u64) << 32) / 1_000_000_000;
        NtpTimestamp((secs << 32) | frac)
    }

    /// The time this timestamp stands for, in the era RFC 4330 section 3 prescribes: seconds with
    /// the high bit set are 1968–2036 (era 0), without it 2036–2104 (era 1).
    pub fn to_time(self) -> DateTime<Utc> {
        let secs = (self.0 >> 32) as i64;
        let era = if secs & 0x8000_0000 != 0 { 0 } else { ERA };
        let nanos = ((self.0 & 0xffff_ffff) * 1_000_000_000) >> 32;
        DateTime::<Utc>::UNIX_EPOCH
            + TimeDelta::seconds(secs + era - UNIX_OFFSET)
            + TimeDelta::nanoseconds(nanos as i64)
    }

    /// Whether it is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// Association modes used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 3: a client request.
    Client,
    /// 4: a server reply.
    Server,
    /// Anything else (symmetric, broadcast, control, private).
    Other(u8),
}

impl Mode {
    fn from_bits(b: u8) -> Self {
        match b {
            3 => Mode::Client,
            4 => Mode::Server,
            o => Mode::Other(o),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Mode::Client => 3,
            Mode::Server => 4,
            Mode::Other(o) => o & 7,
        }
    }
}

/// The packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Leap indicator: 0 none, 1/2 a leap second pending, 3 the server's clock is unsynchronised.
    pub leap: u8,
    /// Version (3 or 4).
    pub version: u8,
    /// Mode.
    pub mode: Mode,
    /// Stratum: 0 a kiss-o'-death, 1 primary, 2–15 secondary, 16 unsynchronised.
    pub stratum: u8,
    /// Poll exponent.
    pub poll: i8,
    /// Precision exponent (log2 seconds).
    pub precision: i8,
    /// Round-trip delay to the primary reference, NTP short format (16.16 seconds).
    pub root_delay: u32,
    /// Dispersion to the primary reference, NTP short format.
    pub root_dispersion: u32,
    /// Reference id; for stratum 0, the ASCII kiss code.
    pub reference_id: [u8; 4],
    /// When the server's clock was last set.
    pub reference: NtpTimestamp,
    /// Origin: the client's transmit time, echoed (t1).
    pub origin: NtpTimestamp,
    /// When the server received the request (t2).
    pub receive: NtpTimestamp,
    /// When the server sent the reply (t3), or the client its request.
    pub transmit: NtpTimestamp,
}

/// Why bytes are not an NTP packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer than 48 bytes.
    #[error("{0} bytes is too short for an NTP packet (48)")]
    Short(usize),
}

/// The size of the header.
pub const LEN: usize = 48;

impl Packet {
    /// A client request sent at `transmit` (SNTP: everything else zero but version and mode).
    pub fn request(transmit: NtpTimestamp) -> Self {
        Packet {
            leap: 0,
            version: 4,
            mode: Mode::Client,
            stratum: 0,
            poll: 0,
            precision: 0,
            root_delay: 0,
            root_dispersion: 0,
            reference_id: [0; 4],
            reference: NtpTimestamp::ZERO,
            origin: NtpTimestamp::ZERO,
            receive: NtpTimestamp::ZERO,
            transmit,
        }
    }

    /// Reads a packet; extension fields and MACs after the header are ignored.
    pub fn decode(b: &[u8]) -> Result<Self, PacketError> {
        if b.len() < LEN {
            return Err(PacketError::Short(b.len()));
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let ts_at = |i: usize| NtpTimestamp(((u32_at(i) as u64) << 32) | u32_at(i + 4) as u64);
        Ok(Packet {
            leap: b[0] >> 6,
            version: (b[0] >> 3) & 7,
            mode: Mode::from_bits(b[0] & 7),
            stratum: b[1],
            poll: b[2] as i8,
            precision: b[3] as i8,
            root_delay: u32_at(4),
            root_dispersion: u32_at(8),
            reference_id: [b[12], b[13], b[14], b[15]],
            reference: ts_at(16),
            origin: ts_at(24),
            receive: ts_at(32),
            transmit: ts_at(40),
        })
    }

    /// The packet's 48 bytes.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (self.leap & 3) << 6 | (self.version & 7) << 3 | self.mode.bits();
        b[1] = self.stratum;
        b[2] = self.poll as u8;
        b[3] = self.precision as u8;
        b[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id);
        for (i, ts) in [self.reference, self.origin, self.receive, self.transmit]
            .into_iter()
            .enumerate()
        {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&ts.0.to_be_bytes());
        }
        b
    }

    /// The server's distance to the primary reference, seconds (root delay / 2 + root
    /// dispersion): how far its own clock may be from true time.
    pub fn root_distance_s(&self) -> f64 {
        short_s(self.root_delay) / 2.0 + short_s(self.root_dispersion)
    }

    /// The kiss code of a stratum-0 reply, e.g. `RATE`, `DENY`.
    pub fn kiss_code(&self) -> Option<String> {
        (self.stratum == 0).then(|| {
            self.reference_id
                .iter()
                .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
                .collect()
        })
    }
}

/// NTP short format (16.16) in seconds.
pub fn short_s(v: u32) -> f64 {
    v as f64 / 65_536.0
}

/// Seconds in NTP short format, saturating.
pub fn to_short(s: f64) -> u32 {
    (s.max(0.0) * 65_536.0).min(u32::MAX as f64) as u32
}

#[cfg(test)]
mod tests;
