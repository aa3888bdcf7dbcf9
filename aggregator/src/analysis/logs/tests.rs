//! Log evidence against the certificate verdicts: what confirms, what nothing explains, what
//! says identity is unreachable.

use super::*;
use crate::analysis::cluster::{
    ClusterInput, IdentityInput, NodeClock, PodInput, Report, Settings, analyse,
};
use crate::analysis::tests::{chain_under, mk_mesh, mk_pod, mk_trust};
use crate::model::{LogEvidence, LogPeer};
use crate::verify::Verifier;
use std::sync::Arc;

/// One kind of lines, `count` of them, the last `ago_s` seconds before now, naming `peer`.
fn mk_kind(
    kind: &str,
    peer: Option<&str>,
    count: u64,
    ago_s: i64,
    now: DateTime<Utc>,
) -> LogKindEvidence {
    let last = now - TimeDelta::seconds(ago_s);
    LogKindEvidence {
        kind: kind.parse().unwrap(),
        total: count,
        last_5m: count,
        last_1h: count,
        first_seen: Some(last - TimeDelta::seconds(5)),
        last_seen: Some(last),
        samples: vec![format!("a {kind} line")],
        peers: peer
            .map(|p| LogPeer {
                addr: p.parse().unwrap(),
                ephemeral_port: p.ends_with(":51234"),
                count,
                last_seen: Some(last),
            })
            .into_iter()
            .collect(),
    }
}

struct Cluster {
    now: DateTime<Utc>,
    pods: Vec<PodInput>,
    nodes: BTreeMap<String, NodeClock>,
}

/// Bundle and issuer on the new root. `web` (10.0.0.1, node-1) is OK; `voting` (10.0.0.2,
/// node-1) presents a leaf from the old root's issuer (STALE_LEAF, BadSignature); `legacy`
/// (10.0.0.3, node-2) holds only the old root (STALE_TRUST_BUNDLE); `emoji` (10.0.0.4,
/// node-2) is OK.
fn mk_cluster() -> (Cluster, crate::trust::Trust) {
    let m = mk_mesh();
    let now = Utc::now();
    let mk = |name: &str, ip: &str, node: &str, roots: &[&anchorwatch_tests::pki::Ca], issuer| {
        let mut r = mk_pod(roots, chain_under(issuer, (-60, 3600)));
        r.namespace = "emojivoto".into();
        r.name = name.into();
        r.uid = format!("uid-{name}");
        r.pod_ip = ip.into();
        r.node = node.into();
        PodInput {
            record: r.into(),
            workload: None,
            workload_facts: Default::default(),
            remote: None,
            analysis: None,
        }
    };
    let pods = vec![
        mk("web", "10.0.0.1", "node-1", &[&m.new_root], &m.new_issuer),
        mk(
            "voting",
            "10.0.0.2",
            "node-1",
            &[&m.new_root],
            &m.old_issuer,
        ),
        mk(
            "legacy",
            "10.0.0.3",
            "node-2",
            &[&m.old_root],
            &m.new_issuer,
        ),
        mk("emoji", "10.0.0.4", "node-2", &[&m.new_root], &m.new_issuer),
    ];
    let nodes = ["node-1", "node-2"]
        .into_iter()
        .map(|n| {
            (
                n.to_string(),
                NodeClock {
                    offset_s: Some(0.0),
                    ..NodeClock::default()
                },
            )
        })
        .collect();
    (
        Cluster { now, pods, nodes },
        mk_trust(&[&m.new_root], &m.new_issuer),
    )
}

fn logs_of(c: &mut Cluster, pod: &str, kinds: Vec<LogKindEvidence>) {
    let p = c.pods.iter_mut().find(|p| p.record.name == pod).unwrap();
    Arc::make_mut(&mut p.record).logs = Some(Arc::new(LogEvidence {
        kinds,
        problem: None,
    }));
}

fn run(c: Cluster, trust: crate::trust::Trust) -> Report {
    let input = ClusterInput {
        now: c.now,
        settings: Settings::new("linkerd"),
        trust,
        linkerd_config: None,
        issuer_unreadable: 0,
        bundle_unreadable: vec![],
        identity: IdentityInput::default(),
        nodes: c.nodes,
        pods: c.pods,
    };
    analyse(&input, &mut Verifier::new())
}

fn correlation<'a>(r: &'a Report, pod: &str, kind: &str) -> &'a LogCorrelation {
    r.logs
        .iter()
        .find(|c| c.pod == format!("emojivoto/{pod}") && c.kind.to_string() == kind)
        .unwrap_or_else(|| panic!("no {kind} of {pod} in {:?}", r.logs))
}

