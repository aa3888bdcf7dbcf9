//! The view rustls-webpki 0.103 has of a certificate (`src/cert.rs`, `src/trust_anchor.rs`,
//! `src/x509.rs`): the byte ranges path building compares and verifies, plus the
//! issuer-independent checks of `verify_cert.rs` parsed once per certificate.

use std::ops::Range;

use sha2::{Digest, Sha256};

use super::der::{self, Reader};
use super::{ChainError, DerType};

/// A certificate as webpki's `Cert::from_der` sees it. Ranges index the certificate's DER.
#[derive(Debug, Clone)]
pub(super) struct WebCert {
    /// `tbsCertificate`, tag and length included: the signed bytes.
    pub(super) tbs: Range<usize>,
    /// Contents of the outer `signatureAlgorithm`.
    pub(super) signature_algorithm: Range<usize>,
    /// The signature bits.
    pub(super) signature: Range<usize>,
    /// Contents of the issuer Name.
    pub(super) issuer: Range<usize>,
    /// Contents of the subject Name.
    pub(super) subject: Range<usize>,
    /// Contents of the SubjectPublicKeyInfo.
    pub(super) spki: Range<usize>,
    /// Contents of the nameConstraints SEQUENCE.
    pub(super) name_constraints: Option<Range<usize>>,
    /// Contents of the subjectAltName SEQUENCE.
    pub(super) subject_alt_name: Option<Range<usize>>,
    /// The validity window, parsed; `Err` = webpki's parse error for it. Errors are boxed
    /// here and below: they are rare, and a pod's leaf is held for as long as the pod.
    pub(super) validity: Result<Validity, Box<ChainError>>,
    /// basicConstraints, parsed; `Err` = webpki's parse error for it.
    pub(super) basic_constraints: Result<BasicConstraints, Box<ChainError>>,
    /// The outcome of webpki's EKU check for `KeyUsage::server_auth()`.
    pub(super) eku_server_auth: Result<(), Box<ChainError>>,
    /// The SPKI is on webpki's `DISTRUSTED_SPKIS` list.
    pub(super) distrusted: bool,
}

/// notBefore/notAfter in Unix seconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Validity {
    pub(super) not_before: u64,
    pub(super) not_after: u64,
    /// Bytes after notAfter: webpki reports `BadDer`, but only once the time checks passed.
    pub(super) trailing: bool,
}

/// The basicConstraints extension (absent = not a CA).
#[derive(Debug, Clone, Copy)]
pub(super) struct BasicConstraints {
    pub(super) is_ca: bool,
    pub(super) path_len: Option<usize>,
    /// Bytes after the fields: `BadDer`, but only once the role checks passed.
    pub(super) trailing: bool,
}

/// What webpki keeps of a trust anchor (`anchor_from_trusted_cert`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AnchorView {
    pub(super) subject: Range<usize>,
    pub(super) spki: Range<usize>,
    pub(super) name_constraints: Option<Range<usize>>,
}

#[derive(Clone, Copy, PartialEq)]
enum ExtensionPolicy {
    Strict,
    IgnoreCritical,
}

impl WebCert {
    /// The anchor view of the same certificate: when `Cert::from_der` reads it, so does
    /// `anchor_from_trusted_cert`, with the same ranges (it only ignores more).
    pub(super) fn anchor_view(&self) -> AnchorView {
        AnchorView {
            subject: self.subject.clone(),
            spki: self.spki.clone(),
            name_constraints: self.name_constraints.clone(),
        }
    }
}

/// `Cert::from_der`: the view used for the end entity and for presented intermediates.
pub(super) fn parse_chain_cert(der: &[u8]) -> Result<WebCert, ChainError> {
    parse(der, ExtensionPolicy::Strict)
}

