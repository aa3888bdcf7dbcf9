//! Conversions between the time types at the agent's edges and `chrono::DateTime<Utc>`.

use chrono::{DateTime, Utc};

/// A Kubernetes `Time` as a chrono time (the one conversion pod specs need, shared with them).
pub use anchorwatch_podspec::from_k8s;

/// A chrono time as a protobuf `Timestamp`.
pub fn to_proto(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}
