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
        mirror: false,
        identity_controller: None,
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
        logs: None,
        reported_at: now(),
    }
}

/// The bundle becomes `pem` (resourceVersion 2).
fn set_bundle_pem(c: &mut Cluster, pem: String) {
    let sources = c.trust.sources.clone();
    let data = BTreeMap::from([("ca-bundle.crt".to_string(), pem)]);
    c.set_bundle(read_bundle(Some(&data), &sources), "2".into(), now());
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
    set_bundle_pem(&mut c, both);
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
fn namespaces_labelled_as_extensions_restart_in_the_extension_tier() {
    let root = Ca::root("root").unwrap();
    let other = Ca::root("other").unwrap();
    let issuer = root.issuer("issuer", window(-60, 86_400 * 300)).unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let mut pod = mk_pod("u1", "n1", &root, &issuer);
    pod.namespace = "mesh-audit".into();
    pod.owners = vec!["ReplicaSet/auditor-5d8f".into()];
    pod.pod_template_hash = "5d8f".into();
    // Its proxy lacks the issuer's anchor: a restart fixes it.
    pod.spec_anchors = SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(&other.cert_pem)));
    let stream = c.open_stream();
    c.replace_node("n1", stream, "v", vec![pod], now());
    let settings = Settings::new("linkerd");
    let tier = |c: &mut Cluster| {
        let r = c.report(&settings, now());
        r.plan
            .restarts
            .iter()
            .find(|x| x.workload.name == "auditor")
            .map(|x| x.tier)
    };
    assert_eq!(tier(&mut c), Some(crate::analysis::cluster::Tier::Workload));
    c.update_control_plane(now(), |cp| {
        cp.extension_namespaces.insert("mesh-audit".into());
    });
    assert_eq!(
        tier(&mut c),
        Some(crate::analysis::cluster::Tier::Extension)
    );
}

/// A gateway of linked cluster `east` presenting a leaf under `issuer`.
fn mk_gateway(address: &str, issuer: &Ca) -> PodRecord {
    let mut r = mk_pod(&format!("link:mc/east/{address}"), "", issuer, issuer);
    r.namespace = "linkerd-multicluster".into();
    r.name = format!("gateway-east-{address}");
    r.owners = vec!["Link/east".into()];
    r.spec_anchors = SpecAnchorsEvidence::Missing("remote".into());
    r.probe_address = format!("{address}:4191");
    r
}

/// This cluster's root and issuer, and linked cluster east's.
fn mk_two_clusters() -> [Ca; 4] {
    let root = Ca::root("root").unwrap();
    let issuer = root.issuer("issuer", window(-60, 86_400)).unwrap();
    let east_root = Ca::root("root.east").unwrap();
    let east_issuer = east_root
        .issuer("issuer.east", window(-60, 86_400))
        .unwrap();
    [root, issuer, east_root, east_issuer]
}

