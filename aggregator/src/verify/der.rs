//! DER primitives with the acceptance rules and error values of rustls-webpki 0.103
//! (`src/der.rs`, `src/time.rs`) and of the `untrusted` 0.9 reader it is built on.
//!
//! What these functions reject, and the error they reject it with, is what the proxy's verifier
//! rejects: the error value takes part in webpki's ranking of candidate paths, so a merely
//! "equivalent" parser would change verdicts.

use super::{ChainError, DerType};

pub(super) const BOOLEAN: u8 = 0x01;
pub(super) const INTEGER: u8 = 0x02;
pub(super) const BIT_STRING: u8 = 0x03;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const OID: u8 = 0x06;
pub(super) const SEQUENCE: u8 = 0x30;
pub(super) const UTC_TIME: u8 = 0x17;
pub(super) const GENERALIZED_TIME: u8 = 0x18;
pub(super) const CONTEXT_SPECIFIC: u8 = 0x80;
pub(super) const CONSTRUCTED: u8 = 0x20;
pub(super) const CONTEXT_CONSTRUCTED_0: u8 = CONTEXT_SPECIFIC | CONSTRUCTED;
pub(super) const CONTEXT_CONSTRUCTED_1: u8 = CONTEXT_SPECIFIC | CONSTRUCTED | 1;
pub(super) const CONTEXT_CONSTRUCTED_3: u8 = CONTEXT_SPECIFIC | CONSTRUCTED | 3;

/// webpki's `TWO_BYTE_DER_SIZE`: the largest value `expect_tag` accepts is one byte shorter.
pub(super) const TWO_BYTE_DER_SIZE: usize = 0xffff;

/// A cursor over DER bytes, as `untrusted::Reader`.
#[derive(Clone)]
pub(super) struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        Self { input, pos: 0 }
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    pub(super) fn peek(&self, b: u8) -> bool {
        self.input.get(self.pos) == Some(&b)
    }

    pub(super) fn read_byte(&mut self) -> Option<u8> {
        let b = *self.input.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(super) fn read_bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.input.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    pub(super) fn read_bytes_to_end(&mut self) -> &'a [u8] {
        let bytes = self.input.get(self.pos..).unwrap_or_default();
        self.pos = self.input.len();
        bytes
    }

    pub(super) fn skip_to_end(&mut self) {
        self.pos = self.input.len();
    }

    /// Runs `f` and also returns the bytes it consumed (`untrusted::Reader::read_partial`).
    pub(super) fn read_partial<R>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<R, ChainError>,
    ) -> Result<(&'a [u8], R), ChainError> {
        let start = self.pos;
        let r = f(self)?;
        let consumed = self.input.get(start..self.pos).unwrap_or_default();
        Ok((consumed, r))
    }
}

/// `untrusted::Input::read_all`: `f`'s error wins; otherwise unread bytes give `incomplete`.
pub(super) fn read_all<'a, R>(
    input: &'a [u8],
    incomplete: ChainError,
    f: impl FnOnce(&mut Reader<'a>) -> Result<R, ChainError>,
) -> Result<R, ChainError> {
    let mut reader = Reader::new(input);
    let r = f(&mut reader)?;
    if reader.at_end() {
        Ok(r)
    } else {
        Err(incomplete)
    }
}

pub(super) fn read_tag_and_get_value_limited<'a>(
    input: &mut Reader<'a>,
    size_limit: usize,
) -> Result<(u8, &'a [u8]), ChainError> {
    const HIGH_TAG_RANGE_START: u8 = 31;
    let tag = input.read_byte().ok_or(ChainError::BadDer)?;
    if tag & HIGH_TAG_RANGE_START == HIGH_TAG_RANGE_START {
        return Err(ChainError::BadDer);
    }
    let mut byte = || input.read_byte().map(usize::from).ok_or(ChainError::BadDer);
    let length = match byte()? {
        n if n & 0x80 == 0 => n,
        0x81 => {
            let n = byte()?;
            if n < 0x80 {
                return Err(ChainError::BadDer);
            }
            n
        }
        0x82 => {
            let n = (byte()? << 8) | byte()?;
            if n <= 0xff {
                return Err(ChainError::BadDer);
            }
            n
        }
        0x83 => {
            let n = (byte()? << 16) | (byte()? << 8) | byte()?;
            if n <= 0xffff {
                return Err(ChainError::BadDer);
            }
            n
        }
        0x84 => {
            let n = (byte()? << 24) | (byte()? << 16) | (byte()? << 8) | byte()?;
            if n <= 0xff_ffff {
                return Err(ChainError::BadDer);
            }
            n
        }
        _ => return Err(ChainError::BadDer),
    };
    if length >= size_limit {
        return Err(ChainError::BadDer);
    }
    let value = input.read_bytes(length).ok_or(ChainError::BadDer)?;
    Ok((tag, value))
}

pub(super) fn read_tag_and_get_value<'a>(
    input: &mut Reader<'a>,
) -> Result<(u8, &'a [u8]), ChainError> {
    read_tag_and_get_value_limited(input, TWO_BYTE_DER_SIZE)
}

pub(super) fn expect_tag_limited<'a>(
    input: &mut Reader<'a>,
    tag: u8,
    size_limit: usize,
) -> Result<&'a [u8], ChainError> {
    let (actual, value) = read_tag_and_get_value_limited(input, size_limit)?;
    if actual != tag {
        return Err(ChainError::BadDer);
    }
    Ok(value)
}

pub(super) fn expect_tag<'a>(input: &mut Reader<'a>, tag: u8) -> Result<&'a [u8], ChainError> {
    expect_tag_limited(input, tag, TWO_BYTE_DER_SIZE)
}

