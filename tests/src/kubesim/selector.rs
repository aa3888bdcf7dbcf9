//! Field and label selectors, parsed and matched the way the API server does.

use serde_json::Value;

use super::resource::ResourceType;

/// A conjunction of `field=value`, `field==value` and `field!=value` terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    terms: Vec<FieldTerm>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    value: String,
    equal: bool,
}

impl FieldSelector {
    /// Parses a selector; an empty string selects everything.
    pub(crate) fn parse(selector: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in split_unescaped_commas(selector) {
            if part.is_empty() {
                continue;
            }
            let Some((field, equal, raw_value)) = split_field_term(&part) else {
                return Err(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                ));
            };
            let value = unescape_field_value(raw_value)?;
            terms.push(FieldTerm {
                field: field.trim().to_string(),
                value,
                equal,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// Fails with the API server's message if a term uses a field label the kind does not
    /// support.
    pub(crate) fn check_supported(&self, rt: &ResourceType) -> Result<(), String> {
        match self
            .terms
            .iter()
            .find(|term| !rt.supports_field(&term.field))
        {
            Some(term) => Err(format!("field label not supported: {}", term.field)),
            None => Ok(()),
        }
    }

    /// Whether `object` satisfies every term.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.terms
            .iter()
            .all(|term| (field_value(object, &term.field) == term.value) == term.equal)
    }
}

/// Splits at commas not escaped with a backslash, keeping escapes in the parts.
fn split_unescaped_commas(selector: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = selector.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            ',' => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// Splits `field<op>value` at the first operator (`!=`, `==`, `=`).
fn split_field_term(term: &str) -> Option<(&str, bool, &str)> {
    for (index, _) in term.char_indices() {
        let rest = &term[index..];
        for (operator, equal) in [("!=", false), ("==", true), ("=", true)] {
            if let Some(value) = rest.strip_prefix(operator) {
                return Some((&term[..index], equal, value));
            }
        }
    }
    None
}

fn unescape_field_value(raw: &str) -> Result<String, String> {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next() {
            Some(escaped @ ('\\' | ',' | '=')) => value.push(escaped),
            Some(other) => {
                return Err(format!(
                    "invalid field selector: invalid escape sequence: \\{other}"
                ));
            }
            None => return Err("invalid field selector: unterminated escape sequence".to_string()),
        }
    }
    Ok(value)
}

/// The string value of a field label as the API server computes it: missing fields are empty,
/// booleans `true`/`false`.
pub(crate) fn field_value(object: &Value, field: &str) -> String {
    let path = match field {
        // core/v1 Events expose `source` as the reporting component.
        "source" => "source.component",
        other => other,
    };
    let mut current = Some(object);
    for segment in path.split('.') {
        current = current.and_then(|value| value.get(segment));
    }
    match current {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Bool(flag)) => flag.to_string(),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::Null) | None => match field {
            "spec.hostNetwork" | "spec.unschedulable" => "false".to_string(),
            _ => String::new(),
        },
        Some(other) => other.to_string(),
    }
}

/// A conjunction of label requirements (`k=v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
/// `k notin (a,b)`, `k>1`, `k<1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelRequirement {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    GreaterThan(String, i64),
    LessThan(String, i64),
}

impl LabelSelector {
    /// Parses a selector; an empty string selects everything.
    pub(crate) fn parse(selector: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level_commas(selector)? {
            let part = part.trim();
            if part.is_empty() {
                if selector.trim().is_empty() {
                    continue;
                }
                return Err(format!(
                    "unable to parse requirement: empty requirement in '{selector}'"
                ));
            }
            requirements.push(parse_label_requirement(part)?);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether `object`'s `metadata.labels` satisfy every requirement.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        let labels = object.get("metadata").and_then(|meta| meta.get("labels"));
        let label = |key: &str| {
            labels
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
        };
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                LabelRequirement::Exists(key) => label(key).is_some(),
                LabelRequirement::NotExists(key) => label(key).is_none(),
                LabelRequirement::In(key, values) => {
                    label(key).is_some_and(|value| values.iter().any(|v| v == value))
                }
                LabelRequirement::NotIn(key, values) => {
                    label(key).is_none_or(|value| values.iter().all(|v| v != value))
                }
                LabelRequirement::GreaterThan(key, bound) => label(key)
                    .and_then(|value| value.parse::<i64>().ok())
                    .is_some_and(|value| value > *bound),
                LabelRequirement::LessThan(key, bound) => label(key)
                    .and_then(|value| value.parse::<i64>().ok())
                    .is_some_and(|value| value < *bound),
            })
    }
}

