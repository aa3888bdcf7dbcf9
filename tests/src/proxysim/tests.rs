//! Tests of the simulated proxy with a plain tokio-rustls client and raw sockets. Every wait is
//! bounded.

use super::*;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant as StdInstant;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

const NAME: &str = "foo.ns1.serviceaccount.identity.linkerd.cluster.local";
const OTHER_NAME: &str = "bar.ns1.serviceaccount.identity.linkerd.cluster.local";
/// Bound on any single network step of a test.
const STEP: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Material

struct Ca {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
}

fn fixture_ca(n: u8) -> Ca {
    let cert_pem = crate::pki::fixture(&format!("proxy-test-util/ca{n}.pem")).unwrap();
    let key_pem = crate::pki::fixture(&format!("proxy-test-util/ca{n}-key.pem")).unwrap();
    let cert_der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
        .map(|c: CertificateDer<'static>| c.to_vec())
        .unwrap();
    Ca {
        cert_pem,
        key_pem,
        cert_der,
    }
}

/// A leaf for `name` under `ca`, valid from an hour ago for a day, presented with the CA.
fn ready(ca: &Ca, name: &str) -> (ProxyIdentity, Vec<Vec<u8>>, DateTime<Utc>) {
    let now = Utc::now();
    let not_after = now + chrono::Duration::hours(24);
    let (leaf, key) = sign_leaf(
        &ca.cert_pem,
        &ca.key_pem,
        name,
        now - chrono::Duration::hours(1),
        not_after,
    )
    .unwrap();
    let chain = vec![leaf, ca.cert_der.clone()];
    let identity = ProxyIdentity::Ready {
        name: name.to_owned(),
        chain: chain.clone(),
        key_pkcs8: key,
    };
    (identity, chain, not_after)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// A loopback address of its own for this test process (127.x.y.1), so port 4191 is free.
fn own_loopback() -> IpAddr {
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(
        127,
        100 + (pid % 100) as u8,
        (pid / 100 % 250) as u8,
        1,
    ))
}

// ---------------------------------------------------------------------------------------------
// Clients

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts any chain; checks the handshake signature (as the agent's probe does).
#[derive(Debug)]
struct AnyChain(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyChain {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn client_config(version: &'static rustls::SupportedProtocolVersion) -> ClientConfig {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyChain(algorithms)))
        .with_no_client_auth()
}

/// A client that verifies the chain properly against `root` (like a peer proxy would).
fn verifying_client(root: &[u8]) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(root.to_vec())).unwrap();
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// TLS 1.3 handshake with SNI `name`; the presented chain, or the handshake error.
async fn handshake(addr: SocketAddr, name: &str) -> Result<Vec<Vec<u8>>, std::io::Error> {
    handshake_with(client_config(&rustls::version::TLS13), addr, name).await
}

async fn handshake_with(
    config: ClientConfig,
    addr: SocketAddr,
    name: &str,
) -> Result<Vec<Vec<u8>>, std::io::Error> {
    let connector = TlsConnector::from(Arc::new(config));
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = connector.connect(server_name, tcp).await?;
        let chain = tls
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.to_vec())
            .collect();
        tls.shutdown().await?;
        Ok(chain)
    };
    timeout(STEP, attempt).await.expect("handshake timed out")
}

fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
}

