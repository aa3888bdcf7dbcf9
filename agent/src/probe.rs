//! TLS probe of a Linkerd proxy's admin port (4191), and a best-effort scrape of the proxy's
//! identity certificate expiry metric on the same port.
//!
//! A Linkerd proxy keeps its identity certificate only in memory. A TLS 1.3 client without a
//! client certificate that sends SNI = the proxy's identity name to the admin port completes the
//! handshake and receives the chain the proxy presents to its peers (`[leaf, issuer, …]`). The
//! probe does exactly that: it *inspects* the chain, it does not trust it. The only check made is
//! the TLS 1.3 `CertificateVerify` signature, so the peer proves it holds the leaf's key.
//!
//! What a real proxy does, and how the probe reports it ([`ProbeError::kind`]):
//! - wrong or missing SNI: connection closed with no ServerHello → `closed_before_server_hello`;
//! - no identity yet: fatal `access_denied` alert → `alert` (`Alert("access_denied")`);
//! - TLS 1.2 only: `protocol_version` alert → `alert` (`Alert("protocol_version")`);
//! - hung proxy → `timeout`; nothing listening → `refused`.
//!
//! Use a [`Prober`] for repeated probes: it builds the rustls `ClientConfig` once. The free
//! function [`probe_chain`] shares one lazily built config for the whole process.

mod metrics;
#[cfg(test)]
mod tests;

pub use metrics::{
    CertExpiry, MAX_METRICS_BODY, MetricsError, parse_cert_expiry, scrape_cert_expiry,
};

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{
    AlertDescription, ClientConfig, DigitallySignedStruct, ProtocolVersion, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

/// Longest wait, after sending close_notify, for the peer to close its side.
const CLOSE_LINGER: Duration = Duration::from_millis(250);

/// The chain a proxy presented in a completed TLS handshake on its admin port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedChain {
    /// Raw DER of every certificate, exactly as presented, leaf first.
    pub certificates: Vec<Vec<u8>>,
    /// Negotiated protocol version, e.g. `TLSv1.3`.
    pub tls_version: String,
    /// Negotiated cipher suite, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
}

/// Why a probe got no chain. Callers branch on the variant (or on [`ProbeError::kind`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Connecting and handshaking did not finish within the probe's timeout.
    #[error("timed out")]
    Timeout,
    /// Nothing listens on the address (TCP RST to the SYN).
    #[error("connection refused")]
    ConnectionRefused,
    /// The TCP connection could not be made for another reason.
    #[error("connect failed: {0}")]
    ConnectFailed(String),
    /// The peer closed (or reset) the connection before sending a single byte of its
    /// ServerHello: what a real proxy does on a wrong or missing SNI.
    #[error("connection closed before server hello")]
    ClosedBeforeServerHello,
    /// The peer sent a fatal TLS alert, named as in the TLS RFCs (`access_denied`: the proxy has
    /// no identity yet; `protocol_version`: the peer does not speak TLS 1.3).
    #[error("received fatal tls alert: {0}")]
    Alert(String),
    /// The handshake completed without a server certificate.
    #[error("no certificate presented")]
    NoCertificate,
    /// The server name is not a valid DNS name (or IP address) for SNI.
    #[error("invalid server name: {0}")]
    InvalidServerName(String),
    /// Any other TLS failure (bad handshake signature, malformed messages, …).
    #[error("tls error: {0}")]
    Tls(String),
    /// An I/O failure after the peer started answering.
    #[error("i/o error: {0}")]
    Io(String),
}

impl ProbeError {
    /// A stable machine-readable name for the variant: `timeout`, `refused`, `connect_failed`,
    /// `closed_before_server_hello`, `alert`, `no_certificate`, `invalid_server_name`, `tls`,
    /// `io`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeError::Timeout => "timeout",
            ProbeError::ConnectionRefused => "refused",
            ProbeError::ConnectFailed(_) => "connect_failed",
            ProbeError::ClosedBeforeServerHello => "closed_before_server_hello",
            ProbeError::Alert(_) => "alert",
            ProbeError::NoCertificate => "no_certificate",
            ProbeError::InvalidServerName(_) => "invalid_server_name",
            ProbeError::Tls(_) => "tls",
            ProbeError::Io(_) => "io",
        }
    }
}

/// Probes proxies' admin ports with one shared TLS 1.3 client configuration.
///
/// Cheap to clone. The configuration: aws-lc-rs, TLS 1.3 only, no client certificate, no ALPN,
/// no session resumption (every probe sees a full handshake and the chain the proxy holds now),
/// and a verifier that accepts any chain but checks the handshake signature.
#[derive(Debug, Clone)]
pub struct Prober {
    config: Arc<ClientConfig>,
    timeout: Duration,
}

impl Prober {
    /// A prober whose every probe is bounded by `timeout` (connect, handshake and close).
    pub fn new(timeout: Duration) -> Result<Prober, ProbeError> {
        Ok(Prober {
            config: shared_client_config()?,
            timeout,
        })
    }

