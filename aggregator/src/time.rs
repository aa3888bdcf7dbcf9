//! Conversions between the time types at the aggregator's edges and `chrono::DateTime<Utc>`.

use chrono::{DateTime, Utc};

/// The system clock now, saturated to chrono's range: `chrono::Utc::now` panics on a clock set
/// before 1970 or absurdly far ahead, and such a clock is what this binary must report on.
pub fn now() -> DateTime<Utc> {
    anchorwatch_clock::wall::from_system(std::time::SystemTime::now())
}

/// A protobuf `Timestamp` as a chrono time; `None` when out of range.
pub fn from_proto(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// A chrono time as a protobuf `Timestamp`.
pub fn to_proto(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A Kubernetes `Time` (a `jiff` timestamp in k8s-openapi ≥ 0.27) as a chrono time.
pub fn from_k8s(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

/// A Kubernetes `MicroTime` (an Event's `eventTime`) as a chrono time.
pub fn from_k8s_micro(
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime,
) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

/// A Go duration (`time.ParseDuration`: `20s`, `1m30s`, `24h0m0s`, `1.5h`, `300ms`) as a chrono
/// duration; `None` when it is not one.
pub fn from_go_duration(s: &str) -> Option<chrono::TimeDelta> {
    let s = s.trim();
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(chrono::TimeDelta::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += value * scale;
        rest = &rest[unit_end..];
    }
    if !nanos.is_finite() || nanos > i64::MAX as f64 {
        return None;
    }
    let d = chrono::TimeDelta::nanoseconds(nanos as i64);
    Some(if neg { -d } else { d })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn go_durations_parse_as_go_writes_them() {
        for (text, want) in [
            ("20s", TimeDelta::seconds(20)),
            ("24h0m0s", TimeDelta::hours(24)),
            ("1m30s", TimeDelta::seconds(90)),
            ("1.5h", TimeDelta::minutes(90)),
            ("300ms", TimeDelta::milliseconds(300)),
            ("0", TimeDelta::zero()),
            ("-5s", TimeDelta::seconds(-5)),
            ("2µs", TimeDelta::microseconds(2)),
        ] {
            assert_eq!(from_go_duration(text), Some(want), "{text}");
        }
        for bad in ["", "20", "s", "20x", "1h 30m", "--5s", "9999999999999h"] {
            assert_eq!(from_go_duration(bad), None, "{bad}");
        }
    }
}