#[test]
fn a_gateway_under_another_root_is_a_multicluster_mismatch_not_a_local_pod() {
    let [root, issuer, _, east_issuer] = mk_two_clusters();
    let mut c = mk_cluster(&root, &issuer);
    let s = c.open_stream();
    c.replace_node("n1", s, "v", vec![mk_pod("a", "n1", &root, &issuer)], now());
    let r0 = c.revision();
    assert!(c.set_gateways(
        "mc/east",
        "east",
        vec![
            mk_gateway("127.0.0.1", &east_issuer),
            mk_gateway("127.0.0.2", &issuer)
        ],
        now(),
    ));
    assert!(c.revision() > r0);

    let s = c.summary();
    assert_eq!(
        (s.pods, s.remote_pods),
        (1, 2),
        "gateways are not local pods"
    );
    assert_eq!(s.verdicts.values().sum::<usize>(), 1);
    assert_eq!(c.pods().count(), 1);
    let gw = c
        .pod("linkerd-multicluster", "gateway-east-127.0.0.1")
        .unwrap();
    assert_eq!(gw.remote.as_deref(), Some("east"));
    let kinds: Vec<_> = gw.analysis.verdicts.iter().map(|v| v.kind).collect();
    assert_eq!(kinds, vec![VerdictKind::MulticlusterAnchorMismatch]);
    assert!(
        gw.analysis.verdicts[0]
            .detail
            .contains("linked cluster east")
    );
    let first_seen = gw.record.probed_at;
    let shared = c
        .pod("linkerd-multicluster", "gateway-east-127.0.0.2")
        .unwrap();
    assert_eq!(shared.analysis.verdicts[0].kind, VerdictKind::Ok);

    let report = c.report(&Settings::new("linkerd"), now());
    let mc: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.name == "MULTICLUSTER_ANCHOR_MISMATCH")
        .collect();
    assert_eq!(mc.len(), 1);
    assert_eq!(
        mc[0].pods,
        vec!["linkerd-multicluster/gateway-east-127.0.0.1"]
    );
    let issuer_fp = east_issuer_fingerprint(&east_issuer);
    for needle in [
        "Link/east",
        "cluster east",
        "127.0.0.1:4191",
        issuer_fp.as_str(),
    ] {
        assert!(mc[0].detail.contains(needle), "{needle}: {}", mc[0].detail);
    }
    assert!(report.plan.restarts.is_empty() && report.plan.escalate);

    // A probe that finds the same chain again changes nothing a query shows.
    let r1 = c.revision();
    let again: Vec<PodRecord> = c
        .remote_pods()
        .map(|e| {
            let mut r = (*e.record).clone();
            r.probed_at = Some(now() + chrono::Duration::seconds(30));
            r
        })
        .collect();
    assert!(!c.set_gateways("mc/east", "east", again, now()));
    assert_eq!(c.revision(), r1);
    assert_eq!(
        c.pod("linkerd-multicluster", "gateway-east-127.0.0.1")
            .unwrap()
            .record
            .probed_at,
        first_seen
    );

    // The Link goes: so do its gateways and the finding.
    assert!(c.remove_link("mc/east", now()));
    assert!(c.revision() > r1);
    assert_eq!(c.summary().remote_pods, 0);
    let report = c.report(&Settings::new("linkerd"), now());
    assert!(!report.has("MULTICLUSTER_ANCHOR_MISMATCH", None));
    assert!(!c.remove_link("mc/east", now()));
}

#[test]
fn a_bundle_change_rejudges_gateways_too() {
    let [root, issuer, east_root, east_issuer] = mk_two_clusters();
    let mut c = mk_cluster(&root, &issuer);
    c.set_gateways(
        "mc/east",
        "east",
        vec![mk_gateway("127.0.0.1", &east_issuer)],
        now(),
    );
    let kind = |c: &Cluster| c.remote_pods().next().unwrap().analysis.verdicts[0].kind;
    assert_eq!(kind(&c), VerdictKind::MulticlusterAnchorMismatch);
    let both = format!("{}{}", root.cert_pem, east_root.cert_pem);
    set_bundle_pem(&mut c, both);
    assert_eq!(
        kind(&c),
        VerdictKind::Ok,
        "the bundle now holds east's root"
    );
    let report = c.report(&Settings::new("linkerd"), now());
    assert!(!report.has("MULTICLUSTER_ANCHOR_MISMATCH", None));
}

fn east_issuer_fingerprint(issuer: &Ca) -> String {
    crate::verify::Fingerprint::of(&issuer.cert_der).to_string()
}

