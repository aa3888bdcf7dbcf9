use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SerialNumber,
};

use super::*;

mod differential;

// ---------------------------------------------------------------------------------------------
// Builders

/// Key types the tests sign with (all supported by the aws-lc-rs provider).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyKind {
    P256,
    P384,
    P521,
    Ed25519,
    Rsa2048,
    MlDsa44,
}

impl KeyKind {
    pub(super) const ALL: [KeyKind; 6] = [
        KeyKind::P256,
        KeyKind::P384,
        KeyKind::P521,
        KeyKind::Ed25519,
        KeyKind::Rsa2048,
        KeyKind::MlDsa44,
    ];

    fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyKind::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::P521 => &rcgen::PKCS_ECDSA_P521_SHA512,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
            KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
            KeyKind::MlDsa44 => &rcgen::PKCS_ML_DSA_44,
        }
    }

    /// Keys are generated once per process and reused: RSA generation is slow.
    pub(super) fn pool_size(self) -> usize {
        match self {
            KeyKind::P256 => 14,
            KeyKind::P384 | KeyKind::Ed25519 => 4,
            KeyKind::P521 | KeyKind::Rsa2048 => 3,
            KeyKind::MlDsa44 => 2,
        }
    }
}

/// Key `i` (modulo the pool size) of kind `kind`.
pub(super) fn mk_key(kind: KeyKind, i: usize) -> &'static KeyPair {
    static POOLS: [OnceLock<Vec<KeyPair>>; 6] = [const { OnceLock::new() }; 6];
    let index = KeyKind::ALL.iter().position(|k| *k == kind).unwrap();
    let pool = POOLS[index].get_or_init(|| {
        (0..kind.pool_size())
            .map(|_| KeyPair::generate_for(kind.algorithm()).unwrap())
            .collect()
    });
    &pool[i % pool.len()]
}

/// A CA the tests can sign with: its parameters (for the issuer name), key and certificate.
pub(super) struct Ca {
    pub(super) params: CertificateParams,
    pub(super) key: &'static KeyPair,
    pub(super) der: Vec<u8>,
}

impl Ca {
    pub(super) fn parsed(&self) -> Arc<ParsedCert> {
        mk_parsed(&self.der)
    }
}

