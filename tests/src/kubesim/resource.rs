//! The kinds of object the simulated API server knows: their group, version, plural name, scope
//! and the field labels that field selectors may use.

use std::any::TypeId;

use k8s_openapi::{NamespaceResourceScope, Resource};

/// One kind of object served by [`KubeSim`](super::KubeSim), as the API server's REST mapping
/// sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group (`/api/v1`).
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Plural resource name used in URLs, e.g. `pods`.
    pub plural: String,
    /// Kind of one object, e.g. `Pod`.
    pub kind: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the kind has a `status` subresource: writes to the main resource over HTTP then
    /// keep the stored `status`, and writes to `.../status` change only the `status`.
    pub status_subresource: bool,
    /// Field labels allowed in field selectors besides `metadata.name` and
    /// `metadata.namespace`.
    pub field_labels: Vec<String>,
}

impl ResourceType {
    /// Describes a kind by hand, with the field labels and status subresource flag of the real
    /// API server where this module knows them.
    pub fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        let field_labels = known_field_labels(group, plural)
            .iter()
            .map(|label| (*label).to_string())
            .collect();
        ResourceType {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            namespaced,
            status_subresource: !KINDS_WITHOUT_STATUS.contains(&(group, plural)),
            field_labels,
        }
    }

    /// Describes the kind of a k8s-openapi type.
    pub fn of<K>() -> Self
    where
        K: Resource,
        K::Scope: 'static,
    {
        let namespaced = TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>();
        ResourceType::new(
            K::GROUP,
            K::VERSION,
            K::URL_PATH_SEGMENT,
            K::KIND,
            namespaced,
        )
    }

    /// The `apiVersion` of objects of this kind: `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of these objects, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The group-qualified resource name as the API server writes it in messages:
    /// `pods`, `deployments.apps`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether a field selector may use `field` for this kind.
    pub fn supports_field(&self, field: &str) -> bool {
        field == "metadata.name"
            || field == "metadata.namespace"
            || self.field_labels.iter().any(|label| label == field)
    }
}

/// Kinds that have no `status` subresource in the real API server.
const KINDS_WITHOUT_STATUS: &[(&str, &str)] = &[
    ("", "configmaps"),
    ("", "secrets"),
    ("", "serviceaccounts"),
    ("", "events"),
    ("", "endpoints"),
    ("events.k8s.io", "events"),
    ("coordination.k8s.io", "leases"),
    ("discovery.k8s.io", "endpointslices"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
];

/// Field labels the real API server accepts per kind (besides `metadata.name` and
/// `metadata.namespace`).
fn known_field_labels(group: &str, plural: &str) -> &'static [&'static str] {
    match (group, plural) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "secrets") => &["type"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("", "services") => &["spec.clusterIP", "spec.type"],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("apps", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        _ => &[],
    }
}

/// The kinds registered when a server starts.
pub(crate) fn builtin() -> Vec<ResourceType> {
    use k8s_openapi::api::{apps, authentication, coordination, core, discovery, events};
    vec![
        ResourceType::of::<core::v1::Pod>(),
        ResourceType::of::<core::v1::ConfigMap>(),
        ResourceType::of::<core::v1::Secret>(),
        ResourceType::of::<core::v1::Namespace>(),
        ResourceType::of::<core::v1::Node>(),
        ResourceType::of::<core::v1::Service>(),
        ResourceType::of::<core::v1::ServiceAccount>(),
        ResourceType::of::<core::v1::Event>(),
        ResourceType::of::<apps::v1::Deployment>(),
        ResourceType::of::<apps::v1::DaemonSet>(),
        ResourceType::of::<apps::v1::ReplicaSet>(),
        ResourceType::of::<apps::v1::StatefulSet>(),
        ResourceType::of::<coordination::v1::Lease>(),
        ResourceType::of::<events::v1::Event>(),
        ResourceType::of::<discovery::v1::EndpointSlice>(),
        ResourceType::of::<authentication::v1::TokenReview>(),
    ]
}
