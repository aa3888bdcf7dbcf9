//! Reading one CRI log file in bounded memory: bytes from a reader are cut into lines, lines
//! longer than the cap are skipped without being held, complete lines go through the CRI framer
//! (partial `P` lines joined), and each complete message is handed to the caller.
//!
//! ```text
//!  reader ─fill_buf─► lines (memchr) ─► CriFramer ─► CriRecord ─► sink (classify, count)
//!          64 KiB       ≤ max_line        ≤ 2 × max message
//! ```
//! The reader is the caller's (a file, a gzip decoder, a byte slice in tests and the bench);
//! [`Position`] says how far the file has been read and where re-reading must start after a
//! restart so that a pending partial message is joined whole and nothing is counted twice.

use anchorwatch_proxylog::{CriFramer, CriRecord};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead};

/// How far one file has been read. Kept in the agent's state file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Bytes consumed: every complete line before this offset has been framed.
    pub offset: u64,
    /// Where the earliest partial (`P`) message still pending begins, else `offset`. A restart
    /// re-reads from here to join that message again; what it completes before `offset` is
    /// not counted twice.
    pub resume: u64,
    /// The line at `offset` is longer than the cap: bytes up to its newline are skipped.
    pub skipping: bool,
    /// Messages completed by a line ending at or before this offset were handed out already:
    /// after a restart, re-reading from `resume` does not hand them out again.
    #[serde(default)]
    pub counted: u64,
}

/// What one call of [`Scanner::scan`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Bytes taken from the reader.
    pub bytes: u64,
    /// Complete lines seen (skipped ones included).
    pub lines: u64,
    /// Lines longer than the cap, skipped.
    pub too_long: u64,
    /// Lines that are not CRI log lines (binary garbage, another format).
    pub not_cri: u64,
    /// The reader had no more bytes (as opposed to the budget running out).
    pub eof: bool,
}

/// The reading state of one file between rounds: the framer's pending partial messages.
#[derive(Debug)]
pub struct Scanner {
    /// Joins partial lines; holds the pending messages of both streams between calls.
    framer: CriFramer,
    /// Longest line kept, in bytes; longer ones are skipped.
    max_line: usize,
    /// Start of the line that began the pending partial message(s), if any.
    pending_since: Option<u64>,
    /// The start of a line split across reads; emptied when the line completes.
    carry: Vec<u8>,
}

impl Scanner {
    /// A scanner for a file read from its start: lines up to `max_line` bytes are framed, each
    /// message kept to at most `max_message` bytes.
    pub fn new(max_line: usize, max_message: usize) -> Self {
        Scanner {
            framer: CriFramer::new(max_message),
            max_line,
            pending_since: None,
            carry: Vec::new(),
        }
    }

    /// A scanner for a file read before a restart up to `pos`: the caller reads from
    /// `pos.resume`, and messages completed before `pos.offset` are not handed out again.
    /// Returns the position to read from.
    pub fn resuming(max_line: usize, max_message: usize, pos: Position) -> (Self, Position) {
        let from = Position {
            offset: pos.resume.min(pos.offset),
            resume: pos.resume.min(pos.offset),
            skipping: pos.skipping && pos.resume >= pos.offset,
            counted: pos.counted.max(pos.offset),
        };
        (Scanner::new(max_line, max_message), from)
    }

    /// Bytes held between calls: pending partial messages (the carry is emptied on return).
    pub fn buffered_bytes(&self) -> usize {
        self.framer.buffered_bytes() + self.carry.capacity()
    }