#[test]
fn a_rejected_stale_leaf_is_confirmed_and_shows_on_both_pods() {
    let (mut c, trust) = mk_cluster();
    let now = c.now;
    logs_of(
        &mut c,
        "web",
        vec![mk_kind("BAD_SIGNATURE", Some("10.0.0.2:8080"), 12, 30, now)],
    );
    let r = run(c, trust);
    let x = correlation(&r, "web", "BAD_SIGNATURE");
    assert_eq!(x.peer.as_deref(), Some("emojivoto/voting"));
    assert_eq!(x.count, 12);
    assert_eq!(
        x.status,
        LogStatus::Confirmed {
            by: "STALE_LEAF of emojivoto/voting (BadSignature)".into(),
            verdict: Some(("emojivoto/voting".into(), VerdictKind::StaleLeaf)),
        }
    );
    assert!(x.involves("emojivoto/voting") && x.involves("emojivoto/web"));
    assert!(
        !r.findings
            .iter()
            .any(|f| f.name == "INCONCLUSIVE" && f.subject.as_deref() == Some("emojivoto/web"))
    );
}

#[test]
fn a_proxy_with_stale_anchors_explains_its_own_rejections() {
    let (mut c, trust) = mk_cluster();
    let now = c.now;
    logs_of(
        &mut c,
        "legacy",
        vec![mk_kind("BAD_SIGNATURE", Some("10.0.0.4:8080"), 3, 30, now)],
    );
    // The peer it rejects sees it as an alert received from legacy's IP (ephemeral port).
    logs_of(
        &mut c,
        "emoji",
        vec![mk_kind(
            "ALERT_RECEIVED(BadCertificate)",
            Some("10.0.0.3:51234"),
            3,
            30,
            now,
        )],
    );
    let r = run(c, trust);
    let legacy = correlation(&r, "legacy", "BAD_SIGNATURE");
    assert_eq!(legacy.status.name(), "confirmed");
    assert!(
        matches!(&legacy.status, LogStatus::Confirmed { by, .. } if by == "STALE_TRUST_BUNDLE of emojivoto/legacy (proxy lacks the issuer's anchor)")
    );
    let emoji = correlation(&r, "emoji", "ALERT_RECEIVED(BadCertificate)");
    assert_eq!(emoji.peer.as_deref(), Some("emojivoto/legacy"));
    assert_eq!(emoji.status.name(), "confirmed");
}

#[test]
fn errors_no_certificate_explains_are_a_finding_of_their_own() {
    let (mut c, trust) = mk_cluster();
    let now = c.now;
    logs_of(
        &mut c,
        "web",
        vec![
            mk_kind("UNKNOWN_ISSUER", Some("10.0.0.4:8080"), 5, 30, now),
            mk_kind("NOT_VALID_FOR_NAME", Some("192.0.2.9:443"), 1, 30, now),
        ],
    );
    let r = run(c, trust);
    assert_eq!(
        correlation(&r, "web", "UNKNOWN_ISSUER").status,
        LogStatus::Unexplained
    );
    let unknown = correlation(&r, "web", "NOT_VALID_FOR_NAME");
    assert_eq!(unknown.peer, None, "no reported pod has that IP");
    let f = r
        .findings
        .iter()
        .find(|f| f.name == "INCONCLUSIVE" && f.subject.as_deref() == Some("emojivoto/web"))
        .expect("an INCONCLUSIVE finding for web");
    assert!(
        f.detail
            .contains("5× UNKNOWN_ISSUER naming 10.0.0.4:8080 (emojivoto/emoji)"),
        "{}",
        f.detail
    );
    assert!(
        f.detail.contains("192.0.2.9:443 (no reported pod)"),
        "{}",
        f.detail
    );
    assert_eq!(f.pods, ["emojivoto/emoji", "emojivoto/web"]);
    assert!(
        !r.plan.escalate || r.plan.restarts.is_empty(),
        "an unexplained error is no restart reason"
    );
}

#[test]
fn time_errors_on_a_skewed_node_are_the_skews() {
    let (mut c, trust) = mk_cluster();
    let now = c.now;
    c.nodes.get_mut("node-2").unwrap().offset_s = Some(-40.0);
    logs_of(
        &mut c,
        "emoji",
        vec![mk_kind("NOT_VALID_YET", Some("10.0.0.1:8080"), 2, 30, now)],
    );
    let r = run(c, trust);
    let x = correlation(&r, "emoji", "NOT_VALID_YET");
    assert!(
        matches!(&x.status, LogStatus::Confirmed { by, verdict: None } if by == "CLOCK_SKEW(node-2)"),
        "{:?}",
        x.status
    );
}

