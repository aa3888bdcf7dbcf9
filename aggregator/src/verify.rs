//! Chain verification with the verdicts of the Linkerd proxy.
//!
//! A proxy verifies its peer's chain with rustls-webpki 0.103 as a *server* certificate: the end
//! entity is `presented[0]`, the intermediates `presented[1..]`, the trust anchors the bundle the
//! proxy was started with, and rustls prints the failure (`BadSignature`, `UnknownIssuer`,
//! `Expired`, `NotValidYet`, …). This module reaches the same verdict, with the same reason,
//! by running webpki's path-building algorithm itself over certificates parsed once:
//!
//! ```text
//!  PEM / DER ──parse──► ParsedCert (Arc, keyed by SHA-256 of DER)
//!                          │  display fields (x509-parser)
//!                          │  webpki's view: ranges, validity, basicConstraints, EKU (cert.rs)
//!                          ▼
//!  Verifier::verify(chain, anchors, time)
//!      path building as webpki's build_chain_inner (path.rs)
//!          └─ "C is signed by P's key": a fact cached per (C, P) fingerprint pair
//! ```
//!
//! Signatures never change, so a bundle change or a new evaluation time re-runs path building
//! from cached facts only. Work limits (webpki's `Budget`) are consumed per logical check, cached
//! or not, so even those verdicts match. `time = None` answers the same question with every
//! validity window ignored; [`Verifier::verify_ca`] asks it of an issuer instead of a leaf, and
//! [`check_name`] is rustls's separate name check.
//!
//! Chain certificates that x509-parser cannot read never get here: the caller reports them as
//! unreadable (`CERT_UNREADABLE`) instead of the `BadEncoding` webpki might rank for them.
//!
//! This module does no IO and reads no clock.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls_pki_types::{AlgorithmIdentifier, ServerName, SignatureVerificationAlgorithm};
use sha2::{Digest, Sha256};

mod cert;
mod der;
mod name;
mod path;
mod pem;
mod shape;

pub use pem::{PemBundle, PemError, UnreadableBlock, parse_pem_bundle, to_pem};
pub use shape::ChainShape;

use cert::{AnchorView, WebCert};
use path::{PathBuilder, SignatureFacts};

