use super::*;
use crate::model::{ChainEvidence, PodRecord, ProbeEvidence, SpecAnchorsEvidence};
use crate::trust::{BundleState, IssuerState, Trust, TrustSources};
use crate::verify::{parse_der, parse_pem_bundle};
use anchorwatch_tests::pki::{Ca, window};

pub(super) fn now() -> DateTime<Utc> {
    Utc::now()
}

pub(super) fn sources() -> TrustSources {
    TrustSources {
        namespace: "linkerd".into(),
        config_map: "linkerd-identity-trust-roots".into(),
        key: "ca-bundle.crt".into(),
        secret: "linkerd-identity-issuer".into(),
    }
}

/// Trust with these roots in the bundle and this issuer in the Secret.
pub(super) fn mk_trust(roots: &[&Ca], issuer: &Ca) -> Trust {
    let mut t = Trust::new(sources());
    let pem: String = roots.iter().map(|r| r.cert_pem.clone()).collect();
    t.set_bundle(
        BundleState::Available(Arc::new(parse_pem_bundle(&pem))),
        "1".into(),
        now(),
    );
    t.set_issuer(IssuerState::Available(vec![Arc::new(
        parse_der(&issuer.cert_der).unwrap(),
    )]));
    t
}

pub(super) fn mk_pod(spec_roots: &[&Ca], chain: Vec<Vec<u8>>) -> PodRecord {
    let pem: String = spec_roots.iter().map(|r| r.cert_pem.clone()).collect();
    PodRecord {
        namespace: "ns".into(),
        name: "pod".into(),
        uid: "uid".into(),
        node: "node-1".into(),
        service_account: "sa".into(),
        owners: vec![],
        pod_template_hash: String::new(),
        mirror: false,
        identity_controller: None,
        pod_ip: "10.0.0.1".into(),
        phase: "Running".into(),
        proxy_version: "v".into(),
        proxy_started_at: None,
        identity_name: Some(NAME.into()),
        spec_anchors: SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(&pem))),
        probe: ProbeEvidence::Chain(crate::wire::chain(
            &chain,
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

pub(super) const NAME: &str = "sa.ns.serviceaccount.identity.linkerd.cluster.local";

pub(super) struct Mesh {
    pub(super) old_root: Ca,
    pub(super) new_root: Ca,
    pub(super) old_issuer: Ca,
    pub(super) new_issuer: Ca,
}

/// Two roots with the same subject and different keys, with an issuer under each.
pub(super) fn mk_mesh() -> Mesh {
    let old_root = Ca::linkerd_test_root("ca1").unwrap();
    let new_root = Ca::linkerd_test_root("ca2").unwrap();
    let year = window(-86_400, 365 * 86_400);
    Mesh {
        old_issuer: old_root
            .issuer("identity.linkerd.cluster.local", year)
            .unwrap(),
        new_issuer: new_root
            .issuer("identity.linkerd.cluster.local", year)
            .unwrap(),
        old_root,
        new_root,
    }
}

pub(super) fn chain_under(issuer: &Ca, validity: (i64, i64)) -> Vec<Vec<u8>> {
    let leaf = issuer.leaf(NAME, window(validity.0, validity.1)).unwrap();
    vec![leaf.der, issuer.cert_der.clone()]
}

fn kinds(a: &PodAnalysis) -> Vec<(VerdictKind, String)> {
    a.verdicts
        .iter()
        .map(|v| (v.kind, v.reason.to_string()))
        .collect()
}

#[test]
fn leaf_under_current_anchor_is_ok_and_names_the_anchor() {
    let m = mk_mesh();
    let trust = mk_trust(&[&m.new_root], &m.new_issuer);
    let pod = mk_pod(&[&m.new_root], chain_under(&m.new_issuer, (-60, 3600)));
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(kinds(&a), vec![(VerdictKind::Ok, String::new())]);
    let new_root_fp = parse_der(&m.new_root.cert_der).unwrap().fingerprint;
    assert_eq!(a.chain_anchor, Some(new_root_fp));
    assert_eq!(
        a.signed_by[1],
        Some(new_root_fp),
        "the issuer is signed by the anchor"
    );
}

#[test]
fn leaf_from_same_named_root_with_another_key_is_stale_with_bad_signature() {
    let m = mk_mesh();
    let trust = mk_trust(&[&m.new_root], &m.new_issuer);
    let pod = mk_pod(
        &[&m.old_root, &m.new_root],
        chain_under(&m.old_issuer, (-60, 3600)),
    );
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(
        kinds(&a),
        vec![(VerdictKind::StaleLeaf, "BadSignature".into())]
    );
    assert!(
        a.verdicts[0].detail.contains("has another key"),
        "{}",
        a.verdicts[0].detail
    );
}

#[test]
fn real_linkerd_fixture_leaf_is_bad_signature_against_the_other_root() {
    let m = mk_mesh();
    let der = std::fs::read(
        anchorwatch_tests::pki::fixtures_dir().join("proxy-test-util/foo-ns1-ca2/crt.der"),
    )
    .unwrap();
    let mut pod = mk_pod(&[&m.new_root], vec![der]);
    pod.identity_name = Some("foo.ns1.serviceaccount.identity.linkerd.cluster.local".into());
    let at_2025 = DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let trust = mk_trust(&[&m.old_root], &m.old_issuer);
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, at_2025);
    assert!(a.has(VerdictKind::StaleLeaf));
    assert_eq!(
        &*a.verdicts
            .iter()
            .find(|v| v.kind == VerdictKind::StaleLeaf)
            .unwrap()
            .reason,
        "BadSignature"
    );
    let trust = mk_trust(&[&m.new_root], &m.new_issuer);
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, at_2025);
    assert_eq!(kinds(&a), vec![(VerdictKind::Ok, String::new())]);
}

