//! The workloads behind the pods agents report: which controller re-creates a pod, and how
//! (DESIGN section 6). Pure: the owner watches (`watch::follow_owners`) feed it, the model asks
//! it for each pod's workload when it builds the plan's input.
//!
//! ```text
//!   pod (agent) ── owners[0] ──► ReplicaSet ──ownerReference──► Deployment   (paused?)
//!                         └────► StatefulSet / DaemonSet                     (updateStrategy)
//!                         └────► Job, other controller, ReplicaSet without a controller
//!                         └────► Node / mirror annotation: a static pod      (held)
//!                         └────► none: a bare pod                            (held)
//! ```
//! The index keeps only these facts, never whole objects: a metadata-only watch of ReplicaSets
//! (the most numerous: up to eleven per Deployment with the default revision history) gives
//! their ownerReferences; Deployments, StatefulSets and DaemonSets are read whole because the
//! facts live in their spec, but each object is dropped once its fact is taken, so memory grows
//! with the number of workloads times a name, not with their pod templates.
//!
//! Until a kind has been listed once (or when RBAC forbids listing it), resolution falls back to
//! what the pod says: a ReplicaSet `<name>-<pod-template-hash>` is taken for Deployment `<name>`,
//! and the facts that could not be read are `None`, with a caveat the plan repeats.

use crate::analysis::cluster::{UpdateStrategy, Workload, WorkloadFacts};
use crate::model::PodRecord;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::HashMap;

/// A controller owner reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controller {
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Name, in the owned object's namespace.
    pub name: String,
}

/// One kind of workload object: namespace → name → the fact the plan needs.
#[derive(Clone, Debug)]
pub struct Catalog<T> {
    /// The facts; written by that kind's watch, an entry removed when its object is deleted.
    items: HashMap<String, HashMap<String, T>>,
    /// Set by the first complete list; never cleared (a relist replaces `items` at once).
    listed: bool,
}

impl<T> Default for Catalog<T> {
    fn default() -> Self {
        Catalog {
            items: HashMap::new(),
            listed: false,
        }
    }
}

/// What a catalog knows of one object.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a, T> {
    /// The kind has not been listed yet (or cannot be): nothing is known.
    NotListed,
    /// Listed, and no such object.
    Absent,
    /// The object's fact.
    Found(&'a T),
}

impl<T: PartialEq> Catalog<T> {
    /// An object was added or changed; returns whether its fact changed.
    pub fn apply(&mut self, namespace: &str, name: &str, fact: T) -> bool {
        let names = self.items.entry(namespace.to_string()).or_default();
        match names.get_mut(name) {
            Some(old) if *old == fact => false,
            Some(old) => {
                *old = fact;
                true
            }
            None => {
                names.insert(name.to_string(), fact);
                true
            }
        }
    }

    /// An object was deleted; returns whether it was known.
    pub fn delete(&mut self, namespace: &str, name: &str) -> bool {
        let Some(names) = self.items.get_mut(namespace) else {
            return false;
        };
        let known = names.remove(name).is_some();
        if names.is_empty() {
            self.items.remove(namespace);
        }
        known
    }

    /// A complete list: the catalog becomes exactly `objects` and counts as listed. Returns
    /// whether anything changed.
    pub fn replace_all(&mut self, objects: impl IntoIterator<Item = (String, String, T)>) -> bool {
        let mut items: HashMap<String, HashMap<String, T>> = HashMap::new();
        for (namespace, name, fact) in objects {
            items.entry(namespace).or_default().insert(name, fact);
        }
        let changed = !self.listed || items != self.items;
        self.items = items;
        self.listed = true;
        changed
    }

    /// What is known of one object.
    pub fn get(&self, namespace: &str, name: &str) -> Lookup<'_, T> {
        if !self.listed {
            return Lookup::NotListed;
        }
        match self.items.get(namespace).and_then(|n| n.get(name)) {
            Some(fact) => Lookup::Found(fact),
            None => Lookup::Absent,
        }
    }
}

/// The workload objects owners are resolved with.
#[derive(Clone, Debug, Default)]
pub struct OwnerIndex {
    /// ReplicaSets: their controller owner, `None` for one without (metadata-only watch).
    pub replica_sets: Catalog<Option<Controller>>,
    /// Deployments: `spec.paused`.
    pub deployments: Catalog<bool>,
    /// StatefulSets: `spec.updateStrategy`.
    pub stateful_sets: Catalog<UpdateStrategy>,
    /// DaemonSets: `spec.updateStrategy`.
    pub daemon_sets: Catalog<UpdateStrategy>,
}

