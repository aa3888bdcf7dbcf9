//! CRI container log framing: the files under `/var/log/pods/<ns>_<pod>_<uid>/<container>/`.
//!
//! Each line is `<RFC 3339 timestamp> <stdout|stderr> <P|F> <message>`. The runtime splits a long
//! message into partial (`P`) lines and ends it with a full (`F`) line; the pieces of one stream
//! are joined, and the two streams are joined separately because their lines interleave:
//!
//! ```text
//! 2025-10-23T15:03:44.000000001Z stdout P [  13.1s]  WARN … invalid peer
//! 2025-10-23T15:03:44.000000001Z stderr F something else          ─► record (stderr)
//! 2025-10-23T15:03:44.000000002Z stdout F  certificate: BadSignature ─► record (stdout, joined)
//! ```
//!
//! Memory is bounded: a [`CriFramer`] keeps at most `max_message` bytes per stream, and a longer
//! message is cut to that size and flagged [`CriRecord::truncated`].

#[cfg(test)]
mod tests;
mod timestamp;

pub use timestamp::CriTimestamp;

use std::borrow::Cow;
use std::fmt;

/// Default bound on one joined message, in bytes (see [`CriFramer::new`]).
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// The output stream a CRI log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// `stdout`.
    Stdout,
    /// `stderr` (where Linkerd proxies write their logs).
    Stderr,
}

impl Stream {
    /// The name as written in the log file.
    pub fn as_str(&self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a line is not a CRI log line. The line is skipped; a pending partial message is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The line is empty.
    #[error("empty line")]
    Empty,
    /// The line ends before the named field.
    #[error("line has no {0} field")]
    MissingField(&'static str),
    /// The first field is not an RFC 3339 timestamp.
    #[error("timestamp is not RFC 3339")]
    BadTimestamp,
    /// The second field is neither `stdout` nor `stderr`.
    #[error("stream is neither stdout nor stderr")]
    BadStream,
    /// The third field is neither `P` nor `F` (optionally followed by `:`-separated tags).
    #[error("tag is neither P nor F")]
    BadTag,
}

/// One complete message of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriRecord<'a> {
    /// When the runtime wrote the message's first line (its first `P` line if it was split).
    pub timestamp: CriTimestamp,
    /// The stream the message was written to.
    pub stream: Stream,
    /// The message without the trailing newline; invalid UTF-8 is replaced by U+FFFD. Borrowed
    /// from the input line when the message fits on one line and is valid UTF-8.
    pub message: Cow<'a, str>,
    /// The message was longer than the framer's bound and has been cut to it.
    pub truncated: bool,
}

impl CriRecord<'_> {
    /// The record with its message owned, independent of the input buffer.
    pub fn into_owned(self) -> CriRecord<'static> {
        CriRecord {
            timestamp: self.timestamp,
            stream: self.stream,
            message: Cow::Owned(self.message.into_owned()),
            truncated: self.truncated,
        }
    }
}

/// Joins CRI log lines into messages, one line at a time (pure: the caller reads the file).
///
/// Holds at most `max_message` bytes per stream between calls, whatever it is fed.
#[derive(Debug, Clone)]
pub struct CriFramer {
    /// Longest message kept, in bytes; set at construction.
    max_message: usize,
    /// The stdout message being joined.
    stdout: Partial,
    /// The stderr message being joined.
    stderr: Partial,
}

/// A message whose `P` lines have been seen but not yet its `F` line.
#[derive(Debug, Clone, Default)]
struct Partial {
    /// The bytes of the `P` lines so far, at most `max_message`; appended by each `P` line,
    /// taken by the `F` line that completes the message (or by [`CriFramer::flush`]).
    bytes: Vec<u8>,
    /// Timestamp of the first `P` line; `None` when no message is pending.
    started: Option<CriTimestamp>,
    /// Bytes were dropped because the message outgrew `max_message`; cleared with `started`.
    truncated: bool,
}

impl Partial {
    /// Appends `chunk`, keeping at most `max` bytes, and never reserving more than `max`.
    fn append(&mut self, chunk: &[u8], max: usize) {
        let room = max.saturating_sub(self.bytes.len());
        let kept = chunk.len().min(room);
        if kept < chunk.len() {
            self.truncated = true;
        }
        if kept == 0 {
            return;
        }
        let len = self.bytes.len();
        if self.bytes.capacity() - len < kept {
            // Grow geometrically, as `Vec` would, but never past the bound.
            let target = (len + kept).max(self.bytes.capacity() * 2).min(max);
            self.bytes.reserve_exact(target - len);
        }
        self.bytes.extend_from_slice(&chunk[..kept]);
    }

    /// Takes the pending message out, leaving no message pending.
    fn take(&mut self, stream: Stream, max: usize) -> Option<CriRecord<'static>> {
        let timestamp = self.started.take()?;
        let truncated = std::mem::take(&mut self.truncated);
        let bytes = std::mem::take(&mut self.bytes);
        let (message, truncated) = decode_owned(bytes, truncated, max);
        Some(CriRecord {
            timestamp,
            stream,
            message: Cow::Owned(message),
            truncated,
        })
    }
}

impl Default for CriFramer {
    fn default() -> Self {
        CriFramer::new(DEFAULT_MAX_MESSAGE)
    }
}

impl CriFramer {
    /// A framer that keeps at most `max_message` bytes of one message (per stream); longer
    /// messages are cut and flagged. [`DEFAULT_MAX_MESSAGE`] suits proxy logs, whose lines are a
    /// few hundred bytes.
    pub fn new(max_message: usize) -> Self {
        CriFramer {
            max_message,
            stdout: Partial::default(),
            stderr: Partial::default(),
        }
    }

