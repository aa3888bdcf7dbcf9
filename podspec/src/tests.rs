use super::*;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};

/// The project's shared folder: `ANCHORWATCH_SHARED`, else `shared/` beside the repository.
fn shared_dir() -> std::path::PathBuf {
    std::env::var_os("ANCHORWATCH_SHARED")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn fixture(path: &str) -> String {
    let full = shared_dir().join("fixtures/linkerd").join(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("fixture {}: {e} (set ANCHORWATCH_SHARED)", full.display()))
}

/// The first YAML document of a fixture (the golden files end with a `---` separator).
fn first_doc<T: serde::de::DeserializeOwned>(path: &str) -> T {
    let text = fixture(path);
    let doc = serde_yaml::Deserializer::from_str(&text)
        .next()
        .expect("one document");
    T::deserialize(doc).expect("fixture parses")
}

/// The base64 body of the first PEM block, joined, for comparing PEM texts with other layouts.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect()
}

/// A pod as the API server would return it for a template: namespace and uid set.
fn mk_pod_from_template(
    meta: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    spec: Option<k8s_openapi::api::core::v1::PodSpec>,
    namespace: &str,
    name: &str,
) -> Pod {
    let mut pod = Pod {
        metadata: meta.unwrap_or_default(),
        spec,
        status: None,
    };
    pod.metadata.namespace = Some(namespace.into());
    pod.metadata.name = Some(name.into());
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod
}

#[test]
fn injected_pod_fixture_yields_identity_name_and_literal_anchors() {
    let pod: Pod = first_doc("injected/inject_emojivoto_pod.golden.yml");
    let meshed = meshed_pod(&pod).expect("injected pod is meshed");
    assert_eq!(
        meshed.service_account, "default",
        "no serviceAccountName means default"
    );
    assert_eq!(
        meshed.identity_name.as_deref(),
        Some("default.emojivoto.serviceaccount.identity.linkerd.cluster.local")
    );
    let SpecAnchors::Pem(pem) = &meshed.anchors else {
        panic!("expected literal anchors, got {:?}", meshed.anchors);
    };
    assert_eq!(
        pem_body(pem),
        pem_body(&fixture("cli-testdata/valid-trust-anchors.pem"))
    );
    assert_eq!(meshed.proxy.version, "test-inject-proxy-version");
    assert_eq!(meshed.proxy.admin_port, Some(4191));
    assert!(
        meshed.proxy.native_sidecar,
        "this golden pod runs the proxy as a native sidecar"
    );
    assert!(meshed.problems.is_empty(), "{:?}", meshed.problems);
}

#[test]
fn injected_deployment_and_statefulset_templates_expand_their_service_accounts() {
    let deploy: Deployment = first_doc("injected/inject_emojivoto_deployment.golden.yml");
    let tmpl = deploy.spec.template;
    let pod = mk_pod_from_template(tmpl.metadata, tmpl.spec, "emojivoto", "web-abc");
    let meshed = meshed_pod(&pod).unwrap();
    let sa = meshed.service_account.clone();
    assert_eq!(
        meshed.identity_name.unwrap(),
        format!("{sa}.emojivoto.serviceaccount.identity.linkerd.cluster.local")
    );
    assert!(matches!(meshed.anchors, SpecAnchors::Pem(_)));

    let sts: StatefulSet = first_doc("injected/inject_emojivoto_statefulset.golden.yml");
    let tmpl = sts.spec.template;
    let pod = mk_pod_from_template(tmpl.metadata, tmpl.spec, "emojivoto", "web-0");
    let meshed = meshed_pod(&pod).unwrap();
    assert!(
        meshed
            .identity_name
            .unwrap()
            .ends_with(".emojivoto.serviceaccount.identity.linkerd.cluster.local")
    );
}

fn mk_pod(containers: serde_json::Value, init: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"serviceAccountName": "sa", "containers": containers, "initContainers": init},
        "status": {"podIP": "10.0.0.7", "phase": "Running"}
    }))
    .unwrap()
}

#[test]
fn pod_without_proxy_is_not_meshed() {
    let pod = mk_pod(serde_json::json!([{"name": "app"}]), serde_json::json!([]));
    assert!(meshed_pod(&pod).is_none());
}

