//! Copies of proxy log folders (`/var/log/pods/<ns>_<pod>_<uid>/linkerd-proxy/*.log`, rotated
//! files included), classified line by line with `anchorwatch-proxylog`, as the agent reads
//! them on a node. Bounded: lines longer than the framer's bound are cut, never held whole.

use anchorwatch_proxylog::{CriFramer, IDENTITY_WAIT_ESCALATION, Kind, classify_record};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// What one pod's proxy logs say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodLogs {
    /// The pod's uid, from the folder name.
    pub uid: String,
    /// Lines per kind (normative names: `BAD_SIGNATURE`, `IDENTITY_UNREACHABLE`, …).
    pub kinds: BTreeMap<String, usize>,
    /// The last peer named by a verification failure, when any.
    pub last_peer: Option<String>,
    /// The logs say the proxy cannot reach identity (`IDENTITY_UNREACHABLE` lines, or waiting for
    /// identity for longer than a minute).
    pub identity_unreachable: bool,
    /// Files read.
    pub files: usize,
    /// Lines timestamped after the moment judged (`--now`), left out.
    pub after_now: usize,
    /// The same lines as the live analysis takes them from an agent: per kind, with first and
    /// last seen (node clock) and the peers named. Counted as recent as of the diagnosis's
    /// `now` (`--now` for an old dump).
    pub evidence: Vec<crate::model::LogKindEvidence>,
}

/// Most peers kept per kind, as the agent keeps.
const MAX_PEERS: usize = 16;

impl PodLogs {
    /// The log evidence for the pod's record.
    pub fn to_evidence(&self) -> crate::model::LogEvidence {
        crate::model::LogEvidence {
            kinds: self.evidence.clone(),
            problem: None,
        }
    }

    fn count(
        &mut self,
        kind: Kind,
        at: Option<chrono::DateTime<chrono::Utc>>,
        peer: Option<anchorwatch_proxylog::Peer>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let i = match self.evidence.iter().position(|e| e.kind == kind) {
            Some(i) => i,
            None => {
                self.evidence.push(crate::model::LogKindEvidence {
                    kind,
                    total: 0,
                    last_5m: 0,
                    last_1h: 0,
                    first_seen: None,
                    last_seen: None,
                    samples: vec![],
                    peers: vec![],
                });
                self.evidence.len() - 1
            }
        };
        let e = &mut self.evidence[i];
        e.total += 1;
        // The windows end at the moment judged, as the agent's end at its clock's now.
        let age = at.map(|a| now - a);
        if age.is_some_and(|a| a <= chrono::TimeDelta::minutes(5)) {
            e.last_5m += 1;
        }
        if age.is_some_and(|a| a <= chrono::TimeDelta::hours(1)) {
            e.last_1h += 1;
        }
        e.first_seen = match (e.first_seen, at) {
            (Some(f), Some(a)) => Some(f.min(a)),
            (f, a) => f.or(a),
        };
        e.last_seen = e.last_seen.max(at);
        if let Some(p) = peer {
            if let Some(x) = e.peers.iter_mut().find(|x| x.addr == p.addr) {
                x.count += 1;
                x.last_seen = x.last_seen.max(at);
            } else if e.peers.len() < MAX_PEERS {
                e.peers.push(crate::model::LogPeer {
                    addr: p.addr,
                    ephemeral_port: p.ephemeral_port,
                    count: 1,
                    last_seen: at,
                });
            }
        }
    }
}

