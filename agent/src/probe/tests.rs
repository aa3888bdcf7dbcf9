//! Tests of the probe against small local servers on 127.0.0.1 that behave like the parts of a
//! Linkerd proxy admin port that matter (SNI check, access_denied, TLS 1.3 only, hangs), and of
//! the metrics parser on each generation of metric names.

use super::metrics::expiry_from_body;
use super::*;

use std::time::Instant as StdInstant;

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::LazyConfigAcceptor;

const NAME: &str = "web.emojivoto.serviceaccount.identity.linkerd.cluster.local";
const TIMEOUT: Duration = Duration::from_secs(5);
/// The raw plaintext record of a fatal access_denied alert.
const ACCESS_DENIED_RECORD: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31];

// ---------------------------------------------------------------------------------------------
// Certificates

/// A root → issuer → leaf chain as Linkerd builds it; the proxy presents `[leaf, issuer]`.
struct Pki {
    chain: Vec<Vec<u8>>,
    leaf_key: Vec<u8>,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn pki_with(leaf_name: &str, expired: bool) -> Pki {
    let root = CertifiedIssuer::self_signed(
        ca_params("root.linkerd.cluster.local"),
        KeyPair::generate().unwrap(),
    )
    .unwrap();
    let issuer = CertifiedIssuer::signed_by(
        ca_params("identity.linkerd.cluster.local"),
        KeyPair::generate().unwrap(),
        &root,
    )
    .unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![leaf_name.to_owned()]).unwrap();
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, leaf_name);
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    if expired {
        leaf.not_before = rcgen::date_time_ymd(2000, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2000, 1, 2);
    }
    let leaf = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        chain: vec![leaf.der().to_vec(), issuer.der().to_vec()],
        leaf_key: leaf_key.serialize_der(),
    }
}

fn pki() -> Pki {
    pki_with(NAME, false)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn der_chain(chain: &[Vec<u8>]) -> Vec<CertificateDer<'static>> {
    chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect()
}

fn key_der(pkcs8: &[u8]) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec()))
}

fn tls13_server(pki: &Pki) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(der_chain(&pki.chain), key_der(&pki.leaf_key))
        .unwrap();
    Arc::new(config)
}

// ---------------------------------------------------------------------------------------------
// Local servers

/// What the TLS test server saw of one connection.
#[derive(Debug, Clone)]
struct Seen {
    sni: Option<String>,
    alpn: Vec<Vec<u8>>,
    /// The client ended the connection with close_notify.
    close_notify: bool,
}

/// How the TLS test server answers a ClientHello.
#[derive(Clone)]
enum Answer {
    /// Handshake with this config when the SNI is `NAME`, otherwise drop the connection.
    Handshake(Arc<ServerConfig>),
    /// Handshake with this config, whatever the SNI.
    AnyName(Arc<ServerConfig>),
    /// Write these raw bytes, then close.
    Raw(Vec<u8>),
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Serves every connection with `answer`, reporting each to the returned channel.
async fn tls_server(answer: Answer) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (listener, addr) = listener().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (answer, tx) = (answer.clone(), tx.clone());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(TIMEOUT, serve_one(tcp, answer, tx)).await;
            });
        }
    });
    (addr, rx)
}

async fn serve_one(tcp: TcpStream, answer: Answer, tx: mpsc::UnboundedSender<Seen>) {
    let Ok(start) = LazyConfigAcceptor::new(Acceptor::default(), tcp).await else {
        return;
    };
    let hello = start.client_hello();
    let mut seen = Seen {
        sni: hello.server_name().map(str::to_owned),
        alpn: hello
            .alpn()
            .map(|a| a.map(<[u8]>::to_vec).collect())
            .unwrap_or_default(),
        close_notify: false,
    };
    let config = match answer {
        Answer::Handshake(config) if seen.sni.as_deref() == Some(NAME) => config,
        Answer::Handshake(_) => {
            // Like a real proxy on a wrong SNI: no ServerHello, just close.
            let _ = tx.send(seen);
            return;
        }
        Answer::AnyName(config) => config,
        Answer::Raw(bytes) => {
            let mut io = start.io;
            let _ = io.write_all(&bytes).await;
            let _ = io.shutdown().await;
            let _ = tx.send(seen);
            return;
        }
    };
    if let Ok(mut tls) = start.into_stream(config).await {
        let mut buf = [0u8; 64];
        // rustls reports Ok(0) only for a close_notify; a bare FIN is an UnexpectedEof error.
        seen.close_notify = matches!(tls.read(&mut buf).await, Ok(0));
    }
    let _ = tx.send(seen);
}

