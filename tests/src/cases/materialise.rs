//! Turning a [`Case`] into certificates and the texts a cluster would hold.
//!
//! Keys are random; everything else follows from the case: one key pair per key label, certificates
//! signed by their `signed_by` label's key under that certificate's subject, leaves shaped like
//! linkerd-identity's (ECDSA P-256, CN and only DNS SAN = the identity name, serverAuth + clientAuth).

use super::pem::{certificate_ders, join_texts, substitute};
use super::spec::{
    Alg, AnchorsSpec, Bundle, Case, CertSpec, EventSpec, Expect, GeneratedCert, IssuedLeaf,
    LeafSpec, Linkerd, NodeSpec, OwnerRef, PodSpec, SecretScheme,
};
use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize, SerialNumber, SignatureAlgorithm,
};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

/// A case with every certificate generated and every text built: plain data, ready to be turned
/// into the analysis input or served by simulated components.
#[derive(Clone, Debug)]
pub struct Materialised {
    /// The case id.
    pub id: String,
    /// The case file.
    pub file: PathBuf,
    /// The case's step within its file (1-based).
    pub step: usize,
    /// True time.
    pub now: DateTime<Utc>,
    /// Linkerd's settings, defaults applied.
    pub linkerd: Linkerd,
    /// Every certificate of `certs`, by label.
    pub certs: BTreeMap<String, CertMaterial>,
    /// `ca-bundle.crt` of `linkerd-identity-trust-roots`; `None`: the ConfigMap does not exist.
    pub trust_roots: Option<String>,
    /// What the ConfigMap held before its last change.
    pub trust_roots_before: Option<String>,
    /// When the ConfigMap last changed.
    pub trust_roots_changed: Option<DateTime<Utc>>,
    /// `values.identityTrustAnchorsPEM` of `linkerd-config`.
    pub linkerd_config_anchors: Option<String>,
    /// The issuer Secret.
    pub issuer_secret: Option<IssuerSecretMaterial>,
    /// The running identity controller.
    pub identity: Option<IdentityMaterial>,
    /// Nodes by name, as in the case.
    pub nodes: BTreeMap<String, NodeSpec>,
    /// Pods, in case order.
    pub pods: Vec<PodMaterial>,
    /// Events, as in the case.
    pub events: Vec<EventSpec>,
    /// The expectations, as parsed.
    pub expect: Expect,
}

/// One labelled certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertMaterial {
    /// PEM text. Generated: one block ending in a line break. Raw: the case text after `{{LABEL}}`
    /// substitution, verbatim.
    pub pem: String,
    /// DER. Raw: the first CERTIFICATE block that decodes, empty when none does.
    pub der: Vec<u8>,
    /// Whether the text came from `raw:`.
    pub raw: bool,
    /// The key pair of a generated certificate.
    pub key: Option<KeyMaterial>,
}

/// A generated key pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMaterial {
    /// Key label (`cert:<label>` when the case gives none).
    pub label: String,
    /// Algorithm.
    pub alg: Alg,
    /// PKCS#8 DER of the private key.
    pub pkcs8_der: Vec<u8>,
    /// PKCS#8 PEM of the private key.
    pub pkcs8_pem: String,
}

/// The issuer Secret's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerSecretMaterial {
    /// Secret type.
    pub scheme: SecretScheme,
    /// `crt.pem` + `key.pem`, or `tls.crt` + `tls.key` (+ `ca.crt` when the case gives `ca`).
    /// The key is that of the first `crt` certificate, left out when that one is literal PEM.
    pub data: BTreeMap<String, Vec<u8>>,
}

/// The running identity controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityMaterial {
    /// Its node.
    pub node: String,
    /// Label of the issuer it signs with.
    pub issuer: String,
    /// That issuer's DER (empty when literal PEM that does not decode).
    pub issuer_der: Vec<u8>,
    /// The bundle it read at start-up, as text.
    pub anchors_pem: String,
    /// DER of each decodable certificate block of `anchors_pem`.
    pub anchors_der: Vec<Vec<u8>>,
    /// Whether proxies can reach it.
    pub reachable: bool,
}