    /// Feeds one line (with or without its trailing `\n`). Returns the message it completes, if
    /// any: an `F` line completes one, a `P` line only adds to its stream's pending message.
    pub fn push_line<'a>(&mut self, line: &'a [u8]) -> Result<Option<CriRecord<'a>>, FrameError> {
        let frame = Frame::parse(line)?;
        let max = self.max_message;
        let partial = match frame.stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        if !frame.complete {
            partial.started.get_or_insert(frame.timestamp);
            partial.append(frame.content, max);
            return Ok(None);
        }
        if partial.started.is_some() {
            partial.append(frame.content, max);
            return Ok(partial.take(frame.stream, max));
        }
        let (message, truncated) = decode_borrowed(frame.content, max);
        Ok(Some(CriRecord {
            timestamp: frame.timestamp,
            stream: frame.stream,
            message,
            truncated,
        }))
    }

    /// Ends the pending messages of both streams (e.g. at the end of a rotated file, whose `F`
    /// line will never come) and returns them, oldest first.
    pub fn flush(&mut self) -> Vec<CriRecord<'static>> {
        let max = self.max_message;
        let mut records: Vec<_> = [
            self.stdout.take(Stream::Stdout, max),
            self.stderr.take(Stream::Stderr, max),
        ]
        .into_iter()
        .flatten()
        .collect();
        records.sort_by_key(|record| record.timestamp);
        records
    }

    /// Bytes held for pending partial messages, at most twice `max_message` (one per stream).
    pub fn buffered_bytes(&self) -> usize {
        self.stdout.bytes.len() + self.stderr.bytes.len()
    }
}

/// Frames every line of `text` (a whole file or a chunk ending at a line boundary), skipping
/// lines that are not CRI, and ends pending partial messages at the end (see
/// [`CriFramer::flush`]). Uses [`DEFAULT_MAX_MESSAGE`].
pub fn frame_lines<T: AsRef<[u8]> + ?Sized>(text: &T) -> Vec<CriRecord<'_>> {
    let mut framer = CriFramer::default();
    let mut records: Vec<CriRecord<'_>> = text
        .as_ref()
        .split(|byte| *byte == b'\n')
        .filter_map(|line| framer.push_line(line).ok().flatten())
        .collect();
    records.extend(framer.flush());
    records
}

/// One parsed CRI line.
struct Frame<'a> {
    /// When the runtime wrote the line.
    timestamp: CriTimestamp,
    /// The stream the line belongs to.
    stream: Stream,
    /// `F`: the line completes its message.
    complete: bool,
    /// The message bytes this line carries.
    content: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Splits and checks the fields of one line.
    fn parse(line: &'a [u8]) -> Result<Self, FrameError> {
        // Only the newline is framing; a `\r` before it belongs to the message.
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.is_empty() {
            return Err(FrameError::Empty);
        }
        let (timestamp, rest) = split_field(line);
        let timestamp = CriTimestamp::parse(timestamp).ok_or(FrameError::BadTimestamp)?;
        let (stream, rest) = split_field(rest.ok_or(FrameError::MissingField("stream"))?);
        let stream = match stream {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return Err(FrameError::BadStream),
        };
        // The message may be empty, and some writers then drop the space after the tag.
        let (tag, content) = split_field(rest.ok_or(FrameError::MissingField("tag"))?);
        // CRI allows more tags after the first, separated by `:`; only P/F matters here.
        let first_tag = tag.split(|byte| *byte == b':').next().unwrap_or_default();
        let complete = match first_tag {
            b"F" => true,
            b"P" => false,
            _ => return Err(FrameError::BadTag),
        };
        Ok(Frame {
            timestamp,
            stream,
            complete,
            content: content.unwrap_or_default(),
        })
    }
}

/// Splits at the first space: the field before it and the rest after it, if there is a space.
fn split_field(text: &[u8]) -> (&[u8], Option<&[u8]>) {
    match text.iter().position(|byte| *byte == b' ') {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    }
}

/// Decodes a one-line message, borrowing when it is valid UTF-8 and short enough.
fn decode_borrowed(content: &[u8], max: usize) -> (Cow<'_, str>, bool) {
    let truncated = content.len() > max;
    let kept = if truncated {
        without_cut_char(&content[..max])
    } else {
        content
    };
    match String::from_utf8_lossy(kept) {
        Cow::Borrowed(text) => (Cow::Borrowed(text), truncated),
        Cow::Owned(text) => {
            let (text, truncated) = clamp(text, truncated, max);
            (Cow::Owned(text), truncated)
        }
    }
}

/// Decodes a joined message held in `bytes` (already at most `max` bytes).
fn decode_owned(bytes: Vec<u8>, truncated: bool, max: usize) -> (String, bool) {
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let bytes = error.into_bytes();
            let kept = if truncated {
                without_cut_char(&bytes)
            } else {
                &bytes[..]
            };
            String::from_utf8_lossy(kept).into_owned()
        }
    };
    clamp(text, truncated, max)
}

/// Cuts `text` to at most `max` bytes at a character boundary: replacement characters can make
/// lossily decoded text up to three times longer than its bytes.
fn clamp(mut text: String, truncated: bool, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, truncated);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    (text, true)
}

/// Drops a UTF-8 sequence left incomplete at the end of `bytes` by a cut, so that the cut does
/// not show up as a replacement character.
fn without_cut_char(bytes: &[u8]) -> &[u8] {
    let len = bytes.len();
    for back in 1..=len.min(4) {
        let byte = bytes[len - back];
        if byte & 0xC0 == 0x80 {
            continue;
        }
        let needed = match byte {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if needed > back {
            &bytes[..len - back]
        } else {
            bytes
        };
    }
    bytes
}
