use super::*;
use std::path::{Path, PathBuf};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

const NOW: &str = "2025-01-10T12:00:00Z";

/// A one-document case around `certs` and `cluster` (YAML fragments indented by two spaces).
fn mk_case_text(certs: &str, cluster: &str) -> String {
    format!(
        "id: test-case\nsource: synthetic\nsummary: test\nnow: {NOW}\n\
         certs:\n{certs}\ncluster:\n{cluster}\n\
         expect: {{verdicts: [OK], affected: [], escalate: false}}\n"
    )
}

fn mk_case(certs: &str, cluster: &str) -> Case {
    let mut cases =
        load_str(&mk_case_text(certs, cluster), Path::new("inline.yaml")).expect("test case loads");
    assert_eq!(cases.len(), 1);
    cases.remove(0)
}

fn mk_material(certs: &str, cluster: &str) -> Materialised {
    materialise(&mk_case(certs, cluster)).expect("test case materialises")
}

fn load_err(text: &str) -> String {
    format!(
        "{:#}",
        load_str(text, Path::new("bad-case.yaml")).expect_err("case must not load")
    )
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der)
        .expect("certificate parses")
        .1
}

/// Whether `signer`'s key made `child`'s signature, checked with rustls' aws-lc-rs verifiers
/// (x509-parser's own `verify_signature` has no ECDSA P-521).
fn signed_by(child: &[u8], signer: &[u8]) -> bool {
    let child = parse(child);
    let signer = parse(signer);
    let public_key = &signer.public_key().subject_public_key.data;
    let message = child.tbs_certificate.as_ref();
    let signature = &child.signature_value.data;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let verifies = provider
        .signature_verification_algorithms
        .all
        .iter()
        .any(|alg| alg.verify_signature(public_key, message, signature).is_ok());
    verifies && child.issuer() == signer.subject()
}

fn spki(der: &[u8]) -> Vec<u8> {
    parse(der).public_key().raw.to_vec()
}

#[test]
fn every_shared_case_loads_and_materialises() {
    let dir = shared_dir();
    let files = load_dir(&dir).expect("shared cases load");
    assert!(
        files.len() >= 15,
        "only {} case files in {}",
        files.len(),
        dir.display()
    );
    for (path, cases) in &files {
        assert!(!cases.is_empty(), "{} holds no case", path.display());
        for (i, case) in cases.iter().enumerate() {
            assert_eq!(case.step, i + 1);
            let m = materialise(case).unwrap_or_else(|e| panic!("{e:#}"));
            // Every generated certificate parses and verifies under its signer.
            for (label, spec) in &case.certs {
                let CertSpec::Generated(g) = spec else {
                    continue;
                };
                let der = &m.certs[label].der;
                let signer = g.signed_by.as_deref().unwrap_or(label);
                assert!(
                    signed_by(der, &m.certs[signer].der),
                    "{}: {label} is not signed by {signer}",
                    case.origin()
                );
            }
            // Every generated chain is [leaf, issuer], the leaf signed by the issuer.
            for (pod, spec) in m.pods.iter().zip(&case.cluster.pods) {
                match (&pod.presented, &spec.leaf) {
                    (Presented::Chain(chain), Some(LeafSpec::Issued(_))) => {
                        assert_eq!(chain.len(), 2);
                        assert!(signed_by(&chain[0], &chain[1]), "{}", pod.full_name());
                    }
                    (Presented::Raw { ders, .. }, Some(LeafSpec::Raw(_))) => {
                        assert!(!ders.is_empty())
                    }
                    (Presented::Nothing, None) => {}
                    other => panic!("{}: {other:?}", pod.full_name()),
                }
            }
        }
    }
}

#[test]
fn shared_folder_is_the_workspace_sibling_and_comes_first() {
    let dirs = dirs_from_env();
    let shared = dirs[0].canonicalize().expect("shared case folder exists");
    assert!(shared.ends_with("shared/cases"), "{}", shared.display());
    assert!(shared.join("FORMAT.md").is_file());
}

