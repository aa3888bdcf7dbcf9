//! Reading `kubectl get … -o yaml|json` output: multi-document YAML, `List` objects (whose items
//! may mix kinds) and JSON, streamed so memory stays bounded by the largest single object
//! (`max_object`), never by the size of the file. Each object is handed over as a JSON value with
//! where it came from; what cannot be read is recorded as skipped, in words, and reading goes on.
//!
//! ```text
//!  file ─► bounded lines ─► YAML documents (`---`) ─┬─► a whole document ─► object
//!                                                  └─► `items:` of a List, one item at a time
//!  file ─► JSON (budgeted reader) ─► top-level value; the `items` of a List one at a time
//! ```

use serde::de::{DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Something that was not read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// `file:line` (or `file`).
    pub origin: String,
    /// Why, in words.
    pub why: String,
}

/// One object read, with its origin (`file:line` of its start, or `file` for JSON).
pub type Sink<'a> = dyn FnMut(Value, &str) + 'a;

/// Reads every path: a file, or a folder whose files (sorted, hidden ones left out, not
/// recursing) are read in turn.
pub fn read_paths(paths: &[PathBuf], max_object: usize, sink: &mut Sink<'_>) -> Vec<Skipped> {
    let mut skipped = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(p) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.is_file())
                    .filter(|f| {
                        !f.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with('.'))
                    })
                    .collect(),
                Err(e) => {
                    skipped.push(Skipped {
                        origin: p.display().to_string(),
                        why: format!("cannot read the folder: {e}"),
                    });
                    continue;
                }
            };
            files.sort();
            for f in files {
                read_file(&f, max_object, sink, &mut skipped);
            }
        } else {
            read_file(p, max_object, sink, &mut skipped);
        }
    }
    skipped
}

/// Reads one file (YAML or JSON, told apart by its first non-blank byte).
pub fn read_file(path: &Path, max_object: usize, sink: &mut Sink<'_>, skipped: &mut Vec<Skipped>) {
    let name = path.display().to_string();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            skipped.push(Skipped {
                origin: name,
                why: format!("cannot open: {e}"),
            });
            return;
        }
    };
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let first = loop {
        match r.fill_buf() {
            Ok([]) => break None,
            Ok(buf) => match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => break Some(buf[i]),
                None => {
                    let n = buf.len();
                    r.consume(n);
                }
            },
            Err(e) => {
                skipped.push(Skipped {
                    origin: name,
                    why: format!("cannot read: {e}"),
                });
                return;
            }
        }
    };
    match first {
        None => skipped.push(Skipped {
            origin: name,
            why: "empty file".into(),
        }),
        Some(b'{') | Some(b'[') => read_json(r, &name, max_object, sink, skipped),
        Some(_) => read_yaml(r, &name, max_object, sink, skipped),
    }
}

/// The objects of YAML text (multi-document, `List`s streamed item by item).
pub fn read_yaml(
    mut r: impl BufRead,
    name: &str,
    max_object: usize,
    sink: &mut Sink<'_>,
    skipped: &mut Vec<Skipped>,
) {
    let mut doc = YamlDoc::new(name, max_object, 1);
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        number += 1;
        match bounded_line(&mut r, &mut line, max_object) {
            Ok(Line::End) => break,
            Ok(Line::TooLong) => doc.too_long(number),
            Ok(Line::Read) => {
                let text = match std::str::from_utf8(&line) {
                    Ok(t) => t.trim_end_matches(['\n', '\r']),
                    Err(_) => {
                        doc.binary(number);
                        continue;
                    }
                };
                if text == "---" || text.starts_with("--- ") || text == "..." {
                    doc.finish(sink, skipped);
                    doc = YamlDoc::new(name, max_object, number + 1);
                } else {
                    doc.line(text, number, sink, skipped);
                }
            }
            Err(e) => {
                skipped.push(Skipped {
                    origin: format!("{name}:{number}"),
                    why: format!("cannot read: {e}; the rest of the file is skipped"),
                });
                break;
            }
        }
    }
    doc.finish(sink, skipped);
}

enum Line {
    Read,
    TooLong,
    End,
}

/// Reads one line into `buf`, never holding more than `max` bytes of it: a longer line is
/// consumed and dropped.
fn bounded_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(match (too_long, buf.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::End,
                (false, false) => Line::Read,
            });
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long && buf.len() + take <= max {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            too_long = true;
            buf.clear();
        }
        r.consume(take);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Read });
        }
    }
}

