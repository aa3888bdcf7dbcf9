//! Follows the trust-roots ConfigMap and the issuer Secret through the Kubernetes API (one
//! field-selected watch each, so RBAC can be limited to those names) and feeds the model.
//! A missing object is a state, not an error: the model records why it cannot judge.

use crate::ingest::lock;
use crate::model::Cluster;
use crate::trust::{BundleState, IssuerState, TrustSources, read_bundle, read_issuer};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// Follows the ConfigMap until the watch ends for good.
pub async fn follow_bundle(
    client: kube::Client,
    sources: TrustSources,
    cluster: Arc<Mutex<Cluster>>,
) {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, &sources.namespace);
    let what = format!("ConfigMap {}", sources.bundle_source());
    follow_one(api, &sources.config_map, &what, |cm| {
        let (state, rv) = match cm {
            Some(cm) => (
                read_bundle(cm.data.as_ref(), &sources),
                cm.metadata.resource_version.unwrap_or_default(),
            ),
            None => (
                BundleState::Unavailable(format!("{what} not found")),
                String::new(),
            ),
        };
        match &state {
            BundleState::Available(b) => info!(
                anchors = b.certs.len(),
                unreadable = b.unreadable.len(),
                resource_version = %rv,
                "trust bundle read"
            ),
            BundleState::Unavailable(why) => warn!(%why, "trust bundle unavailable"),
            BundleState::Unknown => {}
        }
        if lock(&cluster).set_bundle(state, rv, chrono::Utc::now()) {
            info!("trust bundle anchor set changed; all pods judged again");
        }
    })
    .await
}

/// Follows the issuer Secret until the watch ends for good. Only certificate keys are read.
pub async fn follow_issuer(
    client: kube::Client,
    sources: TrustSources,
    cluster: Arc<Mutex<Cluster>>,
) {
    let api: kube::Api<Secret> = kube::Api::namespaced(client, &sources.namespace);
    let what = format!("Secret {}", sources.issuer_source());
    follow_one(api, &sources.secret, &what, |secret| {
        let state = match secret {
            Some(s) => {
                let data = s
                    .data
                    .map(|d| d.into_iter().map(|(k, v)| (k, v.0)).collect());
                read_issuer(data.as_ref(), &sources)
            }
            None => IssuerState::Unavailable(format!("{what} not found")),
        };
        match &state {
            IssuerState::Available(c) => info!(subject = %c[0].subject, "issuer read"),
            IssuerState::Unavailable(why) => warn!(%why, "issuer unavailable"),
            IssuerState::Unknown => {}
        }
        lock(&cluster).set_issuer(state, chrono::Utc::now());
    })
    .await
}

/// Watches the one object `name` of `api` and calls `on_change` with its new value, or `None`
/// when it is deleted or absent after a (re)list. Retries with backoff on errors.
async fn follow_one<K>(
    api: kube::Api<K>,
    name: &str,
    what: &str,
    mut on_change: impl FnMut(Option<K>),
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, cfg).default_backoff().boxed();
    let mut listed: Option<K> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(obj)) => on_change(Some(obj)),
            Ok(watcher::Event::Delete(_)) => on_change(None),
            Ok(watcher::Event::Init) => listed = None,
            Ok(watcher::Event::InitApply(obj)) => listed = Some(obj),
            Ok(watcher::Event::InitDone) => on_change(listed.take()),
            Err(e) => warn!(error = %e, object = %what, "watch failed; retrying"),
        }
    }
}