#[test]
fn extra_case_folders_are_colon_separated() {
    let dirs = parse_extra_dirs("/a/cases:relative/b::/c/".as_ref());
    assert_eq!(
        dirs,
        vec![
            PathBuf::from("/a/cases"),
            PathBuf::from("relative/b"),
            PathBuf::from("/c/")
        ]
    );
    assert!(parse_extra_dirs("".as_ref()).is_empty());
}

#[test]
fn load_dirs_reads_extra_folder_and_rejects_duplicate_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let text = mk_case_text("  A: {cn: root, key: kA, ca: true}", "  trust_roots: [A]");
    std::fs::write(tmp.path().join("extra.yaml"), &text).unwrap();
    std::fs::write(tmp.path().join("notes.md"), "not a case").unwrap();
    let loaded = load_dirs(&[tmp.path().to_path_buf()]).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].1[0].id, "test-case");

    std::fs::write(tmp.path().join("extra2.yaml"), &text).unwrap();
    let err = format!("{:#}", load_dirs(&[tmp.path().to_path_buf()]).unwrap_err());
    assert!(err.contains("`test-case` is used in"), "{err}");
}

#[test]
fn documents_are_steps() {
    let one = mk_case_text("  A: {cn: root, key: kA, ca: true}", "  trust_roots: [A]");
    let two = one.replace("id: test-case", "id: test-case-2");
    let text = format!("# comment only\n{one}---\n# step 2\n{two}---\n# trailing\n");
    let cases = load_str(&text, Path::new("steps.yaml")).unwrap();
    let steps: Vec<_> = cases.iter().map(|c| (c.id.as_str(), c.step)).collect();
    assert_eq!(steps, [("test-case", 1), ("test-case-2", 2)]);
}

#[test]
fn unknown_field_fails_naming_file_document_and_field() {
    let good = mk_case_text("  A: {cn: root, key: kA, ca: true}", "  trust_roots: [A]");
    let bad = mk_case_text(
        "  A: {cn: root, key: kA, ca: true}",
        "  trust_roots: [A]\n  nodes: {n1: {offset_s: 0.1}}\n  pods:\n    - {name: ns/p, node: n1, anchors: [A], colour: blue}",
    )
    .replace("id: test-case", "id: test-case-2");
    let err = load_err(&format!("{good}---\n{bad}"));
    assert!(err.contains("bad-case.yaml"), "{err}");
    assert!(err.contains("document 2"), "{err}");
    assert!(err.contains("unknown field `colour`"), "{err}");
    assert!(err.contains("cluster.pods[0]"), "{err}");

    let err = load_err(&good.replace("summary: test", "summary: test\nseverity: high"));
    assert!(err.contains("unknown field `severity`"), "{err}");
    let err = load_err(&good.replace("ca: true}", "ca: true, colour: red}"));
    assert!(err.contains("unknown field `colour`"), "{err}");
    let err = load_err(&good.replace("escalate: false", "escalate: false, phase: done"));
    assert!(err.contains("unknown field `phase`"), "{err}");
}

#[test]
fn inconsistent_references_fail_naming_the_field() {
    let err = load_err(&mk_case_text(
        "  A: {cn: root, key: kA, ca: true}",
        "  trust_roots: [A, Z]",
    ));
    assert!(
        err.contains("cluster.trust_roots: unknown certificate label `Z`"),
        "{err}"
    );

    let err = load_err(&mk_case_text(
        "  A: {cn: root, key: kA, ca: true, signed_by: B}\n  B: {cn: b, key: kB, ca: true, signed_by: A}",
        "  trust_roots: [A]",
    ));
    assert!(err.contains("signing cycle"), "{err}");

    let err = load_err(&mk_case_text(
        "  A: {cn: root, key: k, ca: true}\n  B: {cn: b, key: k, ca: true, alg: P-384}",
        "  trust_roots: [A]",
    ));
    assert!(err.contains("key `k`"), "{err}");

    let err = load_err(&mk_case_text(
        "  A: {raw: x, cn: root}",
        "  trust_roots: [A]",
    ));
    assert!(err.contains("`raw` replaces"), "{err}");

    let err = load_err(&mk_case_text(
        "  A: {cn: root, key: kA, ca: true}",
        "  trust_roots_raw: \"{{B}}\"",
    ));
    assert!(
        err.contains("`{{B}}` names no generated certificate"),
        "{err}"
    );

    let err = load_err(
        &mk_case_text("  A: {cn: root, key: kA, ca: true}", "  trust_roots: [A]")
            .replace("[OK]", "[OK, STALE_BUNDLE]"),
    );
    assert!(err.contains("unknown verdict name `STALE_BUNDLE`"), "{err}");

    let err = load_err(
        &mk_case_text("  A: {cn: root, key: kA, ca: true}", "  trust_roots: [A]")
            .replace("[OK]", "[CLOCK_SKEW(n9)]"),
    );
    assert!(err.contains("`n9`"), "{err}");
}

