//! The case format of `shared/cases/FORMAT.md` as typed serde structs.
//!
//! Every struct that mirrors a YAML mapping denies unknown fields, so a case that uses a field this
//! runner does not know fails to load with serde_yaml's path to it (`cluster.pods[2]: unknown field
//! …`). Fields whose YAML shape is an either/or (`raw:` instead of the fields, `trust_roots` or
//! `trust_roots_raw`, `anchors` / `anchors_raw` / `anchors_from`) are read through a private mirror
//! struct and converted into an enum, so the rest of the code never sees an invalid combination.
//! References between parts of a case (labels, nodes, pods) are checked in `load`, not here.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Verdict names a case may use (DESIGN.md section 5). `ANCHOR_KEY_MISMATCH` is listed there as
/// the companion of `ISSUER_NOT_CHAINED_TO_ANCHOR`.
pub const VERDICT_NAMES: &[&str] = &[
    "OK",
    "STALE_TRUST_BUNDLE",
    "STALE_LEAF",
    "LEAF_EXPIRED",
    "LEAF_NOT_YET_VALID",
    "NAME_MISMATCH",
    "CERT_UNREADABLE",
    "UNPROBED",
    "ROTATION_IN_PROGRESS",
    "PENDING_BUNDLE_ROLLOUT",
    "UNSAFE_ANCHOR_REMOVAL",
    "ISSUER_NOT_CHAINED_TO_ANCHOR",
    "ANCHOR_KEY_MISMATCH",
    "ISSUER_EXPIRED",
    "ISSUER_NOT_YET_VALID",
    "ISSUER_EXPIRING",
    "ANCHOR_EXPIRED",
    "ANCHOR_NOT_YET_VALID",
    "ANCHOR_EXPIRING",
    "UNSUPPORTED_ALGORITHM",
    "SUBJECT_COLLISION",
    "IDENTITY_STALE_ISSUER",
    "IDENTITY_STALE_BUNDLE",
    "IDENTITY_UNREACHABLE",
    "CLOCK_SKEW",
    "MULTICLUSTER_ANCHOR_MISMATCH",
    "INCONCLUSIVE",
];

/// Subjects of `NAME(subject)` that name a cluster resource rather than a node or a pod.
pub const RESOURCE_SUBJECTS: &[&str] = &[
    "configmap/linkerd-identity-trust-roots",
    "configmap/linkerd-config",
    "secret/linkerd-identity-issuer",
];

/// How long before `now` an omitted `not_before` lies (FORMAT.md: now − 30 d).
pub const DEFAULT_NOT_BEFORE_AGO: ChronoDuration = ChronoDuration::days(30);
/// How long after `now` an omitted `not_after` lies (FORMAT.md: now + 365 d).
pub const DEFAULT_NOT_AFTER_IN: ChronoDuration = ChronoDuration::days(365);

/// One snapshot of one incident: one YAML document of a case file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique, kebab-case.
    pub id: String,
    /// The public report the case comes from, or `synthetic`.
    pub source: String,
    /// One line: what happened.
    pub summary: String,
    /// True time (the reference clock).
    pub now: DateTime<Utc>,
    /// Linkerd's settings; defaults when the block is absent.
    #[serde(default)]
    pub linkerd: Linkerd,
    /// Every certificate, by label.
    #[serde(default)]
    pub certs: BTreeMap<String, CertSpec>,
    /// The cluster as observed.
    pub cluster: Cluster,
    /// What the analysis and the plan must produce.
    pub expect: Expect,
    /// The file the case was read from (set by the loader, not a YAML field).
    #[serde(skip)]
    pub file: PathBuf,
    /// 1-based position among the file's documents: the snapshot's step (set by the loader).
    #[serde(skip)]
    pub step: usize,
}