    /// The bound applied to each probe.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Connects to `addr`, completes a TLS 1.3 handshake with SNI = `server_name` (the proxy's
    /// Linkerd identity name) and returns the chain the proxy presented, then closes with
    /// close_notify.
    pub async fn probe_chain(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<PresentedChain, ProbeError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| ProbeError::InvalidServerName(format!("{server_name:?}: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let connector = TlsConnector::from(Arc::clone(&self.config));

        let handshake = async {
            let tcp = TcpStream::connect(addr).await.map_err(connect_error)?;
            // Best effort: the probe exchanges a handful of small records.
            let _ = tcp.set_nodelay(true);
            let io = CountingStream::new(tcp);
            match connector.connect(name, io).into_fallible().await {
                Ok(tls) => Ok(tls),
                Err((err, io)) => Err(handshake_error(err, io.received())),
            }
        };
        let mut tls = match timeout_at(deadline, handshake).await {
            Ok(result) => result?,
            Err(_) => return Err(ProbeError::Timeout),
        };

        let (_, conn) = tls.get_ref();
        let chain = match conn.peer_certificates() {
            Some(certs) if !certs.is_empty() => PresentedChain {
                certificates: certs.iter().map(|c| c.as_ref().to_vec()).collect(),
                tls_version: conn
                    .protocol_version()
                    .map(version_name)
                    .unwrap_or_else(|| "unknown".to_owned()),
                cipher_suite: conn
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
                    .unwrap_or_else(|| "unknown".to_owned()),
            },
            _ => return Err(ProbeError::NoCertificate),
        };

        // Polite close: close_notify and FIN, then read what the peer still sends (session
        // tickets, its close_notify) so closing does not reset the connection. The chain is
        // already in hand: a peer that does not cooperate in time changes nothing.
        if let Ok(Ok(())) = timeout_at(deadline, tls.shutdown()).await {
            let linger = deadline.min(Instant::now() + CLOSE_LINGER);
            let _ = timeout_at(linger, discard_until_eof(&mut tls)).await;
        }
        Ok(chain)
    }
}

/// Reads and drops everything until EOF or an error.
async fn discard_until_eof<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut buf = [0u8; 2048];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Probes one proxy: [`Prober::probe_chain`] with a prober bounded by `timeout`.
///
/// Uses the process-wide client configuration (built on first use), so calling this repeatedly
/// costs no more than keeping a [`Prober`].
pub async fn probe_chain(
    addr: SocketAddr,
    server_name: &str,
    timeout: Duration,
) -> Result<PresentedChain, ProbeError> {
    Prober::new(timeout)?.probe_chain(addr, server_name).await
}

/// The client configuration, built once per process.
fn shared_client_config() -> Result<Arc<ClientConfig>, ProbeError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, rustls::Error>> = OnceLock::new();
    CONFIG
        .get_or_init(|| build_client_config().map(Arc::new))
        .clone()
        .map_err(|e| ProbeError::Tls(format!("building the tls client configuration: {e}")))
}

fn build_client_config() -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(InspectOnlyVerifier::new(&provider));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // A resumed session would not carry the proxy's current chain.
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    config.alpn_protocols = Vec::new();
    config.enable_sni = true;
    Ok(config)
}

/// Accepts any certificate chain (we inspect what is presented; the aggregator verifies), but
/// verifies the handshake signature so the peer proves possession of the leaf's private key.
#[derive(Debug)]
struct InspectOnlyVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl InspectOnlyVerifier {
    fn new(provider: &CryptoProvider) -> InspectOnlyVerifier {
        InspectOnlyVerifier {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for InspectOnlyVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable with a TLS 1.3-only configuration; verified properly all the same.
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn connect_error(err: io::Error) -> ProbeError {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => ProbeError::ConnectionRefused,
        _ => ProbeError::ConnectFailed(err.to_string()),
    }
}

/// Maps a failed handshake. `received` is how many bytes the peer had sent.
fn handshake_error(err: io::Error, received: u64) -> ProbeError {
    if let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return match tls {
            rustls::Error::AlertReceived(alert) => ProbeError::Alert(alert_name(*alert)),
            rustls::Error::NoCertificatesPresented => ProbeError::NoCertificate,
            // A server that ignores `supported_versions` and answers with TLS 1.2: rustls sends
            // the `protocol_version` alert itself.
            rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
                | rustls::PeerIncompatible::ServerDoesNotSupportTls12Or13,
            ) => ProbeError::Tls(format!(
                "protocol_version: the server does not speak tls 1.3 ({tls})"
            )),
            other => ProbeError::Tls(other.to_string()),
        };
    }
    let closed = matches!(
        err.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    );
    if closed && received == 0 {
        ProbeError::ClosedBeforeServerHello
    } else if closed {
        ProbeError::Io(format!(
            "connection closed during the handshake after {received} bytes from the peer: {err}"
        ))
    } else {
        ProbeError::Io(err.to_string())
    }
}

/// The RFC name of a TLS alert: `AccessDenied` → `access_denied`, `UnknownCA` → `unknown_ca`.
fn alert_name(alert: AlertDescription) -> String {
    match alert.as_str() {
        Some(camel) => camel_to_snake(camel),
        None => format!("unknown_alert_{}", u8::from(alert)),
    }
}

fn camel_to_snake(camel: &str) -> String {
    let chars: Vec<char> = camel.chars().collect();
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev_lower = chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = chars[i - 1].is_ascii_uppercase();
            if prev_lower || (prev_upper && next_lower) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn version_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A TCP stream that counts the bytes received from the peer, so a failed handshake can tell
/// "closed before answering anything" from "closed half-way".
#[derive(Debug)]
struct CountingStream {
    inner: TcpStream,
    received: u64,
}

impl CountingStream {
    fn new(inner: TcpStream) -> CountingStream {
        CountingStream { inner, received: 0 }
    }

    fn received(&self) -> u64 {
        self.received
    }
}

impl AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = buf.filled().len().saturating_sub(before);
            self.received = self.received.saturating_add(n as u64);
        }
        polled
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