#[test]
fn a_linked_clusters_anchor_in_the_bundle_is_no_rotation() {
    let [root, issuer, east_root, east_issuer] = mk_two_clusters();
    let mut c = mk_cluster(&root, &issuer);
    let sources = c.trust.sources.clone();
    let both = format!("{}{}", root.cert_pem, east_root.cert_pem);
    let data = BTreeMap::from([("ca-bundle.crt".to_string(), both)]);
    c.set_bundle(read_bundle(Some(&data), &sources), "2".into(), now());
    let s = c.open_stream();
    c.replace_node("n1", s, "v", vec![mk_pod("a", "n1", &root, &issuer)], now());
    let settings = Settings::new("linkerd");
    let names = |c: &mut Cluster| -> Vec<&'static str> {
        c.report(&settings, now())
            .findings
            .iter()
            .map(|f| f.name)
            .collect()
    };
    // Alone, a second anchor the issuer does not chain to reads as a rotation under way.
    let before = names(&mut c);
    assert!(before.contains(&"ROTATION_IN_PROGRESS"), "{before:?}");
    assert!(before.contains(&"PENDING_BUNDLE_ROLLOUT"), "{before:?}");
    // East's gateway presents a chain to it: it is east's anchor, not a rotation.
    c.set_gateways(
        "mc/east",
        "east",
        vec![mk_gateway("127.0.0.1", &east_issuer)],
        now(),
    );
    let after = names(&mut c);
    assert!(!after.contains(&"ROTATION_IN_PROGRESS"), "{after:?}");
    assert!(!after.contains(&"PENDING_BUNDLE_ROLLOUT"), "{after:?}");
    assert!(
        !after.contains(&"MULTICLUSTER_ANCHOR_MISMATCH"),
        "{after:?}"
    );
    assert_eq!(
        c.report(&settings, now()).phase,
        crate::analysis::cluster::Phase::Steady
    );
}

#[test]
fn plan_resolves_owners_through_the_index_and_only_index_changes_count_as_revisions() {
    use crate::analysis::cluster::{Method, Settings};
    use crate::owners::Controller;
    let root = Ca::root("root").unwrap();
    // Valid for longer than one issuance lifetime: not a blocker.
    let issuer = root.issuer("issuer", window(-60, 365 * 86_400)).unwrap();
    let other = Ca::root("other").unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let s = c.open_stream();
    // A pod holding another root: STALE_TRUST_BUNDLE, so the plan restarts its workload.
    let mut pod = mk_pod("a", "n1", &other, &issuer);
    pod.owners = vec!["ReplicaSet/api-5f6b8c".into()];
    pod.pod_template_hash = "5f6b8c".into();
    c.replace_node("n1", s, "v", vec![pod], now());
    let restarts = |c: &mut Cluster| {
        c.report(&Settings::new("linkerd"), now())
            .plan
            .restarts
            .iter()
            .map(|r| (r.workload.to_string(), r.method))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        restarts(&mut c),
        vec![("ns/Deployment/api".to_string(), Method::RolloutRestart)],
        "before the index is listed: the pod-template-hash rule"
    );

    let r0 = c.revision();
    assert!(c.update_owners(|i| i.replica_sets.replace_all([]), now()));
    assert!(c.revision() > r0);
    assert_eq!(
        restarts(&mut c),
        vec![("ns/Deployment/api".to_string(), Method::RolloutRestart)],
        "a ReplicaSet missing from the list: the fallback still"
    );
    let orphan = ("ns".to_string(), "api-5f6b8c".to_string(), None);
    assert!(c.update_owners(|i| i.replica_sets.replace_all([orphan.clone()]), now()));
    assert_eq!(
        restarts(&mut c),
        vec![("ns/ReplicaSet/api-5f6b8c".to_string(), Method::Evict)],
        "listed without a controller"
    );
    let r1 = c.revision();
    assert!(!c.update_owners(|i| i.replica_sets.apply("ns", "api-5f6b8c", None), now()));
    assert_eq!(
        c.revision(),
        r1,
        "a status update of the ReplicaSet changes no fact"
    );
    let owned = Some(Controller {
        kind: "Deployment".into(),
        name: "api".into(),
    });
    assert!(c.update_owners(|i| i.replica_sets.apply("ns", "api-5f6b8c", owned), now()));
    assert!(c.revision() > r1);
}

