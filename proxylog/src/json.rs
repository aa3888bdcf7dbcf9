//! Proxy messages in tracing-subscriber's JSON format (`LINKERD2_PROXY_LOG_FORMAT=json`).
//!
//! ```text
//! {"timestamp":"…","level":"WARN","fields":{"message":"Failed to connect","error":"endpoint 10.1.2.3:8080: …"},
//!  "target":"linkerd_reconnect","spans":[{"name":"outbound"},{"addr":"10.1.2.3:8080","name":"proxy"}]}
//!     ──►  WARN outbound:proxy{addr=10.1.2.3:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.1.2.3:8080: …
//! ```
//!
//! The object is rendered back into the plain format, so that one set of rules (including the
//! peer rule's `endpoint{addr=…}` and `error=endpoint …`) serves both formats.

#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The plain-format rendering of a tracing-subscriber JSON event, or `None` when `message` is
/// not one (not JSON, not an object, or `fields` is not an object): the caller then treats the
/// message as plain text. Other fields of unexpected types are rendered as JSON or skipped.
pub(crate) fn render_as_plain(message: &str) -> Option<String> {
    let trimmed = message.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    let event: Map<String, Value> = serde_json::from_str(trimmed).ok()?;
    let fields = event.get("fields")?.as_object()?;

    let mut out = String::with_capacity(message.len());
    if let Some(level) = event.get("level").and_then(Value::as_str) {
        out.push_str(level);
        out.push(' ');
    }
    let spans = match (event.get("spans"), event.get("span")) {
        (Some(Value::Array(spans)), _) => spans.iter().collect(),
        (_, Some(span)) => vec![span],
        _ => Vec::new(),
    };
    let mut any_span = false;
    for span in spans.iter().filter_map(|span| span.as_object()) {
        push_span(&mut out, span);
        out.push(':');
        any_span = true;
    }
    if any_span {
        out.push(' ');
    }
    if let Some(target) = event.get("target").and_then(Value::as_str) {
        out.push_str(target);
        out.push_str(": ");
    }
    if let Some(text) = fields.get("message") {
        push_value(&mut out, text);
    }
    // `error` first, as the proxy records it first; then the rest in the map's order.
    let rest = fields
        .iter()
        .filter(|(k, _)| *k != "message" && *k != "error");
    for (key, value) in fields.get_key_value("error").into_iter().chain(rest) {
        let _ = write!(out, " {key}=");
        push_value(&mut out, value);
    }
    Some(out)
}

/// `name{key=value …}`, as tracing's plain formatter writes a span.
fn push_span(out: &mut String, span: &Map<String, Value>) {
    out.push_str(span.get("name").and_then(Value::as_str).unwrap_or("span"));
    let mut fields = span.iter().filter(|(key, _)| *key != "name").peekable();
    if fields.peek().is_none() {
        return;
    }
    out.push('{');
    for (i, (key, value)) in fields.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{key}=");
        push_value(out, value);
    }
    out.push('}');
}

/// A string as is, anything else as JSON.
fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::String(text) => out.push_str(text),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}
