//! Request routing and the REST verbs: discovery, get, list, watch, create, update, patch,
//! delete and deletecollection under `/api/{version}/...` and `/apis/{group}/{version}/...`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, USER_AGENT};
use http::{Method, StatusCode, Uri};
use serde_json::{Value, json};

use super::patch::{PatchKind, json_patch, merge_patch, strategic_merge_patch};
use super::resource::ResourceType;
use super::selector::{FieldSelector, Filter, LabelSelector};
use super::status::ApiError;
use super::store::{ObjectKey, Put, Store, object_key, resource_version_of};
use super::watch::{self, WatchSpec};
use super::{RecordedRequest, Shared};

/// Largest request body read.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What a request was about, in the terms of Kubernetes authorization.
#[derive(Debug, Default)]
struct Attributes {
    verb: Option<&'static str>,
    api_group: Option<String>,
    resource: Option<String>,
    subresource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

/// The single handler: serves the request and records it.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let user_agent = header(request.headers(), USER_AGENT);
    let accept = header(request.headers(), ACCEPT);
    let mut attributes = Attributes::default();
    let response = dispatch(&shared, request, &mut attributes)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    shared.record(RecordedRequest {
        method,
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        status: response.status(),
        verb: attributes.verb,
        api_group: attributes.api_group,
        resource: attributes.resource,
        subresource: attributes.subresource,
        namespace: attributes.namespace,
        name: attributes.name,
        user_agent,
        accept,
    });
    response
}

fn header(headers: &HeaderMap, name: http::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

async fn dispatch(
    shared: &Arc<Shared>,
    request: Request,
    attributes: &mut Attributes,
) -> Result<Response, ApiError> {
    let uri = request.uri().clone();
    let method = request.method().clone();
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => {
            serve_resource(shared, request, "", version, rest, attributes).await
        }
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            serve_resource(shared, request, group, version, rest, attributes).await
        }
        other => {
            attributes.verb = Some(plain_verb(&method));
            if method != Method::GET {
                return Err(ApiError::method_not_allowed());
            }
            let store = shared.store();
            let document = match other {
                ["version"] => version_info(),
                ["healthz" | "livez" | "readyz"] => return Ok("ok".into_response()),
                ["api"] => json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        { "clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string() }
                    ],
                }),
                ["apis"] => json!({
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": api_groups(&store).into_values().collect::<Vec<_>>(),
                }),
                ["apis", group] => api_groups(&store)
                    .remove(*group)
                    .ok_or_else(ApiError::no_such_path)?,
                ["api", version] => api_resource_list(&store, "", version)?,
                ["apis", group, version] => api_resource_list(&store, group, version)?,
                _ => return Err(ApiError::no_such_path()),
            };
            Ok(Json(document).into_response())
        }
    }
}