impl Case {
    /// The identity name Linkerd certifies a pod under:
    /// `<sa>.<ns>.serviceaccount.identity.<linkerd ns>.<trust domain>`.
    pub fn identity_name(&self, namespace: &str, service_account: &str) -> String {
        format!(
            "{service_account}.{namespace}.serviceaccount.identity.{}.{}",
            self.linkerd.namespace, self.linkerd.trust_domain
        )
    }

    /// `file#step (id)`, for messages.
    pub fn origin(&self) -> String {
        format!("{}#{} ({})", self.file.display(), self.step, self.id)
    }
}

/// The `linkerd` block.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Linkerd {
    /// The control plane's namespace (default `linkerd`).
    pub namespace: String,
    /// The trust domain (default `cluster.local`).
    pub trust_domain: String,
    /// Identity backdates NotBefore by this much (default 20 s).
    #[serde(deserialize_with = "de_duration")]
    pub clock_skew_allowance: Duration,
    /// Lifetime of the leaves identity issues (default 24 h).
    #[serde(deserialize_with = "de_duration")]
    pub issuance_lifetime: Duration,
    /// Informational only.
    pub version: Option<String>,
}

impl Default for Linkerd {
    fn default() -> Self {
        Linkerd {
            namespace: "linkerd".to_string(),
            trust_domain: "cluster.local".to_string(),
            clock_skew_allowance: Duration::from_secs(20),
            issuance_lifetime: Duration::from_secs(24 * 3600),
            version: None,
        }
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration `{text}`: {e}")))
}

/// Key algorithm of a generated certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256 (the default; the only one Linkerd's issuer may use).
    #[default]
    #[serde(rename = "P-256")]
    P256,
    /// ECDSA P-384 with SHA-384.
    #[serde(rename = "P-384")]
    P384,
    /// ECDSA P-521 with SHA-512.
    #[serde(rename = "P-521")]
    P521,
    /// RSA 2048 bits, PKCS#1 v1.5 with SHA-256.
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    /// RSA 4096 bits, PKCS#1 v1.5 with SHA-256.
    #[serde(rename = "RSA-4096")]
    Rsa4096,
}

impl Alg {
    /// The name the case format uses.
    pub fn name(self) -> &'static str {
        match self {
            Alg::P256 => "P-256",
            Alg::P384 => "P-384",
            Alg::P521 => "P-521",
            Alg::Rsa2048 => "RSA-2048",
            Alg::Rsa4096 => "RSA-4096",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An entry of `certs`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "CertSpecFields")]
pub enum CertSpec {
    /// A certificate the runner generates.
    Generated(GeneratedCert),
    /// Literal, possibly corrupt, PEM text (`raw:`), `{{LABEL}}` not yet substituted.
    Raw(String),
}

/// A certificate the runner generates.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedCert {
    /// Subject common name.
    pub cn: String,
    /// Key label: certificates with the same label share one key pair. `None`: a key of its own.
    pub key: Option<String>,
    /// Whether it is a CA (basicConstraints CA, keyCertSign + cRLSign).
    pub ca: bool,
    /// Label of the certificate whose key signs it; `None`: self-signed.
    pub signed_by: Option<String>,
    /// `None`: `now` − 30 d.
    pub not_before: Option<DateTime<Utc>>,
    /// `None`: `now` + 365 d.
    pub not_after: Option<DateTime<Utc>>,
    /// Key algorithm (default P-256).
    pub alg: Alg,
}

impl GeneratedCert {
    /// The key label, with a label of its own (`cert:<label>`) when `key` is omitted.
    pub fn key_label(&self, cert_label: &str) -> String {
        self.key
            .clone()
            .unwrap_or_else(|| format!("cert:{cert_label}"))
    }

    /// The validity window, defaults applied.
    pub fn validity(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        default_validity(self.not_before, self.not_after, now)
    }
}

