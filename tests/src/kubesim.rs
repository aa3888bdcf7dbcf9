//! A simulated Kubernetes API server for tests.
//!
//! [`KubeSim`] serves the real REST paths (`/api/v1/...`, `/apis/{group}/{version}/...`) with
//! real k8s-openapi JSON over plain HTTP on a local address, so that programs built on
//! `kube::Client` and `kube::runtime::watcher` use it unchanged, as if it were a cluster:
//! list (field and label selectors, pagination), get, watch (replay from a resourceVersion,
//! bookmarks, timeouts, 410 Gone), create, update, patch, delete and deletecollection, and
//! minimal discovery. Gets, lists and watches that ask for metadata only (`Accept:
//! application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`, as kube's
//! `Api<PartialObjectMeta<K>>` does) get `meta.k8s.io/v1` PartialObjectMetadata objects. Tests change objects in-process with `apply_*` and `delete_*` and read
//! back every request served with [`KubeSim::requests`].
//!
//! Objects of every kind live in one store of JSON values with one global resourceVersion and a
//! bounded history of changes; a kind is one [`ResourceType`] entry, and more can be added with
//! [`KubeSim::register`].

mod patch;
mod resource;
mod routes;
mod selector;
mod status;
mod store;
mod tokens;
mod watch;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::Router;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub use resource::ResourceType;
use store::{Put, Store};
pub use tokens::TokenClaims;

/// Changes buffered per watch before it falls back to catching up from the history.
const BROADCAST_CAPACITY: usize = 1024;

/// Tunables of a [`KubeSim`].
#[derive(Clone, Debug)]
pub struct KubeSimOptions {
    /// How many changes the history keeps for watches and paginated lists; older
    /// resourceVersions get 410 Gone.
    pub history_limit: usize,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK event.
    pub bookmark_interval: Duration,
    /// How many requests [`KubeSim::requests`] keeps (the oldest are dropped).
    pub max_recorded_requests: usize,
}

impl Default for KubeSimOptions {
    fn default() -> Self {
        KubeSimOptions {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(10),
            max_recorded_requests: 100_000,
        }
    }
}

/// One request the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: http::Method,
    /// URL path.
    pub path: String,
    /// Raw query string, empty if none.
    pub query: String,
    /// Status of the response (200 for a watch that started streaming).
    pub status: http::StatusCode,
    /// Kubernetes verb as RBAC sees it (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`); for non-resource paths the verb of the method.
    pub verb: Option<&'static str>,
    /// API group of a resource request (empty for the core group).
    pub api_group: Option<String>,
    /// Resource (plural) of a resource request.
    pub resource: Option<String>,
    /// Subresource (e.g. `status`) of a resource request.
    pub subresource: Option<String>,
    /// Namespace of the request path.
    pub namespace: Option<String>,
    /// Object name of the request path.
    pub name: Option<String>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// `Accept` header.
    pub accept: Option<String>,
}

/// State shared by the server's handlers and the [`KubeSim`] handle.
pub(crate) struct Shared {
    store: Mutex<Store>,
    requests: Mutex<VecDeque<RecordedRequest>>,
    options: KubeSimOptions,
    shutdown: tokio::sync::watch::Receiver<bool>,
    addr: SocketAddr,
    /// ServiceAccount tokens issued by [`KubeSim::issue_token`], by value.
    tokens: Mutex<std::collections::HashMap<String, TokenClaims>>,
}

impl Shared {
    /// The store; a poisoned lock is taken over rather than propagated.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn requests(&self) -> MutexGuard<'_, VecDeque<RecordedRequest>> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, request: RecordedRequest) {
        let mut requests = self.requests();
        requests.push_back(request);
        while requests.len() > self.options.max_recorded_requests {
            requests.pop_front();
        }
    }
}

/// A running simulated API server.
///
/// Dropping it stops the server too, but [`KubeSim::shutdown`] also waits for it.
pub struct KubeSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl KubeSim {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves in a background tokio task.
    pub async fn start(addr: SocketAddr) -> anyhow::Result<KubeSim> {
        KubeSim::start_with(addr, KubeSimOptions::default()).await
    }