/// Splits at commas outside parentheses.
fn split_top_level_commas(selector: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1).ok_or_else(|| {
                    format!("unable to parse requirement: unbalanced ')' in '{selector}'")
                })?;
            }
            ',' if depth == 0 => {
                parts.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!(
            "unable to parse requirement: unbalanced '(' in '{selector}'"
        ));
    }
    parts.push(&selector[start..]);
    Ok(parts)
}

fn parse_label_requirement(part: &str) -> Result<LabelRequirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        validate_label_key(key)?;
        return Ok(LabelRequirement::NotExists(key.to_string()));
    }
    let key_end = part
        .char_indices()
        .find(|(_, c)| !is_label_key_char(*c))
        .map_or(part.len(), |(index, _)| index);
    let key = &part[..key_end];
    validate_label_key(key)?;
    let key = key.to_string();
    let rest = part[key_end..].trim_start();
    if rest.is_empty() {
        return Ok(LabelRequirement::Exists(key));
    }
    let single = |value: &str| -> Result<Vec<String>, String> {
        let value = value.trim();
        validate_label_value(value)?;
        Ok(vec![value.to_string()])
    };
    if let Some(value) = rest.strip_prefix("!=") {
        return Ok(LabelRequirement::NotIn(key, single(value)?));
    }
    if let Some(value) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        return Ok(LabelRequirement::In(key, single(value)?));
    }
    let bound = |value: &str| -> Result<i64, String> {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer: '{part}'"))
    };
    if let Some(value) = rest.strip_prefix('>') {
        return Ok(LabelRequirement::GreaterThan(key, bound(value)?));
    }
    if let Some(value) = rest.strip_prefix('<') {
        return Ok(LabelRequirement::LessThan(key, bound(value)?));
    }
    if let Some(set) = rest.strip_prefix("notin") {
        return Ok(LabelRequirement::NotIn(key, parse_label_set(set, part)?));
    }
    if let Some(set) = rest.strip_prefix("in") {
        return Ok(LabelRequirement::In(key, parse_label_set(set, part)?));
    }
    Err(format!(
        "unable to parse requirement: found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
    ))
}

fn parse_label_set(set: &str, part: &str) -> Result<Vec<String>, String> {
    let inner = set
        .trim()
        .strip_prefix('(')
        .and_then(|set| set.strip_suffix(')'))
        .ok_or_else(|| {
            format!(
                "unable to parse requirement: expected a parenthesised set of values in '{part}'"
            )
        })?;
    let mut values = Vec::new();
    for value in inner.split(',') {
        let value = value.trim();
        validate_label_value(value)?;
        values.push(value.to_string());
    }
    Ok(values)
}

fn is_label_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|prefix| {
        !prefix.is_empty()
            && prefix.len() <= 253
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
    });
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label key \"{key}\""
        ))
    }
}

fn validate_label_value(value: &str) -> Result<(), String> {
    let ok = value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unable to parse requirement: invalid label value: \"{value}\""
        ))
    }
}

/// What a list or watch selects: a namespace (or all) and the selectors.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    /// Only objects in this namespace, if set.
    pub(crate) namespace: Option<String>,
    /// The field selector.
    pub(crate) fields: FieldSelector,
    /// The label selector.
    pub(crate) labels: LabelSelector,
}

impl Filter {
    /// Whether `object` is selected.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        let namespace_ok = self.namespace.as_deref().is_none_or(|namespace| {
            object
                .get("metadata")
                .and_then(|meta| meta.get("namespace"))
                .and_then(Value::as_str)
                == Some(namespace)
        });
        namespace_ok && self.fields.matches(object) && self.labels.matches(object)
    }
}