/// webpki's `der::nested`: a missing or malformed outer value reports `error`, not `BadDer`.
pub(super) fn nested<'a, R>(
    input: &mut Reader<'a>,
    tag: u8,
    error: ChainError,
    decoder: impl FnOnce(&mut Reader<'a>) -> Result<R, ChainError>,
) -> Result<R, ChainError> {
    match expect_tag(input, tag) {
        Ok(value) => read_all(value, error, decoder),
        Err(_) => Err(error),
    }
}

/// webpki's `der::nested_of_mut`.
pub(super) fn nested_of_mut<'a>(
    input: &mut Reader<'a>,
    outer_tag: u8,
    inner_tag: u8,
    error: ChainError,
    allow_empty: bool,
    mut decoder: impl FnMut(&mut Reader<'a>) -> Result<(), ChainError>,
) -> Result<(), ChainError> {
    nested(input, outer_tag, error.clone(), |outer| {
        if allow_empty && outer.at_end() {
            return Ok(());
        }
        loop {
            nested(outer, inner_tag, error.clone(), &mut decoder)?;
            if outer.at_end() {
                break;
            }
        }
        Ok(())
    })
}

pub(super) fn bit_string_with_no_unused_bits<'a>(
    input: &mut Reader<'a>,
) -> Result<&'a [u8], ChainError> {
    nested(
        input,
        BIT_STRING,
        ChainError::TrailingData(DerType::BitString),
        |value| {
            let unused_bits = value.read_byte().ok_or(ChainError::BadDer)?;
            if unused_bits != 0 {
                return Err(ChainError::BadDer);
            }
            Ok(value.read_bytes_to_end())
        },
    )
}

/// An optional BOOLEAN that defaults to false; the explicit encoding of false is accepted.
pub(super) fn read_bool(input: &mut Reader<'_>) -> Result<bool, ChainError> {
    if !input.peek(BOOLEAN) {
        return Ok(false);
    }
    nested(
        input,
        BOOLEAN,
        ChainError::TrailingData(DerType::Bool),
        |value| match value.read_byte() {
            Some(0xff) => Ok(true),
            Some(0x00) => Ok(false),
            _ => Err(ChainError::BadDer),
        },
    )
}

fn nonnegative_integer<'a>(input: &mut Reader<'a>) -> Result<&'a [u8], ChainError> {
    let value = expect_tag(input, INTEGER)?;
    match value.split_first().ok_or(ChainError::BadDer)? {
        (0, rest) => match rest.first() {
            None => Ok(value),
            Some(&second) if second & 0x80 == 0x80 => Ok(rest),
            _ => Err(ChainError::BadDer),
        },
        (first, _) if first & 0x80 == 0 => Ok(value),
        _ => Err(ChainError::BadDer),
    }
}

pub(super) fn read_u8(input: &mut Reader<'_>) -> Result<u8, ChainError> {
    match nonnegative_integer(input)? {
        [b] => Ok(*b),
        _ => Err(ChainError::BadDer),
    }
}

/// A UTCTime or GeneralizedTime, as seconds since the Unix epoch (webpki's `UnixTime::from_der`):
/// `Z` only, no fractions, nothing before 1970.
pub(super) fn read_time(input: &mut Reader<'_>) -> Result<u64, ChainError> {
    fn digit(value: &mut Reader<'_>) -> Result<u64, ChainError> {
        match value.read_byte() {
            Some(b @ b'0'..=b'9') => Ok(u64::from(b - b'0')),
            _ => Err(ChainError::BadDerTime),
        }
    }
    fn two_digits(value: &mut Reader<'_>, min: u64, max: u64) -> Result<u64, ChainError> {
        let v = digit(value)? * 10 + digit(value)?;
        if v < min || v > max {
            return Err(ChainError::BadDerTime);
        }
        Ok(v)
    }

    let is_utc_time = input.peek(UTC_TIME);
    let tag = if is_utc_time {
        UTC_TIME
    } else {
        GENERALIZED_TIME
    };
    nested(
        input,
        tag,
        ChainError::TrailingData(DerType::Time),
        |value| {
            let year = if is_utc_time {
                let lo = two_digits(value, 0, 99)?;
                if lo >= 50 { 1900 + lo } else { 2000 + lo }
            } else {
                let hi = two_digits(value, 0, 99)?;
                hi * 100 + two_digits(value, 0, 99)?
            };
            let month = two_digits(value, 1, 12)?;
            let day = two_digits(value, 1, days_in_month(year, month))?;
            let hours = two_digits(value, 0, 23)?;
            let minutes = two_digits(value, 0, 59)?;
            let seconds = two_digits(value, 0, 59)?;
            if value.read_byte() != Some(b'Z') {
                return Err(ChainError::BadDerTime);
            }
            if year < 1970 {
                return Err(ChainError::BadDerTime);
            }
            let days = days_before_year_ad(year) - DAYS_BEFORE_UNIX_EPOCH_AD
                + days_before_month(year, month)
                + day
                - 1;
            Ok(days * 86_400 + hours * 3_600 + minutes * 60 + seconds)
        },
    )
}

const DAYS_BEFORE_UNIX_EPOCH_AD: u64 = 1969 * 365 + 477;

fn days_before_year_ad(year: u64) -> u64 {
    (year - 1) * 365 + (year - 1) / 4 - (year - 1) / 100 + (year - 1) / 400
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_before_month(year: u64, month: u64) -> u64 {
    (1..month).map(|m| days_in_month(year, m)).sum()
}

/// Where `part` (a sub-slice of `base`) starts and ends within `base`.
pub(super) fn span(base: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr().addr().saturating_sub(base.as_ptr().addr());
    start..start + part.len()
}
