mod identity;

use super::*;
use crate::analysis::tests::{chain_under, mk_mesh, mk_pod, mk_trust};

fn workload(kind: &str, name: &str) -> Workload {
    Workload {
        namespace: "shop".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

fn rolling(partition: i32) -> Option<UpdateStrategy> {
    Some(UpdateStrategy::RollingUpdate { partition })
}

/// A cluster whose bundle and issuer moved to the new root, with one pod per entry that still
/// holds only the old root and presents a leaf under the old issuer: every one is affected.
fn plan_for(pods: Vec<(&str, Option<Workload>, WorkloadFacts)>) -> Plan {
    let m = mk_mesh();
    let pods = pods
        .into_iter()
        .map(|(name, workload, workload_facts)| {
            let mut record = mk_pod(&[&m.old_root], chain_under(&m.old_issuer, (-60, 3600)));
            record.namespace = "shop".into();
            record.name = name.into();
            record.uid = format!("uid-{name}");
            PodInput {
                record: record.into(),
                workload,
                workload_facts,
                remote: None,
                analysis: None,
            }
        })
        .collect();
    let input = ClusterInput {
        now: Utc::now(),
        settings: Settings::new("linkerd"),
        trust: mk_trust(&[&m.new_root], &m.new_issuer),
        linkerd_config: None,
        issuer_unreadable: 0,
        bundle_unreadable: vec![],
        identity: IdentityInput::default(),
        nodes: BTreeMap::from([("node-1".to_string(), NodeClock::default())]),
        pods,
    };
    analyse(&input, &mut Verifier::new()).plan
}

/// The restart of the workload named `name`.
fn restart<'a>(plan: &'a Plan, name: &str) -> &'a Restart {
    plan.restarts
        .iter()
        .find(|r| r.workload.name == name)
        .unwrap_or_else(|| panic!("{name} is not restarted: {plan:?}"))
}

fn held_reason(plan: &Plan, target: &str) -> String {
    plan.held
        .iter()
        .find(|h| h.target.to_string() == target)
        .map(|h| h.reason.clone())
        .unwrap_or_else(|| panic!("{target} is not held: {plan:?}"))
}

#[test]
fn each_workload_gets_the_restart_method_of_its_kind_and_strategy() {
    let facts = |paused, strategy| WorkloadFacts {
        paused,
        strategy,
        ..WorkloadFacts::default()
    };
    let owned = |pod, kind, name, facts| (pod, Some(workload(kind, name)), facts);
    let on_delete = Some(UpdateStrategy::OnDelete);
    let plan = plan_for(vec![
        owned(
            "web-7d9c5b-a1",
            "Deployment",
            "web",
            facts(Some(false), None),
        ),
        owned("db-0", "StatefulSet", "db", facts(None, rolling(0))),
        owned(
            "ledger-0",
            "StatefulSet",
            "ledger",
            facts(None, on_delete.clone()),
        ),
        owned("shard-0", "StatefulSet", "shard", facts(None, rolling(3))),
        owned("logs-x1", "DaemonSet", "logs", facts(None, rolling(0))),
        owned("agent-x1", "DaemonSet", "agent", facts(None, on_delete)),
        owned(
            "orphan-5f6b8c-b1",
            "ReplicaSet",
            "orphan-5f6b8c",
            facts(None, None),
        ),
        owned(
            "backup-28734560-q2",
            "Job",
            "backup-28734560",
            facts(None, None),
        ),
    ]);
    let want = [
        ("Deployment", "web", Method::RolloutRestart),
        ("StatefulSet", "db", Method::RolloutRestart),
        ("StatefulSet", "ledger", Method::Evict),
        ("StatefulSet", "shard", Method::Evict),
        ("DaemonSet", "logs", Method::RolloutRestart),
        ("DaemonSet", "agent", Method::Evict),
        ("ReplicaSet", "orphan-5f6b8c", Method::Evict),
        ("Job", "backup-28734560", Method::Evict),
    ];
    for (kind, name, method) in want {
        let r = restart(&plan, name);
        assert_eq!(
            (r.workload.kind.as_str(), r.method),
            (kind, method),
            "{name}"
        );
    }
    assert!(plan.held.is_empty(), "{plan:?}");
    let ledger = restart(&plan, "ledger");
    assert!(ledger.reason.contains("OnDelete"), "{}", ledger.reason);
    let shard = restart(&plan, "shard");
    assert!(
        shard.reason.contains("partitioned at 3"),
        "{}",
        shard.reason
    );
}

