//! The RFC 3339 timestamp that starts every CRI log line.

use std::fmt;

/// When the container runtime wrote a CRI log line: seconds and nanoseconds since the Unix epoch,
/// UTC. Callers convert to their own time type at their edge (e.g.
/// `chrono::DateTime::from_timestamp(t.unix_seconds(), t.subsec_nanos())`).
///
/// This is the node's clock: on a skewed node it is off by that node's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CriTimestamp {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    secs: i64,
    /// Nanoseconds within the second, `< 1_000_000_000`.
    nanos: u32,
}

impl CriTimestamp {
    /// The instant `secs` + `nanos` after the epoch, or `None` when `nanos` is not below one
    /// second.
    pub fn from_unix(secs: i64, nanos: u32) -> Option<Self> {
        (nanos < 1_000_000_000).then_some(CriTimestamp { secs, nanos })
    }

    /// Parses an RFC 3339 timestamp as container runtimes write it (Go's `RFC3339Nano`: up to
    /// nine fraction digits, `Z` or a `±HH:MM` offset), e.g. `2025-10-23T15:03:43.123456789Z`.
    pub fn parse(text: &[u8]) -> Option<Self> {
        let mut at = Cursor { text, pos: 0 };
        let year = at.digits(4)?;
        at.expect(b'-')?;
        let month = at.digits(2)?;
        at.expect(b'-')?;
        let day = at.digits(2)?;
        at.expect_any(b"Tt")?;
        let hour = at.digits(2)?;
        at.expect(b':')?;
        let minute = at.digits(2)?;
        at.expect(b':')?;
        let second = at.digits(2)?;
        let mut nanos = 0;
        if at.peek() == Some(b'.') {
            at.pos += 1;
            let start = at.pos;
            while at.peek().is_some_and(|b| b.is_ascii_digit()) {
                at.pos += 1;
            }
            let count = at.pos - start;
            if count == 0 || count > 9 {
                return None;
            }
            at.pos = start;
            nanos = at.digits(count)? * 10u32.pow(9 - u32::try_from(count).ok()?);
        }
        let offset_secs: i64 = match at.next()? {
            b'Z' | b'z' => 0,
            sign @ (b'+' | b'-') => {
                let hours = at.digits(2)?;
                at.expect(b':')?;
                let minutes = at.digits(2)?;
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let offset = i64::from(hours * 3600 + minutes * 60);
                if sign == b'+' { offset } else { -offset }
            }
            _ => return None,
        };
        if at.pos != text.len()
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            // 60 is a leap second; it counts as the first second of the next minute.
            || second > 60
        {
            return None;
        }
        let days = days_from_civil(i64::from(year), month, day);
        let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
        Some(CriTimestamp { secs, nanos })
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.secs
    }

    /// Nanoseconds past [`CriTimestamp::unix_seconds`].
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }
}

/// RFC 3339 in UTC with nine fraction digits, e.g. `2025-10-23T15:03:43.123456789Z`.
impl fmt::Display for CriTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let of_day = self.secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60,
            self.nanos
        )
    }
}

/// A read position in a timestamp.
struct Cursor<'a> {
    /// The whole timestamp.
    text: &'a [u8],
    /// Index of the next unread byte.
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn expect(&mut self, wanted: u8) -> Option<()> {
        (self.next()? == wanted).then_some(())
    }

    fn expect_any(&mut self, wanted: &[u8]) -> Option<()> {
        wanted.contains(&self.next()?).then_some(())
    }

    /// Exactly `count` (≤ 9) ASCII digits as a number.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count {
            let byte = self.next()?;
            if !byte.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(byte - b'0');
        }
        Some(value)
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`] (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
