//! The object store: every kind's objects as JSON values keyed by namespace and name, one
//! global monotonically increasing resourceVersion, and a bounded history of changes that
//! watches replay and follow through a broadcast channel.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::resource::ResourceType;
use super::status::ApiError;

/// `(namespace, name)`; the namespace is empty for cluster-scoped kinds.
pub(crate) type ObjectKey = (String, String);

/// One change to one object, as kept in the history and sent to watches.
#[derive(Debug)]
pub(crate) struct Change {
    /// The resourceVersion the change produced.
    pub(crate) resource_version: u64,
    /// [`ResourceType::group_resource`] of the object.
    pub(crate) resource: String,
    /// The object after the change; `None` when it was deleted.
    pub(crate) object: Option<Value>,
    /// The object before the change; `None` when it was created.
    pub(crate) previous: Option<Value>,
}

/// How [`Store::put`] treats an existing object.
#[derive(Debug)]
pub(crate) enum Put {
    /// Fails with 409 AlreadyExists if the object exists.
    Create,
    /// Fails with 404 if the object is missing, and with 409 Conflict if `expected` is set and
    /// differs from the stored resourceVersion.
    Replace { expected: Option<String> },
    /// Creates or replaces, no questions asked (in-process writes).
    Apply,
}

/// All objects and their history.
pub(crate) struct Store {
    types: Vec<Arc<ResourceType>>,
    objects: HashMap<String, BTreeMap<ObjectKey, Value>>,
    resource_version: u64,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Every change with a resourceVersion above this one is still in `history`.
    history_start: u64,
    serial: u64,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Store {
    /// An empty store with the built-in kinds registered.
    pub(crate) fn new(history_limit: usize, channel_capacity: usize) -> Self {
        let (changes, _) = broadcast::channel(channel_capacity.max(1));
        let mut store = Store {
            types: Vec::new(),
            objects: HashMap::new(),
            resource_version: 1,
            history: VecDeque::new(),
            history_limit,
            history_start: 1,
            serial: 0,
            changes,
        };
        for rt in super::resource::builtin() {
            store.register(rt);
        }
        store
    }

    /// Adds a kind, or replaces the description of a kind with the same group and plural.
    pub(crate) fn register(&mut self, rt: ResourceType) -> Arc<ResourceType> {
        let rt = Arc::new(rt);
        match self
            .types
            .iter_mut()
            .find(|known| known.group == rt.group && known.plural == rt.plural)
        {
            Some(known) => *known = rt.clone(),
            None => self.types.push(rt.clone()),
        }
        rt
    }

    /// All registered kinds.
    pub(crate) fn types(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    /// The kind served at `group/version/plural`.
    pub(crate) fn find(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|rt| rt.group == group && rt.version == version && rt.plural == plural)
            .cloned()
    }

    /// The kind with this `apiVersion` and `kind`.
    pub(crate) fn find_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|rt| rt.kind == kind && rt.api_version() == api_version)
            .cloned()
    }

    /// The newest resourceVersion.
    pub(crate) fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// A receiver of every change made after this call.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// The stored object.
    pub(crate) fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&rt.group_resource())?
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// All objects of a kind, ordered by namespace and name.
    pub(crate) fn objects(&self, rt: &ResourceType) -> impl Iterator<Item = (&ObjectKey, &Value)> {
        self.objects.get(&rt.group_resource()).into_iter().flatten()
    }

    /// The objects of a kind as they were at `resource_version`, rebuilt by undoing newer
    /// changes; 410 Expired if the history no longer reaches back that far.
    pub(crate) fn snapshot_at(
        &self,
        rt: &ResourceType,
        resource_version: u64,
    ) -> Result<BTreeMap<ObjectKey, Value>, ApiError> {
        let mut state: BTreeMap<ObjectKey, Value> = self
            .objects(rt)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if resource_version >= self.resource_version {
            return Ok(state);
        }
        if resource_version < self.history_start {
            return Err(ApiError::expired(format!(
                "too old resource version: {resource_version} ({})",
                self.history_start
            )));
        }
        let resource = rt.group_resource();
        for change in self.history.iter().rev() {
            if change.resource_version <= resource_version {
                break;
            }
            if change.resource != resource {
                continue;
            }
            let Some(key) = change
                .object
                .as_ref()
                .or(change.previous.as_ref())
                .map(object_key)
            else {
                continue;
            };
            match &change.previous {
                Some(previous) => state.insert(key, previous.clone()),
                None => state.remove(&key),
            };
        }
        Ok(state)
    }

    /// The changes after `resource_version`, or `Err(oldest)` with the oldest resourceVersion
    /// a watch may still start from if the history no longer reaches back that far.
    pub(crate) fn changes_since(&self, resource_version: u64) -> Result<Vec<Arc<Change>>, u64> {
        if resource_version < self.history_start {
            return Err(self.history_start);
        }
        let first = self
            .history
            .partition_point(|change| change.resource_version <= resource_version);
        Ok(self.history.range(first..).cloned().collect())
    }

    /// Forgets the whole history, as an etcd compaction does: watches and paginated lists from
    /// any earlier resourceVersion then get 410 Gone.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.history_start = self.resource_version;
    }

    /// Writes an object of kind `rt`, stamping `apiVersion`, `kind`, `metadata.namespace`,
    /// `metadata.uid`, `metadata.creationTimestamp` and a new `metadata.resourceVersion`.
    /// `namespace` is the namespace of the request path, if any.
    pub(crate) fn put(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        object: Value,
        mode: Put,
    ) -> Result<Value, ApiError> {
        let Value::Object(mut map) = object else {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        };
        map.insert("apiVersion".to_string(), json!(rt.api_version()));
        map.insert("kind".to_string(), json!(rt.kind));
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(meta) = meta else {
            return Err(ApiError::bad_request("metadata must be a JSON object"));
        };
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if prefix.is_empty() || !matches!(mode, Put::Create) {
                return Err(ApiError::invalid(
                    rt,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            self.serial += 1;
            name = format!("{prefix}{}", generated_suffix(self.serial));
            meta.insert("name".to_string(), json!(name));
        }
        if name == "." || name == ".." || name.contains('/') || name.contains('%') {
            return Err(ApiError::invalid(
                rt,
                &name,
                "metadata.name: Invalid value: may not contain '/' or '%' and may not be '.' or '..'",
            ));
        }
        let namespace = if rt.namespaced {
            let body_namespace = meta
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let namespace = match (namespace, body_namespace) {
                (Some(path), "") => path.to_string(),
                (Some(path), body) if path != body => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                (_, "") => "default".to_string(),
                (_, body) => body.to_string(),
            };
            meta.insert("namespace".to_string(), json!(namespace));
            namespace
        } else {
            meta.remove("namespace");
            String::new()
        };
        let key = (namespace, name.clone());
        let resource = rt.group_resource();
        let existing = self
            .objects
            .get(&resource)
            .and_then(|objects| objects.get(&key));
        match (&mode, existing) {
            (Put::Create, Some(_)) => return Err(ApiError::already_exists(rt, &name)),
            (Put::Replace { .. }, None) => return Err(ApiError::not_found(rt, &name)),
            (
                Put::Replace {
                    expected: Some(expected),
                },
                Some(existing),
            ) if !expected.is_empty()
                && Some(expected.as_str()) != resource_version_of(existing) =>
            {
                return Err(ApiError::conflict(
                    rt,
                    &name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            _ => {}
        }
        let existing_meta = existing.and_then(|existing| existing.get("metadata"));
        for (field, fresh) in [("uid", None), ("creationTimestamp", Some(now_rfc3339()))] {
            let kept = existing_meta
                .and_then(|existing| existing.get(field))
                .cloned();
            let given = meta
                .get(field)
                .filter(|value| value.as_str().is_some_and(|s| !s.is_empty()));
            let value = match (kept, given) {
                (Some(kept), _) => kept,
                (None, Some(given)) => given.clone(),
                (None, None) => match fresh {
                    Some(fresh) => json!(fresh),
                    None => {
                        self.serial += 1;
                        json!(generated_uid(self.serial))
                    }
                },
            };
            meta.insert(field.to_string(), value);
        }
        let resource_version = self.resource_version + 1;
        meta.insert(
            "resourceVersion".to_string(),
            json!(resource_version.to_string()),
        );
        let object = Value::Object(map);
        let previous = self
            .objects
            .entry(resource.clone())
            .or_default()
            .insert(key, object.clone());
        self.resource_version = resource_version;
        self.record(Change {
            resource_version,
            resource,
            object: Some(object.clone()),
            previous,
        });
        Ok(object)
    }

    /// Deletes an object; returns it as last stored, with the deletion's resourceVersion.
    pub(crate) fn remove(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let resource = rt.group_resource();
        let key = (namespace.to_string(), name.to_string());
        let Some(previous) = self
            .objects
            .get_mut(&resource)
            .and_then(|objects| objects.remove(&key))
        else {
            return Err(ApiError::not_found(rt, name));
        };
        let resource_version = self.resource_version + 1;
        self.resource_version = resource_version;
        let mut gone = previous.clone();
        set_resource_version(&mut gone, resource_version);
        self.record(Change {
            resource_version,
            resource,
            object: None,
            previous: Some(previous),
        });
        Ok(gone)
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            match self.history.pop_front() {
                Some(evicted) => self.history_start = evicted.resource_version,
                None => break,
            }
        }
        // An error only means that nobody is watching.
        let _ = self.changes.send(change);
    }
}

/// The `(namespace, name)` of a stored object.
pub(crate) fn object_key(object: &Value) -> ObjectKey {
    let field = |name: &str| {
        object
            .get("metadata")
            .and_then(|meta| meta.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (field("namespace"), field("name"))
}

/// `metadata.resourceVersion` of an object.
pub(crate) fn resource_version_of(object: &Value) -> Option<&str> {
    object.get("metadata")?.get("resourceVersion")?.as_str()
}

/// Sets `metadata.resourceVersion`.
pub(crate) fn set_resource_version(object: &mut Value, resource_version: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".to_string(),
            json!(resource_version.to_string()),
        );
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64)
}

/// A fresh RFC 4122-shaped (version 4) UID.
fn generated_uid(serial: u64) -> String {
    let high = mix(clock_seed() ^ serial.rotate_left(32));
    let low = mix(high ^ serial);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0x0fff,
        0x8000 | (low >> 48 & 0x3fff),
        low & 0xffff_ffff_ffff
    )
}

/// A five-character suffix for `generateName`, from the API server's alphabet.
fn generated_suffix(serial: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bits = mix(clock_seed() ^ serial);
    (0..5)
        .map(|_| {
            let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize];
            bits /= ALPHABET.len() as u64;
            char::from(c)
        })
        .collect()
}

/// splitmix64.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
