//! Follows the trust-roots ConfigMap, the issuer Secret, `linkerd-config` and linkerd-identity's
//! issuer Events through the Kubernetes API (field-selected watches, so RBAC can be limited to
//! those names), the namespaces labelled as Linkerd extensions, and the workload objects pod
//! owners resolve to (cluster-wide list/watch of ReplicaSets, metadata only, Deployments,
//! StatefulSets and DaemonSets), and feeds the model. A missing object is a state, not an
//! error: the model records why it cannot judge.

use crate::control_plane::{LINKERD_CONFIG, LinkerdConfig};
use crate::ingest::lock;
use crate::model::Cluster;
use crate::objects;
use crate::owners::{self, Catalog, OwnerIndex};
use crate::trust::{BundleState, IssuerState, TrustSources};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::{Arc, Mutex};
use tracing::{debug, info, warn};

/// Follows the ConfigMap until the watch ends for good.
pub async fn follow_bundle(
    client: kube::Client,
    sources: TrustSources,
    cluster: Arc<Mutex<Cluster>>,
) {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, &sources.namespace);
    let what = format!("ConfigMap {}", sources.bundle_source());
    follow_one(api, &sources.config_map, &what, |cm| {
        let objects::BundleRead {
            state,
            resource_version: rv,
            unreadable,
        } = objects::bundle(cm.as_ref(), &sources);
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
        let now = crate::time::now();
        crate::ingest::with_cluster_blocking(&cluster, |cluster| {
            if cluster.set_bundle(state, rv, now) {
                info!("trust bundle anchor set changed; all pods judged again");
            }
            cluster.update_control_plane(now, |cp| cp.bundle_unreadable = unreadable);
        });
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
        let objects::IssuerRead {
            state,
            unreadable,
            written_at,
        } = objects::issuer(secret.as_ref(), &sources);
        match &state {
            IssuerState::Available(c) => info!(subject = %c[0].subject, "issuer read"),
            IssuerState::Unavailable(why) => warn!(%why, "issuer unavailable"),
            IssuerState::Unknown => {}
        }
        let now = crate::time::now();
        crate::ingest::with_cluster_blocking(&cluster, |cluster| {
            cluster.set_issuer(state, now);
            cluster.update_control_plane(now, |cp| {
                cp.issuer_unreadable = unreadable;
                if cp.issuer_changed_at.is_none() {
                    cp.issuer_changed_at = written_at;
                }
            });
        });
    })
    .await
}

/// Follows ConfigMap `linkerd-config` (the anchors recorded at install or upgrade). Optional:
/// when it is missing the analysis goes without it.
pub async fn follow_linkerd_config(
    client: kube::Client,
    namespace: String,
    cluster: Arc<Mutex<Cluster>>,
) {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, &namespace);
    let what = format!("ConfigMap {namespace}/{LINKERD_CONFIG}");
    follow_one(api, LINKERD_CONFIG, &what, |cm| {
        let cfg = objects::linkerd_config(cm.as_ref());
        match &cfg {
            LinkerdConfig::Anchors(b) => info!(
                anchors = b.certs.len(),
                unreadable = b.unreadable.len(),
                "linkerd-config read"
            ),
            LinkerdConfig::Unreadable(why) => {
                warn!(%why, "linkerd-config records no usable anchors")
            }
            LinkerdConfig::Absent => info!(object = %what, "not found; going without it"),
        }
        lock(&cluster).update_control_plane(crate::time::now(), |cp| cp.linkerd_config = cfg);
    })
    .await
}

/// Follows the issuer Events linkerd-identity records on its Deployment.
pub async fn follow_identity_events(
    client: kube::Client,
    namespace: String,
    cluster: Arc<Mutex<Cluster>>,
) {
    let api: kube::Api<Event> = kube::Api::namespaced(client, &namespace);
    let cfg = watcher::Config::default()
        .fields("involvedObject.kind=Deployment,involvedObject.name=linkerd-identity");
    follow_list(api, cfg, "linkerd-identity events", objects::identity_event, |change| {
        let now = crate::time::now();
        lock(&cluster).update_control_plane(now, |cp| match change {
            Change::Listed(all) => cp.identity_events.replace(all),
            Change::Applied((name, ev)) => {
                info!(reason = ev.kind.reason(), message = %ev.message, "linkerd-identity issuer event");
                cp.identity_events.apply(&name, ev);
            }
            Change::Deleted((name, _)) => cp.identity_events.delete(&name),
        });
    })
    .await
}

/// Watches the one object `name` of `api` and calls `on_change` with its new value, or `None`
/// when it is deleted or absent after a (re)list. Retries with backoff on errors.
pub(crate) async fn follow_one<K>(
    api: kube::Api<K>,
    name: &str,
    what: &str,
    mut on_change: impl FnMut(Option<K>),
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    follow_list(
        api,
        cfg,
        what,
        |o: &K| Some(o.clone()),
        |change| match change {
            Change::Listed(mut objects) => on_change(objects.pop()),
            Change::Applied(o) => on_change(Some(o)),
            Change::Deleted(_) => on_change(None),
        },
    )
    .await
}

/// What a watch reports, objects already mapped: a (re)list arrives whole, when complete, so
/// those it feeds never see half of one.
enum Change<T> {
    /// Everything there is, after a (re)list.
    Listed(Vec<T>),
    /// Added or changed.
    Applied(T),
    /// Deleted.
    Deleted(T),
}

