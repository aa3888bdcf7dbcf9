//! The system clock as a `chrono` time without panicking. `chrono::Utc::now` panics when the
//! clock is before 1970 or beyond chrono's range (year 262143): a node whose clock was set
//! absurdly wrong is exactly what anchorwatch must report, not die on. The binaries read the
//! clock with `SystemTime::now()` and convert here.

use chrono::{DateTime, Utc};
use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as a chrono time, saturated to chrono's range.
pub fn from_system(t: SystemTime) -> DateTime<Utc> {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos() as i64,
        ),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            // Before the epoch: -secs - nanos, as whole seconds and a non-negative fraction.
            match d.subsec_nanos() {
                0 => (secs.saturating_neg(), 0),
                n => (
                    secs.saturating_neg().saturating_sub(1),
                    1_000_000_000 - n as i64,
                ),
            }
        }
    };
    DateTime::from_timestamp(secs, nanos as u32).unwrap_or(if secs < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ordinary_times_convert_exactly() {
        let t = UNIX_EPOCH + Duration::new(1_796_256_000, 123_456_789);
        let c = from_system(t);
        assert_eq!(c.timestamp(), 1_796_256_000);
        assert_eq!(c.timestamp_subsec_nanos(), 123_456_789);
        let before = UNIX_EPOCH - Duration::new(10, 250_000_000);
        assert_eq!(
            from_system(before),
            DateTime::from_timestamp(-11, 750_000_000).unwrap()
        );
    }

    #[test]
    fn absurd_clocks_saturate_instead_of_panicking() {
        // libfaketime "+99999999999d" puts the clock about 273 million years ahead.
        let far = UNIX_EPOCH + Duration::from_secs(99_999_999_999 * 86_400);
        assert_eq!(from_system(far), DateTime::<Utc>::MAX_UTC);
        let long_ago = UNIX_EPOCH - Duration::from_secs(99_999_999_999 * 86_400);
        assert_eq!(from_system(long_ago), DateTime::<Utc>::MIN_UTC);
    }
}
