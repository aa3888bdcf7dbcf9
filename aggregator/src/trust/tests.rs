use super::*;
use anchorwatch_tests::pki::Ca;

fn sources() -> TrustSources {
    TrustSources {
        namespace: "linkerd".into(),
        config_map: "linkerd-identity-trust-roots".into(),
        key: "ca-bundle.crt".into(),
        secret: "linkerd-identity-issuer".into(),
    }
}

fn data(key: &str, value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(key.to_string(), value.to_string())])
}

#[test]
fn bundle_without_its_key_or_certificates_is_unavailable_with_the_reason() {
    let s = sources();
    assert!(
        matches!(read_bundle(None, &s), BundleState::Unavailable(w) if w.contains("has no key ca-bundle.crt"))
    );
    assert!(matches!(
        read_bundle(Some(&data("other", "x")), &s),
        BundleState::Unavailable(_)
    ));
    assert!(
        matches!(read_bundle(Some(&data("ca-bundle.crt", "garbage")), &s), BundleState::Unavailable(w) if w.contains("no certificate"))
    );
    let corrupt = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(
        matches!(read_bundle(Some(&data("ca-bundle.crt", corrupt)), &s), BundleState::Unavailable(w) if w.contains("1 unreadable"))
    );
}

#[test]
fn bundle_with_crlf_garbage_and_duplicates_keeps_distinct_anchors() {
    let a = Ca::root("root-a").unwrap();
    let b = Ca::root("root-b").unwrap();
    let text = format!(
        "# comment\r\n{}junk\r\n{}{}",
        a.cert_pem.replace('\n', "\r\n"),
        b.cert_pem,
        a.cert_pem
    );
    let BundleState::Available(bundle) =
        read_bundle(Some(&data("ca-bundle.crt", &text)), &sources())
    else {
        panic!("bundle should be available");
    };
    assert_eq!(bundle.certs.len(), 2);
    assert_eq!(bundle.duplicates, 1);
}

#[test]
fn issuer_is_read_from_either_scheme_and_never_needs_the_key() {
    let root = Ca::root("root").unwrap();
    let pem = root.cert_pem.as_bytes().to_vec();
    let linkerd = BTreeMap::from([
        ("crt.pem".to_string(), pem.clone()),
        ("key.pem".to_string(), b"secret".to_vec()),
    ]);
    assert!(
        matches!(read_issuer(Some(&linkerd), &sources()), IssuerState::Available(c) if c.len() == 1)
    );
    let tls = BTreeMap::from([("tls.crt".to_string(), pem), ("ca.crt".to_string(), vec![])]);
    assert!(matches!(
        read_issuer(Some(&tls), &sources()),
        IssuerState::Available(_)
    ));
    let key_only = BTreeMap::from([("key.pem".to_string(), b"secret".to_vec())]);
    assert!(
        matches!(read_issuer(Some(&key_only), &sources()), IssuerState::Unavailable(w) if w.contains("neither crt.pem nor tls.crt"))
    );
}

#[test]
fn bundle_history_records_each_anchor_set_once() {
    let a = Ca::root("root-a").unwrap();
    let b = Ca::root("root-b").unwrap();
    let mut t = Trust::new(sources());
    let t0 = chrono::Utc::now();
    let avail = |pem: &str| read_bundle(Some(&data("ca-bundle.crt", pem)), &sources());
    assert!(t.set_bundle(avail(&a.cert_pem), "1".into(), t0));
    assert!(
        !t.set_bundle(
            avail(&a.cert_pem),
            "2".into(),
            t0 + chrono::Duration::seconds(1)
        ),
        "same anchors"
    );
    let t2 = t0 + chrono::Duration::seconds(2);
    assert!(t.set_bundle(
        avail(&format!("{}{}", a.cert_pem, b.cert_pem)),
        "3".into(),
        t2
    ));
    assert_eq!(t.history.len(), 2);
    assert_eq!(t.bundle_changed_at, Some(t2));
    assert_eq!(t.anchors_at(Some(t0)).unwrap().anchors.len(), 1);
    assert_eq!(t.anchors_at(Some(t2)).unwrap().anchors.len(), 2);
    assert!(t.set_bundle(BundleState::Unavailable("gone".into()), String::new(), t2));
    assert!(t.bundle_problem().unwrap().contains("gone"));
}
