use super::*;
use crate::verify::{parse_der, parse_pem_bundle};
use anchorwatch_tests::pki::{Ca, fixture, window};

fn mk_cfg<'a>(bundle: &'a PemBundle, issuer: &'a [Arc<ParsedCert>]) -> TrustConfig<'a> {
    TrustConfig {
        bundle: Some(bundle),
        linkerd_config: None,
        issuer: Some(issuer),
        issuer_unreadable: 0,
        issuance_lifetime: TimeDelta::hours(24),
        allowance: TimeDelta::seconds(20),
        warn_before: TimeDelta::days(60),
        linked_anchors: &NO_LINKED,
    }
}

static NO_LINKED: BTreeSet<Fingerprint> = BTreeSet::new();

fn issuer_of(ca: &Ca) -> Vec<Arc<ParsedCert>> {
    vec![Arc::new(parse_der(&ca.cert_der).unwrap())]
}

fn kinds(f: &[ConfigFinding]) -> Vec<(ConfigVerdict, Severity)> {
    f.iter().map(|f| (f.kind, f.severity)).collect()
}

#[test]
fn healthy_issuer_under_its_anchor_has_no_finding() {
    let root = Ca::root("root.linkerd.cluster.local").unwrap();
    let issuer = root
        .issuer("identity.linkerd.cluster.local", window(-60, 365 * 86_400))
        .unwrap();
    let bundle = parse_pem_bundle(&root.cert_pem);
    let f = check(
        &mk_cfg(&bundle, &issuer_of(&issuer)),
        &mut Verifier::new(),
        Utc::now(),
    );
    assert_eq!(f, vec![]);
}

#[test]
fn issuer_signed_by_a_same_named_root_with_another_key_is_not_chained_and_names_the_mismatch() {
    let old = Ca::linkerd_test_root("ca1").unwrap();
    let new = Ca::linkerd_test_root("ca2").unwrap();
    let issuer = new
        .issuer("identity.linkerd.cluster.local", window(-60, 365 * 86_400))
        .unwrap();
    let bundle = parse_pem_bundle(&old.cert_pem);
    let f = check(
        &mk_cfg(&bundle, &issuer_of(&issuer)),
        &mut Verifier::new(),
        Utc::now(),
    );
    assert_eq!(
        kinds(&f),
        vec![
            (ConfigVerdict::IssuerNotChainedToAnchor, Severity::Critical),
            (ConfigVerdict::AnchorKeyMismatch, Severity::Critical)
        ]
    );
    // With both roots in the bundle: a rotation in progress, nothing wrong.
    let bundle = parse_pem_bundle(&format!("{}{}", old.cert_pem, new.cert_pem));
    let f = check(
        &mk_cfg(&bundle, &issuer_of(&issuer)),
        &mut Verifier::new(),
        Utc::now(),
    );
    assert_eq!(
        kinds(&f),
        vec![(ConfigVerdict::RotationInProgress, Severity::Info)]
    );
}

#[test]
fn expired_linkerd_fixture_pair_is_critical_for_issuer_and_anchor() {
    let bundle = parse_pem_bundle(&fixture("cli-testdata/expired-trust-anchors.pem").unwrap());
    let issuer = parse_pem_bundle(&fixture("cli-testdata/expired-crt.pem").unwrap()).certs;
    let f = check(&mk_cfg(&bundle, &issuer), &mut Verifier::new(), Utc::now());
    assert!(f.contains(&ConfigFinding {
        kind: ConfigVerdict::IssuerExpired,
        severity: Severity::Critical,
        subject: ISSUER_SUBJECT.into(),
        detail: format!("the issuer expired at {}", issuer[0].not_after.to_rfc3339()),
    }));
    assert!(
        kinds(&f).contains(&(ConfigVerdict::AnchorExpired, Severity::Critical)),
        "{f:?}"
    );
    assert!(
        !kinds(&f)
            .iter()
            .any(|(k, _)| *k == ConfigVerdict::IssuerNotChainedToAnchor),
        "dates never decide chaining"
    );
}

#[test]
fn p521_issuer_chains_but_is_an_unsupported_algorithm() {
    let bundle = parse_pem_bundle(&fixture("cli-testdata/wrong-algo-trust-anchors.pem").unwrap());
    let issuer = parse_pem_bundle(&fixture("cli-testdata/wrong-algo-crt.pem").unwrap()).certs;
    let at = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let f = check(&mk_cfg(&bundle, &issuer), &mut Verifier::new(), at);
    let k: Vec<ConfigVerdict> = f.iter().map(|f| f.kind).collect();
    assert!(k.contains(&ConfigVerdict::UnsupportedAlgorithm), "{f:?}");
    assert!(
        !k.contains(&ConfigVerdict::IssuerNotChainedToAnchor),
        "{f:?}"
    );
}

#[test]
fn linkerd_valid_fixture_issuer_shares_its_anchors_subject() {
    let bundle = parse_pem_bundle(&fixture("cli-testdata/valid-trust-anchors.pem").unwrap());
    let issuer = parse_pem_bundle(&fixture("cli-testdata/valid-crt.pem").unwrap()).certs;
    let at = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let f = check(&mk_cfg(&bundle, &issuer), &mut Verifier::new(), at);
    assert_eq!(
        kinds(&f),
        vec![(ConfigVerdict::SubjectCollision, Severity::Warning)]
    );
}

#[test]
fn issuer_expiry_is_critical_within_one_issuance_lifetime_and_a_warning_within_sixty_days() {
    let root = Ca::root("root.linkerd.cluster.local").unwrap();
    let bundle = parse_pem_bundle(&root.cert_pem);
    let soon = root
        .issuer("identity.linkerd.cluster.local", window(-86_400, 12 * 3600))
        .unwrap();
    let f = check(
        &mk_cfg(&bundle, &issuer_of(&soon)),
        &mut Verifier::new(),
        Utc::now(),
    );
    assert_eq!(
        kinds(&f),
        vec![(ConfigVerdict::IssuerExpiring, Severity::Critical)]
    );
    let month = root
        .issuer(
            "identity.linkerd.cluster.local",
            window(-86_400, 30 * 86_400),
        )
        .unwrap();
    let f = check(
        &mk_cfg(&bundle, &issuer_of(&month)),
        &mut Verifier::new(),
        Utc::now(),
    );
    assert_eq!(
        kinds(&f),
        vec![(ConfigVerdict::IssuerExpiring, Severity::Warning)]
    );
}

#[test]
fn unreadable_bundle_block_is_critical_and_the_readable_anchor_still_counts() {
    let root = Ca::root("root.linkerd.cluster.local").unwrap();
    let issuer = root
        .issuer("identity.linkerd.cluster.local", window(-60, 365 * 86_400))
        .unwrap();
    let bundle = parse_pem_bundle(&format!(
        "{}\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        root.cert_pem
    ));
    let f = check(
        &mk_cfg(&bundle, &issuer_of(&issuer)),
        &mut Verifier::new(),
        Utc::now(),
    );
    assert_eq!(
        kinds(&f),
        vec![(ConfigVerdict::CertUnreadable, Severity::Critical)]
    );
    assert_eq!(f[0].subject, BUNDLE_SUBJECT);
}
