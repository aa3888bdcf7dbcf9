//! TLS probe of a multicluster gateway's proxy, the way agents probe local proxies: this module
//! mirrors `agent/src/probe.rs` (the crates share only `proto`, so it is repeated here, kept to
//! what a gateway needs: no metrics scrape, no polite close-and-drain).
//!
//! TLS 1.3 only, SNI = the Link's `gatewayIdentity`, no client certificate, no ALPN, no
//! resumption, and a verifier that accepts any chain (it is kept as raw DER; the aggregator
//! verifies it like any other) but checks the handshake signature, so the gateway proves it
//! holds the leaf's key. Failures are classified with the agent's kinds (`timeout`, `refused`,
//! `connect_failed`, `closed_before_server_hello`, `alert`, `no_certificate`,
//! `invalid_server_name`, `tls`, `io`) plus `unresolvable` for a host name the system resolver
//! cannot resolve.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a gateway probe got no chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The host name did not resolve.
    #[error("cannot resolve {0}")]
    Unresolvable(String),
    /// Resolving, connecting and handshaking did not finish in time.
    #[error("timed out")]
    Timeout,
    /// Nothing listens on the address.
    #[error("connection refused")]
    ConnectionRefused,
    /// The TCP connection failed for another reason.
    #[error("connect failed: {0}")]
    ConnectFailed(String),
    /// Closed before a byte of ServerHello: what a proxy does on a wrong SNI.
    #[error("connection closed before server hello")]
    ClosedBeforeServerHello,
    /// A fatal TLS alert (`access_denied`: the proxy has no identity yet).
    #[error("received fatal tls alert: {0}")]
    Alert(String),
    /// The handshake completed without a certificate.
    #[error("no certificate presented")]
    NoCertificate,
    /// The identity is not a valid SNI.
    #[error("invalid server name: {0}")]
    InvalidServerName(String),
    /// Any other TLS failure.
    #[error("tls error: {0}")]
    Tls(String),
    /// An I/O failure after the peer started answering.
    #[error("i/o error: {0}")]
    Io(String),
}

impl ProbeError {
    /// The machine-readable kind, as agents report it.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeError::Unresolvable(_) => "unresolvable",
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

/// What a gateway probe found: the address probed and the presented chain (raw DER, leaf
/// first), or why there is none, with the address once the host resolved.
pub type Outcome = Result<(SocketAddr, Vec<Vec<u8>>), (Option<SocketAddr>, ProbeError)>;

/// Probes gateways with one client configuration. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Prober {
    config: Arc<ClientConfig>,
    timeout: Duration,
}

impl Prober {
    /// A prober whose every probe (resolution included) is bounded by `timeout`.
    pub fn new(timeout: Duration) -> Result<Prober, ProbeError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = Arc::new(InspectOnly(provider.signature_verification_algorithms));
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ProbeError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // A resumed session would not carry the gateway's current chain.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Prober {
            config: Arc::new(config),
            timeout,
        })
    }

    /// Resolves `host` (an IP literal, or a name for the system resolver; the first address
    /// wins), completes a TLS 1.3 handshake on `port` with SNI = `identity` and returns the
    /// address probed and the presented chain. The address is returned with the error too, once
    /// known.
    pub async fn probe(&self, host: &str, port: u16, identity: &str) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let addr = match tokio::time::timeout_at(deadline, resolve(host, port)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err((None, e)),
            Err(_) => return Err((None, ProbeError::Timeout)),
        };
        match tokio::time::timeout_at(deadline, self.handshake(addr, identity)).await {
            Ok(Ok(chain)) => Ok((addr, chain)),
            Ok(Err(e)) => Err((Some(addr), e)),
            Err(_) => Err((Some(addr), ProbeError::Timeout)),
        }
    }

    async fn handshake(
        &self,
        addr: SocketAddr,
        identity: &str,
    ) -> Result<Vec<Vec<u8>>, ProbeError> {
        let name = ServerName::try_from(identity.to_owned())
            .map_err(|e| ProbeError::InvalidServerName(format!("{identity:?}: {e}")))?;
        let tcp = TcpStream::connect(addr).await.map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => ProbeError::ConnectionRefused,
            _ => ProbeError::ConnectFailed(e.to_string()),
        })?;
        let io = Counting {
            inner: tcp,
            received: 0,
        };
        let mut tls = match TlsConnector::from(self.config.clone())
            .connect(name, io)
            .into_fallible()
            .await
        {
            Ok(tls) => tls,
            Err((e, io)) => return Err(handshake_error(e, io.received)),
        };
        let chain: Vec<Vec<u8>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        // The chain is in hand; a close the peer does not acknowledge changes nothing.
        let _ = tokio::time::timeout(Duration::from_millis(250), tls.shutdown()).await;
        if chain.is_empty() {
            return Err(ProbeError::NoCertificate);
        }
        Ok(chain)
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ProbeError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let unresolvable = |why: String| ProbeError::Unresolvable(format!("{host}: {why}"));
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| unresolvable(e.to_string()))?
        .next()
        .ok_or_else(|| unresolvable("no address".into()))
}

/// Maps a failed handshake; `received` = bytes the peer had sent.
fn handshake_error(err: io::Error, received: u64) -> ProbeError {
    if let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return match tls {
            rustls::Error::AlertReceived(a) => ProbeError::Alert(alert_name(&format!("{a:?}"))),
            rustls::Error::NoCertificatesPresented => ProbeError::NoCertificate,
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
    match (closed, received) {
        (true, 0) => ProbeError::ClosedBeforeServerHello,
        (true, n) => ProbeError::Io(format!(
            "closed during the handshake after {n} bytes: {err}"
        )),
        _ => ProbeError::Io(err.to_string()),
    }
}

/// An alert's RFC name from rustls' variant name: `AccessDenied` → `access_denied`,
/// `UnknownCA` → `unknown_ca`.
fn alert_name(variant: &str) -> String {
    let chars: Vec<char> = variant.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
        if c.is_ascii_uppercase() && prev.is_some_and(|p| !p.is_ascii_uppercase() || next_lower) {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Accepts any chain (inspected, not trusted), but checks the handshake signature.
#[derive(Debug)]
struct InspectOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for InspectOnly {
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

/// A TCP stream counting the bytes received, so that "closed before answering" can be told
/// from "closed half-way".
struct Counting {
    inner: TcpStream,
    received: u64,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before) as u64;
        self.received = self.received.saturating_add(n);
        polled
    }
}

impl AsyncWrite for Counting {
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
}

#[cfg(test)]
mod tests;
