//! Conversions between the time types at the agent's edges and `chrono::DateTime<Utc>`.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The system clock now, saturated to chrono's range: `chrono::Utc::now` panics on a clock set
/// before 1970 or absurdly far ahead, and such a clock is what this binary must report on.
pub fn now() -> DateTime<Utc> {
    anchorwatch_clock::wall::from_system(std::time::SystemTime::now())
}

/// A Kubernetes `Time` (a `jiff` timestamp in k8s-openapi ≥ 0.27) as a chrono time.
pub fn from_k8s(t: &Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

/// A chrono time as a protobuf `Timestamp`.
pub fn to_proto(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}