/// A ClientHello as rustls would send it (SNI = `name`, or none for an IP address).
fn client_hello(name: ServerName<'static>) -> Vec<u8> {
    let mut conn =
        rustls::ClientConnection::new(Arc::new(client_config(&rustls::version::TLS13)), name)
            .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Sends `bytes` on a fresh connection and returns everything received until the peer closed,
/// or `None` if nothing at all happened within `wait` (no answer, connection still open).
async fn exchange_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let mut tcp = timeout(STEP, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut received = Vec::new();
    match timeout(wait, tcp.read_to_end(&mut received)).await {
        Ok(Ok(_)) => Some(received),
        // A reset also means "closed"; keep what arrived before it.
        Ok(Err(_)) => Some(received),
        Err(_) => None,
    }
}

/// An HTTP/1.1 request over plain TCP: (status, body).
async fn http_get(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nuser-agent: test\r\n\r\n");
    let response = exchange_raw(addr, request.as_bytes(), STEP)
        .await
        .expect("no http answer");
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    if method != "HEAD" {
        assert_eq!(length, body.len());
    }
    (status, body.to_owned())
}

/// Waits (bounded) until the proxy has counted `n` handshakes: the client finishes its side of
/// the handshake slightly before the server does.
async fn wait_for_handshakes(proxy: &SimProxy, n: u64) {
    let deadline = StdInstant::now() + STEP;
    while proxy.handshakes() < n && StdInstant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(proxy.handshakes(), n);
}

/// The sample value of `metric` (no labels) in a Prometheus text body.
fn sample(body: &str, metric: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' ')?.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn right_sni_receives_the_chain() {
    let ca = fixture_ca(1);
    let (identity, chain, _) = ready(&ca, NAME);
    let proxy = SimProxy::start(loopback(0), identity, MetricsStyle::Control)
        .await
        .unwrap();

    let presented = handshake(proxy.local_addr(), NAME).await.unwrap();

    assert_eq!(presented, chain);
    wait_for_handshakes(&proxy, 1).await;
    proxy.stop().await;
}

#[tokio::test]
async fn leaf_signed_under_linkerd_test_ca1_verifies_against_ca1_only() {
    let ca1 = fixture_ca(1);
    let ca2 = fixture_ca(2);
    let (identity, chain, _) = ready(&ca1, NAME);
    let proxy = SimProxy::start(loopback(0), identity, MetricsStyle::Legacy)
        .await
        .unwrap();

    // A peer that trusts ca1 accepts the chain for the identity name.
    let presented = handshake_with(verifying_client(&ca1.cert_der), proxy.local_addr(), NAME)
        .await
        .unwrap();
    assert_eq!(presented, chain);

    // ca2 has the same subject and another key: the classic BadSignature.
    let err = handshake_with(verifying_client(&ca2.cert_der), proxy.local_addr(), NAME)
        .await
        .unwrap_err();
    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadSignature
        )),
        "{err}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn sign_leaf_makes_a_linkerd_style_leaf() {
    let ca = fixture_ca(1);
    let not_before = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let not_after = DateTime::from_timestamp(1_700_086_400, 0).unwrap();
    let (leaf, key) = sign_leaf(&ca.cert_pem, &ca.key_pem, NAME, not_before, not_after).unwrap();

    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let cn: Vec<_> = cert.subject().iter_common_name().collect();
    assert_eq!(cn.len(), 1);
    assert_eq!(cn[0].as_str().unwrap(), NAME);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(
        san.value.general_names,
        vec![x509_parser::extensions::GeneralName::DNSName(NAME)]
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!cert.is_ca());
    assert_eq!(cert.validity().not_before.timestamp(), 1_700_000_000);
    assert_eq!(cert.validity().not_after.timestamp(), 1_700_086_400);
    assert_eq!(cert.issuer().to_string(), "OU=None");
    // PKCS#8 P-256 key that rustls accepts.
    rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.into()))
        .unwrap();
}

#[tokio::test]
async fn wrong_or_missing_sni_is_closed_without_server_hello() {
    let ca = fixture_ca(1);
    let (identity, _, _) = ready(&ca, NAME);
    let proxy = SimProxy::start(loopback(0), identity, MetricsStyle::Control)
        .await
        .unwrap();
    let addr = proxy.local_addr();

    let wrong = client_hello(ServerName::try_from(OTHER_NAME).unwrap());
    assert_eq!(exchange_raw(addr, &wrong, STEP).await, Some(Vec::new()));
    let missing = client_hello(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()));
    assert_eq!(exchange_raw(addr, &missing, STEP).await, Some(Vec::new()));

    // Through a real client: a handshake EOF, not a TLS error.
    let err = handshake(addr, OTHER_NAME).await.unwrap_err();
    assert!(rustls_error(&err).is_none(), "{err}");
    assert_eq!(proxy.handshakes(), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn pending_identity_sends_access_denied() {
    let proxy = SimProxy::start(
        loopback(0),
        ProxyIdentity::Pending {
            name: NAME.to_owned(),
        },
        MetricsStyle::Control,
    )
    .await
    .unwrap();
    let addr = proxy.local_addr();

    let err = handshake(addr, NAME).await.unwrap_err();
    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::AccessDenied
        )),
        "{err}"
    );
    let hello = client_hello(ServerName::try_from(NAME).unwrap());
    assert_eq!(
        exchange_raw(addr, &hello, STEP).await,
        Some(ACCESS_DENIED_ALERT.to_vec())
    );
    proxy.stop().await;
}

#[tokio::test]
async fn silent_proxy_never_answers() {
    let proxy = SimProxy::start(loopback(0), ProxyIdentity::Silent, MetricsStyle::Control)
        .await
        .unwrap();
    let addr = proxy.local_addr();

    let hello = client_hello(ServerName::try_from(NAME).unwrap());
    assert_eq!(
        exchange_raw(addr, &hello, Duration::from_millis(300)).await,
        None
    );
    let get = b"GET /ready HTTP/1.1\r\nhost: x\r\n\r\n";
    assert_eq!(
        exchange_raw(addr, get, Duration::from_millis(300)).await,
        None
    );
    proxy.stop().await;
}

