//! PEM text: a tolerant scanner for messy or corrupt text, and `{{LABEL}}` substitution.

use base64::Engine;
use std::collections::BTreeMap;

/// One `-----BEGIN <label>----- … -----END <label>-----` block found in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemBlock {
    /// The label, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded body; `None` when the base64 does not decode or the block has no END line.
    pub der: Option<Vec<u8>>,
}

/// Every PEM block in `text`, in order; text outside blocks is ignored. Blocks may share a line
/// with other text (e.g. `-----END CERTIFICATE----------BEGIN CERTIFICATE-----`).
pub fn pem_blocks(text: &str) -> Vec<PemBlock> {
    const BEGIN: &str = "-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after_begin = &rest[start + BEGIN.len()..];
        let Some(label_end) = after_begin.find("-----") else {
            break;
        };
        let label = &after_begin[..label_end];
        if label.contains('\n') {
            rest = after_begin;
            continue;
        }
        let body_and_more = &after_begin[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        // A BEGIN before the END means this block was never closed.
        let next_begin = body_and_more.find(BEGIN);
        match body_and_more.find(&end_marker) {
            Some(end) if next_begin.is_none_or(|b| b > end) => {
                let body: String = body_and_more[..end]
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(body.as_bytes())
                    .ok()
                    .filter(|d| !d.is_empty());
                blocks.push(PemBlock {
                    label: label.to_string(),
                    der,
                });
                rest = &body_and_more[end + end_marker.len()..];
            }
            _ => {
                blocks.push(PemBlock {
                    label: label.to_string(),
                    der: None,
                });
                rest = body_and_more;
            }
        }
    }
    blocks
}

/// DER of every `CERTIFICATE` block of `text` that decodes, in order.
pub fn certificate_ders(text: &str) -> Vec<Vec<u8>> {
    pem_blocks(text)
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .filter_map(|b| b.der)
        .collect()
}

/// Labels named by `{{LABEL}}` placeholders in `text`; an error for a `{{` without `}}`.
pub fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let inner = &rest[open + 2..];
        let Some(close) = inner.find("}}") else {
            return Err("`{{` without a closing `}}`".to_string());
        };
        out.push(&inner[..close]);
        rest = &inner[close + 2..];
    }
    Ok(out)
}

/// Replaces every `{{LABEL}}` with `pems[LABEL]` minus its final line break, so the text written
/// around the placeholder decides what follows the END line.
pub fn substitute(text: &str, pems: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let inner = &rest[open + 2..];
        let Some(close) = inner.find("}}") else {
            return Err("`{{` without a closing `}}`".to_string());
        };
        let label = &inner[..close];
        let pem = pems
            .get(label)
            .ok_or_else(|| format!("`{{{{{label}}}}}` names no generated certificate"))?;
        out.push_str(pem.strip_suffix('\n').unwrap_or(pem));
        rest = &inner[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Concatenates texts, one after the other, with a line break between two of them when the first
/// does not already end with one.
pub fn join_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for t in texts {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(t);
    }
    out
}