#[test]
fn a_workload_with_several_pods_on_a_skewed_node_is_held_once_and_the_node_is_measured() {
    use crate::clock::{Offset, Reading};
    let root = Ca::root("root").unwrap();
    let other = Ca::root("other").unwrap();
    let issuer = root.issuer("issuer", window(-60, 365 * 86_400)).unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let pods: Vec<PodRecord> = ["a", "b"]
        .iter()
        .map(|uid| {
            let mut p = mk_pod(uid, "n1", &root, &issuer);
            p.owners = vec!["ReplicaSet/web-5d8f".into()];
            p.pod_template_hash = "5d8f".into();
            p.spec_anchors = SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(&other.cert_pem)));
            p
        })
        .collect();
    let s = c.open_stream();
    c.replace_node("n1", s, "v", pods, now());
    let settings = Settings::new("linkerd");
    let r = c.report(&settings, now());
    assert!(r.has("INCONCLUSIVE", Some("n1")), "not measured yet");
    let reading = Reading {
        received_at: now(),
        aggregator: Offset {
            offset_s: Some(-30.0),
            bound_s: 0.001,
            error: String::new(),
        },
        ..Reading::default()
    };
    assert!(c.node_clock("n1", s, reading.clone(), now()));
    assert!(
        !c.node_clock("n1", s + 1, reading, now()),
        "only the owning stream"
    );
    let r = c.report(&settings, now());
    assert!(r.has("CLOCK_SKEW", Some("n1")), "{:?}", r.findings);
    let skew = r.findings.iter().find(|f| f.name == "CLOCK_SKEW").unwrap();
    assert_eq!(
        skew.pods,
        vec!["ns/pod-a", "ns/pod-b"],
        "the pods on the node"
    );
    assert!(!r.has("INCONCLUSIVE", Some("n1")));
    let held: Vec<String> = r.plan.held.iter().map(|h| h.target.to_string()).collect();
    assert_eq!(held, vec!["ns/Deployment/web"], "{:?}", r.plan);
    assert!(r.plan.restarts.is_empty());
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

#[test]
fn identitys_own_allowance_flag_decides_clock_skew() {
    use crate::clock::{Offset, Reading};
    let root = Ca::root("root").unwrap();
    let issuer = root.issuer("issuer", window(-60, 365 * 86_400)).unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let mut identity = mk_pod("id", "n1", &root, &issuer);
    identity.namespace = "linkerd".into();
    identity.service_account = "linkerd-identity".into();
    let s1 = c.open_stream();
    c.replace_node("n1", s1, "v", vec![identity.clone()], now());
    let s2 = c.open_stream();
    c.replace_node(
        "n2",
        s2,
        "v",
        vec![mk_pod("w", "n2", &root, &issuer)],
        now(),
    );
    let reading = |offset: f64| Reading {
        received_at: now(),
        aggregator: Offset {
            offset_s: Some(offset),
            bound_s: 0.001,
            error: String::new(),
        },
        ..Reading::default()
    };
    assert!(c.node_clock("n1", s1, reading(0.0), now()));
    assert!(c.node_clock("n2", s2, reading(-30.0), now()));
    let settings = Settings::new("linkerd");
    // Linkerd's default allowance, 20 s: n2 is skewed.
    assert!(c.report(&settings, now()).has("CLOCK_SKEW", Some("n2")));
    let (rows, _, clock) = c.clock_rows(&settings, 0, now());
    assert_eq!(clock.critical_s, 20.0);
    assert!(
        rows.iter()
            .any(|r| r.node == "n2" && r.level == crate::clock::Level::Critical)
    );
    // Identity runs with -identity-clock-skew-allowance=45s: 30 s is within it.
    identity.identity_controller = Some(IdentityFlags {
        allowance: Some(chrono::TimeDelta::seconds(45)),
        issuance_lifetime: None,
    });
    c.replace_node("n1", s1, "v", vec![identity], now());
    assert!(!c.report(&settings, now()).has("CLOCK_SKEW", Some("n2")));
    let (rows, _, clock) = c.clock_rows(&settings, 0, now());
    assert_eq!(clock.critical_s, 45.0);
    assert!(
        rows.iter()
            .any(|r| r.node == "n2" && r.level == crate::clock::Level::Warn)
    );
}

