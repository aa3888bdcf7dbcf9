//! Tests of the simulated API server through a real `kube::Client`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::time::timeout;

use super::selector::{FieldSelector, LabelSelector};
use super::{KubeSim, KubeSimOptions};

/// Upper bound for any single wait in these tests.
const WAIT: Duration = Duration::from_secs(5);

async fn start_with(options: KubeSimOptions) -> (KubeSim, kube::Client) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let sim = KubeSim::start_with("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let config = kube::Config::new(sim.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    (sim, client)
}

async fn start() -> (KubeSim, kube::Client) {
    start_with(KubeSimOptions::default()).await
}

fn pod(namespace: &str, name: &str, node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace, "labels": { "app": "web" } },
        "spec": { "nodeName": node, "containers": [{ "name": "main", "image": "busybox" }] },
        "status": { "phase": "Running", "podIP": "127.0.1.1" },
    }))
    .unwrap()
}

fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

fn name_of<K: kube::Resource>(object: &K) -> String {
    object.meta().name.clone().unwrap_or_default()
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Next watcher event that is not an error, within [`WAIT`].
async fn next_event<K, S>(stream: &mut S) -> Event<K>
where
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
{
    timeout(WAIT, stream.next())
        .await
        .expect("timed out waiting for a watcher event")
        .expect("watcher stream ended")
        .expect("watcher error")
}

/// Skips the initial listing of a watcher, returning the objects it listed.
async fn initial_objects<K, S>(stream: &mut S) -> Vec<K>
where
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
{
    let mut objects = Vec::new();
    for _ in 0..1000 {
        match next_event(stream).await {
            Event::Init => {}
            Event::InitApply(object) => objects.push(object),
            Event::InitDone => return objects,
            _ => panic!("unexpected event before the initial listing finished"),
        }
    }
    panic!("the initial listing did not finish");
}

/// Next raw watch event, within [`WAIT`].
async fn next_raw<K, S>(stream: &mut S) -> WatchEvent<K>
where
    S: Stream<Item = Result<WatchEvent<K>, kube::Error>> + Unpin,
{
    timeout(WAIT, stream.next())
        .await
        .expect("timed out waiting for a watch event")
        .expect("watch stream ended")
        .expect("watch error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_node_field_selector_returns_only_pods_on_that_node() {
    let (sim, client) = start().await;
    sim.apply_pod(pod("app", "a1", "node-a"));
    sim.apply_pod(pod("app", "a2", "node-a"));
    sim.apply_pod(pod("other", "a3", "node-a"));
    sim.apply_pod(pod("app", "b1", "node-b"));

    let pods: Api<Pod> = Api::all(client.clone());
    let listed = pods
        .list(&ListParams::default().fields("spec.nodeName=node-a"))
        .await
        .unwrap();
    let names: Vec<String> = listed.items.iter().map(name_of).collect();
    assert_eq!(names, ["a1", "a2", "a3"]);
    assert_eq!(
        listed.metadata.resource_version,
        Some(sim.resource_version().to_string())
    );
    assert!(listed.items.iter().all(|p| p.metadata.uid.is_some()
        && p.metadata.creation_timestamp.is_some()
        && p.metadata.resource_version.is_some()));

    let in_app: Api<Pod> = Api::namespaced(client.clone(), "app");
    let listed = in_app
        .list(&ListParams::default().fields("spec.nodeName=node-a,metadata.name!=a1"))
        .await
        .unwrap();
    assert_eq!(listed.items.iter().map(name_of).collect::<Vec<_>>(), ["a2"]);

    let listed = pods
        .list(&ListParams::default().fields("spec.nodeName!=node-a"))
        .await
        .unwrap();
    assert_eq!(listed.items.iter().map(name_of).collect::<Vec<_>>(), ["b1"]);

    let listed = pods
        .list(&ListParams::default().fields("metadata.namespace=other"))
        .await
        .unwrap();
    assert_eq!(listed.items.iter().map(name_of).collect::<Vec<_>>(), ["a3"]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_on_a_node_sees_add_modify_and_delete() {
    let (sim, client) = start().await;
    sim.apply_pod(pod("app", "before", "node-a"));
    sim.apply_pod(pod("app", "elsewhere", "node-b"));
    let api: Api<Pod> = Api::all(client);
    let mut stream = watcher::watcher(
        api,
        watcher::Config::default().fields("spec.nodeName=node-a"),
    )
    .boxed();
    let initial = initial_objects(&mut stream).await;
    assert_eq!(initial.iter().map(name_of).collect::<Vec<_>>(), ["before"]);

    sim.apply_pod(pod("app", "elsewhere-2", "node-b"));
    sim.apply_pod(pod("app", "new", "node-a"));
    match next_event(&mut stream).await {
        Event::Apply(p) => assert_eq!(name_of(&p), "new"),
        other => panic!("expected the new pod, got {other:?}"),
    }

    let mut changed = pod("app", "new", "node-a");
    changed
        .metadata
        .labels
        .get_or_insert_default()
        .insert("version".into(), "2".into());
    sim.apply_pod(changed);
    match next_event(&mut stream).await {
        Event::Apply(p) => {
            assert_eq!(name_of(&p), "new");
            assert_eq!(p.metadata.labels.unwrap()["version"], "2");
        }
        other => panic!("expected the modified pod, got {other:?}"),
    }

    assert!(sim.delete_pod("app", "new"));
    match next_event(&mut stream).await {
        Event::Delete(p) => assert_eq!(name_of(&p), "new"),
        other => panic!("expected the deletion, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_watcher_works() {
    let (sim, client) = start().await;
    sim.apply_pod(pod("app", "before", "node-a"));
    let api: Api<Pod> = Api::namespaced(client, "app");
    let mut stream = watcher::watcher(
        api,
        watcher::Config::default()
            .fields("spec.nodeName=node-a")
            .streaming_lists(),
    )
    .boxed();
    let initial = initial_objects(&mut stream).await;
    assert_eq!(initial.iter().map(name_of).collect::<Vec<_>>(), ["before"]);
    sim.apply_pod(pod("app", "after", "node-a"));
    match next_event(&mut stream).await {
        Event::Apply(p) => assert_eq!(name_of(&p), "after"),
        other => panic!("expected the new pod, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_get_finds_it_or_says_not_found() {
    let (sim, client) = start().await;
    sim.apply_config_map(config_map(
        "linkerd",
        "linkerd-identity-trust-roots",
        &[("ca-bundle.crt", "PEM")],
    ));
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "linkerd");
    let found = api.get("linkerd-identity-trust-roots").await.unwrap();
    assert_eq!(found.data.unwrap()["ca-bundle.crt"], "PEM");
    assert_eq!(found.metadata.namespace.as_deref(), Some("linkerd"));

    let error = api.get("missing").await.unwrap_err();
    let kube::Error::Api(status) = &error else {
        panic!("expected an API error, got {error:?}");
    };
    assert_eq!(status.code, 404);
    assert_eq!(status.reason, "NotFound");
    assert_eq!(status.message, "configmaps \"missing\" not found");
    assert!(api.get_opt("missing").await.unwrap().is_none());

    // The raw body is the API server's Status.
    let raw: Value = serde_json::from_str(
        &client
            .request_text(
                http::Request::get("/api/v1/namespaces/linkerd/pods/x")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .map(|_| String::new())
            .unwrap_or_else(|error| match error {
                kube::Error::Api(status) => serde_json::to_string(&status).unwrap(),
                other => panic!("unexpected error {other:?}"),
            }),
    )
    .unwrap();
    assert_eq!(raw["code"], 404);
    assert_eq!(raw["message"], "pods \"x\" not found");
    assert_eq!(raw["details"]["kind"], "pods");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_watch_by_name_sees_a_change() {
    let (sim, client) = start().await;
    sim.apply_config_map(config_map(
        "linkerd",
        "linkerd-identity-trust-roots",
        &[("ca-bundle.crt", "old")],
    ));
    sim.apply_config_map(config_map("linkerd", "other", &[("x", "1")]));
    let api: Api<ConfigMap> = Api::namespaced(client, "linkerd");
    let mut stream = watcher::watcher(
        api,
        watcher::Config::default().fields("metadata.name=linkerd-identity-trust-roots"),
    )
    .boxed();
    let initial = initial_objects(&mut stream).await;
    assert_eq!(
        initial.iter().map(name_of).collect::<Vec<_>>(),
        ["linkerd-identity-trust-roots"]
    );

    sim.apply_config_map(config_map("linkerd", "other", &[("x", "2")]));
    sim.apply_config_map(config_map(
        "default",
        "linkerd-identity-trust-roots",
        &[("ca-bundle.crt", "elsewhere")],
    ));
    sim.apply_config_map(config_map(
        "linkerd",
        "linkerd-identity-trust-roots",
        &[("ca-bundle.crt", "new")],
    ));
    match next_event(&mut stream).await {
        Event::Apply(cm) => {
            assert_eq!(cm.metadata.namespace.as_deref(), Some("linkerd"));
            assert_eq!(cm.data.unwrap()["ca-bundle.crt"], "new");
        }
        other => panic!("expected the changed ConfigMap, got {other:?}"),
    }
    assert!(sim.delete_config_map("linkerd", "linkerd-identity-trust-roots"));
    match next_event(&mut stream).await {
        Event::Delete(cm) => assert_eq!(name_of(&cm), "linkerd-identity-trust-roots"),
        other => panic!("expected the deletion, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_moved_off_the_field_selector_is_deleted_for_the_watcher() {
    let (sim, client) = start().await;
    sim.apply_pod(pod("app", "mover", "node-a"));
    let start_rv = sim.resource_version();
    let api: Api<Pod> = Api::all(client.clone());
    let params = WatchParams::default().fields("spec.nodeName=node-a");
    let mut raw = api
        .watch(&params, &start_rv.to_string())
        .await
        .unwrap()
        .boxed();

    let mut watcher_stream = watcher::watcher(
        api.clone(),
        watcher::Config::default().fields("spec.nodeName=node-a"),
    )
    .boxed();
    assert_eq!(initial_objects(&mut watcher_stream).await.len(), 1);

    sim.apply_pod(pod("app", "mover", "node-b"));
    match next_raw(&mut raw).await {
        WatchEvent::Deleted(p) => {
            assert_eq!(name_of(&p), "mover");
            // The previous content with the new resourceVersion, as the API server sends it.
            assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("node-a"));
            assert_eq!(
                p.metadata.resource_version,
                Some(sim.resource_version().to_string())
            );
        }
        other => panic!("expected DELETED, got {other:?}"),
    }
    match next_event(&mut watcher_stream).await {
        Event::Delete(p) => assert_eq!(name_of(&p), "mover"),
        other => panic!("expected a deletion, got {other:?}"),
    }

    // Moving back is an ADDED.
    sim.apply_pod(pod("app", "mover", "node-a"));
    match next_raw(&mut raw).await {
        WatchEvent::Added(p) => assert_eq!(name_of(&p), "mover"),
        other => panic!("expected ADDED, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_old_resource_version_gets_410_gone() {
    let (sim, client) = start().await;
    sim.apply_config_map(config_map("linkerd", "cm", &[("v", "1")]));
    let old = sim.resource_version();
    sim.apply_config_map(config_map("linkerd", "cm", &[("v", "2")]));
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "linkerd");

    // Still in the history: replayed.
    let mut replay = api
        .watch(&WatchParams::default(), &old.to_string())
        .await
        .unwrap()
        .boxed();
    match next_raw(&mut replay).await {
        WatchEvent::Modified(cm) => assert_eq!(cm.data.unwrap()["v"], "2"),
        other => panic!("expected the replayed change, got {other:?}"),
    }

    sim.compact();
    let mut expired = api
        .watch(&WatchParams::default(), &old.to_string())
        .await
        .unwrap()
        .boxed();
    match next_raw(&mut expired).await {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    let end = timeout(WAIT, expired.next()).await.unwrap();
    assert!(end.is_none(), "the stream ends after the ERROR");

    // A bounded history expires by itself.
    let (small, client) = start_with(KubeSimOptions {
        history_limit: 2,
        ..KubeSimOptions::default()
    })
    .await;
    small.apply_config_map(config_map("linkerd", "cm", &[("v", "1")]));
    let old = small.resource_version();
    for v in 2..6 {
        small.apply_config_map(config_map("linkerd", "cm", &[("v", &v.to_string())]));
    }
    let api: Api<ConfigMap> = Api::namespaced(client, "linkerd");
    let mut expired = api
        .watch(&WatchParams::default(), &old.to_string())
        .await
        .unwrap()
        .boxed();
    assert!(matches!(next_raw(&mut expired).await, WatchEvent::Error(s) if s.code == 410));
    // An exact list at that version is gone too.
    let error = api
        .list(
            &ListParams::default()
                .at(&old.to_string())
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&error), Some(410));
    small.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_kubeconfig_works_with_kube() {
    let (sim, _) = start().await;
    sim.apply_pod(pod("default", "p", "node-a"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&path).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    assert_eq!(
        config.cluster_url.to_string().trim_end_matches('/'),
        sim.url()
    );
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_selectors_and_pagination() {
    let (sim, client) = start().await;
    for (name, app, tier) in [
        ("p1", "web", Some("front")),
        ("p2", "web", None),
        ("p3", "db", Some("back")),
        ("p4", "cache", None),
        ("p5", "db", None),
    ] {
        let mut p = pod("app", name, "node-a");
        let labels = p.metadata.labels.get_or_insert_default();
        labels.insert("app".into(), app.into());
        if let Some(tier) = tier {
            labels.insert("tier".into(), tier.into());
        }
        sim.apply_pod(p);
    }
    let api: Api<Pod> = Api::namespaced(client, "app");
    let names = |selector: &'static str| {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().labels(selector))
                .await
                .unwrap()
                .items
                .iter()
                .map(name_of)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=web").await, ["p1", "p2"]);
    assert_eq!(names("app!=web").await, ["p3", "p4", "p5"]);
    assert_eq!(names("tier").await, ["p1", "p3"]);
    assert_eq!(names("!tier").await, ["p2", "p4", "p5"]);
    assert_eq!(names("app in (db, cache),!tier").await, ["p4", "p5"]);
    assert_eq!(names("app notin (db),tier").await, ["p1"]);

    // Pages come from one consistent snapshot even if objects change in between.
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(
        first.items.iter().map(name_of).collect::<Vec<_>>(),
        ["p1", "p2"]
    );
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().unwrap();
    sim.delete_pod("app", "p3");
    sim.apply_pod(pod("app", "p35", "node-a"));
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(
        second.items.iter().map(name_of).collect::<Vec<_>>(),
        ["p3", "p4"]
    );
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let third = api
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(third.items.iter().map(name_of).collect::<Vec<_>>(), ["p5"]);
    assert!(third.metadata.continue_.is_none());

    // The watcher pages through lists too.
    let stream = watcher::watcher(api.clone(), watcher::Config::default().page_size(1));
    let mut stream = stream.boxed();
    let initial = initial_objects(&mut stream).await;
    assert_eq!(
        initial.iter().map(name_of).collect::<Vec<_>>(),
        ["p1", "p2", "p35", "p4", "p5"]
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_writes_follow_kubernetes_semantics() {
    let (sim, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "linkerd");
    let created = api
        .create(
            &PostParams::default(),
            &config_map("linkerd", "cm", &[("a", "1")]),
        )
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(
        sim.get::<ConfigMap>("linkerd", "cm").unwrap().data,
        created.data
    );

    let again = api
        .create(&PostParams::default(), &config_map("linkerd", "cm", &[]))
        .await
        .unwrap_err();
    assert_eq!(status_code(&again), Some(409));

    let mut stale = created.clone();
    stale.metadata.resource_version = Some("1".into());
    let conflict = api
        .replace("cm", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(status_code(&conflict), Some(409));

    let mut fresh = created.clone();
    fresh.data = Some(BTreeMap::from([("a".into(), "2".into())]));
    let replaced = api
        .replace("cm", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );

    let patched = api
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "b": "3" } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["a"], "2");
    assert_eq!(patched.data.as_ref().unwrap()["b"], "3");

    let json_patched = api
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{ "op": "remove", "path": "/data/a" }])).unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(!json_patched.data.as_ref().unwrap().contains_key("a"));

    let applied = api
        .patch(
            "applied",
            &PatchParams::apply("kubesim-test"),
            &Patch::Apply(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": "applied" },
                "data": { "k": "v" },
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.namespace.as_deref(), Some("linkerd"));

    let missing = api
        .patch("nope", &PatchParams::default(), &Patch::Merge(json!({})))
        .await
        .unwrap_err();
    assert_eq!(status_code(&missing), Some(404));

    api.delete("cm", &DeleteParams::default()).await.unwrap();
    assert!(sim.get::<ConfigMap>("linkerd", "cm").is_none());
    let gone = api
        .delete("cm", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(status_code(&gone), Some(404));

    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    assert!(sim.config_maps().is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_separates_spec_and_status_writes() {
    let (sim, client) = start().await;
    sim.apply_pod(pod("app", "p", "node-a"));
    let api: Api<Pod> = Api::namespaced(client, "app");

    let patched = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": { "labels": { "x": "y" } },
                "status": { "phase": "Failed" },
            })),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["x"], "y");
    assert_eq!(patched.status.unwrap().phase.as_deref(), Some("Running"));

    let patched = api
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Succeeded" } })),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().phase.as_deref(), Some("Succeeded"));
    assert_eq!(
        sim.pods()[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_400_status_and_unknown_paths_a_404() {
    let (sim, client) = start().await;
    for path in [
        "/api/v1/pods?limit=abc",
        "/api/v1/pods?fieldSelector=nonsense",
        "/api/v1/pods?fieldSelector=spec.bogus%3D1",
        "/api/v1/pods?labelSelector=app+in+(web",
        "/api/v1/pods?labelSelector=%3D%3D",
        "/api/v1/pods?watch=maybe",
        "/api/v1/pods?watch=true&resourceVersion=xyz",
        "/api/v1/pods?watch=true&timeoutSeconds=-1",
        "/api/v1/pods?continue=zz",
        "/api/v1/pods?resourceVersionMatch=Sometimes",
        "/api/v1/secrets?fieldSelector=type%3Dx%5Cq",
    ] {
        let error = client
            .request::<Value>(http::Request::get(path).body(Vec::new()).unwrap())
            .await
            .unwrap_err();
        assert_eq!(status_code(&error), Some(400), "{path}: {error:?}");
    }
    for path in [
        "/api/v1/bogus",
        "/apis/example.com/v1/things",
        "/api/v1/pods/x",
        "/api/v1/namespaces/ns/pods/x/log",
        "/nothing/here",
    ] {
        let error = client
            .request::<Value>(http::Request::get(path).body(Vec::new()).unwrap())
            .await
            .unwrap_err();
        let kube::Error::Api(status) = &error else {
            panic!("{path}: expected an API error, got {error:?}");
        };
        assert_eq!(status.code, 404, "{path}");
        assert_eq!(status.reason, "NotFound", "{path}");
    }
    // Secrets do support `type` as a field label.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::all(client.clone());
    secrets
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
        .unwrap();

    // Discovery.
    let core = client.list_core_api_versions().await.unwrap();
    assert_eq!(core.versions, ["v1"]);
    let resources = client.list_core_api_resources("v1").await.unwrap();
    assert!(
        resources
            .resources
            .iter()
            .any(|r| r.name == "pods" && r.namespaced)
    );
    let groups = client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "apps"));
    let apps = client.list_api_group_resources("apps/v1").await.unwrap();
    assert!(apps.resources.iter().any(|r| r.name == "deployments"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_timeout_and_bookmarks() {
    let (sim, client) = start_with(KubeSimOptions {
        bookmark_interval: Duration::from_millis(100),
        ..KubeSimOptions::default()
    })
    .await;
    sim.apply_pod(pod("app", "p", "node-a"));
    let api: Api<Pod> = Api::all(client);

    let mut stream = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(next_raw(&mut stream).await, WatchEvent::Added(p) if name_of(&p) == "p"));
    let end = timeout(WAIT, stream.next())
        .await
        .expect("the watch did not time out");
    assert!(end.is_none());

    let rv = sim.resource_version();
    let mut stream = api
        .watch(&WatchParams::default(), &rv.to_string())
        .await
        .unwrap()
        .boxed();
    sim.apply_config_map(config_map("default", "unrelated", &[]));
    match next_raw(&mut stream).await {
        WatchEvent::Bookmark(bookmark) => {
            assert_eq!(bookmark.types.kind, "Pod");
            assert_eq!(
                bookmark.metadata.resource_version,
                sim.resource_version().to_string()
            );
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_changes_reach_a_watch_in_order() {
    let (sim, client) = start().await;
    sim.apply_config_map(config_map("linkerd", "cm", &[("n", "0")]));
    let rv = sim.resource_version();
    let api: Api<ConfigMap> = Api::namespaced(client, "linkerd");
    let mut stream = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv.to_string())
        .await
        .unwrap()
        .boxed();
    // More changes at once than the broadcast channel holds: the watch catches up from the
    // history.
    let count = 3000;
    let padding = "x".repeat(4096);
    for n in 1..=count {
        sim.apply_config_map(config_map(
            "linkerd",
            "cm",
            &[("n", &n.to_string()), ("padding", &padding)],
        ));
    }
    let seen: Vec<String> = timeout(
        Duration::from_secs(20),
        (&mut stream)
            .map(|event| match event.unwrap() {
                WatchEvent::Modified(cm) => cm.data.unwrap()["n"].clone(),
                other => panic!("unexpected {other:?}"),
            })
            .take(count)
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let expected: Vec<String> = (1..=count).map(|n| n.to_string()).collect();
    assert_eq!(seen, expected);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_watch_streams_and_requests_are_recorded() {
    let (sim, client) = start().await;
    let api: Api<Pod> = Api::all(client.clone());
    api.list(&ListParams::default().fields("spec.nodeName=node-a"))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().fields("spec.nodeName=node-a"), "0")
        .await
        .unwrap()
        .boxed();
    let in_app: Api<Pod> = Api::namespaced(client.clone(), "app");
    let _ = in_app.get("missing").await;

    let requests = sim.requests();
    let list = requests
        .iter()
        .find(|r| r.verb == Some("list"))
        .expect("a recorded list");
    assert_eq!(list.method, http::Method::GET);
    assert_eq!(list.path, "/api/v1/pods");
    assert!(
        list.query.contains("fieldSelector=spec.nodeName%3Dnode-a"),
        "{}",
        list.query
    );
    assert_eq!(list.status, http::StatusCode::OK);
    assert_eq!(list.resource.as_deref(), Some("pods"));
    assert_eq!(list.api_group.as_deref(), Some(""));
    let watch = requests
        .iter()
        .find(|r| r.verb == Some("watch"))
        .expect("a recorded watch");
    assert_eq!(watch.status, http::StatusCode::OK);
    let get = requests
        .iter()
        .find(|r| r.verb == Some("get"))
        .expect("a recorded get");
    assert_eq!(get.status, http::StatusCode::NOT_FOUND);
    assert_eq!(get.name.as_deref(), Some("missing"));

    timeout(Duration::from_secs(6), sim.shutdown())
        .await
        .expect("shutdown took too long");
    let end = timeout(WAIT, stream.try_next())
        .await
        .expect("the watch did not end");
    assert!(
        !matches!(end, Ok(Some(_))),
        "no event after shutdown: {end:?}"
    );
}

#[test]
fn field_selectors_parse_like_the_api_server() {
    let object = json!({
        "metadata": { "name": "a,b", "namespace": "ns" },
        "spec": { "nodeName": "node-a" },
    });
    let matches = |selector: &str| FieldSelector::parse(selector).unwrap().matches(&object);
    assert!(matches(""));
    assert!(matches("spec.nodeName=node-a"));
    assert!(matches("spec.nodeName==node-a,metadata.namespace=ns"));
    assert!(!matches("spec.nodeName!=node-a"));
    assert!(matches("metadata.name=a\\,b"));
    assert!(matches("status.phase="));
    assert!(matches("spec.hostNetwork=false"));
    assert!(FieldSelector::parse("novalue").is_err());
    assert!(FieldSelector::parse("a=b\\x").is_err());
}

#[test]
fn label_selectors_parse_like_the_api_server() {
    let object = json!({ "metadata": { "labels": { "app": "web", "n": "3" } } });
    let matches = |selector: &str| LabelSelector::parse(selector).unwrap().matches(&object);
    assert!(matches(""));
    assert!(matches("app=web"));
    assert!(matches("app==web, n"));
    assert!(matches("app in (web,db)"));
    assert!(matches("missing!=x"));
    assert!(matches("!missing"));
    assert!(matches("n>2,n<4"));
    assert!(!matches("app notin (web)"));
    assert!(!matches("app,missing"));
    for bad in [
        "app in (web",
        "=x",
        "app=w b",
        "a b c",
        "app in web",
        ",",
        "n>x",
    ] {
        assert!(LabelSelector::parse(bad).is_err(), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_kinds_need_little_code() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

    let (sim, client) = start().await;
    // Cluster-scoped built-in kind.
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": "node-a", "namespace": "ignored", "labels": { "zone": "z1" } },
    }))
    .unwrap();
    let stored = sim.apply(&node).unwrap();
    assert_eq!(stored.metadata.namespace, None);
    let nodes: Api<Node> = Api::all(client.clone());
    assert_eq!(name_of(&nodes.get("node-a").await.unwrap()), "node-a");
    let listed = nodes
        .list(&ListParams::default().labels("zone=z1"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);

    // A named group.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "linkerd");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": "leader" },
        "spec": { "holderIdentity": "agent-1" },
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let got = sim.get::<Lease>("linkerd", "leader").unwrap();
    assert_eq!(
        got.spec.unwrap().holder_identity.as_deref(),
        Some("agent-1")
    );

    // A kind registered at run time, written as JSON.
    sim.register(super::ResourceType::new(
        "example.com",
        "v1",
        "widgets",
        "Widget",
        true,
    ));
    sim.apply_json(json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": { "name": "w", "namespace": "ns" },
        "spec": { "size": 3 },
    }))
    .unwrap();
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "ns", &resource);
    let widget = widgets.get("w").await.unwrap();
    assert_eq!(widget.data["spec"]["size"], 3);
    assert!(
        sim.apply_json(json!({ "apiVersion": "v9", "kind": "Nope" }))
            .is_err()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_clients_get_partial_object_metadata() {
    use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
    use kube::core::PartialObjectMeta;

    let (sim, client) = start().await;
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": "api-5f6b8c", "namespace": "shop",
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "Deployment", "name": "api",
                                  "uid": "u-api", "controller": true }] },
        "spec": { "selector": {}, "template": { "spec": { "containers": [
            { "name": "main", "image": "a-large-template" }] } } },
    }))
    .unwrap();
    sim.apply(&rs).unwrap();
    let meta: Api<PartialObjectMeta<ReplicaSet>> = Api::all(client.clone());

    let listed = meta.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let owner = &listed.items[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "api")
    );

    let mut events = watcher::watcher(meta, watcher::Config::default()).boxed();
    let initial = initial_objects(&mut events).await;
    assert_eq!(name_of(&initial[0]), "api-5f6b8c");
    sim.delete::<ReplicaSet>("shop", "api-5f6b8c").unwrap();
    match next_event(&mut events).await {
        Event::Delete(gone) => assert_eq!(name_of(&gone), "api-5f6b8c"),
        other => panic!("expected a deletion, got {other:?}"),
    }

    // What goes over the wire: the full list has the pod template, the metadata-only one not.
    sim.apply(&rs).unwrap();
    let get = |accept: Option<&str>| {
        let mut request = http::Request::get("/apis/apps/v1/namespaces/shop/replicasets");
        if let Some(accept) = accept {
            request = request.header(http::header::ACCEPT, accept);
        }
        client.request_text(request.body(Vec::new()).unwrap())
    };
    let full_text = get(None).await.unwrap();
    assert!(full_text.contains("a-large-template"), "{full_text}");
    let partial = get(Some(
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    ))
    .await
    .unwrap();
    assert!(
        partial.contains("\"PartialObjectMetadataList\"")
            && partial.contains("\"meta.k8s.io/v1\"")
            && !partial.contains("a-large-template"),
        "{partial}"
    );
    assert!(
        sim.requests()
            .iter()
            .filter(|r| r.resource.as_deref() == Some("replicasets"))
            .filter_map(|r| r.accept.as_deref())
            .any(|a| a.contains("as=PartialObjectMetadata;")),
        "the watcher asked for metadata only"
    );

    // A full object of another group and version, served by the same generic paths.
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "ledger", "namespace": "shop" },
        "spec": { "selector": {}, "serviceName": "ledger", "template": {},
                  "updateStrategy": { "type": "OnDelete" } },
    }))
    .unwrap();
    sim.apply(&sts).unwrap();
    let full: Api<StatefulSet> = Api::namespaced(client, "shop");
    let got = full.get("ledger").await.unwrap();
    assert_eq!(
        got.spec.update_strategy.unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn token_reviews_authenticate_bound_tokens_like_the_api_server() {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    let (sim, client) = start().await;
    let agent = sim.apply_pod(pod("anchorwatch", "agent-x1", "node-1"));
    let uid = agent.metadata.uid.clone().unwrap();
    let claims = super::TokenClaims {
        namespace: "anchorwatch".into(),
        service_account: "anchorwatch-agent".into(),
        pod_name: "agent-x1".into(),
        pod_uid: uid.clone(),
        node_name: Some("node-1".into()),
        audiences: vec!["anchorwatch".into()],
        expires_at: chrono::Utc::now() + chrono::TimeDelta::minutes(10),
    };
    let token = sim.issue_token(claims.clone());
    let expired = sim.issue_token(super::TokenClaims {
        expires_at: chrono::Utc::now() - chrono::TimeDelta::seconds(1),
        ..claims.clone()
    });
    let reviews: Api<TokenReview> = Api::all(client);
    let review = |token: String, audiences: &[&str]| {
        let reviews = reviews.clone();
        let audiences: Vec<String> = audiences.iter().map(|a| a.to_string()).collect();
        async move {
            let r = TokenReview {
                spec: TokenReviewSpec {
                    token,
                    audiences: Some(audiences),
                },
                ..Default::default()
            };
            reviews
                .create(&PostParams::default(), &r)
                .await
                .unwrap()
                .status
                .unwrap()
        }
    };
    let ok = review(token.clone(), &["anchorwatch"]).await;
    assert_eq!(ok.authenticated, Some(true), "{ok:?}");
    let user = ok.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:anchorwatch:anchorwatch-agent")
    );
    let extra = user.extra.unwrap();
    assert_eq!(extra["authentication.kubernetes.io/pod-uid"], vec![uid]);
    assert_eq!(
        extra["authentication.kubernetes.io/node-name"],
        vec!["node-1"]
    );
    // The payload is a JWT's: the expiry is readable.
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims_json: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims_json["exp"], json!(claims.expires_at.timestamp()));

    for (token, audiences, error) in [
        (token.clone(), &["other"][..], "audiences"),
        (expired, &["anchorwatch"][..], "expired"),
        (
            "forged.token.value".to_string(),
            &["anchorwatch"][..],
            "invalid bearer token",
        ),
    ] {
        let s = review(token, audiences).await;
        assert_ne!(s.authenticated, Some(true), "{s:?}");
        assert!(s.error.as_deref().unwrap_or("").contains(error), "{s:?}");
    }
    // Deleting the pod invalidates its token.
    assert!(sim.delete_pod("anchorwatch", "agent-x1"));
    let gone = review(token, &["anchorwatch"]).await;
    assert_ne!(gone.authenticated, Some(true), "{gone:?}");
    assert!(gone.error.unwrap().contains("not found"));
    sim.shutdown().await;
}
