//! Proxy log evidence from the node: follows each meshed pod's proxy container logs under the
//! kubelet's log root (`/var/log/pods/<namespace>_<pod>_<uid>/<container>/*.log`, CRI format),
//! classifies every complete message by `cases/log-lines.md` and counts what it finds per pod
//! and kind.
//!
//! ```text
//!  NodeView (pods) ──► Follower::round ──per pod──► files of its proxy container
//!                        │  byte budget,             0.log (followed by inode), 0.log.<time>
//!                        │  round-robin              (renamed), 0.log.<time>.gz (the rest of a
//!                        ▼                           file compressed before it was read)
//!                      Scanner ─► classify ─► PodLogs ─snapshot─► LogEvidence ─► inventory
//!                        │
//!                        └─► state file (positions + counts), written atomically each round
//! ```
//! Files are identified by device and inode, so a rename (`0.log` → `0.log.20251023-150343`)
//! does not lose the file's tail, and a file compressed before its tail was read is read on from
//! the `.gz`. A file shorter than what was read was truncated and is read from its start. Nothing
//! outside the log root is read: symlinks (directories or files) are never followed, and only
//! regular files are opened. Memory is bounded per file (a 64 KiB read buffer, one line of at
//! most `max_line` bytes, the framer's pending messages) and CPU per round (`budget` bytes).
//!
//! The follower runs on a thread of its own: reading a slow disk never holds up the probes.

pub mod evidence;
pub mod scan;
pub mod state;

pub use evidence::{KindEvidence, LogEvidence, PeerEvidence, PodLogs};
pub use scan::{Position, ScanStats, Scanner};

use crate::inventory::NodeView;
use anchorwatch_proxylog::{CriRecord, DEFAULT_MAX_MESSAGE, classify_record};
use chrono::{DateTime, Utc};
use state::{FileState, PodState, State};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Longest log line read, in bytes: a proxy line is a few hundred bytes, and the runtime splits
/// messages into 16 KiB partial lines. Longer lines are skipped without being held.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Size of the read buffer of one file.
const READ_BUFFER: usize = 64 * 1024;

/// How the follower reads.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// The kubelet's pod log directory (`/var/log/pods`), read-only.
    pub root: PathBuf,
    /// Where the state file lives; `None`: positions are not kept across restarts.
    pub state_dir: Option<PathBuf>,
    /// Bytes read per round at most, over all pods.
    pub budget: u64,
    /// Longest line read.
    pub max_line: usize,
}

/// A pod whose logs to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    /// Uid.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The proxy container's name (its log directory).
    pub container: String,
}

/// Counters over the follower's lifetime, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Bytes read from log files (decompressed bytes for `.gz`).
    pub bytes: u64,
    /// Lines read.
    pub lines: u64,
    /// Lines longer than the cap, skipped.
    pub too_long: u64,
    /// Lines that are not CRI log lines.
    pub not_cri: u64,
    /// Rounds that ran out of budget before every file was read to its end.
    pub behind_rounds: u64,
}

/// What one round found, for the metrics endpoint.
#[derive(Clone, Debug, Default)]
pub struct LogMetrics {
    /// (namespace, pod, kind) → lines classified so far.
    pub errors: BTreeMap<(String, String, String), u64>,
    /// Lifetime counters.
    pub counters: Counters,
}

/// The log follower of one node.
pub struct Follower {
    cfg: LogConfig,
    /// Pods followed, by uid; a pod leaves with the view.
    pods: BTreeMap<String, PodFollow>,
    /// Pods of the state file not seen in the view yet.
    restored: BTreeMap<String, PodState>,
    /// Where the next round starts, for fairness when the budget runs out.
    next: usize,
    /// Lifetime counters.
    counters: Counters,
    /// Something was read or counted since the state was last saved.
    dirty: bool,
}

/// One pod being followed; created when the pod enters the view (from the state file when it
/// has an entry there), dropped when it leaves.
struct PodFollow {
    /// Where its logs are.
    target: LogTarget,
    /// Its counts; written by every message read, kept in the state file.
    logs: PodLogs,
    /// The files being followed; a file is added when it appears as `N.log` and dropped once
    /// it is gone (deleted, or compressed and its tail read from the `.gz`).
    files: Vec<FileFollow>,
    /// Why its logs could not be read in the last round; cleared when they could.
    problem: Option<String>,
    /// The evidence last handed out; replaced when a round's evidence differs.
    sent: Option<LogEvidence>,
}

/// One file being followed.
struct FileFollow {
    /// Its name when last listed (updated when it is renamed by rotation).
    name: String,
    /// Device of the file: with `ino`, its identity across renames.
    dev: u64,
    /// Inode of the file.
    ino: u64,
    /// How far it has been read; reset when it is truncated.
    pos: Position,
    /// Its pending partial messages; replaced when it is truncated.
    scanner: Scanner,
}