/// One YAML document being read: either whole, or a `List` whose items are handed over one by
/// one as they end.
struct YamlDoc<'n> {
    name: &'n str,
    max: usize,
    /// The document's text outside `items:` (a List's head and tail), or the whole document.
    text: String,
    start: usize,
    /// Inside `items:`: the column of the items' `- ` (set by the first item).
    items: Option<Option<usize>>,
    /// The current item's text and first line.
    item: String,
    item_start: usize,
    /// Items without a `kind`, kept until the List's own kind says theirs (bounded by `max`).
    kindless: Vec<(Value, String)>,
    kindless_bytes: usize,
    /// The current part (document or item) went over the bound, or is not text: skipped.
    spoiled: Option<String>,
}

impl<'n> YamlDoc<'n> {
    fn new(name: &'n str, max: usize, start: usize) -> Self {
        YamlDoc {
            name,
            max,
            text: String::new(),
            start,
            items: None,
            item: String::new(),
            item_start: 0,
            kindless: Vec::new(),
            kindless_bytes: 0,
            spoiled: None,
        }
    }

    fn too_long(&mut self, line: usize) {
        self.spoil(format!(
            "line {line} is longer than the {} limit on one object",
            mib(self.max)
        ));
    }

    fn binary(&mut self, line: usize) {
        self.spoil(format!(
            "line {line} is not UTF-8 text (binary data?), so this is neither YAML nor JSON"
        ));
    }

    fn spoil(&mut self, why: String) {
        if self.spoiled.is_none() {
            self.spoiled = Some(why);
        }
        self.item.clear();
        if self.items.is_none() {
            self.text.clear();
        }
    }

    fn line(&mut self, text: &str, number: usize, sink: &mut Sink<'_>, skipped: &mut Vec<Skipped>) {
        if let Some(column) = self.items {
            let indent = text.len() - text.trim_start_matches(' ').len();
            let rest = &text[indent..];
            let starts_item = rest.starts_with("- ") || rest == "-";
            match column {
                None if starts_item => {
                    self.items = Some(Some(indent));
                    self.start_item(text, indent, number);
                    return;
                }
                Some(c) if starts_item && indent == c => {
                    self.end_item(sink, skipped);
                    self.start_item(text, c, number);
                    return;
                }
                Some(c) if rest.is_empty() || indent > c => {
                    self.push_item_line(text, c + 2);
                    return;
                }
                _ if rest.is_empty() || rest.starts_with('#') => return,
                _ => {
                    // A key at the List's own level: the items have ended.
                    self.end_item(sink, skipped);
                    self.items = None;
                }
            }
        }
        if text == "items:" && self.items.is_none() {
            self.items = Some(None);
            return;
        }
        if self.spoiled.is_some() && self.items.is_none() && self.item_start == 0 {
            return;
        }
        if self.text.len() + text.len() + 1 > self.max {
            self.spoil(format!(
                "the document is larger than the {} limit on one object",
                mib(self.max)
            ));
            return;
        }
        self.text.push_str(text);
        self.text.push('\n');
    }

    fn start_item(&mut self, text: &str, column: usize, number: usize) {
        self.item.clear();
        self.item_start = number;
        self.spoiled = None;
        // `- key: v` becomes `  key: v`, so the item is a mapping at the items' own indent.
        let mut first = String::with_capacity(text.len());
        first.push_str(&" ".repeat(column + 2));
        first.push_str(text[column + 1..].trim_start());
        self.push_item_line(&first, column + 2);
    }

    fn push_item_line(&mut self, text: &str, strip: usize) {
        if self.spoiled.is_some() {
            return;
        }
        let cut = text.len() - text.trim_start_matches(' ').len();
        let body = &text[cut.min(strip)..];
        if self.item.len() + body.len() + 1 > self.max {
            let at = self.item_start;
            self.spoil(format!(
                "the List item starting at line {at} is larger than the {} limit on one object",
                mib(self.max)
            ));
            return;
        }
        self.item.push_str(body);
        self.item.push('\n');
    }

