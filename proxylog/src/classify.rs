//! Classification of one proxy log message by the rules of `cases/log-lines.md` (normative).
//!
//! ```text
//! message ──► worth_a_look? ──no──► Classification::NONE   (no allocation, most lines)
//!                 │yes
//!                 ▼
//!            JSON object? ──yes──► render as plain tracing text ─┐
//!                 │no                                           ▼
//!                 └──────────────────────────────────────► classify_text
//!                                                       kinds (rules 1, 2, 4) + peer (rule 3)
//! ```
//!
//! Rule 2 orders three classes: TLS verification kinds > unreachability phrases > generic
//! identity-client messages. How they combine:
//!
//! | verification | unreachable | generic | kinds                                   |
//! |--------------|-------------|---------|-----------------------------------------|
//! | yes          | any         | yes     | LOCAL_CERT_REJECTED + verification (r1) |
//! | yes          | any         | no      | verification                            |
//! | no           | yes         | any     | IDENTITY_UNREACHABLE                    |
//! | no           | no          | yes     | LOCAL_CERT_REJECTED                     |
//!
//! Alerts (`Sending fatal alert X`, `received fatal alert: X`) are added to whatever else the
//! line says. `WAITING_FOR_IDENTITY` and `IGNORE` are given only to lines that say nothing else.
//!
//! An unreachability phrase counts only in a line about identity (an `identity` span or target,
//! `linkerd-identity`, `obtain identity`, …): "connection refused" or "service in fail-fast"
//! towards an ordinary outbound service says nothing about `linkerd-identity`.

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::LazyLock;

use memchr::memmem;

use crate::cri::CriRecord;
use crate::json;
use crate::kind::{AlertName, Kind};

/// What one log message says: its kinds (none for an unrelated line) and the peer it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Classification {
    /// One bit per kind without a parameter, indexed by [`Slot`].
    flags: u16,
    /// The alert of `ALERT_RECEIVED(<alert>)`, if the line has that kind.
    alert_received: Option<AlertName>,
    /// The alert of `ALERT_SENT(<alert>)`, if the line has that kind.
    alert_sent: Option<AlertName>,
    /// The peer the line names (rule 3); only looked for when the line has a kind.
    peer: Option<Peer>,
}

/// The address of the other side of a connection, as a log line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The address as logged.
    pub addr: SocketAddr,
    /// The port is a client's ephemeral source port (`peer.addr`/`client.addr` of an inbound
    /// connection): match the peer to a pod by IP only.
    pub ephemeral_port: bool,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

/// Position of each kind in the canonical order [`Classification::kinds`] yields.
#[derive(Clone, Copy)]
enum Slot {
    BadSignature,
    UnknownIssuer,
    Expired,
    NotValidYet,
    NotValidForName,
    IdentityUnreachable,
    LocalCertRejected,
    AlertReceived,
    AlertSent,
    WaitingForIdentity,
    Ignore,
}

/// Every slot, in order.
const SLOTS: [Slot; 11] = [
    Slot::BadSignature,
    Slot::UnknownIssuer,
    Slot::Expired,
    Slot::NotValidYet,
    Slot::NotValidForName,
    Slot::IdentityUnreachable,
    Slot::LocalCertRejected,
    Slot::AlertReceived,
    Slot::AlertSent,
    Slot::WaitingForIdentity,
    Slot::Ignore,
];

/// Bits of the verification kinds in `Classification::flags`.
const VERIFICATION_BITS: u16 = (1 << (Slot::NotValidForName as u16 + 1)) - 1;

impl Classification {
    /// The classification of an unrelated line: no kind, no peer.
    pub const NONE: Classification = Classification {
        flags: 0,
        alert_received: None,
        alert_sent: None,
        peer: None,
    };

    /// The kinds, each once, in declaration order of [`Kind`]. Empty for an unrelated line.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        SLOTS.iter().filter_map(|slot| self.kind_at(*slot))
    }

    /// Whether the line has `kind` (for alert kinds: with that alert name).
    pub fn contains(&self, kind: Kind) -> bool {
        self.kinds().any(|k| k == kind)
    }

    /// Whether the line has no kind at all (unrelated to mTLS and identity).
    pub fn is_empty(&self) -> bool {
        self.flags == 0 && self.alert_received.is_none() && self.alert_sent.is_none()
    }

    /// The peer the line names (`cases/log-lines.md` rule 3), if it has a kind and names one.
    pub fn peer(&self) -> Option<Peer> {
        self.peer
    }

    fn kind_at(&self, slot: Slot) -> Option<Kind> {
        let flagged = |kind| (self.flags & (1 << slot as u16) != 0).then_some(kind);
        match slot {
            Slot::BadSignature => flagged(Kind::BadSignature),
            Slot::UnknownIssuer => flagged(Kind::UnknownIssuer),
            Slot::Expired => flagged(Kind::Expired),
            Slot::NotValidYet => flagged(Kind::NotValidYet),
            Slot::NotValidForName => flagged(Kind::NotValidForName),
            Slot::IdentityUnreachable => flagged(Kind::IdentityUnreachable),
            Slot::LocalCertRejected => flagged(Kind::LocalCertRejected),
            Slot::AlertReceived => self.alert_received.map(Kind::AlertReceived),
            Slot::AlertSent => self.alert_sent.map(Kind::AlertSent),
            Slot::WaitingForIdentity => flagged(Kind::WaitingForIdentity),
            Slot::Ignore => flagged(Kind::Ignore),
        }
    }

    fn set(&mut self, slot: Slot) {
        self.flags |= 1 << slot as u16;
    }
}