#[test]
fn errors_older_than_an_hour_say_nothing_about_now() {
    let (mut c, trust) = mk_cluster();
    let now = c.now;
    logs_of(
        &mut c,
        "web",
        vec![mk_kind(
            "UNKNOWN_ISSUER",
            Some("10.0.0.4:8080"),
            5,
            2 * 3600,
            now,
        )],
    );
    let r = run(c, trust);
    assert!(r.logs.is_empty());
    assert!(
        !r.findings
            .iter()
            .any(|f| f.name == "INCONCLUSIVE" && f.subject.as_deref() == Some("emojivoto/web"))
    );
}

#[test]
fn identity_unreachable_is_per_node_and_a_long_wait_counts_only_alone() {
    let (mut c, trust) = mk_cluster();
    let now = c.now;
    logs_of(
        &mut c,
        "web",
        vec![mk_kind("IDENTITY_UNREACHABLE", None, 4, 10, now)],
    );
    // Waiting for two minutes with nothing else logged: unreachable too.
    let mut waiting = mk_kind("WAITING_FOR_IDENTITY", None, 24, 10, now);
    waiting.first_seen = Some(now - TimeDelta::seconds(130));
    logs_of(&mut c, "emoji", vec![waiting.clone()]);
    // The same wait beside a certificate error is that error's doing.
    logs_of(
        &mut c,
        "legacy",
        vec![mk_kind("UNKNOWN_ISSUER", None, 1, 10, now), waiting],
    );
    let r = run(c, trust);
    assert_eq!(
        correlation(&r, "web", "IDENTITY_UNREACHABLE").status,
        LogStatus::IdentityUnreachable
    );
    assert_eq!(
        correlation(&r, "emoji", "WAITING_FOR_IDENTITY").status,
        LogStatus::IdentityUnreachable
    );
    assert_eq!(
        correlation(&r, "legacy", "WAITING_FOR_IDENTITY").status,
        LogStatus::Informational
    );
    let by_node: BTreeMap<_, _> = r
        .findings
        .iter()
        .filter(|f| f.name == "IDENTITY_UNREACHABLE")
        .map(|f| (f.subject.clone().unwrap_or_default(), f.pods.clone()))
        .collect();
    assert_eq!(by_node["node-1"], ["emojivoto/web"]);
    assert_eq!(by_node["node-2"], ["emojivoto/emoji"]);
}

/// An expiry error about a peer outside the mesh is not this proxy's stale anchors: it stays
/// unexplained (a finding), where the same kind of line naming no peer at all would be.
#[test]
fn an_error_about_an_unknown_peer_is_not_explained_by_the_proxys_own_anchors() {
    let (mut c, trust) = mk_cluster();
    let now = c.now;
    logs_of(
        &mut c,
        "legacy",
        vec![mk_kind("EXPIRED", Some("192.0.2.50:8080"), 2, 30, now)],
    );
    let r = run(c, trust);
    let e = correlation(&r, "legacy", "EXPIRED");
    assert_eq!(e.peer, None);
    assert_eq!(e.status.name(), "unexplained", "{e:?}");
}

/// Errors last logged before the bundle changed are history once the change removed their
/// cause: not a new INCONCLUSIVE finding.
#[test]
fn errors_from_before_the_bundle_changed_are_history() {
    let (mut c, mut trust) = mk_cluster();
    let now = c.now;
    // web (OK now) logged BAD_SIGNATURE toward emoji (OK now) ten minutes ago; the bundle
    // changed five minutes ago.
    logs_of(
        &mut c,
        "web",
        vec![mk_kind("BAD_SIGNATURE", Some("10.0.0.4:8080"), 4, 600, now)],
    );
    let m = mk_mesh();
    let bundle = mk_trust(&[&m.old_root], &m.new_issuer).bundle.clone();
    let current = trust.bundle.clone();
    trust.set_bundle(bundle, "1".into(), now - TimeDelta::seconds(900));
    trust.set_bundle(current, "2".into(), now - TimeDelta::seconds(300));
    let r = run(c, trust);
    let e = correlation(&r, "web", "BAD_SIGNATURE");
    assert_eq!(e.status.name(), "informational", "{e:?}");
    assert!(
        !r.findings
            .iter()
            .any(|f| f.name == "INCONCLUSIVE" && f.subject.as_deref() == Some("emojivoto/web")),
        "{:?}",
        r.findings
    );
}
