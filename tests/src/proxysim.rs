//! A simulated Linkerd proxy admin port (4191), for end-to-end tests and the sandbox.
//!
//! Each [`SimProxy`] listens on its own address (simulated pods get their own loopback address,
//! `127.x.y.z:4191`; any port works) and behaves like a real linkerd2-proxy admin port:
//! - every connection is classified by its first byte: `0x16` is TLS, anything else plain HTTP;
//! - TLS: TLS 1.3 only (a TLS 1.2-only client gets a `protocol_version` alert). The ClientHello
//!   is read first; a missing SNI or one that is not the proxy's identity name gets the connection
//!   closed without a ServerHello. With the right SNI a [`ProxyIdentity::Ready`] proxy completes the
//!   handshake (no client certificate; no ALPN or `transport.l5d.io/v1`) and presents its chain,
//!   while a [`ProxyIdentity::Pending`] proxy sends a fatal `access_denied` alert;
//! - HTTP/1.1: `GET /metrics` (Prometheus text with the identity certificate expiry gauge, named
//!   per [`MetricsStyle`]), `GET /ready` (200 `ready\n`, or 503 while pending), `GET /live`
//!   (200 `live\n`); anything else 404. One request per connection (`connection: close`);
//! - [`ProxyIdentity::Silent`]: accepts TCP and never answers (a hung proxy).
//!
//! Every read is bounded by a timeout, so no connection task outlives its peer for long, and
//! [`SimProxy::stop`] (or dropping the `SimProxy`) aborts them all. No process-global state is
//! installed: configurations use the aws-lc-rs provider explicitly.

mod admin;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::server::Acceptor;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::LazyConfigAcceptor;

/// The ALPN protocol Linkerd uses between proxies; the only one the simulated admin port accepts
/// (clients may also offer none).
pub const LINKERD_ALPN: &[u8] = b"transport.l5d.io/v1";

/// The raw plaintext record of a fatal `access_denied` alert (what a proxy without an identity
/// answers a ClientHello with).
pub const ACCESS_DENIED_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31];

/// Bound on waiting for a new connection's first byte.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a whole TLS handshake (ClientHello to client Finished).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an established TLS connection may stay idle before the proxy closes it.
const TLS_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a silent proxy holds a connection it never answers.
const SILENT_HOLD: Duration = Duration::from_secs(120);
/// Bound on the final close (close_notify, FIN) and on draining what the peer still sends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the simulated proxy holds as its identity.
#[derive(Clone)]
pub enum ProxyIdentity {
    /// Presents `chain` (leaf first, raw DER) with `key_pkcs8` (PKCS#8 DER of the leaf key) to a
    /// TLS 1.3 client whose SNI == `name`.
    Ready {
        /// The proxy's identity name (`<sa>.<ns>.serviceaccount.identity.<ns>.<trust domain>`).
        name: String,
        /// The chain to present, leaf first, raw DER.
        chain: Vec<Vec<u8>>,
        /// PKCS#8 DER of the leaf's private key.
        key_pkcs8: Vec<u8>,
    },
    /// No certificate yet: TLS handshakes with SNI == `name` get a fatal `access_denied` alert;
    /// `/ready` is 503.
    Pending {
        /// The proxy's identity name.
        name: String,
    },
    /// Accepts TCP and never answers (a hung proxy).
    Silent,
}

impl fmt::Debug for ProxyIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyIdentity::Ready { name, chain, .. } => f
                .debug_struct("Ready")
                .field("name", name)
                .field("chain_len", &chain.len())
                .finish_non_exhaustive(),
            ProxyIdentity::Pending { name } => {
                f.debug_struct("Pending").field("name", name).finish()
            }
            ProxyIdentity::Silent => f.write_str("Silent"),
        }
    }
}

/// Which generation of proxy metrics `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsStyle {
    /// Proxies ≤ 2.14: integer gauge `identity_cert_expiration_timestamp_seconds`.
    Legacy,
    /// Proxies 2.15: `identity_cert_*` from a prometheus-client registry (float gauge written
    /// with an exponent, `# UNIT` lines).
    V2_15,
    /// Proxies ≥ 2.16: `control_identity_cert_expiration_timestamp_seconds`.
    Control,
    /// No identity certificate metrics at all (other proxy metrics only).
    None,
}