#[test]
fn same_key_label_means_same_key_pair() {
    let m = mk_material(
        "  A1: {cn: root, key: kA, ca: true}\n  A2: {cn: root, key: kA, ca: true, not_after: 2040-01-01T00:00:00Z}\n  B: {cn: root, key: kB, ca: true}\n  C: {cn: root, ca: true}",
        "  trust_roots: [A1, A2, B, C]",
    );
    assert_ne!(m.certs["A1"].der, m.certs["A2"].der);
    assert_eq!(spki(&m.certs["A1"].der), spki(&m.certs["A2"].der));
    assert_ne!(spki(&m.certs["A1"].der), spki(&m.certs["B"].der));
    assert_ne!(spki(&m.certs["C"].der), spki(&m.certs["B"].der));
    // Same key and subject, still distinct serial numbers.
    assert_ne!(
        parse(&m.certs["A1"].der).raw_serial(),
        parse(&m.certs["A2"].der).raw_serial()
    );
}

#[test]
fn certificates_follow_the_case_and_its_defaults() {
    let m = mk_material(
        "  A: {cn: root.linkerd.cluster.local, key: kA, ca: true}\n  I: {cn: identity.linkerd.cluster.local, key: kI, ca: true, signed_by: A, not_before: 2025-01-01T00:00:00Z, not_after: 2026-01-01T00:00:00Z}",
        "  trust_roots: [A]",
    );
    let a = parse(&m.certs["A"].der);
    assert!(a.is_ca());
    assert_eq!(a.subject(), a.issuer());
    let now = chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .timestamp();
    assert_eq!(a.validity().not_before.timestamp(), now - 30 * 86_400);
    assert_eq!(a.validity().not_after.timestamp(), now + 365 * 86_400);
    let i = parse(&m.certs["I"].der);
    assert!(i.is_ca());
    assert_eq!(i.issuer(), a.subject());
    assert_eq!(
        i.validity().not_before.to_datetime().to_string(),
        "2025-01-01 0:00:00.0 +00:00:00"
    );
    assert!(signed_by(&m.certs["I"].der, &m.certs["A"].der));
    assert!(!signed_by(&m.certs["A"].der, &m.certs["I"].der));
    assert!(
        m.certs["I"]
            .pem
            .starts_with("-----BEGIN CERTIFICATE-----\n")
    );
    assert!(m.certs["I"].pem.ends_with("-----END CERTIFICATE-----\n"));
}

