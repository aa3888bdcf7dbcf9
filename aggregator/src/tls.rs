//! TLS for the gRPC port: the certificate and key come from a `kubernetes.io/tls` Secret (one
//! cert-manager keeps, or one made by hand), are followed with a watch and swapped in without a
//! restart: new handshakes get the new certificate, open streams keep theirs until they
//! reconnect. The channel does not depend on the Linkerd mesh it watches (its own PKI, and the
//! aggregator and agents are not meshed).

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// The certificate the server presents now; `None` until a usable one was read.
#[derive(Debug, Default)]
pub struct CurrentCert {
    key: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CurrentCert {
    /// Presents `key` from the next handshake on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = Some(key);
    }

    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.key.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.key.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Why a Secret's certificate cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    /// A key is missing from the Secret.
    #[error("the Secret has no {0}")]
    Missing(&'static str),
    /// `tls.crt` holds no certificate.
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    /// `tls.key` holds no usable key.
    #[error("tls.key: {0}")]
    Key(String),
    /// Key and certificate do not belong together.
    #[error("tls.key does not match the certificate in tls.crt")]
    Mismatch,
}

/// A certificate chain and key from PEM (`tls.crt`, `tls.key`).
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Key(e.to_string()))?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| CertError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(CertError::Mismatch),
        // The public key could not be compared (an unusual algorithm): let handshakes decide.
        Err(_) => Ok(certified),
    }
}

/// Reads a `kubernetes.io/tls` Secret's data.
pub fn from_secret(
    data: Option<&std::collections::BTreeMap<String, Vec<u8>>>,
) -> Result<CertifiedKey, CertError> {
    let get = |k: &'static str| {
        data.and_then(|d| d.get(k))
            .filter(|v| !v.is_empty())
            .ok_or(CertError::Missing(k))
    };
    certified_key(get("tls.crt")?, get("tls.key")?)
}

/// The server configuration: TLS 1.2 and 1.3, ALPN `h2`, certificates from `current`.
pub fn server_config(current: Arc<CurrentCert>) -> rustls::ServerConfig {
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(current);
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections on `listener` and hands on those whose TLS handshake completes; each
/// handshake runs in its own task, bounded by a timeout, so a slow or silent client holds up
/// nobody.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<
    std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Follows the Secret `namespace/name` and loads each usable version into `current`. A version
/// that cannot be used is logged and the previous certificate stays.
pub async fn follow_secret(
    client: kube::Client,
    namespace: String,
    name: String,
    current: Arc<CurrentCert>,
) {
    use k8s_openapi::api::core::v1::Secret;
    let api: kube::Api<Secret> = kube::Api::namespaced(client, &namespace);
    let what = format!("TLS Secret {namespace}/{name}");
    crate::watch::follow_one(api, &name, &what.clone(), move |secret| {
        let Some(secret) = secret else {
            warn!(secret = %what, "not found: the gRPC port keeps its certificate, if it has one");
            return;
        };
        let data = secret
            .data
            .map(|d| d.into_iter().map(|(k, v)| (k, v.0)).collect());
        match from_secret(data.as_ref()) {
            Ok(key) => {
                current.set(Arc::new(key));
                info!(secret = %what, "serving certificate loaded");
            }
            Err(e) => warn!(secret = %what, error = %e, "serving certificate not usable; keeping the previous one"),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_and_its_key_load_and_mismatches_are_refused() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let (cert, key) = pair("anchorwatch-aggregator.anchorwatch.svc");
        assert!(certified_key(cert.as_bytes(), key.as_bytes()).is_ok());
        let (_, other_key) = pair("x");
        assert_eq!(
            certified_key(cert.as_bytes(), other_key.as_bytes()).err(),
            Some(CertError::Mismatch)
        );
        assert_eq!(
            certified_key(b"garbage", key.as_bytes()).err(),
            Some(CertError::NoCertificate)
        );
        assert!(matches!(
            certified_key(
                cert.as_bytes(),
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(CertError::Key(_))
        ));
        let mut data = std::collections::BTreeMap::new();
        data.insert("tls.crt".to_string(), cert.into_bytes());
        assert_eq!(
            from_secret(Some(&data)).err(),
            Some(CertError::Missing("tls.key"))
        );
        assert_eq!(from_secret(None).err(), Some(CertError::Missing("tls.crt")));
    }
}
