use super::*;
use serde_json::json;

const GATEWAY: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

/// A Link spec as `linkerd multicluster link` writes it (ports are strings).
fn mk_spec() -> Value {
    json!({
        "clusterCredentialsSecret": "cluster-credentials-east",
        "gatewayAddress": "203.0.113.7",
        "gatewayIdentity": GATEWAY,
        "gatewayPort": "4143",
        "probeSpec": {"path": "/ready", "period": "3s", "port": "4191"},
        "selector": {"matchLabels": {"mirror.linkerd.io/exported": "true"}},
        "targetClusterDomain": "cluster.local",
        "targetClusterLinkerdNamespace": "linkerd",
        "targetClusterName": "east"
    })
}

fn mk_link(spec: Value) -> Link {
    parse("linkerd-multicluster", "east", Some(&spec))
}

#[test]
fn a_link_as_the_cli_writes_it_names_its_gateway_identity_and_probe_port() {
    let l = mk_link(mk_spec());
    assert_eq!(l.key(), "linkerd-multicluster/east");
    assert_eq!(l.target_cluster, "east");
    assert_eq!(l.addresses, vec!["203.0.113.7"]);
    assert_eq!(
        l.target,
        Ok(GatewayTarget {
            identity: GATEWAY.into(),
            port: 4191
        })
    );
}

#[test]
fn several_gateway_addresses_are_split_on_commas_and_trimmed() {
    let mut spec = mk_spec();
    spec["gatewayAddress"] = json!(" 203.0.113.7, gw.east.example ,,2001:db8::1 ");
    assert_eq!(
        mk_link(spec).addresses,
        vec!["203.0.113.7", "gw.east.example", "2001:db8::1"]
    );
}

#[test]
fn the_probe_port_defaults_to_4191_and_may_be_a_number() {
    let mut spec = mk_spec();
    spec.as_object_mut().unwrap().remove("probeSpec");
    assert_eq!(mk_link(spec.clone()).target.unwrap().port, 4191);
    spec["probeSpec"] = json!({"port": ""});
    assert_eq!(mk_link(spec.clone()).target.unwrap().port, 4191);
    spec["probeSpec"] = json!({"port": 14191});
    assert_eq!(mk_link(spec).target.unwrap().port, 14191);
}

#[test]
fn a_bad_probe_port_is_said_and_the_link_still_has_its_addresses() {
    for bad in [
        json!("http"),
        json!("0"),
        json!("70000"),
        json!(-1),
        json!(41.5),
        json!(true),
    ] {
        let mut spec = mk_spec();
        spec["probeSpec"]["port"] = bad.clone();
        let l = mk_link(spec);
        assert_eq!(
            l.target,
            Err(LinkError::BadPort {
                field: "probeSpec.port",
                value: bad.to_string()
            }),
            "{bad}"
        );
        assert_eq!(l.addresses, vec!["203.0.113.7"]);
    }
}

#[test]
fn missing_fields_a_probe_needs_are_named_and_others_fall_back() {
    let mut spec = mk_spec();
    let o = spec.as_object_mut().unwrap();
    o.remove("gatewayIdentity");
    o.remove("targetClusterName");
    let l = mk_link(spec);
    assert_eq!(l.target, Err(LinkError::Missing("gatewayIdentity")));
    assert_eq!(
        l.target.unwrap_err().to_string(),
        "spec.gatewayIdentity is not set"
    );
    assert_eq!(l.target_cluster, "east", "the Link's name stands in");

    // A Link without a gateway (pod-to-pod multicluster) or without a spec has nothing to probe.
    let mut spec = mk_spec();
    spec["gatewayAddress"] = json!("");
    assert!(mk_link(spec).addresses.is_empty());
    let l = parse("ns", "bare", None);
    assert!(l.addresses.is_empty());
    assert_eq!(l.target_cluster, "bare");
}

#[test]
fn each_gateway_address_becomes_a_remote_pod_with_its_probe_outcome() {
    let mut spec = mk_spec();
    spec["gatewayAddress"] = json!("127.0.0.9,gw.east.example,2001:db8::1");
    let l = mk_link(spec);
    let now = Utc::now();
    let outcomes = BTreeMap::from([
        (
            "127.0.0.9".to_string(),
            GatewayOutcome::Chain {
                address: "127.0.0.9:4191".parse().unwrap(),
                certificates: vec![b"not der".to_vec()],
            },
        ),
        (
            "gw.east.example".to_string(),
            GatewayOutcome::Failed {
                address: None,
                kind: "unresolvable".into(),
                detail: "cannot resolve gw.east.example".into(),
            },
        ),
    ]);
    let rs = records(&l, outcomes, now, &mut Interner::default());
    let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "gateway-east-127.0.0.9",
            "gateway-east-gw.east.example",
            "gateway-east-2001:db8::1"
        ]
    );
    for r in &rs {
        assert_eq!(r.namespace, "linkerd-multicluster");
        assert_eq!(r.owners, vec!["Link/east"]);
        assert_eq!(r.identity_name.as_deref(), Some(GATEWAY));
        assert_eq!(r.service_account, "linkerd-gateway");
        assert!(
            r.node.is_empty(),
            "a remote pod runs on no node of this cluster"
        );
    }
    assert!(matches!(&rs[0].probe, ProbeEvidence::Chain(c) if c.leaf_unreadable));
    assert_eq!(rs[0].pod_ip, "127.0.0.9");
    assert_eq!(rs[0].probe_address, "127.0.0.9:4191");
    assert!(matches!(&rs[1].probe, ProbeEvidence::Failed { kind, .. } if kind == "unresolvable"));
    assert_eq!(rs[1].probe_address, "gw.east.example:4191");
    assert!(matches!(rs[2].probe, ProbeEvidence::None));
    assert_eq!(rs[2].probe_address, "[2001:db8::1]:4191");
    assert_eq!(
        rs.iter()
            .map(|r| &r.uid)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );
}

#[test]
fn a_link_that_cannot_be_probed_records_why_for_each_address() {
    let mut spec = mk_spec();
    spec["probeSpec"]["port"] = json!("http");
    let rs = records(
        &mk_link(spec),
        BTreeMap::new(),
        Utc::now(),
        &mut Interner::default(),
    );
    assert_eq!(rs.len(), 1);
    match &rs[0].probe {
        ProbeEvidence::Skipped(why) => assert_eq!(
            why,
            "Link linkerd-multicluster/east cannot be probed: spec.probeSpec.port is not a port: \"http\""
        ),
        other => panic!("{other:?}"),
    }
}