/// Accepts connections and never answers; holds them until the test ends.
async fn silent_server() -> SocketAddr {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    addr
}

/// An address with nothing listening on it.
async fn closed_port() -> SocketAddr {
    let (listener, addr) = listener().await;
    drop(listener);
    addr
}

/// Answers every request with `status` and `body` (HTTP/1.1, then closes).
async fn http_server(status: u16, body: Vec<u8>) -> SocketAddr {
    let (listener, addr) = listener().await;
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let body = Arc::clone(&body);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.write_all(&body).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

fn prober() -> Prober {
    Prober::new(TIMEOUT).unwrap()
}

// ---------------------------------------------------------------------------------------------
// TLS probe

#[tokio::test]
async fn captures_chain_in_order_with_exact_der() {
    let pki = pki();
    let (addr, mut seen) = tls_server(Answer::Handshake(tls13_server(&pki))).await;

    let chain = prober().probe_chain(addr, NAME).await.unwrap();

    assert_eq!(chain.certificates, pki.chain);
    assert_eq!(chain.tls_version, "TLSv1.3");
    assert!(
        chain.cipher_suite.starts_with("TLS13_"),
        "{}",
        chain.cipher_suite
    );
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.sni.as_deref(), Some(NAME));
    assert!(
        seen.alpn.is_empty(),
        "no ALPN expected, got {:?}",
        seen.alpn
    );
    assert!(seen.close_notify, "the probe closes with close_notify");
}

#[tokio::test]
async fn free_function_and_repeated_probes_see_full_chain() {
    let pki = pki();
    let (addr, _seen) = tls_server(Answer::Handshake(tls13_server(&pki))).await;

    let prober = prober();
    for _ in 0..3 {
        // No resumption: every probe gets the certificates from a full handshake.
        let chain = prober.probe_chain(addr, NAME).await.unwrap();
        assert_eq!(chain.certificates, pki.chain);
    }
    let chain = probe_chain(addr, NAME, TIMEOUT).await.unwrap();
    assert_eq!(chain.certificates, pki.chain);
}

#[tokio::test]
async fn inspects_without_trusting_expired_or_misnamed_chain() {
    let pki = pki_with(
        "other.ns.serviceaccount.identity.linkerd.cluster.local",
        true,
    );
    let (addr, _seen) = tls_server(Answer::AnyName(tls13_server(&pki))).await;

    let chain = prober().probe_chain(addr, NAME).await.unwrap();
    assert_eq!(chain.certificates, pki.chain);
}

#[tokio::test]
async fn wrong_sni_is_closed_before_server_hello() {
    let pki = pki();
    let (addr, mut seen) = tls_server(Answer::Handshake(tls13_server(&pki))).await;

    let err = prober()
        .probe_chain(
            addr,
            "wrong.ns.serviceaccount.identity.linkerd.cluster.local",
        )
        .await
        .unwrap_err();

    assert_eq!(err, ProbeError::ClosedBeforeServerHello);
    assert_eq!(err.kind(), "closed_before_server_hello");
    assert_eq!(
        seen.recv().await.unwrap().sni.as_deref(),
        Some("wrong.ns.serviceaccount.identity.linkerd.cluster.local")
    );
}

#[tokio::test]
async fn access_denied_alert_is_reported_by_name() {
    let (addr, _seen) = tls_server(Answer::Raw(ACCESS_DENIED_RECORD.to_vec())).await;

    let err = prober().probe_chain(addr, NAME).await.unwrap_err();

    assert_eq!(err, ProbeError::Alert("access_denied".to_owned()));
    assert_eq!(err.kind(), "alert");
    assert_eq!(err.to_string(), "received fatal tls alert: access_denied");
}

#[tokio::test]
async fn tls12_only_server_names_protocol_version() {
    let pki = pki();
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(der_chain(&pki.chain), key_der(&pki.leaf_key))
        .unwrap();
    let (addr, _seen) = tls_server(Answer::Handshake(Arc::new(config))).await;

    let err = prober().probe_chain(addr, NAME).await.unwrap_err();

    assert_eq!(err, ProbeError::Alert("protocol_version".to_owned()));
}