    /// Like [`KubeSim::start`], with options.
    pub async fn start_with(addr: SocketAddr, options: KubeSimOptions) -> anyhow::Result<KubeSim> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the simulated api server to {addr}"))?;
        let addr = listener
            .local_addr()
            .context("reading the simulated api server's address")?;
        let (shutdown, shutdown_receiver) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(options.history_limit, BROADCAST_CAPACITY)),
            requests: Mutex::new(VecDeque::new()),
            options,
            shutdown: shutdown_receiver.clone(),
            addr,
            tokens: Mutex::default(),
        });
        let app = Router::new()
            .fallback(routes::handle)
            .with_state(shared.clone());
        let mut stop = shutdown_receiver;
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { watch::stopped(&mut stop).await })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "simulated api server failed");
            }
        });
        tracing::debug!(%addr, "simulated api server listening");
        Ok(KubeSim {
            shared,
            addr,
            shutdown,
            task: Some(task),
        })
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig file (plain HTTP server, no authentication, namespace `default`)
    /// that `kube::Config::infer` (via `KUBECONFIG`) and kubectl accept.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.kubeconfig()?)
            .with_context(|| format!("writing kubeconfig {}", path.display()))
    }

    /// The kubeconfig that [`KubeSim::write_kubeconfig`] writes, as YAML.
    pub fn kubeconfig(&self) -> anyhow::Result<String> {
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": "kubesim", "cluster": { "server": self.url() } }],
            "users": [{ "name": "kubesim", "user": {} }],
            "contexts": [{
                "name": "kubesim",
                "context": { "cluster": "kubesim", "user": "kubesim", "namespace": "default" },
            }],
            "current-context": "kubesim",
            "preferences": {},
        });
        serde_yaml::to_string(&config).context("rendering kubeconfig")
    }

    /// Adds a kind the server stores and serves (or replaces the description of a kind with
    /// the same group and plural).
    pub fn register(&self, rt: ResourceType) {
        self.shared.store().register(rt);
    }

    /// Creates or replaces an object of any k8s-openapi kind (an ADDED or MODIFIED event),
    /// registering the kind if needed; returns it as stored. Cluster-scoped kinds ignore the
    /// namespace; namespaced objects without one go to `default`.
    pub fn apply<K>(&self, object: &K) -> anyhow::Result<K>
    where
        K: k8s_openapi::Resource + Serialize + DeserializeOwned,
        K::Scope: 'static,
    {
        let rt = self.resource_type::<K>();
        let value = serde_json::to_value(object).context("serializing the object")?;
        let stored = self
            .shared
            .store()
            .put(&rt, None, value, Put::Apply)
            .map_err(|error| anyhow!("storing the object: {}", error.message))?;
        serde_json::from_value(stored).context("reading back the stored object")
    }

    /// Creates or replaces an object given as JSON; its `apiVersion` and `kind` must name a
    /// registered kind. Returns it as stored.
    pub fn apply_json(&self, object: Value) -> anyhow::Result<Value> {
        let field = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or_default();
        let mut store = self.shared.store();
        let rt = store
            .find_kind(field("apiVersion"), field("kind"))
            .ok_or_else(|| {
                anyhow!(
                    "no registered kind {} {}",
                    field("apiVersion"),
                    field("kind")
                )
            })?;
        store
            .put(&rt, None, object, Put::Apply)
            .map_err(|error| anyhow!("storing the object: {}", error.message))
    }

    /// Deletes an object of a registered kind named by `apiVersion` and `kind` (a DELETED event);
    /// returns it as last stored, or `None` if there was none. Cluster-scoped kinds ignore
    /// `namespace`.
    pub fn delete_json(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let mut store = self.shared.store();
        let rt = store.find_kind(api_version, kind)?;
        let namespace = if rt.namespaced { namespace } else { "" };
        store.remove(&rt, namespace, name).ok()
    }

    /// Deletes an object (a DELETED event); returns it as last stored, or `None` if there was
    /// none. Cluster-scoped kinds ignore `namespace`.
    pub fn delete<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
        K::Scope: 'static,
    {
        let rt = self.resource_type::<K>();
        let namespace = if rt.namespaced { namespace } else { "" };
        let deleted = self.shared.store().remove(&rt, namespace, name).ok()?;
        serde_json::from_value(deleted).ok()
    }

    /// The stored object, if any. Cluster-scoped kinds ignore `namespace`.
    pub fn get<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
        K::Scope: 'static,
    {
        let rt = self.resource_type::<K>();
        let namespace = if rt.namespaced { namespace } else { "" };
        let object = self.shared.store().get(&rt, namespace, name).cloned()?;
        serde_json::from_value(object).ok()
    }

    /// All stored objects of a kind, ordered by namespace and name (objects written over HTTP
    /// that do not deserialize as `K` are skipped).
    pub fn list<K>(&self) -> Vec<K>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
        K::Scope: 'static,
    {
        let rt = self.resource_type::<K>();
        let objects: Vec<Value> = self
            .shared
            .store()
            .objects(&rt)
            .map(|(_, object)| object.clone())
            .collect();
        objects
            .into_iter()
            .filter_map(|object| serde_json::from_value(object).ok())
            .collect()
    }

    /// Creates or replaces a pod (ADDED or MODIFIED); returns it as stored.
    ///
    /// # Panics
    /// If the pod has no name.
    pub fn apply_pod(&self, pod: Pod) -> Pod {
        self.apply_or_panic(&pod)
    }

    /// Deletes a pod (DELETED); returns whether it existed.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        self.delete::<Pod>(namespace, name).is_some()
    }

    /// Creates or replaces a ConfigMap (ADDED or MODIFIED); returns it as stored.
    ///
    /// # Panics
    /// If the ConfigMap has no name.
    pub fn apply_config_map(&self, config_map: ConfigMap) -> ConfigMap {
        self.apply_or_panic(&config_map)
    }

    /// Deletes a ConfigMap (DELETED); returns whether it existed.
    pub fn delete_config_map(&self, namespace: &str, name: &str) -> bool {
        self.delete::<ConfigMap>(namespace, name).is_some()
    }

    /// Creates or replaces a Secret (ADDED or MODIFIED); returns it as stored.
    ///
    /// # Panics
    /// If the Secret has no name.
    pub fn apply_secret(&self, secret: Secret) -> Secret {
        self.apply_or_panic(&secret)
    }

    /// Deletes a Secret (DELETED); returns whether it existed.
    pub fn delete_secret(&self, namespace: &str, name: &str) -> bool {
        self.delete::<Secret>(namespace, name).is_some()
    }

    /// The current pods, ordered by namespace and name.
    pub fn pods(&self) -> Vec<Pod> {
        self.list::<Pod>()
    }

    /// The current ConfigMaps, ordered by namespace and name.
    pub fn config_maps(&self) -> Vec<ConfigMap> {
        self.list::<ConfigMap>()
    }

    /// The current Secrets, ordered by namespace and name.
    pub fn secrets(&self) -> Vec<Secret> {
        self.list::<Secret>()
    }

    /// The newest resourceVersion (one counter for all kinds).
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Forgets the change history, as an etcd compaction does: watches and paginated lists
    /// from an older resourceVersion then get 410 Gone.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// Every request served so far (up to [`KubeSimOptions::max_recorded_requests`]), oldest
    /// first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests().iter().cloned().collect()
    }

    /// Issues a ServiceAccount token with these claims: `TokenReview` authenticates it while it
    /// has not expired, its audiences meet the review's and its pod exists with the same uid.
    pub fn issue_token(&self, claims: TokenClaims) -> String {
        let mut tokens = self
            .shared
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let token = claims.encode(tokens.len() as u64);
        tokens.insert(token.clone(), claims);
        token
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.requests().clear();
    }

    /// Stops serving: ends every watch stream, closes connections, and waits (at most five
    /// seconds) for the server task.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("simulated api server did not stop in time; aborting it");
                abort.abort();
            }
        }
    }

    fn resource_type<K>(&self) -> Arc<ResourceType>
    where
        K: k8s_openapi::Resource,
        K::Scope: 'static,
    {
        let mut store = self.shared.store();
        match store.find(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT) {
            Some(rt) => rt,
            None => store.register(ResourceType::of::<K>()),
        }
    }

    fn apply_or_panic<K>(&self, object: &K) -> K
    where
        K: k8s_openapi::Resource + Serialize + DeserializeOwned,
        K::Scope: 'static,
    {
        match self.apply(object) {
            Ok(stored) => stored,
            Err(error) => panic!("kubesim: cannot apply {}: {error:#}", K::KIND),
        }
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

#[cfg(test)]
mod tests;
