//! ServiceAccount tokens and the TokenReview API (`authentication.k8s.io/v1`), as the real API
//! server answers it for bound (projected) tokens: a token is authenticated while it has not
//! expired, its audiences meet the review's, and the pod it is bound to still exists with the
//! same uid. The user it names carries the pod (and node) binding in `extra`, under the keys the
//! real API server uses.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::store::Store;

/// What a token says: whose it is, what it is bound to, for whom and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// Namespace of the ServiceAccount (and of the pod).
    pub namespace: String,
    /// The ServiceAccount's name.
    pub service_account: String,
    /// The pod the token is bound to.
    pub pod_name: String,
    /// That pod's uid; the token is invalid once no pod has it.
    pub pod_uid: String,
    /// The node the pod runs on, as Kubernetes ≥ 1.30 puts it in the token.
    pub node_name: Option<String>,
    /// Audiences (`aud`).
    pub audiences: Vec<String>,
    /// Expiry (`exp`).
    pub expires_at: DateTime<Utc>,
}

impl TokenClaims {
    /// A JWT-shaped token: header, the claims a real projected token carries, and a random
    /// signature (the simulator knows its tokens by value, so nothing verifies it).
    pub(crate) fn encode(&self, serial: u64) -> String {
        let header = json!({"alg": "RS256", "kid": "kubesim"});
        let mut kubernetes = json!({
            "namespace": self.namespace,
            "pod": {"name": self.pod_name, "uid": self.pod_uid},
            "serviceaccount": {"name": self.service_account, "uid": format!("sa-{}", self.service_account)},
        });
        if let Some(node) = &self.node_name {
            kubernetes["node"] = json!({"name": node, "uid": format!("node-{node}")});
        }
        let payload = json!({
            "aud": self.audiences,
            "exp": self.expires_at.timestamp(),
            "iat": Utc::now().timestamp(),
            "iss": "https://kubernetes.default.svc.cluster.local",
            "sub": format!("system:serviceaccount:{}:{}", self.namespace, self.service_account),
            "kubernetes.io": kubernetes,
        });
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let signature =
            URL_SAFE_NO_PAD.encode(format!("kubesim-signature-{serial}-{}", rand_tail()));
        format!("{}.{}.{signature}", part(&header), part(&payload))
    }
}

fn rand_tail() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64);
    h.finish()
}

/// The `TokenReview` the API server returns for `review` (the posted object).
pub(crate) fn review(
    review: &Value,
    claims: Option<&TokenClaims>,
    store: &Store,
    now: DateTime<Utc>,
) -> Value {
    let wanted: Vec<String> = review
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let status = match judge(claims, &wanted, store, now) {
        Ok(c) => {
            let audiences: Vec<&String> = if wanted.is_empty() {
                c.audiences.iter().collect()
            } else {
                wanted.iter().filter(|a| c.audiences.contains(a)).collect()
            };
            let mut extra = json!({
                "authentication.kubernetes.io/pod-name": [c.pod_name],
                "authentication.kubernetes.io/pod-uid": [c.pod_uid],
                "authentication.kubernetes.io/credential-id": ["JTI=kubesim"],
            });
            if let Some(node) = &c.node_name {
                extra["authentication.kubernetes.io/node-name"] = json!([node]);
                extra["authentication.kubernetes.io/node-uid"] = json!([format!("node-{node}")]);
            }
            json!({
                "authenticated": true,
                "user": {
                    "username": format!("system:serviceaccount:{}:{}", c.namespace, c.service_account),
                    "uid": format!("sa-{}", c.service_account),
                    "groups": [
                        "system:serviceaccounts",
                        format!("system:serviceaccounts:{}", c.namespace),
                        "system:authenticated",
                    ],
                    "extra": extra,
                },
                "audiences": audiences,
            })
        }
        Err(error) => json!({"user": {}, "error": error}),
    };
    json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": review.get("spec").cloned().unwrap_or(json!({})),
        "status": status,
    })
}

fn judge<'a>(
    claims: Option<&'a TokenClaims>,
    wanted: &[String],
    store: &Store,
    now: DateTime<Utc>,
) -> Result<&'a TokenClaims, String> {
    let c =
        claims.ok_or("[invalid bearer token, square/go-jose: error in cryptographic primitive]")?;
    if now >= c.expires_at {
        return Err("[invalid bearer token, service account token has expired]".into());
    }
    if !wanted.is_empty() && !wanted.iter().any(|a| c.audiences.contains(a)) {
        return Err(format!(
            "[invalid bearer token, token audiences {:?} is invalid for the target audiences {:?}]",
            c.audiences, wanted
        ));
    }
    let pod_uid = store
        .find("", "v1", "pods")
        .and_then(|rt| store.get(&rt, &c.namespace, &c.pod_name).cloned())
        .and_then(|p| {
            p.pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    match pod_uid {
        Some(uid) if uid == c.pod_uid => Ok(c),
        Some(uid) => Err(format!(
            "[invalid bearer token, pod {}/{} has UID {uid}, but the token is bound to UID {}]",
            c.namespace, c.pod_name, c.pod_uid
        )),
        None => Err(format!(
            "[invalid bearer token, pods \"{}\" not found]",
            c.pod_name
        )),
    }
}