/// Unix seconds to rcgen's time type.
pub(super) fn mk_time(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

/// Parameters with `cn` as the subject CN, valid `[not_before, not_after]` (Unix seconds).
pub(super) fn mk_params(
    cn: &str,
    sans: &[&str],
    not_before: i64,
    not_after: i64,
) -> CertificateParams {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.not_before = mk_time(not_before);
    params.not_after = mk_time(not_after);
    params.serial_number = Some(SerialNumber::from(
        Fingerprint::of(cn.as_bytes()).0[..8].to_vec(),
    ));
    params
}

/// Signs `params` for `key`, by `parent` (or self-signed).
pub(super) fn mk_cert(
    params: &CertificateParams,
    key: &'static KeyPair,
    parent: Option<&Ca>,
) -> Vec<u8> {
    match parent {
        Some(parent) => {
            let issuer = Issuer::from_params(&parent.params, parent.key);
            params.signed_by(key, &issuer).unwrap().der().to_vec()
        }
        None => params.self_signed(key).unwrap().der().to_vec(),
    }
}

/// A CA named `cn` (self-signed root when `parent` is `None`), valid for years around `now`.
pub(super) fn mk_ca(cn: &str, key: &'static KeyPair, parent: Option<&Ca>) -> Ca {
    let now = NOW;
    let mut params = mk_params(cn, &[], now - 365 * DAY, now + 5 * 365 * DAY);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let der = mk_cert(&params, key, parent);
    Ca { params, key, der }
}

/// A Linkerd-style leaf: CN and only DNS SAN `name`, serverAuth + clientAuth, valid a day.
pub(super) fn mk_leaf(name: &str, key: &'static KeyPair, parent: &Ca) -> Vec<u8> {
    let mut params = mk_params(name, &[name], NOW - 20, NOW + DAY);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    mk_cert(&params, key, Some(parent))
}

pub(super) fn mk_parsed(der: &[u8]) -> Arc<ParsedCert> {
    Arc::new(parse_der(der).unwrap())
}

pub(super) fn mk_utc(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

/// 2025-06-15T15:06:40Z: the tests' "now".
pub(super) const NOW: i64 = 1_750_000_000;
pub(super) const DAY: i64 = 86_400;

fn fixture(path: &str) -> Vec<u8> {
    let full = anchorwatch_tests::pki::fixtures_dir().join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {}: {e}", full.display()))
}

fn fixture_cert(path: &str) -> Arc<ParsedCert> {
    let bytes = fixture(path);
    if path.ends_with(".der") {
        return mk_parsed(&bytes);
    }
    let bundle = parse_pem_bundle(std::str::from_utf8(&bytes).unwrap());
    assert!(
        bundle.unreadable.is_empty(),
        "{path}: {:?}",
        bundle.unreadable
    );
    assert_eq!(bundle.certs.len(), 1, "{path}");
    bundle.certs[0].clone()
}

fn linkerd_identity(sa: &str, ns: &str) -> String {
    format!("{sa}.{ns}.serviceaccount.identity.linkerd.cluster.local")
}

// ---------------------------------------------------------------------------------------------
// Real Linkerd fixtures

#[test]
fn fixtures_resolve_from_the_manifest_dir() {
    assert!(!fixture("README.md").is_empty());
}

#[test]
fn leaf_from_regenerated_root_with_same_name_is_bad_signature() {
    let leaf = fixture_cert("proxy-test-util/foo-ns1-ca2/crt.der");
    let ca1 = fixture_cert("proxy-test-util/ca1.pem");
    let ca2 = fixture_cert("proxy-test-util/ca2.pem");
    assert_eq!(ca1.subject, ca2.subject);
    assert_ne!(ca1.spki_fingerprint(), ca2.spki_fingerprint());

    let mut verifier = Verifier::new();
    let at = Some(mk_utc(NOW));
    let chain = [leaf.clone()];
    assert_eq!(
        verifier.verify(&chain, std::slice::from_ref(&ca1), at),
        Err(ChainError::BadSignature)
    );
    assert_eq!(
        verifier.verify(&chain, std::slice::from_ref(&ca1), None),
        Err(ChainError::BadSignature)
    );
    assert_eq!(ChainError::BadSignature.to_string(), "BadSignature");

    let verified = verifier
        .verify(&chain, &[ca1.clone(), ca2.clone()], at)
        .unwrap();
    assert_eq!(verified.anchor, ca2.fingerprint);
    assert_eq!(verified.path, vec![leaf.fingerprint]);
    assert_eq!(
        verifier
            .verify(&chain, std::slice::from_ref(&ca2), at)
            .map(|v| v.anchor),
        Ok(ca2.fingerprint)
    );
}

#[test]
fn leaf_against_unrelated_anchor_is_unknown_issuer() {
    let leaf = fixture_cert("proxy-test-util/foo-ns1-ca2/crt.der");
    let unrelated = fixture_cert("cli-testdata/valid-trust-anchors.pem");
    let mut verifier = Verifier::new();
    let err = verifier
        .verify(&[leaf], &[unrelated], Some(mk_utc(NOW)))
        .unwrap_err();
    assert_eq!(err, ChainError::UnknownIssuer);
    assert_eq!(
        err.rustls_message(),
        "invalid peer certificate: UnknownIssuer"
    );
}

#[test]
fn fixture_leaf_is_valid_only_for_its_identity() {
    let leaf = fixture_cert("proxy-test-util/foo-ns1-ca2/crt.der");
    assert_eq!(leaf.dns_sans(), vec![linkerd_identity("foo", "ns1")]);
    assert_eq!(leaf.key_algorithm, "ECDSA P-256");
    assert_eq!(leaf.signature_algorithm, "ecdsa-with-SHA256");
    assert!(!leaf.is_ca);
    assert_eq!(check_name(&leaf, &linkerd_identity("foo", "ns1")), Ok(()));
    assert_eq!(
        check_name(&leaf, &linkerd_identity("FOO", "NS1").to_uppercase()),
        Ok(())
    );
    let err = check_name(&leaf, &linkerd_identity("bar", "ns1")).unwrap_err();
    assert_eq!(err.to_string(), "NotValidForName");
    assert_eq!(
        err.rustls_message(),
        format!(
            "invalid peer certificate: certificate not valid for name \"{}\"; certificate is \
             only valid for DnsName(\"{}\")",
            linkerd_identity("bar", "ns1"),
            linkerd_identity("foo", "ns1")
        )
    );
    assert!(matches!(
        check_name(&leaf, "10.42.0.17"),
        Err(ChainError::NotValidForName { .. })
    ));
    assert_eq!(
        check_name(&leaf, "not a name"),
        Err(ChainError::InvalidServerName("not a name".to_owned()))
    );
}

#[test]
fn expired_issuer_fixture_is_expired_at_any_recent_time() {
    let issuer = fixture_cert("cli-testdata/expired-crt.pem");
    let root = fixture_cert("cli-testdata/expired-trust-anchors.pem");
    let mut verifier = Verifier::new();
    let err = verifier
        .verify(
            std::slice::from_ref(&issuer),
            std::slice::from_ref(&root),
            Some(mk_utc(NOW)),
        )
        .unwrap_err();
    let ChainError::Expired { not_after, time } = &err else {
        panic!("expected Expired, got {err:?}");
    };
    assert_eq!(*not_after, issuer.not_after);
    assert_eq!(*time, mk_utc(NOW));
    assert_eq!(err.to_string(), "Expired");
    assert!(err.is_time_error());
    assert!(err.rustls_message().starts_with(
        "invalid peer certificate: certificate expired: verification time 1750000000 (UNIX), \
         but certificate is not valid after 631155671 ("
    ));

    // As a CA, with dates ignored, it does chain to its (also expired) anchor.
    assert_eq!(
        verifier
            .verify_ca(
                std::slice::from_ref(&issuer),
                std::slice::from_ref(&root),
                None
            )
            .map(|v| v.anchor),
        Ok(root.fingerprint)
    );
    assert!(matches!(
        verifier.verify_ca(&[issuer], &[root], Some(mk_utc(NOW))),
        Err(ChainError::Expired { .. })
    ));
}

#[test]
fn issuer_sharing_the_roots_subject_chains_to_it() {
    let issuer = fixture_cert("cli-testdata/valid-crt.pem");
    let root = fixture_cert("cli-testdata/valid-trust-anchors.pem");
    assert_eq!(issuer.subject, "CN=identity.linkerd.cluster.local");
    assert_eq!(issuer.subject, root.subject);
    assert!(issuer.is_self_issued() && issuer.is_ca);

    let mut verifier = Verifier::new();
    let at = Some(mk_utc(NOW));
    let verified = verifier
        .verify_ca(
            std::slice::from_ref(&issuer),
            std::slice::from_ref(&root),
            at,
        )
        .unwrap();
    assert_eq!(verified.anchor, root.fingerprint);
    assert_eq!(verifier.signed_by(&issuer, &root), Ok(()));
    assert_eq!(verifier.signed_by(&root, &root), Ok(()));
    assert_eq!(
        verifier.signed_by(&issuer, &issuer),
        Err(ChainError::BadSignature)
    );
    // A CA presented as a leaf is refused as such.
    assert_eq!(
        verifier.verify(&[issuer], &[root], at),
        Err(ChainError::CaUsedAsEndEntity)
    );
}

#[test]
fn p521_issuer_fixture_is_readable_and_chains() {
    let issuer = fixture_cert("cli-testdata/wrong-algo-crt.pem");
    let root = fixture_cert("cli-testdata/wrong-algo-trust-anchors.pem");
    assert_eq!(issuer.key_algorithm, "ECDSA P-521");
    let mut verifier = Verifier::new();
    assert!(
        verifier
            .verify_ca(&[issuer], &[root], Some(mk_utc(NOW)))
            .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// PEM bundles

fn fixture_text(path: &str) -> String {
    String::from_utf8(fixture(path)).unwrap()
}

#[test]
fn bundle_ignores_text_between_blocks_and_counts_duplicates_once() {
    let ca1 = fixture_text("proxy-test-util/ca1.pem");
    let ca2 = fixture_text("proxy-test-util/ca2.pem");
    let text = format!(
        "# trust roots, rotated 2025-06-01\n{ca1}\nsome: yaml: noise\n{ca2}{ca1}   \n-- end --\n"
    );
    let bundle = parse_pem_bundle(&text);
    assert_eq!(bundle.certs.len(), 2);
    assert_eq!(bundle.duplicates, 1);
    assert!(bundle.unreadable.is_empty());
    assert_eq!(
        bundle.certs[0].fingerprint,
        fixture_cert("proxy-test-util/ca1.pem").fingerprint
    );
    assert_eq!(
        bundle.certs[1].fingerprint,
        fixture_cert("proxy-test-util/ca2.pem").fingerprint
    );
}

#[test]
fn bundle_tolerates_crlf_and_squashed_lines() {
    let ca1 = fixture_text("proxy-test-util/ca1.pem");
    let crlf = ca1.replace('\n', "\r\n");
    assert_eq!(parse_pem_bundle(&crlf).certs.len(), 1);
    let squashed = ca1.replace('\n', "");
    let bundle = parse_pem_bundle(&squashed);
    assert_eq!(bundle.certs.len(), 1, "{:?}", bundle.unreadable);
    let indented: String = ca1.lines().map(|l| format!("    {l}\n")).collect();
    assert_eq!(parse_pem_bundle(&indented).certs.len(), 1);
}

#[test]
fn bundle_reports_corrupt_blocks_with_their_position() {
    let ca1 = fixture_text("proxy-test-util/ca1.pem");
    let ca2 = fixture_text("proxy-test-util/ca2.pem");
    let not_base64 = "-----BEGIN CERTIFICATE-----\nMIIB%%%not*base64\n-----END CERTIFICATE-----\n";
    let not_der = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            b"hello, not DER"
        )
    );
    let text = format!("{ca1}{not_base64}{ca2}{not_der}");
    let bundle = parse_pem_bundle(&text);
    assert_eq!(bundle.certs.len(), 2);
    assert_eq!(bundle.unreadable.len(), 2);
    let bad64 = &bundle.unreadable[0];
    assert_eq!((bad64.index, bad64.line), (2, ca1.lines().count() + 1));
    assert!(matches!(bad64.error, PemError::Base64(_)), "{bad64}");
    let bad_der = &bundle.unreadable[1];
    assert_eq!(bad_der.index, 4);
    assert!(
        matches!(
            bad_der.error,
            PemError::Certificate(CertError::Malformed(_))
        ),
        "{bad_der}"
    );
    assert!(
        bad_der
            .to_string()
            .starts_with("CERTIFICATE block 4 (line ")
    );
}

#[test]
fn bundle_skips_other_blocks_and_reports_unterminated_certificates() {
    let ca1 = fixture_text("proxy-test-util/ca1.pem");
    let key = fixture_text("proxy-test-util/ca1-key.pem");
    let truncated: String = ca1.lines().take(4).map(|l| format!("{l}\n")).collect();
    let text = format!("{key}{ca1}{truncated}");
    let bundle = parse_pem_bundle(&text);
    assert_eq!(bundle.certs.len(), 1);
    assert_eq!(bundle.skipped, vec!["EC PRIVATE KEY".to_owned()]);
    assert_eq!(bundle.unreadable.len(), 1);
    assert_eq!(bundle.unreadable[0].index, 2);
    assert_eq!(bundle.unreadable[0].error, PemError::MissingEnd);

    let mismatched = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let bundle = parse_pem_bundle(mismatched);
    assert_eq!(bundle.unreadable[0].error, PemError::MissingEnd);

    let empty = "-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n";
    assert_eq!(parse_pem_bundle(empty).unreadable[0].error, PemError::Empty);
}

#[test]
fn empty_or_garbage_text_is_an_empty_bundle() {
    for text in [
        "",
        "\n\n",
        "no pem here",
        "-----BEGIN ",
        "-----BEGIN \n-----",
        "-----END CERTIFICATE-----",
    ] {
        let bundle = parse_pem_bundle(text);
        assert!(
            bundle.certs.is_empty() && bundle.unreadable.is_empty(),
            "{text:?}"
        );
    }
}

#[test]
fn pem_round_trips_generated_chains() {
    let root = mk_ca("root.linkerd.cluster.local", mk_key(KeyKind::P256, 0), None);
    let leaf = mk_leaf(
        "a.b.serviceaccount.identity.linkerd.cluster.local",
        mk_key(KeyKind::P256, 1),
        &root,
    );
    let text = to_pem([leaf.as_slice(), root.der.as_slice()]);
    let bundle = parse_pem_bundle(&text);
    assert_eq!(bundle.certs.len(), 2);
    assert_eq!(bundle.certs[0].der.as_ref(), leaf.as_slice());
}

// ---------------------------------------------------------------------------------------------
// Parsing and errors

#[test]
fn parse_der_reports_garbage_and_trailing_bytes() {
    assert!(matches!(parse_der(b""), Err(CertError::Malformed(_))));
    assert!(matches!(
        parse_der(b"\x30\x03abc"),
        Err(CertError::Malformed(_))
    ));
    let mut der = fixture("proxy-test-util/foo-ns1-ca2/crt.der");
    der.extend_from_slice(b"xx");
    assert_eq!(parse_der(&der).unwrap_err(), CertError::TrailingData(2));
}

#[test]
fn empty_chain_and_unparsable_leaf_are_errors() {
    let root = fixture_cert("proxy-test-util/ca1.pem");
    let mut verifier = Verifier::new();
    assert_eq!(
        verifier.verify(&[], std::slice::from_ref(&root), None),
        Err(ChainError::EmptyChain)
    );
    assert_eq!(
        ChainError::EmptyChain.rustls_message(),
        "peer sent no certificates"
    );
    // A v2 certificate parses for display but webpki refuses it.
    let key = mk_key(KeyKind::P256, 2);
    let ca = mk_ca("ca", key, None);
    let mut leaf = mk_leaf(
        "x.y.serviceaccount.identity.linkerd.cluster.local",
        mk_key(KeyKind::P256, 3),
        &ca,
    );
    let at = leaf
        .windows(5)
        .position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02])
        .unwrap();
    leaf[at + 4] = 0x01;
    let leaf = mk_parsed(&leaf);
    assert_eq!(
        leaf.chain_error(),
        Some(&ChainError::UnsupportedCertVersion)
    );
    assert_eq!(
        verifier.verify(&[leaf], &[ca.parsed()], None),
        Err(ChainError::UnsupportedCertVersion)
    );
    assert_eq!(
        ChainError::UnsupportedCertVersion.rustls_message(),
        "invalid peer certificate: Other(OtherError(UnsupportedCertVersion))"
    );
}

