//! Agent authentication (DESIGN section 2): an agent presents a projected ServiceAccount token
//! as `authorization: Bearer …`; the aggregator reviews it with a TokenReview (for its own
//! audience), accepts only the agents' ServiceAccount, and binds the stream to the node the
//! token's pod runs on — read from the token's pod binding and confirmed against the pod itself.
//! Pods an agent reports are confirmed to be on that node against the API (one list of the
//! node's pods per stream, refreshed when an unknown pod appears). Reviews are cached briefly,
//! by a hash of the token.

use chrono::{DateTime, Utc};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How agents must authenticate.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every stream presents a ServiceAccount token, checked with a TokenReview.
    Tokenreview,
    /// No authentication: any client may report any node. For development only.
    None,
}

/// Who may report.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The audience agents' tokens are minted for (the projected volume's `audience`).
    pub audience: String,
    /// The agents' ServiceAccount as `namespace/name`.
    pub service_account: String,
    /// How long a review's answer is reused.
    pub cache_for: Duration,
}

/// An authenticated agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// The node its pod runs on.
    pub node: String,
    /// Its pod, `namespace/name`.
    pub pod: String,
    /// When its token expires (the stream ends then; the agent reconnects with a fresh one).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a stream was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No `authorization: Bearer` metadata.
    #[error("no ServiceAccount token: send `authorization: Bearer <token>`")]
    NoToken,
    /// The TokenReview did not authenticate the token.
    #[error("the token was not accepted: {0}")]
    Invalid(String),
    /// Authenticated, but not as the agents' ServiceAccount.
    #[error("{0} is not the agents' ServiceAccount ({1})")]
    WrongAccount(String, String),
    /// The token's pod binding does not name a pod on a node.
    #[error("the token is not bound to a running agent pod: {0}")]
    Unbound(String),
    /// The API server could not be asked; not cached.
    #[error("cannot check the token now: {0}")]
    Unavailable(String),
}

impl Rejection {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::NoToken => "no_token",
            Rejection::Invalid(_) => "invalid_token",
            Rejection::WrongAccount(..) => "wrong_service_account",
            Rejection::Unbound(_) => "unbound",
            Rejection::Unavailable(_) => "api_unavailable",
        }
    }

    /// The gRPC status for the agent.
    pub fn status(&self) -> tonic::Status {
        match self {
            Rejection::WrongAccount(..) => tonic::Status::permission_denied(self.to_string()),
            Rejection::Unavailable(_) => tonic::Status::unavailable(self.to_string()),
            _ => tonic::Status::unauthenticated(self.to_string()),
        }
    }
}

/// Counters of refused streams and reports, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Streams accepted.
    pub accepted: AtomicU64,
    /// Refused streams, by [`Rejection::reason`].
    pub rejected: Mutex<HashMap<&'static str, u64>>,
    /// Pods an authenticated agent reported that are not on its node.
    pub foreign_pods: AtomicU64,
    /// Messages naming another node than the stream's.
    pub wrong_node: AtomicU64,
}

impl Counters {
    /// Counts a refusal.
    pub fn reject(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }
}

/// Most cached reviews kept; beyond it, expired ones go, then everything.
const MAX_CACHED: usize = 20_000;

/// A review's answer and when it was had, by SHA-256 of the token.
type Cache = HashMap<[u8; 32], (Result<Agent, Rejection>, Instant)>;

/// Reviews tokens and confirms pods' nodes against the Kubernetes API.
pub struct Authenticator {
    client: kube::Client,
    settings: Settings,
    cache: Mutex<Cache>,
    /// Counters for `/metrics`.
    pub counters: Counters,
}

