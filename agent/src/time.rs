//! Conversions between the time types at the agent's edges and `chrono::DateTime<Utc>`.

use chrono::{DateTime, Utc};

/// The system clock now, saturated to chrono's range: `chrono::Utc::now` panics on a clock set
/// before 1970 or absurdly far ahead, and such a clock is what this binary must report on.
pub fn now() -> DateTime<Utc> {
    anchorwatch_clock::wall::from_system(std::time::SystemTime::now())
}

/// A Kubernetes `Time` as a chrono time (the one conversion pod specs need, shared with them).
pub use anchorwatch_podspec::from_k8s;

/// A chrono time as a protobuf `Timestamp`.
pub fn to_proto(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}
