//! Identity's issuer: what the freshest leaves and linkerd-identity's events say.

use super::super::*;
use crate::model::{PodRecord, ProbeEvidence, SpecAnchorsEvidence};
use crate::trust::{BundleState, IssuerState, TrustSources};
use crate::verify::{parse_der, parse_pem_bundle};
use anchorwatch_tests::pki::{Ca, window};

struct Pki {
    root: Ca,
    old_issuer: Ca,
    issuer: Ca,
}

fn mk_pki(issuer_validity: (i64, i64)) -> Pki {
    let root = Ca::root("root.linkerd.cluster.local").unwrap();
    Pki {
        old_issuer: root
            .issuer(
                "identity.linkerd.cluster.local",
                window(-86_400 * 30, 86_400 * 300),
            )
            .unwrap(),
        issuer: root
            .issuer(
                "identity.linkerd.cluster.local",
                window(issuer_validity.0, issuer_validity.1),
            )
            .unwrap(),
        root,
    }
}

fn name(sa: &str, ns: &str) -> String {
    format!("{sa}.{ns}.serviceaccount.identity.linkerd.cluster.local")
}

/// A pod whose proxy trusts `root` and presents a leaf from `issuer` issued `issued_s` from now.
fn mk_pod(pki: &Pki, issuer: &Ca, ns: &str, pod: &str, sa: &str, issued_s: i64) -> PodInput {
    let identity = name(sa, ns);
    let leaf = issuer
        .leaf(&identity, window(issued_s - 20, issued_s + 86_400))
        .unwrap();
    let deployment = pod.rsplit_once('-').map(|(d, _)| d).unwrap_or(pod);
    PodInput {
        record: Arc::new(PodRecord {
            mirror: false,
            identity_controller: None,
            namespace: ns.into(),
            name: pod.into(),
            uid: format!("{ns}-{pod}"),
            node: "n1".into(),
            service_account: sa.into(),
            owners: vec![],
            pod_template_hash: String::new(),
            pod_ip: String::new(),
            phase: "Running".into(),
            proxy_version: String::new(),
            proxy_started_at: Some(Utc::now() - TimeDelta::hours(2)),
            identity_name: Some(identity),
            spec_anchors: SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(&pki.root.cert_pem))),
            probe: ProbeEvidence::Chain(crate::wire::chain(
                &[leaf.der, issuer.cert_der.clone()],
                &mut crate::wire::Interner::default(),
            )),
            probed_at: Some(Utc::now()),
            probe_address: String::new(),
            metrics_cert_expiry: None,
            problems: vec![],
            logs: None,
            reported_at: Utc::now(),
        }),
        workload: Some(Workload {
            namespace: ns.into(),
            kind: "Deployment".into(),
            name: deployment.into(),
        }),
        workload_facts: Default::default(),
        remote: None,
        analysis: None,
    }
}

fn mk_input(pki: &Pki, identity_issuer: Option<&Ca>, events: Vec<IdentityEvent>) -> ClusterInput {
    let mut trust = Trust::new(TrustSources {
        namespace: "linkerd".into(),
        config_map: "linkerd-identity-trust-roots".into(),
        key: "ca-bundle.crt".into(),
        secret: "linkerd-identity-issuer".into(),
    });
    trust.set_bundle(
        BundleState::Available(Arc::new(parse_pem_bundle(&pki.root.cert_pem))),
        "1".into(),
        Utc::now() - TimeDelta::days(30),
    );
    trust.set_issuer(IssuerState::Available(vec![Arc::new(
        parse_der(&pki.issuer.cert_der).unwrap(),
    )]));
    let signer = identity_issuer.unwrap_or(&pki.old_issuer);
    ClusterInput {
        now: Utc::now(),
        settings: Settings::new("linkerd"),
        trust,
        linkerd_config: None,
        issuer_unreadable: 0,
        bundle_unreadable: vec![],
        identity: IdentityInput {
            node: Some("n1".into()),
            issuer: identity_issuer.map(|c| parse_der(&c.cert_der).unwrap().fingerprint),
            anchors: None,
            reachable: Some(true),
            started_at: Some(Utc::now() - TimeDelta::hours(2)),
            events,
        },
        nodes: BTreeMap::from([(
            "n1".to_string(),
            NodeClock {
                offset_s: Some(0.0),
                bound_s: 0.01,
                remote: None,
                last_offset_s: None,
            },
        )]),
        pods: vec![
            mk_pod(
                pki,
                signer,
                "linkerd",
                "linkerd-identity-abc",
                "linkerd-identity",
                -3600,
            ),
            mk_pod(pki, signer, "shop", "api-xyz", "default", -1800),
        ],
    }
}