#[test]
fn native_sidecar_proxy_is_found_among_init_containers() {
    let pod = mk_pod(
        serde_json::json!([{"name": "app"}]),
        serde_json::json!([{
            "name": "linkerd-proxy", "restartPolicy": "Always", "image": "cr.l5d.io/linkerd/proxy:edge-25.1.1",
            "env": [
                {"name": "_pod_ns", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "_pod_sa", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "LINKERD2_PROXY_IDENTITY_LOCAL_NAME", "value": "$(_pod_sa).$(_pod_ns).serviceaccount.identity.linkerd.cluster.local"},
                {"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", "valueFrom": {"configMapKeyRef": {"name": "linkerd-identity-trust-roots", "key": "ca-bundle.crt"}}}
            ]
        }]),
    );
    let meshed = meshed_pod(&pod).unwrap();
    assert!(meshed.proxy.native_sidecar);
    assert_eq!(meshed.proxy.version, "edge-25.1.1");
    assert_eq!(
        meshed.identity_name.as_deref(),
        Some("sa.ns.serviceaccount.identity.linkerd.cluster.local")
    );
    assert_eq!(
        meshed.anchors,
        SpecAnchors::ConfigMap {
            name: "linkerd-identity-trust-roots".into(),
            key: "ca-bundle.crt".into()
        }
    );
    assert_eq!(meshed.pod_ip, Some("10.0.0.7".parse().unwrap()));
}

#[test]
fn unresolvable_reference_is_kept_and_reported() {
    let pod = mk_pod(
        serde_json::json!([{"name": "linkerd-proxy", "env": [
            {"name": "LINKERD2_PROXY_IDENTITY_LOCAL_NAME", "value": "$(_nope).ns.serviceaccount.identity.linkerd.cluster.local"},
            {"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", "value": "not a pem"}
        ]}]),
        serde_json::json!([]),
    );
    let meshed = meshed_pod(&pod).unwrap();
    assert_eq!(
        meshed.identity_name.as_deref(),
        Some("$(_nope).ns.serviceaccount.identity.linkerd.cluster.local")
    );
    assert_eq!(meshed.problems.len(), 1);
    // A corrupt PEM is carried as it is: the aggregator judges it (CERT_UNREADABLE).
    assert_eq!(meshed.anchors, SpecAnchors::Pem("not a pem".into()));
}

#[test]
fn identity_disabled_proxy_has_no_identity_name() {
    let pod = mk_pod(
        serde_json::json!([{"name": "linkerd-proxy", "env": [
            {"name": "LINKERD2_PROXY_IDENTITY_DISABLED", "value": "disabled"}
        ]}]),
        serde_json::json!([]),
    );
    let meshed = meshed_pod(&pod).unwrap();
    assert!(meshed.proxy.identity_disabled);
    assert_eq!(meshed.identity_name, None);
    assert!(matches!(meshed.anchors, SpecAnchors::Missing(_)));
}

#[test]
fn dollar_escapes_and_garbage_pod_ip_do_not_panic() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [{"name": "linkerd-proxy", "env": [
            {"name": "LINKERD2_PROXY_IDENTITY_LOCAL_NAME", "value": "a$$b$(unterminated$"}
        ]}]},
        "status": {"podIP": "not-an-ip"}
    }))
    .unwrap();
    let meshed = meshed_pod(&pod).unwrap();
    assert_eq!(meshed.identity_name.as_deref(), Some("a$b$(unterminated$"));
    assert_eq!(meshed.pod_ip, None);
    assert!(meshed.problems.iter().any(|p| p.contains("podIP")));
}

#[test]
fn static_pod_mirror_is_flagged_and_a_controlled_pod_is_not() {
    let proxy = serde_json::json!([{"name": "linkerd-proxy"}]);
    let mut pod = mk_pod(proxy.clone(), serde_json::json!([]));
    pod.metadata.annotations = Some(
        [(
            "kubernetes.io/config.mirror".to_string(),
            "3f1c".to_string(),
        )]
        .into_iter()
        .collect(),
    );
    assert!(meshed_pod(&pod).unwrap().mirror);

    let pod = mk_pod(proxy, serde_json::json!([]));
    assert!(!meshed_pod(&pod).unwrap().mirror);
}

#[test]
fn the_identity_controllers_flags_are_read_from_its_container_in_either_form() {
    let pod = |args: serde_json::Value| -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "linkerd-identity-7f8d-x1", "namespace": "linkerd", "uid": "u1"},
            "spec": {"nodeName": "n1", "serviceAccountName": "linkerd-identity", "containers": [
                {"name": "identity", "image": "cr.l5d.io/linkerd/controller", "args": args},
                {"name": "linkerd-proxy", "image": "cr.l5d.io/linkerd/proxy",
                 "env": [{"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", "value": "x"}]}
            ]}
        }))
        .unwrap()
    };
    let m = meshed_pod(&pod(serde_json::json!([
        "identity",
        "-log-level=info",
        "-identity-clock-skew-allowance=45s",
        "--identity-issuance-lifetime",
        "48h0m0s"
    ])))
    .unwrap();
    assert_eq!(
        m.identity_controller,
        Some(IdentityFlags {
            clock_skew_allowance: "45s".into(),
            issuance_lifetime: "48h0m0s".into()
        })
    );
    let m = meshed_pod(&pod(serde_json::json!(["identity"]))).unwrap();
    assert_eq!(m.identity_controller, Some(IdentityFlags::default()));
}