/// Watches `api` with `cfg` until the watch ends for good, maps each object with `map` (objects
/// it maps to `None` are ignored; during a list only the mapped values are kept, not the
/// objects) and hands the changes to `on_change`. Retries with backoff on errors.
async fn follow_list<K, T>(
    api: kube::Api<K>,
    cfg: watcher::Config,
    what: &str,
    map: impl Fn(&K) -> Option<T>,
    mut on_change: impl FnMut(Change<T>),
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut events = watcher(api, cfg).default_backoff().boxed();
    let mut listing: Vec<T> = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(o)) => listing.extend(map(&o)),
            Ok(watcher::Event::InitDone) => on_change(Change::Listed(std::mem::take(&mut listing))),
            Ok(watcher::Event::Apply(o)) => {
                if let Some(t) = map(&o) {
                    on_change(Change::Applied(t));
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                if let Some(t) = map(&o) {
                    on_change(Change::Deleted(t));
                }
            }
            Err(e) => warn!(error = %e, watch = %what, "watch failed; retrying"),
        }
    }
}

/// Follows the namespaces labelled `linkerd.io/extension` (Linkerd's own extensions and third-party
/// ones): their pods restart after the control plane and before workloads (Rule 4).
pub async fn follow_extension_namespaces(client: kube::Client, cluster: Arc<Mutex<Cluster>>) {
    let api: kube::Api<Namespace> = kube::Api::all(client);
    let cfg = watcher::Config::default().labels(objects::EXTENSION_LABEL);
    let name = |ns: &Namespace| ns.metadata.name.clone();
    follow_list(api, cfg, "extension namespaces", name, |change| {
        let now = crate::time::now();
        if let Change::Listed(all) = &change {
            info!(namespaces = ?all, "extension namespaces listed");
        }
        lock(&cluster).update_control_plane(now, |cp| match change {
            Change::Listed(all) => cp.extension_namespaces = all.into_iter().collect(),
            Change::Applied(name) => {
                cp.extension_namespaces.insert(name);
            }
            Change::Deleted(name) => {
                cp.extension_namespaces.remove(&name);
            }
        });
    })
    .await
}

/// Follows the workload objects the plan resolves pod owners with, until the watches end for
/// good. A kind that cannot be listed (RBAC) stays unlisted: its pods are resolved by the
/// fallback, and the plan says so.
pub async fn follow_owners(client: kube::Client, cluster: Arc<Mutex<Cluster>>) {
    // ReplicaSets are the many: only their metadata (ownerReferences) is fetched.
    let replica_sets = follow_catalog(
        kube::Api::<PartialObjectMeta<ReplicaSet>>::all(client.clone()),
        "ReplicaSets",
        cluster.clone(),
        |i| &mut i.replica_sets,
        |rs| owners::replica_set_controller(&rs.metadata),
    );
    // The facts live in the spec; each object is dropped once its fact is taken.
    let deployments = follow_catalog(
        kube::Api::<Deployment>::all(client.clone()),
        "Deployments",
        cluster.clone(),
        |i| &mut i.deployments,
        owners::deployment_paused,
    );
    let stateful_sets = follow_catalog(
        kube::Api::<StatefulSet>::all(client.clone()),
        "StatefulSets",
        cluster.clone(),
        |i| &mut i.stateful_sets,
        owners::stateful_set_strategy,
    );
    let daemon_sets = follow_catalog(
        kube::Api::<DaemonSet>::all(client),
        "DaemonSets",
        cluster,
        |i| &mut i.daemon_sets,
        owners::daemon_set_strategy,
    );
    tokio::join!(replica_sets, deployments, stateful_sets, daemon_sets);
}

/// Watches every object of `api` and keeps one catalog of the owner index current with `fact`
/// of each. A (re)list is gathered here and replaces the catalog at once when complete, so
/// queries in between see the previous list, never half of one.
async fn follow_catalog<K, T>(
    api: kube::Api<K>,
    what: &'static str,
    cluster: Arc<Mutex<Cluster>>,
    catalog: fn(&mut OwnerIndex) -> &mut Catalog<T>,
    fact: fn(&K) -> T,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    T: PartialEq,
{
    // Served from the API server's watch cache: a full list of every ReplicaSet at 5,000 nodes
    // need not be a quorum read of etcd.
    let cfg = watcher::Config::default().any_semantic();
    let entry = |o: &K| {
        let m = o.meta();
        Some((
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
            fact(o),
        ))
    };
    follow_list(api, cfg, what, entry, |change| {
        let now = crate::time::now();
        let mut cluster = lock(&cluster);
        match change {
            Change::Listed(objects) => {
                let count = objects.len();
                cluster.update_owners(|i| catalog(i).replace_all(objects), now);
                info!(kind = what, count, "listed");
            }
            Change::Applied((ns, name, fact)) => {
                if cluster.update_owners(|i| catalog(i).apply(&ns, &name, fact), now) {
                    debug!(kind = what, namespace = %ns, %name, "workload changed");
                }
            }
            Change::Deleted((ns, name, _)) => {
                if cluster.update_owners(|i| catalog(i).delete(&ns, &name), now) {
                    debug!(kind = what, namespace = %ns, %name, "workload deleted");
                }
            }
        }
    })
    .await
}