fn event(kind: IssuerEventKind, ago_s: Option<i64>, message: &str) -> IdentityEvent {
    IdentityEvent {
        kind,
        message: message.into(),
        at: ago_s.map(|s| Utc::now() - TimeDelta::seconds(s)),
    }
}

fn finding<'a>(r: &'a Report, name: &str) -> Option<&'a Finding> {
    r.findings.iter().find(|f| f.name == name)
}

fn restarts(r: &Report) -> Vec<String> {
    r.plan
        .restarts
        .iter()
        .map(|x| x.workload.to_string())
        .collect()
}

#[test]
fn a_skipped_update_with_no_telling_leaf_means_identity_kept_the_old_issuer() {
    let pki = mk_pki((-600, 86_400 * 300));
    let skipped = "Skipping issuer update as certs could not be read from disk: x509: certificate signed by unknown authority";
    let input = mk_input(
        &pki,
        None,
        vec![
            event(
                IssuerEventKind::Updated,
                Some(5400),
                "Updated identity issuer",
            ),
            event(IssuerEventKind::Skipped, Some(300), skipped),
        ],
    );
    let r = analyse(&input, &mut Verifier::new());
    let f = finding(&r, "IDENTITY_STALE_ISSUER").expect("stale issuer");
    assert!(
        f.detail.contains("IssuerUpdateSkipped") && f.detail.contains(skipped),
        "{}",
        f.detail
    );
    // Restarting identity makes it load the Secret's issuer: the plan starts there.
    assert_eq!(
        restarts(&r).first().map(String::as_str),
        Some("linkerd/Deployment/linkerd-identity"),
        "{:?}",
        r.plan
    );
}

#[test]
fn the_newest_event_wins_and_events_from_before_identity_started_do_not_count() {
    let pki = mk_pki((-600, 86_400 * 300));
    for events in [
        vec![
            event(IssuerEventKind::Skipped, Some(900), "skipped"),
            event(
                IssuerEventKind::Updated,
                Some(300),
                "Updated identity issuer",
            ),
        ],
        // identity started 2 h ago: a skip from 3 h ago belonged to the previous process.
        vec![event(IssuerEventKind::Skipped, Some(3 * 3600), "skipped")],
    ] {
        let r = analyse(&mk_input(&pki, None, events.clone()), &mut Verifier::new());
        assert!(
            finding(&r, "IDENTITY_STALE_ISSUER").is_none(),
            "{events:?}: {:?}",
            r.findings
        );
    }
}

#[test]
fn a_leaf_showing_the_secrets_issuer_outweighs_a_skipped_event() {
    let pki = mk_pki((-600, 86_400 * 300));
    let input = mk_input(
        &pki,
        Some(&pki.issuer),
        vec![event(IssuerEventKind::Skipped, Some(300), "skipped")],
    );
    let r = analyse(&input, &mut Verifier::new());
    assert!(
        finding(&r, "IDENTITY_STALE_ISSUER").is_none(),
        "{:?}",
        r.findings
    );
}

#[test]
fn a_leaf_showing_another_issuer_is_stale_with_the_event_as_evidence() {
    let pki = mk_pki((-600, 86_400 * 300));
    let input = mk_input(
        &pki,
        Some(&pki.old_issuer),
        vec![event(
            IssuerEventKind::Skipped,
            Some(300),
            "could not be read from disk",
        )],
    );
    let r = analyse(&input, &mut Verifier::new());
    let f = finding(&r, "IDENTITY_STALE_ISSUER").expect("stale issuer");
    assert!(
        f.detail.contains("signs with issuer sha256:") && f.detail.contains("could not be read")
    );
}

