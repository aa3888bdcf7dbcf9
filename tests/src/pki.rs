//! Certificate material for simulated clusters: Linkerd's own test roots (with their keys) and
//! roots, issuers and leaves generated with rcgen, shaped like what Linkerd's identity
//! controller issues (ECDSA P-256; leaf CN and only DNS SAN = the identity name).

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;

/// The project's shared folder (Linkerd's fixtures, the incident cases): `ANCHORWATCH_SHARED`,
/// else `shared/` beside the repository (as CI lays it out).
pub fn shared_dir() -> std::path::PathBuf {
    std::env::var_os("ANCHORWATCH_SHARED")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// Where Linkerd's test material lives (`<shared>/fixtures/linkerd`).
pub fn fixtures_dir() -> std::path::PathBuf {
    shared_dir().join("fixtures/linkerd")
}

/// Reads a fixture file.
pub fn fixture(path: &str) -> anyhow::Result<String> {
    let p = fixtures_dir().join(path);
    std::fs::read_to_string(&p).with_context(|| {
        format!(
            "cannot read fixture {}: the project's shared folder must sit beside the repository, or set ANCHORWATCH_SHARED to it",
            p.display()
        )
    })
}

/// A certificate authority that can sign: a root or an issuer.
pub struct Ca {
    /// Its certificate, PEM.
    pub cert_pem: String,
    /// Its certificate, DER.
    pub cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key.
pub struct Leaf {
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// PKCS#8 DER of the key.
    pub key_pkcs8: Vec<u8>,
}

/// Validity window starting `from` seconds and ending `to` seconds from now.
pub fn window(from: i64, to: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (
        now + time::Duration::seconds(from),
        now + time::Duration::seconds(to),
    )
}

impl Ca {
    /// A CA from a PEM certificate and PEM key (e.g. Linkerd's `proxy-test-util/ca1.pem`).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::from_pem(key_pem).context("cannot read CA key")?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).context("cannot read CA certificate")?;
        let der = pem_to_der(cert_pem)?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            cert_der: der,
            issuer,
        })
    }

    /// Linkerd's test root `ca1` or `ca2` (same subject `OU=None`, different keys).
    pub fn linkerd_test_root(name: &str) -> anyhow::Result<Ca> {
        Ca::from_pem(
            &fixture(&format!("proxy-test-util/{name}.pem"))?,
            &fixture(&format!("proxy-test-util/{name}-key.pem"))?,
        )
    }

    /// A new self-signed ECDSA P-256 root with this common name, valid for ten years.
    pub fn root(common_name: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(common_name, window(-3600, 10 * 365 * 86_400));
        params.use_authority_key_identifier_extension = false;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An issuer (intermediate CA) under this CA, as `linkerd-identity` uses.
    pub fn issuer(
        &self,
        common_name: &str,
        validity: (OffsetDateTime, OffsetDateTime),
    ) -> anyhow::Result<Ca> {
        let key = KeyPair::generate()?;
        let params = ca_params(common_name, validity);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A TLS server certificate under this CA for `names` (DNS names or IP addresses, as
    /// subject alternative names), valid for a day: `(certificate PEM, PKCS#8 key PEM)`, as a
    /// `kubernetes.io/tls` Secret holds them.
    pub fn server_pem(&self, names: &[&str]) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.is_ca = IsCa::NoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (from, to) = window(-60, 86_400);
        params.not_before = from;
        params.not_after = to;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A proxy leaf for `identity_name` under this CA.
    pub fn leaf(
        &self,
        identity_name: &str,
        validity: (OffsetDateTime, OffsetDateTime),
    ) -> anyhow::Result<Leaf> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![identity_name.to_string()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, identity_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = validity.0;
        params.not_after = validity.1;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            der: cert.der().to_vec(),
            key_pkcs8: key.serialize_der(),
        })
    }
}

fn ca_params(common_name: &str, validity: (OffsetDateTime, OffsetDateTime)) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = validity.0;
    params.not_after = validity.1;
    params
}

/// DER of the first PEM block.
pub fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    let pki = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .context("no PEM certificate")??;
    Ok(pki.to_vec())
}

/// PEM of a DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