/// A running simulated proxy admin port. Dropping it aborts its tasks too.
pub struct SimProxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl fmt::Debug for SimProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimProxy")
            .field("local_addr", &self.local_addr)
            .field("handshakes", &self.handshakes())
            .finish_non_exhaustive()
    }
}

impl SimProxy {
    /// Binds `addr` (e.g. `127.0.3.7:4191`, or port 0 for any) and starts serving.
    ///
    /// Fails when the address cannot be bound or a `Ready` identity's chain and key do not form
    /// a usable TLS configuration (e.g. the key is not the leaf's).
    pub async fn start(
        addr: SocketAddr,
        identity: ProxyIdentity,
        metrics: MetricsStyle,
    ) -> anyhow::Result<SimProxy> {
        let active = Active::build(identity)?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the simulated proxy admin port on {addr}"))?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            active: Mutex::new(Arc::new(active)),
            handshakes: AtomicU64::new(0),
            metrics,
            started_at: Utc::now(),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(SimProxy {
            local_addr,
            shared,
            accept_task,
        })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces the identity; takes effect for the next connection (connections already accepted
    /// keep the identity they started with).
    ///
    /// # Panics
    /// When a `Ready` identity's chain and key do not form a usable TLS configuration; use
    /// [`SimProxy::try_set_identity`] to get an error instead.
    pub fn set_identity(&self, identity: ProxyIdentity) {
        if let Err(e) = self.try_set_identity(identity) {
            panic!("invalid simulated proxy identity: {e:#}");
        }
    }

    /// Replaces the identity for the next connection, or fails (leaving the current one) when a
    /// `Ready` identity's chain and key do not form a usable TLS configuration.
    pub fn try_set_identity(&self, identity: ProxyIdentity) -> anyhow::Result<()> {
        let active = Arc::new(Active::build(identity)?);
        *self
            .shared
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = active;
        Ok(())
    }

    /// Number of completed TLS handshakes so far.
    pub fn handshakes(&self) -> u64 {
        self.shared.handshakes.load(Ordering::SeqCst)
    }

    /// Stops listening and aborts every connection task. The address can be bound again as soon
    /// as this returns.
    pub async fn stop(mut self) {
        self.accept_task.abort();
        // Dropping the aborted task drops the listener and the JoinSet of connection tasks
        // (which aborts them); awaiting makes sure that has happened.
        let _ = (&mut self.accept_task).await;
    }
}

impl Drop for SimProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// State shared by the accept loop, the connection tasks and the handle.
struct Shared {
    active: Mutex<Arc<Active>>,
    handshakes: AtomicU64,
    metrics: MetricsStyle,
    started_at: DateTime<Utc>,
}

impl Shared {
    fn active(&self) -> Arc<Active> {
        Arc::clone(&self.active.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A [`ProxyIdentity`] made ready to serve.
enum Active {
    Ready {
        name: String,
        config: Arc<ServerConfig>,
        /// The leaf's not_after (unix seconds), for the metrics; `None` if the leaf does not
        /// parse.
        expires_at: Option<i64>,
    },
    Pending {
        name: String,
    },
    Silent,
}

impl Active {
    fn build(identity: ProxyIdentity) -> anyhow::Result<Active> {
        Ok(match identity {
            ProxyIdentity::Ready {
                name,
                chain,
                key_pkcs8,
            } => {
                anyhow::ensure!(!chain.is_empty(), "the chain to present is empty");
                let expires_at = leaf_not_after(&chain[0]);
                let certs = chain.into_iter().map(CertificateDer::from).collect();
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let mut config = ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .context("tls 1.3 with aws-lc-rs")?
                    .with_no_client_auth()
                    .with_single_cert(certs, key)
                    .context("the chain and key do not form a tls server identity")?;
                config.alpn_protocols = vec![LINKERD_ALPN.to_vec()];
                // Probes must always see the certificates: no tickets, no resumption.
                config.send_tls13_tickets = 0;
                config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                Active::Ready {
                    name,
                    config: Arc::new(config),
                    expires_at,
                }
            }
            ProxyIdentity::Pending { name } => Active::Pending { name },
            ProxyIdentity::Silent => Active::Silent,
        })
    }
}

fn leaf_not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    // The identity is fixed per connection, at accept time.
                    let active = shared.active();
                    connections.spawn(serve_connection(tcp, active, Arc::clone(&shared)));
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::debug!(error = %e, "simulated proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(tcp: TcpStream, active: Arc<Active>, shared: Arc<Shared>) {
    if let Active::Silent = *active {
        hold_silently(tcp).await;
        return;
    }
    let mut first = [0u8; 1];
    match timeout(FIRST_BYTE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] == 0x16 {
        serve_tls(tcp, &active, &shared).await;
    } else {
        admin::serve_http(tcp, &active, &shared).await;
    }
}

/// Never answers; reads (and discards) until the peer goes away or the hold time passes.
async fn hold_silently(mut tcp: TcpStream) {
    let _ = timeout(SILENT_HOLD, discard_until_eof(&mut tcp)).await;
}

async fn serve_tls(tcp: TcpStream, active: &Active, shared: &Shared) {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let start = match timeout_at(deadline, LazyConfigAcceptor::new(Acceptor::default(), tcp)).await
    {
        Ok(Ok(start)) => start,
        // Not a ClientHello (rustls already answered with an alert where it could), or too slow.
        _ => return,
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    match active {
        Active::Ready { name, config, .. } if sni.as_deref() == Some(name.as_str()) => {
            // A TLS 1.2-only client fails here: rustls sends `protocol_version` itself.
            let Ok(Ok(mut tls)) = timeout_at(deadline, start.into_stream(Arc::clone(config))).await
            else {
                return;
            };
            shared.handshakes.fetch_add(1, Ordering::SeqCst);
            // Nothing is served over TLS on the admin port here: wait for the client to close
            // (close_notify or FIN), or close an idle connection ourselves.
            let _ = timeout(TLS_IDLE_TIMEOUT, discard_until_eof(&mut tls)).await;
            let _ = timeout(CLOSE_TIMEOUT, tls.shutdown()).await;
        }
        Active::Pending { name } if sni.as_deref() == Some(name.as_str()) => {
            let mut tcp = start.io;
            if let Ok(Ok(())) = timeout(CLOSE_TIMEOUT, tcp.write_all(&ACCESS_DENIED_ALERT)).await {
                let _ = timeout(CLOSE_TIMEOUT, tcp.shutdown()).await;
                let _ = timeout(CLOSE_TIMEOUT, discard_until_eof(&mut tcp)).await;
            }
        }
        // Missing or wrong SNI: close without a ServerHello (dropping `start` closes the socket).
        _ => {}
    }
}

/// Reads and drops everything until EOF or an error.
async fn discard_until_eof<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Signs a Linkerd-style identity leaf under a CA: ECDSA P-256 key, CN and the only DNS SAN =
/// `identity_name`, EKU serverAuth + clientAuth, key usage digitalSignature + keyEncipherment,
/// basicConstraints CA:FALSE, authority key identifier of the CA.
///
/// `ca_key_pem` may be PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`, as Linkerd's test CAs).
/// Returns `(leaf DER, leaf key as PKCS#8 DER)`, ready for [`ProxyIdentity::Ready`].
pub fn sign_leaf(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    identity_name: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let ca_key = KeyPair::from_pem(ca_key_pem).context("cannot parse the CA private key")?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).context("cannot parse the CA certificate")?;
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("cannot generate a P-256 key")?;

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, identity_name);
    params.subject_alt_names =
        vec![SanType::DnsName(identity_name.try_into().with_context(
            || format!("{identity_name:?} is not a DNS name"),
        )?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = offset_date_time(not_before)?;
    params.not_after = offset_date_time(not_after)?;

    let leaf = params
        .signed_by(&leaf_key, &issuer)
        .context("cannot sign the leaf")?;
    Ok((leaf.der().to_vec(), leaf_key.serialize_der()))
}

fn offset_date_time(at: DateTime<Utc>) -> anyhow::Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp())
        .with_context(|| format!("{at} is out of range for a certificate"))
}