#[test]
fn paused_deployments_static_pods_and_bare_pods_are_held_with_a_reason() {
    let plan = plan_for(vec![
        (
            "frozen-6c8d9f-c1",
            Some(workload("Deployment", "frozen")),
            WorkloadFacts {
                paused: Some(true),
                ..WorkloadFacts::default()
            },
        ),
        (
            "kube-proxy-node-1",
            None,
            WorkloadFacts {
                mirror: true,
                ..WorkloadFacts::default()
            },
        ),
        ("netshoot", None, WorkloadFacts::default()),
    ]);
    assert!(plan.restarts.is_empty(), "{plan:?}");
    assert!(held_reason(&plan, "shop/Deployment/frozen").contains("paused"));
    let mirror = held_reason(&plan, "shop/Pod/kube-proxy-node-1");
    assert!(
        mirror.contains("static pod") && mirror.contains("needs manual re-create"),
        "{mirror}"
    );
    let bare = held_reason(&plan, "shop/Pod/netshoot");
    assert!(
        bare.contains("bare pod") && bare.contains("needs manual re-create"),
        "{bare}"
    );
    assert!(
        plan.escalate,
        "nothing is restarted and stale pods need a human"
    );
}

#[test]
fn unknown_facts_give_the_method_that_works_either_way_and_the_plan_says_why() {
    let caveat = "StatefulSets are not listed yet (or may not be read)";
    let plan = plan_for(vec![
        (
            "ledger-0",
            Some(workload("StatefulSet", "ledger")),
            WorkloadFacts {
                caveat: Some(caveat.into()),
                ..WorkloadFacts::default()
            },
        ),
        (
            "api-5f6b8c-a1",
            Some(workload("Deployment", "api")),
            WorkloadFacts {
                caveat: Some("ReplicaSets are not listed yet (or may not be read): Deployment api inferred from the pod-template-hash label".into()),
                ..WorkloadFacts::default()
            },
        ),
    ]);
    let ledger = restart(&plan, "ledger");
    assert_eq!(ledger.method, Method::Evict);
    assert!(
        ledger.reason.contains("update strategy not known") && ledger.reason.contains(caveat),
        "{}",
        ledger.reason
    );
    let api = restart(&plan, "api");
    assert_eq!(api.method, Method::RolloutRestart);
    assert!(
        api.reason.contains("pod-template-hash"),
        "the fallback is said in the plan: {}",
        api.reason
    );
}

#[test]
fn restart_method_never_evicts_what_nothing_re_creates() {
    for kind in ["Pod", "Node"] {
        assert!(
            restart_method(&workload(kind, "x"), &WorkloadFacts::default()).is_err(),
            "{kind}"
        );
    }
    let unknown = restart_method(
        &workload("DaemonSet", "agent"),
        &WorkloadFacts {
            strategy: Some(UpdateStrategy::Unrecognised("Surge".into())),
            ..WorkloadFacts::default()
        },
    );
    assert_eq!(unknown.map(|(m, _)| m), Ok(Method::Evict));
}

/// Rule 1 for a whole workload: a Deployment whose faulty replica is on a healthy node but
/// which also has a replica on a skewed node is held, since a rollout replaces both.
#[test]
fn a_workload_with_a_pod_on_a_skewed_node_is_held_whole() {
    let m = mk_mesh();
    let web = workload("Deployment", "web");
    let pod = |name: &str, node: &str, anchors: &[&anchorwatch_tests::pki::Ca], fresh: bool| {
        let issuer = if fresh { &m.new_issuer } else { &m.old_issuer };
        let mut record = mk_pod(anchors, chain_under(issuer, (-60, 3600)));
        record.namespace = "shop".into();
        record.name = name.into();
        record.uid = format!("uid-{name}");
        record.node = node.into();
        PodInput {
            record: record.into(),
            workload: Some(web.clone()),
            workload_facts: WorkloadFacts::default(),
            remote: None,
            analysis: None,
        }
    };
    let clock = |o: f64| NodeClock {
        offset_s: Some(o),
        bound_s: 0.001,
        ..Default::default()
    };
    let input = ClusterInput {
        now: Utc::now(),
        settings: Settings::new("linkerd"),
        trust: mk_trust(&[&m.new_root], &m.new_issuer),
        linkerd_config: None,
        issuer_unreadable: 0,
        bundle_unreadable: vec![],
        identity: IdentityInput::default(),
        nodes: BTreeMap::from([
            ("node-1".to_string(), clock(-25.0)),
            ("node-2".to_string(), clock(0.0)),
        ]),
        pods: vec![
            // Healthy replica on the skewed node, stale replica on the good one.
            pod("web-a", "node-1", &[&m.new_root], true),
            pod("web-b", "node-2", &[&m.old_root], false),
        ],
    };
    let plan = analyse(&input, &mut Verifier::new()).plan;
    assert!(plan.restarts.is_empty(), "{plan:?}");
    let why = held_reason(&plan, "shop/Deployment/web");
    assert!(
        why.contains("shop/web-a") && why.contains("node-1") && why.contains("replace it there"),
        "{why}"
    );
}