/// SHA-256 of a certificate's DER: the identity of a certificate everywhere in anchorwatch.
///
/// Displays and parses as 64 lowercase hex digits (parsing also accepts uppercase).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of `der`.
    pub fn of(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a string is not a [`Fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 64 hex digits")]
pub struct FingerprintParseError;

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| FingerprintParseError)?;
        Ok(Self(out))
    }
}

/// Why bytes are not a certificate at all (reported as `CERT_UNREADABLE`).
///
/// A certificate that parses but that webpki would reject (v1, an unknown critical extension,
/// mismatched signature algorithms, …) is *not* a `CertError`: it parses, and verifying a chain
/// that needs it reports webpki's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not a DER X.509 certificate.
    #[error("not an X.509 certificate: {0}")]
    Malformed(String),
    /// A certificate followed by more bytes.
    #[error("{0} bytes follow the certificate")]
    TrailingData(usize),
    /// A validity date chrono cannot represent.
    #[error("validity date out of range")]
    DateOutOfRange,
}

/// A certificate parsed once: what operators are shown, and what the verifier needs.
///
/// A pod's leaf is held for as long as the pod (half a million of them in a large mesh), so
/// what only queries show (serial, SANs, the key's fingerprint) is read again from the DER when
/// asked for, and webpki's rare errors are boxed.
///
/// Equality and hashing are by [`fingerprint`](Self::fingerprint).
#[derive(Clone)]
pub struct ParsedCert {
    /// The DER encoding.
    pub der: Arc<[u8]>,
    /// SHA-256 of [`der`](Self::der).
    pub fingerprint: Fingerprint,
    /// Subject name as `CN=…, O=…`, in certificate order (as `openssl x509 -subject` shows it).
    pub subject: String,
    /// Issuer name, same format as [`subject`](Self::subject).
    pub issuer: String,
    /// notBefore.
    pub not_before: DateTime<Utc>,
    /// notAfter.
    pub not_after: DateTime<Utc>,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// Key type and size: `ECDSA P-256`, `ECDSA P-384`, `ECDSA P-521`, `RSA 2048`, `Ed25519`,
    /// `ML-DSA-44`, … or the algorithm OID.
    pub key_algorithm: Cow<'static, str>,
    /// Signature algorithm: `ecdsa-with-SHA256`, `sha256WithRSAEncryption`, `ED25519`, … or
    /// the OID.
    pub signature_algorithm: Cow<'static, str>,
    subject_raw: std::ops::Range<usize>,
    issuer_raw: std::ops::Range<usize>,
    spki_raw: std::ops::Range<usize>,
    web: Result<WebCert, ChainError>,
    /// webpki's anchor view when it is not the one `web` implies (v1, unknown critical
    /// extensions, unreadable for webpki); `None`: `web`'s.
    anchor: Option<Box<Result<AnchorView, ChainError>>>,
}

impl ParsedCert {
    /// The subject Name, DER (tag and length included).
    pub fn subject_der(&self) -> &[u8] {
        self.der.get(self.subject_raw.clone()).unwrap_or_default()
    }

    /// The issuer Name, DER (tag and length included).
    pub fn issuer_der(&self) -> &[u8] {
        self.der.get(self.issuer_raw.clone()).unwrap_or_default()
    }

    /// Subject and issuer names are the same bytes (a root, or a re-keyed CA with its own name).
    pub fn is_self_issued(&self) -> bool {
        self.subject_der() == self.issuer_der()
    }

    /// Why webpki refuses this certificate as an end entity or intermediate before any path
    /// is tried (`None` when it parses for webpki).
    pub fn chain_error(&self) -> Option<&ChainError> {
        self.web.as_ref().err()
    }

    /// Why this certificate cannot be a trust anchor (rustls skips such a root); `None` when
    /// it can.
    pub fn anchor_error(&self) -> Option<&ChainError> {
        self.anchor_view().err()
    }

    /// What webpki keeps of this certificate as a trust anchor.
    fn anchor_view(&self) -> Result<AnchorView, &ChainError> {
        match (&self.anchor, &self.web) {
            (Some(own), _) => own.as_ref().as_ref().cloned(),
            (None, Ok(web)) => Ok(web.anchor_view()),
            // Not built by `parse_der`, which keeps the anchor view whenever `web` is an error.
            (None, Err(e)) => Err(e),
        }
    }

    /// SHA-256 of the full SubjectPublicKeyInfo: equal for certificates of the same key.
    pub fn spki_fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.der.get(self.spki_raw.clone()).unwrap_or_default())
    }

    /// Serial number as colon-separated hex bytes (read again from the DER).
    pub fn serial(&self) -> String {
        self.x509(|x509| x509.tbs_certificate.raw_serial_as_string())
            .unwrap_or_default()
    }

    /// DNS names of the subjectAltName extension, in order (read again from the DER).
    pub fn dns_sans(&self) -> Vec<String> {
        self.x509(|x509| dns_sans(&x509.tbs_certificate))
            .unwrap_or_default()
    }

    /// x509-parser's reading of the DER, which `parse_der` accepted once already.
    fn x509<T>(
        &self,
        read: impl FnOnce(&x509_parser::certificate::X509Certificate) -> T,
    ) -> Option<T> {
        let (_, x509) = x509_parser::parse_x509_certificate(&self.der).ok()?;
        Some(read(&x509))
    }
}

impl PartialEq for ParsedCert {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for ParsedCert {}

impl std::hash::Hash for ParsedCert {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.fingerprint.hash(state);
    }
}

impl fmt::Debug for ParsedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedCert")
            .field("fingerprint", &self.fingerprint)
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("dns_sans", &self.dns_sans())
            .field("is_ca", &self.is_ca)
            .field("key_algorithm", &self.key_algorithm)
            .finish_non_exhaustive()
    }
}

/// Parses one DER certificate.
pub fn parse_der(der: &[u8]) -> Result<ParsedCert, CertError> {
    let (rest, x509) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertError::TrailingData(rest.len()));
    }
    let date = |t: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(t.timestamp(), 0).ok_or(CertError::DateOutOfRange)
    };
    let tbs = &x509.tbs_certificate;
    let spki_der = tbs.subject_pki.raw;
    let rsa_bits = match tbs.subject_pki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Some(bit_length(rsa.modulus)),
        _ => None,
    };

    let web = cert::parse_chain_cert(der);
    let anchor = cert::parse_anchor(der);
    let anchor = match &web {
        Ok(view) if anchor.as_ref() == Ok(&view.anchor_view()) => None,
        _ => Some(Box::new(anchor)),
    };
    Ok(ParsedCert {
        der: Arc::from(der),
        fingerprint: Fingerprint::of(der),
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        not_before: date(tbs.validity.not_before)?,
        not_after: date(tbs.validity.not_after)?,
        is_ca: tbs.is_ca(),
        key_algorithm: key_algorithm_name(
            spki_der,
            rsa_bits,
            &tbs.subject_pki.algorithm.algorithm.to_id_string(),
        ),
        signature_algorithm: signature_algorithm_name(
            &x509.signature_algorithm.algorithm.to_id_string(),
        ),
        subject_raw: der::span(der, tbs.subject.as_raw()),
        issuer_raw: der::span(der, tbs.issuer.as_raw()),
        spki_raw: der::span(der, spki_der),
        web,
        anchor,
    })
}

fn dns_sans(tbs: &x509_parser::certificate::TbsCertificate) -> Vec<String> {
    match tbs.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(s) => Some((*s).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn bit_length(unsigned_be: &[u8]) -> usize {
    let digits = match unsigned_be.iter().position(|&b| b != 0) {
        Some(i) => &unsigned_be[i..],
        None => return 0,
    };
    let lead = usize::try_from(digits[0].leading_zeros()).unwrap_or(0);
    digits.len() * 8 - lead
}

fn key_algorithm_name(spki_der: &[u8], rsa_bits: Option<usize>, oid: &str) -> Cow<'static, str> {
    use rustls_pki_types::alg_id;
    let algorithm = der::read_all(spki_der, ChainError::BadDer, |r| {
        der::nested(r, der::SEQUENCE, ChainError::BadDer, |spki| {
            let algorithm = der::expect_tag(spki, der::SEQUENCE)?;
            spki.skip_to_end();
            Ok(algorithm)
        })
    })
    .unwrap_or_default();
    let named = [
        (alg_id::ECDSA_P256, "ECDSA P-256"),
        (alg_id::ECDSA_P384, "ECDSA P-384"),
        (alg_id::ECDSA_P521, "ECDSA P-521"),
        (alg_id::ECDSA_P256K1, "ECDSA secp256k1"),
        (alg_id::ED25519, "Ed25519"),
        (alg_id::ED448, "Ed448"),
        (alg_id::ML_DSA_44, "ML-DSA-44"),
        (alg_id::ML_DSA_65, "ML-DSA-65"),
        (alg_id::ML_DSA_87, "ML-DSA-87"),
    ];
    if let Some((_, name)) = named.iter().find(|(id, _)| id.as_ref() == algorithm) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(match (oid, rsa_bits) {
        ("1.2.840.113549.1.1.1", Some(bits)) => format!("RSA {bits}"),
        ("1.2.840.113549.1.1.10", Some(bits)) => format!("RSA-PSS {bits}"),
        _ => oid.to_owned(),
    })
}

fn signature_algorithm_name(oid: &str) -> Cow<'static, str> {
    Cow::Borrowed(match oid {
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.3.101.112" => "ED25519",
        "1.3.101.113" => "ED448",
        "2.16.840.1.101.3.4.3.17" => "ML-DSA-44",
        "2.16.840.1.101.3.4.3.18" => "ML-DSA-65",
        "2.16.840.1.101.3.4.3.19" => "ML-DSA-87",
        other => return Cow::Owned(other.to_owned()),
    })
}

/// The type named by webpki's `TrailingData` error (its `DerTypeId`, same names).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerType {
    BitString,
    Bool,
    Certificate,
    CertificateExtensions,
    CertificateTbsCertificate,
    Extension,
    GeneralName,
    SignedData,
    SubjectPublicKeyInfo,
    Time,
    TrustAnchorV1,
    TrustAnchorV1TbsCertificate,
}

/// Why a chain is rejected: one variant per rustls-webpki 0.103 error that verifying a server
/// chain can produce, plus the two cases rustls reports before webpki runs.
///
/// `Display` is the reason as rustls prints it in `invalid peer certificate: <reason>`: the
/// `CertificateError` variant name without its `Context` suffix (`BadSignature`,
/// `UnknownIssuer`, `Expired`, `NotValidYet`, `NotValidForName`, `InvalidPurpose`,
/// `BadEncoding`, `UnsupportedSignatureAlgorithm…`), or for errors rustls wraps in
/// `CertificateError::Other` the webpki name (`CaUsedAsEndEntity`, …).
/// [`rustls_message`](Self::rustls_message) gives rustls 0.23's whole message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The peer presented no certificate (rustls `NoCertificatesPresented`).
    #[error("NoCertificatesPresented")]
    EmptyChain,
    /// A candidate issuer has the right name but its key did not make the signature
    /// (webpki `InvalidSignatureForPublicKey`).
    #[error("BadSignature")]
    BadSignature,
    /// No path to an anchor: no issuer with the right name (webpki's default error).
    #[error("UnknownIssuer")]
    UnknownIssuer,
    /// `time` is after a path certificate's notAfter (webpki `CertExpired`).
    #[error("Expired")]
    Expired {
        /// The certificate's notAfter.
        not_after: DateTime<Utc>,
        /// The verification time, in whole seconds.
        time: DateTime<Utc>,
    },
    /// `time` is before a path certificate's notBefore (webpki `CertNotValidYet`).
    #[error("NotValidYet")]
    NotValidYet {
        /// The certificate's notBefore.
        not_before: DateTime<Utc>,
        /// The verification time, in whole seconds.
        time: DateTime<Utc>,
    },
    /// notBefore is after notAfter (webpki `InvalidCertValidity`; rustls reports `Expired`).
    #[error("Expired")]
    InvalidCertValidity,
    /// The leaf is not valid for the expected name (webpki `CertNotValidForName`).
    #[error("NotValidForName")]
    NotValidForName {
        /// The name that was checked.
        expected: String,
        /// The SAN entries, as rustls lists them (`DnsName("…")`, …).
        presented: Vec<String>,
    },
    /// A path certificate has an extendedKeyUsage without serverAuth (webpki
    /// `RequiredEkuNotFoundContext`).
    #[error("InvalidPurpose")]
    InvalidPurpose {
        /// The key purposes the certificate allows, as OID arcs.
        presented: Vec<Vec<usize>>,
    },
    /// The signature algorithm is none of the supported ones (webpki
    /// `UnsupportedSignatureAlgorithmContext`).
    #[error("UnsupportedSignatureAlgorithm")]
    UnsupportedSignatureAlgorithm {
        /// The certificate's signatureAlgorithm (contents).
        signature_algorithm_id: Vec<u8>,
        /// The algorithms the verifier supports.
        supported_algorithms: Vec<AlgorithmIdentifier>,
    },
    /// The issuer's key type cannot make this kind of signature (webpki
    /// `UnsupportedSignatureAlgorithmForPublicKeyContext`).
    #[error("UnsupportedSignatureAlgorithmForPublicKey")]
    UnsupportedSignatureAlgorithmForPublicKey {
        /// The signature algorithm tried (contents).
        signature_algorithm_id: Vec<u8>,
        /// The issuer key's algorithm (contents).
        public_key_algorithm_id: Vec<u8>,
    },
    /// Malformed DER (webpki `BadDer`; rustls `BadEncoding`).
    #[error("BadEncoding")]
    BadDer,
    /// A malformed or pre-1970 time (webpki `BadDerTime`; rustls `BadEncoding`).
    #[error("BadEncoding")]
    BadDerTime,
    /// Bytes left over inside the named structure (webpki `TrailingData`; rustls
    /// `BadEncoding`).
    #[error("BadEncoding")]
    TrailingData(DerType),
    /// A CA certificate presented as the end entity.
    #[error("CaUsedAsEndEntity")]
    CaUsedAsEndEntity,
    /// A non-CA certificate in an issuer position.
    #[error("EndEntityUsedAsCa")]
    EndEntityUsedAsCa,
    /// Too many CAs below a CA with a pathLenConstraint.
    #[error("PathLenConstraintViolated")]
    PathLenConstraintViolated,
    /// An extendedKeyUsage extension with no purposes.
    #[error("EmptyEkuExtension")]
    EmptyEkuExtension,
    /// The TBS and outer signature algorithms differ.
    #[error("SignatureAlgorithmMismatch")]
    SignatureAlgorithmMismatch,
    /// Not an X.509 v3 certificate.
    #[error("UnsupportedCertVersion")]
    UnsupportedCertVersion,
    /// A critical extension webpki does not implement.
    #[error("UnsupportedCriticalExtension")]
    UnsupportedCriticalExtension,
    /// An extension present twice.
    #[error("ExtensionValueInvalid")]
    ExtensionValueInvalid,
    /// A name outside a CA's name constraints.
    #[error("NameConstraintViolation")]
    NameConstraintViolation,
    /// A malformed name constraint.
    #[error("MalformedNameConstraint")]
    MalformedNameConstraint,
    /// An IP name constraint whose mask is not a prefix.
    #[error("InvalidNetworkMaskConstraint")]
    InvalidNetworkMaskConstraint,
    /// A malformed DNS name.
    #[error("MalformedDnsIdentifier")]
    MalformedDnsIdentifier,
    /// A name of a kind webpki cannot check.
    #[error("UnsupportedNameType")]
    UnsupportedNameType,
    /// An SPKI on webpki's distrust list.
    #[error("CertDistrusted")]
    CertDistrusted,
    /// A path would need more than 6 intermediates.
    #[error("MaximumPathDepthExceeded")]
    MaximumPathDepthExceeded,
    /// More than 100 signature checks: path building stops.
    #[error("MaximumSignatureChecksExceeded")]
    MaximumSignatureChecksExceeded,
    /// More than 200,000 path-building steps: path building stops.
    #[error("MaximumPathBuildCallsExceeded")]
    MaximumPathBuildCallsExceeded,
    /// More than 250,000 name-constraint comparisons: path building stops.
    #[error("MaximumNameConstraintComparisonsExceeded")]
    MaximumNameConstraintComparisonsExceeded,
    /// [`check_name`] was given something that is neither a DNS name nor an IP address
    /// (rustls refuses such a server name before connecting).
    #[error("InvalidDnsName")]
    InvalidServerName(String),
}

impl ChainError {
    /// webpki's `Error::rank`: when several candidate paths fail, the highest rank is reported.
    fn rank(&self) -> u32 {
        match self {
            Self::NotValidYet { .. } | Self::Expired { .. } => 290,
            Self::NotValidForName { .. } => 280,
            Self::CertDistrusted => 270,
            Self::BadSignature => 260,
            Self::SignatureAlgorithmMismatch => 250,
            Self::EmptyEkuExtension => 245,
            Self::InvalidPurpose { .. } => 240,
            Self::NameConstraintViolation => 230,
            Self::PathLenConstraintViolated => 220,
            Self::CaUsedAsEndEntity | Self::EndEntityUsedAsCa => 210,
            Self::InvalidCertValidity => 190,
            Self::InvalidNetworkMaskConstraint => 180,
            Self::UnsupportedSignatureAlgorithmForPublicKey { .. } => 150,
            Self::UnsupportedSignatureAlgorithm { .. } => 140,
            Self::UnsupportedCriticalExtension | Self::UnsupportedCertVersion => 130,
            Self::UnsupportedNameType => 95,
            Self::MaximumPathDepthExceeded => 61,
            Self::MalformedDnsIdentifier => 60,
            Self::MalformedNameConstraint => 50,
            Self::TrailingData(_) => 40,
            Self::ExtensionValueInvalid => 30,
            Self::BadDerTime => 20,
            Self::BadDer => 10,
            Self::MaximumSignatureChecksExceeded
            | Self::MaximumPathBuildCallsExceeded
            | Self::MaximumNameConstraintComparisonsExceeded
            | Self::UnknownIssuer
            | Self::EmptyChain
            | Self::InvalidServerName(_) => 0,
        }
    }

    /// webpki's `Error::most_specific`: ties keep the earlier error.
    fn most_specific(self, new: Self) -> Self {
        if self.rank() >= new.rank() { self } else { new }
    }

    /// webpki's `Error::is_fatal`: these stop path building at once.
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::MaximumSignatureChecksExceeded
                | Self::MaximumPathBuildCallsExceeded
                | Self::MaximumNameConstraintComparisonsExceeded
        )
    }

    /// A verdict about time (`Expired` or `NotValidYet` at the verification time): the only
    /// kind clock skew can cause.
    pub fn is_time_error(&self) -> bool {
        matches!(self, Self::Expired { .. } | Self::NotValidYet { .. })
    }

    /// The whole message rustls 0.23 gives for this error, as it appears in proxy logs
    /// (`invalid peer certificate: certificate expired: verification time …`).
    pub fn rustls_message(&self) -> String {
        let reason = match self {
            Self::EmptyChain => return "peer sent no certificates".to_owned(),
            Self::InvalidServerName(_) => return "invalid dns name".to_owned(),
            Self::Expired { not_after, time } => {
                let (t, n) = (unix_secs(time), unix_secs(not_after));
                format!(
                    "certificate expired: verification time {t} (UNIX), but certificate is \
                     not valid after {n} ({} seconds ago)",
                    t.saturating_sub(n)
                )
            }
            Self::NotValidYet { not_before, time } => {
                let (t, n) = (unix_secs(time), unix_secs(not_before));
                format!(
                    "certificate not valid yet: verification time {t} (UNIX), but certificate \
                     is not valid before {n} ({} seconds in future)",
                    n.saturating_sub(t)
                )
            }
            Self::NotValidForName {
                expected,
                presented,
            } => {
                let names = match presented.as_slice() {
                    [] => "is not valid for any names (according to its subjectAltName \
                           extension)"
                        .to_owned(),
                    [one] => format!("is only valid for {one}"),
                    [all_but_last @ .., last] => {
                        format!("is only valid for {} or {last}", all_but_last.join(", "))
                    }
                };
                format!("certificate not valid for name {expected:?}; certificate {names}")
            }
            Self::InvalidPurpose { presented } => {
                let allowed: Vec<String> = presented.iter().map(|p| purpose_name(p)).collect();
                format!(
                    "certificate does not allow extended key usage for server authentication, \
                     allows {}",
                    allowed.join(", ")
                )
            }
            Self::UnsupportedSignatureAlgorithm {
                signature_algorithm_id,
                supported_algorithms,
            } => format!(
                "UnsupportedSignatureAlgorithmContext {{ signature_algorithm_id: \
                 {signature_algorithm_id:?}, supported_algorithms: {supported_algorithms:?} }}"
            ),
            Self::UnsupportedSignatureAlgorithmForPublicKey {
                signature_algorithm_id,
                public_key_algorithm_id,
            } => format!(
                "UnsupportedSignatureAlgorithmForPublicKeyContext {{ signature_algorithm_id: \
                 {signature_algorithm_id:?}, public_key_algorithm_id: \
                 {public_key_algorithm_id:?} }}"
            ),
            Self::BadSignature
            | Self::UnknownIssuer
            | Self::InvalidCertValidity
            | Self::BadDer
            | Self::BadDerTime
            | Self::TrailingData(_) => self.to_string(),
            other => format!("Other(OtherError({other}))"),
        };
        format!("invalid peer certificate: {reason}")
    }
}

fn unix_secs(t: &DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

/// rustls's `ExtendedKeyPurpose` display.
fn purpose_name(oid: &[usize]) -> String {
    match oid {
        [1, 3, 6, 1, 5, 5, 7, 3, 1] => "server authentication".to_owned(),
        [1, 3, 6, 1, 5, 5, 7, 3, 2] => "client authentication".to_owned(),
        other => other
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A chain that verified: the anchor it reached and the certificates it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The trust anchor the path ends at.
    pub anchor: Fingerprint,
    /// The path below the anchor, starting with the verified chain's first certificate
    /// (presented intermediates that were not needed are absent).
    pub path: Vec<Fingerprint>,
}

/// Verifies presented chains as the proxy does, caching every signature fact.
///
/// The cache only grows: a fact "C is signed by P's key" is true or false forever.
pub struct Verifier {
    facts: SignatureFacts,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("cached_facts", &self.facts.len())
            .field("signature_checks", &self.facts.computed())
            .finish()
    }
}

/// What [`Verifier::signed_by`] reads of a child and a parent: the child's parsed view and the
/// parent's SubjectPublicKeyInfo.
fn fact_inputs<'c>(
    child: &'c ParsedCert,
    parent: &ParsedCert,
) -> Result<(&'c WebCert, std::ops::Range<usize>), ChainError> {
    let child_view = child.web.as_ref().map_err(Clone::clone)?;
    let parent_spki = match (&parent.web, parent.anchor_view()) {
        (Ok(view), _) => view.spki.clone(),
        (_, Ok(anchor)) => anchor.spki,
        (Err(e), Err(_)) => return Err(e.clone()),
    };
    Ok((child_view, parent_spki))
}

/// Computes the facts "the leaf is signed by this presented CA's key" away from the
/// [`Verifier`] — on any thread, with no lock held — for [`Verifier::learn`]. The signature
/// checks of 550,000 leaves are most of the work of taking in a cluster: done here, they run on
/// every core while the model is free.
#[derive(Clone, Copy)]
pub struct Prover {
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
}

/// A fact a [`Prover`] computed.
#[derive(Debug)]
pub struct Proven {
    key: (Fingerprint, Fingerprint),
    fact: Result<(), ChainError>,
}

impl Prover {
    /// The facts [`Verifier::chain_shape`] needs of `chain` (as presented, leaf first): the
    /// leaf against each presented CA that names its issuer.
    pub fn leaf_facts(&self, chain: &[Arc<ParsedCert>]) -> Vec<Proven> {
        let Some((leaf, cas)) = chain.split_first() else {
            return Vec::new();
        };
        cas.iter()
            .filter(|ca| {
                ca.fingerprint != leaf.fingerprint && ca.subject_der() == leaf.issuer_der()
            })
            .filter_map(|ca| {
                let (view, spki) = fact_inputs(leaf, ca).ok()?;
                Some(Proven {
                    key: (leaf.fingerprint, ca.fingerprint),
                    fact: path::check(self.algorithms, leaf, view, &ca.der[spki]),
                })
            })
            .collect()
    }
}

impl Verifier {
    /// A verifier with the algorithms of rustls's aws-lc-rs provider (the proxy's).
    pub fn new() -> Self {
        Self::with_algorithms(
            rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .all,
        )
    }

    /// A verifier accepting exactly `algorithms` (a provider's
    /// `signature_verification_algorithms.all`).
    pub fn with_algorithms(
        algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Self {
        Self {
            facts: SignatureFacts::new(algorithms),
        }
    }

    /// Verifies `chain` (as presented: end entity first) against `anchors` as a proxy verifies
    /// a server certificate: intermediates are `chain[1..]`, in any order and only if needed.
    ///
    /// `time: Some(t)` checks every path certificate's validity window at `t` (whole seconds,
    /// as webpki; times before 1970 count as 1970); `None` skips that comparison, so no verdict
    /// is `Expired { .. }` or `NotValidYet { .. }` — a malformed window (`InvalidCertValidity`,
    /// `BadDerTime`) still fails, as it would at any time. Anchor dates are never checked, and
    /// anchors webpki cannot take as anchors ([`ParsedCert::anchor_error`]) are skipped as
    /// rustls skips unparsable roots. The name is not checked: see [`check_name`].
    pub fn verify(
        &mut self,
        chain: &[Arc<ParsedCert>],
        anchors: &[Arc<ParsedCert>],
        time: Option<DateTime<Utc>>,
    ) -> Result<Verified, ChainError> {
        self.build(chain, anchors, time, false)
    }

    /// Verifies a CA chain (`chain[0]` an issuer, then its own intermediates) the way it is
    /// checked when it sits above a leaf: `Ok` exactly when a well-formed leaf it issued would
    /// verify through it. This answers "does the issuer chain to this bundle?".
    pub fn verify_ca(
        &mut self,
        chain: &[Arc<ParsedCert>],
        anchors: &[Arc<ParsedCert>],
        time: Option<DateTime<Utc>>,
    ) -> Result<Verified, ChainError> {
        self.build(chain, anchors, time, true)
    }

    fn build(
        &mut self,
        chain: &[Arc<ParsedCert>],
        anchors: &[Arc<ParsedCert>],
        time: Option<DateTime<Utc>>,
        starts_at_ca: bool,
    ) -> Result<Verified, ChainError> {
        let Some((first, intermediates)) = chain.split_first() else {
            return Err(ChainError::EmptyChain);
        };
        let first_view = first.web.as_ref().map_err(Clone::clone)?;
        let mut builder = PathBuilder {
            facts: &mut self.facts,
            anchors,
            intermediates,
            // webpki's UnixTime cannot be before 1970.
            time: time.map(|t| u64::try_from(t.timestamp()).unwrap_or(0)),
            starts_at_ca,
        };
        let (anchor, path) = builder.build((first, first_view))?;
        Ok(Verified {
            anchor: anchors[anchor].fingerprint,
            path: path.iter().map(|(c, _)| c.fingerprint).collect(),
        })
    }

    /// The cached fact "`child` is signed by `parent`'s key", computing it if needed:
    /// `Ok(())`, `BadSignature`, or why the algorithms do not fit. Names are not compared.
    pub fn signed_by(&mut self, child: &ParsedCert, parent: &ParsedCert) -> Result<(), ChainError> {
        let (child_view, parent_spki) = fact_inputs(child, parent)?;
        self.facts
            .signed_by(child, child_view, parent, &parent.der[parent_spki])
    }

    /// A [`Prover`] with this verifier's algorithms.
    pub fn prover(&self) -> Prover {
        Prover {
            algorithms: self.facts.algorithms(),
        }
    }

    /// Takes facts a [`Prover`] of this verifier computed, so that checking them again costs a
    /// lookup.
    pub fn learn(&mut self, proven: impl IntoIterator<Item = Proven>) {
        for p in proven {
            self.facts.learn(p.key, p.fact);
        }
    }

    /// How many signature facts are cached.
    pub fn cached_facts(&self) -> usize {
        self.facts.len()
    }

    /// How many signature facts have been computed (cryptographic checks run) so far.
    pub fn signature_checks(&self) -> u64 {
        self.facts.computed()
    }
}

/// Checks that `leaf` is valid for `name` as rustls does after path building
/// (`verify_server_name`): a DNS name against the DNS SANs (no CN fallback, `*.` wildcards in
/// the leftmost label), an IP address against the IP SANs.
pub fn check_name(leaf: &ParsedCert, name: &str) -> Result<(), ChainError> {
    let view = leaf.web.as_ref().map_err(Clone::clone)?;
    let san = view.subject_alt_name.clone().map(|r| &leaf.der[r]);
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(dns)) => name::verify_dns_names(dns.as_ref(), san),
        Ok(ServerName::IpAddress(ip)) => {
            let expected = ServerName::IpAddress(ip).to_str().into_owned();
            match ip {
                rustls_pki_types::IpAddr::V4(v4) => {
                    name::verify_ip_address_names(v4.as_ref(), &expected, san)
                }
                rustls_pki_types::IpAddr::V6(v6) => {
                    name::verify_ip_address_names(v6.as_ref(), &expected, san)
                }
            }
        }
        Ok(_) => Err(ChainError::UnsupportedNameType),
        Err(_) => Err(ChainError::InvalidServerName(name.to_owned())),
    }
}

#[cfg(test)]
mod tests;