#[tokio::test]
async fn tls12_client_gets_protocol_version() {
    let ca = fixture_ca(1);
    let (identity, _, _) = ready(&ca, NAME);
    let proxy = SimProxy::start(loopback(0), identity, MetricsStyle::Control)
        .await
        .unwrap();

    let err = handshake_with(
        client_config(&rustls::version::TLS12),
        proxy.local_addr(),
        NAME,
    )
    .await
    .unwrap_err();

    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::ProtocolVersion
        )),
        "{err}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn alpn_none_or_linkerd_transport() {
    let ca = fixture_ca(1);
    let (identity, chain, _) = ready(&ca, NAME);
    let proxy = SimProxy::start(loopback(0), identity, MetricsStyle::Control)
        .await
        .unwrap();

    let mut config = client_config(&rustls::version::TLS13);
    config.alpn_protocols = vec![LINKERD_ALPN.to_vec()];
    let presented = handshake_with(config, proxy.local_addr(), NAME)
        .await
        .unwrap();
    assert_eq!(presented, chain);
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP

#[tokio::test]
async fn metrics_ready_and_live_over_plain_http() {
    let ca = fixture_ca(1);
    for (style, metric) in [
        (
            MetricsStyle::Legacy,
            Some("identity_cert_expiration_timestamp_seconds"),
        ),
        (
            MetricsStyle::V2_15,
            Some("identity_cert_expiration_timestamp_seconds"),
        ),
        (
            MetricsStyle::Control,
            Some("control_identity_cert_expiration_timestamp_seconds"),
        ),
        (MetricsStyle::None, None),
    ] {
        let (identity, _, not_after) = ready(&ca, NAME);
        let proxy = SimProxy::start(loopback(0), identity, style).await.unwrap();
        let addr = proxy.local_addr();

        let (status, body) = http_get(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("process_start_time_seconds "), "{body}");
        match metric {
            Some(metric) => {
                assert_eq!(
                    sample(&body, metric),
                    Some(not_after.timestamp() as f64),
                    "{body}"
                );
            }
            None => assert!(!body.contains("identity_cert"), "{body}"),
        }
        if style == MetricsStyle::V2_15 {
            assert!(
                body.contains("identity_cert_expiration_timestamp_seconds 1."),
                "{body}"
            );
            assert!(body.contains("# UNIT "), "{body}");
        }

        assert_eq!(
            http_get(addr, "GET", "/ready").await,
            (200, "ready\n".to_owned())
        );
        assert_eq!(
            http_get(addr, "GET", "/live").await,
            (200, "live\n".to_owned())
        );
        assert_eq!(http_get(addr, "GET", "/nope").await.0, 404);
        assert_eq!(http_get(addr, "POST", "/metrics").await.0, 404);
        assert_eq!(http_get(addr, "HEAD", "/ready").await, (200, String::new()));
        proxy.stop().await;
    }
}

#[tokio::test]
async fn pending_proxy_is_not_ready_and_reports_no_expiry() {
    let proxy = SimProxy::start(
        loopback(0),
        ProxyIdentity::Pending {
            name: NAME.to_owned(),
        },
        MetricsStyle::Control,
    )
    .await
    .unwrap();
    let addr = proxy.local_addr();

    assert_eq!(http_get(addr, "GET", "/ready").await.0, 503);
    assert_eq!(http_get(addr, "GET", "/live").await.0, 200);
    let (_, body) = http_get(addr, "GET", "/metrics").await;
    assert_eq!(
        sample(&body, "control_identity_cert_expiration_timestamp_seconds"),
        Some(0.0)
    );
    proxy.stop().await;
}