/// `anchor_from_trusted_cert`: unknown critical extensions are ignored and a v1 certificate
/// is read with the v1 layout.
pub(super) fn parse_anchor(der: &[u8]) -> Result<AnchorView, ChainError> {
    match parse(der, ExtensionPolicy::IgnoreCritical) {
        Ok(cert) => Ok(AnchorView {
            subject: cert.subject,
            spki: cert.spki,
            name_constraints: cert.name_constraints,
        }),
        Err(ChainError::UnsupportedCertVersion) => {
            parse_v1_anchor(der).map_err(|_| ChainError::BadDer)
        }
        Err(e) => Err(e),
    }
}

fn parse_v1_anchor(der: &[u8]) -> Result<AnchorView, ChainError> {
    der::read_all(der, ChainError::BadDer, |cert| {
        der::nested(
            cert,
            der::SEQUENCE,
            ChainError::TrailingData(DerType::TrustAnchorV1),
            |cert| {
                let anchor = der::nested(
                    cert,
                    der::SEQUENCE,
                    ChainError::TrailingData(DerType::TrustAnchorV1TbsCertificate),
                    |tbs| {
                        der::expect_tag(tbs, der::INTEGER)?;
                        der::expect_tag(tbs, der::SEQUENCE)?;
                        der::expect_tag(tbs, der::SEQUENCE)?;
                        der::expect_tag(tbs, der::SEQUENCE)?;
                        let subject = der::expect_tag(tbs, der::SEQUENCE)?;
                        let spki = der::expect_tag(tbs, der::SEQUENCE)?;
                        Ok(AnchorView {
                            subject: der::span(der, subject),
                            spki: der::span(der, spki),
                            name_constraints: None,
                        })
                    },
                );
                der::expect_tag(cert, der::SEQUENCE)?;
                der::expect_tag(cert, der::BIT_STRING)?;
                anchor
            },
        )
    })
}

#[derive(Default)]
struct Extensions<'a> {
    key_usage: Option<&'a [u8]>,
    subject_alt_name: Option<&'a [u8]>,
    basic_constraints: Option<&'a [u8]>,
    name_constraints: Option<&'a [u8]>,
    crl_distribution_points: Option<&'a [u8]>,
    eku: Option<&'a [u8]>,
    scts: Option<&'a [u8]>,
}

/// 1.3.6.1.4.1.11129.2.4.2 (RFC 6962 SCT list).
const SCT_LIST_OID: [u8; 10] = [43, 6, 1, 4, 1, 214, 121, 2, 4, 2];
/// id-ce, 2.5.29.
const ID_CE: [u8; 2] = [0x55, 0x1d];

fn parse(der: &[u8], policy: ExtensionPolicy) -> Result<WebCert, ChainError> {
    let (tbs_contents, tbs, algorithm, signature) = der::read_all(
        der,
        ChainError::TrailingData(DerType::Certificate),
        |cert| {
            der::nested(
                cert,
                der::SEQUENCE,
                ChainError::TrailingData(DerType::SignedData),
                |cert| {
                    let (tbs, contents) = cert.read_partial(|r| {
                        der::expect_tag_limited(r, der::SEQUENCE, der::TWO_BYTE_DER_SIZE)
                    })?;
                    let algorithm = der::expect_tag(cert, der::SEQUENCE)?;
                    let signature = der::bit_string_with_no_unused_bits(cert)?;
                    Ok((contents, tbs, algorithm, signature))
                },
            )
        },
    )?;

    der::read_all(
        tbs_contents,
        ChainError::TrailingData(DerType::CertificateTbsCertificate),
        |tbs_reader| {
            der::nested(
                tbs_reader,
                der::CONTEXT_CONSTRUCTED_0,
                ChainError::UnsupportedCertVersion,
                |version| {
                    if der::read_u8(version)? != 2 {
                        return Err(ChainError::UnsupportedCertVersion);
                    }
                    Ok(())
                },
            )?;
            der::expect_tag(tbs_reader, der::INTEGER)?;
            let inner_algorithm = der::expect_tag(tbs_reader, der::SEQUENCE)?;
            if inner_algorithm != algorithm {
                return Err(ChainError::SignatureAlgorithmMismatch);
            }
            let issuer = der::expect_tag(tbs_reader, der::SEQUENCE)?;
            let validity = der::expect_tag(tbs_reader, der::SEQUENCE)?;
            let subject = der::expect_tag(tbs_reader, der::SEQUENCE)?;
            let spki = der::expect_tag(tbs_reader, der::SEQUENCE)?;

            let mut ext = Extensions::default();
            if !tbs_reader.at_end() {
                der::nested(
                    tbs_reader,
                    der::CONTEXT_CONSTRUCTED_3,
                    ChainError::TrailingData(DerType::CertificateExtensions),
                    |tagged| {
                        der::nested_of_mut(
                            tagged,
                            der::SEQUENCE,
                            der::SEQUENCE,
                            ChainError::TrailingData(DerType::Extension),
                            true,
                            |extension| remember_extension(&mut ext, extension, policy),
                        )
                    },
                )?;
            }
            // Parsed for webpki's error values only: revocation and CT are not checked.
            let _ = (ext.key_usage, ext.crl_distribution_points, ext.scts);

            Ok(WebCert {
                tbs: der::span(der, tbs),
                signature_algorithm: der::span(der, algorithm),
                signature: der::span(der, signature),
                issuer: der::span(der, issuer),
                subject: der::span(der, subject),
                spki: der::span(der, spki),
                name_constraints: ext.name_constraints.map(|v| der::span(der, v)),
                subject_alt_name: ext.subject_alt_name.map(|v| der::span(der, v)),
                validity: parse_validity(validity).map_err(Box::new),
                basic_constraints: parse_basic_constraints(ext.basic_constraints).map_err(Box::new),
                eku_server_auth: check_eku_server_auth(ext.eku).map_err(Box::new),
                distrusted: is_distrusted(spki),
            })
        },
    )
}