fn default_validity(
    not_before: Option<DateTime<Utc>>,
    not_after: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        not_before.unwrap_or(now - DEFAULT_NOT_BEFORE_AGO),
        not_after.unwrap_or(now + DEFAULT_NOT_AFTER_IN),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertSpecFields {
    cn: Option<String>,
    key: Option<String>,
    ca: Option<bool>,
    signed_by: Option<String>,
    not_before: Option<DateTime<Utc>>,
    not_after: Option<DateTime<Utc>>,
    alg: Option<Alg>,
    raw: Option<String>,
}

impl TryFrom<CertSpecFields> for CertSpec {
    type Error = String;

    fn try_from(f: CertSpecFields) -> Result<Self, String> {
        if let Some(raw) = f.raw {
            let others = [
                ("cn", f.cn.is_some()),
                ("key", f.key.is_some()),
                ("ca", f.ca.is_some()),
                ("signed_by", f.signed_by.is_some()),
                ("not_before", f.not_before.is_some()),
                ("not_after", f.not_after.is_some()),
                ("alg", f.alg.is_some()),
            ];
            let given: Vec<&str> = others.iter().filter(|o| o.1).map(|o| o.0).collect();
            if !given.is_empty() {
                return Err(format!(
                    "`raw` replaces the other certificate fields, but {} also given",
                    given.join(", ")
                ));
            }
            return Ok(CertSpec::Raw(raw));
        }
        Ok(CertSpec::Generated(GeneratedCert {
            cn: f.cn.ok_or("missing field `cn` (or `raw`) in certificate")?,
            key: f.key,
            ca: f.ca.ok_or("missing field `ca` in certificate")?,
            signed_by: f.signed_by,
            not_before: f.not_before,
            not_after: f.not_after,
            alg: f.alg.unwrap_or_default(),
        }))
    }
}

/// The `cluster` block.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "ClusterFields")]
pub struct Cluster {
    /// ConfigMap `linkerd-identity-trust-roots`, key `ca-bundle.crt`; `None`: it does not exist.
    pub trust_roots: Option<Bundle>,
    /// What the ConfigMap held before its last change.
    pub trust_roots_before: Option<Vec<String>>,
    /// When the ConfigMap last changed.
    pub trust_roots_changed: Option<DateTime<Utc>>,
    /// `values.identityTrustAnchorsPEM` in `linkerd-config`.
    pub linkerd_config_anchors: Option<Vec<String>>,
    /// The issuer Secret.
    pub issuer_secret: Option<IssuerSecretSpec>,
    /// The running linkerd-identity controller.
    pub identity: Option<IdentitySpec>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeSpec>,
    /// Meshed pods.
    pub pods: Vec<PodSpec>,
    /// Kubernetes events.
    pub events: Vec<EventSpec>,
}

/// Content of the trust-roots ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bundle {
    /// `trust_roots: [labels]`.
    Labels(Vec<String>),
    /// `trust_roots_raw: "<text>"`, `{{LABEL}}` not yet substituted.
    Raw(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFields {
    trust_roots: Option<Vec<String>>,
    trust_roots_raw: Option<String>,
    trust_roots_before: Option<Vec<String>>,
    trust_roots_changed: Option<DateTime<Utc>>,
    linkerd_config_anchors: Option<Vec<String>>,
    issuer_secret: Option<IssuerSecretSpec>,
    identity: Option<IdentitySpec>,
    #[serde(default)]
    nodes: BTreeMap<String, NodeSpec>,
    #[serde(default)]
    pods: Vec<PodSpec>,
    #[serde(default)]
    events: Vec<EventSpec>,
}

impl TryFrom<ClusterFields> for Cluster {
    type Error = String;

    fn try_from(f: ClusterFields) -> Result<Self, String> {
        let trust_roots = match (f.trust_roots, f.trust_roots_raw) {
            (Some(_), Some(_)) => {
                return Err("give `trust_roots` or `trust_roots_raw`, not both".to_string());
            }
            (Some(labels), None) => Some(Bundle::Labels(labels)),
            (None, Some(raw)) => Some(Bundle::Raw(raw)),
            (None, None) => None,
        };
        Ok(Cluster {
            trust_roots,
            trust_roots_before: f.trust_roots_before,
            trust_roots_changed: f.trust_roots_changed,
            linkerd_config_anchors: f.linkerd_config_anchors,
            issuer_secret: f.issuer_secret,
            identity: f.identity,
            nodes: f.nodes,
            pods: f.pods,
            events: f.events,
        })
    }
}

/// The issuer Secret `linkerd-identity-issuer`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSecretSpec {
    /// Secret type.
    pub scheme: SecretScheme,
    /// `crt.pem` (linkerd.io/tls) or `tls.crt` (kubernetes.io/tls): the issuer first.
    pub crt: Vec<String>,
    /// `ca.crt` (kubernetes.io/tls only).
    pub ca: Option<Vec<String>>,
}

/// Type of the issuer Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum SecretScheme {
    /// `linkerd.io/tls`: keys `crt.pem`, `key.pem`.
    #[serde(rename = "linkerd.io/tls")]
    LinkerdTls,
    /// `kubernetes.io/tls` (cert-manager): keys `tls.crt`, `tls.key`, `ca.crt`.
    #[serde(rename = "kubernetes.io/tls")]
    KubernetesTls,
}

