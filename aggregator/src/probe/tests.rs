use super::*;
use anchorwatch_tests::pki::{Ca, window};
use anchorwatch_tests::proxysim::{MetricsStyle, ProxyIdentity, SimProxy};

const GATEWAY: &str =
    "linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local";

fn mk_prober() -> Prober {
    Prober::new(Duration::from_secs(2)).unwrap()
}

/// A simulated gateway proxy on its own loopback address (any port).
async fn mk_gateway(ip: &str, identity: ProxyIdentity) -> SimProxy {
    SimProxy::start(
        format!("{ip}:0").parse().unwrap(),
        identity,
        MetricsStyle::None,
    )
    .await
    .unwrap()
}

fn mk_ready(name: &str) -> (ProxyIdentity, Vec<Vec<u8>>) {
    let root = Ca::root("root.linkerd.east.example").unwrap();
    let issuer = root
        .issuer("identity.linkerd.east.example", window(-60, 86_400))
        .unwrap();
    let leaf = issuer.leaf(GATEWAY, window(-60, 3600)).unwrap();
    let chain = vec![leaf.der, issuer.cert_der.clone()];
    let id = ProxyIdentity::Ready {
        name: name.into(),
        chain: chain.clone(),
        key_pkcs8: leaf.key_pkcs8,
    };
    (id, chain)
}

#[tokio::test]
async fn a_gateway_presents_its_chain_as_raw_der_to_a_probe_with_its_identity_as_sni() {
    let (id, chain) = mk_ready(GATEWAY);
    let gw = mk_gateway("127.31.1.1", id).await;
    let port = gw.local_addr().port();
    let (addr, got) = mk_prober()
        .probe("127.31.1.1", port, GATEWAY)
        .await
        .unwrap();
    assert_eq!(addr, gw.local_addr());
    assert_eq!(got, chain);
    gw.stop().await;
}

#[tokio::test]
async fn failures_are_classified_with_the_agents_kinds() {
    let (id, _) = mk_ready("someone-else.example");
    let wrong_sni = mk_gateway("127.31.2.1", id).await;
    let pending = mk_gateway(
        "127.31.2.2",
        ProxyIdentity::Pending {
            name: GATEWAY.into(),
        },
    )
    .await;
    let silent = mk_gateway("127.31.2.3", ProxyIdentity::Silent).await;
    let prober = Prober::new(Duration::from_millis(500)).unwrap();
    let kind = |r: Outcome| r.map(|_| ()).unwrap_err().1.kind();

    let p = wrong_sni.local_addr().port();
    assert_eq!(
        kind(prober.probe("127.31.2.1", p, GATEWAY).await),
        "closed_before_server_hello"
    );
    let p = pending.local_addr().port();
    let err = prober.probe("127.31.2.2", p, GATEWAY).await.unwrap_err();
    assert_eq!(
        err,
        (
            Some(pending.local_addr()),
            ProbeError::Alert("access_denied".into())
        )
    );
    let p = silent.local_addr().port();
    assert_eq!(
        kind(prober.probe("127.31.2.3", p, GATEWAY).await),
        "timeout"
    );
    // Nothing listens on this address.
    assert_eq!(
        kind(prober.probe("127.31.2.4", 4191, GATEWAY).await),
        "refused"
    );
    assert_eq!(
        kind(prober.probe("127.31.2.4", 4191, "not a name!").await),
        "invalid_server_name"
    );
    // A name the resolver refuses without asking anyone (no query leaves the machine).
    let err = prober.probe("gw\0east", 4191, GATEWAY).await.unwrap_err();
    assert_eq!((err.0, err.1.kind()), (None, "unresolvable"));
    for s in [wrong_sni, pending, silent] {
        s.stop().await;
    }
}

#[tokio::test]
async fn bracketed_ip_literals_are_not_sent_to_the_resolver() {
    assert_eq!(
        resolve("[::1]", 4191).await.unwrap(),
        "[::1]:4191".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        resolve("127.31.3.1", 1).await.unwrap(),
        "127.31.3.1:1".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn alert_names_are_the_rfc_names() {
    assert_eq!(alert_name("AccessDenied"), "access_denied");
    assert_eq!(alert_name("UnknownCA"), "unknown_ca");
    assert_eq!(alert_name("ProtocolVersion"), "protocol_version");
}