/// `remember_cert_extension` + `remember_extension` + `set_extension_once`.
fn remember_extension<'a>(
    ext: &mut Extensions<'a>,
    extension: &mut Reader<'a>,
    policy: ExtensionPolicy,
) -> Result<(), ChainError> {
    let id = der::expect_tag(extension, der::OID)?;
    let critical = der::read_bool(extension)?;
    let value = der::expect_tag(extension, der::OCTET_STRING)?;
    let unsupported = || match (policy, critical) {
        (ExtensionPolicy::Strict, true) => Err(ChainError::UnsupportedCriticalExtension),
        _ => Ok(()),
    };

    if id == SCT_LIST_OID {
        return set_once(&mut ext.scts, || {
            der::read_all(value, ChainError::BadDer, |v| {
                der::expect_tag(v, der::OCTET_STRING)
            })
        });
    }
    let last = match id {
        [a, b, last] if [*a, *b] == ID_CE => *last,
        _ => return unsupported(),
    };
    let out = match last {
        15 => &mut ext.key_usage,
        17 => &mut ext.subject_alt_name,
        19 => &mut ext.basic_constraints,
        30 => &mut ext.name_constraints,
        31 => &mut ext.crl_distribution_points,
        37 => &mut ext.eku,
        _ => return unsupported(),
    };
    set_once(out, || {
        der::read_all(value, ChainError::BadDer, |v| match last {
            15 => Ok(v.read_bytes_to_end()),
            _ => der::expect_tag(v, der::SEQUENCE),
        })
    })
}

fn set_once<'a>(
    slot: &mut Option<&'a [u8]>,
    parse: impl FnOnce() -> Result<&'a [u8], ChainError>,
) -> Result<(), ChainError> {
    if slot.is_some() {
        return Err(ChainError::ExtensionValueInvalid);
    }
    *slot = Some(parse()?);
    Ok(())
}

fn parse_validity(validity: &[u8]) -> Result<Validity, ChainError> {
    let mut reader = Reader::new(validity);
    let not_before = der::read_time(&mut reader)?;
    let not_after = der::read_time(&mut reader)?;
    Ok(Validity {
        not_before,
        not_after,
        trailing: !reader.at_end(),
    })
}

