use super::*;
use crate::pod::{Proxy, SpecAnchors};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn mk_pod(uid: &str, ip: Option<&str>) -> MeshedPod {
    MeshedPod {
        identity_controller: None,
        namespace: "ns".into(),
        name: format!("pod-{uid}"),
        uid: uid.into(),
        node: "node-a".into(),
        service_account: "sa".into(),
        owners: vec![],
        pod_template_hash: String::new(),
        mirror: false,
        pod_ip: ip.map(|i| i.parse().unwrap()),
        phase: "Running".into(),
        proxy: Proxy {
            container: "linkerd-proxy".into(),
            native_sidecar: false,
            image: "proxy:v1".into(),
            version: "v1".into(),
            started_at: None,
            restart_count: 0,
            ready: true,
            running: Some(true),
            admin_port: Some(4191),
            identity_disabled: false,
        },
        identity_name: Some("sa.ns.serviceaccount.identity.linkerd.cluster.local".into()),
        anchors: SpecAnchors::Pem(String::new()),
        problems: vec![],
    }
}

fn mk_chain(byte: u8) -> ProbeOutcome {
    ProbeOutcome::Chain(PresentedChain {
        certificates: vec![vec![byte; 4]],
        tls_version: "TLSv1.3".into(),
        cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
    })
}

#[test]
fn new_pod_is_probed_on_its_ip_and_admin_port_with_its_identity_as_sni() {
    let mut inv = Inventory::new(None);
    let target = inv.apply(mk_pod("a", Some("127.0.1.5")), now()).unwrap();
    assert_eq!(target.addr, "127.0.1.5:4191".parse().unwrap());
    assert_eq!(
        target.server_name,
        "sa.ns.serviceaccount.identity.linkerd.cluster.local"
    );
    // The same pod again changes nothing and needs no probe.
    assert_eq!(inv.apply(mk_pod("a", Some("127.0.1.5")), now()), None);
}

#[test]
fn forced_admin_port_overrides_the_env_port() {
    let mut inv = Inventory::new(Some(14191));
    let target = inv.apply(mk_pod("a", Some("127.0.1.5")), now()).unwrap();
    assert_eq!(target.addr.port(), 14191);
}

#[test]
fn pod_without_ip_is_recorded_as_skipped_and_probed_once_it_has_one() {
    let mut inv = Inventory::new(None);
    assert_eq!(inv.apply(mk_pod("a", None), now()), None);
    let view = inv.view();
    let probe = view.pods["a"].1.probe.clone().unwrap();
    assert!(matches!(probe.outcome, ProbeOutcome::Skipped(ref r) if r.contains("no IP")));
    assert!(inv.apply(mk_pod("a", Some("127.0.1.5")), now()).is_some());
    assert!(
        inv.view().pods["a"].1.probe.is_none(),
        "the skip reason no longer holds"
    );
}

#[test]
fn identical_probe_results_keep_the_revision_and_the_first_seen_time() {
    let mut inv = Inventory::new(None);
    let t = inv.apply(mk_pod("a", Some("127.0.1.5")), now()).unwrap();
    assert!(inv.record("a", t.addr, mk_chain(1), None, now()));
    let rev = inv.view().pods["a"].0;
    let later = now() + chrono::Duration::seconds(30);
    assert!(!inv.record("a", t.addr, mk_chain(1), None, later));
    assert_eq!(inv.view().pods["a"].0, rev);
    assert!(inv.record("a", t.addr, mk_chain(2), None, later));
    let view = inv.view();
    assert!(view.pods["a"].0 > rev);
    assert_eq!(view.pods["a"].1.probe.as_ref().unwrap().since, later);
}

#[test]
fn results_for_pods_that_left_are_dropped_and_replace_all_forgets_missing_pods() {
    let mut inv = Inventory::new(None);
    inv.apply(mk_pod("a", Some("127.0.1.5")), now());
    inv.apply(mk_pod("b", Some("127.0.1.6")), now());
    assert!(inv.remove("a"));
    assert!(!inv.record(
        "a",
        "127.0.1.5:4191".parse().unwrap(),
        mk_chain(1),
        None,
        now()
    ));
    let targets = inv.replace_all(vec![mk_pod("c", Some("127.0.1.7"))], now());
    assert_eq!(targets.len(), 1);
    assert_eq!(inv.view().pods.keys().collect::<Vec<_>>(), vec!["c"]);
}

#[test]
fn restarted_proxy_is_probed_again() {
    let mut inv = Inventory::new(None);
    inv.apply(mk_pod("a", Some("127.0.1.5")), now());
    let mut restarted = mk_pod("a", Some("127.0.1.5"));
    restarted.proxy.restart_count = 1;
    assert!(inv.apply(restarted, now()).is_some());
    let mut relabelled = mk_pod("a", Some("127.0.1.5"));
    relabelled.proxy.restart_count = 1;
    relabelled.proxy.ready = false;
    assert!(
        inv.apply(relabelled, now()).is_none(),
        "readiness alone needs no new probe"
    );
}

#[test]
fn log_evidence_is_a_change_and_survives_pod_updates_and_probes() {
    let mut inv = Inventory::new(None);
    inv.apply(mk_pod("a", Some("127.0.1.5")), now());
    let logs = LogEvidence {
        kinds: vec![],
        problem: Some("no log directory /var/log/pods/ns_pod-a_a/linkerd-proxy".into()),
    };
    let rev = |inv: &Inventory| inv.view().pods["a"].0;
    let before = rev(&inv);
    assert!(inv.set_logs("a", logs.clone()));
    assert!(rev(&inv) > before, "the reporter sends it");
    assert!(
        !inv.set_logs("a", logs.clone()),
        "the same evidence is no change"
    );
    assert!(
        !inv.set_logs("gone", logs.clone()),
        "a pod no longer known is ignored"
    );
    let mut moved = mk_pod("a", Some("127.0.1.6"));
    moved.phase = "Running".into();
    inv.apply(moved, now());
    inv.record(
        "a",
        "127.0.1.6:4191".parse().unwrap(),
        mk_chain(1),
        None,
        now(),
    );
    assert_eq!(inv.view().pods["a"].1.logs.as_deref(), Some(&logs));
}
