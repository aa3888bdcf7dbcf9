//! Follows Linkerd multicluster `Link` resources and probes the gateways they name: the thin IO
//! shell around [`crate::link`] (parsing, records) and [`crate::probe`] (the TLS probe).
//!
//! ```text
//!  watcher(Api<DynamicObject> links, all namespaces) ──► links: watch::Sender<key → Link>
//!                                                              │ on change, and every interval
//!                                                              ▼
//!                 probe every gateway address ──► Cluster::set_gateways / remove_link
//! ```
//! A cluster without the Link CRD (the list answers 404) or without the RBAC to read Links (403)
//! is a state, not an error: it is logged once and asked again every probe interval.

use crate::ingest::lock;
use crate::link::{self, GatewayOutcome, Link};
use crate::model::Cluster;
use crate::probe::Prober;
use crate::wire::Interner;
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Links by `namespace/name`.
type Links = BTreeMap<String, Link>;

/// Follows Links and probes their gateways every `interval` (and at once when a Link changes),
/// each probe bounded by `timeout`, until the task is aborted.
pub async fn follow_links(
    client: kube::Client,
    cluster: Arc<Mutex<Cluster>>,
    interval: Duration,
    timeout: Duration,
) {
    let prober = match Prober::new(timeout) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "cannot build the gateway probe; multicluster gateways are not probed");
            return;
        }
    };
    let gvk = GroupVersionKind::gvk(link::GROUP, link::VERSION, link::KIND);
    let api: kube::Api<DynamicObject> = kube::Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(&gvk, link::PLURAL),
    );
    let (tx, rx) = tokio::sync::watch::channel(Links::new());
    let watch = tokio::spawn(watch_links(api, tx, interval));
    probe_links(rx, cluster, prober, interval).await;
    watch.abort();
}

/// Keeps `tx` equal to the Links the API server has.
async fn watch_links(
    api: kube::Api<DynamicObject>,
    tx: tokio::sync::watch::Sender<Links>,
    slow_retry: Duration,
) {
    let mut events = watcher(api, watcher::Config::default()).boxed();
    let mut listing = Links::new();
    let mut absent_logged = false;
    let mut backoff = Duration::from_secs(1);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(o)) => {
                let l = parse(&o);
                listing.insert(l.key(), l);
            }
            Ok(watcher::Event::InitDone) => {
                if std::mem::take(&mut absent_logged) {
                    info!("multicluster Links are served now; probing their gateways");
                }
                backoff = Duration::from_secs(1);
                info!(links = listing.len(), "multicluster Links listed");
                tx.send_replace(std::mem::take(&mut listing));
            }
            Ok(watcher::Event::Apply(o)) => {
                let l = parse(&o);
                tx.send_modify(|m| {
                    m.insert(l.key(), l);
                });
            }
            Ok(watcher::Event::Delete(o)) => {
                let l = parse(&o);
                info!(link = %l.key(), "multicluster Link deleted");
                tx.send_modify(|m| {
                    m.remove(&l.key());
                });
            }
            Err(e) => {
                match api_code(&e) {
                    Some(code @ (403 | 404)) => {
                        // Without the CRD, or without leave to read it, there are no Links.
                        tx.send_if_modified(|m| {
                            let had = !m.is_empty();
                            m.clear();
                            had
                        });
                        if !absent_logged {
                            let why = if code == 404 {
                                "the cluster serves no Link CRD (links.multicluster.linkerd.io/v1alpha1)"
                            } else {
                                "reading links.multicluster.linkerd.io is forbidden: grant get, list and watch"
                            };
                            info!(retry = ?slow_retry, "{why}: no multicluster gateway is probed");
                            absent_logged = true;
                        } else {
                            debug!(code, "still no Links to read");
                        }
                        tokio::time::sleep(slow_retry).await;
                    }
                    _ => {
                        warn!(error = %e, retry = ?backoff, "watch of multicluster Links failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
    }
}

fn api_code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
        watcher::Error::WatchError(s) => Some(s.code),
        _ => None,
    }
}

fn parse(o: &DynamicObject) -> Link {
    let l = link::parse(
        o.metadata.namespace.as_deref().unwrap_or_default(),
        o.metadata.name.as_deref().unwrap_or_default(),
        o.data.get("spec"),
    );
    match &l.target {
        Err(e) if !l.addresses.is_empty() => {
            warn!(link = %l.key(), error = %e, "multicluster Link cannot be probed")
        }
        _ => {
            debug!(link = %l.key(), cluster = %l.target_cluster, addresses = ?l.addresses, "multicluster Link")
        }
    }
    l
}

/// Probes every Link's gateways when the Links change and every `interval`, and writes the
/// outcome into the model; ends when the watch task does.
async fn probe_links(
    mut rx: tokio::sync::watch::Receiver<Links>,
    cluster: Arc<Mutex<Cluster>>,
    prober: Prober,
    interval: Duration,
) {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut interner = Interner::default();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            changed = rx.changed() => if changed.is_err() { return },
        }
        let links = rx.borrow_and_update().clone();
        forget_vanished(&cluster, &links);
        let rounds = links.values().map(|l| probe_link(&prober, l));
        let probed = futures::future::join_all(rounds).await;
        // Links deleted while their gateways were probed stay deleted.
        let current = rx.borrow().clone();
        let now = crate::time::now();
        let mut model = lock(&cluster);
        for (l, outcomes) in links.values().zip(probed) {
            if current.get(&l.key()) != Some(l) {
                continue;
            }
            let records = link::records(l, outcomes, now, &mut interner);
            if model.set_gateways(&l.key(), &l.target_cluster, records, now) {
                info!(link = %l.key(), cluster = %l.target_cluster, "gateway evidence changed");
            }
        }
        drop(model);
        forget_vanished(&cluster, &current);
    }
}

/// Removes from the model the gateways of Links that are no longer in `links`.
fn forget_vanished(cluster: &Mutex<Cluster>, links: &Links) {
    let mut model = lock(cluster);
    let gone: Vec<String> = model
        .links()
        .filter(|k| !links.contains_key(*k))
        .map(String::from)
        .collect();
    for key in gone {
        model.remove_link(&key, crate::time::now());
        info!(link = %key, "multicluster Link gone; its gateways are forgotten");
    }
}

async fn probe_link(prober: &Prober, l: &Link) -> BTreeMap<String, GatewayOutcome> {
    let Ok(target) = &l.target else {
        return BTreeMap::new();
    };
    let probes = l.addresses.iter().map(|a| async move {
        let outcome = match prober.probe(a, target.port, &target.identity).await {
            Ok((address, certificates)) => GatewayOutcome::Chain {
                address,
                certificates,
            },
            Err((address, e)) => {
                debug!(link = %l.key(), gateway = %a, error = %e, "gateway probe failed");
                GatewayOutcome::Failed {
                    address,
                    kind: e.kind().to_string(),
                    detail: e.to_string(),
                }
            }
        };
        (a.clone(), outcome)
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .collect()
}