#[test]
fn every_algorithm_signs_and_verifies() {
    let m = mk_material(
        "  A: {cn: root, key: kA, ca: true, alg: P-521}\n  I: {cn: issuer, key: kI, ca: true, signed_by: A, alg: RSA-2048}\n  J: {cn: issuer2, key: kJ, ca: true, signed_by: I, alg: P-384}\n  K: {cn: issuer3, key: kK, ca: true, signed_by: J}",
        "  trust_roots: [A]\n  nodes: {n1: {offset_s: 0}}\n  pods:\n    - {name: ns/p, node: n1, anchors: [A], leaf: {signed_by: K}}\n    - {name: ns/q, node: n1, anchors: [A], leaf: {signed_by: I}}",
    );
    let p521 = x509_parser::oid_registry::OID_NIST_EC_P521;
    assert_eq!(
        parse(&m.certs["A"].der)
            .public_key()
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .as_oid()
            .unwrap(),
        p521
    );
    match parse(&m.certs["I"].der).public_key().parsed().unwrap() {
        x509_parser::public_key::PublicKey::RSA(rsa) => assert_eq!(rsa.key_size(), 2048),
        other => panic!("not RSA: {other:?}"),
    }
    for (child, signer) in [("A", "A"), ("I", "A"), ("J", "I"), ("K", "J")] {
        assert!(
            signed_by(&m.certs[child].der, &m.certs[signer].der),
            "{child} by {signer}"
        );
    }
    for pod in &m.pods {
        let chain = pod.presented.ders();
        assert!(signed_by(&chain[0], &chain[1]), "{}", pod.full_name());
    }
    // x509-parser's verifier agrees where it supports the algorithm (RSA, P-384, P-256).
    let j = parse(&m.certs["J"].der);
    assert!(
        j.verify_signature(Some(parse(&m.certs["I"].der).public_key()))
            .is_ok()
    );
}

#[test]
fn leaf_is_shaped_like_linkerd_identity_issues_it() {
    let m = mk_material(
        "  A: {cn: root, key: kA, ca: true}\n  I: {cn: identity.linkerd.cluster.local, key: kI, ca: true, signed_by: A}",
        "  trust_roots: [A]\n  nodes: {n1: {offset_s: 0}}\n  pods:\n    - {name: shop/api, node: n1, service_account: api, anchors: [A], leaf: {signed_by: I, not_before: 2025-01-10T11:59:40Z, not_after: 2025-01-11T12:00:20Z}}\n    - {name: shop/web, node: n1, anchors: [A], leaf: {signed_by: I, name: other.shop.serviceaccount.identity.linkerd.cluster.local}}\n    - {name: shop/idle, node: n1, anchors: [A]}",
    );
    let api = m.pod("shop/api").unwrap();
    let name = "api.shop.serviceaccount.identity.linkerd.cluster.local";
    assert_eq!(api.identity_name, name);
    let Presented::Chain(chain) = &api.presented else {
        panic!("no chain")
    };
    assert_eq!(chain[1], m.certs["I"].der);
    let leaf = parse(&chain[0]);
    assert!(!leaf.is_ca());
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(cn, name);
    let mut sans = Vec::new();
    let mut eku = None;
    for ext in leaf.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::DNSName(d) => sans.push(d.to_string()),
                        other => panic!("unexpected SAN {other:?}"),
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(e) => eku = Some((e.server_auth, e.client_auth)),
            _ => {}
        }
    }
    assert_eq!(sans, [name]);
    assert_eq!(eku, Some((true, true)));
    match leaf.public_key().parsed().unwrap() {
        x509_parser::public_key::PublicKey::EC(ec) => assert_eq!(ec.key_size(), 256),
        other => panic!("not EC: {other:?}"),
    }
    assert_eq!(
        leaf.validity().not_before.to_datetime().to_string(),
        "2025-01-10 11:59:40.0 +00:00:00"
    );
    assert_eq!(
        leaf.validity().not_after.to_datetime().to_string(),
        "2025-01-11 12:00:20.0 +00:00:00"
    );
    assert!(api.leaf_key_pkcs8.is_some());

    let web = m.pod("shop/web").unwrap();
    assert_eq!(
        web.identity_name,
        "default.shop.serviceaccount.identity.linkerd.cluster.local"
    );
    let web_leaf = parse(&web.presented.ders()[0]);
    let cn = web_leaf
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(
        cn,
        "other.shop.serviceaccount.identity.linkerd.cluster.local"
    );

    assert_eq!(m.pod("shop/idle").unwrap().presented, Presented::Nothing);
}

