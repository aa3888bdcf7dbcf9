//! JSON versions of rows of `cases/log-lines.md`, built the way tracing-subscriber's JSON
//! formatter writes them, and JSON of unexpected shapes.

use super::*;

use serde_json::json;

use crate::{Classification, Kind, Peer, classify};

/// A span as tracing-subscriber serialises it: its fields plus `name`.
fn mk_span(name: &str, fields: &[(&str, &str)]) -> Value {
    let mut span: Map<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
        .collect();
    span.insert("name".into(), name.into());
    Value::Object(span)
}

/// An event line as `LINKERD2_PROXY_LOG_FORMAT=json` proxies write it.
fn mk_event(level: &str, target: &str, spans: Vec<Value>, fields: &[(&str, &str)]) -> String {
    let fields: Map<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
        .collect();
    let mut event = json!({
        "timestamp": "[    12.003112s]",
        "level": level,
        "fields": fields,
        "target": target,
        "threadId": "ThreadId(2)",
    });
    if !spans.is_empty() {
        event["spans"] = Value::Array(spans);
    }
    event.to_string()
}

fn mk_identity_spans(endpoint: &str) -> Vec<Value> {
    let identity = "linkerd-identity-headless.linkerd.svc.cluster.local:8080";
    vec![
        mk_span("identity", &[]),
        mk_span("identity", &[("server.addr", identity)]),
        mk_span("controller", &[("addr", identity)]),
        mk_span("endpoint", &[("addr", endpoint)]),
    ]
}

fn mk_peer(addr: &str, ephemeral_port: bool) -> Option<Peer> {
    Some(Peer {
        addr: addr.parse().expect("socket address"),
        ephemeral_port,
    })
}

#[track_caller]
fn assert_json_classified(line: &str, kinds: &[Kind], peer: Option<Peer>) {
    let found = classify(line);
    assert_eq!(found.kinds().collect::<Vec<_>>(), kinds, "kinds of {line}");
    assert_eq!(found.peer(), peer, "peer of {line}");
}

#[test]
fn json_row_01_bad_signature_takes_the_peer_from_the_endpoint_span() {
    let line = mk_event(
        "WARN",
        "linkerd_reconnect",
        mk_identity_spans("10.244.1.111:8080"),
        &[
            ("message", "Failed to connect"),
            (
                "error",
                "endpoint 10.244.1.111:8080: invalid peer certificate: BadSignature",
            ),
            ("error.sources", "[invalid peer certificate: BadSignature]"),
        ],
    );
    assert_json_classified(
        &line,
        &[Kind::BadSignature],
        mk_peer("10.244.1.111:8080", false),
    );
}

#[test]
fn json_row_01_renders_like_the_plain_format() {
    let line = mk_event(
        "WARN",
        "linkerd_reconnect",
        mk_identity_spans("10.244.1.111:8080"),
        &[
            ("message", "Failed to connect"),
            (
                "error",
                "endpoint 10.244.1.111:8080: invalid peer certificate: BadSignature",
            ),
        ],
    );
    assert_eq!(
        render_as_plain(&line).unwrap(),
        "WARN identity:identity{server.addr=linkerd-identity-headless.linkerd.svc.cluster.local:8080}:\
         controller{addr=linkerd-identity-headless.linkerd.svc.cluster.local:8080}:\
         endpoint{addr=10.244.1.111:8080}: linkerd_reconnect: Failed to connect \
         error=endpoint 10.244.1.111:8080: invalid peer certificate: BadSignature"
    );
}

#[test]
fn json_row_03_alert_sent_in_the_message() {
    let line = mk_event(
        "WARN",
        "rustls::conn",
        mk_identity_spans("10.129.192.22:8080"),
        &[("message", "Sending fatal alert BadCertificate")],
    );
    let alert = crate::AlertName::new("BadCertificate").unwrap();
    assert_json_classified(
        &line,
        &[Kind::AlertSent(alert)],
        mk_peer("10.129.192.22:8080", false),
    );
}

#[test]
fn json_row_04_expired_takes_the_peer_from_the_proxy_span() {
    let line = mk_event(
        "WARN",
        "linkerd_reconnect",
        vec![
            mk_span("outbound", &[]),
            mk_span("proxy", &[("addr", "10.42.0.17:8080")]),
        ],
        &[
            ("message", "Failed to connect"),
            (
                "error",
                "endpoint 10.42.0.17:8080: invalid peer certificate: certificate expired: \
                 verification time 1761231823 (UNIX), but certificate is not valid after \
                 1761177843 (53980 seconds ago)",
            ),
        ],
    );
    assert_json_classified(&line, &[Kind::Expired], mk_peer("10.42.0.17:8080", false));
}

#[test]
fn json_peer_comes_from_the_error_text_without_spans() {
    let line = mk_event(
        "WARN",
        "linkerd_reconnect",
        Vec::new(),
        &[
            ("message", "Failed to connect"),
            (
                "error",
                "endpoint 10.42.3.9:8080: invalid peer certificate: NotValidYet",
            ),
        ],
    );
    assert_json_classified(
        &line,
        &[Kind::NotValidYet],
        mk_peer("10.42.3.9:8080", false),
    );
}

#[test]
fn json_row_05_local_cert_rejected_with_its_cause() {
    let line = mk_event(
        "ERROR",
        "linkerd2_proxy_identity::certify",
        vec![mk_span("daemon", &[]), mk_span("identity", &[])],
        &[(
            "message",
            "Received invalid ceritficate: invalid certificate: CertNotValidYet",
        )],
    );
    assert_json_classified(&line, &[Kind::NotValidYet, Kind::LocalCertRejected], None);
}

