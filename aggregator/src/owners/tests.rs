use super::*;

fn mk_pod(owner: Option<&str>, hash: &str) -> PodRecord {
    PodRecord {
        namespace: "shop".into(),
        name: "pod-1".into(),
        uid: "uid-1".into(),
        owners: owner.into_iter().map(String::from).collect(),
        pod_template_hash: hash.into(),
        ..PodRecord::default()
    }
}

fn workload(kind: &str, name: &str) -> Option<Workload> {
    Some(Workload {
        namespace: "shop".into(),
        kind: kind.into(),
        name: name.into(),
    })
}

fn controller(kind: &str, name: &str) -> Option<Controller> {
    Some(Controller {
        kind: kind.into(),
        name: name.into(),
    })
}

/// Every kind listed, holding these ReplicaSets, Deployments and StatefulSets/DaemonSets.
fn mk_index(
    replica_sets: &[(&str, Option<Controller>)],
    deployments: &[(&str, bool)],
    stateful_sets: &[(&str, UpdateStrategy)],
    daemon_sets: &[(&str, UpdateStrategy)],
) -> OwnerIndex {
    fn all<T: Clone>(items: &[(&str, T)]) -> Vec<(String, String, T)> {
        items
            .iter()
            .map(|(n, t)| ("shop".to_string(), n.to_string(), t.clone()))
            .collect()
    }
    let mut i = OwnerIndex::default();
    i.replica_sets.replace_all(all(replica_sets));
    i.deployments.replace_all(all(deployments));
    i.stateful_sets.replace_all(all(stateful_sets));
    i.daemon_sets.replace_all(all(daemon_sets));
    i
}

const ROLLING: UpdateStrategy = UpdateStrategy::RollingUpdate { partition: 0 };

#[test]
fn deployment_is_found_through_the_replica_sets_owner_reference() {
    // The ReplicaSet's name does not follow `<deployment>-<hash>`: only its ownerReference
    // can name the Deployment.
    let index = mk_index(
        &[("web-legacy", controller("Deployment", "frontend"))],
        &[("frontend", false)],
        &[],
        &[],
    );
    let (w, facts) = index.resolve(&mk_pod(Some("ReplicaSet/web-legacy"), "7d9c5b"));
    assert_eq!(w, workload("Deployment", "frontend"));
    assert_eq!(
        facts,
        WorkloadFacts {
            paused: Some(false),
            ..WorkloadFacts::default()
        }
    );
}

#[test]
fn replica_set_without_a_controller_stays_a_replica_set_despite_its_hash_label() {
    // E.g. left behind by `kubectl delete deployment --cascade=orphan`.
    let index = mk_index(&[("api-5f6b8c", None)], &[], &[], &[]);
    let (w, facts) = index.resolve(&mk_pod(Some("ReplicaSet/api-5f6b8c"), "5f6b8c"));
    assert_eq!(w, workload("ReplicaSet", "api-5f6b8c"));
    assert_eq!(facts, WorkloadFacts::default());
}

#[test]
fn before_replica_sets_are_listed_the_pod_template_hash_names_the_deployment_and_says_so() {
    let index = OwnerIndex::default();
    let (w, facts) = index.resolve(&mk_pod(Some("ReplicaSet/api-5f6b8c"), "5f6b8c"));
    assert_eq!(w, workload("Deployment", "api"));
    assert_eq!(facts.paused, None);
    let caveat = facts.caveat.unwrap();
    assert!(
        caveat.contains("ReplicaSets are not listed yet")
            && caveat.contains("pod-template-hash")
            && caveat.contains("Deployments are not listed yet"),
        "{caveat}"
    );

    // Without the label, or a name that does not end with it, it stays the ReplicaSet.
    let (w, facts) = index.resolve(&mk_pod(Some("ReplicaSet/api-5f6b8c"), ""));
    assert_eq!(w, workload("ReplicaSet", "api-5f6b8c"));
    assert!(facts.caveat.unwrap().contains("without a Deployment"));
    let (w, _) = index.resolve(&mk_pod(Some("ReplicaSet/api-5f6b8c"), "999"));
    assert_eq!(w, workload("ReplicaSet", "api-5f6b8c"));
}

#[test]
fn replica_set_missing_from_a_listed_index_falls_back_with_a_caveat() {
    let index = mk_index(&[], &[("api", true)], &[], &[]);
    let (w, facts) = index.resolve(&mk_pod(Some("ReplicaSet/api-5f6b8c"), "5f6b8c"));
    assert_eq!(w, workload("Deployment", "api"));
    assert_eq!(facts.paused, Some(true), "the Deployment itself is known");
    assert!(
        facts
            .caveat
            .unwrap()
            .contains("ReplicaSet api-5f6b8c is not in the index")
    );
}