impl SecretScheme {
    /// The Secret type string.
    pub fn name(self) -> &'static str {
        match self {
            SecretScheme::LinkerdTls => "linkerd.io/tls",
            SecretScheme::KubernetesTls => "kubernetes.io/tls",
        }
    }
}

/// The running linkerd-identity controller.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// The node it runs on.
    pub node: String,
    /// Label of the issuer it currently signs with (may lag the Secret).
    pub issuer: String,
    /// The bundle it read at start-up, by label.
    pub anchors: Vec<String>,
    /// Whether proxies can reach it.
    pub reachable: bool,
}

/// A node's clock.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Node clock minus true time, in seconds; `None` (null or absent): not measured.
    #[serde(default)]
    pub offset_s: Option<f64>,
    /// Time-sync state (absent: unknown).
    #[serde(default)]
    pub sync: SyncState,
    /// The linked cluster the node belongs to.
    #[serde(default)]
    pub remote: Option<String>,
}

/// A node's time-sync state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    /// NTP (or equivalent) synchronised.
    Synchronised,
    /// Not synchronised.
    Unsynchronised,
    /// Not known.
    #[default]
    Unknown,
}

/// A meshed pod.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "PodFields")]
pub struct PodSpec {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Controller in the pod's namespace; `None`: a bare pod.
    pub owner: Option<OwnerRef>,
    /// Node it runs on.
    pub node: String,
    /// Pod IP.
    pub ip: Option<IpAddr>,
    /// The linked cluster it belongs to.
    pub remote: Option<String>,
    /// ServiceAccount (default `default`).
    pub service_account: String,
    /// Trust anchors in the proxy's spec.
    pub anchors: AnchorsSpec,
    /// Proxy container start, true time.
    pub started: Option<DateTime<Utc>>,
    /// What the proxy presents; `None`: nothing (the handshake fails).
    pub leaf: Option<LeafSpec>,
    /// Lines from the proxy container's log.
    pub log: Vec<String>,
}

impl PodSpec {
    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// `Kind/name` of a pod's controller.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerRef {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, … (ReplicaSet implied for Deployments).
    pub kind: String,
    /// Name in the pod's namespace.
    pub name: String,
}

impl fmt::Display for OwnerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Trust anchors in a proxy's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorsSpec {
    /// `anchors: [labels]`.
    Labels(Vec<String>),
    /// `anchors_raw: "<text>"`, `{{LABEL}}` not yet substituted.
    Raw(String),
    /// `anchors_from: configmap`: read from the trust-roots ConfigMap at proxy start.
    ConfigMap,
}

/// Values of `anchors_from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AnchorsFrom {
    Configmap,
}

/// What a proxy presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeafSpec {
    /// `[leaf, its issuer]`, the leaf generated like identity issues it.
    Issued(IssuedLeaf),
    /// The whole presented chain as literal PEM, `{{LABEL}}` not yet substituted.
    Raw(String),
}