    fn end_item(&mut self, sink: &mut Sink<'_>, skipped: &mut Vec<Skipped>) {
        let origin = format!("{}:{}", self.name, self.item_start);
        if let Some(why) = self.spoiled.take() {
            skipped.push(Skipped { origin, why });
            self.item.clear();
            return;
        }
        if self.item.trim().is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.item);
        match serde_yaml::from_str::<Value>(&text) {
            Ok(v) if v.get("kind").and_then(Value::as_str).is_some() => sink(v, &origin),
            Ok(v) if v.is_object() => {
                if self.kindless_bytes + text.len() > self.max {
                    skipped.push(Skipped {
                        origin,
                        why: "a List item with no kind, and too many such items to keep until the List says their kind".into(),
                    });
                } else {
                    self.kindless_bytes += text.len();
                    self.kindless.push((v, origin));
                }
            }
            Ok(_) => skipped.push(Skipped {
                origin,
                why: "a List item that is not an object".into(),
            }),
            Err(e) => skipped.push(Skipped {
                origin,
                why: format!("not valid YAML: {e}"),
            }),
        }
    }

    fn finish(mut self, sink: &mut Sink<'_>, skipped: &mut Vec<Skipped>) {
        if self.items.is_some() {
            self.end_item(sink, skipped);
        }
        let origin = format!("{}:{}", self.name, self.start);
        if let Some(why) = self.spoiled.take() {
            skipped.push(Skipped { origin, why });
            return;
        }
        let blank = self
            .text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        if blank {
            self.flush_kindless(None, sink, skipped);
            return;
        }
        match serde_yaml::from_str::<Value>(&self.text) {
            Ok(v) => {
                let list_kind = v.get("kind").and_then(Value::as_str).map(str::to_string);
                let had_items = self.item_start != 0 || !self.kindless.is_empty();
                if !had_items {
                    deliver(v, &origin, sink, skipped);
                }
                self.flush_kindless(list_kind.as_deref(), sink, skipped);
            }
            Err(e) => {
                let hint = if self.text.len() < 200 && !self.text.contains(':') {
                    " (is this a Kubernetes dump?)"
                } else {
                    ""
                };
                skipped.push(Skipped {
                    origin,
                    why: format!("not valid YAML{hint}: {e}"),
                });
                self.flush_kindless(None, sink, skipped);
            }
        }
    }

    fn flush_kindless(
        &mut self,
        list_kind: Option<&str>,
        sink: &mut Sink<'_>,
        skipped: &mut Vec<Skipped>,
    ) {
        let item_kind = list_kind
            .and_then(|k| k.strip_suffix("List"))
            .filter(|k| !k.is_empty());
        for (mut v, origin) in self.kindless.drain(..) {
            match (item_kind, v.as_object_mut()) {
                (Some(k), Some(o)) => {
                    o.insert("kind".into(), Value::String(k.into()));
                    sink(v, &origin);
                }
                _ => skipped.push(Skipped {
                    origin,
                    why: "an object with no kind".into(),
                }),
            }
        }
    }
}

/// Hands over one whole object, or the items of a List in it.
fn deliver(v: Value, origin: &str, sink: &mut Sink<'_>, skipped: &mut Vec<Skipped>) {
    let Value::Object(mut o) = v else {
        if !v.is_null() {
            skipped.push(Skipped {
                origin: origin.into(),
                why: "not a Kubernetes object (no mapping with a kind)".into(),
            });
        }
        return;
    };
    let kind = o.get("kind").and_then(Value::as_str).map(str::to_string);
    match (kind, o.remove("items")) {
        (Some(k), Some(Value::Array(items))) if k.ends_with("List") => {
            let item_kind = k.strip_suffix("List").filter(|k| !k.is_empty());
            for (i, mut item) in items.into_iter().enumerate() {
                if let (Some(k), Some(obj)) = (item_kind, item.as_object_mut()) {
                    obj.entry("kind").or_insert_with(|| Value::String(k.into()));
                }
                let at = format!("{origin} item {}", i + 1);
                if item.get("kind").and_then(Value::as_str).is_some() {
                    sink(item, &at);
                } else {
                    skipped.push(Skipped {
                        origin: at,
                        why: "an object with no kind".into(),
                    });
                }
            }
        }
        (Some(_), items) => {
            if let Some(items) = items {
                o.insert("items".into(), items);
            }
            sink(Value::Object(o), origin)
        }
        (None, _) => skipped.push(Skipped {
            origin: origin.into(),
            why: "an object with no kind".into(),
        }),
    }
}

