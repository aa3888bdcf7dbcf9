use super::*;
use crate::analysis::tests::{Mesh, NAME, mk_mesh, mk_pod, mk_trust, now, sources};
use crate::analysis::{VerdictKind, pod_verdicts};
use crate::model::ProbeEvidence;
use crate::trust::{BundleState, IssuerState};
use crate::verify::{parse_der, parse_pem_bundle};
use anchorwatch_tests::pki::{Ca, window};

const OTHER_NAME: &str = "db.ns.serviceaccount.identity.linkerd.cluster.local";

/// A leaf for `name` under `issuer`, valid from `from` to `to` seconds from now, with `above`
/// presented after it.
fn chain(issuer: &Ca, name: &str, (from, to): (i64, i64), above: &[&Ca]) -> Vec<Vec<u8>> {
    let leaf = issuer.leaf(name, window(from, to)).unwrap();
    std::iter::once(leaf.der)
        .chain(above.iter().map(|c| c.cert_der.clone()))
        .collect()
}

fn pod(uid: &str, spec: &[&Ca], chain: Vec<Vec<u8>>) -> PodRecord {
    let mut pod = mk_pod(spec, chain);
    pod.uid = uid.into();
    pod
}

fn bundle(roots: &[&Ca]) -> BundleState {
    let text: String = roots.iter().map(|r| r.cert_pem.clone()).collect();
    BundleState::Available(Arc::new(parse_pem_bundle(&text)))
}

fn issuer(ca: &Ca) -> IssuerState {
    IssuerState::Available(vec![Arc::new(parse_der(&ca.cert_der).unwrap())])
}

/// Each pod's basis, kept as the model keeps it with the pod.
fn bases(judge: &mut Judge, verifier: &mut Verifier, pods: &[PodRecord]) -> Vec<PodBasis> {
    pods.iter().map(|pod| judge.basis(pod, verifier)).collect()
}

fn kinds(a: &PodAnalysis) -> Vec<VerdictKind> {
    a.verdicts.iter().map(|v| v.kind).collect()
}

/// The mesh's roots (same name, other keys) and issuers, plus a root of another name.
struct Pki {
    m: Mesh,
    other: Ca,
    issuer_other: Ca,
    issuer_expired: Ca,
}

fn mk_pki() -> Pki {
    let m = mk_mesh();
    let other = Ca::root("root.other.example").unwrap();
    let year = window(-86_400, 365 * 86_400);
    Pki {
        issuer_other: other.issuer("identity.other.example", year).unwrap(),
        issuer_expired: m
            .old_root
            .issuer("identity.linkerd.cluster.local", window(-7200, -3600))
            .unwrap(),
        other,
        m,
    }
}

/// uid, spec anchors, leaf signer, leaf name, leaf window, presented above the leaf.
type Row<'a> = (
    &'a str,
    Vec<&'a Ca>,
    &'a Ca,
    &'a str,
    (i64, i64),
    Vec<&'a Ca>,
);

