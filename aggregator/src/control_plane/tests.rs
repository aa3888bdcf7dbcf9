use super::*;
use anchorwatch_tests::pki::Ca;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

#[test]
fn values_yaml_gives_the_recorded_anchors() {
    let a = Ca::root("root.linkerd.cluster.local").unwrap();
    let b = Ca::root("root-2.linkerd.cluster.local").unwrap();
    let values = format!(
        "controllerImage: cr.l5d.io/linkerd/controller\nidentityTrustAnchorsPEM: |\n{}{}identityTrustDomain: cluster.local\n",
        indent(&a.cert_pem),
        indent(&b.cert_pem)
    );
    let cfg = read_linkerd_config(Some(&data(&[("values", &values)])));
    let anchors = cfg.anchors().expect("anchors");
    assert_eq!(anchors.certs.len(), 2);
    assert!(anchors.unreadable.is_empty());
}

#[test]
fn the_pre_2_10_global_json_is_read_too() {
    let a = Ca::root("root.linkerd.cluster.local").unwrap();
    let global = serde_json::json!({
        "linkerdNamespace": "linkerd",
        "identityContext": {"trustDomain": "cluster.local", "trustAnchorsPem": a.cert_pem},
    })
    .to_string();
    let cfg = read_linkerd_config(Some(&data(&[("global", &global)])));
    assert_eq!(cfg.anchors().expect("anchors").certs.len(), 1);
}

#[test]
fn a_corrupt_block_is_kept_for_cert_unreadable() {
    let a = Ca::root("root.linkerd.cluster.local").unwrap();
    let values = format!(
        "identityTrustAnchorsPEM: |\n{}  -----BEGIN CERTIFICATE-----\n  bm90IGEgY2VydA==\n  -----END CERTIFICATE-----\n",
        indent(&a.cert_pem)
    );
    let cfg = read_linkerd_config(Some(&data(&[("values", &values)])));
    let anchors = cfg.anchors().expect("anchors");
    assert_eq!((anchors.certs.len(), anchors.unreadable.len()), (1, 1));
}

#[test]
fn bad_shapes_are_unreadable_with_a_reason_never_a_panic() {
    for (d, why) in [
        (None, "has no data"),
        (Some(data(&[("other", "x")])), "neither values nor global"),
        (Some(data(&[("values", "a: [unclosed")])), "not YAML"),
        (Some(data(&[("global", "{not json")])), "not JSON"),
        (
            Some(data(&[("values", "identityTrustDomain: x\n")])),
            "no identity trust anchors",
        ),
        (
            Some(data(&[("values", "identityTrustAnchorsPEM: 42\n")])),
            "no identity trust anchors",
        ),
        (
            Some(data(&[("values", "- a\n- b\n")])),
            "no identity trust anchors",
        ),
    ] {
        match read_linkerd_config(d.as_ref()) {
            LinkerdConfig::Unreadable(w) => assert!(w.contains(why), "{w}"),
            other => panic!("{why}: {other:?}"),
        }
    }
}

fn ev(kind: IssuerEventKind, min: i64) -> IdentityEvent {
    IdentityEvent {
        kind,
        message: kind.reason().to_string(),
        at: Some(DateTime::<Utc>::UNIX_EPOCH + chrono::TimeDelta::minutes(min)),
    }
}

#[test]
fn events_are_ordered_by_time_and_a_repeat_replaces_its_earlier_version() {
    let mut e = IdentityEvents::default();
    e.apply("b", ev(IssuerEventKind::Skipped, 5));
    e.apply("a", ev(IssuerEventKind::Updated, 1));
    e.apply("b", ev(IssuerEventKind::Skipped, 9));
    let kinds: Vec<_> = e.ordered().iter().map(|x| (x.kind, x.at)).collect();
    assert_eq!(kinds.len(), 2);
    assert_eq!(kinds[0].0, IssuerEventKind::Updated);
    assert_eq!(
        kinds[1],
        (IssuerEventKind::Skipped, ev(IssuerEventKind::Skipped, 9).at)
    );
    e.delete("b");
    assert_eq!(e.ordered().len(), 1);
}

#[test]
fn events_are_bounded_dropping_the_oldest() {
    let mut e = IdentityEvents::default();
    for i in 0..(EVENTS_LIMIT as i64 + 10) {
        e.apply(&format!("e{i}"), ev(IssuerEventKind::ValidationFailed, i));
    }
    let all = e.ordered();
    assert_eq!(all.len(), EVENTS_LIMIT);
    assert_eq!(all[0].at, ev(IssuerEventKind::Updated, 10).at);
}

#[test]
fn reasons_map_both_ways_and_others_are_ignored() {
    for k in [
        IssuerEventKind::Updated,
        IssuerEventKind::Skipped,
        IssuerEventKind::ValidationFailed,
    ] {
        assert_eq!(IssuerEventKind::from_reason(k.reason()), Some(k));
    }
    assert_eq!(IssuerEventKind::from_reason("IssuedLeafCertificate"), None);
}
