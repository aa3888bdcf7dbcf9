use super::*;
use crate::trust::{TrustSources, read_bundle, read_issuer};
use crate::verify::parse_pem_bundle;
use anchorwatch_tests::pki::{Ca, window};

const NAME: &str = "sa.ns.serviceaccount.identity.linkerd.cluster.local";

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn mk_cluster(root: &Ca, issuer: &Ca) -> Cluster {
    let sources = TrustSources {
        namespace: "linkerd".into(),
        config_map: "linkerd-identity-trust-roots".into(),
        key: "ca-bundle.crt".into(),
        secret: "linkerd-identity-issuer".into(),
    };
    let mut c = Cluster::new(
        Trust::new(sources.clone()),
        std::time::Duration::from_secs(60),
        now(),
    );
    let data = BTreeMap::from([("ca-bundle.crt".to_string(), root.cert_pem.clone())]);
    c.set_bundle(read_bundle(Some(&data), &sources), "1".into(), now());
    let secret = BTreeMap::from([("crt.pem".to_string(), issuer.cert_pem.as_bytes().to_vec())]);
    c.set_issuer(read_issuer(Some(&secret), &sources), now());
    c
}

fn mk_pod(uid: &str, node: &str, root: &Ca, issuer: &Ca) -> PodRecord {
    let leaf = issuer.leaf(NAME, window(-60, 3600)).unwrap();
    PodRecord {
        namespace: "ns".into(),
        name: format!("pod-{uid}"),
        uid: uid.into(),
        node: node.into(),
        service_account: "sa".into(),
        owners: vec![],
        pod_template_hash: String::new(),
        pod_ip: String::new(),
        phase: "Running".into(),
        proxy_version: String::new(),
        proxy_started_at: None,
        identity_name: Some(NAME.into()),
        spec_anchors: SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(&root.cert_pem))),
        probe: ProbeEvidence::Chain(crate::wire::chain(
            &[leaf.der, issuer.cert_der.clone()],
            &mut crate::wire::Interner::default(),
        )),
        probed_at: None,
        probe_address: String::new(),
        metrics_cert_expiry: None,
        problems: vec![],
        reported_at: now(),
    }
}

fn verdict(c: &Cluster, uid: &str) -> Vec<VerdictKind> {
    c.pods()
        .find(|e| e.record.uid == uid)
        .map(|e| e.analysis.verdicts.iter().map(|v| v.kind).collect())
        .unwrap_or_default()
}

#[test]
fn snapshot_replaces_the_nodes_pods_and_deltas_from_an_old_stream_are_ignored() {
    let root = Ca::root("root").unwrap();
    let issuer = root.issuer("issuer", window(-60, 86_400)).unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let s1 = c.open_stream();
    c.replace_node(
        "n1",
        s1,
        "v",
        vec![
            mk_pod("a", "n1", &root, &issuer),
            mk_pod("b", "n1", &root, &issuer),
        ],
        now(),
    );
    assert_eq!(c.summary().pods, 2);
    let s2 = c.open_stream();
    c.replace_node(
        "n1",
        s2,
        "v",
        vec![mk_pod("b", "n1", &root, &issuer)],
        now(),
    );
    assert_eq!(
        c.pods().map(|e| e.record.uid.as_str()).collect::<Vec<_>>(),
        vec!["b"]
    );
    assert!(!c.apply_delta(
        "n1",
        s1,
        vec![mk_pod("c", "n1", &root, &issuer)],
        &[],
        now()
    ));
    assert_eq!(
        c.summary().pods,
        1,
        "the old stream no longer owns the node"
    );
    assert!(c.apply_delta("n1", s2, vec![], &["b".to_string()], now()));
    assert_eq!(c.summary().pods, 0);
}

#[test]
fn disconnected_node_turns_stale_and_its_healthy_pods_inconclusive() {
    let root = Ca::root("root").unwrap();
    let issuer = root.issuer("issuer", window(-60, 86_400)).unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let s = c.open_stream();
    c.replace_node("n1", s, "v", vec![mk_pod("a", "n1", &root, &issuer)], now());
    assert_eq!(verdict(&c, "a"), vec![VerdictKind::Ok]);
    c.disconnect("n1", s, now());
    assert_eq!(verdict(&c, "a"), vec![VerdictKind::Inconclusive]);
    assert_eq!(c.summary().nodes_stale, 1);
    // Silence past the stale timeout does the same for a connected node.
    let s = c.open_stream();
    c.replace_node("n1", s, "v", vec![mk_pod("a", "n1", &root, &issuer)], now());
    assert_eq!(verdict(&c, "a"), vec![VerdictKind::Ok]);
    c.tick(now() + chrono::Duration::seconds(61));
    assert_eq!(verdict(&c, "a"), vec![VerdictKind::Inconclusive]);
    assert!(c.heartbeat("n1", s, now() + chrono::Duration::seconds(62)));
    assert_eq!(verdict(&c, "a"), vec![VerdictKind::Ok]);
}