/// A file of a container's log directory, as listed this round.
struct Entry {
    /// File name.
    name: String,
    /// Device.
    dev: u64,
    /// Inode.
    ino: u64,
    /// Size in bytes.
    len: u64,
    /// `N.log`: written to now.
    live: bool,
    /// `N.log.<time>.gz`: compressed; read only for the tail of a file that was renamed to
    /// `N.log.<time>` and then compressed.
    gz: bool,
}

impl Follower {
    /// A follower starting from `restored` (the state file's content).
    pub fn new(cfg: LogConfig, restored: State) -> Self {
        Follower {
            cfg,
            pods: BTreeMap::new(),
            restored: restored.pods,
            next: 0,
            counters: Counters::default(),
            dirty: false,
        }
    }

    /// Reads what the pods' logs gained since the last round, within the byte budget, and
    /// returns the evidence of every pod whose evidence changed (by content or, as windows
    /// slide, by `now`).
    pub fn round(
        &mut self,
        targets: &[LogTarget],
        now: DateTime<Utc>,
    ) -> Vec<(String, LogEvidence)> {
        let (cfg, counters) = (&self.cfg, &mut self.counters);
        let before = self.pods.len();
        self.pods
            .retain(|uid, _| targets.iter().any(|t| &t.uid == uid));
        self.dirty |= self.pods.len() != before;
        for t in targets {
            if self.pods.contains_key(&t.uid) {
                continue;
            }
            let restored = self.restored.remove(&t.uid).unwrap_or_default();
            let files = restored
                .files
                .into_iter()
                .map(|f| {
                    let (scanner, pos) =
                        Scanner::resuming(cfg.max_line, DEFAULT_MAX_MESSAGE, f.position);
                    FileFollow {
                        name: f.name,
                        dev: f.dev,
                        ino: f.ino,
                        pos,
                        scanner,
                    }
                })
                .collect();
            self.pods.insert(
                t.uid.clone(),
                PodFollow {
                    target: t.clone(),
                    logs: restored.logs,
                    files,
                    problem: None,
                    sent: None,
                },
            );
        }
        let mut budget = cfg.budget;
        let n = self.pods.len();
        let start = if n == 0 { 0 } else { self.next % n };
        let mut behind = false;
        // From `start` round to the pod before it: when the budget runs out, the pods it did
        // not reach go first next round.
        for pod in self.pods.values_mut().skip(start) {
            behind |= !follow_pod(cfg, pod, &mut budget, counters);
        }
        for pod in self.pods.values_mut().take(start) {
            behind |= !follow_pod(cfg, pod, &mut budget, counters);
        }
        if behind {
            counters.behind_rounds += 1;
            self.next = self.next.wrapping_add(1);
        }
        self.dirty |= cfg.budget != budget;
        let mut changed = Vec::new();
        for (uid, pod) in &mut self.pods {
            let mut evidence = pod.logs.snapshot(now);
            evidence.problem = pod.problem.clone();
            if pod.sent.as_ref() != Some(&evidence) {
                pod.sent = Some(evidence.clone());
                changed.push((uid.clone(), evidence));
            }
        }
        changed
    }

    /// The state to save, when something changed since the last call.
    pub fn take_state(&mut self) -> Option<State> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let mut state = State::new();
        for (uid, pod) in &self.pods {
            state.pods.insert(
                uid.clone(),
                PodState {
                    logs: pod.logs.clone(),
                    files: pod
                        .files
                        .iter()
                        .map(|f| FileState {
                            name: f.name.clone(),
                            dev: f.dev,
                            ino: f.ino,
                            position: f.pos,
                        })
                        .collect(),
                },
            );
        }
        // Pods of the state file not (yet) listed keep their state until the view has them.
        for (uid, pod) in &self.restored {
            state.pods.insert(uid.clone(), pod.clone());
        }
        Some(state)
    }

    /// Pods listed once are in the view from then on: restored state for pods not in it is
    /// for pods that left the node while the agent was down.
    pub fn forget_unlisted(&mut self) {
        self.dirty |= !self.restored.is_empty();
        self.restored.clear();
    }

    /// Counts per pod and kind, and lifetime counters.
    pub fn metrics(&self) -> LogMetrics {
        let mut errors = BTreeMap::new();
        for pod in self.pods.values() {
            for (kind, total) in pod.logs.totals() {
                errors.insert(
                    (
                        pod.target.namespace.clone(),
                        pod.target.name.clone(),
                        kind.to_string(),
                    ),
                    total,
                );
            }
        }
        LogMetrics {
            errors,
            counters: self.counters.clone(),
        }
    }
}

/// Evidence for the inventory: pod uid and what its logs say.
pub type LogBatch = Vec<(String, LogEvidence)>;