/// Where a resource request points.
struct Target {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn resolve(store: &Store, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let target = |rt: Arc<ResourceType>, namespace: Option<&str>, tail: &[&str]| {
        let (name, subresource) = match tail {
            [] => (None, None),
            [name] => (Some(*name), None),
            [name, subresource] => (Some(*name), Some(*subresource)),
            _ => return None,
        };
        Some(Target {
            rt,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: subresource.map(str::to_string),
        })
    };
    if let ["namespaces", namespace, plural, tail @ ..] = rest
        && let Some(rt) = store
            .find(group, version, plural)
            .filter(|rt| rt.namespaced)
    {
        return target(rt, Some(namespace), tail);
    }
    let [plural, tail @ ..] = rest else {
        return None;
    };
    let rt = store.find(group, version, plural)?;
    if rt.namespaced && !tail.is_empty() {
        return None;
    }
    target(rt, None, tail)
}

async fn serve_resource(
    shared: &Arc<Shared>,
    request: Request,
    group: &str,
    version: &str,
    rest: &[&str],
    attributes: &mut Attributes,
) -> Result<Response, ApiError> {
    let (rest, legacy_watch) = match rest {
        ["watch", rest @ ..] => (rest, true),
        _ => (rest, false),
    };
    let method = request.method().clone();
    attributes.verb = Some(plain_verb(&method));
    let target =
        resolve(&shared.store(), group, version, rest).ok_or_else(ApiError::no_such_path)?;
    let params = Params::parse(request.uri());
    let metadata_only = wants_metadata_only(request.headers());
    let watching = legacy_watch || params.as_ref().is_ok_and(|params| params.watch);
    let verb = match (&method, target.name.is_some()) {
        (&Method::GET, _) if watching => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => plain_verb(&method),
    };
    *attributes = Attributes {
        verb: Some(verb),
        api_group: Some(target.rt.group.clone()),
        resource: Some(target.rt.plural.clone()),
        subresource: target.subresource.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    };
    let params = &params?;
    if target
        .subresource
        .as_deref()
        .is_some_and(|subresource| subresource != "status")
    {
        return Err(ApiError::no_such_path());
    }
    if legacy_watch && method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    if params.dry_run && method != Method::GET {
        return Err(ApiError::bad_request(
            "dryRun is not supported by this simulated API server",
        ));
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|error| {
            ApiError::bad_request(format!("unable to read the request body: {error}"))
        })?;
    let rt = target.rt.clone();
    let namespace = target.namespace.as_deref().unwrap_or_default();
    match (verb, target.name.as_deref()) {
        ("watch", name) => {
            let mut filter = selection(&target, params)?;
            if let Some(name) = name {
                // Legacy `/watch/.../{name}` paths watch one object.
                filter.fields = FieldSelector::parse(&format!(
                    "metadata.name={}{}",
                    name.replace('\\', "\\\\")
                        .replace(',', "\\,")
                        .replace('=', "\\="),
                    if params.field_selector.is_empty() {
                        String::new()
                    } else {
                        format!(",{}", params.field_selector)
                    }
                ))
                .map_err(ApiError::bad_request)?;
            }
            let from = params.resource_version.filter(|rv| *rv != 0);
            let initial_events = params
                .send_initial_events
                .unwrap_or(params.resource_version.unwrap_or(0) == 0);
            let spec = WatchSpec {
                rt,
                filter,
                from,
                initial_events,
                initial_events_end: params.send_initial_events == Some(true)
                    && params.allow_watch_bookmarks,
                bookmarks: params.allow_watch_bookmarks,
                metadata_only,
                timeout: params
                    .timeout_seconds
                    .filter(|seconds| *seconds > 0)
                    .map(Duration::from_secs),
            };
            Ok(watch::serve(shared.clone(), spec))
        }
        ("list", _) => {
            let filter = selection(&target, params)?;
            let mut list = list(&shared.store(), &rt, &filter, params)?;
            if metadata_only {
                list["apiVersion"] = json!(PARTIAL_API_VERSION);
                list["kind"] = json!("PartialObjectMetadataList");
                if let Some(items) = list["items"].as_array_mut() {
                    for item in items {
                        *item = partial_object_metadata(item);
                    }
                }
            }
            Ok(Json(list).into_response())
        }
        ("get", Some(name)) => {
            let store = shared.store();
            let object = store
                .get(&rt, namespace, name)
                .ok_or_else(|| ApiError::not_found(&rt, name))?;
            if metadata_only {
                return Ok(Json(partial_object_metadata(object)).into_response());
            }
            Ok(Json(object).into_response())
        }
        ("create", None) if rt.group == "authentication.k8s.io" && rt.plural == "tokenreviews" => {
            let posted = json_body(&body, &rt)?;
            let token = posted
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let claims = shared
                .tokens
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(token)
                .cloned();
            let reviewed = super::tokens::review(
                &posted,
                claims.as_ref(),
                &shared.store(),
                chrono::Utc::now(),
            );
            Ok((StatusCode::CREATED, Json(reviewed)).into_response())
        }
        ("create", None) => {
            if rt.namespaced && target.namespace.is_none() || target.subresource.is_some() {
                return Err(ApiError::method_not_allowed());
            }
            let object = json_body(&body, &rt)?;
            let created =
                shared
                    .store()
                    .put(&rt, target.namespace.as_deref(), object, Put::Create)?;
            Ok((StatusCode::CREATED, Json(created)).into_response())
        }
        ("update", Some(name)) => {
            let mut object = json_body(&body, &rt)?;
            let body_name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or(name);
            if body_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("name".to_string(), json!(name));
            } else if let Some(map) = object.as_object_mut() {
                map.insert("metadata".to_string(), json!({ "name": name }));
            }
            let expected = resource_version_of(&object).map(str::to_string);
            let mut store = shared.store();
            let existing = store
                .get(&rt, namespace, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&rt, name))?;
            let object = for_subresource(&rt, target.subresource.as_deref(), &existing, object);
            let stored = store.put(
                &rt,
                target.namespace.as_deref(),
                object,
                Put::Replace { expected },
            )?;
            Ok(Json(stored).into_response())
        }
        ("patch", Some(name)) => {
            let kind = PatchKind::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let patch: Value = if kind == PatchKind::Apply {
                serde_yaml::from_slice(&body).map_err(|error| {
                    ApiError::bad_request(format!("invalid apply patch: {error}"))
                })?
            } else {
                serde_json::from_slice(&body)
                    .map_err(|error| ApiError::bad_request(format!("invalid patch: {error}")))?
            };
            if kind == PatchKind::Apply && params.field_manager.is_none() {
                return Err(ApiError::invalid(
                    &rt,
                    name,
                    "fieldManager: Required value: is required for apply patch",
                ));
            }
            let mut store = shared.store();
            let existing = store.get(&rt, namespace, name).cloned();
            let creating = existing.is_none();
            let base = match existing {
                Some(existing) => existing,
                None if kind == PatchKind::Apply && target.subresource.is_none() => {
                    json!({ "metadata": { "name": name } })
                }
                None => return Err(ApiError::not_found(&rt, name)),
            };
            let mut patched = base.clone();
            match kind {
                PatchKind::Merge => merge_patch(&mut patched, &patch),
                PatchKind::Strategic | PatchKind::Apply => {
                    strategic_merge_patch(&mut patched, &patch);
                }
                PatchKind::Json => {
                    json_patch(&mut patched, &patch)
                        .map_err(|why| ApiError::invalid(&rt, name, &why))?;
                }
            }
            let (patched_namespace, patched_name) = object_key(&patched);
            if patched_name != name
                || rt.namespaced && !patched_namespace.is_empty() && patched_namespace != namespace
            {
                return Err(ApiError::bad_request(
                    "a patch may not change metadata.name or metadata.namespace",
                ));
            }
            let object = for_subresource(&rt, target.subresource.as_deref(), &base, patched);
            let (stored, status) = if creating {
                let stored = store.put(&rt, target.namespace.as_deref(), object, Put::Create)?;
                (stored, StatusCode::CREATED)
            } else {
                let expected = resource_version_of(&object).map(str::to_string);
                let stored = store.put(
                    &rt,
                    target.namespace.as_deref(),
                    object,
                    Put::Replace { expected },
                )?;
                (stored, StatusCode::OK)
            };
            Ok((status, Json(stored)).into_response())
        }
        ("delete", Some(name)) if target.subresource.is_none() => {
            let options: Value = if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&body).map_err(|error| {
                    ApiError::bad_request(format!("invalid DeleteOptions: {error}"))
                })?
            };
            let mut store = shared.store();
            let existing = store
                .get(&rt, namespace, name)
                .ok_or_else(|| ApiError::not_found(&rt, name))?;
            for (field, pointer) in [
                ("UID", "/metadata/uid"),
                ("ResourceVersion", "/metadata/resourceVersion"),
            ] {
                let wanted = options
                    .pointer(&format!("/preconditions/{}", lower_first(field)))
                    .and_then(Value::as_str);
                let actual = existing
                    .pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if let Some(wanted) = wanted.filter(|wanted| *wanted != actual) {
                    return Err(ApiError::conflict(
                        &rt,
                        name,
                        &format!(
                            "Precondition failed: {field} in precondition: {wanted}, {field} in object meta: {actual}"
                        ),
                    ));
                }
            }
            let deleted = store.remove(&rt, namespace, name)?;
            Ok(Json(deleted).into_response())
        }
        ("deletecollection", None) if target.subresource.is_none() => {
            let filter = selection(&target, params)?;
            let mut store = shared.store();
            let doomed: Vec<ObjectKey> = store
                .objects(&rt)
                .filter(|(_, object)| filter.matches(object))
                .map(|(key, _)| key.clone())
                .collect();
            let mut items = Vec::new();
            for (namespace, name) in doomed {
                items.push(store.remove(&rt, &namespace, &name)?);
            }
            Ok(Json(json!({
                "kind": rt.list_kind(),
                "apiVersion": rt.api_version(),
                "metadata": { "resourceVersion": store.resource_version().to_string() },
                "items": items,
            }))
            .into_response())
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `apiVersion` of the metadata-only view.
pub(crate) const PARTIAL_API_VERSION: &str = "meta.k8s.io/v1";

/// Whether the client asks for the metadata-only view of objects, as the real API server reads
/// `Accept`: `application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`.
fn wants_metadata_only(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            params
                .iter()
                .any(|p| p.starts_with("as=PartialObjectMetadata"))
                && params.contains(&"g=meta.k8s.io")
        })
}

