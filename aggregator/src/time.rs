//! Conversions between the time types at the aggregator's edges and `chrono::DateTime<Utc>`.

use chrono::{DateTime, Utc};

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