/// One meshed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMaterial {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Controller; `None`: a bare pod.
    pub owner: Option<OwnerRef>,
    /// Node.
    pub node: String,
    /// Pod IP.
    pub ip: Option<IpAddr>,
    /// Linked cluster it belongs to.
    pub remote: Option<String>,
    /// ServiceAccount.
    pub service_account: String,
    /// `<sa>.<ns>.serviceaccount.identity.<linkerd ns>.<trust domain>`.
    pub identity_name: String,
    /// Trust anchors in the proxy's spec.
    pub anchors: SpecAnchors,
    /// Proxy start, true time.
    pub started: Option<DateTime<Utc>>,
    /// What the proxy presents.
    pub presented: Presented,
    /// PKCS#8 DER of a generated leaf's key.
    pub leaf_key_pkcs8: Option<Vec<u8>>,
    /// Proxy log lines.
    pub log: Vec<String>,
}

impl PodMaterial {
    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The anchors text the proxy holds: its spec's, or for `anchors_from: configmap` the bundle
    /// as it was when the proxy started (FORMAT.md: `trust_roots_before` if it started before
    /// `trust_roots_changed`). `None`: the ConfigMap it reads does not exist.
    pub fn effective_anchors<'a>(&'a self, m: &'a Materialised) -> Option<&'a str> {
        match &self.anchors {
            SpecAnchors::Pem(text) => Some(text),
            SpecAnchors::ConfigMap => m.bundle_at(self.started),
        }
    }
}

/// Trust anchors in a proxy's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecAnchors {
    /// The PEM text of the env variable.
    Pem(String),
    /// Read from the trust-roots ConfigMap (`configMapKeyRef`).
    ConfigMap,
}

/// What a proxy presents in a handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presented {
    /// Nothing: the handshake fails.
    Nothing,
    /// `[leaf DER, its issuer's DER]`.
    Chain(Vec<Vec<u8>>),
    /// Literal PEM from the case: the text, and the DER of each CERTIFICATE block that decodes.
    Raw {
        /// The text after `{{LABEL}}` substitution.
        text: String,
        /// DER of the decodable blocks, in order.
        ders: Vec<Vec<u8>>,
    },
}

impl Presented {
    /// The DER certificates presented (empty for nothing).
    pub fn ders(&self) -> &[Vec<u8>] {
        match self {
            Presented::Nothing => &[],
            Presented::Chain(d) | Presented::Raw { ders: d, .. } => d,
        }
    }
}

impl Materialised {
    /// The pod `namespace/name`.
    pub fn pod(&self, full_name: &str) -> Option<&PodMaterial> {
        self.pods.iter().find(|p| p.full_name() == full_name)
    }

    /// The trust-roots ConfigMap text a proxy started at `started` read: `trust_roots_before`
    /// when it started before `trust_roots_changed` (and that is known), else the current text.
    pub fn bundle_at(&self, started: Option<DateTime<Utc>>) -> Option<&str> {
        match (started, self.trust_roots_changed, &self.trust_roots_before) {
            (Some(s), Some(changed), Some(before)) if s < changed => Some(before),
            _ => self.trust_roots.as_deref(),
        }
    }
}

/// Generates every certificate of `case` and builds the texts FORMAT.md describes.
pub fn materialise(case: &Case) -> anyhow::Result<Materialised> {
    materialise_inner(case).with_context(|| format!("cannot materialise case {}", case.origin()))
}