/// Reads every proxy log folder under `roots` as of `now` (lines after it are left out);
/// returns them by `namespace/name`, and what could not be read or was not used. A folder
/// whose uid is not the uid of the dump's pod of that name (an earlier pod: a StatefulSet's
/// pod re-created, say) is not used for it; a folder reached twice (overlapping roots) is read
/// once.
pub fn read(
    roots: &[PathBuf],
    pods: &[crate::model::PodRecord],
    now: chrono::DateTime<chrono::Utc>,
) -> (BTreeMap<String, PodLogs>, Vec<super::dump::Skipped>) {
    let uid_of: BTreeMap<String, &str> = pods
        .iter()
        .filter(|p| !p.uid.is_empty())
        .map(|p| (format!("{}/{}", p.namespace, p.name), p.uid.as_str()))
        .collect();
    let mut out: BTreeMap<String, PodLogs> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for root in roots {
        let mut found = Vec::new();
        find_proxy_folders(root, 3, &mut found);
        if found.is_empty() {
            skipped.push(super::dump::Skipped {
                origin: root.display().to_string(),
                why: "no `<namespace>_<pod>_<uid>/linkerd-proxy/` folder in it".into(),
            });
        }
        for (dir, (ns, pod, uid)) in found {
            if !seen.insert(std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone())) {
                continue;
            }
            let key = format!("{ns}/{pod}");
            let skip = |why: String| super::dump::Skipped {
                origin: dir.display().to_string(),
                why,
            };
            if let Some(want) = uid_of.get(&key).filter(|w| **w != uid) {
                skipped.push(skip(format!(
                    "logs of an earlier pod {key} (uid {uid}); the dump's pod {key} has uid {want}: not used"
                )));
                continue;
            }
            if let Some(had) = out.get(&key).filter(|l| l.uid != uid) {
                skipped.push(skip(format!(
                    "a second pod {key} (uid {uid}; logs of uid {} were read first) and no pod of that name in the dump to tell which is current: not used",
                    had.uid
                )));
                continue;
            }
            let entry = out.entry(key).or_default();
            entry.uid = uid;
            read_folder(&dir, entry, now, &mut skipped);
        }
    }
    (out, skipped)
}

/// The `linkerd-proxy` folders at or below `dir` (at most `depth` levels), with the pod their
/// parent folder names.
fn find_proxy_folders(
    dir: &Path,
    depth: usize,
    out: &mut Vec<(PathBuf, (String, String, String))>,
) {
    if dir.file_name().and_then(|n| n.to_str()) == Some("linkerd-proxy") {
        if let Some(pod) = dir
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(pod_folder)
        {
            out.push((dir.to_path_buf(), pod));
        }
        return;
    }
    if depth == 0 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        find_proxy_folders(&d, depth - 1, out);
    }
}

/// `<namespace>_<pod>_<uid>` (the kubelet's folder name; namespaces and pod names hold no `_`).
fn pod_folder(name: &str) -> Option<(String, String, String)> {
    let mut parts = name.splitn(3, '_');
    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    (!ns.is_empty() && !pod.is_empty()).then(|| (ns.into(), pod.into(), uid.into()))
}

fn read_folder(
    dir: &Path,
    logs: &mut PodLogs,
    now: chrono::DateTime<chrono::Utc>,
    skipped: &mut Vec<super::dump::Skipped>,
) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    // Rotated files (`0.log.20250101-…`) are older than the live `0.log`.
    files.sort_by_key(|p| {
        let n = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        (n.ends_with(".log"), n)
    });
    // First and last "waiting for identity" line, node clock seconds.
    let mut waiting: Option<(i64, i64)> = None;
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".gz") {
            skipped.push(super::dump::Skipped {
                origin: f.display().to_string(),
                why: "compressed rotated log: gunzip it to have it read".into(),
            });
            continue;
        }
        let Ok(file) = std::fs::File::open(&f) else {
            continue;
        };
        logs.files += 1;
        let mut framer = CriFramer::default();
        let mut r = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            // The framer bounds each message; a line is read in bounded pieces.
            match Read::by_ref(&mut r)
                .take(1 << 20)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let Ok(Some(record)) = framer.push_line(&line) else {
                continue;
            };
            let found = classify_record(&record);
            let at = chrono::DateTime::from_timestamp(record.timestamp.unix_seconds(), 0);
            if found.kinds().next().is_none() {
                continue;
            }
            if at.is_some_and(|a| a > now) {
                logs.after_now += 1;
                continue;
            }
            for k in found.kinds() {
                // Every kind keeps the peer its line names, as the agent's evidence does: an
                // alert received from a peer says who rejected this proxy.
                logs.count(k, at, found.peer(), now);
                *logs.kinds.entry(k.to_string()).or_default() += 1;
                if k == Kind::IdentityUnreachable {
                    logs.identity_unreachable = true;
                }
                if k == Kind::WaitingForIdentity {
                    let at = record.timestamp.unix_seconds();
                    let first = waiting.map_or(at, |(f, _)| f);
                    waiting = Some((first, at));
                }
                if k.is_verification()
                    && let Some(p) = found.peer()
                {
                    logs.last_peer = Some(p.to_string());
                }
            }
        }
    }
    if let Some((first, last)) = waiting
        && last.saturating_sub(first) > IDENTITY_WAIT_ESCALATION.as_secs() as i64
    {
        logs.identity_unreachable = true;
    }
}