#[test]
fn bundle_change_rejudges_every_pod_from_cached_signature_facts() {
    let old_root = Ca::linkerd_test_root("ca1").unwrap();
    let new_root = Ca::linkerd_test_root("ca2").unwrap();
    let old_issuer = old_root
        .issuer("identity.linkerd.cluster.local", window(-60, 86_400))
        .unwrap();
    let new_issuer = new_root
        .issuer("identity.linkerd.cluster.local", window(-60, 86_400))
        .unwrap();
    let mut c = mk_cluster(&new_root, &new_issuer);
    let s = c.open_stream();
    let pods: Vec<PodRecord> = (0..20)
        .map(|i| mk_pod(&format!("p{i}"), "n1", &old_root, &old_issuer))
        .collect();
    c.replace_node("n1", s, "v", pods, now());
    assert_eq!(
        verdict(&c, "p0"),
        vec![VerdictKind::StaleLeaf, VerdictKind::StaleTrustBundle]
    );
    let checks = c.signature_checks();
    let both = format!("{}{}", new_root.cert_pem, old_root.cert_pem);
    let sources = c.trust.sources.clone();
    c.set_bundle(
        read_bundle(
            Some(&BTreeMap::from([("ca-bundle.crt".to_string(), both)])),
            &sources,
        ),
        "2".into(),
        now(),
    );
    assert_eq!(
        verdict(&c, "p0"),
        vec![VerdictKind::StaleTrustBundle],
        "the leaf now chains; the spec still lacks ca2"
    );
    // 20 leaves → one issuer → ca1: the new facts are the issuer's and the leaves', once each.
    assert!(
        c.signature_checks() - checks <= 22,
        "{} new checks",
        c.signature_checks() - checks
    );
    let checks = c.signature_checks();
    c.tick(now());
    assert_eq!(
        c.signature_checks(),
        checks,
        "time passing needs no signature check"
    );
}

#[test]
fn revision_moves_with_every_change_a_query_shows_and_not_with_heartbeats() {
    let root = Ca::root("root").unwrap();
    let issuer = root.issuer("issuer", window(-60, 86_400)).unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let s = c.open_stream();
    let r0 = c.revision();
    c.replace_node("n1", s, "v", vec![mk_pod("a", "n1", &root, &issuer)], now());
    let r1 = c.revision();
    assert!(r1 > r0);
    assert!(c.heartbeat("n1", s, now()));
    c.tick(now());
    assert_eq!(c.revision(), r1, "nothing a query shows changed");
    c.disconnect("n1", s, now());
    assert!(c.revision() > r1, "the node turned stale");
    let r2 = c.revision();
    let sources = c.trust.sources.clone();
    c.set_bundle(
        read_bundle(
            Some(&BTreeMap::from([(
                "ca-bundle.crt".to_string(),
                root.cert_pem.clone(),
            )])),
            &sources,
        ),
        "9".into(),
        now(),
    );
    assert!(
        c.revision() > r2,
        "a bundle read counts even when the anchors are the same"
    );
}

#[test]
fn bundle_change_and_passing_time_change_the_verdicts_of_pods_judged_alike() {
    let root = Ca::root("root").unwrap();
    let issuer = root.issuer("issuer", window(-60, 86_400)).unwrap();
    let other = Ca::root("root").unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let s = c.open_stream();
    let pods: Vec<PodRecord> = (0..5)
        .map(|i| mk_pod(&format!("p{i}"), "n1", &root, &issuer))
        .collect();
    c.replace_node("n1", s, "v", pods, now());
    assert_eq!(verdict(&c, "p3"), vec![VerdictKind::Ok]);
    let sources = c.trust.sources.clone();
    let set = |c: &mut Cluster, ca: &Ca, version: &str| {
        let data = BTreeMap::from([("ca-bundle.crt".to_string(), ca.cert_pem.clone())]);
        c.set_bundle(read_bundle(Some(&data), &sources), version.into(), now());
    };
    // A root of the same name and another key replaces the one the leaves chain to.
    set(&mut c, &other, "2");
    assert_eq!(verdict(&c, "p3"), vec![VerdictKind::StaleLeaf]);
    set(&mut c, &root, "3");
    assert_eq!(verdict(&c, "p3"), vec![VerdictKind::Ok]);
    // mk_pod's leaves are valid for an hour.
    let r = c.revision();
    c.tick(now() + chrono::Duration::hours(2));
    assert_eq!(verdict(&c, "p3"), vec![VerdictKind::LeafExpired]);
    assert!(c.revision() > r, "the expiry is a change a query shows");
}