#[test]
fn repeated_label_emits_its_pem_again() {
    let m = mk_material(
        "  A: {cn: root, key: kA, ca: true}\n  B: {cn: root2, key: kB, ca: true}",
        "  trust_roots: [A, B, A]\n  linkerd_config_anchors: [B, B]\n  trust_roots_before: [A]\n  trust_roots_changed: 2025-01-10T09:00:00Z",
    );
    let (a, b) = (&m.certs["A"].pem, &m.certs["B"].pem);
    assert_eq!(
        m.trust_roots.as_deref(),
        Some(format!("{a}{b}{a}").as_str())
    );
    assert_eq!(
        m.linkerd_config_anchors.as_deref(),
        Some(format!("{b}{b}").as_str())
    );
    assert_eq!(
        m.trust_roots
            .as_ref()
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        3
    );
    assert_eq!(certificate_ders(m.trust_roots.as_ref().unwrap()).len(), 3);
    assert_eq!(m.trust_roots_before.as_deref(), Some(a.as_str()));
}

#[test]
fn raw_texts_substitute_labels_and_keep_the_rest() {
    let m = mk_material(
        "  A: {cn: root, key: kA, ca: true}\n  I: {cn: issuer, key: kI, ca: true, signed_by: A}\n  R: {raw: \"junk\\n{{A}}\\n\"}\n  E: {raw: \"no pem here\"}",
        "  trust_roots_raw: \"{{A}}\\r\\n\\r\\n\\n\"\n  linkerd_config_anchors: [R, A]\n  nodes: {n1: {offset_s: null, sync: unknown}}\n  pods:\n    - {name: ns/p, node: n1, anchors_raw: \"# anchors\\n{{A}}\", leaf: {raw: \"{{I}}\\n-----BEGIN CERTIFICATE-----\\nnot%2Bbase64\\n-----END CERTIFICATE-----\\n\"}}",
    );
    let a = m.certs["A"].pem.as_str();
    let a_bare = a.strip_suffix('\n').unwrap();
    assert_eq!(
        m.trust_roots.as_deref(),
        Some(format!("{a_bare}\r\n\r\n\n").as_str())
    );
    assert_eq!(m.certs["R"].pem, format!("junk\n{a_bare}\n"));
    assert!(m.certs["R"].raw);
    assert_eq!(m.certs["R"].der, m.certs["A"].der);
    assert!(m.certs["E"].der.is_empty());
    // A raw label is emitted verbatim, then the next label's PEM.
    assert_eq!(
        m.linkerd_config_anchors.as_deref(),
        Some(format!("junk\n{a_bare}\n{a}").as_str())
    );

    let p = m.pod("ns/p").unwrap();
    assert_eq!(p.anchors, SpecAnchors::Pem(format!("# anchors\n{a_bare}")));
    let Presented::Raw { text, ders } = &p.presented else {
        panic!("not raw: {:?}", p.presented)
    };
    assert!(text.contains("not%2Bbase64"));
    assert_eq!(ders, &[m.certs["I"].der.clone()]);
    let blocks = pem_blocks(text);
    assert_eq!(blocks.len(), 2);
    assert!(blocks[1].der.is_none());
    assert_eq!(m.nodes["n1"].offset_s, None);
}

#[test]
fn pem_scanner_tolerates_messy_text() {
    let m = mk_material("  A: {cn: root, key: kA, ca: true}", "  trust_roots: [A]");
    let a = m.certs["A"].pem.trim_end();
    let text = format!("x{a}{a}\r\n-----BEGIN CERTIFICATE-----\nAAAA\n");
    let blocks = pem_blocks(&text);
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[0].der.as_deref(), Some(m.certs["A"].der.as_slice()));
    assert_eq!(blocks[1].der.as_deref(), Some(m.certs["A"].der.as_slice()));
    assert_eq!(blocks[2].der, None, "unterminated block");
    let crlf = a.replace('\n', "\r\n");
    assert_eq!(certificate_ders(&crlf), [m.certs["A"].der.clone()]);
}