#[test]
fn leaf_from_root_of_another_name_is_stale_with_unknown_issuer() {
    let m = mk_mesh();
    let foreign = Ca::root("root.other.example").unwrap();
    let foreign_issuer = foreign
        .issuer("identity.other.example", window(-60, 86_400))
        .unwrap();
    let trust = mk_trust(&[&m.new_root], &m.new_issuer);
    let pod = mk_pod(&[&m.new_root], chain_under(&foreign_issuer, (-60, 3600)));
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(
        kinds(&a),
        vec![(VerdictKind::StaleLeaf, "UnknownIssuer".into())]
    );
}

#[test]
fn expired_and_future_leaves_get_time_verdicts_with_rustls_reasons() {
    let m = mk_mesh();
    let trust = mk_trust(&[&m.new_root], &m.new_issuer);
    let expired = mk_pod(&[&m.new_root], chain_under(&m.new_issuer, (-7200, -3600)));
    let a = pod_verdicts(&expired, &trust, &mut Verifier::new(), None, now());
    assert_eq!(
        kinds(&a),
        vec![(VerdictKind::LeafExpired, "Expired".into())]
    );
    let future = mk_pod(&[&m.new_root], chain_under(&m.new_issuer, (3600, 7200)));
    let a = pod_verdicts(&future, &trust, &mut Verifier::new(), None, now());
    assert_eq!(
        kinds(&a),
        vec![(VerdictKind::LeafNotYetValid, "NotValidYet".into())]
    );
    // An expired leaf from the wrong root is both: dates are ignored for STALE_LEAF.
    let both = mk_pod(&[&m.new_root], chain_under(&m.old_issuer, (-7200, -3600)));
    let a = pod_verdicts(&both, &trust, &mut Verifier::new(), None, now());
    assert_eq!(
        kinds(&a),
        vec![
            (VerdictKind::StaleLeaf, "BadSignature".into()),
            (VerdictKind::LeafExpired, "Expired".into())
        ]
    );
}

#[test]
fn anchor_appended_to_the_chain_is_not_judged_by_its_dates() {
    let root = Ca::root("root.linkerd.cluster.local").unwrap();
    // An issuer directly as the anchor: leaf ← anchor, with the anchor also presented.
    let trust = mk_trust(&[&root], &root);
    let leaf = root.leaf(NAME, window(-60, 3600)).unwrap();
    let pod = mk_pod(&[&root], vec![leaf.der, root.cert_der.clone()]);
    let far_future = now() + chrono::Duration::days(365 * 20);
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, far_future);
    assert_eq!(
        kinds(&a),
        vec![(VerdictKind::LeafExpired, "Expired".into())],
        "only the leaf is judged by date"
    );
    assert!(a.verdicts[0].detail.starts_with("leaf"));
}

#[test]
fn pod_whose_anchors_lack_the_issuers_anchor_has_a_stale_trust_bundle() {
    let m = mk_mesh();
    let trust = mk_trust(&[&m.old_root, &m.new_root], &m.new_issuer);
    let pod = mk_pod(&[&m.old_root], chain_under(&m.old_issuer, (-60, 3600)));
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(
        kinds(&a),
        vec![(
            VerdictKind::StaleTrustBundle,
            "proxy lacks the issuer's anchor".into()
        )]
    );
    // With both anchors in its spec it is fine.
    let pod = mk_pod(
        &[&m.old_root, &m.new_root],
        chain_under(&m.old_issuer, (-60, 3600)),
    );
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(kinds(&a), vec![(VerdictKind::Ok, String::new())]);
}