/// A leaf the runner generates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedLeaf {
    /// Label of the certificate that signs it (it is also the chain's second certificate).
    pub signed_by: String,
    /// `None`: `now` − 30 d (FORMAT.md's certificate default).
    pub not_before: Option<DateTime<Utc>>,
    /// `None`: `now` + 365 d (FORMAT.md's certificate default).
    pub not_after: Option<DateTime<Utc>>,
    /// Identity to certify instead of the pod's own.
    pub name: Option<String>,
}

impl IssuedLeaf {
    /// The validity window, defaults applied.
    pub fn validity(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        default_validity(self.not_before, self.not_after, now)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafFields {
    signed_by: Option<String>,
    not_before: Option<DateTime<Utc>>,
    not_after: Option<DateTime<Utc>>,
    name: Option<String>,
    raw: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PodFields {
    name: String,
    owner: Option<String>,
    node: String,
    ip: Option<IpAddr>,
    remote: Option<String>,
    #[serde(default = "default_service_account")]
    service_account: String,
    anchors: Option<Vec<String>>,
    anchors_raw: Option<String>,
    anchors_from: Option<AnchorsFrom>,
    started: Option<DateTime<Utc>>,
    leaf: Option<LeafFields>,
    #[serde(default)]
    log: Vec<String>,
}

fn default_service_account() -> String {
    "default".to_string()
}

impl TryFrom<PodFields> for PodSpec {
    type Error = String;

    fn try_from(f: PodFields) -> Result<Self, String> {
        let Some((namespace, name)) = split2(&f.name) else {
            return Err(format!("pod name `{}` is not namespace/name", f.name));
        };
        let owner = match &f.owner {
            None => None,
            Some(o) => {
                let Some((kind, name)) = split2(o) else {
                    return Err(format!("pod {}: owner `{o}` is not Kind/name", f.name));
                };
                Some(OwnerRef { kind, name })
            }
        };
        let anchors = match (f.anchors, f.anchors_raw, f.anchors_from) {
            (Some(labels), None, None) => AnchorsSpec::Labels(labels),
            (None, Some(raw), None) => AnchorsSpec::Raw(raw),
            (None, None, Some(AnchorsFrom::Configmap)) => AnchorsSpec::ConfigMap,
            (None, None, None) => {
                return Err(format!(
                    "pod {}: one of `anchors`, `anchors_raw`, `anchors_from` is required",
                    f.name
                ));
            }
            _ => {
                return Err(format!(
                    "pod {}: give only one of `anchors`, `anchors_raw`, `anchors_from`",
                    f.name
                ));
            }
        };
        let leaf = match f.leaf {
            None => None,
            Some(l) => Some(leaf_spec(l).map_err(|e| format!("pod {}: leaf: {e}", f.name))?),
        };
        Ok(PodSpec {
            namespace,
            name,
            owner,
            node: f.node,
            ip: f.ip,
            remote: f.remote,
            service_account: f.service_account,
            anchors,
            started: f.started,
            leaf,
            log: f.log,
        })
    }
}

fn leaf_spec(l: LeafFields) -> Result<LeafSpec, String> {
    if let Some(raw) = l.raw {
        if l.signed_by.is_some()
            || l.not_before.is_some()
            || l.not_after.is_some()
            || l.name.is_some()
        {
            return Err("`raw` replaces the other leaf fields".to_string());
        }
        return Ok(LeafSpec::Raw(raw));
    }
    Ok(LeafSpec::Issued(IssuedLeaf {
        signed_by: l.signed_by.ok_or("missing field `signed_by` (or `raw`)")?,
        not_before: l.not_before,
        not_after: l.not_after,
        name: l.name,
    }))
}

/// `a/b` with both parts non-empty and no further `/`.
fn split2(s: &str) -> Option<(String, String)> {
    let (a, b) = s.split_once('/')?;
    (!a.is_empty() && !b.is_empty() && !b.contains('/')).then(|| (a.to_string(), b.to_string()))
}

/// A Kubernetes event.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Event reason, e.g. `IssuerUpdated`.
    pub reason: String,
    /// `Kind/name` of the involved object.
    pub object: String,
    /// Event message.
    #[serde(default)]
    pub message: String,
}

/// The `expect` block.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Each must be reported (for the subject, when given).
    pub verdicts: Vec<VerdictExpr>,
    /// None of these may be reported (for that subject, when given).
    #[serde(default)]
    pub must_not: Vec<VerdictExpr>,
    /// Exactly the affected pods, `namespace/name`.
    pub affected: Vec<String>,
    /// The plan restarts at least these.
    #[serde(default)]
    pub restart: Vec<WorkloadRef>,
    /// The plan restarts none of these.
    #[serde(default)]
    pub no_restart: Vec<WorkloadGlob>,
    /// `restart` appears in the plan in this relative order.
    #[serde(default)]
    pub ordered: bool,
    /// The plan holds these, each with a reason.
    #[serde(default)]
    pub held: Vec<WorkloadRef>,
    /// True iff the plan restarts nothing and some finding needs a human.
    pub escalate: bool,
}

/// `NAME` or `NAME(subject)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct VerdictExpr {
    /// A name from [`VERDICT_NAMES`].
    pub name: String,
    /// A node, a `namespace/name` pod or one of [`RESOURCE_SUBJECTS`].
    pub subject: Option<String>,
}

