//! The kinds of evidence a proxy log line can carry, named as in `cases/log-lines.md`.

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::time::Duration;

/// How long [`Kind::WaitingForIdentity`] lines must keep coming before a caller counts them as
/// [`Kind::IdentityUnreachable`] (`cases/log-lines.md`, row 18: "when it repeats for more than a
/// minute"). A proxy logs the line while it starts; only a wait that outlasts start-up says that
/// identity cannot be reached.
pub const IDENTITY_WAIT_ESCALATION: Duration = Duration::from_secs(60);

/// What one proxy log line says about mTLS and identity.
///
/// `Display` gives the normative name (`BAD_SIGNATURE`, `ALERT_SENT(BadCertificate)`, …) and
/// `FromStr` parses it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `BAD_SIGNATURE`: a certificate verified with the wrong key (an anchor with the right name
    /// but another key).
    BadSignature,
    /// `UNKNOWN_ISSUER`: no trust anchor carries the issuer's name.
    UnknownIssuer,
    /// `EXPIRED`: a certificate's NotAfter is behind the verifier's clock.
    Expired,
    /// `NOT_VALID_YET`: a certificate's NotBefore is ahead of the verifier's clock.
    NotValidYet,
    /// `NOT_VALID_FOR_NAME`: the peer's certificate names another identity.
    NotValidForName,
    /// `IDENTITY_UNREACHABLE`: the proxy could not reach `linkerd-identity` (fail-fast, DNS,
    /// dispatch timeout, refused or timed-out connections).
    IdentityUnreachable,
    /// `LOCAL_CERT_REJECTED`: the proxy refused, or never obtained, the certificate identity
    /// gave it.
    LocalCertRejected,
    /// `ALERT_RECEIVED(<alert>)`: the peer sent a fatal TLS alert, i.e. it rejected us.
    AlertReceived(AlertName),
    /// `ALERT_SENT(<alert>)`: this proxy sent a fatal TLS alert, i.e. it rejected the peer.
    AlertSent(AlertName),
    /// `WAITING_FOR_IDENTITY`: "Waiting for identity to be initialized...". Harmless on its own;
    /// a caller turns a run of these lines lasting more than [`IDENTITY_WAIT_ESCALATION`] into
    /// [`Kind::IdentityUnreachable`]. The classifier looks at one line and cannot do that itself.
    WaitingForIdentity,
    /// `IGNORE`: a line that looks related (identity, mTLS) but is no evidence of a fault.
    Ignore,
}

impl Kind {
    /// Whether this is a TLS certificate verification verdict (the most specific class of
    /// `cases/log-lines.md` rule 2).
    pub fn is_verification(&self) -> bool {
        matches!(
            self,
            Kind::BadSignature
                | Kind::UnknownIssuer
                | Kind::Expired
                | Kind::NotValidYet
                | Kind::NotValidForName
        )
    }
}

/// The fixed names, in declaration order; the alert kinds take a parameter and are handled apart.
const NAMES: [(Kind, &str); 9] = [
    (Kind::BadSignature, "BAD_SIGNATURE"),
    (Kind::UnknownIssuer, "UNKNOWN_ISSUER"),
    (Kind::Expired, "EXPIRED"),
    (Kind::NotValidYet, "NOT_VALID_YET"),
    (Kind::NotValidForName, "NOT_VALID_FOR_NAME"),
    (Kind::IdentityUnreachable, "IDENTITY_UNREACHABLE"),
    (Kind::LocalCertRejected, "LOCAL_CERT_REJECTED"),
    (Kind::WaitingForIdentity, "WAITING_FOR_IDENTITY"),
    (Kind::Ignore, "IGNORE"),
];

const ALERT_RECEIVED: &str = "ALERT_RECEIVED";
const ALERT_SENT: &str = "ALERT_SENT";

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::AlertReceived(alert) => write!(f, "{ALERT_RECEIVED}({alert})"),
            Kind::AlertSent(alert) => write!(f, "{ALERT_SENT}({alert})"),
            other => {
                let name = NAMES
                    .iter()
                    .find(|(kind, _)| kind == other)
                    .map_or("?", |(_, name)| name);
                f.write_str(name)
            }
        }
    }
}

/// A string that names no [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log line kind")]
pub struct ParseKindError;

impl FromStr for Kind {
    type Err = ParseKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((kind, _)) = NAMES.iter().find(|(_, name)| *name == s) {
            return Ok(*kind);
        }
        let (direction, rest) = s.split_once('(').ok_or(ParseKindError)?;
        let alert = rest
            .strip_suffix(')')
            .and_then(AlertName::new)
            .ok_or(ParseKindError)?;
        match direction {
            ALERT_RECEIVED => Ok(Kind::AlertReceived(alert)),
            ALERT_SENT => Ok(Kind::AlertSent(alert)),
            _ => Err(ParseKindError),
        }
    }
}

/// A TLS alert name as rustls prints it (`BadCertificate`, `UnknownCA`, or
/// `AlertDescription(0x2a)` for a code it has no name for), kept inline so that [`Kind`] is
/// `Copy` and classifying a line allocates nothing.
///
/// A name is an ASCII letter followed by ASCII letters, digits or `_`, optionally followed by one
/// parenthesised group of the same characters, at most [`AlertName::CAPACITY`] bytes in all.
#[derive(Clone, Copy)]
pub struct AlertName {
    /// Number of bytes of `bytes` in use.
    len: u8,
    /// The name, ASCII, zero-padded.
    bytes: [u8; AlertName::CAPACITY],
}

impl AlertName {
    /// Longest name kept; rustls's longest (`BadCertificateStatusResponse`) has 28 bytes.
    pub const CAPACITY: usize = 32;

    /// The alert name `name`, or `None` when it is not shaped like one (see the type's docs).
    pub fn new(name: &str) -> Option<Self> {
        let raw = name.as_bytes();
        if raw.len() > Self::CAPACITY || Self::shaped_len(raw) != Some(raw.len()) {
            return None;
        }
        let mut bytes = [0; Self::CAPACITY];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(AlertName {
            len: u8::try_from(raw.len()).ok()?,
            bytes,
        })
    }

    /// Reads the alert name at the start of `text` (what follows `fatal alert: ` in a log line);
    /// `None` when there is none or it is too long.
    pub(crate) fn read_prefix(text: &[u8]) -> Option<Self> {
        let len = Self::shaped_len(text)?;
        std::str::from_utf8(&text[..len]).ok().and_then(Self::new)
    }

    /// Length of the longest alert-name-shaped prefix of `text`.
    fn shaped_len(text: &[u8]) -> Option<usize> {
        let word = |from: usize| {
            text[from..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count()
        };
        if !text.first()?.is_ascii_alphabetic() {
            return None;
        }
        let head = word(0);
        if text.get(head) == Some(&b'(') {
            let inner = word(head + 1);
            if inner > 0 && text.get(head + 1 + inner) == Some(&b')') {
                return Some(head + inner + 2);
            }
        }
        Some(head)
    }

    /// The name as printed.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `new`), so this cannot fail.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl PartialEq for AlertName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for AlertName {}

impl Hash for AlertName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for AlertName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AlertName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for AlertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for AlertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlertName({:?})", self.as_str())
    }
}