#[test]
fn configmap_pods_hold_the_bundle_of_their_start() {
    let m = mk_material(
        "  A: {cn: root, key: kA, ca: true}\n  B: {cn: root, key: kB, ca: true}",
        "  trust_roots: [A, B]\n  trust_roots_before: [A]\n  trust_roots_changed: 2025-01-10T09:00:00Z\n  nodes: {n1: {offset_s: 0}}\n  pods:\n    - {name: linkerd/old, node: n1, anchors_from: configmap, started: 2025-01-10T08:59:59Z}\n    - {name: linkerd/new, node: n1, anchors_from: configmap, started: 2025-01-10T09:00:00Z}\n    - {name: linkerd/unknown, node: n1, anchors_from: configmap}",
    );
    let (a, b) = (&m.certs["A"].pem, &m.certs["B"].pem);
    let old = m.pod("linkerd/old").unwrap();
    assert_eq!(old.anchors, SpecAnchors::ConfigMap);
    assert_eq!(old.effective_anchors(&m), Some(a.as_str()));
    let both = format!("{a}{b}");
    assert_eq!(
        m.pod("linkerd/new").unwrap().effective_anchors(&m),
        Some(both.as_str())
    );
    assert_eq!(
        m.pod("linkerd/unknown").unwrap().effective_anchors(&m),
        Some(both.as_str())
    );
}

#[test]
fn issuer_secret_and_identity_are_built_per_scheme() {
    let certs =
        "  A: {cn: root, key: kA, ca: true}\n  I: {cn: issuer, key: kI, ca: true, signed_by: A}";
    let m = mk_material(
        certs,
        "  trust_roots: [A]\n  issuer_secret: {scheme: linkerd.io/tls, crt: [I]}\n  nodes: {n1: {offset_s: 0.5, sync: synchronised}}\n  identity: {node: n1, issuer: I, anchors: [A, A], reachable: false}",
    );
    let s = m.issuer_secret.as_ref().unwrap();
    assert_eq!(s.scheme, SecretScheme::LinkerdTls);
    assert_eq!(s.data.keys().collect::<Vec<_>>(), ["crt.pem", "key.pem"]);
    assert_eq!(s.data["crt.pem"], m.certs["I"].pem.as_bytes());
    assert!(String::from_utf8_lossy(&s.data["key.pem"]).contains("PRIVATE KEY"));
    let id = m.identity.as_ref().unwrap();
    assert_eq!(id.issuer_der, m.certs["I"].der);
    assert_eq!(
        id.anchors_der,
        [m.certs["A"].der.clone(), m.certs["A"].der.clone()]
    );
    assert!(!id.reachable);
    assert_eq!(m.nodes["n1"].sync, SyncState::Synchronised);

    let m = mk_material(
        certs,
        "  trust_roots: [A]\n  issuer_secret: {scheme: kubernetes.io/tls, crt: [I, A], ca: [A]}",
    );
    let s = m.issuer_secret.as_ref().unwrap();
    assert_eq!(
        s.data.keys().collect::<Vec<_>>(),
        ["ca.crt", "tls.crt", "tls.key"]
    );
    let chain = format!("{}{}", m.certs["I"].pem, m.certs["A"].pem);
    assert_eq!(s.data["tls.crt"], chain.as_bytes());
    assert_eq!(s.data["ca.crt"], m.certs["A"].pem.as_bytes());

    let err = load_err(&mk_case_text(
        certs,
        "  issuer_secret: {scheme: linkerd.io/tls, crt: [I], ca: [A]}",
    ));
    assert!(err.contains("has no ca.crt"), "{err}");
}