/// Starts the follower on a thread of its own: every `interval` it reads the logs of the pods in
/// `view` and sends the evidence that changed on `out`; it publishes its counts in `metrics`.
/// The thread ends when `out` closes.
pub fn spawn(
    cfg: LogConfig,
    interval: Duration,
    mut view: watch::Receiver<Arc<NodeView>>,
    out: mpsc::Sender<LogBatch>,
    metrics: Arc<Mutex<LogMetrics>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let restored = match &cfg.state_dir {
        Some(dir) => match state::load(dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "log positions not restored: reading pod logs from their start");
                State::new()
            }
        },
        None => State::new(),
    };
    tracing::info!(root = %cfg.root.display(), state = ?cfg.state_dir, pods = restored.pods.len(), "following proxy logs");
    std::thread::Builder::new()
        .name("proxy-logs".into())
        .spawn(move || {
            let state_dir = cfg.state_dir.clone();
            let mut follower = Follower::new(cfg, restored);
            let mut listed = false;
            let mut save_failed = false;
            while !out.is_closed() {
                std::thread::sleep(interval);
                // Until the pod watch has listed the node, the view is empty and says nothing
                // about which pods left.
                if !listed {
                    if !view.has_changed().unwrap_or(true) {
                        continue;
                    }
                    listed = true;
                }
                let targets: Vec<LogTarget> = view
                    .borrow_and_update()
                    .pods
                    .iter()
                    .map(|(uid, (_, e))| LogTarget {
                        uid: uid.clone(),
                        namespace: e.pod.namespace.clone(),
                        name: e.pod.name.clone(),
                        container: e.pod.proxy.container.clone(),
                    })
                    .collect();
                let changed = follower.round(&targets, Utc::now());
                follower.forget_unlisted();
                if let Ok(mut m) = metrics.lock() {
                    *m = follower.metrics();
                }
                if let (Some(dir), Some(state)) = (&state_dir, follower.take_state()) {
                    match state::save(dir, &state) {
                        Ok(()) => save_failed = false,
                        Err(e) if !save_failed => {
                            save_failed = true;
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot save log positions: a restart will read pod logs again");
                        }
                        Err(_) => {}
                    }
                }
                if !changed.is_empty() && out.blocking_send(changed).is_err() {
                    return;
                }
            }
        })
}

/// Counts one complete message.
pub fn count_record(logs: &mut PodLogs, record: &CriRecord<'_>) {
    let found = classify_record(record);
    if found.is_empty() {
        return;
    }
    let at = DateTime::from_timestamp(
        record.timestamp.unix_seconds(),
        record.timestamp.subsec_nanos(),
    )
    .unwrap_or_default();
    logs.record(&found, at, &record.message);
}

/// Reads one pod's new lines; false when the budget ran out before every file was read.
fn follow_pod(
    cfg: &LogConfig,
    pod: &mut PodFollow,
    budget: &mut u64,
    counters: &mut Counters,
) -> bool {
    let t = &pod.target;
    // The root itself may be reached through a symlink (it is what the operator configured);
    // nothing below it is.
    if !cfg.root.is_dir() {
        pod.problem = Some(format!(
            "no log root {} (is the node's /var/log/pods mounted?)",
            cfg.root.display()
        ));
        return true;
    }
    let pod_dir = cfg
        .root
        .join(format!("{}_{}_{}", t.namespace, t.name, t.uid));
    let dir = pod_dir.join(&t.container);
    let entries = match real_dir(&pod_dir)
        .and_then(|()| real_dir(&dir))
        .and_then(|()| list(&dir))
    {
        Ok(e) => {
            pod.problem = None;
            e
        }
        Err(why) => {
            pod.problem = Some(why);
            return true;
        }
    };
    let mut complete = true;
    let PodFollow { logs, files, .. } = pod;
    let mut sink = |r: &CriRecord<'_>| count_record(logs, r);
    let mut done: Vec<usize> = Vec::new();
    for (i, f) in files.iter_mut().enumerate() {
        // A file once renamed away from `N.log` never comes back: an inode under a live name
        // then is a new file that reuses the number of a deleted one.
        let same =
            |e: &&Entry| e.dev == f.dev && e.ino == f.ino && !e.gz && (!e.live || is_live(&f.name));
        if let Some(e) = entries.iter().find(same) {
            f.name = e.name.clone();
            if e.len < f.pos.offset {
                // Truncated in place: read the new content from its start.
                f.pos = Position::default();
                f.scanner = Scanner::new(cfg.max_line, DEFAULT_MAX_MESSAGE);
            }
            if e.len > f.pos.offset || f.pos.skipping {
                complete &= read_plain(&dir, f, budget, counters, &mut sink);
            }
            continue;
        }
        // The file is gone from the directory: its tail, if any, is in `<name>.gz`.
        let gz = format!("{}.gz", f.name);
        if entries.iter().any(|e| e.name == gz) {
            if !read_gz(&dir.join(&gz), f, budget, counters, &mut sink) {
                complete = false;
                continue;
            }
        } else {
            // Deleted before it was read to the end: end its pending messages.
            let _ = f
                .scanner
                .scan(&mut std::io::empty(), &mut f.pos, u64::MAX, true, &mut sink);
        }
        done.push(i);
    }
    for i in done.into_iter().rev() {
        files.remove(i);
    }
    for e in entries.iter().filter(|e| e.live) {
        if files
            .iter()
            .any(|f| f.dev == e.dev && f.ino == e.ino && is_live(&f.name))
        {
            continue;
        }
        let mut f = FileFollow {
            name: e.name.clone(),
            dev: e.dev,
            ino: e.ino,
            pos: Position::default(),
            scanner: Scanner::new(cfg.max_line, DEFAULT_MAX_MESSAGE),
        };
        if e.len > 0 {
            complete &= read_plain(&dir, &mut f, budget, counters, &mut sink);
        }
        files.push(f);
    }
    complete
}

