//! The log reader's state file: how far each followed file was read, and each pod's counts, so
//! that an agent restart neither re-counts nor misses lines. Written atomically (a temporary file
//! in the same directory, synced, then renamed over the old one): a crash leaves the old state or
//! the new one, never half of one.

use super::evidence::PodLogs;
use super::scan::Position;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

/// Name of the state file in the state directory.
pub const FILE_NAME: &str = "log-positions.json";

/// Version of the format; a file of another version is ignored (read from scratch).
const VERSION: u32 = 1;

/// Everything the log reader keeps across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Pods by uid: their counts and the files being followed.
    pub pods: BTreeMap<String, PodState>,
}

/// One pod's part of the state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    /// Its counts.
    pub logs: PodLogs,
    /// The files being followed.
    pub files: Vec<FileState>,
}

/// One followed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// Its name in the container's log directory when last seen (`0.log`, `0.log.<time>`).
    pub name: String,
    /// Device and inode: the file's identity across renames.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// How far it was read.
    pub position: Position,
}

/// Why the state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a state file of this version.
    #[error("{path} is not a log state file this version reads: {why}")]
    Format {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

impl State {
    /// An empty state of the current version.
    pub fn new() -> Self {
        State {
            version: VERSION,
            pods: BTreeMap::new(),
        }
    }

    /// Decodes a state file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let state: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if state.version != VERSION {
            return Err(format!("version {}", state.version));
        }
        Ok(state)
    }
}

/// Reads the state in `dir`; an absent file is an empty state.
pub fn load(dir: &Path) -> Result<State, StateError> {
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::new()),
        Err(source) => {
            return Err(StateError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    State::decode(&bytes).map_err(|why| StateError::Format {
        path: path.display().to_string(),
        why,
    })
}

/// Writes the state into `dir` atomically.
pub fn save(dir: &Path, state: &State) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(FILE_NAME))
        .map_err(|e| e.error)
        .map(|_| ())
}