fn materialise_inner(case: &Case) -> anyhow::Result<Materialised> {
    let mut g = Generator {
        case,
        keys: BTreeMap::new(),
        params: BTreeMap::new(),
        out: BTreeMap::new(),
        serial: 0,
    };
    for (label, spec) in &case.certs {
        if matches!(spec, CertSpec::Generated(_)) {
            g.generate(label, &mut Vec::new())?;
        }
    }
    let mut all_certs = std::mem::take(&mut g.out);
    let generated_pems: BTreeMap<String, String> = all_certs
        .iter()
        .map(|(l, c)| (l.clone(), c.pem.clone()))
        .collect();
    let subst = |field: &str, text: &str| {
        substitute(text, &generated_pems).map_err(|e| anyhow!("{field}: {e}"))
    };
    for (label, spec) in &case.certs {
        if let CertSpec::Raw(text) = spec {
            let pem = subst(&format!("certs.{label}.raw"), text)?;
            let der = certificate_ders(&pem)
                .into_iter()
                .next()
                .unwrap_or_default();
            all_certs.insert(
                label.clone(),
                CertMaterial {
                    pem,
                    der,
                    raw: true,
                    key: None,
                },
            );
        }
    }

    let certs = &all_certs;
    let labels_text = |field: &str, labels: &[String]| -> anyhow::Result<String> {
        let texts = labels
            .iter()
            .map(|l| {
                certs
                    .get(l)
                    .map(|c| c.pem.as_str())
                    .ok_or_else(|| anyhow!("{field}: unknown certificate label `{l}`"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(join_texts(texts))
    };
    let cert = |field: &str, label: &str| {
        certs
            .get(label)
            .ok_or_else(|| anyhow!("{field}: unknown certificate label `{label}`"))
    };

    let c = &case.cluster;
    let trust_roots = match &c.trust_roots {
        None => None,
        Some(Bundle::Labels(l)) => Some(labels_text("cluster.trust_roots", l)?),
        Some(Bundle::Raw(text)) => Some(subst("cluster.trust_roots_raw", text)?),
    };
    let trust_roots_before = c
        .trust_roots_before
        .as_ref()
        .map(|l| labels_text("cluster.trust_roots_before", l))
        .transpose()?;
    let linkerd_config_anchors = c
        .linkerd_config_anchors
        .as_ref()
        .map(|l| labels_text("cluster.linkerd_config_anchors", l))
        .transpose()?;

    let issuer_secret = match &c.issuer_secret {
        None => None,
        Some(s) => {
            let (crt_key, key_key) = match s.scheme {
                SecretScheme::LinkerdTls => ("crt.pem", "key.pem"),
                SecretScheme::KubernetesTls => ("tls.crt", "tls.key"),
            };
            let mut data = BTreeMap::new();
            data.insert(
                crt_key.to_string(),
                labels_text("cluster.issuer_secret.crt", &s.crt)?.into_bytes(),
            );
            if let Some(key) = s
                .crt
                .first()
                .and_then(|l| certs.get(l))
                .and_then(|c| c.key.as_ref())
            {
                data.insert(key_key.to_string(), key.pkcs8_pem.clone().into_bytes());
            }
            if let Some(ca) = &s.ca {
                data.insert(
                    "ca.crt".to_string(),
                    labels_text("cluster.issuer_secret.ca", ca)?.into_bytes(),
                );
            }
            Some(IssuerSecretMaterial {
                scheme: s.scheme,
                data,
            })
        }
    };

    let identity = match &c.identity {
        None => None,
        Some(id) => {
            let anchors_pem = labels_text("cluster.identity.anchors", &id.anchors)?;
            Some(IdentityMaterial {
                node: id.node.clone(),
                issuer: id.issuer.clone(),
                issuer_der: cert("cluster.identity.issuer", &id.issuer)?.der.clone(),
                anchors_der: certificate_ders(&anchors_pem),
                anchors_pem,
                reachable: id.reachable,
            })
        }
    };

    let mut pods = Vec::with_capacity(c.pods.len());
    for (i, p) in c.pods.iter().enumerate() {
        let field = format!("cluster.pods[{i}] ({})", p.full_name());
        let anchors = match &p.anchors {
            AnchorsSpec::Labels(l) => {
                SpecAnchors::Pem(labels_text(&format!("{field}.anchors"), l)?)
            }
            AnchorsSpec::Raw(text) => {
                SpecAnchors::Pem(subst(&format!("{field}.anchors_raw"), text)?)
            }
            AnchorsSpec::ConfigMap => SpecAnchors::ConfigMap,
        };
        let identity_name = case.identity_name(&p.namespace, &p.service_account);
        let (presented, leaf_key_pkcs8) = match &p.leaf {
            None => (Presented::Nothing, None),
            Some(LeafSpec::Raw(text)) => {
                let text = subst(&format!("{field}.leaf.raw"), text)?;
                let ders = certificate_ders(&text);
                (Presented::Raw { text, ders }, None)
            }
            Some(LeafSpec::Issued(leaf)) => {
                let (der, key) = g
                    .leaf(leaf, &identity_name)
                    .with_context(|| format!("{field}.leaf"))?;
                let issuer_der = cert(&format!("{field}.leaf.signed_by"), &leaf.signed_by)?
                    .der
                    .clone();
                (Presented::Chain(vec![der, issuer_der]), Some(key))
            }
        };
        pods.push(pod_material(
            p,
            identity_name,
            anchors,
            presented,
            leaf_key_pkcs8,
        ));
    }

    Ok(Materialised {
        id: case.id.clone(),
        file: case.file.clone(),
        step: case.step,
        now: case.now,
        linkerd: case.linkerd.clone(),
        certs: all_certs,
        trust_roots,
        trust_roots_before,
        trust_roots_changed: c.trust_roots_changed,
        linkerd_config_anchors,
        issuer_secret,
        identity,
        nodes: c.nodes.clone(),
        pods,
        events: c.events.clone(),
        expect: case.expect.clone(),
    })
}

fn pod_material(
    p: &PodSpec,
    identity_name: String,
    anchors: SpecAnchors,
    presented: Presented,
    leaf_key_pkcs8: Option<Vec<u8>>,
) -> PodMaterial {
    PodMaterial {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        owner: p.owner.clone(),
        node: p.node.clone(),
        ip: p.ip,
        remote: p.remote.clone(),
        service_account: p.service_account.clone(),
        identity_name,
        anchors,
        started: p.started,
        presented,
        leaf_key_pkcs8,
        log: p.log.clone(),
    }
}

/// Generation state of one case.
struct Generator<'a> {
    case: &'a Case,
    /// Key label → key pair.
    keys: BTreeMap<String, KeyPair>,
    /// Certificate label → the parameters it was made from (its subject, for signing under it).
    params: BTreeMap<String, CertificateParams>,
    /// Certificate label → result.
    out: BTreeMap<String, CertMaterial>,
    /// Certificates made so far, for distinct serial numbers.
    serial: u32,
}

impl Generator<'_> {
    /// Generates `label` after its signer; `stack` holds the labels waiting on it.
    fn generate(&mut self, label: &str, stack: &mut Vec<String>) -> anyhow::Result<()> {
        if self.out.contains_key(label) {
            return Ok(());
        }
        let spec: &GeneratedCert = match self.case.certs.get(label) {
            Some(CertSpec::Generated(g)) => g,
            Some(CertSpec::Raw(_)) => {
                bail!("certs.{label} is literal PEM and cannot sign")
            }
            None => bail!("unknown certificate label `{label}`"),
        };
        if stack.iter().any(|l| l == label) {
            bail!("signing cycle through certs.{label}");
        }
        if let Some(signer) = &spec.signed_by {
            stack.push(label.to_string());
            self.generate(signer, stack)
                .with_context(|| format!("certs.{label}.signed_by"))?;
            stack.pop();
        }

        let key_label = spec.key_label(label);
        self.ensure_key(&key_label, spec.alg)?;
        let serial = self.next_serial();
        let key = &self.keys[&key_label];
        let (not_before, not_after) = spec.validity(self.case.now);
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&spec.cn);
        params.not_before = to_time(not_before)?;
        params.not_after = to_time(not_after)?;
        params.serial_number = Some(serial_number(key, serial));
        if spec.ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        } else {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
        }
        let cert = match &spec.signed_by {
            None => params.self_signed(key)?,
            Some(signer) => {
                params.use_authority_key_identifier_extension = true;
                params.signed_by(key, &self.issuer(signer)?)?
            }
        };
        let material = CertMaterial {
            pem: ensure_newline(cert.pem()),
            der: cert.der().to_vec(),
            raw: false,
            key: Some(KeyMaterial {
                label: key_label,
                alg: spec.alg,
                pkcs8_der: key.serialize_der(),
                pkcs8_pem: key.serialize_pem(),
            }),
        };
        self.params.insert(label.to_string(), params);
        self.out.insert(label.to_string(), material);
        Ok(())
    }

    /// A leaf as linkerd-identity issues it, and its key (PKCS#8 DER).
    fn leaf(
        &mut self,
        leaf: &IssuedLeaf,
        identity_name: &str,
    ) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let name = leaf.name.as_deref().unwrap_or(identity_name);
        let key = KeyPair::generate()?;
        let (not_before, not_after) = leaf.validity(self.case.now);
        let mut params = CertificateParams::new(vec![name.to_string()])
            .with_context(|| format!("identity name `{name}`"))?;
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_time(not_before)?;
        params.not_after = to_time(not_after)?;
        params.serial_number = Some(serial_number(&key, self.next_serial()));
        let cert = params.signed_by(&key, &self.issuer(&leaf.signed_by)?)?;
        Ok((cert.der().to_vec(), key.serialize_der()))
    }

    /// Signs under certificate `label`: its subject, its key.
    fn issuer(&self, label: &str) -> anyhow::Result<Issuer<'_, &KeyPair>> {
        let params = self
            .params
            .get(label)
            .ok_or_else(|| anyhow!("`{label}` is not a generated certificate"))?;
        let key_label = match self.case.certs.get(label) {
            Some(CertSpec::Generated(g)) => g.key_label(label),
            _ => bail!("`{label}` is not a generated certificate"),
        };
        let key = self
            .keys
            .get(&key_label)
            .ok_or_else(|| anyhow!("no key for `{label}`"))?;
        Ok(Issuer::from_params(params, key))
    }

    /// Generates the key pair of `label` on first use.
    fn ensure_key(&mut self, label: &str, alg: Alg) -> anyhow::Result<()> {
        match self.keys.get(label) {
            Some(key) if key.algorithm() != signature_algorithm(alg) => {
                bail!("key `{label}` is used with two algorithms")
            }
            Some(_) => Ok(()),
            None => {
                let key =
                    generate_key(alg).with_context(|| format!("cannot generate {alg} key"))?;
                self.keys.insert(label.to_string(), key);
                Ok(())
            }
        }
    }

    /// The next certificate number of the case.
    fn next_serial(&mut self) -> u32 {
        self.serial += 1;
        self.serial
    }
}