#[tokio::test]
async fn garbage_input_gets_closed_and_the_proxy_keeps_serving() {
    let ca = fixture_ca(1);
    let (identity, chain, _) = ready(&ca, NAME);
    let proxy = SimProxy::start(loopback(0), identity, MetricsStyle::Control)
        .await
        .unwrap();
    let addr = proxy.local_addr();

    // A TLS-looking first byte followed by garbage: an alert or a close, never a hang.
    let answer = exchange_raw(addr, &[0x16, 0xff, 0x00, 0x01, 0x02, 0x03, 0x04], STEP).await;
    assert!(answer.is_some_and(|a| a.is_empty() || a[0] == 0x15));
    // Not HTTP at all.
    let answer = exchange_raw(addr, b"\x00\x01garbage\r\n\r\n", STEP)
        .await
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 400 "), "{answer:?}");
    // Oversized request head.
    let mut huge = b"GET /".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    let answer = exchange_raw(addr, &huge, STEP).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 431 "), "{answer:?}");
    // Connect and close at once.
    drop(TcpStream::connect(addr).await.unwrap());

    assert_eq!(handshake(addr, NAME).await.unwrap(), chain);
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

#[tokio::test]
async fn set_identity_switches_what_the_next_connection_gets() {
    let ca1 = fixture_ca(1);
    let ca2 = fixture_ca(2);
    let (first, first_chain, _) = ready(&ca1, NAME);
    let (second, second_chain, second_expiry) = ready(&ca2, NAME);
    let proxy = SimProxy::start(loopback(0), first, MetricsStyle::Legacy)
        .await
        .unwrap();
    let addr = proxy.local_addr();

    assert_eq!(handshake(addr, NAME).await.unwrap(), first_chain);

    proxy.set_identity(second);
    assert_eq!(handshake(addr, NAME).await.unwrap(), second_chain);
    let (_, body) = http_get(addr, "GET", "/metrics").await;
    assert_eq!(
        sample(&body, "identity_cert_expiration_timestamp_seconds"),
        Some(second_expiry.timestamp() as f64)
    );
    wait_for_handshakes(&proxy, 2).await;

    proxy.set_identity(ProxyIdentity::Pending {
        name: NAME.to_owned(),
    });
    let err = handshake(addr, NAME).await.unwrap_err();
    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::AccessDenied
        ))
    );

    proxy.set_identity(ProxyIdentity::Silent);
    let hello = client_hello(ServerName::try_from(NAME).unwrap());
    assert_eq!(
        exchange_raw(addr, &hello, Duration::from_millis(300)).await,
        None
    );

    // Renamed identity: the old name no longer matches.
    let (renamed, renamed_chain, _) = ready(&ca1, OTHER_NAME);
    proxy.set_identity(renamed);
    assert!(handshake(addr, NAME).await.is_err());
    assert_eq!(handshake(addr, OTHER_NAME).await.unwrap(), renamed_chain);
    wait_for_handshakes(&proxy, 3).await;
    proxy.stop().await;
}

#[tokio::test]
async fn invalid_identity_is_rejected() {
    let ca = fixture_ca(1);
    let (identity, chain, _) = ready(&ca, NAME);
    let wrong_key = ProxyIdentity::Ready {
        name: NAME.to_owned(),
        chain: chain.clone(),
        key_pkcs8: KeyPair::generate().unwrap().serialize_der(),
    };
    assert!(
        SimProxy::start(loopback(0), wrong_key.clone(), MetricsStyle::Control)
            .await
            .is_err()
    );
    let empty = ProxyIdentity::Ready {
        name: NAME.to_owned(),
        chain: Vec::new(),
        key_pkcs8: Vec::new(),
    };
    assert!(
        SimProxy::start(loopback(0), empty, MetricsStyle::Control)
            .await
            .is_err()
    );

    let proxy = SimProxy::start(loopback(0), identity, MetricsStyle::Control)
        .await
        .unwrap();
    assert!(proxy.try_set_identity(wrong_key).is_err());
    // The previous identity stays.
    assert_eq!(handshake(proxy.local_addr(), NAME).await.unwrap(), chain);
    proxy.stop().await;
}

#[tokio::test]
async fn pods_on_their_own_loopback_addresses_and_port_4191() {
    let ca = fixture_ca(1);
    let base = own_loopback();
    let IpAddr::V4(v4) = base else { unreachable!() };
    let [a, b, c, _] = v4.octets();
    let first_addr = SocketAddr::new(base, 4191);
    let second_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, 2)), 4191);

    let (first, first_chain, _) = ready(&ca, NAME);
    let (second, second_chain, _) = ready(&ca, OTHER_NAME);
    let first = SimProxy::start(first_addr, first, MetricsStyle::Control)
        .await
        .unwrap();
    let second = SimProxy::start(second_addr, second, MetricsStyle::Control)
        .await
        .unwrap();
    assert_eq!(first.local_addr(), first_addr);
    assert_eq!(second.local_addr(), second_addr);

    assert_eq!(handshake(first_addr, NAME).await.unwrap(), first_chain);
    assert_eq!(
        handshake(second_addr, OTHER_NAME).await.unwrap(),
        second_chain
    );

    // After stop: refused, and the address can be bound again at once.
    first.stop().await;
    let refused = timeout(STEP, TcpStream::connect(first_addr)).await.unwrap();
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    let (again, again_chain, _) = ready(&ca, NAME);
    let again = SimProxy::start(first_addr, again, MetricsStyle::Control)
        .await
        .unwrap();
    assert_eq!(handshake(first_addr, NAME).await.unwrap(), again_chain);
    again.stop().await;
    second.stop().await;
}