#[test]
fn stateful_set_and_daemon_set_strategies_are_taken_from_the_index() {
    let index = mk_index(
        &[],
        &[],
        &[("ledger", UpdateStrategy::OnDelete), ("db", ROLLING)],
        &[("fluent-bit", UpdateStrategy::OnDelete)],
    );
    for (owner, kind, name, strategy) in [
        (
            "StatefulSet/ledger",
            "StatefulSet",
            "ledger",
            UpdateStrategy::OnDelete,
        ),
        ("StatefulSet/db", "StatefulSet", "db", ROLLING),
        (
            "DaemonSet/fluent-bit",
            "DaemonSet",
            "fluent-bit",
            UpdateStrategy::OnDelete,
        ),
    ] {
        let (w, facts) = index.resolve(&mk_pod(Some(owner), ""));
        assert_eq!(w, workload(kind, name));
        assert_eq!(facts.strategy, Some(strategy), "{owner}");
        assert_eq!(facts.caveat, None, "{owner}");
    }
}

#[test]
fn strategy_not_listed_or_not_found_is_unknown_with_a_caveat() {
    let (_, facts) = OwnerIndex::default().resolve(&mk_pod(Some("StatefulSet/ledger"), ""));
    assert_eq!(facts.strategy, None);
    assert!(
        facts
            .caveat
            .unwrap()
            .contains("StatefulSets are not listed yet")
    );
    let (_, facts) = mk_index(&[], &[], &[], &[]).resolve(&mk_pod(Some("DaemonSet/agent"), ""));
    assert_eq!(facts.strategy, None);
    assert!(
        facts
            .caveat
            .unwrap()
            .contains("DaemonSet agent is not in the index")
    );
}

#[test]
fn job_of_a_cron_job_stays_the_job() {
    let index = mk_index(&[], &[], &[], &[]);
    let (w, facts) = index.resolve(&mk_pod(Some("Job/backup-28734560"), ""));
    assert_eq!(w, workload("Job", "backup-28734560"));
    assert_eq!(facts, WorkloadFacts::default());
}

#[test]
fn mirror_and_bare_pods_have_no_workload() {
    let index = mk_index(&[], &[], &[], &[]);
    let mut by_annotation = mk_pod(None, "");
    by_annotation.mirror = true;
    for pod in [by_annotation, mk_pod(Some("Node/node-1"), "")] {
        let (w, facts) = index.resolve(&pod);
        assert_eq!(w, None);
        assert!(facts.mirror, "{:?}", pod.owners);
    }
    let (w, facts) = index.resolve(&mk_pod(None, ""));
    assert_eq!(w, None);
    assert!(!facts.mirror);
}

#[test]
fn catalog_reports_only_real_changes_and_a_relist_replaces_it_whole() {
    let mut c: Catalog<bool> = Catalog::default();
    assert_eq!(c.get("ns", "a"), Lookup::NotListed);
    assert!(c.apply("ns", "a", false), "a new object");
    assert_eq!(
        c.get("ns", "a"),
        Lookup::NotListed,
        "a watch event before the first list does not make the kind listed"
    );
    assert!(
        !c.apply("ns", "a", false),
        "a status update changes no fact"
    );
    assert!(c.apply("ns", "a", true));
    assert!(c.replace_all(vec![("ns".into(), "b".into(), false)]));
    assert_eq!(c.get("ns", "a"), Lookup::Absent);
    assert_eq!(c.get("ns", "b"), Lookup::Found(&false));
    assert!(!c.replace_all(vec![("ns".into(), "b".into(), false)]));
    assert!(c.delete("ns", "b"));
    assert!(!c.delete("ns", "b"));
    assert_eq!(c.get("ns", "b"), Lookup::Absent, "still listed");
}

#[test]
fn facts_are_read_from_the_objects_with_the_api_servers_defaults() {
    let sts: StatefulSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ledger"},
        "spec": {"selector": {}, "serviceName": "ledger", "template": {},
                 "updateStrategy": {"type": "OnDelete"}}
    }))
    .unwrap();
    assert_eq!(stateful_set_strategy(&sts), UpdateStrategy::OnDelete);
    let partitioned: StatefulSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db"},
        "spec": {"selector": {}, "serviceName": "db", "template": {},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}
    }))
    .unwrap();
    assert_eq!(
        stateful_set_strategy(&partitioned),
        UpdateStrategy::RollingUpdate { partition: 2 }
    );
    let ds: DaemonSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {}, "template": {}, "updateStrategy": {"type": "Surge"}}
    }))
    .unwrap();
    assert_eq!(
        daemon_set_strategy(&ds),
        UpdateStrategy::Unrecognised("Surge".into())
    );
    assert_eq!(daemon_set_strategy(&DaemonSet::default()), ROLLING);

    let paused: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "api"},
        "spec": {"selector": {}, "template": {}, "paused": true}
    }))
    .unwrap();
    assert!(deployment_paused(&paused));
    assert!(!deployment_paused(&Deployment::default()));

    let rs: ObjectMeta = serde_json::from_value(serde_json::json!({
        "name": "api-5f6b8c",
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-a-controller", "uid": "u1"},
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": "u2", "controller": true}
        ]
    }))
    .unwrap();
    assert_eq!(replica_set_controller(&rs), controller("Deployment", "api"));
    assert_eq!(replica_set_controller(&ObjectMeta::default()), None);
}
