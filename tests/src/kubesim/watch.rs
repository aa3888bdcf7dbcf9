//! Watch streams: newline-delimited JSON watch events, replayed from the history and then
//! followed through the store's broadcast channel.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;

use super::Shared;
use super::resource::ResourceType;
use super::routes::{PARTIAL_API_VERSION, partial_object_metadata};
use super::selector::Filter;
use super::status::ApiError;
use super::store::{Change, set_resource_version};

/// What one watch request asked for.
pub(crate) struct WatchSpec {
    /// The kind watched.
    pub(crate) rt: Arc<ResourceType>,
    /// Namespace and selectors.
    pub(crate) filter: Filter,
    /// The `resourceVersion` parameter; `None` when absent, empty or `0`.
    pub(crate) from: Option<u64>,
    /// Whether to start with synthetic ADDED events for the current objects.
    pub(crate) initial_events: bool,
    /// Whether to mark the end of the initial events with a bookmark (`sendInitialEvents`).
    pub(crate) initial_events_end: bool,
    /// Whether to send periodic BOOKMARK events (`allowWatchBookmarks`).
    pub(crate) bookmarks: bool,
    /// Whether objects are sent as PartialObjectMetadata (metadata-only `Accept`).
    pub(crate) metadata_only: bool,
    /// When to end the stream (`timeoutSeconds`).
    pub(crate) timeout: Option<Duration>,
}

/// Answers a watch request with a streaming response and a task that feeds it.
pub(crate) fn serve(shared: Arc<Shared>, spec: WatchSpec) -> Response {
    let (sender, receiver) = mpsc::channel::<Bytes>(256);
    // Subscribe before answering, so that the stream starts at the state of the request time.
    let start = subscribe(&shared, &spec, spec.initial_events, spec.from);
    tokio::spawn(run(shared, spec, start, sender));
    let body = Body::from_stream(ReceiverStream::new(receiver).map(Ok::<Bytes, Infallible>));
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The events to send first, and where to go on from: `None` after an expired
/// resourceVersion (the events then end with the ERROR).
struct Start {
    lines: Vec<Bytes>,
    follow: Option<(broadcast::Receiver<Arc<Change>>, u64)>,
}

/// Under the store lock: the events to send first, and a receiver for every later change.
fn subscribe(shared: &Shared, spec: &WatchSpec, initial_events: bool, from: Option<u64>) -> Start {
    let store = shared.store();
    let receiver = store.subscribe();
    let current = store.resource_version();
    let mut lines = Vec::new();
    if initial_events {
        lines.extend(
            store
                .objects(&spec.rt)
                .filter(|(_, object)| spec.filter.matches(object))
                .map(|(_, object)| object_line(spec, "ADDED", object)),
        );
        if spec.initial_events_end {
            lines.push(bookmark_line(spec, current.max(from.unwrap_or(0)), true));
        }
    } else if let Some(from) = from {
        match store.changes_since(from) {
            Ok(changes) => lines.extend(changes.iter().filter_map(|change| convert(spec, change))),
            Err(oldest) => {
                let status =
                    ApiError::expired(format!("too old resource version: {from} ({oldest})"))
                        .to_status();
                lines.push(event_line("ERROR", &status));
                return Start {
                    lines,
                    follow: None,
                };
            }
        }
    }
    Start {
        lines,
        follow: Some((receiver, current.max(from.unwrap_or(0)))),
    }
}

async fn run(shared: Arc<Shared>, spec: WatchSpec, start: Start, sender: mpsc::Sender<Bytes>) {
    let mut shutdown = shared.shutdown.clone();
    let deadline = spec.timeout.map(|timeout| Instant::now() + timeout);
    let mut start = start;
    let period = shared
        .options
        .bookmark_interval
        .max(Duration::from_millis(10));
    let mut bookmarks = tokio::time::interval_at(Instant::now() + period, period);
    bookmarks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        for line in std::mem::take(&mut start.lines) {
            if !deliver(&sender, line, &mut shutdown).await {
                return;
            }
        }
        let Some((receiver, last)) = &mut start.follow else {
            return;
        };
        let received = tokio::select! {
            () = stopped(&mut shutdown) => return,
            () = sender.closed() => return,
            () = until(deadline) => return,
            _ = bookmarks.tick(), if spec.bookmarks => {
                start.lines.push(bookmark_line(&spec, *last, false));
                continue;
            }
            received = receiver.recv() => received,
        };
        match received {
            Ok(change) if change.resource_version > *last => {
                *last = change.resource_version;
                start.lines.extend(convert(&spec, &change));
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Fell behind the channel: catch up from the history instead.
                let from = *last;
                tracing::debug!(from, "watch fell behind; catching up from the history");
                start = subscribe(&shared, &spec, false, Some(from));
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Sends one line unless the client is gone or the server is shutting down.
async fn deliver(
    sender: &mpsc::Sender<Bytes>,
    line: Bytes,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        sent = sender.send(line) => sent.is_ok(),
        () = stopped(shutdown) => false,
    }
}

/// Resolves once the server shuts down (or its handle is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The event a change means for this watch, as the API server's watch cache decides it: an
/// object that starts matching is ADDED, one that stops matching is DELETED (with its previous
/// content and the new resourceVersion).
fn convert(spec: &WatchSpec, change: &Change) -> Option<Bytes> {
    if change.resource != spec.rt.group_resource() {
        return None;
    }
    let now = change
        .object
        .as_ref()
        .filter(|object| spec.filter.matches(object));
    let before = change
        .previous
        .as_ref()
        .filter(|object| spec.filter.matches(object));
    match (now, before) {
        (Some(object), None) => Some(object_line(spec, "ADDED", object)),
        (Some(object), Some(_)) => Some(object_line(spec, "MODIFIED", object)),
        (None, Some(previous)) => {
            let mut gone = previous.clone();
            set_resource_version(&mut gone, change.resource_version);
            Some(object_line(spec, "DELETED", &gone))
        }
        (None, None) => None,
    }
}

/// An event about an object, in the view the watch asked for.
fn object_line(spec: &WatchSpec, kind: &str, object: &Value) -> Bytes {
    if spec.metadata_only {
        event_line(kind, &partial_object_metadata(object))
    } else {
        event_line(kind, object)
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_line(spec: &WatchSpec, resource_version: u64, initial_events_end: bool) -> Bytes {
    let (kind, api_version) = if spec.metadata_only {
        (
            "PartialObjectMetadata".to_string(),
            PARTIAL_API_VERSION.to_string(),
        )
    } else {
        (spec.rt.kind.clone(), spec.rt.api_version())
    };
    let mut object = json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": { "resourceVersion": resource_version.to_string() },
    });
    if initial_events_end {
        object["metadata"]["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    event_line("BOOKMARK", &object)
}