impl TryFrom<String> for VerdictExpr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let (name, subject) = match s.split_once('(') {
            None => (s.as_str(), None),
            Some((name, rest)) => {
                let Some(subject) = rest.strip_suffix(')') else {
                    return Err(format!("verdict `{s}`: missing `)`"));
                };
                if subject.is_empty() || subject.contains(['(', ')']) {
                    return Err(format!("verdict `{s}`: bad subject"));
                }
                (name, Some(subject.to_string()))
            }
        };
        if !VERDICT_NAMES.contains(&name) {
            return Err(format!(
                "unknown verdict name `{name}` (DESIGN.md section 5 names only)"
            ));
        }
        Ok(VerdictExpr {
            name: name.to_string(),
            subject,
        })
    }
}

impl fmt::Display for VerdictExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            None => f.write_str(&self.name),
            Some(s) => write!(f, "{}({s})", self.name),
        }
    }
}

/// `namespace/Kind/name` of a workload (Kind `Pod` for a bare pod).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct WorkloadRef {
    /// Namespace.
    pub namespace: String,
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Pod`, …
    pub kind: String,
    /// Name.
    pub name: String,
}

impl TryFrom<String> for WorkloadRef {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.split('/').collect::<Vec<_>>()[..] {
            [ns, kind, name] if !ns.is_empty() && !kind.is_empty() && !name.is_empty() => {
                Ok(WorkloadRef {
                    namespace: ns.to_string(),
                    kind: kind.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("`{s}` is not namespace/Kind/name")),
        }
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// A `namespace/Kind/name` glob: three segments, `*` matches any run of characters but `/`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct WorkloadGlob(String);

impl TryFrom<String> for WorkloadGlob {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let segments: Vec<&str> = s.split('/').collect();
        if segments.len() != 3 || segments.iter().any(|p| p.is_empty()) {
            return Err(format!("glob `{s}` is not namespace/Kind/name"));
        }
        Ok(WorkloadGlob(s))
    }
}

impl WorkloadGlob {
    /// The glob text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the glob matches this workload.
    pub fn matches(&self, w: &WorkloadRef) -> bool {
        let mut glob = self.0.split('/');
        [&w.namespace, &w.kind, &w.name]
            .iter()
            .all(|part| glob.next().is_some_and(|g| glob_segment(g, part)))
    }
}

impl fmt::Display for WorkloadGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Matches one `/`-free segment against a pattern where `*` is any run of characters.
fn glob_segment(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}
