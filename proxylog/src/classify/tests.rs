//! The rows of `cases/log-lines.md`, one test each with the message embedded, a test that reads
//! the table itself (so that a row added there is checked too), the wording variations and
//! corner cases of each rule, and properties on arbitrary input.

use super::*;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};

fn mk_alert(name: &str) -> AlertName {
    AlertName::new(name).expect("valid alert name")
}

fn mk_fixed_peer(addr: &str) -> Peer {
    Peer {
        addr: addr.parse().expect("socket address"),
        ephemeral_port: false,
    }
}

fn mk_ephemeral_peer(addr: &str) -> Peer {
    Peer {
        ephemeral_port: true,
        ..mk_fixed_peer(addr)
    }
}

/// Deterministic proptest settings for CI.
fn mk_proptest_config(seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[track_caller]
fn assert_classified(message: &str, kinds: &[Kind], peer: Option<Peer>) {
    let found = classify(message);
    let mut expected = kinds.to_vec();
    expected.sort();
    assert_eq!(
        found.kinds().collect::<Vec<_>>(),
        expected,
        "kinds of {message}"
    );
    assert_eq!(found.peer(), peer, "peer of {message}");
}

// ---------------------------------------------------------------------------------------------
// The rows of cases/log-lines.md

/// Row 1 (runbook, 2025).
#[test]
fn row_01_bad_signature_from_identity_endpoint() {
    assert_classified(
        r#"[  12.003112s]  WARN ThreadId(02) identity:identity{server.addr=linkerd-identity-headless.linkerd.svc.cluster.local:8080}:controller{addr=linkerd-identity-headless.linkerd.svc.cluster.local:8080}:endpoint{addr=10.244.1.111:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.244.1.111:8080: invalid peer certificate: BadSignature error.sources=[invalid peer certificate: BadSignature]"#,
        &[Kind::BadSignature],
        Some(mk_fixed_peer("10.244.1.111:8080")),
    );
}

/// Row 2 (linkerd2#11156, stable-2.13).
#[test]
fn row_02_unknown_issuer_in_rustls_0_20_contents_wording() {
    assert_classified(
        r#"[     2.287394s]  WARN ThreadId(02) identity:controller{addr=linkerd-identity-headless.linkerd.svc.cluster.local:8080}:endpoint{addr=10.129.192.22:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.129.192.22:8080: invalid peer certificate contents: invalid peer certificate: UnknownIssuer error.sources=[invalid peer certificate contents: invalid peer certificate: UnknownIssuer]"#,
        &[Kind::UnknownIssuer],
        Some(mk_fixed_peer("10.129.192.22:8080")),
    );
}

/// Row 3 (linkerd2#11156).
#[test]
fn row_03_alert_sent_to_identity_endpoint() {
    assert_classified(
        r#"[     2.287294s]  WARN ThreadId(02) identity:controller{addr=linkerd-identity-headless.linkerd.svc.cluster.local:8080}:endpoint{addr=10.129.192.22:8080}: rustls::conn: Sending fatal alert BadCertificate"#,
        &[Kind::AlertSent(mk_alert("BadCertificate"))],
        Some(mk_fixed_peer("10.129.192.22:8080")),
    );
}

/// Row 4 (runbook, 2025 (rustls 0.23 wording)).
#[test]
fn row_04_expired_in_rustls_0_23_wording_names_the_outbound_endpoint() {
    assert_classified(
        r#"[  95.201554s]  WARN ThreadId(01) outbound:proxy{addr=10.42.0.17:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.42.0.17:8080: invalid peer certificate: certificate expired: verification time 1761231823 (UNIX), but certificate is not valid after 1761177843 (53980 seconds ago)"#,
        &[Kind::Expired],
        Some(mk_fixed_peer("10.42.0.17:8080")),
    );
}

/// Row 5 (linkerd2#6427, 2.9.5 (the typo is real)).
#[test]
fn row_05_local_cert_rejected_not_valid_yet_with_the_ceritficate_typo() {
    assert_classified(
        r#"ERROR ThreadId(02) daemon:identity: linkerd2_proxy_identity::certify: Received invalid ceritficate: invalid certificate: CertNotValidYet"#,
        &[Kind::LocalCertRejected, Kind::NotValidYet],
        None,
    );
}

/// Row 6 (linkerd2#3777).
#[test]
fn row_06_local_cert_rejected_unknown_issuer_in_the_old_err_format() {
    assert_classified(
        r#"ERR! [   170.832625s] linkerd2_proxy_identity::certify Received invalid ceritficate: invalid certificate: UnknownIssuer"#,
        &[Kind::LocalCertRejected, Kind::UnknownIssuer],
        None,
    );
}

/// Row 7 (linkerd2#6428, 2.10.2).
#[test]
fn row_07_local_cert_rejected_unknown_issuer_without_timestamp() {
    assert_classified(
        r#"daemon:identity: linkerd_proxy_identity::certify: Received invalid certificate: invalid certificate: UnknownIssuer"#,
        &[Kind::LocalCertRejected, Kind::UnknownIssuer],
        None,
    );
}

/// Row 8 (linkerd2#6427, #5350).
#[test]
fn row_08_alert_sent_without_a_peer() {
    assert_classified(
        r#"WARN ThreadId(01) dst: rustls::session: Sending fatal alert BadCertificate"#,
        &[Kind::AlertSent(mk_alert("BadCertificate"))],
        None,
    );
}

/// Row 9 (linkerd2#5350 (addresses replaced)).
#[test]
fn row_09_alert_received_names_an_ephemeral_inbound_peer() {
    assert_classified(
        r#"[253013.089415s]  INFO ThreadId(02) daemon:admin{listen.addr=0.0.0.0:4191}:accept{peer.addr=10.1.2.3:51234 target.addr=10.1.2.4:4191}: linkerd2_app_core::serve: Connection closed error=received fatal alert: BadCertificate"#,
        &[Kind::AlertReceived(mk_alert("BadCertificate"))],
        Some(mk_ephemeral_peer("10.1.2.3:51234")),
    );
}

/// Row 10 (linkerd2#10830).
#[test]
fn row_10_fail_fast_beats_the_generic_identity_failure() {
    assert_classified(
        r#"linkerd_proxy_identity_client::certify: Failed to obtain identity error=status: Unknown, message: "controller linkerd-identity-headless.linkerd.svc.cluster.local:8080: service in fail-fast""#,
        &[Kind::IdentityUnreachable],
        None,
    );
}

/// Row 11 (linkerd2#6153).
#[test]
fn row_11_dns_failure_towards_identity_is_unreachable() {
    assert_classified(
        r#"WARN ThreadId(01) daemon:identity: linkerd_app_core::control: Failed to resolve control-plane component error=no record found for name: linkerd-identity-headless.linkerd.svc.cluster.local. type: SRV class: IN"#,
        &[Kind::IdentityUnreachable],
        None,
    );
}

/// Row 12 (linkerd2#4165).
#[test]
fn row_12_dispatch_timeout_towards_identity_is_unreachable() {
    assert_classified(
        r#"ERROR daemon:identity: linkerd2_proxy_identity::certify: Failed to certify identity: grpc-status: Unknown, grpc-message: "the request could not be dispatched in a timely fashion""#,
        &[Kind::IdentityUnreachable],
        None,
    );
}

/// Row 13 (linkerd2#7613 (what an unauthenticated probe causes)).
#[test]
fn row_13_unauthenticated_direct_connection_is_ignored() {
    assert_classified(
        r#"[   840.027889s]  INFO ThreadId(01) inbound: linkerd_app_core::serve: Connection closed error=direct connections must be mutually authenticated"#,
        &[Kind::Ignore],
        None,
    );
}

/// Row 14 (rustls 0.23 format string).
#[test]
fn row_14_not_valid_yet_in_rustls_0_23_wording() {
    assert_classified(
        r#"[    31.775106s]  WARN ThreadId(01) outbound:proxy{addr=10.42.3.9:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.42.3.9:8080: invalid peer certificate: certificate not valid yet: verification time 1761231823 (UNIX), but certificate is not valid before 1761231853 (30 seconds in future)"#,
        &[Kind::NotValidYet],
        Some(mk_fixed_peer("10.42.3.9:8080")),
    );
}

/// Row 15 (rustls 0.21 wording).
#[test]
fn row_15_not_valid_yet_in_rustls_0_21_wording() {
    assert_classified(
        r#"[    44.120031s]  WARN ThreadId(01) outbound:proxy{addr=10.42.3.9:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.42.3.9:8080: invalid peer certificate: NotValidYet"#,
        &[Kind::NotValidYet],
        Some(mk_fixed_peer("10.42.3.9:8080")),
    );
}

/// Row 16 (rustls 0.21 wording).
#[test]
fn row_16_expired_in_rustls_0_21_wording() {
    assert_classified(
        r#"[    44.120031s]  WARN ThreadId(01) outbound:proxy{addr=10.42.3.9:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.42.3.9:8080: invalid peer certificate: Expired"#,
        &[Kind::Expired],
        Some(mk_fixed_peer("10.42.3.9:8080")),
    );
}

/// Row 17 (proxy start-up).
#[test]
fn row_17_certified_identity_is_ignored() {
    assert_classified(
        r#"[     5.001001s]  INFO ThreadId(01) linkerd_app: Certified identity id=web.emojivoto.serviceaccount.identity.linkerd.cluster.local"#,
        &[Kind::Ignore],
        None,
    );
}

/// Row 18 (proxy start-up).
#[test]
fn row_18_waiting_for_identity_is_its_own_kind() {
    assert_classified(
        r#"[    15.000512s]  WARN ThreadId(01) linkerd_app: Waiting for identity to be initialized..."#,
        &[Kind::WaitingForIdentity],
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// The table itself

/// One row of the table in cases/log-lines.md.
struct TableRow {
    number: u32,
    line: String,
    kinds: Vec<Kind>,
    peer: Option<SocketAddr>,
}

/// Parses `| # | `line` | kind | peer | seen in |` rows. A row that starts like one but does not
/// parse fails the test rather than being skipped.
fn parse_table(text: &str) -> Vec<TableRow> {
    let mut rows = Vec::new();
    for row in text.lines() {
        let Some(rest) = row.strip_prefix("| ") else {
            continue;
        };
        let Some((number, rest)) = rest.split_once(" | ") else {
            continue;
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        let rest = rest
            .strip_prefix('`')
            .unwrap_or_else(|| panic!("row {number}: line is not in backticks"));
        let (line, rest) = rest
            .split_once("` | ")
            .unwrap_or_else(|| panic!("row {number}: line cell is not closed"));
        let cells: Vec<&str> = rest.split(" | ").collect();
        let [kind, peer, ..] = cells[..] else {
            panic!("row {number}: missing kind or peer cell");
        };
        let kinds = kind
            .split(" + ")
            .map(|name| {
                let (name, remark) = name.split_once(" (").unwrap_or((name, ""));
                // Row 18: the caller escalates a repeated wait; one line is its own kind.
                if name == "IDENTITY_UNREACHABLE" && remark.contains("repeats") {
                    return Kind::WaitingForIdentity;
                }
                name.parse()
                    .unwrap_or_else(|_| panic!("row {number}: unknown kind {name:?}"))
            })
            .collect();
        let peer = match peer.trim() {
            "—" => None,
            addr => Some(
                addr.parse()
                    .unwrap_or_else(|_| panic!("row {number}: bad peer {addr:?}")),
            ),
        };
        rows.push(TableRow {
            number,
            line: line.to_string(),
            kinds,
            peer,
        });
    }
    rows
}

#[test]
fn every_row_of_the_normative_table_is_classified_as_it_says() {
    let path = std::env::var_os("ANCHORWATCH_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("cases/log-lines.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set ANCHORWATCH_SHARED)", path.display()));
    let rows = parse_table(&text);
    assert!(
        rows.len() >= 18,
        "only {} rows found in {}",
        rows.len(),
        path.display()
    );
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.number as usize, i + 1, "rows are numbered in order");
        let found = classify(&row.line);
        let mut expected = row.kinds.clone();
        expected.sort();
        assert_eq!(
            found.kinds().collect::<Vec<_>>(),
            expected,
            "kinds of row {}",
            row.number
        );
        assert_eq!(
            found.peer().map(|p| p.addr),
            row.peer,
            "peer of row {}",
            row.number
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Rule 1 and 2: combinations and precedence

#[test]
fn unrelated_lines_have_no_kind_and_no_peer() {
    for line in [
        "",
        "[     0.002104s]  INFO ThreadId(01) linkerd2_proxy: release 2.14.1 (3ac3f84) by linkerd",
        "[     0.100000s]  INFO ThreadId(01) outbound:proxy{addr=10.42.0.17:8080}: \
         linkerd_app_core::serve: Connection closed error=connection reset by peer",
        "\u{0}\u{1}binary\u{fffd}",
    ] {
        assert_eq!(classify(line), Classification::NONE, "{line:?}");
    }
}

#[test]
fn a_generic_identity_failure_with_an_unknown_cause_is_local_cert_rejected() {
    assert_classified(
        "WARN ThreadId(01) daemon:identity: linkerd_app: Failed to obtain identity \
         error=status: Internal, message: \"issuer failed\"",
        &[Kind::LocalCertRejected],
        None,
    );
}

#[test]
fn a_generic_identity_failure_with_a_verification_cause_carries_both_kinds() {
    assert_classified(
        "linkerd_proxy_identity_client::certify: Failed to obtain identity \
         error=invalid peer certificate: BadSignature",
        &[Kind::LocalCertRejected, Kind::BadSignature],
        None,
    );
}

#[test]
fn a_verification_kind_beats_an_unreachability_phrase() {
    assert_classified(
        "identity:controller{addr=linkerd-identity-headless.linkerd.svc.cluster.local:8080}:\
         endpoint{addr=10.244.1.111:8080}: linkerd_reconnect: Failed to connect \
         error=endpoint 10.244.1.111:8080: request timed out: invalid peer certificate: UnknownIssuer",
        &[Kind::UnknownIssuer],
        Some(mk_fixed_peer("10.244.1.111:8080")),
    );
}

#[test]
fn connection_refused_by_the_identity_endpoint_is_unreachable() {
    assert_classified(
        "[     1.0s]  WARN ThreadId(02) identity:identity{server.addr=linkerd-identity-headless.\
         linkerd.svc.cluster.local:8080}:controller{addr=linkerd-identity-headless.linkerd.svc.\
         cluster.local:8080}:endpoint{addr=10.244.1.111:8080}: linkerd_reconnect: Failed to connect \
         error=Connection refused (os error 111)",
        &[Kind::IdentityUnreachable],
        Some(mk_fixed_peer("10.244.1.111:8080")),
    );
    assert_classified(
        "WARN ThreadId(01) daemon:identity: linkerd_app_core::control: Failed to connect \
         error=connect timed out after 1s",
        &[Kind::IdentityUnreachable],
        None,
    );
}

#[test]
fn unreachability_of_an_ordinary_service_says_nothing_about_identity() {
    for line in [
        "[ 5.0s]  WARN ThreadId(01) outbound:proxy{addr=10.42.0.17:8080}: linkerd_reconnect: \
         Failed to connect error=Connection refused (os error 111)",
        "[ 5.0s]  INFO ThreadId(01) outbound:proxy{addr=10.42.0.17:8080}:\
         service{ns=shop name=api port=8080}: linkerd_app_outbound: service in fail-fast \
         server.id=api.shop.serviceaccount.identity.linkerd.cluster.local",
    ] {
        assert_eq!(classify(line), Classification::NONE, "{line}");
    }
}

#[test]
fn waiting_and_ignore_yield_to_any_other_kind() {
    assert_classified(
        "linkerd_app: Waiting for identity to be initialized... \
         error=invalid peer certificate: UnknownIssuer",
        &[Kind::UnknownIssuer],
        None,
    );
    assert_classified(
        "inbound: Connection closed error=direct connections must be mutually authenticated: \
         received fatal alert: CertificateRequired",
        &[Kind::AlertReceived(mk_alert("CertificateRequired"))],
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// Rule 4: wording

#[test]
fn webpki_and_rustls_debug_forms_of_the_error_names_match() {
    let cases = [
        ("invalid certificate: CertExpired", Kind::Expired),
        (
            "error=InvalidCertificate(ExpiredContext { time: 1, not_after: 0 })",
            Kind::Expired,
        ),
        (
            "invalid certificate: CertNotValidForName",
            Kind::NotValidForName,
        ),
        (
            "invalid peer certificate: certificate not valid for name \"web\"; certificate is only \
             valid for DnsName(\"api\")",
            Kind::NotValidForName,
        ),
        (
            "invalid peer certificate: NotValidForName",
            Kind::NotValidForName,
        ),
        (
            "invalid certificate: InvalidSignatureForPublicKey",
            Kind::BadSignature,
        ),
        (
            "InvalidCertificate(NotValidYetContext { time: 1, not_before: 2 })",
            Kind::NotValidYet,
        ),
    ];
    for (line, kind) in cases {
        assert_classified(line, &[kind], None);
    }
}

#[test]
fn error_names_inside_longer_words_do_not_match() {
    for line in [
        "invalid peer certificate: ExpiredRevocationList",
        "invalid peer certificate: NotExpiredYet",
        "invalid peer certificate: MyBadSignatures",
    ] {
        assert_eq!(classify(line), Classification::NONE, "{line}");
    }
}

#[test]
fn alert_names_are_taken_as_printed() {
    assert_classified(
        "Connection closed error=received fatal alert: AlertDescription(0x2a)",
        &[Kind::AlertReceived(mk_alert("AlertDescription(0x2a)"))],
        None,
    );
    assert_classified(
        "rustls::conn: Sending fatal alert UnknownCA",
        &[Kind::AlertSent(mk_alert("UnknownCA"))],
        None,
    );
    // Warning alerts are not rejections; a fatal alert with no name is nothing.
    assert_eq!(
        classify("Sending warning alert CloseNotify"),
        Classification::NONE
    );
    assert_eq!(classify("received fatal alert: "), Classification::NONE);
}

// ---------------------------------------------------------------------------------------------
// Rule 3: peers

#[test]
fn endpoint_span_beats_proxy_span_and_error_text() {
    assert_classified(
        "outbound:proxy{addr=10.0.0.1:80}:endpoint{addr=10.0.0.2:8080}: Failed to connect \
         error=endpoint 10.0.0.3:8080: invalid peer certificate: UnknownIssuer",
        &[Kind::UnknownIssuer],
        Some(mk_fixed_peer("10.0.0.2:8080")),
    );
}

#[test]
fn error_text_names_the_peer_when_no_span_does() {
    assert_classified(
        "linkerd_reconnect: Failed to connect error=endpoint 10.0.0.3:8080: invalid peer \
         certificate: UnknownIssuer",
        &[Kind::UnknownIssuer],
        Some(mk_fixed_peer("10.0.0.3:8080")),
    );
}

#[test]
fn unspecified_addresses_are_no_peer_and_the_next_source_is_used() {
    assert_classified(
        "outbound:proxy{addr=0.0.0.0:0}: Failed to connect error=endpoint 10.0.0.3:8080: \
         invalid peer certificate: Expired",
        &[Kind::Expired],
        Some(mk_fixed_peer("10.0.0.3:8080")),
    );
    assert_classified(
        "accept{peer.addr=0.0.0.0:0}: Connection closed error=received fatal alert: UnknownCA",
        &[Kind::AlertReceived(mk_alert("UnknownCA"))],
        None,
    );
}

#[test]
fn span_fields_are_matched_by_name_not_by_suffix() {
    // `server.addr` and `listen.addr` are not `addr`; `myproxy` is not `proxy`.
    assert_classified(
        "identity{server.addr=10.9.9.9:8080}:myproxy{addr=10.8.8.8:80}:admin{listen.addr=\
         10.7.7.7:4191}: invalid peer certificate: UnknownIssuer",
        &[Kind::UnknownIssuer],
        None,
    );
    assert_classified(
        "endpoint{tls=true addr=10.0.0.5:8080}: invalid peer certificate: UnknownIssuer",
        &[Kind::UnknownIssuer],
        Some(mk_fixed_peer("10.0.0.5:8080")),
    );
}

#[test]
fn ipv6_peers_are_parsed() {
    assert_classified(
        "outbound:proxy{addr=[fd00::17]:8080}: Failed to connect error=endpoint [fd00::17]:8080: \
         invalid peer certificate: BadSignature",
        &[Kind::BadSignature],
        Some(mk_fixed_peer("[fd00::17]:8080")),
    );
}

#[test]
fn newer_client_addr_is_an_ephemeral_peer_too() {
    assert_classified(
        "inbound:accept{client.addr=10.1.2.3:40000 server.addr=10.1.2.4:8080}: \
         Connection closed error=received fatal alert: BadCertificate",
        &[Kind::AlertReceived(mk_alert("BadCertificate"))],
        Some(mk_ephemeral_peer("10.1.2.3:40000")),
    );
}

#[test]
fn classify_record_classifies_the_message() {
    let line = b"2025-10-23T15:03:43Z stderr F WARN outbound:proxy{addr=10.42.3.9:8080}: \
        invalid peer certificate: NotValidYet";
    let record = crate::CriFramer::default()
        .push_line(line)
        .unwrap()
        .unwrap();
    let found = classify_record(&record);
    assert!(found.contains(Kind::NotValidYet));
    assert_eq!(found.peer(), Some(mk_fixed_peer("10.42.3.9:8080")));
}

// ---------------------------------------------------------------------------------------------
// The pre-check

#[test]
fn every_phrase_a_rule_looks_for_passes_the_pre_check() {
    let mut phrases: Vec<&str> = VERIFICATIONS
        .iter()
        .flat_map(|v| v.tokens.iter().chain(v.phrases))
        .copied()
        .collect();
    phrases.extend(GENERIC_IDENTITY);
    phrases.extend(IGNORED);
    phrases.extend([
        "Waiting for identity",
        "Sending fatal alert",
        "received fatal alert",
    ]);
    for phrase in phrases {
        assert!(worth_a_look(phrase), "{phrase}");
    }
    // Unreachability phrases count only next to `identity`, which is an anchor.
    for phrase in UNREACHABLE {
        assert!(!about_identity(phrase), "{phrase}");
    }
}

#[test]
fn classification_accessors_agree() {
    let found = classify(
        "ERROR daemon:identity: linkerd2_proxy_identity::certify: Received invalid ceritficate: \
         invalid certificate: CertNotValidYet",
    );
    assert!(!found.is_empty());
    assert!(found.contains(Kind::LocalCertRejected));
    assert!(found.contains(Kind::NotValidYet));
    assert!(!found.contains(Kind::Expired));
    assert!(Classification::NONE.is_empty());
    assert_eq!(Classification::NONE.kinds().count(), 0);
    assert_eq!(
        mk_ephemeral_peer("10.1.2.3:51234").to_string(),
        "10.1.2.3:51234"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Pieces of real lines, so that random concatenations reach the deep paths.
const FRAGMENTS: [&str; 24] = [
    "endpoint{addr=",
    "proxy{addr=",
    "error=endpoint ",
    "peer.addr=",
    "client.addr=",
    "10.1.2.3:8080",
    "[fd00::1]:80",
    "0.0.0.0:0",
    "}",
    ": ",
    " ",
    "invalid peer certificate: ",
    "BadSignature",
    "CertExpired",
    "not valid yet",
    "Context",
    "daemon:identity: ",
    "service in fail-fast",
    "Failed to obtain identity",
    "Received invalid ceritficate",
    "Sending fatal alert ",
    "received fatal alert: ",
    "AlertDescription(0x",
    "Waiting for identity",
];

fn arb_message() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,300}",
        proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(&FRAGMENTS[..]).prop_map(str::to_string),
                "\\PC{0,6}",
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(mk_proptest_config(0x00C1_A551))]

    #[test]
    fn classify_never_panics_on_arbitrary_strings(message in arb_message()) {
        let found = classify(&message);
        prop_assert_eq!(found.is_empty(), found.kinds().next().is_none());
        if found.is_empty() {
            prop_assert_eq!(found.peer(), None);
        }
        if !worth_a_look(&message) {
            prop_assert_eq!(found, Classification::NONE);
        }
    }

    #[test]
    fn kinds_are_unique_and_parse_back(message in arb_message()) {
        let kinds: Vec<Kind> = classify(&message).kinds().collect();
        let mut sorted = kinds.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(&sorted, &kinds);
        for kind in kinds {
            prop_assert_eq!(kind.to_string().parse::<Kind>(), Ok(kind));
        }
    }
}
