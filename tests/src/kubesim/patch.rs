//! PATCH bodies: JSON merge patch (RFC 7396), JSON patch (RFC 6902), and approximations of
//! strategic merge patch and server-side apply.

use serde_json::{Map, Value};

/// The patch formats the server reads, by `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`: lists of objects are merged by `name`
    /// (or `type` for conditions, `containerPort` for ports) instead of replaced.
    Strategic,
    /// `application/json-patch+json`.
    Json,
    /// `application/apply-patch+yaml`: merged like a strategic merge patch, creating the object
    /// if it is missing.
    Apply,
}

impl PatchKind {
    /// The kind for a `Content-Type` value, parameters ignored.
    pub(crate) fn from_content_type(content_type: &str) -> Option<Self> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        match media_type.to_ascii_lowercase().as_str() {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Applies an RFC 7396 merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Applies a strategic merge patch, approximately: like a merge patch, but lists whose elements
/// are objects sharing a merge key are merged element by element, `$patch: delete` removes an
/// element, and other `$` directives are dropped.
pub(crate) fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if key.starts_with('$') {
                    continue;
                }
                if value.is_null() {
                    target.remove(key);
                    continue;
                }
                match target.get_mut(key) {
                    Some(existing) => strategic_merge_patch(existing, value),
                    None => {
                        let mut fresh = Value::Null;
                        strategic_merge_patch(&mut fresh, value);
                        target.insert(key.clone(), fresh);
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(patch)) => match merge_key(target, patch) {
            Some(key) => merge_list(target, patch, key),
            None => {
                *target = patch
                    .iter()
                    .filter(|item| !is_delete_directive(item))
                    .cloned()
                    .collect()
            }
        },
        (target, patch) => {
            *target = strip_directives(patch);
        }
    }
}

fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, value)| !key.starts_with('$') && !value.is_null())
                .map(|(key, value)| (key.clone(), strip_directives(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn is_delete_directive(item: &Value) -> bool {
    item.get("$patch").and_then(Value::as_str) == Some("delete")
}

/// The merge key shared by every object in both lists, if any.
fn merge_key(target: &[Value], patch: &[Value]) -> Option<&'static str> {
    ["name", "type", "containerPort", "uid", "ip"]
        .into_iter()
        .find(|key| {
            !patch.is_empty()
                && target
                    .iter()
                    .chain(patch)
                    .all(|item| item.get(*key).is_some_and(|value| !value.is_null()))
        })
}

fn merge_list(target: &mut Vec<Value>, patch: &[Value], key: &str) {
    for item in patch {
        let position = target
            .iter()
            .position(|existing| existing.get(key) == item.get(key));
        match (position, is_delete_directive(item)) {
            (Some(position), true) => {
                target.remove(position);
            }
            (None, true) => {}
            (Some(position), false) => strategic_merge_patch(&mut target[position], item),
            (None, false) => target.push(strip_directives(item)),
        }
    }
}

/// Applies an RFC 6902 JSON patch.
pub(crate) fn json_patch(target: &mut Value, operations: &Value) -> Result<(), String> {
    let Value::Array(operations) = operations else {
        return Err("a JSON patch must be an array of operations".to_string());
    };
    for operation in operations {
        let op = operation
            .get("op")
            .and_then(Value::as_str)
            .ok_or("a JSON patch operation needs an \"op\"")?;
        let path = operation
            .get("path")
            .and_then(Value::as_str)
            .ok_or("a JSON patch operation needs a \"path\"")?;
        let value = || {
            operation
                .get("value")
                .cloned()
                .ok_or_else(|| format!("the \"{op}\" operation needs a \"value\""))
        };
        let from = || {
            operation
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the \"{op}\" operation needs a \"from\""))
        };
        match op {
            "add" => add(target, path, value()?)?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, value()?)?;
            }
            "move" => {
                let moved = remove(target, from()?)?;
                add(target, path, moved)?;
            }
            "copy" => {
                let copied = target
                    .pointer(from()?)
                    .cloned()
                    .ok_or_else(|| format!("no value at path {:?}", from().unwrap_or_default()))?;
                add(target, path, copied)?;
            }
            "test" => {
                if target.pointer(path) != Some(&value()?) {
                    return Err(format!("test failed at path {path:?}"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

/// Splits a JSON pointer into its parent pointer and unescaped last token.
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    let index = path
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    let token = path[index + 1..].replace("~1", "/").replace("~0", "~");
    Ok((&path[..index], token))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, token) = split_pointer(path)?;
    match target.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(token, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let index = if token == "-" {
                items.len()
            } else {
                token
                    .parse::<usize>()
                    .ok()
                    .filter(|index| *index <= items.len())
                    .ok_or_else(|| format!("invalid array index in path {path:?}"))?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!("no object or array at the parent of path {path:?}")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, token) = split_pointer(path)?;
    let removed = match target.pointer_mut(parent) {
        Some(Value::Object(map)) => map.remove(&token),
        Some(Value::Array(items)) => token
            .parse::<usize>()
            .ok()
            .filter(|index| *index < items.len())
            .map(|index| items.remove(index)),
        _ => None,
    };
    removed.ok_or_else(|| format!("no value at path {path:?}"))
}