fn parse_basic_constraints(value: Option<&[u8]>) -> Result<BasicConstraints, ChainError> {
    let Some(value) = value else {
        return Ok(BasicConstraints {
            is_ca: false,
            path_len: None,
            trailing: false,
        });
    };
    let mut reader = Reader::new(value);
    let is_ca = der::read_bool(&mut reader)?;
    // Like webpki (mozilla bug 985025), a pathLenConstraint is read even when cA is false.
    let path_len = if reader.at_end() {
        None
    } else {
        Some(usize::from(der::read_u8(&mut reader)?))
    };
    Ok(BasicConstraints {
        is_ca,
        path_len,
        trailing: !reader.at_end(),
    })
}

/// id-kp-serverAuth, 1.3.6.1.5.5.7.3.1.
const EKU_SERVER_AUTH: [u8; 8] = [43, 6, 1, 5, 5, 7, 3, 1];

/// `check_eku` with `KeyUsage::server_auth()` (required if the extension is present).
fn check_eku_server_auth(eku: Option<&[u8]>) -> Result<(), ChainError> {
    let Some(eku) = eku else {
        return Ok(());
    };
    if eku.is_empty() {
        return Err(ChainError::EmptyEkuExtension);
    }
    let mut reader = Reader::new(eku);
    let mut presented = Vec::new();
    while !reader.at_end() {
        let id = der::expect_tag(&mut reader, der::OID)?;
        if id == EKU_SERVER_AUTH {
            return Ok(());
        }
        presented.push(decode_oid(id));
    }
    Err(ChainError::InvalidPurpose { presented })
}

/// webpki's `OidDecoder`, which rustls uses to name the purposes a certificate allows.
fn decode_oid(encoded: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut cur: usize = 0;
    let mut first = true;
    for &byte in encoded {
        // Shifts by 8, like webpki's decoder; wraps instead of panicking on absurd input.
        cur = (cur << 8).wrapping_add(usize::from(byte & 0x7f));
        if byte & 0x80 > 0 {
            continue;
        }
        if first {
            let (a, b) = match cur {
                ..=39 => (0, cur),
                40..=79 => (1, cur - 40),
                _ => (2, cur - 80),
            };
            out.push(a);
            out.push(b);
            first = false;
        } else {
            out.push(cur);
        }
        cur = 0;
    }
    out
}

/// SHA-256 of webpki 0.103.17's `DISTRUSTED_SPKIS` (`src/data/distrusted/*.spki.der`: Entrust
/// CAs, SPKI contents without tag and length, 118 bytes each). Distrust is checked by content,
/// so comparing digests of the same bytes is equivalent.
const DISTRUSTED_SPKI_LEN: usize = 118;
const DISTRUSTED_SPKI_SHA256: [[u8; 32]; 8] = [
    unhex("2d5f988ee3ceaf696845a34299ca3e05816429cdb5de92427889533175f97b95"),
    unhex("616e9a92539c40f454813f7fb8ae4a6db719498495215774f02d8b8b5a615d36"),
    unhex("bdf5ab18303069ebc3e3ddbb0fc0613693acef01b2fb7be1a0624aab60fbff0d"),
    unhex("b941c7577b918f7b9a9374aff3b02d8eda92545c86adb5b5268d1e121fe58ce2"),
    unhex("e8263cea915a92109a29fb497105dceeeb58fa099c2552c4082aff1e1a9a33b2"),
    unhex("09f75d128061fcdc6d31d8317ce3fe0aea4dab2c66777ce548858dd23f763ce7"),
    unhex("7f09de2d155cc9fbc2dc4585f2c134ea3fc04ea9d9b3e31fa2d6bf9fdc0a02a2"),
    unhex("6fc13706463e00b2cd2ae357f86de2441e59d501e322c7a02a531a9871e450f6"),
];

pub(super) fn is_distrusted(spki_contents: &[u8]) -> bool {
    if spki_contents.len() != DISTRUSTED_SPKI_LEN {
        return false;
    }
    let digest: [u8; 32] = Sha256::digest(spki_contents).into();
    DISTRUSTED_SPKI_SHA256.contains(&digest)
}

const fn unhex(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}