impl Authenticator {
    /// An authenticator asking the API server behind `client`.
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        Authenticator {
            client,
            settings,
            cache: Mutex::default(),
            counters: Counters::default(),
        }
    }

    /// The agent a stream's metadata authenticates.
    pub async fn authenticate(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Agent, Rejection> {
        let result = match bearer(metadata) {
            None => Err(Rejection::NoToken),
            Some(token) => self.review_cached(token).await,
        };
        match &result {
            Ok(_) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(r) => self.counters.reject(r.reason()),
        }
        result
    }

    async fn review_cached(&self, token: &str) -> Result<Agent, Rejection> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some((r, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && now.duration_since(*at) < self.settings.cache_for
        {
            return r.clone();
        }
        let r = self.review(token).await;
        if !matches!(r, Err(Rejection::Unavailable(_))) {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED {
                let ttl = self.settings.cache_for;
                cache.retain(|_, (_, at)| now.duration_since(*at) < ttl);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(key, (r.clone(), now));
        }
        r
    }

    async fn review(&self, token: &str) -> Result<Agent, Rejection> {
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![self.settings.audience.clone()]),
            },
            ..Default::default()
        };
        let status = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Rejection::Unavailable(format!("TokenReview: {e}")))?
            .status
            .unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(Rejection::Invalid(
                status.error.unwrap_or_else(|| "not authenticated".into()),
            ));
        }
        if let Some(audiences) = &status.audiences
            && !audiences.contains(&self.settings.audience)
        {
            return Err(Rejection::Invalid(format!(
                "the token is for {audiences:?}, not {:?}",
                self.settings.audience
            )));
        }
        let user = status.user.unwrap_or_default();
        let username = user.username.unwrap_or_default();
        let (namespace, account) = self
            .settings
            .service_account
            .split_once('/')
            .unwrap_or(("", &self.settings.service_account));
        if username != format!("system:serviceaccount:{namespace}:{account}") {
            return Err(Rejection::WrongAccount(
                username,
                self.settings.service_account.clone(),
            ));
        }
        let extra = user.extra.unwrap_or_default();
        let one = |key: &str| {
            extra
                .get(&format!("authentication.kubernetes.io/{key}"))
                .and_then(|v| v.first())
                .cloned()
        };
        let pod_name = one("pod-name").ok_or_else(|| {
            Rejection::Unbound("no pod binding (a projected, pod-bound token is needed)".into())
        })?;
        let pod_uid = one("pod-uid").unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = pods
            .get_opt(&pod_name)
            .await
            .map_err(|e| {
                Rejection::Unavailable(format!("reading pod {namespace}/{pod_name}: {e}"))
            })?
            .ok_or_else(|| {
                Rejection::Unbound(format!("pod {namespace}/{pod_name} does not exist"))
            })?;
        if pod.metadata.uid.as_deref() != Some(pod_uid.as_str()) {
            return Err(Rejection::Unbound(format!(
                "pod {namespace}/{pod_name} has another uid than the token's"
            )));
        }
        let node = pod
            .spec
            .and_then(|s| s.node_name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Rejection::Unbound(format!("pod {namespace}/{pod_name} is on no node"))
            })?;
        if let Some(token_node) = one("node-name")
            && token_node != node
        {
            return Err(Rejection::Unbound(format!(
                "the token names node {token_node}, its pod runs on {node}"
            )));
        }
        Ok(Agent {
            node,
            pod: format!("{namespace}/{pod_name}"),
            expires_at: expiry(token),
        })
    }

    /// Uids of the pods on `node`, from the API (metadata only, filtered by the API server).
    pub async fn pods_on(&self, node: &str) -> Result<HashSet<String>, kube::Error> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let list = pods
            .list_metadata(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|p| p.metadata.uid)
            .collect())
    }
}

/// The bearer token of gRPC metadata.
fn bearer(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The `exp` claim of a JWT, read without verifying it (the TokenReview did that).
pub fn expiry(token: &str) -> Option<DateTime<Utc>> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    DateTime::from_timestamp(claims.get("exp")?.as_i64()?, 0)
}

/// The pods a node's agent may report: the API's list, refreshed at most every `refresh` when
/// a pod is not in it (a pod scheduled since).
pub struct NodePods {
    uids: HashSet<String>,
    listed_at: Option<Instant>,
    refresh: Duration,
}

impl NodePods {
    /// Nothing listed yet.
    pub fn new(refresh: Duration) -> Self {
        NodePods {
            uids: HashSet::new(),
            listed_at: None,
            refresh,
        }
    }

    /// Whether `uid` was on the node at the last list.
    pub fn contains(&self, uid: &str) -> bool {
        self.uids.contains(uid)
    }

    /// Whether a new list may be fetched now.
    pub fn may_refresh(&self, now: Instant) -> bool {
        self.listed_at
            .is_none_or(|at| now.duration_since(at) >= self.refresh)
    }

    /// Takes a fresh list.
    pub fn replace(&mut self, uids: HashSet<String>, now: Instant) {
        self.uids = uids;
        self.listed_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_metadata() {
        let mut m = tonic::metadata::MetadataMap::new();
        assert_eq!(bearer(&m), None);
        m.insert("authorization", "Bearer abc.def.ghi".parse().unwrap());
        assert_eq!(bearer(&m), Some("abc.def.ghi"));
        m.insert("authorization", "Basic dXNlcg==".parse().unwrap());
        assert_eq!(bearer(&m), None);
        m.insert("authorization", "bearer   ".parse().unwrap());
        assert_eq!(bearer(&m), None);
    }

    #[test]
    fn the_expiry_is_read_from_a_jwt_and_garbage_has_none() {
        use base64::Engine as _;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!(
            "{}.{}.sig",
            e.encode("{}"),
            e.encode(r#"{"exp":1796256000,"aud":["anchorwatch"]}"#)
        );
        assert_eq!(expiry(&token), DateTime::from_timestamp(1_796_256_000, 0));
        assert_eq!(expiry("not-a-jwt"), None);
        assert_eq!(expiry("a.!!!.c"), None);
        assert_eq!(expiry(&format!("a.{}.c", e.encode("[1,2]"))), None);
    }

    #[test]
    fn node_pods_refresh_is_rate_limited() {
        let mut p = NodePods::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(p.may_refresh(t0));
        p.replace(["u1".to_string()].into(), t0);
        assert!(p.contains("u1") && !p.contains("u2"));
        assert!(!p.may_refresh(t0 + Duration::from_secs(1)));
        assert!(p.may_refresh(t0 + Duration::from_secs(5)));
    }
}