#[test]
fn fingerprints_display_and_parse_as_hex() {
    let fp = Fingerprint::of(b"anchor");
    let s = fp.to_string();
    assert_eq!(s.len(), 64);
    assert_eq!(s, s.to_lowercase());
    assert_eq!(s.parse::<Fingerprint>(), Ok(fp));
    assert_eq!(s.to_uppercase().parse::<Fingerprint>(), Ok(fp));
    assert!("abc".parse::<Fingerprint>().is_err());
    assert!(format!("{}zz", &s[..62]).parse::<Fingerprint>().is_err());
}

#[test]
fn parsed_fields_describe_generated_certificates() {
    for (kind, name) in [
        (KeyKind::P256, "ECDSA P-256"),
        (KeyKind::P384, "ECDSA P-384"),
        (KeyKind::P521, "ECDSA P-521"),
        (KeyKind::Ed25519, "Ed25519"),
        (KeyKind::Rsa2048, "RSA 2048"),
        (KeyKind::MlDsa44, "ML-DSA-44"),
    ] {
        let ca = mk_ca("root", mk_key(kind, 0), None);
        let parsed = ca.parsed();
        assert_eq!(parsed.key_algorithm, name);
        assert!(parsed.is_ca && parsed.is_self_issued());
        assert_eq!(parsed.subject, "CN=root");
        assert_eq!(parsed.not_before, mk_utc(NOW - 365 * DAY));
        assert_eq!(parsed.chain_error(), None);
        assert_eq!(parsed.anchor_error(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Cache

#[test]
fn new_bundle_with_same_anchor_needs_no_new_signature_check() {
    let root = mk_ca("root.linkerd.cluster.local", mk_key(KeyKind::P256, 4), None);
    let issuer = mk_ca(
        "identity.linkerd.cluster.local",
        mk_key(KeyKind::P256, 5),
        Some(&root),
    );
    let leaf = mk_leaf(
        &linkerd_identity("web", "emojivoto"),
        mk_key(KeyKind::P256, 6),
        &issuer,
    );
    let chain = [mk_parsed(&leaf), issuer.parsed()];
    let other_root = mk_ca("other.root", mk_key(KeyKind::P384, 0), None).parsed();

    let mut verifier = Verifier::new();
    let at = Some(mk_utc(NOW));
    assert!(verifier.verify(&chain, &[root.parsed()], at).is_ok());
    assert_eq!(verifier.signature_checks(), 2);
    assert_eq!(verifier.cached_facts(), 2);

    // A re-read bundle: new Arcs, an extra unrelated anchor, another time, dates ignored.
    let bundle = parse_pem_bundle(&to_pem([other_root.der.as_ref(), root.der.as_slice()]));
    for time in [at, Some(mk_utc(NOW + 3600)), None] {
        let verified = verifier.verify(&chain, &bundle.certs, time).unwrap();
        assert_eq!(verified.anchor, root.parsed().fingerprint);
        assert_eq!(
            verified.path,
            vec![chain[0].fingerprint, chain[1].fingerprint]
        );
    }
    assert_eq!(verifier.signature_checks(), 2);

    // An anchor with the same name but another key is a new fact, computed once.
    let rekeyed = mk_ca("root.linkerd.cluster.local", mk_key(KeyKind::P256, 7), None).parsed();
    for _ in 0..3 {
        assert_eq!(
            verifier.verify(&chain, std::slice::from_ref(&rekeyed), at),
            Err(ChainError::BadSignature)
        );
    }
    assert_eq!(verifier.signature_checks(), 3);
    assert_eq!(verifier.cached_facts(), 3);
}

#[test]
fn time_errors_outrank_signature_errors_across_candidate_paths() {
    // Rotation overlap: the bundle has the old root and the new one (same name). The leaf's
    // issuer is under the new root but expired: webpki reports Expired, not BadSignature.
    let old_root = mk_ca("root.linkerd.cluster.local", mk_key(KeyKind::P256, 8), None);
    let new_root = mk_ca("root.linkerd.cluster.local", mk_key(KeyKind::P256, 9), None);
    let mut params = mk_params(
        "identity.linkerd.cluster.local",
        &[],
        NOW - 10 * DAY,
        NOW - DAY,
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer_key = mk_key(KeyKind::P256, 10);
    let issuer = Ca {
        der: mk_cert(&params, issuer_key, Some(&new_root)),
        params,
        key: issuer_key,
    };
    let leaf = mk_leaf(
        &linkerd_identity("a", "b"),
        mk_key(KeyKind::P256, 11),
        &issuer,
    );
    let chain = [mk_parsed(&leaf), issuer.parsed()];
    let mut verifier = Verifier::new();
    let err = verifier
        .verify(
            &chain,
            &[old_root.parsed(), new_root.parsed()],
            Some(mk_utc(NOW)),
        )
        .unwrap_err();
    assert!(matches!(err, ChainError::Expired { .. }), "{err:?}");
    // With dates ignored, the new root is reached.
    assert_eq!(
        verifier
            .verify(&chain, &[old_root.parsed(), new_root.parsed()], None)
            .map(|v| v.anchor),
        Ok(new_root.parsed().fingerprint)
    );
    // Only the old root: the issuer's signature does not verify.
    assert_eq!(
        verifier.verify(&chain, &[old_root.parsed()], None),
        Err(ChainError::BadSignature)
    );
}

#[test]
fn verifier_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    assert_send_sync::<ParsedCert>();
}

/// webpki 0.103.17's own distrust list, read from the cargo registry when it is there.
fn webpki_distrusted_spkis() -> Vec<Vec<u8>> {
    let home = std::env::var("CARGO_HOME")
        .or_else(|_| std::env::var("HOME").map(|h| format!("{h}/.cargo")))
        .unwrap_or_default();
    let Ok(indexes) = std::fs::read_dir(format!("{home}/registry/src")) else {
        return Vec::new();
    };
    for index in indexes.flatten() {
        let dir = index
            .path()
            .join("rustls-webpki-0.103.17/src/data/distrusted");
        if let Ok(files) = std::fs::read_dir(&dir) {
            return files
                .flatten()
                .filter_map(|f| std::fs::read(f.path()).ok())
                .collect();
        }
    }
    Vec::new()
}

#[test]
fn distrusted_spkis_are_refused_like_webpki() {
    let spkis = webpki_distrusted_spkis();
    if spkis.is_empty() {
        println!("rustls-webpki 0.103.17 sources not in the cargo registry: skipped");
        return;
    }
    assert_eq!(spkis.len(), 8);
    let root = mk_ca("root.example", mk_key(KeyKind::P256, 12), None);
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    for contents in spkis {
        assert!(cert::is_distrusted(&contents));
        let mut spki_der = vec![0x30, u8::try_from(contents.len()).unwrap()];
        spki_der.extend_from_slice(&contents);
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&spki_der).unwrap();
        // As the end entity, and as an anchor (checked before any signature).
        let leaf_params = mk_params("leaf.example", &["leaf.example"], NOW - DAY, NOW + DAY);
        let issuer = Issuer::from_params(&root.params, root.key);
        let leaf = leaf_params
            .signed_by(&public_key, &issuer)
            .unwrap()
            .der()
            .to_vec();
        let mut anchor_params = mk_params("root.example", &[], NOW - DAY, NOW + DAY);
        anchor_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let anchor = anchor_params
            .signed_by(&public_key, &issuer)
            .unwrap()
            .der()
            .to_vec();
        let good_leaf = mk_leaf("ok.example", mk_key(KeyKind::P256, 13), &root);

        let mut verifier = Verifier::new();
        for (leaf, anchor) in [(&leaf, &root.der), (&good_leaf, &anchor)] {
            let mine = verifier.verify(&[mk_parsed(leaf)], &[mk_parsed(anchor)], Some(mk_utc(NOW)));
            let ee_der = rustls_pki_types::CertificateDer::from(leaf.as_slice());
            let anchor_der = rustls_pki_types::CertificateDer::from(anchor.as_slice());
            let ee = webpki::EndEntityCert::try_from(&ee_der).unwrap();
            let trust_anchors = [webpki::anchor_from_trusted_cert(&anchor_der).unwrap()];
            let theirs = ee.verify_for_usage(
                algs,
                &trust_anchors,
                &[],
                rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    u64::try_from(NOW).unwrap(),
                )),
                webpki::KeyUsage::server_auth(),
                None,
                None,
            );
            assert_eq!(theirs.map(|_| ()), Err(webpki::Error::CertDistrusted));
            assert_eq!(mine, Err(ChainError::CertDistrusted));
        }
    }
}

/// `cargo test --release -p anchorwatch-aggregator --lib verify::tests::cached -- --ignored
/// --nocapture`: re-verifying 550,000 pods' chains after a bundle change, from cached facts.
#[test]
#[ignore = "throughput measurement"]
fn cached_reverification_throughput() {
    let root = mk_ca("root.linkerd.cluster.local", mk_key(KeyKind::P256, 0), None);
    let new_root = mk_ca("root.linkerd.cluster.local", mk_key(KeyKind::P256, 1), None);
    let issuer = mk_ca(
        "identity.linkerd.cluster.local",
        mk_key(KeyKind::P256, 2),
        Some(&root),
    );
    let chains: Vec<[Arc<ParsedCert>; 2]> = (0..1000)
        .map(|i| {
            let leaf = mk_leaf(
                &linkerd_identity(&format!("sa{i}"), "ns"),
                mk_key(KeyKind::P256, i),
                &issuer,
            );
            [mk_parsed(&leaf), issuer.parsed()]
        })
        .collect();
    let bundle = [new_root.parsed(), root.parsed()];
    let mut verifier = Verifier::new();
    for chain in &chains {
        verifier.verify(chain, &bundle, Some(mk_utc(NOW))).unwrap();
    }
    let checks = verifier.signature_checks();
    let started = std::time::Instant::now();
    let pods = 550_000;
    for i in 0..pods {
        let verified = verifier.verify(&chains[i % chains.len()], &bundle, Some(mk_utc(NOW)));
        assert!(verified.is_ok());
    }
    let elapsed = started.elapsed();
    assert_eq!(verifier.signature_checks(), checks);
    println!("{pods} cached re-verifications in {elapsed:.2?}");
}

#[test]
fn facts_proven_off_the_verifier_are_the_facts_it_would_compute() {
    let root = mk_ca("root.linkerd.cluster.local", mk_key(KeyKind::P256, 4), None);
    let issuer = mk_ca(
        "identity.linkerd.cluster.local",
        mk_key(KeyKind::P256, 5),
        Some(&root),
    );
    // Same name, other key: the leaf names it as its issuer, and its signature fails.
    let impostor = mk_ca(
        "identity.linkerd.cluster.local",
        mk_key(KeyKind::P256, 7),
        Some(&root),
    );
    let leaf = mk_parsed(&mk_leaf(
        &linkerd_identity("web", "emojivoto"),
        mk_key(KeyKind::P256, 6),
        &issuer,
    ));
    let chain = [
        leaf.clone(),
        impostor.parsed(),
        issuer.parsed(),
        root.parsed(),
    ];

    let mut verifier = Verifier::new();
    let proven = verifier.prover().leaf_facts(&chain);
    // The two CAs named as the leaf's issuer; not the root.
    assert_eq!(proven.len(), 2, "{proven:?}");
    verifier.learn(proven);
    assert_eq!(verifier.signature_checks(), 2);
    assert_eq!(verifier.cached_facts(), 2);

    // Learned facts answer exactly as computed ones, with no new check.
    assert_eq!(
        verifier.signed_by(&leaf, &impostor.parsed()),
        Err(ChainError::BadSignature)
    );
    assert_eq!(verifier.signed_by(&leaf, &issuer.parsed()), Ok(()));
    assert!(verifier.chain_shape(&chain).is_some());
    assert_eq!(verifier.signature_checks(), 2);
    let mut fresh = Verifier::new();
    assert_eq!(
        fresh.signed_by(&leaf, &impostor.parsed()),
        Err(ChainError::BadSignature)
    );
    assert_eq!(fresh.signed_by(&leaf, &issuer.parsed()), Ok(()));

    // Learning a fact again counts nothing; an empty or leaf-only chain proves nothing.
    verifier.learn(verifier.prover().leaf_facts(&chain));
    assert_eq!(verifier.signature_checks(), 2);
    assert!(verifier.prover().leaf_facts(&[]).is_empty());
    assert!(verifier.prover().leaf_facts(&chain[..1]).is_empty());
}