#[test]
fn one_uid_under_two_names_never_lets_a_name_resolve_to_another_pods_evidence() {
    let root = Ca::root("root").unwrap();
    let issuer = root.issuer("issuer", window(-60, 86_400)).unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let mut p1 = mk_pod("same", "n1", &root, &issuer);
    p1.name = "p1".into();
    let mut p15 = mk_pod("same", "n1", &root, &issuer);
    p15.name = "p15".into();
    let s = c.open_stream();
    c.replace_node("n1", s, "v", vec![p1, p15], now());
    assert!(c.pod("ns", "p1").is_none(), "p1's name must not show p15");
    assert_eq!(
        c.pod("ns", "p15").map(|e| e.record.name.as_str()),
        Some("p15")
    );
    let names: Vec<&str> = c.pods().map(|e| e.record.name.as_str()).collect();
    assert_eq!(names, vec!["p15"]);
}

#[test]
fn a_bundle_of_only_corrupt_blocks_is_cert_unreadable_and_escalates() {
    let root = Ca::root("root").unwrap();
    let issuer = root.issuer("issuer", window(-60, 365 * 86_400)).unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let s = c.open_stream();
    c.replace_node("n1", s, "v", vec![mk_pod("a", "n1", &root, &issuer)], now());
    let sources = c.trust.sources.clone();
    let data = BTreeMap::from([(
        "ca-bundle.crt".to_string(),
        "-----BEGIN CERTIFICATE-----\nnot%base64\n-----END CERTIFICATE-----\n".to_string(),
    )]);
    c.set_bundle(read_bundle(Some(&data), &sources), "2".into(), now());
    let unreadable = crate::trust::bundle_unreadable(Some(&data), &sources);
    assert_eq!(unreadable.len(), 1);
    c.update_control_plane(now(), |cp| cp.bundle_unreadable = unreadable);
    let r = c.report(&Settings::new("linkerd"), now());
    assert!(
        r.has(
            "CERT_UNREADABLE",
            Some("configmap/linkerd-identity-trust-roots")
        ),
        "{:?}",
        r.findings
    );
    assert!(r.has(
        "INCONCLUSIVE",
        Some("configmap/linkerd-identity-trust-roots")
    ));
    assert!(
        r.plan.restarts.is_empty() && r.plan.escalate,
        "{:?}",
        r.plan
    );
}

#[test]
fn a_node_last_measured_beyond_the_allowance_stays_held_when_its_agent_stops() {
    use crate::clock::{Offset, Reading};
    let root = Ca::root("root").unwrap();
    let other = Ca::root("other").unwrap();
    let issuer = root.issuer("issuer", window(-60, 365 * 86_400)).unwrap();
    let mut c = mk_cluster(&root, &issuer);
    let mut pod = mk_pod("a", "n1", &root, &issuer);
    pod.owners = vec!["ReplicaSet/web-5d8f".into()];
    pod.pod_template_hash = "5d8f".into();
    pod.spec_anchors = SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(&other.cert_pem)));
    let s = c.open_stream();
    c.replace_node("n1", s, "v", vec![pod], now());
    let reading = Reading {
        received_at: now(),
        aggregator: Offset {
            offset_s: Some(-30.0),
            bound_s: 0.001,
            error: String::new(),
        },
        ..Reading::default()
    };
    assert!(c.node_clock("n1", s, reading, now()));
    let settings = Settings::new("linkerd");
    assert!(c.report(&settings, now()).has("CLOCK_SKEW", Some("n1")));
    // The agent stops: the clock is unknown, not fixed.
    c.disconnect("n1", s, now());
    let r = c.report(&settings, now());
    assert!(!r.has("CLOCK_SKEW", Some("n1")));
    assert!(r.plan.restarts.is_empty(), "{:?}", r.plan);
    let held = r
        .plan
        .held
        .iter()
        .find(|h| h.target.name == "web")
        .expect("still held");
    assert!(
        held.reason.contains("last measured -30.000 s"),
        "{}",
        held.reason
    );
}