#[tokio::test]
async fn tls12_server_hello_names_protocol_version() {
    // A TLS 1.2 ServerHello from a server that ignores `supported_versions`.
    let mut hello = vec![
        0x16, 0x03, 0x03, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x03,
    ];
    hello.extend([0x11; 32]);
    hello.extend([0x00, 0xc0, 0x2b, 0x00]);
    let (addr, _seen) = tls_server(Answer::Raw(hello)).await;

    let err = prober().probe_chain(addr, NAME).await.unwrap_err();

    assert!(matches!(err, ProbeError::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("protocol_version"), "{err}");
}

#[tokio::test]
async fn silent_listener_times_out_within_bound() {
    let addr = silent_server().await;
    let bound = Duration::from_millis(300);

    let started = StdInstant::now();
    let err = Prober::new(bound)
        .unwrap()
        .probe_chain(addr, NAME)
        .await
        .unwrap_err();

    assert_eq!(err, ProbeError::Timeout);
    assert_eq!(err.kind(), "timeout");
    let elapsed = started.elapsed();
    assert!(elapsed >= bound, "{elapsed:?}");
    assert!(elapsed < bound + Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn closed_port_is_refused() {
    let addr = closed_port().await;

    let err = prober().probe_chain(addr, NAME).await.unwrap_err();

    assert_eq!(err, ProbeError::ConnectionRefused);
    assert_eq!(err.kind(), "refused");
}

#[tokio::test]
async fn invalid_server_name_is_rejected_before_connecting() {
    let addr = closed_port().await;

    let err = prober().probe_chain(addr, "not a name!").await.unwrap_err();

    assert!(matches!(err, ProbeError::InvalidServerName(_)), "{err:?}");
    assert_eq!(err.kind(), "invalid_server_name");
}

#[tokio::test]
async fn close_after_partial_answer_is_io_not_closed_before_server_hello() {
    // The first bytes of a handshake record header, then FIN.
    let (addr, _seen) = tls_server(Answer::Raw(vec![0x16, 0x03, 0x03, 0x00, 0x50, 0x02])).await;

    let err = prober().probe_chain(addr, NAME).await.unwrap_err();

    assert!(matches!(err, ProbeError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn plaintext_answer_is_a_tls_error() {
    let (addr, _seen) = tls_server(Answer::Raw(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ))
    .await;

    let err = prober().probe_chain(addr, NAME).await.unwrap_err();

    assert!(matches!(err, ProbeError::Tls(_)), "{err:?}");
}

/// Presents a chain with a key that is not the leaf's.
#[derive(Debug)]
struct WrongKey(Arc<CertifiedKey>);

impl ResolvesServerCert for WrongKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

#[tokio::test]
async fn handshake_signature_must_match_the_leaf_key() {
    let pki = pki();
    let other_key = KeyPair::generate().unwrap().serialize_der();
    let signer = provider()
        .key_provider
        .load_private_key(key_der(&other_key))
        .unwrap();
    let certified = CertifiedKey::new(der_chain(&pki.chain), signer);
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(WrongKey(Arc::new(certified))));
    let (addr, _seen) = tls_server(Answer::Handshake(Arc::new(config))).await;

    let err = prober().probe_chain(addr, NAME).await.unwrap_err();

    assert!(matches!(err, ProbeError::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("BadSignature"), "{err}");
}

#[test]
fn alert_names_follow_the_rfc() {
    assert_eq!(alert_name(AlertDescription::AccessDenied), "access_denied");
    assert_eq!(
        alert_name(AlertDescription::ProtocolVersion),
        "protocol_version"
    );
    assert_eq!(
        alert_name(AlertDescription::HandshakeFailure),
        "handshake_failure"
    );
    assert_eq!(alert_name(AlertDescription::UnknownCA), "unknown_ca");
    assert_eq!(
        alert_name(AlertDescription::UnknownPSKIdentity),
        "unknown_psk_identity"
    );
    assert_eq!(alert_name(AlertDescription::BadRecordMac), "bad_record_mac");
    assert_eq!(
        alert_name(AlertDescription::from(200u8)),
        "unknown_alert_200"
    );
}

#[test]
fn error_kinds_are_stable() {
    let kinds: Vec<&str> = [
        ProbeError::Timeout,
        ProbeError::ConnectionRefused,
        ProbeError::ConnectFailed("x".into()),
        ProbeError::ClosedBeforeServerHello,
        ProbeError::Alert("access_denied".into()),
        ProbeError::NoCertificate,
        ProbeError::InvalidServerName("x".into()),
        ProbeError::Tls("x".into()),
        ProbeError::Io("x".into()),
    ]
    .iter()
    .map(ProbeError::kind)
    .collect();
    assert_eq!(
        kinds,
        [
            "timeout",
            "refused",
            "connect_failed",
            "closed_before_server_hello",
            "alert",
            "no_certificate",
            "invalid_server_name",
            "tls",
            "io"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics

const LEGACY_BODY: &str = "\
# HELP process_start_time_seconds Time that the process started (in seconds since the UNIX epoch)
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1699990000
# HELP identity_cert_expiration_timestamp_seconds Time when the this proxy's current mTLS identity certificate will expire (in seconds since the UNIX epoch).
# TYPE identity_cert_expiration_timestamp_seconds gauge
identity_cert_expiration_timestamp_seconds 1700086400
# HELP identity_cert_refresh_count The total number of times this proxy's mTLS identity certificate has been refreshed by the Identity service.
# TYPE identity_cert_refresh_count counter
identity_cert_refresh_count 1
request_total{direction=\"inbound\",tls=\"true\"} 42
";

const V2_15_BODY: &str = "\
# HELP identity_cert_expiration_timestamp_seconds Time when the this proxy's current mTLS identity certificate will expire (in seconds since the UNIX epoch).
# TYPE identity_cert_expiration_timestamp_seconds gauge
# UNIT identity_cert_expiration_timestamp_seconds seconds
identity_cert_expiration_timestamp_seconds 1.7000864e9
# HELP identity_cert_refresh_timestamp_seconds Time when the this proxy's current mTLS identity certificate were last updated.
# TYPE identity_cert_refresh_timestamp_seconds gauge
identity_cert_refresh_timestamp_seconds 1.6999e9
identity_cert_refreshes_total 1
# EOF
";

const CONTROL_BODY: &str = "\
# HELP control_identity_cert_expiration_timestamp_seconds Time when the this proxy's current mTLS identity certificate will expire (in seconds since the UNIX epoch).
# TYPE control_identity_cert_expiration_timestamp_seconds gauge
# UNIT control_identity_cert_expiration_timestamp_seconds seconds
control_identity_cert_expiration_timestamp_seconds 1700086400.5
control_identity_cert_refresh_timestamp_seconds 1699999999.0
control_identity_cert_refreshes_total 3
";

fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, nanos).unwrap()
}

#[test]
fn parses_legacy_metric() {
    let expiry = parse_cert_expiry(LEGACY_BODY).unwrap();
    assert_eq!(expiry.metric, "identity_cert_expiration_timestamp_seconds");
    assert_eq!(expiry.expires_at, at(1_700_086_400, 0));
}

#[test]
fn parses_v2_15_float_metric() {
    let expiry = parse_cert_expiry(V2_15_BODY).unwrap();
    assert_eq!(expiry.metric, "identity_cert_expiration_timestamp_seconds");
    assert_eq!(expiry.expires_at, at(1_700_086_400, 0));
}

#[test]
fn parses_control_metric() {
    let expiry = parse_cert_expiry(CONTROL_BODY).unwrap();
    assert_eq!(
        expiry.metric,
        "control_identity_cert_expiration_timestamp_seconds"
    );
    assert_eq!(expiry.expires_at, at(1_700_086_400, 500_000_000));
}

#[test]
fn prefers_control_name_over_legacy_name() {
    let body = format!("{LEGACY_BODY}{CONTROL_BODY}");
    let expiry = parse_cert_expiry(&body).unwrap();
    assert_eq!(
        expiry.metric,
        "control_identity_cert_expiration_timestamp_seconds"
    );
}

#[test]
fn tolerates_labels_timestamps_and_garbage() {
    let body = "\
garbage line without value
{broken=\"labels\"} 12
identity_cert_expiration_timestamp_seconds{a=\"x } y\",b=\"q\\\"}\"} 1.7e9 1699999999000
identity_cert_expiration_timestamp_seconds{a=\"unclosed 1.6e9
identity_cert_expiration_timestamp_seconds notanumber
identity_cert_expiration_timestamp_secondsX 1.6e9
   # indented comment 1
\u{0}\u{ff}binary
identity_cert_expiration_timestamp_seconds{pod=\"b\"} 1800000000
";
    let expiry = parse_cert_expiry(body).unwrap();
    assert_eq!(expiry.metric, "identity_cert_expiration_timestamp_seconds");
    // The earliest of the two valid samples.
    assert_eq!(expiry.expires_at, at(1_700_000_000, 0));
}

#[test]
fn finds_identity_cert_expiry_like_names() {
    let body = "proxy_identity_cert_expiration_timestamp_seconds 1700000000\n";
    let expiry = parse_cert_expiry(body).unwrap();
    assert_eq!(
        expiry.metric,
        "proxy_identity_cert_expiration_timestamp_seconds"
    );

    let body =
        "identity_cert_expiry_timestamp_seconds 1700000000\nidentity_cert_refreshes_total 1\n";
    let expiry = parse_cert_expiry(body).unwrap();
    assert_eq!(expiry.metric, "identity_cert_expiry_timestamp_seconds");
}

#[test]
fn unset_and_non_finite_values_are_not_expiries() {
    for value in ["0", "0.0", "-5", "NaN", "+Inf", "-Inf", "1e400"] {
        let body = format!("control_identity_cert_expiration_timestamp_seconds {value}\n");
        assert_eq!(parse_cert_expiry(&body), None, "{value}");
    }
    assert_eq!(
        expiry_from_body("identity_cert_expiration_timestamp_seconds 0\n"),
        Err(MetricsError::Unset(
            "identity_cert_expiration_timestamp_seconds".to_owned()
        ))
    );
}

#[test]
fn missing_metric_is_not_found() {
    for body in [
        "",
        "# EOF\n",
        "identity_cert_refresh_count 3\nrequest_total 1\n",
        "\u{fffd}{{{",
    ] {
        assert_eq!(parse_cert_expiry(body), None);
        assert_eq!(expiry_from_body(body), Err(MetricsError::NotFound));
    }
}

#[tokio::test]
async fn scrapes_metrics_over_http() {
    let addr = http_server(200, CONTROL_BODY.as_bytes().to_vec()).await;
    let expiry = scrape_cert_expiry(addr, TIMEOUT).await.unwrap();
    assert_eq!(
        expiry.metric,
        "control_identity_cert_expiration_timestamp_seconds"
    );
    assert_eq!(expiry.expires_at, at(1_700_086_400, 500_000_000));
}

#[tokio::test]
async fn scrape_reports_status_unset_and_absence() {
    let addr = http_server(404, b"not found\n".to_vec()).await;
    assert_eq!(
        scrape_cert_expiry(addr, TIMEOUT).await,
        Err(MetricsError::Status(404))
    );

    let addr = http_server(
        200,
        b"identity_cert_expiration_timestamp_seconds 0\n".to_vec(),
    )
    .await;
    let err = scrape_cert_expiry(addr, TIMEOUT).await.unwrap_err();
    assert_eq!(err.kind(), "unset");

    let addr = http_server(200, b"request_total 1\n".to_vec()).await;
    assert_eq!(
        scrape_cert_expiry(addr, TIMEOUT).await,
        Err(MetricsError::NotFound)
    );
}

#[tokio::test]
async fn scrape_bounds_body_size() {
    let addr = http_server(200, vec![b'#'; MAX_METRICS_BODY + 1]).await;
    assert_eq!(
        scrape_cert_expiry(addr, TIMEOUT).await,
        Err(MetricsError::BodyTooLarge(MAX_METRICS_BODY))
    );
}

#[tokio::test]
async fn scrape_bounds_time_and_reports_refusal() {
    let addr = silent_server().await;
    let started = StdInstant::now();
    assert_eq!(
        scrape_cert_expiry(addr, Duration::from_millis(300)).await,
        Err(MetricsError::Timeout)
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    let addr = closed_port().await;
    assert_eq!(
        scrape_cert_expiry(addr, TIMEOUT).await,
        Err(MetricsError::ConnectionRefused)
    );
}