/// An object as a metadata-only client receives it.
pub(crate) fn partial_object_metadata(object: &Value) -> Value {
    json!({
        "apiVersion": PARTIAL_API_VERSION,
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn lower_first(word: &str) -> String {
    match word {
        "UID" => "uid".to_string(),
        "ResourceVersion" => "resourceVersion".to_string(),
        other => other.to_string(),
    }
}

fn plain_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::HEAD => "head",
        Method::OPTIONS => "options",
        _ => "unknown",
    }
}

/// The body of a create or update, checked against the kind of the path.
fn json_body(body: &Bytes, rt: &ResourceType) -> Result<Value, ApiError> {
    let object: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))?;
    if !object.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    if let Some(api_version) = object.get("apiVersion").and_then(Value::as_str)
        && api_version != rt.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if let Some(kind) = object.get("kind").and_then(Value::as_str)
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    Ok(object)
}

/// What a write to the main resource or to its `status` subresource may change: the status
/// alone, or everything but the status.
fn for_subresource(
    rt: &ResourceType,
    subresource: Option<&str>,
    existing: &Value,
    incoming: Value,
) -> Value {
    match subresource {
        Some(_) => {
            let mut result = existing.clone();
            replace_status(&mut result, incoming.get("status").cloned());
            if let (Some(meta), Some(rv)) = (
                result.get_mut("metadata").and_then(Value::as_object_mut),
                resource_version_of(&incoming),
            ) {
                // Keep the caller's resourceVersion for the conflict check.
                meta.insert("resourceVersion".to_string(), json!(rv));
            }
            result
        }
        None if rt.status_subresource => {
            let mut result = incoming;
            replace_status(&mut result, existing.get("status").cloned());
            result
        }
        None => incoming,
    }
}