#[test]
fn unexplained_validation_failures_make_identity_unusable_and_the_plan_escalates() {
    let pki = mk_pki((-600, 86_400 * 300));
    let msg = "x509: certificate has expired or is not yet valid";
    let mut input = mk_input(
        &pki,
        Some(&pki.issuer),
        vec![event(IssuerEventKind::ValidationFailed, Some(60), msg)],
    );
    // A stale pod that a restart would otherwise fix.
    let other = Ca::root("root.linkerd.other.example").unwrap();
    Arc::make_mut(&mut input.pods[1].record).spec_anchors =
        SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(&other.cert_pem)));
    let r = analyse(&input, &mut Verifier::new());
    let f = finding(&r, "IDENTITY_UNREACHABLE").expect("identity unusable");
    assert!(f.subject.is_none() && f.detail.contains(msg), "{f:?}");
    assert!(
        r.plan.restarts.is_empty() && r.plan.escalate,
        "{:?}",
        r.plan
    );
    assert!(
        r.plan
            .blockers
            .iter()
            .any(|b| b.contains("refuses to sign"))
    );
}

#[test]
fn a_leaf_issued_after_the_validation_failure_shows_identity_signs_again() {
    let pki = mk_pki((-600, 86_400 * 300));
    // The freshest leaf was issued 30 min ago; the failure was an hour ago.
    let input = mk_input(
        &pki,
        Some(&pki.issuer),
        vec![event(
            IssuerEventKind::ValidationFailed,
            Some(3600),
            "expired",
        )],
    );
    let r = analyse(&input, &mut Verifier::new());
    assert!(
        finding(&r, "IDENTITY_UNREACHABLE").is_none(),
        "{:?}",
        r.findings
    );
}

#[test]
fn a_validation_failure_explained_by_an_expired_issuer_is_its_evidence() {
    let pki = mk_pki((-86_400 * 30, -3600));
    let input = mk_input(
        &pki,
        Some(&pki.issuer),
        vec![event(
            IssuerEventKind::ValidationFailed,
            None,
            "certificate has expired",
        )],
    );
    let r = analyse(&input, &mut Verifier::new());
    let f = finding(&r, "ISSUER_EXPIRED").expect("issuer expired");
    assert!(f.detail.contains("IssuerValidationFailed"), "{}", f.detail);
    assert!(
        finding(&r, "IDENTITY_UNREACHABLE").is_none(),
        "{:?}",
        r.findings
    );
}

#[test]
fn the_freshest_leaf_tells_the_signing_issuer_unless_the_secret_changed_since() {
    let pki = mk_pki((-600, 86_400 * 300));
    let mut input = mk_input(&pki, None, vec![]);
    input
        .pods
        .push(mk_pod(&pki, &pki.issuer, "shop", "web-1", "web", -120));
    let issuer_fp = parse_der(&pki.issuer.cert_der).unwrap().fingerprint;
    let allowance = TimeDelta::seconds(20);
    let (fp, issued) = signing_issuer(&input.pods, allowance, None).expect("a leaf");
    assert_eq!(fp, issuer_fp);
    assert!((Utc::now() - issued).num_seconds().abs() < 200, "{issued}");
    // Changed a minute ago: no leaf issued since, so the leaves say nothing yet.
    assert_eq!(
        signing_issuer(
            &input.pods,
            allowance,
            Some(Utc::now() - TimeDelta::seconds(60))
        ),
        None
    );
    assert!(
        signing_issuer(
            &input.pods,
            allowance,
            Some(Utc::now() - TimeDelta::hours(1))
        )
        .is_some()
    );
    // Remote pods and chains without an issuer say nothing.
    for p in &mut input.pods {
        p.remote = Some("east".into());
    }
    assert_eq!(signing_issuer(&input.pods, allowance, None), None);
}