#[test]
fn json_row_09_alert_received_from_an_ephemeral_peer() {
    let line = mk_event(
        "INFO",
        "linkerd2_app_core::serve",
        vec![
            mk_span("daemon", &[]),
            mk_span("admin", &[("listen.addr", "0.0.0.0:4191")]),
            mk_span(
                "accept",
                &[
                    ("peer.addr", "10.1.2.3:51234"),
                    ("target.addr", "10.1.2.4:4191"),
                ],
            ),
        ],
        &[
            ("message", "Connection closed"),
            ("error", "received fatal alert: BadCertificate"),
        ],
    );
    let alert = crate::AlertName::new("BadCertificate").unwrap();
    assert_json_classified(
        &line,
        &[Kind::AlertReceived(alert)],
        mk_peer("10.1.2.3:51234", true),
    );
}

#[test]
fn json_row_10_fail_fast_towards_identity_is_unreachable() {
    let line = mk_event(
        "WARN",
        "linkerd_proxy_identity_client::certify",
        Vec::new(),
        &[
            ("message", "Failed to obtain identity"),
            (
                "error",
                "status: Unknown, message: \"controller linkerd-identity-headless.linkerd.svc.\
                 cluster.local:8080: service in fail-fast\"",
            ),
        ],
    );
    assert_json_classified(&line, &[Kind::IdentityUnreachable], None);
}

#[test]
fn json_row_11_identity_context_comes_from_the_spans() {
    let line = mk_event(
        "WARN",
        "linkerd_app_core::control",
        vec![mk_span("daemon", &[]), mk_span("identity", &[])],
        &[
            ("message", "Failed to resolve control-plane component"),
            (
                "error",
                "no record found for name: linkerd-identity-headless.linkerd.svc.cluster.local. \
                 type: SRV class: IN",
            ),
        ],
    );
    assert_json_classified(&line, &[Kind::IdentityUnreachable], None);
}

#[test]
fn json_rows_13_17_18_ignore_and_waiting() {
    let probe = mk_event(
        "INFO",
        "linkerd_app_core::serve",
        vec![mk_span("inbound", &[])],
        &[
            ("message", "Connection closed"),
            ("error", "direct connections must be mutually authenticated"),
        ],
    );
    assert_json_classified(&probe, &[Kind::Ignore], None);
    let certified = mk_event(
        "INFO",
        "linkerd_app",
        Vec::new(),
        &[
            ("message", "Certified identity"),
            (
                "id",
                "web.emojivoto.serviceaccount.identity.linkerd.cluster.local",
            ),
        ],
    );
    assert_json_classified(&certified, &[Kind::Ignore], None);
    let waiting = mk_event(
        "WARN",
        "linkerd_app",
        Vec::new(),
        &[("message", "Waiting for identity to be initialized...")],
    );
    assert_json_classified(&waiting, &[Kind::WaitingForIdentity], None);
}

#[test]
fn json_current_span_is_used_when_there_is_no_span_list() {
    let line = json!({
        "level": "WARN",
        "fields": {"message": "Failed to connect", "error": "invalid peer certificate: UnknownIssuer"},
        "target": "linkerd_reconnect",
        "span": {"name": "endpoint", "addr": "10.0.0.9:8080"},
    })
    .to_string();
    assert_json_classified(
        &line,
        &[Kind::UnknownIssuer],
        mk_peer("10.0.0.9:8080", false),
    );
}

#[test]
fn json_with_wrong_types_falls_back_to_plain_text() {
    for line in [
        r#"{"fields": 3, "target": "x", "note": "invalid peer certificate: BadSignature"}"#,
        r#"{"fields": "invalid peer certificate: BadSignature"}"#,
        r#"{"fields": null, "message": "invalid peer certificate: BadSignature"}"#,
        r#"{"message": "invalid peer certificate: BadSignature"}"#,
        r#"["invalid peer certificate: BadSignature"]"#,
        r#"{"fields": {"message": "invalid peer certificate: BadSignature"}} trailing"#,
        r#"{"fields": {"message": "invalid peer certificate: BadSignature""#,
    ] {
        assert_eq!(render_as_plain(line), None, "{line}");
        assert!(classify(line).contains(Kind::BadSignature), "{line}");
    }
}

#[test]
fn json_fields_and_spans_of_unexpected_types_do_not_panic() {
    let line = json!({
        "level": 7,
        "target": ["not", "a", "string"],
        "fields": {"message": 42, "error": {"nested": "invalid peer certificate: UnknownIssuer"}},
        "spans": [1, "two", null, {"name": 5, "addr": "10.0.0.1:1"}, {"addr": 8080}],
    })
    .to_string();
    assert_eq!(
        render_as_plain(&line).unwrap(),
        "span{addr=10.0.0.1:1}:span{addr=8080}: 42 \
         error={\"nested\":\"invalid peer certificate: UnknownIssuer\"}"
    );
    assert!(classify(&line).contains(Kind::UnknownIssuer));

    let spans_not_a_list = json!({
        "fields": {"message": "invalid peer certificate: Expired"},
        "spans": {"name": "endpoint"},
    })
    .to_string();
    assert!(classify(&spans_not_a_list).contains(Kind::Expired));
}

#[test]
fn deeply_nested_json_is_rejected_not_overflowed() {
    let line = format!(
        "{{\"fields\":{{\"message\":{}\"invalid peer certificate: Expired\"{}}}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(render_as_plain(&line), None);
    assert!(classify(&line).contains(Kind::Expired));
    let object = format!(
        "{{\"fields\":{}\"alid\"{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    assert_eq!(classify(&object), Classification::NONE);
}