#[test]
fn control_plane_pod_is_judged_by_the_bundle_it_read_at_start() {
    let m = mk_mesh();
    let t0 = now() - chrono::Duration::hours(2);
    let mut trust = Trust::new(sources());
    trust.set_bundle(
        BundleState::Available(Arc::new(parse_pem_bundle(&m.old_root.cert_pem))),
        "1".into(),
        t0,
    );
    let t1 = now() - chrono::Duration::hours(1);
    trust.set_bundle(
        BundleState::Available(Arc::new(parse_pem_bundle(&m.new_root.cert_pem))),
        "2".into(),
        t1,
    );
    trust.set_issuer(IssuerState::Available(vec![Arc::new(
        parse_der(&m.new_issuer.cert_der).unwrap(),
    )]));
    let mut pod = mk_pod(&[], chain_under(&m.new_issuer, (-60, 3600)));
    pod.spec_anchors = SpecAnchorsEvidence::ConfigMap {
        name: "linkerd-identity-trust-roots".into(),
        key: "ca-bundle.crt".into(),
    };
    pod.proxy_started_at = Some(t0 + chrono::Duration::minutes(5));
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert!(
        a.has(VerdictKind::StaleTrustBundle),
        "started before the bundle changed: {a:?}"
    );
    pod.proxy_started_at = Some(t1 + chrono::Duration::minutes(5));
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(kinds(&a), vec![(VerdictKind::Ok, String::new())]);
}

#[test]
fn missing_bundle_makes_chains_inconclusive_never_ok() {
    let m = mk_mesh();
    let mut trust = Trust::new(sources());
    trust.set_bundle(
        BundleState::Unavailable("ConfigMap linkerd/linkerd-identity-trust-roots not found".into()),
        String::new(),
        now(),
    );
    let pod = mk_pod(&[&m.new_root], chain_under(&m.new_issuer, (-60, 3600)));
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(
        kinds(&a),
        vec![(VerdictKind::Inconclusive, "trust bundle unavailable".into())]
    );
    assert!(a.verdicts[0].detail.contains("not found"));
}

#[test]
fn probe_failures_are_unprobed_and_stale_nodes_inconclusive() {
    let m = mk_mesh();
    let trust = mk_trust(&[&m.new_root], &m.new_issuer);
    let mut pod = mk_pod(&[&m.new_root], vec![]);
    pod.probe = ProbeEvidence::Failed {
        kind: "timeout".into(),
        detail: "timed out".into(),
    };
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(kinds(&a), vec![(VerdictKind::Unprobed, "timeout".into())]);
    let healthy = mk_pod(&[&m.new_root], chain_under(&m.new_issuer, (-60, 3600)));
    let a = pod_verdicts(
        &healthy,
        &trust,
        &mut Verifier::new(),
        Some("agent gone"),
        now(),
    );
    assert_eq!(
        kinds(&a),
        vec![(VerdictKind::Inconclusive, "node stale".into())]
    );
    // A fault stays visible on a stale node.
    let stale = mk_pod(&[&m.new_root], chain_under(&m.old_issuer, (-60, 3600)));
    let a = pod_verdicts(
        &stale,
        &trust,
        &mut Verifier::new(),
        Some("agent gone"),
        now(),
    );
    assert_eq!(
        kinds(&a),
        vec![(VerdictKind::StaleLeaf, "BadSignature".into())]
    );
}

#[test]
fn unreadable_certificates_and_wrong_names_are_reported() {
    let m = mk_mesh();
    let trust = mk_trust(&[&m.new_root], &m.new_issuer);
    let pod = mk_pod(&[&m.new_root], vec![b"not der".to_vec()]);
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(a.verdicts.len(), 1);
    assert_eq!(a.verdicts[0].kind, VerdictKind::CertUnreadable);
    let mut pod = mk_pod(&[&m.new_root], chain_under(&m.new_issuer, (-60, 3600)));
    pod.identity_name = Some("other.ns.serviceaccount.identity.linkerd.cluster.local".into());
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(a.verdicts.len(), 1);
    assert_eq!(a.verdicts[0].kind, VerdictKind::NameMismatch);
    let mut pod = mk_pod(&[&m.new_root], chain_under(&m.new_issuer, (-60, 3600)));
    pod.spec_anchors = SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )));
    let a = pod_verdicts(&pod, &trust, &mut Verifier::new(), None, now());
    assert_eq!(
        a.verdicts.iter().map(|v| v.kind).collect::<Vec<_>>(),
        vec![VerdictKind::StaleTrustBundle, VerdictKind::CertUnreadable]
    );
    let _ = ChainEvidence::default();
}
