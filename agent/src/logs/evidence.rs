//! What one pod's proxy logs say, accumulated line by line: per kind, counts (total and per
//! minute, for sliding windows), first and last seen, the last few lines, and the peers named.
//!
//! ```text
//!  classified line (kinds, peer, CRI time, text) ──record──► PodLogs ──snapshot(now)──► LogEvidence
//!                                                   kind → KindStats{total, minutes, samples, peers}
//! ```
//! Pure and bounded: a pod holds at most one entry per kind (a dozen), [`MINUTES`] minute
//! buckets, [`SAMPLES`] samples of at most [`SAMPLE_BYTES`] bytes and [`PEERS`] peers per kind,
//! whatever the volume of lines.

use anchorwatch_proxylog::{Classification, Kind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// Minute buckets kept per kind: the longest window is one hour.
pub const MINUTES: usize = 60;
/// Sample lines kept per kind.
pub const SAMPLES: usize = 3;
/// Longest sample line kept, in bytes.
pub const SAMPLE_BYTES: usize = 300;
/// Peers kept per kind; the least recently seen goes first.
pub const PEERS: usize = 16;

/// The evidence of one pod's logs as sent to the aggregator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogEvidence {
    /// One entry per kind logged, in the order of [`Kind`].
    pub kinds: Vec<KindEvidence>,
    /// Why the logs could not be read; `None` when they were.
    pub problem: Option<String>,
}

/// The lines of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindEvidence {
    /// The kind.
    pub kind: Kind,
    /// Lines since the agent started reading.
    pub total: u64,
    /// Lines in the last 5 minutes before `now`.
    pub last_5m: u64,
    /// Lines in the last hour before `now`.
    pub last_1h: u64,
    /// CRI time of the first line.
    pub first_seen: DateTime<Utc>,
    /// CRI time of the last line.
    pub last_seen: DateTime<Utc>,
    /// The last lines, oldest first, each cut to [`SAMPLE_BYTES`].
    pub samples: Vec<String>,
    /// Peers named, most recently seen first.
    pub peers: Vec<PeerEvidence>,
}

/// A peer named by lines of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEvidence {
    /// As logged.
    pub addr: SocketAddr,
    /// An inbound client's ephemeral port: match by IP only.
    pub ephemeral_port: bool,
    /// Lines naming it.
    pub count: u64,
    /// CRI time of the last one.
    pub last_seen: DateTime<Utc>,
}

/// Accumulates one pod's classified lines. Serialisable: the agent keeps it in its state file so
/// that a restart neither loses nor re-counts lines.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodLogs {
    /// Kind name (as `Kind` displays it) → its lines; written by `record`, never cleared while
    /// the pod is on the node.
    kinds: BTreeMap<String, KindStats>,
}

/// The lines of one kind, as accumulated; every field is written by `record`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct KindStats {
    /// Lines.
    total: u64,
    /// CRI time of the earliest line.
    first_seen: DateTime<Utc>,
    /// CRI time of the latest line.
    last_seen: DateTime<Utc>,
    /// (minute since the epoch, lines in it), ascending, the newest [`MINUTES`].
    minutes: VecDeque<(i64, u64)>,
    /// The last [`SAMPLES`] lines, oldest first.
    samples: VecDeque<String>,
    /// At most [`PEERS`], most recently seen last.
    peers: Vec<PeerStats>,
}

/// A peer named by lines of one kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PeerStats {
    /// As logged.
    addr: SocketAddr,
    /// An inbound client's ephemeral port.
    ephemeral_port: bool,
    /// Lines naming it.
    count: u64,
    /// CRI time of the latest one.
    last_seen: DateTime<Utc>,
}

impl PodLogs {
    /// Records one classified line logged at `at` (its CRI time). `IGNORE` lines and lines
    /// without a kind are not evidence and are not recorded.
    pub fn record(&mut self, found: &Classification, at: DateTime<Utc>, message: &str) {
        for kind in found.kinds().filter(|k| *k != Kind::Ignore) {
            let stats = self
                .kinds
                .entry(kind.to_string())
                .or_insert_with(|| KindStats {
                    total: 0,
                    first_seen: at,
                    last_seen: at,
                    minutes: VecDeque::new(),
                    samples: VecDeque::new(),
                    peers: Vec::new(),
                });
            stats.add(at, message, found);
        }
    }

    /// Lines recorded per kind since the agent started reading (for metrics).
    pub fn totals(&self) -> impl Iterator<Item = (&str, u64)> {
        self.kinds.iter().map(|(k, s)| (k.as_str(), s.total))
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The evidence as of `now`: windows are counted back from it.
    pub fn snapshot(&self, now: DateTime<Utc>) -> LogEvidence {
        let now_minute = minute(now);
        let mut kinds: Vec<KindEvidence> = self
            .kinds
            .iter()
            .filter_map(|(name, s)| {
                let kind = name.parse().ok()?;
                let within = |minutes: i64| {
                    s.minutes
                        .iter()
                        .filter(|(m, _)| now_minute - m < minutes && *m <= now_minute)
                        .map(|(_, n)| n)
                        .sum()
                };
                Some(KindEvidence {
                    kind,
                    total: s.total,
                    last_5m: within(5),
                    last_1h: within(60),
                    first_seen: s.first_seen,
                    last_seen: s.last_seen,
                    samples: s.samples.iter().cloned().collect(),
                    peers: s
                        .peers
                        .iter()
                        .rev()
                        .map(|p| PeerEvidence {
                            addr: p.addr,
                            ephemeral_port: p.ephemeral_port,
                            count: p.count,
                            last_seen: p.last_seen,
                        })
                        .collect(),
                })
            })
            .collect();
        kinds.sort_by_key(|k| k.kind);
        LogEvidence {
            kinds,
            problem: None,
        }
    }
}

impl KindStats {
    fn add(&mut self, at: DateTime<Utc>, message: &str, found: &Classification) {
        self.total += 1;
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);
        let m = minute(at);
        // Lines come in file order, so nearly always into the newest bucket; a line older than
        // every bucket kept counts only in the total.
        match self.minutes.iter().rposition(|(b, _)| *b <= m) {
            Some(i) if self.minutes[i].0 == m => self.minutes[i].1 += 1,
            Some(i) => self.minutes.insert(i + 1, (m, 1)),
            None if self.minutes.len() < MINUTES => self.minutes.push_front((m, 1)),
            None => {}
        }
        while self.minutes.len() > MINUTES {
            self.minutes.pop_front();
        }
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples
            .push_back(cut(message, SAMPLE_BYTES).to_string());
        if let Some(peer) = found.peer() {
            match self.peers.iter().position(|p| p.addr == peer.addr) {
                Some(i) => {
                    let mut p = self.peers.remove(i);
                    p.count += 1;
                    p.last_seen = p.last_seen.max(at);
                    self.peers.push(p);
                }
                None => {
                    if self.peers.len() == PEERS {
                        self.peers.remove(0);
                    }
                    self.peers.push(PeerStats {
                        addr: peer.addr,
                        ephemeral_port: peer.ephemeral_port,
                        count: 1,
                        last_seen: at,
                    });
                }
            }
        }
    }
}

/// Minutes since the epoch.
fn minute(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(60)
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