#[test]
fn linkerd_block_defaults_and_overrides() {
    let case = mk_case("  A: {cn: root, key: kA, ca: true}", "  trust_roots: [A]");
    assert_eq!(case.linkerd, Linkerd::default());
    assert_eq!(
        case.linkerd.clock_skew_allowance,
        std::time::Duration::from_secs(20)
    );
    assert_eq!(
        case.linkerd.issuance_lifetime,
        std::time::Duration::from_secs(86_400)
    );
    assert_eq!(case.linkerd.namespace, "linkerd");

    let text = mk_case_text("  A: {cn: root, key: kA, ca: true}", "  trust_roots: [A]\n  nodes: {n1: {offset_s: 0}}\n  pods: [{name: app/p, node: n1, anchors: [A]}]").replace(
        "certs:",
        "linkerd: {namespace: l5d, trust_domain: example.org, clock_skew_allowance: 1m 30s, issuance_lifetime: 48h, version: edge-25.1.1}\ncerts:",
    );
    let case = load_str(&text, Path::new("l.yaml")).unwrap().remove(0);
    assert_eq!(
        case.linkerd.clock_skew_allowance,
        std::time::Duration::from_secs(90)
    );
    assert_eq!(
        case.linkerd.issuance_lifetime,
        std::time::Duration::from_secs(48 * 3600)
    );
    let m = materialise(&case).unwrap();
    assert_eq!(
        m.pods[0].identity_name,
        "default.app.serviceaccount.identity.l5d.example.org"
    );

    let err = load_err(&text.replace("48h", "two days"));
    assert!(err.contains("invalid duration `two days`"), "{err}");
}

#[test]
fn expectations_parse_into_typed_values() {
    let case = load_str(
        &mk_case_text(
            "  A: {cn: root, key: kA, ca: true}",
            "  trust_roots: [A]\n  nodes: {n3: {offset_s: 312.0, sync: unsynchronised}}\n  pods:\n    - {name: tools/netshoot, node: n3, anchors: [A]}\n    - {name: shop/api-1, owner: Deployment/api, node: n3, anchors: [A]}",
        )
        .replace(
            "expect: {verdicts: [OK], affected: [], escalate: false}",
            "expect:\n  verdicts: [CLOCK_SKEW(n3), CERT_UNREADABLE(configmap/linkerd-identity-trust-roots)]\n  must_not: [STALE_LEAF(shop/api-1)]\n  affected: [shop/api-1]\n  restart: [shop/Deployment/api]\n  no_restart: [\"linkerd/*/*\", \"tools/*/net*\"]\n  held: [tools/Pod/netshoot]\n  ordered: true\n  escalate: false",
        ),
        Path::new("e.yaml"),
    )
    .unwrap()
    .remove(0);
    let e = &case.expect;
    assert_eq!(e.verdicts[0].name, "CLOCK_SKEW");
    assert_eq!(e.verdicts[0].subject.as_deref(), Some("n3"));
    assert_eq!(
        e.verdicts[1].to_string(),
        "CERT_UNREADABLE(configmap/linkerd-identity-trust-roots)"
    );
    assert_eq!(e.restart[0].kind, "Deployment");
    assert_eq!(e.held[0].to_string(), "tools/Pod/netshoot");
    assert!(e.ordered);
    let w = |s: &str| WorkloadRef::try_from(s.to_string()).unwrap();
    assert!(e.no_restart[0].matches(&w("linkerd/Deployment/linkerd-identity")));
    assert!(!e.no_restart[0].matches(&w("linkerd-viz/Deployment/web")));
    assert!(e.no_restart[1].matches(&w("tools/Pod/netshoot")));
    assert!(!e.no_restart[1].matches(&w("tools/Pod/shell")));
    let all = WorkloadGlob::try_from("*/*/*".to_string()).unwrap();
    assert!(all.matches(&w("a/B/c")));
    assert!(WorkloadGlob::try_from("linkerd/*".to_string()).is_err());
    assert_eq!(case.cluster.pods[0].owner, None);
    assert_eq!(
        case.cluster.pods[1].owner,
        Some(OwnerRef {
            kind: "Deployment".into(),
            name: "api".into()
        })
    );
}

#[test]
fn duplicate_keys_are_rejected() {
    let err = load_err(&mk_case_text(
        "  A: {cn: root, key: kA, ca: true}\n  A: {cn: root2, key: kB, ca: true}",
        "  trust_roots: [A]",
    ));
    assert!(err.contains("duplicate entry with key \"A\""), "{err}");
}
