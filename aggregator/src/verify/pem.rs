//! Trust bundles and chains as PEM text, the way they sit in a ConfigMap, a Secret or the
//! proxy's `LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS` env var.

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

use super::{CertError, Fingerprint, ParsedCert, parse_der};

/// The certificates of a PEM text.
#[derive(Debug, Clone, Default)]
pub struct PemBundle {
    /// Readable certificates in order of first appearance, each fingerprint once.
    pub certs: Vec<Arc<ParsedCert>>,
    /// `CERTIFICATE` blocks that could not be read.
    pub unreadable: Vec<UnreadableBlock>,
    /// Repeated certificates (same fingerprint) that were counted once.
    pub duplicates: usize,
    /// Labels of the other PEM blocks (`PRIVATE KEY`, …), which were skipped.
    pub skipped: Vec<String>,
}

/// A `CERTIFICATE` block that does not yield a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CERTIFICATE block {index} (line {line}): {error}")]
pub struct UnreadableBlock {
    /// 1-based position among the text's `CERTIFICATE` blocks.
    pub index: usize,
    /// 1-based line of its `-----BEGIN` marker.
    pub line: usize,
    /// What is wrong with it.
    pub error: PemError,
}

/// Why a `CERTIFICATE` block is unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// The body is not base64.
    #[error("invalid base64: {0}")]
    Base64(String),
    /// The body is empty.
    #[error("empty block")]
    Empty,
    /// The block has no matching `-----END CERTIFICATE-----`.
    #[error("no END CERTIFICATE marker")]
    MissingEnd,
    /// The bytes are not a certificate.
    #[error(transparent)]
    Certificate(#[from] CertError),
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";

/// Lenient about padding and line length; strict about the alphabet.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Reads every `CERTIFICATE` block of `text`.
///
/// Text outside PEM blocks is ignored, line endings may be LF or CRLF (or absent, for a
/// bundle squashed onto one line), blocks with other labels are skipped, a certificate
/// repeated (same fingerprint) is kept once, and a `CERTIFICATE` block that fails base64 or DER
/// parsing is reported with its position. Never panics.
pub fn parse_pem_bundle(text: &str) -> PemBundle {
    let mut bundle = PemBundle::default();
    let mut seen = HashSet::<Fingerprint>::new();
    let mut index = 0;
    let mut pos = 0;

    while let Some(found) = text[pos..].find(BEGIN) {
        let begin = pos + found;
        let label_start = begin + BEGIN.len();
        let Some(label_len) = text[label_start..].find(DASHES) else {
            break;
        };
        let label = &text[label_start..label_start + label_len];
        if label.contains(['\n', '\r']) {
            // Not a marker after all.
            pos = label_start;
            continue;
        }
        let body_start = label_start + label_len + DASHES.len();
        let line = text[..begin].matches('\n').count() + 1;
        let is_certificate = label.trim() == "CERTIFICATE";
        if is_certificate {
            index += 1;
        }

        // The block ends at its END marker, unless another BEGIN comes first.
        let next_begin = text[body_start..].find(BEGIN).map(|i| body_start + i);
        let end = text[body_start..]
            .find(END)
            .map(|i| body_start + i)
            .filter(|&e| next_begin.is_none_or(|b| e < b));
        let Some(end) = end else {
            if is_certificate {
                bundle.unreadable.push(UnreadableBlock {
                    index,
                    line,
                    error: PemError::MissingEnd,
                });
            }
            pos = next_begin.unwrap_or(text.len());
            continue;
        };
        let end_label_start = end + END.len();
        let end_label_len = text[end_label_start..].find(DASHES);
        let end_label = end_label_len.map(|len| &text[end_label_start..end_label_start + len]);
        pos = end_label_len.map_or(end_label_start, |len| end_label_start + len + DASHES.len());

        if !is_certificate {
            bundle.skipped.push(label.trim().to_owned());
            continue;
        }
        if end_label.map(str::trim) != Some("CERTIFICATE") {
            bundle.unreadable.push(UnreadableBlock {
                index,
                line,
                error: PemError::MissingEnd,
            });
            continue;
        }
        match read_certificate(&text[body_start..end]) {
            Ok(cert) => {
                if seen.insert(cert.fingerprint) {
                    bundle.certs.push(Arc::new(cert));
                } else {
                    bundle.duplicates += 1;
                }
            }
            Err(error) => bundle
                .unreadable
                .push(UnreadableBlock { index, line, error }),
        }
    }
    bundle
}

fn read_certificate(body: &str) -> Result<ParsedCert, PemError> {
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(PemError::Empty);
    }
    let der = BASE64
        .decode(compact.as_bytes())
        .map_err(|e| PemError::Base64(e.to_string()))?;
    Ok(parse_der(&der)?)
}

/// Encodes DER certificates as PEM text (64-column lines, LF), for tests and reports.
pub fn to_pem<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut out = String::new();
    for der in ders {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = general_purpose::STANDARD.encode(der);
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}