/// Whether `name` is a file the runtime writes to now (`N.log`), not a rotated one.
fn is_live(name: &str) -> bool {
    name.strip_suffix(".log")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks that `path` is a directory, not a symlink to one.
fn real_dir(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => {
            Err(format!("{} is a symlink: not followed", path.display()))
        }
        Ok(_) => Err(format!("{} is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("no log directory {}", path.display()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The regular files of a container's log directory that are its logs: `N.log`, rotated
/// `N.log.<time>` and compressed `N.log.<time>.gz`. Symlinks are left out.
fn list(dir: &Path) -> Result<Vec<Entry>, String> {
    let read = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in read.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some((stem, rest)) = name.split_once(".log") else {
            continue;
        };
        if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // DirEntry::metadata does not follow symlinks.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        out.push(Entry {
            live: rest.is_empty(),
            gz: rest.ends_with(".gz"),
            name,
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Opens a regular file without following a symlink and without blocking on a FIFO, and checks
/// it is the file listed.
fn open_regular(path: &Path, dev_ino: Option<(u64, u64)>) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if let Some((dev, ino)) = dev_ino
        && (meta.dev(), meta.ino()) != (dev, ino)
    {
        return Err(std::io::Error::other("replaced while being read"));
    }
    Ok(file)
}

/// Reads a plain file on from its position; false when the budget ran out.
fn read_plain(
    dir: &Path,
    f: &mut FileFollow,
    budget: &mut u64,
    counters: &mut Counters,
    sink: &mut dyn FnMut(&CriRecord<'_>),
) -> bool {
    let path = dir.join(&f.name);
    let result = open_regular(&path, Some((f.dev, f.ino))).and_then(|mut file| {
        file.seek(SeekFrom::Start(f.pos.offset))?;
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        f.scanner
            .scan(&mut reader, &mut f.pos, *budget, false, sink)
    });
    account(&path, result, counters, budget)
}

/// Reads a compressed file on from the position its plain self had; false when the budget ran
/// out (it is read again, from its start, next round).
fn read_gz(
    path: &Path,
    f: &mut FileFollow,
    budget: &mut u64,
    counters: &mut Counters,
    sink: &mut dyn FnMut(&CriRecord<'_>),
) -> bool {
    let result = open_regular(path, None).and_then(|file| {
        let mut reader = BufReader::with_capacity(
            READ_BUFFER,
            flate2::read::MultiGzDecoder::new(BufReader::new(file)),
        );
        let skipped = std::io::copy(&mut (&mut reader).take(f.pos.offset), &mut std::io::sink())?;
        *budget = budget.saturating_sub(skipped);
        f.scanner.scan(&mut reader, &mut f.pos, *budget, true, sink)
    });
    account(path, result, counters, budget)
}

/// Counts what a read did against the budget and the counters; false when the budget ran out
/// before the end of the file. A file that cannot be read (gone, replaced, not a regular file,
/// corrupt gzip) counts as read to its end.
fn account(
    path: &Path,
    result: std::io::Result<ScanStats>,
    counters: &mut Counters,
    budget: &mut u64,
) -> bool {
    match result {
        Ok(stats) => {
            *budget = budget.saturating_sub(stats.bytes);
            counters.bytes += stats.bytes;
            counters.lines += stats.lines;
            counters.too_long += stats.too_long;
            counters.not_cri += stats.not_cri;
            stats.eof
        }
        Err(e) => {
            tracing::debug!(file = %path.display(), error = %e, "cannot read log file");
            true
        }
    }
}

#[cfg(test)]
mod tests;