/// Classifies one proxy log message (the part of a CRI line after the tag), plain tracing text
/// or tracing-subscriber JSON. Returns [`Classification::NONE`] without allocating for the vast
/// majority of lines, which mention nothing that any rule looks for.
pub fn classify(message: &str) -> Classification {
    if !worth_a_look(message) {
        return Classification::NONE;
    }
    match json::render_as_plain(message) {
        Some(rendered) => classify_text(&rendered),
        None => classify_text(message),
    }
}

/// Classifies the message of a framed CRI record (see [`classify`]).
pub fn classify_record(record: &CriRecord<'_>) -> Classification {
    classify(&record.message)
}

/// Words of which every line with a kind contains at least one (each phrase of the tables below
/// contains one of them; unreachability phrases count only next to `identity`). JSON does not
/// escape any of their characters, so the check also holds for the raw JSON text.
const ANCHORS: [&str; 7] = [
    "identity",
    "alid",
    "Signature",
    "Issuer",
    "xpired",
    "alert",
    "mutually",
];

/// The anchors as substring searchers, built once (vectorised: this check runs on every line).
static ANCHOR_FINDERS: LazyLock<Vec<memmem::Finder<'static>>> =
    LazyLock::new(|| ANCHORS.iter().map(memmem::Finder::new).collect());

/// The cheap pre-check: false means no rule can match.
fn worth_a_look(message: &str) -> bool {
    let bytes = message.as_bytes();
    ANCHOR_FINDERS.iter().any(|f| f.find(bytes).is_some())
}

/// A TLS verification kind and the words that name it (rule 2, first class; rule 4).
struct Verification {
    slot: Slot,
    /// rustls/webpki error names, matched as whole words; `Cert…` (webpki) and `…Context`
    /// (rustls ≥ 0.23 `Debug`) forms match too.
    tokens: &'static [&'static str],
    /// rustls `Display` wordings.
    phrases: &'static [&'static str],
}

const VERIFICATIONS: [Verification; 5] = [
    Verification {
        slot: Slot::BadSignature,
        // webpki 0.22 (rustls 0.20) names a bad signature `InvalidSignatureForPublicKey`.
        tokens: &["BadSignature", "InvalidSignatureForPublicKey"],
        phrases: &[],
    },
    Verification {
        slot: Slot::UnknownIssuer,
        tokens: &["UnknownIssuer"],
        phrases: &[],
    },
    Verification {
        slot: Slot::Expired,
        tokens: &["Expired"],
        phrases: &["certificate expired"],
    },
    Verification {
        slot: Slot::NotValidYet,
        tokens: &["NotValidYet"],
        phrases: &["not valid yet"],
    },
    Verification {
        slot: Slot::NotValidForName,
        tokens: &["NotValidForName"],
        phrases: &["not valid for name"],
    },
];

/// Rule 2, second class. `onnection refused` covers both capitalisations.
const UNREACHABLE: [&str; 5] = [
    "fail-fast",
    "no record found",
    "in a timely fashion",
    "onnection refused",
    "timed out",
];

/// Rule 2, third class: the identity client's generic failures (`ceritficate`: rule 4).
const GENERIC_IDENTITY: [&str; 4] = [
    "Failed to obtain identity",
    "Failed to certify identity",
    "Received invalid certificate",
    "Received invalid ceritficate",
];

const WAITING: &str = "Waiting for identity";

/// Lines that look related but are no evidence (rows 13 and 17).
const IGNORED: [&str; 2] = ["mutually authenticated", "Certified identity"];