impl OwnerIndex {
    /// The workload a restart of `pod` goes through, and what is known of how it re-creates
    /// pods. `None` for a bare pod and for a static pod's mirror (`mirror` set in the facts).
    pub fn resolve(&self, pod: &PodRecord) -> (Option<Workload>, WorkloadFacts) {
        let mut facts = WorkloadFacts::default();
        let owner = pod.owners.first().and_then(|o| o.split_once('/'));
        if pod.mirror || owner.is_some_and(|(kind, _)| kind == "Node") {
            facts.mirror = true;
            return (None, facts);
        }
        let Some((kind, name)) = owner else {
            return (None, facts);
        };
        let ns = pod.namespace.as_str();
        let (kind, name) = match kind {
            "ReplicaSet" => match self.replica_sets.get(ns, name) {
                Lookup::Found(Some(c)) => (c.kind.clone(), c.name.clone()),
                Lookup::Found(None) => (kind.to_string(), name.to_string()),
                missing => {
                    let why = match missing {
                        Lookup::Absent => format!(
                            "ReplicaSet {name} is not in the index (created or deleted a moment ago)"
                        ),
                        _ => "ReplicaSets are not listed yet (or may not be read)".to_string(),
                    };
                    let (kind, name, how) = by_template_hash(name, &pod.pod_template_hash);
                    facts.caveat = Some(format!("{why}: {how}").into());
                    (kind.to_string(), name.to_string())
                }
            },
            _ => (kind.to_string(), name.to_string()),
        };
        match kind.as_str() {
            "Deployment" => match self.deployments.get(ns, &name) {
                Lookup::Found(paused) => facts.paused = Some(*paused),
                missing => add_caveat(&mut facts, unknown("Deployment", &name, missing)),
            },
            "StatefulSet" | "DaemonSet" => {
                let catalog = if kind == "StatefulSet" {
                    &self.stateful_sets
                } else {
                    &self.daemon_sets
                };
                match catalog.get(ns, &name) {
                    Lookup::Found(s) => facts.strategy = Some(s.clone()),
                    missing => add_caveat(&mut facts, unknown(&kind, &name, missing)),
                }
            }
            _ => {}
        }
        let workload = Workload {
            namespace: pod.namespace.clone(),
            kind,
            name,
        };
        (Some(workload), facts)
    }
}

/// The fallback for a ReplicaSet the index cannot answer for: `<deployment>-<pod-template-hash>`
/// means that Deployment; anything else stays the ReplicaSet. With how it was decided.
fn by_template_hash<'a>(replica_set: &'a str, hash: &str) -> (&'static str, &'a str, String) {
    match replica_set
        .strip_suffix(hash)
        .and_then(|n| n.strip_suffix('-'))
    {
        Some(deployment) if !hash.is_empty() && !deployment.is_empty() => (
            "Deployment",
            deployment,
            format!("Deployment {deployment} inferred from the pod-template-hash label"),
        ),
        _ => (
            "ReplicaSet",
            replica_set,
            "taken as a ReplicaSet without a Deployment".to_string(),
        ),
    }
}

fn unknown(kind: &str, name: &str, missing: Lookup<'_, impl Sized>) -> String {
    match missing {
        Lookup::Absent => format!("{kind} {name} is not in the index"),
        _ => format!("{kind}s are not listed yet (or may not be read)"),
    }
}

fn add_caveat(facts: &mut WorkloadFacts, why: String) {
    facts.caveat = Some(match facts.caveat.take() {
        Some(before) => format!("{before}; {why}").into(),
        None => why.into(),
    });
}

/// A ReplicaSet's controller owner, from its metadata.
pub fn replica_set_controller(meta: &ObjectMeta) -> Option<Controller> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| Controller {
            kind: o.kind.clone(),
            name: o.name.clone(),
        })
}

/// Whether a Deployment is paused.
pub fn deployment_paused(d: &Deployment) -> bool {
    d.spec.paused.unwrap_or(false)
}

/// A StatefulSet's update strategy (the API server defaults it to RollingUpdate, partition 0).
pub fn stateful_set_strategy(s: &StatefulSet) -> UpdateStrategy {
    let strategy = s.spec.update_strategy.as_ref();
    let partition = strategy
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    strategy_of(strategy.and_then(|u| u.type_.as_deref()), partition)
}

/// A DaemonSet's update strategy (the API server defaults it to RollingUpdate).
pub fn daemon_set_strategy(d: &DaemonSet) -> UpdateStrategy {
    let strategy = d.spec.update_strategy.as_ref();
    strategy_of(strategy.and_then(|u| u.type_.as_deref()), 0)
}

fn strategy_of(type_: Option<&str>, partition: i32) -> UpdateStrategy {
    match type_ {
        None | Some("RollingUpdate") => UpdateStrategy::RollingUpdate { partition },
        Some("OnDelete") => UpdateStrategy::OnDelete,
        Some(other) => UpdateStrategy::Unrecognised(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
