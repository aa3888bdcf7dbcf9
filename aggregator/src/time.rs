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