/// A positive 16-byte serial: bytes of the key (distinct between runs), then the certificate's
/// number (distinct within the case, even for certificates that share a key).
fn serial_number(key: &KeyPair, n: u32) -> SerialNumber {
    let raw = key.public_key_raw();
    let tail = &raw[raw.len().saturating_sub(11)..];
    let mut bytes = vec![0x01];
    bytes.extend_from_slice(tail);
    bytes.resize(12, 0);
    bytes.extend_from_slice(&n.to_be_bytes());
    SerialNumber::from_slice(&bytes)
}

fn signature_algorithm(alg: Alg) -> &'static SignatureAlgorithm {
    match alg {
        Alg::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Alg::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        Alg::P521 => &rcgen::PKCS_ECDSA_P521_SHA512,
        Alg::Rsa2048 | Alg::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
    }
}

fn generate_key(alg: Alg) -> Result<KeyPair, rcgen::Error> {
    match alg {
        Alg::P256 | Alg::P384 | Alg::P521 => KeyPair::generate_for(signature_algorithm(alg)),
        Alg::Rsa2048 => KeyPair::generate_rsa_for(signature_algorithm(alg), RsaKeySize::_2048),
        Alg::Rsa4096 => KeyPair::generate_rsa_for(signature_algorithm(alg), RsaKeySize::_4096),
    }
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn to_time(t: DateTime<Utc>) -> anyhow::Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .with_context(|| format!("time {t} out of range"))
}

fn ensure_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}
