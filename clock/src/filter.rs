//! A burst of exchanges reduced to one sample: the one with the lowest delay, whose bound is the
//! tightest and least affected by queueing (the RFC 5905 clock filter's choice).

use crate::exchange::Sample;

/// The lowest-delay sample of a burst; `None` when no exchange succeeded.
pub fn best(samples: &[Sample]) -> Option<Sample> {
    samples
        .iter()
        .copied()
        .filter(|s| s.delay_s.is_finite() && s.offset_s.is_finite())
        .min_by(|a, b| a.delay_s.total_cmp(&b.delay_s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn s(offset_s: f64, delay_s: f64) -> Sample {
        Sample {
            at: Utc::now(),
            offset_s,
            delay_s,
            bound_s: delay_s / 2.0,
            root_distance_s: 0.0,
            stratum: 2,
        }
    }

    #[test]
    fn the_lowest_delay_sample_wins() {
        let burst = [s(0.5, 0.9), s(0.01, 0.002), s(-0.3, 0.6), s(f64::NAN, 0.0)];
        assert_eq!(best(&burst), Some(burst[1]));
        assert_eq!(best(&[]), None);
    }
}