/// Every kind of evidence the memo must judge as `pod_verdicts` does.
fn mk_pods(p: &Pki, started: DateTime<Utc>) -> Vec<PodRecord> {
    let (ca1, ca2) = (&p.m.old_root, &p.m.new_root);
    let (i1, i2, io, ix) = (
        &p.m.old_issuer,
        &p.m.new_issuer,
        &p.issuer_other,
        &p.issuer_expired,
    );
    let ok = (-60, 3600);
    let table: Vec<Row> = vec![
        ("a1", vec![ca1], i1, NAME, ok, vec![i1]),
        ("a2", vec![ca1], i1, NAME, ok, vec![i1]),
        ("a3", vec![ca2], i1, NAME, ok, vec![i1]),
        ("b1", vec![ca1, ca2], i2, NAME, ok, vec![i2]),
        ("b2", vec![ca2, ca1], i2, NAME, ok, vec![i2]),
        ("other-name", vec![ca2], i1, OTHER_NAME, ok, vec![i1]),
        ("expired", vec![ca1], i1, NAME, (-7200, -3600), vec![i1]),
        ("future", vec![ca1], i1, NAME, (3600, 7200), vec![i1]),
        ("expired-ca", vec![ca1], ix, NAME, ok, vec![ix]),
        ("with-root", vec![ca1], i1, NAME, ok, vec![i1, ca1]),
        ("by-ca1", vec![ca1], ca1, NAME, ok, vec![]),
        ("by-ca2", vec![ca1], ca2, NAME, ok, vec![]),
        ("by-ca2-presented", vec![ca2], ca2, NAME, ok, vec![ca2]),
        ("foreign", vec![ca1], io, NAME, ok, vec![io]),
        ("no-intermediate", vec![ca1], i1, NAME, ok, vec![]),
        ("no-spec", vec![], i1, NAME, ok, vec![i1]),
    ];
    let mut pods: Vec<PodRecord> = table
        .into_iter()
        .map(|(uid, spec, signer, name, dates, above)| {
            pod(uid, &spec, chain(signer, name, dates, &above))
        })
        .collect();
    pods.push(pod("unreadable", &[ca1], vec![b"not der".to_vec()]));
    pods.push(pod("empty", &[ca1], vec![]));
    for (uid, started_at) in [
        ("cm-none", None),
        ("cm-early", Some(started - chrono::Duration::hours(1))),
        ("cm-late", Some(started + chrono::Duration::seconds(90))),
    ] {
        let mut pod = pod(uid, &[], chain(i2, NAME, ok, &[i2]));
        pod.spec_anchors = SpecAnchorsEvidence::ConfigMap {
            name: "linkerd-identity-trust-roots".into(),
            key: "ca-bundle.crt".into(),
        };
        pod.proxy_started_at = started_at;
        pods.push(pod);
    }
    let mut missing = pod("missing-spec", &[], chain(i1, NAME, ok, &[i1]));
    missing.spec_anchors = SpecAnchorsEvidence::Missing("no env".into());
    pods.push(missing);
    let mut bad_spec = pod("bad-spec", &[], chain(i1, NAME, ok, &[i1]));
    bad_spec.spec_anchors = SpecAnchorsEvidence::Pem(Arc::new(parse_pem_bundle(&format!(
        "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ca1.cert_pem
    ))));
    pods.push(bad_spec);
    for (uid, probe) in [
        (
            "failed",
            ProbeEvidence::Failed {
                kind: "timeout".into(),
                detail: "timed out".into(),
            },
        ),
        ("skipped", ProbeEvidence::Skipped("host network".into())),
        ("unprobed", ProbeEvidence::None),
    ] {
        let mut pod = pod(uid, &[ca1], vec![]);
        pod.probe = probe;
        pods.push(pod);
    }
    pods
}

/// A change of the trust configuration, made at the given time.
type Step<'a> = Box<dyn Fn(&mut Trust, DateTime<Utc>) + 'a>;

/// Pods of every kind ([`mk_pods`], started at `start`), with the judge and verifier that
/// computed their bases.
struct Corpus {
    p: Pki,
    start: DateTime<Utc>,
    pods: Vec<PodRecord>,
    judge: Judge,
    verifier: Verifier,
    bases: Vec<PodBasis>,
}

fn corpus() -> Corpus {
    let p = mk_pki();
    let start = now();
    let pods = mk_pods(&p, start);
    let mut judge = Judge::new();
    let mut verifier = Verifier::new();
    let bases = bases(&mut judge, &mut verifier, &pods);
    Corpus {
        p,
        start,
        pods,
        judge,
        verifier,
        bases,
    }
}