/// Applies rules 1, 2 and 4 for the kinds and rule 3 for the peer to plain text.
fn classify_text(text: &str) -> Classification {
    let mut out = Classification::NONE;
    for verification in &VERIFICATIONS {
        let named = verification.tokens.iter().any(|t| has_token(text, t))
            || verification.phrases.iter().any(|p| text.contains(p));
        if named {
            out.set(verification.slot);
        }
    }
    let generic = GENERIC_IDENTITY.iter().any(|p| text.contains(p));
    if out.flags & VERIFICATION_BITS != 0 {
        if generic {
            out.set(Slot::LocalCertRejected);
        }
    } else if UNREACHABLE.iter().any(|p| text.contains(p)) && about_identity(text) {
        out.set(Slot::IdentityUnreachable);
    } else if generic {
        out.set(Slot::LocalCertRejected);
    }
    (out.alert_sent, out.alert_received) = alerts(text);
    if out.is_empty() && text.contains(WAITING) {
        out.set(Slot::WaitingForIdentity);
    }
    if out.is_empty() && IGNORED.iter().any(|p| text.contains(p)) {
        out.set(Slot::Ignore);
    }
    if !out.is_empty() {
        out.peer = find_peer(text);
    }
    out
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Whether `text` has `token` as a whole word, also as `Cert<token>` and `<token>Context`.
fn has_token(text: &str, token: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(token).any(|(at, _)| {
        let before = &bytes[..at];
        let before = before.strip_suffix(b"Cert").unwrap_or(before);
        let after = &bytes[at + token.len()..];
        let after = after.strip_prefix(b"Context").unwrap_or(after);
        !before.last().is_some_and(|b| is_word_byte(*b))
            && !after.first().is_some_and(|b| is_word_byte(*b))
    })
}

/// Whether the line is about the identity client: `identity` as a span, target, host or word,
/// but not inside a workload identity name (`web.ns.serviceaccount.identity.linkerd.…`).
fn about_identity(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices("identity")
        .any(|(at, _)| at == 0 || bytes[at - 1] != b'.')
}

/// The fatal alerts the line reports: (sent, received).
fn alerts(text: &str) -> (Option<AlertName>, Option<AlertName>) {
    const FATAL_ALERT: &str = "fatal alert";
    let (mut sent, mut received) = (None, None);
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices(FATAL_ALERT) {
        let before = &bytes[..at];
        let ends_with = |word: &[u8]| {
            before.len() >= word.len()
                && before[before.len() - word.len()..].eq_ignore_ascii_case(word)
        };
        let slot = if ends_with(b"sending ") {
            &mut sent
        } else if ends_with(b"received ") {
            &mut received
        } else {
            continue;
        };
        let after = &bytes[at + FATAL_ALERT.len()..];
        let name_at = after
            .iter()
            .position(|b| *b != b':' && *b != b' ')
            .unwrap_or(after.len());
        if slot.is_none() {
            *slot = AlertName::read_prefix(&after[name_at..]);
        }
    }
    (sent, received)
}

/// Rule 3: `endpoint{addr=…}`, else `proxy{addr=…}`, else `error=endpoint …`, else `peer.addr=…`
/// (or `client.addr=…`, its name in newer proxies), whose port is ephemeral. An unspecified
/// address (`0.0.0.0:0`) names no peer, and the next source is tried.
fn find_peer(text: &str) -> Option<Peer> {
    let fixed = |addr| Peer {
        addr,
        ephemeral_port: false,
    };
    let ephemeral = |addr| Peer {
        addr,
        ephemeral_port: true,
    };
    span_addr(text, "endpoint{")
        .map(fixed)
        .or_else(|| span_addr(text, "proxy{").map(fixed))
        .or_else(|| field_addr(text, "error=endpoint ").map(fixed))
        .or_else(|| field_addr(text, "peer.addr=").map(ephemeral))
        .or_else(|| field_addr(text, "client.addr=").map(ephemeral))
}

/// The `addr` field of the first span `open` (`name{`) that has a usable one.
fn span_addr(text: &str, open: &str) -> Option<SocketAddr> {
    let bytes = text.as_bytes();
    text.match_indices(open).find_map(|(at, _)| {
        if at > 0 && (is_word_byte(bytes[at - 1]) || bytes[at - 1] == b'.') {
            return None;
        }
        let fields = &text[at + open.len()..];
        let fields = &fields[..fields.find('}')?];
        fields
            .split(' ')
            .find_map(|field| field.strip_prefix("addr="))
            .and_then(peer_addr)
    })
}

/// The address after the first occurrence of `key` that starts a field and has a usable one.
fn field_addr(text: &str, key: &str) -> Option<SocketAddr> {
    let bytes = text.as_bytes();
    text.match_indices(key).find_map(|(at, _)| {
        if at > 0 && (is_word_byte(bytes[at - 1]) || bytes[at - 1] == b'.') {
            return None;
        }
        peer_addr(&text[at + key.len()..])
    })
}

/// The socket address at the start of `text` (`10.1.2.3:8080`, `[fd00::1]:8080`), ignoring the
/// `:` that ends a span list or an error prefix; `None` for an unspecified one.
fn peer_addr(text: &str) -> Option<SocketAddr> {
    let len = text
        .bytes()
        .take_while(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'[' | b']'))
        .count();
    let addr: SocketAddr = text[..len].trim_end_matches(':').parse().ok()?;
    (!addr.ip().is_unspecified() && addr.port() != 0).then_some(addr)
}