    /// Reads lines from `reader`, which must be positioned at `pos.offset`, until it has no more
    /// bytes or `budget` bytes were taken (and the line under way is complete). Each complete message goes to `sink`. An incomplete
    /// last line is left for the next call (the caller seeks to `pos.offset` again), unless
    /// `finished`: the file will not grow (rotated and compressed, or gone), so the last line
    /// and every pending partial message are ended and handed out.
    pub fn scan<R: BufRead>(
        &mut self,
        reader: &mut R,
        pos: &mut Position,
        budget: u64,
        finished: bool,
        sink: &mut dyn FnMut(&CriRecord<'_>),
    ) -> io::Result<ScanStats> {
        let mut stats = ScanStats::default();
        self.carry.clear();
        let mut out_of_budget = false;
        while !out_of_budget {
            let buf = match reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                stats.eof = true;
                break;
            }
            let len = buf.len();
            let mut start = 0;
            while start < len {
                let rest = &buf[start..];
                // Stop between lines (or inside a skipped one) only, so that every call makes
                // progress: at most one line (`max_line`) past the budget.
                if self.carry.is_empty() && stats.bytes + start as u64 >= budget {
                    out_of_budget = true;
                    break;
                }
                if pos.skipping {
                    match memchr::memchr(b'\n', rest) {
                        Some(i) => {
                            pos.skipping = false;
                            pos.offset += (i + 1) as u64;
                            stats.lines += 1;
                            stats.too_long += 1;
                            start += i + 1;
                            self.after_line(pos);
                        }
                        None => {
                            pos.offset += rest.len() as u64;
                            start = len;
                        }
                    }
                    continue;
                }
                match memchr::memchr(b'\n', rest) {
                    Some(i) if self.carry.is_empty() => {
                        let line_start = pos.offset;
                        pos.offset += (i + 1) as u64;
                        self.line(&rest[..i], line_start, pos, &mut stats, sink);
                        start += i + 1;
                    }
                    Some(i) => {
                        let line_start = pos.offset;
                        pos.offset += (self.carry.len() + i + 1) as u64;
                        if self.carry.len() + i > self.max_line {
                            stats.lines += 1;
                            stats.too_long += 1;
                            self.after_line(pos);
                        } else {
                            let mut line = std::mem::take(&mut self.carry);
                            line.extend_from_slice(&rest[..i]);
                            self.line(&line, line_start, pos, &mut stats, sink);
                            line.clear();
                            self.carry = line;
                        }
                        self.carry.clear();
                        start += i + 1;
                    }
                    None if self.carry.len() + rest.len() > self.max_line => {
                        // Too long to be a proxy line: skip it without holding it.
                        pos.offset += (self.carry.len() + rest.len()) as u64;
                        pos.skipping = true;
                        self.carry.clear();
                        self.carry.shrink_to(0);
                        start = len;
                    }
                    None => {
                        self.carry.extend_from_slice(rest);
                        start = len;
                    }
                }
            }
            reader.consume(start);
            stats.bytes += start as u64;
        }
        if finished && stats.eof {
            if !self.carry.is_empty() {
                let line = std::mem::take(&mut self.carry);
                let line_start = pos.offset;
                pos.offset += line.len() as u64;
                self.line(&line, line_start, pos, &mut stats, sink);
            }
            for record in self.framer.flush() {
                sink(&record);
            }
            self.pending_since = None;
            pos.resume = pos.offset;
            pos.counted = pos.counted.max(pos.offset);
            pos.skipping = false;
        }
        // An incomplete line is read again next time, from `pos.offset`.
        self.carry.clear();
        if self.carry.capacity() > self.max_line {
            self.carry.shrink_to(0);
        }
        Ok(stats)
    }

    /// One complete line (without its newline) that started at `line_start`; `pos.offset` is
    /// already past it.
    fn line(
        &mut self,
        line: &[u8],
        line_start: u64,
        pos: &mut Position,
        stats: &mut ScanStats,
        sink: &mut dyn FnMut(&CriRecord<'_>),
    ) {
        stats.lines += 1;
        let before = self.framer.buffered_bytes();
        match self.framer.push_line(line) {
            Ok(Some(record)) if pos.offset > pos.counted => sink(&record),
            Ok(_) => {}
            Err(_) => stats.not_cri += 1,
        }
        if self.framer.buffered_bytes() == 0 {
            self.pending_since = None;
        } else if before == 0 {
            self.pending_since = Some(line_start);
        }
        self.after_line(pos);
    }

    fn after_line(&mut self, pos: &mut Position) {
        pos.resume = self.pending_since.unwrap_or(pos.offset);
        pos.counted = pos.counted.max(pos.offset);
    }
}

#[cfg(test)]
mod tests;