/// The objects of a JSON file: one or more top-level values; a `List`'s items are read one at a
/// time, and no single object may take more than `max_object` bytes of input.
pub fn read_json(
    r: impl Read,
    name: &str,
    max_object: usize,
    sink: &mut Sink<'_>,
    skipped: &mut Vec<Skipped>,
) {
    let budget = Rc::new(Cell::new(0usize));
    let reader = Budgeted {
        inner: r,
        used: budget.clone(),
        max: max_object,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut kindless: Vec<Value> = Vec::new();
    let mut index = 0usize;
    loop {
        index += 1;
        budget.set(0);
        let origin = if index == 1 {
            name.to_string()
        } else {
            format!("{name} value {index}")
        };
        let seed = TopLevel {
            sink: &mut *sink,
            budget: &budget,
            origin: &origin,
            kindless: &mut kindless,
        };
        let result = (&mut de).deserialize_any(seed);
        match result {
            Ok(Some(v)) => deliver(v, &origin, sink, skipped),
            Ok(None) => {}
            Err(e) => {
                let why = if e.is_io() {
                    format!(
                        "an object is larger than the {} limit on one object ({e}); the rest of the file is skipped",
                        mib(max_object)
                    )
                } else if e.is_eof() {
                    format!("the JSON ends early (truncated?): {e}; what came before it was read")
                } else {
                    format!("not valid JSON: {e}; the rest of the file is skipped")
                };
                skipped.push(Skipped { origin, why });
                break;
            }
        }
        if de.end().is_ok() {
            break;
        }
    }
    if !kindless.is_empty() {
        skipped.push(Skipped {
            origin: name.into(),
            why: format!(
                "{} List items with no kind (and at most {KINDLESS_LIMIT} are kept to wait for the List's kind)",
                kindless.len()
            ),
        });
    }
}

/// List items with no kind of their own kept while the List's kind is not known yet.
const KINDLESS_LIMIT: usize = 1024;

/// A reader that fails once more than `max` bytes were read since `used` was last reset: one
/// object can never make the parser buffer more than that.
struct Budgeted<R> {
    inner: R,
    used: Rc<Cell<usize>>,
    max: usize,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.used.get() > self.max {
            return Err(std::io::Error::other("object too large"));
        }
        let n = self.inner.read(buf)?;
        self.used.set(self.used.get() + n);
        Ok(n)
    }
}

/// The top-level JSON value: a List has its items handed to the sink one by one (and is
/// returned without them); anything else is returned whole.
struct TopLevel<'s, 'a> {
    sink: &'s mut Sink<'a>,
    budget: &'s Rc<Cell<usize>>,
    origin: &'s str,
    kindless: &'s mut Vec<Value>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_, '_> {
    type Value = Option<Value>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Kubernetes object or List")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        let mut kind: Option<String> = None;
        let mut streamed = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                streamed = true;
                map.next_value_seed(Items {
                    sink: &mut *self.sink,
                    budget: self.budget,
                    origin: self.origin,
                    kind: kind.as_deref(),
                    kindless: &mut *self.kindless,
                })?;
                continue;
            }
            let v: Value = map.next_value()?;
            if key == "kind" {
                kind = v.as_str().map(str::to_string);
            }
            out.insert(key, v);
        }
        if streamed {
            let item_kind = kind
                .as_deref()
                .and_then(|k| k.strip_suffix("List"))
                .filter(|k| !k.is_empty());
            if let Some(k) = item_kind {
                for mut v in self.kindless.drain(..) {
                    if let Some(o) = v.as_object_mut() {
                        o.insert("kind".into(), Value::String(k.into()));
                    }
                    (self.sink)(v, self.origin);
                }
            }
            return Ok(None);
        }
        Ok(Some(Value::Object(out)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Items {
            sink: self.sink,
            budget: self.budget,
            origin: self.origin,
            kind: None,
            kindless: self.kindless,
        }
        .visit_seq(seq)?;
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some(Value::Null))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Value::String(v.into())))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Value::from(v)))
    }
}

/// The items of a List, each handed over (with the List's item kind when it has none) as soon as
/// it is read.
struct Items<'s, 'a> {
    sink: &'s mut Sink<'a>,
    budget: &'s Rc<Cell<usize>>,
    origin: &'s str,
    kind: Option<&'s str>,
    kindless: &'s mut Vec<Value>,
}

impl<'de> DeserializeSeed<'de> for Items<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of Kubernetes objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let item_kind = self
            .kind
            .and_then(|k| k.strip_suffix("List"))
            .filter(|k| !k.is_empty());
        let mut i = 0usize;
        loop {
            self.budget.set(0);
            let Some(mut item) = seq.next_element::<Value>()? else {
                break;
            };
            i += 1;
            if let (Some(k), Some(o)) = (item_kind, item.as_object_mut()) {
                o.entry("kind").or_insert_with(|| Value::String(k.into()));
            }
            if item.get("kind").and_then(Value::as_str).is_some() {
                (self.sink)(item, &format!("{} item {i}", self.origin));
            } else if self.kindless.len() < KINDLESS_LIMIT {
                // The List's own kind may come after its items: they wait for it, a bounded few.
                self.kindless.push(item);
            }
        }
        Ok(())
    }
}

/// `n` bytes in MiB, for messages.
pub fn mib(n: usize) -> String {
    format!("{} MiB", n / (1024 * 1024))
}
