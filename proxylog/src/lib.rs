//! Linkerd proxy log lines: CRI framing, plain and JSON message decoding, and classification by
//! the kinds and rules of `cases/log-lines.md` (normative).
//!
//! Pure: bytes and strings in, values out. The agent reads the files (`/var/log/pods/…/
//! linkerd-proxy/*.log`) and feeds them through:
//!
//! ```text
//!  file bytes ─► CriFramer::push_line ─► CriRecord ─► classify_record ─► Classification
//!               (P…P F joined per stream,              (kinds + peer; NONE without
//!                bounded, lossy UTF-8)                  allocating for unrelated lines)
//! ```
//!
//! ```
//! use anchorwatch_proxylog::{CriFramer, Kind, classify_record};
//!
//! let mut framer = CriFramer::default();
//! let line = b"2025-10-23T15:03:43.123456789Z stderr F [  44.1s]  WARN ThreadId(01) \
//!     outbound:proxy{addr=10.42.3.9:8080}: linkerd_reconnect: Failed to connect \
//!     error=endpoint 10.42.3.9:8080: invalid peer certificate: Expired";
//! let record = framer.push_line(line).unwrap().unwrap();
//! let found = classify_record(&record);
//! assert_eq!(found.kinds().collect::<Vec<_>>(), [Kind::Expired]);
//! assert_eq!(found.peer().unwrap().to_string(), "10.42.3.9:8080");
//! ```

mod classify;
mod cri;
mod json;
mod kind;

pub use classify::{Classification, Peer, classify, classify_record};
pub use cri::{
    CriFramer, CriRecord, CriTimestamp, DEFAULT_MAX_MESSAGE, FrameError, Stream, frame_lines,
};
pub use kind::{AlertName, IDENTITY_WAIT_ESCALATION, Kind, ParseKindError};