fn replace_status(object: &mut Value, status: Option<Value>) {
    if let Some(map) = object.as_object_mut() {
        match status {
            Some(status) => map.insert("status".to_string(), status),
            None => map.remove("status"),
        };
    }
}

fn selection(target: &Target, params: &Params) -> Result<Filter, ApiError> {
    let fields = FieldSelector::parse(&params.field_selector).map_err(ApiError::bad_request)?;
    fields
        .check_supported(&target.rt)
        .map_err(ApiError::bad_request)?;
    let labels = LabelSelector::parse(&params.label_selector).map_err(ApiError::bad_request)?;
    Ok(Filter {
        namespace: target.namespace.clone(),
        fields,
        labels,
    })
}

fn list(
    store: &Store,
    rt: &ResourceType,
    filter: &Filter,
    params: &Params,
) -> Result<Value, ApiError> {
    let current = store.resource_version();
    let (at, after) = match &params.continue_token {
        Some(token) => {
            let (at, key) = decode_continue(token)?;
            (at, Some(key))
        }
        None => match (
            params.resource_version,
            params.resource_version_match.as_deref(),
        ) {
            (Some(at), Some("Exact")) => (at, None),
            _ => (current, None),
        },
    };
    let at = at.min(current);
    let snapshot = store.snapshot_at(rt, at).map_err(|error| {
        if params.continue_token.is_some() {
            ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            )
        } else {
            error
        }
    })?;
    let limit = params.limit.filter(|limit| *limit > 0);
    let mut items = Vec::new();
    let mut remaining = 0u64;
    let mut last_key = None;
    for (key, object) in &snapshot {
        if after.as_ref().is_some_and(|after| key <= after) || !filter.matches(object) {
            continue;
        }
        if limit.is_some_and(|limit| items.len() as u64 >= limit) {
            remaining += 1;
            continue;
        }
        last_key = Some(key);
        items.push(object.clone());
    }
    let mut metadata = json!({ "resourceVersion": at.to_string() });
    if remaining > 0
        && let Some(last_key) = last_key
    {
        metadata["continue"] = json!(encode_continue(at, last_key));
        if filter.fields == FieldSelector::default() && filter.labels == LabelSelector::default() {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    Ok(json!({
        "kind": rt.list_kind(),
        "apiVersion": rt.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

fn encode_continue(at: u64, (namespace, name): &ObjectKey) -> String {
    format!("{at}/{namespace}/{name}")
        .bytes()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(u64, ObjectKey), ApiError> {
    let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&token[index..index + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(at), Some(namespace), Some(name)) => {
            let at = at.parse().map_err(|_| invalid())?;
            Ok((at, (namespace.to_string(), name.to_string())))
        }
        _ => Err(invalid()),
    }
}

/// The query parameters the server understands.
#[derive(Debug, Default)]
struct Params {
    watch: bool,
    resource_version: Option<u64>,
    resource_version_match: Option<String>,
    timeout_seconds: Option<u64>,
    allow_watch_bookmarks: bool,
    send_initial_events: Option<bool>,
    field_selector: String,
    label_selector: String,
    limit: Option<u64>,
    continue_token: Option<String>,
    field_manager: Option<String>,
    dry_run: bool,
}

impl Params {
    fn parse(uri: &Uri) -> Result<Params, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|error| ApiError::bad_request(format!("invalid query string: {error}")))?;
        let mut params = Params::default();
        let mut seen = HashSet::new();
        for (key, value) in pairs {
            if !seen.insert(key.clone()) {
                continue;
            }
            let number = |value: &str| {
                value.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "{key}: Invalid value: {value:?}: must be a non-negative integer"
                    ))
                })
            };
            match key.as_str() {
                "watch" => params.watch = parse_bool(&key, &value)?,
                "allowWatchBookmarks" => params.allow_watch_bookmarks = parse_bool(&key, &value)?,
                "sendInitialEvents" => params.send_initial_events = Some(parse_bool(&key, &value)?),
                "resourceVersion" if !value.is_empty() => {
                    params.resource_version = Some(number(&value)?)
                }
                "resourceVersionMatch" => match value.as_str() {
                    "" => {}
                    "NotOlderThan" | "Exact" => params.resource_version_match = Some(value),
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "resourceVersionMatch: Unsupported value: {value:?}: supported values: \"Exact\", \"NotOlderThan\""
                        )));
                    }
                },
                "timeoutSeconds" => params.timeout_seconds = Some(number(&value)?),
                "limit" => params.limit = Some(number(&value)?),
                "continue" if !value.is_empty() => params.continue_token = Some(value),
                "fieldSelector" => params.field_selector = value,
                "labelSelector" => params.label_selector = value,
                "fieldManager" if !value.is_empty() => params.field_manager = Some(value),
                "dryRun" => params.dry_run = !value.is_empty(),
                _ => {}
            }
        }
        Ok(params)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "" | "0" | "f" | "F" | "false" | "False" | "FALSE" => Ok(false),
        "1" | "t" | "T" | "true" | "True" | "TRUE" => Ok(true),
        _ => Err(ApiError::bad_request(format!(
            "{key}: Invalid value: {value:?}: must be a boolean"
        ))),
    }
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `APIGroup` documents by group name, for the named groups.
fn api_groups(store: &Store) -> BTreeMap<String, Value> {
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rt in store.types().iter().filter(|rt| !rt.group.is_empty()) {
        let known = versions.entry(rt.group.clone()).or_default();
        if !known.contains(&rt.version) {
            known.push(rt.version.clone());
        }
    }
    versions
        .into_iter()
        .map(|(group, versions)| {
            let entries: Vec<Value> = versions
                .iter()
                .map(|version| json!({ "groupVersion": format!("{group}/{version}"), "version": version }))
                .collect();
            let document = json!({
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": group,
                "versions": entries,
                "preferredVersion": entries.first().cloned().unwrap_or(Value::Null),
            });
            (group, document)
        })
        .collect()
}

fn api_resource_list(store: &Store, group: &str, version: &str) -> Result<Value, ApiError> {
    let mut resources = Vec::new();
    for rt in store
        .types()
        .iter()
        .filter(|rt| rt.group == group && rt.version == version)
    {
        resources.push(json!({
            "name": rt.plural,
            "singularName": rt.kind.to_lowercase(),
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }));
        if rt.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", rt.plural),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return Err(ApiError::no_such_path());
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}