#[test]
fn memo_judges_every_pod_as_pod_verdicts_does() {
    let Corpus {
        p,
        start,
        pods,
        mut judge,
        mut verifier,
        bases,
    } = corpus();
    let (ca1, ca2) = (&p.m.old_root, &p.m.new_root);

    let mut trust = Trust::new(sources());
    let stale: Arc<str> = Arc::from("the agent on node node-1 has not reported");
    let steps: Vec<(&str, Step)> = vec![
        ("nothing read yet", Box::new(|_, _| {})),
        (
            "bundle ca1, issuer under ca1",
            Box::new(|t, at| {
                t.set_bundle(bundle(&[ca1]), "1".into(), at);
                t.set_issuer(issuer(&p.m.old_issuer));
            }),
        ),
        (
            "both roots, issuer under ca2",
            Box::new(|t, at| {
                t.set_bundle(bundle(&[ca1, ca2]), "2".into(), at);
                t.set_issuer(issuer(&p.m.new_issuer));
            }),
        ),
        (
            "ca2 only",
            Box::new(|t, at| {
                t.set_bundle(bundle(&[ca2]), "3".into(), at);
            }),
        ),
        (
            "bundle gone",
            Box::new(|t, at| {
                let gone = BundleState::Unavailable("ConfigMap not found".into());
                t.set_bundle(gone, "4".into(), at);
            }),
        ),
        (
            "other root and ca1, issuer under the other root",
            Box::new(|t, at| {
                t.set_bundle(bundle(&[&p.other, ca1]), "5".into(), at);
                t.set_issuer(issuer(&p.issuer_other));
            }),
        ),
        (
            "issuer gone",
            Box::new(|t, _| {
                t.set_issuer(IssuerState::Unavailable("Secret not found".into()));
            }),
        ),
    ];
    let mut compared = 0;
    for (i, (step, apply)) in steps.iter().enumerate() {
        apply(&mut trust, start + chrono::Duration::minutes(i as i64));
        for at in [
            start,
            start + chrono::Duration::hours(2),
            start - chrono::Duration::minutes(30),
        ] {
            for node_stale in [None, Some(&stale)] {
                for (pod, basis) in pods.iter().zip(&bases) {
                    let memo = judge.judge(pod, basis, &trust, &mut verifier, node_stale, at);
                    let direct =
                        pod_verdicts(pod, &trust, &mut verifier, node_stale.map(|s| &**s), at);
                    assert_eq!(memo, direct, "pod {} after {step:?} at {at}", pod.uid);
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, steps.len() * 3 * 2 * pods.len());
}

#[test]
fn pods_of_one_identity_under_one_issuer_share_one_judgement() {
    let m = mk_mesh();
    let pods: Vec<PodRecord> = (0..10)
        .map(|n| {
            let c = chain(&m.old_issuer, NAME, (-60, 3600), &[&m.old_issuer]);
            pod(&format!("p{n}"), &[&m.old_root], c)
        })
        .collect();
    let mut judge = Judge::new();
    let mut verifier = Verifier::new();
    let trust = mk_trust(&[&m.old_root], &m.old_issuer);
    // Pods keep their basis; the classes live as long as some pod holds them.
    let bases = bases(&mut judge, &mut verifier, &pods);
    for (pod, basis) in pods.iter().zip(&bases) {
        let a = judge.judge(pod, basis, &trust, &mut verifier, None, now());
        assert_eq!(kinds(&a), vec![VerdictKind::Ok]);
    }
    assert_eq!(judge.chains.map.len(), 1, "one chain class");
    assert_eq!(judge.memo.len(), 1, "one shared judgement");
}

#[test]
fn bundle_change_that_drops_the_anchor_turns_memoised_pods_stale_and_back() {
    let m = mk_mesh();
    let (ca1, ca2) = (&m.old_root, &m.new_root);
    let pods: Vec<PodRecord> = (0..3)
        .map(|n| {
            let c = chain(&m.old_issuer, NAME, (-60, 3600), &[&m.old_issuer]);
            pod(&format!("p{n}"), &[ca1, ca2], c)
        })
        .collect();
    let mut judge = Judge::new();
    let mut verifier = Verifier::new();
    let bases = bases(&mut judge, &mut verifier, &pods);
    let mut judge_all = |trust: &Trust| -> Vec<Vec<VerdictKind>> {
        pods.iter()
            .zip(&bases)
            .map(|(pod, basis)| kinds(&judge.judge(pod, basis, trust, &mut verifier, None, now())))
            .collect()
    };
    let mut trust = mk_trust(&[ca1], &m.old_issuer);
    assert_eq!(judge_all(&trust), vec![vec![VerdictKind::Ok]; 3]);
    // ca2 has ca1's name and another key: BadSignature.
    trust.set_bundle(bundle(&[ca2]), "2".into(), now());
    assert_eq!(judge_all(&trust), vec![vec![VerdictKind::StaleLeaf]; 3]);
    trust.set_bundle(bundle(&[ca2, ca1]), "3".into(), now());
    assert_eq!(judge_all(&trust), vec![vec![VerdictKind::Ok]; 3]);
}

#[test]
fn passing_a_leafs_not_after_flips_it_to_leaf_expired_through_the_memo() {
    let m = mk_mesh();
    let i1 = &m.old_issuer;
    let short = pod("short", &[&m.old_root], chain(i1, NAME, (-60, 600), &[i1]));
    let long = pod("long", &[&m.old_root], chain(i1, NAME, (-60, 3600), &[i1]));
    let mut judge = Judge::new();
    let mut verifier = Verifier::new();
    let trust = mk_trust(&[&m.old_root], i1);
    let short_basis = judge.basis(&short, &mut verifier);
    let long_basis = judge.basis(&long, &mut verifier);
    let class = |b: &PodBasis| b.leaf.as_ref().and_then(|l| l.class.as_ref()).map(|c| c.0);
    assert_eq!(
        class(&short_basis),
        class(&long_basis),
        "one class: dates are not in it"
    );

    let mut at = |pod: &PodRecord, basis: &PodBasis, t: DateTime<Utc>| {
        let a = judge.judge(pod, basis, &trust, &mut verifier, None, t);
        (kinds(&a), a.verdicts[0].detail.clone())
    };
    let t0 = now();
    assert_eq!(at(&short, &short_basis, t0).0, vec![VerdictKind::Ok]);
    assert_eq!(at(&long, &long_basis, t0).0, vec![VerdictKind::Ok]);
    let later = t0 + chrono::Duration::seconds(1200);
    let (kinds_short, detail) = at(&short, &short_basis, later);
    assert_eq!(kinds_short, vec![VerdictKind::LeafExpired]);
    assert!(detail.contains(NAME), "{detail}");
    assert_eq!(at(&long, &long_basis, later).0, vec![VerdictKind::Ok]);
    let much_later = t0 + chrono::Duration::hours(2);
    assert_eq!(
        at(&long, &long_basis, much_later).0,
        vec![VerdictKind::LeafExpired]
    );
}

#[test]
fn leaves_issued_by_a_bundle_anchor_are_judged_per_pod() {
    // Same names, same SAN, no presented CA: one shape, but the anchor decides by key.
    let m = mk_mesh();
    let (ca1, ca2) = (&m.old_root, &m.new_root);
    let by_ca1 = pod("by-ca1", &[ca1], chain(ca1, NAME, (-60, 3600), &[]));
    let by_ca2 = pod("by-ca2", &[ca1], chain(ca2, NAME, (-60, 3600), &[]));
    let mut judge = Judge::new();
    let mut verifier = Verifier::new();
    let trust = mk_trust(&[ca1], &m.old_issuer);
    let b1 = judge.basis(&by_ca1, &mut verifier);
    let b2 = judge.basis(&by_ca2, &mut verifier);
    let a = judge.judge(&by_ca1, &b1, &trust, &mut verifier, None, now());
    assert_eq!(kinds(&a), vec![VerdictKind::Ok]);
    let a = judge.judge(&by_ca2, &b2, &trust, &mut verifier, None, now());
    assert_eq!(kinds(&a), vec![VerdictKind::StaleLeaf]);
    assert_eq!(&*a.verdicts[0].reason, "BadSignature");
}

#[test]
fn a_judgement_holds_until_the_instant_judge_until_names() {
    let Corpus {
        p,
        start,
        pods,
        mut judge,
        mut verifier,
        bases,
    } = corpus();
    let (ca1, ca2) = (&p.m.old_root, &p.m.new_root);
    let mut trust = Trust::new(sources());
    trust.set_bundle(bundle(&[ca1, ca2]), "1".into(), start);
    trust.set_issuer(issuer(&p.m.old_issuer));
    let hours = |h: i64| chrono::Duration::hours(h);
    let (mut timeless, mut flips_after, mut every_tick) = (0, 0, 0);
    for at in [
        start - hours(2),
        start,
        start + hours(2),
        start + hours(24 * 400),
    ] {
        for (pod, basis) in pods.iter().zip(&bases) {
            let (a, until) = judge.judge_until(pod, basis, &trust, &mut verifier, None, at);
            let mut again = |t| judge.judge(pod, basis, &trust, &mut verifier, None, t);
            match until {
                None => {
                    assert_eq!(again(at + hours(24 * 3650)), a, "pod {} at {at}", pod.uid);
                    timeless += 1;
                }
                Some(u) if u == at => {
                    assert!(
                        a.has(VerdictKind::LeafExpired) || a.has(VerdictKind::LeafNotYetValid),
                        "pod {} at {at}: due every tick with no dated verdict: {a:?}",
                        pod.uid
                    );
                    every_tick += 1;
                }
                Some(u) => {
                    assert!(u > at, "pod {} at {at}: due at {u}, in the past", pod.uid);
                    assert_eq!(again(at + (u - at) / 2), a, "pod {} at {at}", pod.uid);
                    assert_eq!(again(u), a, "pod {} at {at} (until {u})", pod.uid);
                    if again(u + chrono::Duration::seconds(1)) != a {
                        flips_after += 1;
                    }
                }
            }
        }
    }
    // The corpus has pods of each kind: no dated chain, chains within their windows that
    // expire later, and chains out of their windows.
    assert!(
        timeless > 0 && flips_after > 0 && every_tick > 0,
        "{timeless} {flips_after} {every_tick}"
    );
}
