//! End-to-end: the real agent and aggregator binaries against the simulated API server and
//! simulated proxies, checked through the real grpcurl. Tests in this file run one at a time
//! (they start several processes each); every wait is bounded.

use anchorwatch_proto::v1 as pb;
use anchorwatch_tests::kubesim::KubeSim;
use anchorwatch_tests::process::{self, Proc};
use anchorwatch_tests::scenario::{self, PodPlan, Scenario};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn grpcurl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GRPCURL") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/grpcurl");
    if venv.is_file() {
        return venv;
    }
    "grpcurl".into()
}

/// A plain HTTP/1.0 GET with a 10 s bound; the body.
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut text = String::new();
        s.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("metrics answer in time")
        .expect("metrics reachable");
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Runs the real grpcurl (plaintext) with a 20 s bound; stdout on success.
async fn grpcurl(addr: &str, args: &[&str]) -> anyhow::Result<String> {
    grpcurl_over(addr, &["-plaintext"], args).await
}

/// Runs the real grpcurl with `transport` flags (`-plaintext`, or `-cacert FILE` for TLS).
async fn grpcurl_over(addr: &str, transport: &[&str], args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(grpcurl_path());
    cmd.args(transport).arg("-max-time").arg("10");
    let (before, after): (Vec<&str>, Vec<&str>) = match args.iter().position(|a| *a == "--") {
        Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
        None => (vec![], args.to_vec()),
    };
    cmd.args(before).arg(addr).args(after).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output()).await??;
    anyhow::ensure!(
        out.status.success(),
        "grpcurl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

async fn call(addr: &str, method: &str, body: Value) -> anyhow::Result<Value> {
    let body = body.to_string();
    let out = grpcurl(addr, &["-d", &body, "--", method]).await?;
    Ok(serde_json::from_str(&out)?)
}

/// Polls `f` every 500 ms until it returns `Some`, for at most `limit`.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::new();
    loop {
        match f().await {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}; last error: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Agents for `nodes`, each under libfaketime at its shift when it has one.
fn shifted_agents(
    c: &Cluster,
    url: &str,
    nodes: &[(&str, Option<&str>)],
    extra: &[&str],
) -> Vec<Proc> {
    nodes
        .iter()
        .map(|(node, shift)| {
            let env = match shift {
                Some(s) => process::faketime(s).unwrap(),
                None => vec![],
            };
            process::agent_with_env(&c.kubeconfig, node, url, c.dir.path(), extra, env).unwrap()
        })
        .collect()
}

/// Polls `Query/ClockReport` (with `history` offsets per node) until `done` holds for its rows.
async fn clock_report_until(
    addr: &str,
    what: &str,
    limit: Duration,
    history: u32,
    done: fn(&[Value]) -> bool,
) -> Value {
    eventually(limit, what, || async move {
        let r = call(
            addr,
            "anchorwatch.v1.Query/ClockReport",
            serde_json::json!({ "history": history }),
        )
        .await?;
        Ok(r["nodes"].as_array().is_some_and(|n| done(n)).then_some(r))
    })
    .await
}

/// The report's row for `node`.
fn clock_row(report: &Value, node: &str) -> Value {
    report["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|x| x["node"] == node))
        .cloned()
        .unwrap_or_else(|| panic!("no row for {node}: {report}"))
}

/// Waits for `needle` in `p`'s log, at most `limit`; the log.
async fn logged(p: &Proc, needle: &str, what: &str, limit: Duration) -> String {
    eventually(limit, what, || {
        let text = p.log_text();
        async move { Ok(text.contains(needle).then_some(text)) }
    })
    .await
}

/// The rotation scenario's pods named `names`.
fn rotation_subset(names: &[&str]) -> Vec<PodPlan> {
    scenario::rotation_pods()
        .into_iter()
        .filter(|p| names.contains(&p.name))
        .collect()
}

/// Verdicts per pod as `KIND` or `KIND:reason` (for chain and probe verdicts), sorted.
fn verdicts_by_pod(list: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for pod in list["pods"].as_array().into_iter().flatten() {
        let key = format!(
            "{}/{}",
            pod["namespace"].as_str().unwrap_or(""),
            pod["name"].as_str().unwrap_or("")
        );
        let mut vs: Vec<String> = pod["verdicts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                let kind = v["verdict"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("VERDICT_")
                    .to_string();
                let reason = v["reason"].as_str().unwrap_or("");
                match kind.as_str() {
                    "STALE_LEAF"
                    | "LEAF_EXPIRED"
                    | "LEAF_NOT_YET_VALID"
                    | "UNPROBED"
                    | "MULTICLUSTER_ANCHOR_MISMATCH" => {
                        format!("{kind}:{reason}")
                    }
                    _ => kind,
                }
            })
            .collect();
        vs.sort();
        out.insert(key, vs);
    }
    out
}

fn expected(pods: &[PodPlan]) -> BTreeMap<String, Vec<String>> {
    pods.iter()
        .map(|p| {
            let mut v: Vec<String> = p.expect.iter().map(|s| s.to_string()).collect();
            v.sort();
            (format!("{}/{}", p.namespace, p.name), v)
        })
        .collect()
}

struct Cluster {
    kube: KubeSim,
    scenario: Scenario,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

/// A simulated API server, a temp dir and a kubeconfig for it in there.
async fn empty_cluster() -> (KubeSim, tempfile::TempDir, PathBuf) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let kube = KubeSim::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig).unwrap();
    (kube, dir, kubeconfig)
}

async fn cluster(net: u8, pods: Vec<PodPlan>) -> Cluster {
    let (kube, dir, kubeconfig) = empty_cluster().await;
    let scenario = Scenario::start(&kube, net, pods).await.unwrap();
    Cluster {
        kube,
        scenario,
        kubeconfig,
        dir,
    }
}

fn dump_logs(procs: &[Proc]) {
    for p in procs {
        eprintln!("===== {} =====\n{}", p.name, p.log_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_stale_leaves_are_reported_with_the_reason_a_proxy_logs() {
    let _serial = SERIAL.lock().await;
    let c = cluster(20, scenario::rotation_pods()).await;
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");
    let mut procs = vec![process::aggregator(&c.kubeconfig, &addr, c.dir.path(), &[]).unwrap()];
    for n in 1..=3 {
        procs.push(
            process::agent(
                &c.kubeconfig,
                &scenario::node_name(n),
                &url,
                c.dir.path(),
                &[],
            )
            .unwrap(),
        );
    }
    let want = expected(&c.scenario.pods);

    // Every pod judged as planned: exactly the pods whose chains the bundle rejects are faulty.
    let got = eventually(
        Duration::from_secs(60),
        "every pod judged as expected",
        || {
            let addr = addr.clone();
            let want = want.clone();
            async move {
                let list = call(
                    &addr,
                    "anchorwatch.v1.Query/ListPods",
                    serde_json::json!({}),
                )
                .await?;
                let got = verdicts_by_pod(&list);
                Ok((got == want).then_some(got))
            }
        },
    )
    .await;
    assert_eq!(got.len(), 12);

    // Reflection as a user meets it.
    let services = grpcurl(&addr, &["list"]).await.unwrap();
    for s in [
        "anchorwatch.v1.Query",
        "anchorwatch.v1.Ingest",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.contains(s),
            "{s} missing from grpcurl list:\n{services}"
        );
    }
    let described = grpcurl(&addr, &["describe", "anchorwatch.v1.Query"])
        .await
        .unwrap();
    assert!(
        described.contains("rpc ListPods") && described.contains("Meshed pods with their verdicts"),
        "{described}"
    );
    let described = grpcurl(&addr, &["describe", "anchorwatch.v1.VerdictDetail"])
        .await
        .unwrap();
    assert!(described.contains("as rustls prints it"), "{described}");
    let health = call(&addr, "grpc.health.v1.Health/Check", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(health["status"], "SERVING");

    // The faulty pods, with the reason the proxy itself would log.
    let faulty = call(
        &addr,
        "anchorwatch.v1.Query/ListPods",
        serde_json::json!({"only_faulty": true}),
    )
    .await
    .unwrap();
    let rejected: BTreeMap<String, Vec<String>> = verdicts_by_pod(&faulty)
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.into_iter()
                    .filter(|v| v.starts_with("STALE_LEAF") || v.starts_with("LEAF_"))
                    .collect(),
            )
        })
        .collect();
    let want_rejected: BTreeMap<String, Vec<String>> = [
        ("emojivoto/voting-6c8d9f-c1", "STALE_LEAF:BadSignature"),
        ("emojivoto/vote-bot-58f4d-d1", "STALE_LEAF:BadSignature"),
        ("emojivoto/emoji-5f6b8c-b2", "STALE_LEAF:BadSignature"),
        ("booksapp/books-64c9b-e1", "STALE_LEAF:UnknownIssuer"),
        ("booksapp/authors-7bb5c-f1", "LEAF_EXPIRED:Expired"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
    .collect();
    assert_eq!(rejected, want_rejected);

    // The full evidence of one BadSignature pod.
    let pod = call(
        &addr,
        "anchorwatch.v1.Query/GetPod",
        serde_json::json!({"namespace": "emojivoto", "name": "voting-6c8d9f-c1"}),
    )
    .await
    .unwrap();
    assert_eq!(
        pod["identityName"],
        "voting.emojivoto.serviceaccount.identity.linkerd.cluster.local"
    );
    let chain = pod["presentedChain"].as_array().unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(
        chain[0]["dnsSans"][0],
        "voting.emojivoto.serviceaccount.identity.linkerd.cluster.local"
    );
    assert_eq!(chain[1]["issuer"], "OU=None");
    assert!(
        pod.get("chainAnchor").is_none(),
        "a stale leaf builds to no bundle anchor"
    );
    assert_eq!(
        pod["metricsCertExpiry"], chain[0]["notAfter"],
        "the proxy's expiry gauge is its leaf's notAfter"
    );
    let ca1 = anchorwatch_aggregator_fingerprint(&c.scenario.pki.ca1.cert_der);
    assert_eq!(pod["specAnchors"][0]["fingerprintSha256"], ca1.as_str());
    // Who signed what, although the chain builds to no bundle anchor: the old root of its spec.
    assert_eq!(chain[0]["signedBy"], chain[1]["fingerprintSha256"]);
    assert_eq!(chain[1]["signedBy"], ca1.as_str());

    let summary = call(&addr, "anchorwatch.v1.Query/Summary", serde_json::json!({}))
        .await
        .unwrap();
    assert!(
        !summary["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["subject"] == "secret/linkerd-identity-issuer"),
        "a healthy issuer has no finding: {summary}"
    );
    assert_eq!(
        summary["issuer"]["chainsToAnchors"][0],
        anchorwatch_aggregator_fingerprint(&c.scenario.pki.ca2.cert_der).as_str()
    );

    // The analysis: the stale pods are affected; a restart of their Deployments fixes them, the
    // pod lacking the issuer's anchor first; the leaves chaining to ca1, which only those pods'
    // own anchors hold, make this an unsafe removal of ca1.
    let affected: Vec<&str> = summary["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(affected.len(), 5, "{summary}");
    assert_eq!(
        summary["rotationPhase"]["phase"], "old_anchor_removed",
        "{summary}"
    );
    let restarts: Vec<&str> = summary["plan"]["restarts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(restarts[0], "emojivoto/Deployment/voting", "{summary}");
    let mut sorted = restarts.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            "booksapp/Deployment/authors",
            "booksapp/Deployment/books",
            "emojivoto/Deployment/emoji",
            "emojivoto/Deployment/vote-bot",
            "emojivoto/Deployment/voting"
        ],
        "{summary}"
    );
    assert!(
        summary["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["verdict"] == "UNSAFE_ANCHOR_REMOVAL")
    );

    // The watch stream sends the summary at once.
    let watched = tokio::process::Command::new(grpcurl_path())
        .args([
            "-plaintext",
            "-max-time",
            "2",
            &addr,
            "anchorwatch.v1.Query/Watch",
        ])
        .kill_on_drop(true)
        .output();
    let watched = tokio::time::timeout(Duration::from_secs(10), watched)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&watched.stdout);
    assert!(
        text.contains("\"rotationPhase\"") && text.contains("emojivoto/Deployment/voting"),
        "{text}"
    );

    // Extending the bundle with the old root changes the verdicts, with nothing restarted.
    let pids: Vec<u32> = procs.iter().map(|p| p.pid()).collect();
    c.kube.apply_config_map(scenario::trust_roots(&[
        &c.scenario.pki.ca2.cert_pem,
        &c.scenario.pki.ca1.cert_pem,
    ]));
    let after = eventually(
        Duration::from_secs(10),
        "verdicts after the bundle change",
        || {
            let addr = addr.clone();
            async move {
                let list = call(
                    &addr,
                    "anchorwatch.v1.Query/ListPods",
                    serde_json::json!({}),
                )
                .await?;
                let got = verdicts_by_pod(&list);
                Ok(
                    (got.get("emojivoto/vote-bot-58f4d-d1") == Some(&vec!["OK".to_string()]))
                        .then_some(got),
                )
            }
        },
    )
    .await;
    assert_eq!(after["emojivoto/emoji-5f6b8c-b2"], vec!["OK"]);
    assert_eq!(
        after["emojivoto/voting-6c8d9f-c1"],
        vec!["STALE_TRUST_BUNDLE"],
        "its spec still lacks the issuer's anchor"
    );
    assert_eq!(
        after["booksapp/books-64c9b-e1"],
        vec!["STALE_LEAF:UnknownIssuer"]
    );
    let summary = call(&addr, "anchorwatch.v1.Query/Summary", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(summary["bundle"]["anchors"].as_array().unwrap().len(), 2);
    let verdicts: Vec<&str> = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["verdict"].as_str().unwrap())
        .collect();
    assert!(verdicts.contains(&"ROTATION_IN_PROGRESS"), "{summary}");
    assert!(
        !verdicts.contains(&"UNSAFE_ANCHOR_REMOVAL"),
        "ca1 is back in the bundle: {summary}"
    );
    assert_eq!(summary["nodesReporting"], 3);
    for p in procs.iter_mut() {
        assert!(p.is_running(), "{} exited", p.name);
    }
    assert_eq!(procs.iter().map(|p| p.pid()).collect::<Vec<_>>(), pids);

    // SIGTERM ends the aggregator promptly although three agent streams are open, and the agents
    // keep running and try to reconnect.
    assert!(
        procs[0].stop(Duration::from_secs(8)),
        "the aggregator ignored SIGTERM:\n{}",
        procs[0].log_text()
    );
    let agent_log = logged(
        &procs[1],
        "report stream down",
        "an agent to notice the aggregator left",
        Duration::from_secs(15),
    )
    .await;
    assert!(agent_log.contains("shutting down") || agent_log.contains("report stream down"));
    for p in procs[1..].iter_mut() {
        assert!(p.is_running(), "{} exited", p.name);
    }

    if std::thread::panicking() {
        dump_logs(&procs);
    }
    drop(procs);
    c.scenario.stop().await;
    c.kube.shutdown().await;
}

/// The SHA-256 fingerprint the aggregator shows for a certificate.
fn anchorwatch_aggregator_fingerprint(der: &[u8]) -> String {
    anchorwatch_aggregator::verify::Fingerprint::of(der).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_yields_findings_and_every_process_keeps_running() {
    let _serial = SERIAL.lock().await;
    let mut pods = scenario::bad_input_pods();
    pods.extend(
        scenario::rotation_pods()
            .into_iter()
            .filter(|p| p.name == "web-7d9c5b-a1"),
    );
    let c = cluster(21, pods).await;
    // No trust bundle at start.
    c.kube
        .delete_config_map(scenario::LINKERD_NS, "linkerd-identity-trust-roots");
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");

    // The agent starts while the aggregator is down.
    let mut agent = process::agent(&c.kubeconfig, "node-1", &url, c.dir.path(), &[]).unwrap();
    let log = logged(
        &agent,
        "report stream down",
        "the agent to report the aggregator unreachable",
        Duration::from_secs(15),
    )
    .await;
    assert!(log.contains("Connection refused"), "{log}");
    assert!(agent.is_running());
    let aggregator = process::aggregator(&c.kubeconfig, &addr, c.dir.path(), &[]).unwrap();

    // A missing ConfigMap: no chain is judged, and the summary says why.
    let summary = eventually(
        Duration::from_secs(30),
        "the missing bundle to be reported",
        || {
            let addr = addr.clone();
            async move {
                let s = call(&addr, "anchorwatch.v1.Query/Summary", serde_json::json!({})).await?;
                Ok((s["pods"] == 4).then_some(s))
            }
        },
    )
    .await;
    assert!(summary["bundle"].get("available").is_none(), "{summary}");
    assert!(
        summary["bundle"]["error"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{summary}"
    );
    let got = eventually(
        Duration::from_secs(30),
        "probe failures and an inconclusive chain",
        || {
            let addr = addr.clone();
            async move {
                let got = verdicts_by_pod(
                    &call(
                        &addr,
                        "anchorwatch.v1.Query/ListPods",
                        serde_json::json!({}),
                    )
                    .await?,
                );
                Ok(
                    (got.get("faulty/hung-1") == Some(&vec!["UNPROBED:timeout".to_string()]))
                        .then_some(got),
                )
            }
        },
    )
    .await;
    assert_eq!(
        got["faulty/wrong-sni-1"],
        vec!["UNPROBED:closed_before_server_hello"]
    );
    assert_eq!(got["emojivoto/web-7d9c5b-a1"], vec!["INCONCLUSIVE"]);
    assert_eq!(
        got["faulty/corrupt-env-1"],
        vec!["CERT_UNREADABLE", "INCONCLUSIVE"]
    );

    // A bundle with garbage between blocks and a corrupt block: the good anchor is used.
    let pem = format!(
        "garbage before\n{}\nnoise\n-----BEGIN CERTIFICATE-----\nAAAA%%%%\n-----END CERTIFICATE-----\n",
        c.scenario.pki.ca2.cert_pem
    );
    c.kube.apply_config_map(scenario::trust_roots(&[&pem]));
    let want = expected(&c.scenario.pods);
    eventually(
        Duration::from_secs(15),
        "verdicts once the bundle exists",
        || {
            let addr = addr.clone();
            let want = want.clone();
            async move {
                let got = verdicts_by_pod(
                    &call(
                        &addr,
                        "anchorwatch.v1.Query/ListPods",
                        serde_json::json!({}),
                    )
                    .await?,
                );
                Ok((got == want).then_some(()))
            }
        },
    )
    .await;
    let summary = call(&addr, "anchorwatch.v1.Query/Summary", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(summary["bundle"]["anchors"].as_array().unwrap().len(), 1);
    assert_eq!(
        summary["bundle"]["unreadableBlocks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // linkerd-config records the anchor and a corrupt block; linkerd-identity records that it
    // refuses to sign. Both reach the findings, and the plan stops.
    c.kube
        .apply_json(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "linkerd-config", "namespace": scenario::LINKERD_NS},
            "data": {"values": format!(
                "identityTrustAnchorsPEM: |\n{}  -----BEGIN CERTIFICATE-----\n  AAAA\n  -----END CERTIFICATE-----\nidentityTrustDomain: cluster.local\n",
                c.scenario.pki.ca2.cert_pem.lines().map(|l| format!("  {l}\n")).collect::<String>()
            )},
        }))
        .unwrap();
    let refused = "x509: certificate has expired or is not yet valid";
    c.kube
        .apply_json(serde_json::json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "linkerd-identity.1", "namespace": scenario::LINKERD_NS},
            "involvedObject": {"kind": "Deployment", "name": "linkerd-identity", "namespace": scenario::LINKERD_NS},
            "reason": "IssuerValidationFailed", "message": refused, "type": "Warning",
            "lastTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }))
        .unwrap();
    let findings = eventually(
        Duration::from_secs(20),
        "linkerd-config and identity's event in the findings",
        || {
            let addr = addr.clone();
            async move {
                let s = call(&addr, "anchorwatch.v1.Query/Summary", serde_json::json!({})).await?;
                let f = s["findings"].as_array().cloned().unwrap_or_default();
                let has = |v: &str, subj: &str| {
                    f.iter()
                        .any(|x| x["verdict"] == v && x["subject"].as_str().unwrap_or("") == subj)
                };
                Ok((has("CERT_UNREADABLE", "configmap/linkerd-config")
                    && has("IDENTITY_UNREACHABLE", ""))
                .then_some(s))
            }
        },
    )
    .await;
    assert!(findings.to_string().contains(refused), "{findings}");
    assert!(
        findings["plan"].get("restarts").is_none(),
        "identity signs nothing: nothing may be restarted: {findings}"
    );

    // A real `linkerd inject` output (a native-sidecar proxy, no serviceAccountName), scheduled
    // on node-1 with no proxy listening.
    let text = anchorwatch_tests::pki::fixture("injected/inject_emojivoto_pod.golden.yml").unwrap();
    let doc = serde_yaml::Deserializer::from_str(&text).next().unwrap();
    let mut injected: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
    injected["spec"]["nodeName"] = "node-1".into();
    injected["status"] = serde_json::json!({"phase": "Running", "podIP": "127.21.1.99"});
    c.kube.apply_json(injected).unwrap();
    let pod = eventually(
        Duration::from_secs(20),
        "the injected fixture pod to be judged",
        || {
            let addr = addr.clone();
            async move {
                let pod = call(
                    &addr,
                    "anchorwatch.v1.Query/GetPod",
                    serde_json::json!({"namespace": "emojivoto", "name": "vote-bot"}),
                )
                .await?;
                Ok(pod
                    .get("probeError")
                    .is_some_and(|e| e.as_str().unwrap_or("").starts_with("refused"))
                    .then_some(pod))
            }
        },
    )
    .await;
    assert_eq!(
        pod["identityName"],
        "default.emojivoto.serviceaccount.identity.linkerd.cluster.local"
    );
    let anchors_pem =
        anchorwatch_tests::pki::fixture("cli-testdata/valid-trust-anchors.pem").unwrap();
    let fixture_fp = anchorwatch_aggregator_fingerprint(
        &anchorwatch_tests::pki::pem_to_der(&anchors_pem).unwrap(),
    );
    assert_eq!(
        pod["specAnchors"][0]["fingerprintSha256"],
        fixture_fp.as_str()
    );
    assert_eq!(
        pod["specAnchors"][0]["subject"],
        "CN=identity.linkerd.cluster.local"
    );
    let kinds: Vec<&str> = pod["summary"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["VERDICT_STALE_TRUST_BUNDLE", "VERDICT_UNPROBED"],
        "its anchors are not the bundle's: {pod}"
    );

    // A hand-made agent stream with a chain that is not DER and a pod without uid.
    let mut client = pb::ingest_client::IngestClient::connect(url.clone())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let garbage = pb::PodEvidence {
        pod: Some(pb::PodRef {
            namespace: "faulty".into(),
            name: "not-der-1".into(),
            uid: "uid-not-der".into(),
        }),
        node: "node-9".into(),
        probe: Some(pb::ProbeResult {
            at: None,
            address: "127.21.9.1:4191".into(),
            outcome: Some(pb::probe_result::Outcome::Chain(pb::PresentedChain {
                certificates: vec![b"this is not DER".to_vec()],
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    let no_uid = pb::PodEvidence {
        pod: Some(pb::PodRef {
            namespace: "faulty".into(),
            name: "no-uid".into(),
            uid: String::new(),
        }),
        ..Default::default()
    };
    tx.send(pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Snapshot(pb::NodeSnapshot {
            node: "node-9".into(),
            seq: 1,
            pods: vec![garbage, no_uid],
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut replies = client
        .report(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let ack = tokio::time::timeout(Duration::from_secs(10), replies.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        ack.kind,
        Some(pb::aggregator_message::Kind::Ack(pb::Ack { seq: 1 }))
    ));
    let pod = call(
        &addr,
        "anchorwatch.v1.Query/GetPod",
        serde_json::json!({"namespace": "faulty", "name": "not-der-1"}),
    )
    .await
    .unwrap();
    let verdicts = &pod["summary"]["verdicts"];
    assert_eq!(verdicts[0]["verdict"], "VERDICT_CERT_UNREADABLE", "{pod}");
    assert!(
        verdicts[0]["detail"]
            .as_str()
            .unwrap()
            .contains("presented leaf"),
        "{pod}"
    );
    let missing = grpcurl(
        &addr,
        &[
            "-d",
            r#"{"namespace":"faulty","name":"no-uid"}"#,
            "--",
            "anchorwatch.v1.Query/GetPod",
        ],
    )
    .await;
    assert!(missing.unwrap_err().to_string().contains("NotFound"));

    // A stream whose first message is not a snapshot is refused with a clear status.
    let (tx2, rx2) = tokio::sync::mpsc::channel(1);
    tx2.send(pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Heartbeat(pb::Heartbeat {
            node: "node-8".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut replies2 = client
        .report(tokio_stream::wrappers::ReceiverStream::new(rx2))
        .await
        .unwrap()
        .into_inner();
    let refused = tokio::time::timeout(Duration::from_secs(10), replies2.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(refused.message().contains("must be a snapshot"));

    // Garbage bytes on the gRPC port.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let _ = s.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(1000)).await;
    }
    let mut procs = vec![aggregator, agent];
    let health = call(&addr, "grpc.health.v1.Health/Check", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(health["status"], "SERVING");
    for p in procs.iter_mut() {
        assert!(p.is_running(), "{} exited:\n{}", p.name, p.log_text());
    }
    drop(tx);
    drop(procs);
    c.scenario.stop().await;
    c.kube.shutdown().await;
}

/// Three agents on true time against one aggregator: node-1 runs linkerd-identity unshifted,
/// node-2's agent runs under libfaketime at +3 s, node-3's at −25 s. Nothing but the measurement
/// tells the aggregator (or this test's assertions) about the shift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_is_measured_and_a_node_behind_identity_is_held() {
    use anchorwatch_tests::scenario::{Anchors, Presents, Which};
    let _serial = SERIAL.lock().await;
    let pods = vec![
        PodPlan {
            namespace: "linkerd",
            name: "linkerd-identity-6d8f7c-i1",
            service_account: "linkerd-identity",
            node: 1,
            presents: Presents::Leaf(Which::NewIssuer, -60, 86_400),
            anchors: Anchors::ConfigMap,
            expect: &["OK"],
        },
        PodPlan {
            namespace: "emojivoto",
            name: "voting-6c8d9f-c2",
            service_account: "voting",
            node: 2,
            presents: Presents::Leaf(Which::OldIssuer, -86_400, 86_400),
            anchors: Anchors::Roots(&[Which::OldIssuer]),
            expect: &["STALE_LEAF:BadSignature", "STALE_TRUST_BUNDLE"],
        },
        PodPlan {
            namespace: "emojivoto",
            name: "emoji-5f6b8c-b3",
            service_account: "emoji",
            node: 3,
            presents: Presents::Leaf(Which::OldIssuer, -86_400, 86_400),
            anchors: Anchors::Roots(&[Which::OldIssuer]),
            expect: &["STALE_LEAF:BadSignature", "STALE_TRUST_BUNDLE"],
        },
    ];
    let c = cluster(23, pods).await;
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");
    let metrics = format!("127.0.0.1:{}", process::free_port().unwrap());
    let mut procs = vec![
        process::aggregator(
            &c.kubeconfig,
            &addr,
            c.dir.path(),
            &["--metrics-listen", &metrics],
        )
        .unwrap(),
    ];
    procs.extend(shifted_agents(
        &c,
        &url,
        &[
            ("node-1", None),
            ("node-2", Some("+3s")),
            ("node-3", Some("-25s")),
        ],
        &[],
    ));
    let report = clock_report_until(
        &addr,
        "every node's clock measured",
        Duration::from_secs(30),
        10,
        |n| n.len() == 3 && n.iter().all(|x| x.get("offsetSeconds").is_some()),
    )
    .await;
    if std::thread::panicking() {
        dump_logs(&procs);
    }
    assert_eq!(report["identityNode"], "node-1", "{report}");
    assert_eq!(report["reference"], "aggregator", "{report}");
    let row = |n: &str| clock_row(&report, n);
    for (node, shift, level) in [
        ("node-1", 0.0, "ok"),
        ("node-2", 3.0, "warn"),
        ("node-3", -25.0, "critical"),
    ] {
        let r = row(node);
        let offset = r["offsetSeconds"].as_f64().unwrap();
        let bound = r["boundSeconds"].as_f64().unwrap();
        // libfaketime applies the shift to every clock read; allow it 2 ms on top of the bound
        // for its own rounding.
        assert!(
            (offset - shift).abs() <= bound + 0.002,
            "{node}: measured {offset} ± {bound}, injected {shift}: {r}"
        );
        assert!(bound < 0.1, "{node}: loopback bound {bound}");
        assert_eq!(r["level"], level, "{node}: {r}");
        let to_identity = r["offsetToIdentitySeconds"].as_f64().unwrap();
        assert!(
            (to_identity - shift).abs() <= 2.0 * bound + 0.004,
            "{node}: {r}"
        );
    }

    // The same report for people, from the real command.
    let svg_path = c.dir.path().join("clocks.svg");
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(process::bin("anchorwatch-aggregator").unwrap())
            .args([
                "report", "clock", "--server", &url, "--format", "table", "--svg",
            ])
            .arg(&svg_path)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |node: &str| {
        table
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("{node} missing:\n{table}"))
            .to_string()
    };
    // The offset column, in ms: within a few ms of the shift. The reference column before it
    // says what the offset is measured against (no NTP servers here: the aggregator).
    let offset_ms = |node: &str| -> f64 {
        let l = line(node);
        let cols: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(cols[2], "aggregator", "{table}");
        cols[3].parse().unwrap()
    };
    assert!(line("node-2").contains("warn"), "{table}");
    assert!((offset_ms("node-2") - 3000.0).abs() < 5.0, "{table}");
    assert!(line("node-3").contains("critical"), "{table}");
    assert!((offset_ms("node-3") + 25000.0).abs() < 5.0, "{table}");
    assert!(table.contains("linkerd-identity runs on node-1"), "{table}");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");

    // The gauges, scraped as Prometheus would.
    let scraped = http_get(&metrics, "/metrics").await;
    assert!(
        scraped.contains(
            "anchorwatch_node_timex_offset_seconds{node=\"node-3\",reference=\"aggregator\"} -2"
        ),
        "{scraped}"
    );
    assert!(scraped.contains("anchorwatch_node_clock_level{node=\"node-2\",level=\"warn\"} 1"));
    assert!(scraped.contains("anchorwatch_node_timex_sync_status{node=\"node-1\"}"));

    // The analysis: CLOCK_SKEW(node-3) only; its stale pod is held, node-2's is restarted.
    let summary = eventually(
        Duration::from_secs(20),
        "the skew in the findings and the plan",
        || {
            let addr = addr.clone();
            async move {
                let s = call(&addr, "anchorwatch.v1.Query/Summary", serde_json::json!({})).await?;
                let skew = s["findings"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .any(|x| x["verdict"] == "CLOCK_SKEW" && x["subject"] == "node-3")
                    })
                    .unwrap_or(false);
                let planned = s["plan"]["restarts"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty());
                Ok((skew && planned).then_some(s))
            }
        },
    )
    .await;
    let findings = summary["findings"].as_array().unwrap();
    let skewed: Vec<&str> = findings
        .iter()
        .filter(|f| f["verdict"] == "CLOCK_SKEW")
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    assert_eq!(skewed, vec!["node-3"], "{summary}");
    assert!(
        !findings.iter().any(|f| f["verdict"] == "INCONCLUSIVE"
            && f["subject"].as_str().unwrap_or("").starts_with("node-")),
        "every node is measured: {summary}"
    );
    let restarts: Vec<&str> = summary["plan"]["restarts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["workload"].as_str().unwrap_or(""))
        .collect();
    assert!(
        restarts.contains(&"emojivoto/Deployment/voting"),
        "{summary}"
    );
    assert!(
        !restarts
            .iter()
            .any(|r| r.contains("emoji/") || r.ends_with("/emoji")),
        "{summary}"
    );
    let held = summary["plan"]["held"].as_array().unwrap();
    assert!(
        held.iter()
            .any(|h| h["target"] == "emojivoto/Deployment/emoji"
                && h["reason"].as_str().unwrap_or("").contains("node-3")),
        "{summary}"
    );
    for p in &mut procs {
        assert!(p.stop(Duration::from_secs(5)), "{} did not stop", p.name);
    }
}

/// The summary now.
async fn summary(addr: &str) -> anyhow::Result<Value> {
    call(addr, "anchorwatch.v1.Query/Summary", serde_json::json!({})).await
}

/// Every pod's verdicts now, as [`verdicts_by_pod`] gives them.
async fn all_verdicts(addr: &str) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let list = call(addr, "anchorwatch.v1.Query/ListPods", serde_json::json!({})).await?;
    Ok(verdicts_by_pod(&list))
}

/// The findings of a summary with this verdict name.
fn findings_named<'a>(summary: &'a Value, name: &str) -> Vec<&'a Value> {
    summary["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["verdict"] == name)
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Running processes that print their logs when dropped by a failing test (a check after the
/// last assertion never runs once one has panicked).
struct Procs(Vec<Proc>);

impl std::ops::Deref for Procs {
    type Target = Vec<Proc>;
    fn deref(&self) -> &Vec<Proc> {
        &self.0
    }
}

impl std::ops::DerefMut for Procs {
    fn deref_mut(&mut self) -> &mut Vec<Proc> {
        &mut self.0
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_logs(&self.0);
        }
    }
}

/// A cluster of `pods` from the rotation scenario, on net `net`, serving the Link CRD when
/// `links`, with the aggregator (given `flags`) and the agent of node-1 running.
async fn cluster_with_node_1(
    net: u8,
    pods: &[&str],
    links: bool,
    flags: &[&str],
) -> (Cluster, String, Procs) {
    let plans: Vec<PodPlan> = scenario::rotation_pods()
        .into_iter()
        .filter(|p| pods.contains(&p.name))
        .collect();
    let c = cluster(net, plans).await;
    if links {
        c.kube.register(scenario::link_kind());
    }
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");
    let procs = Procs(vec![
        process::aggregator(&c.kubeconfig, &addr, c.dir.path(), flags).unwrap(),
        process::agent(&c.kubeconfig, "node-1", &url, c.dir.path(), &[]).unwrap(),
    ]);
    (c, addr, procs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_gateway_under_another_root_escalates_and_restarts_nothing() {
    use scenario::{MULTICLUSTER_NS, Which};
    let _serial = SERIAL.lock().await;
    // The default probe interval (30 s): Links are probed because they changed.
    let (c, addr, mut procs) =
        cluster_with_node_1(22, &["web-7d9c5b-a1", "vote-bot-58f4d-d1"], true, &[]).await;
    let pki = &c.scenario.pki;
    // East's gateway presents a chain from another root; its second address has nothing
    // listening. West's gateway shares this cluster's anchor.
    let gateway = |w, a: &str| scenario::gateway(pki, w, a.parse().unwrap());
    let east = gateway(Which::ForeignIssuer, "127.22.200.1:4191")
        .await
        .unwrap();
    let west = gateway(Which::NewIssuer, "127.22.201.1:4191")
        .await
        .unwrap();
    c.kube
        .apply_json(scenario::link("east", "127.22.200.1, 127.22.200.3", 4191))
        .unwrap();
    let east_gw = format!("{MULTICLUSTER_NS}/gateway-east-127.22.200.1");

    let summary_now = eventually(
        Duration::from_secs(30),
        "the multicluster mismatch and both local pods, probed",
        || {
            let addr = addr.clone();
            async move {
                let s = summary(&addr).await?;
                let mc = !findings_named(&s, "MULTICLUSTER_ANCHOR_MISMATCH").is_empty();
                // The agent reports its pods first and their probes a moment later.
                let probed = s["plan"]["held"].as_array().is_some_and(|h| !h.is_empty());
                Ok((mc && s["pods"] == 2 && probed).then_some(s))
            }
        },
    )
    .await;
    let s = &summary_now;
    let mc = findings_named(s, "MULTICLUSTER_ANCHOR_MISMATCH");
    assert_eq!(mc.len(), 1, "{s}");
    assert_eq!(strings(&mc[0]["pods"]), vec![east_gw.as_str()], "{s}");
    assert_eq!(mc[0]["severity"], "critical");
    let detail = mc[0]["detail"].as_str().unwrap();
    let foreign_issuer = anchorwatch_aggregator_fingerprint(&pki.foreign_issuer.cert_der);
    let ca2 = anchorwatch_aggregator_fingerprint(&pki.ca2.cert_der);
    for needle in [
        "Link/east",
        "cluster east",
        "127.22.200.1:4191",
        foreign_issuer.as_str(),
        ca2.as_str(),
        "root.linkerd.other-cluster.example",
    ] {
        assert!(detail.contains(needle), "{needle} missing: {detail}");
    }
    // Nothing is restarted while the clusters disagree: vote-bot's stale leaf is held.
    let plan = &s["plan"];
    assert!(plan.get("restarts").is_none(), "{s}");
    assert_eq!(plan["escalate"], true, "{s}");
    let blockers = strings(&plan["blockers"]);
    assert!(
        blockers
            .iter()
            .any(|b| b.starts_with("MULTICLUSTER_ANCHOR_MISMATCH")),
        "{s}"
    );
    let held: Vec<&Value> = plan["held"].as_array().unwrap().iter().collect();
    assert!(
        held.iter()
            .any(|h| h["target"] == "emojivoto/Deployment/vote-bot"),
        "{s}"
    );
    assert!(strings(&s["affected"]).contains(&east_gw.as_str()));
    // Gateways are not counted as this cluster's pods.
    assert_eq!(
        (&s["pods"], &s["remotePods"]),
        (&2.into(), &2.into()),
        "{s}"
    );
    let counted: u64 = s["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pods"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 2, "{s}");

    // The gateways as pods, marked remote; a refused address is a probe failure, not a mismatch.
    let list = call(
        &addr,
        "anchorwatch.v1.Query/ListPods",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    let got = verdicts_by_pod(&list);
    assert_eq!(
        got[&east_gw],
        vec!["MULTICLUSTER_ANCHOR_MISMATCH:UnknownIssuer"],
        "{list}"
    );
    let refused = format!("{MULTICLUSTER_NS}/gateway-east-127.22.200.3");
    assert_eq!(got[&refused], vec!["UNPROBED:refused"], "{list}");
    assert_eq!(
        got["emojivoto/vote-bot-58f4d-d1"],
        vec!["STALE_LEAF:BadSignature"]
    );
    let remote = |name: &str| {
        let pods = list["pods"].as_array().unwrap();
        let pod = pods.iter().find(|p| p["name"] == name).unwrap();
        pod["remote"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(remote("gateway-east-127.22.200.1"), "east");
    assert_eq!(remote("web-7d9c5b-a1"), "");
    let pod = call(
        &addr,
        "anchorwatch.v1.Query/GetPod",
        serde_json::json!({"namespace": MULTICLUSTER_NS, "name": "gateway-east-127.22.200.1"}),
    )
    .await
    .unwrap();
    assert_eq!(pod["identityName"], scenario::GATEWAY_IDENTITY);
    assert_eq!(pod["owners"][0], "Link/east");
    assert_eq!(
        pod["presentedChain"][1]["fingerprintSha256"],
        foreign_issuer.as_str(),
        "{pod}"
    );
    assert!(east.handshakes() > 0);

    // A second Link, whose gateway shares this cluster's anchor, is probed as soon as it appears
    // and raises nothing.
    c.kube
        .apply_json(scenario::link("west", "127.22.201.1", 4191))
        .unwrap();
    let west_gw = format!("{MULTICLUSTER_NS}/gateway-west-127.22.201.1");
    let got = eventually(
        Duration::from_secs(15),
        "the west gateway, before the next round",
        || {
            let addr = addr.clone();
            let west_gw = west_gw.clone();
            async move {
                let got = all_verdicts(&addr).await?;
                Ok(got.contains_key(&west_gw).then_some(got))
            }
        },
    )
    .await;
    assert_eq!(got[&west_gw], vec!["OK"]);
    let s = summary(&addr).await.unwrap();
    let mc = findings_named(&s, "MULTICLUSTER_ANCHOR_MISMATCH");
    assert_eq!(strings(&mc[0]["pods"]), vec![east_gw.as_str()], "{s}");
    assert!(!strings(&s["affected"]).contains(&west_gw.as_str()));
    assert_eq!(s["remotePods"], 3, "{s}");

    // East's Link goes: its gateways and the mismatch go with it, and the plan restarts again.
    c.kube
        .delete_json(
            "multicluster.linkerd.io/v1alpha1",
            "Link",
            MULTICLUSTER_NS,
            "east",
        )
        .unwrap();
    let s = eventually(
        Duration::from_secs(15),
        "the mismatch to go with its Link",
        || {
            let addr = addr.clone();
            async move {
                let s = summary(&addr).await?;
                Ok((s["remotePods"] == 1).then_some(s))
            }
        },
    )
    .await;
    assert!(
        findings_named(&s, "MULTICLUSTER_ANCHOR_MISMATCH").is_empty(),
        "{s}"
    );
    assert_eq!(
        s["plan"]["restarts"][0]["workload"], "emojivoto/Deployment/vote-bot",
        "{s}"
    );
    assert!(!all_verdicts(&addr).await.unwrap().contains_key(&east_gw));

    for p in procs.iter_mut() {
        assert!(p.is_running(), "{} exited:\n{}", p.name, p.log_text());
    }
    drop(procs);
    east.stop().await;
    west.stop().await;
    c.scenario.stop().await;
    c.kube.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_link_crd_the_aggregator_keeps_working_and_finds_links_later() {
    let _serial = SERIAL.lock().await;
    let flags = ["--link-probe-interval", "1s"];
    let (c, addr, mut procs) = cluster_with_node_1(23, &["web-7d9c5b-a1"], false, &flags).await;
    let not_found = |kube: &KubeSim| {
        let path = "/apis/multicluster.linkerd.io/v1alpha1/links";
        let requests = kube.requests();
        let missing = |r: &&anchorwatch_tests::kubesim::RecordedRequest| {
            r.path == path && r.status == http::StatusCode::NOT_FOUND
        };
        requests.iter().filter(missing).count()
    };
    eventually(Duration::from_secs(30), "the local pod judged", || {
        let addr = addr.clone();
        async move {
            let ok = all_verdicts(&addr).await?.get("emojivoto/web-7d9c5b-a1")
                == Some(&vec!["OK".to_string()]);
            Ok(ok.then_some(()))
        }
    })
    .await;
    // Asked again, slowly (every --link-probe-interval); said once, at info.
    eventually(
        Duration::from_secs(15),
        "three 404s on the Link list",
        || {
            let n = not_found(&c.kube);
            async move { Ok((n >= 3).then_some(())) }
        },
    )
    .await;
    let before = not_found(&c.kube);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let asked = not_found(&c.kube) - before;
    assert!(asked <= 4, "{asked} Link lists in 3 s");
    let log = procs[0].log_text();
    let said: Vec<&str> = log.lines().filter(|l| l.contains("Link CRD")).collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(said[0].contains("INFO"), "{log}");
    let loud = |l: &&str| (l.contains("WARN") || l.contains("ERROR")) && l.contains("multicluster");
    assert!(!log.lines().any(|l| loud(&l)), "{log}");
    let s = summary(&addr).await.unwrap();
    assert_eq!(s["pods"], 1);
    assert!(s.get("remotePods").is_none(), "{s}");
    assert!(findings_named(&s, "MULTICLUSTER_ANCHOR_MISMATCH").is_empty());

    // Multicluster installed later: its Links are found and their gateways probed.
    let gw = scenario::gateway(
        &c.scenario.pki,
        scenario::Which::NewIssuer,
        "127.23.200.1:4191".parse().unwrap(),
    )
    .await
    .unwrap();
    c.kube.register(scenario::link_kind());
    c.kube
        .apply_json(scenario::link("west", "127.23.200.1", 4191))
        .unwrap();
    let west_gw = format!("{}/gateway-west-127.23.200.1", scenario::MULTICLUSTER_NS);
    let got = eventually(
        Duration::from_secs(15),
        "the gateway of the new Link",
        || {
            let addr = addr.clone();
            async move {
                let got = all_verdicts(&addr).await?;
                Ok((got.len() == 2).then_some(got))
            }
        },
    )
    .await;
    assert_eq!(got[&west_gw], vec!["OK"]);

    for p in procs.iter_mut() {
        assert!(p.is_running(), "{} exited:\n{}", p.name, p.log_text());
    }
    drop(procs);
    gw.stop().await;
    c.scenario.stop().await;
    c.kube.shutdown().await;
}

/// Makes a scenario pod look as its controller would leave it: these owner references (the
/// first is the controller), the pod-template-hash label only for a ReplicaSet's pod, and the
/// kubelet's mirror annotation when `mirror`.
fn reown(kube: &KubeSim, namespace: &str, name: &str, owners: &[(&str, &str, &str)], mirror: bool) {
    use k8s_openapi::api::core::v1::Pod;
    let pod: Pod = kube.get(namespace, name).unwrap();
    let mut pod = serde_json::to_value(pod).unwrap();
    pod["metadata"]["ownerReferences"] = owners
        .iter()
        .enumerate()
        .map(|(i, (api_version, kind, owner))| {
            serde_json::json!({"apiVersion": api_version, "kind": kind, "name": owner,
                               "uid": format!("uid-{owner}"), "controller": i == 0})
        })
        .collect();
    if owners
        .first()
        .is_none_or(|(_, kind, _)| *kind != "ReplicaSet")
    {
        pod["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("pod-template-hash");
    }
    if mirror {
        pod["metadata"]["annotations"]["kubernetes.io/config.mirror"] = "0b1e5a".into();
    }
    kube.apply_json(pod).unwrap();
}

/// The workload objects behind the pods of `plan_restarts_each_workload_the_way_its_controller_replaces_pods`.
fn workload_objects(kube: &KubeSim, paused: bool, ledger_strategy: &str) {
    let objects = [
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "voting", "namespace": "emojivoto", "uid": "uid-voting"},
            "spec": {"selector": {}, "template": {}, "paused": paused}}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "voting-6c8d9f", "namespace": "emojivoto", "uid": "uid-voting-6c8d9f",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "voting",
                                     "uid": "uid-voting", "controller": true}]},
            "spec": {"selector": {}, "template": {}}}),
        // Left behind by `kubectl delete deployment orphan --cascade=orphan`: its pods keep the
        // hash label, but no Deployment rolls them any more.
        serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "orphan-5f6b8c", "namespace": "emojivoto", "uid": "uid-orphan-5f6b8c"},
            "spec": {"selector": {}, "template": {}}}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "ledger", "namespace": "ledger", "uid": "uid-ledger"},
            "spec": {"selector": {}, "serviceName": "ledger", "template": {},
                     "updateStrategy": {"type": ledger_strategy}}}),
    ];
    for o in objects {
        kube.apply_json(o).unwrap();
    }
}

/// The plan's restarts as `workload → method`, and its held targets with their reasons.
type PlanView = (BTreeMap<String, String>, BTreeMap<String, String>);

fn plan_view(summary: &Value) -> PlanView {
    let pairs = |list: &str, key: &str, value: &str| {
        summary["plan"][list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                let text = |f: &str| x[f].as_str().unwrap_or("").to_string();
                (text(key), text(value))
            })
            .collect()
    };
    (
        pairs("restarts", "workload", "method"),
        pairs("held", "target", "reason"),
    )
}

async fn plan_until(addr: &str, what: &str, done: impl Fn(&PlanView) -> bool) -> PlanView {
    eventually(Duration::from_secs(60), what, || {
        let addr = addr.to_string();
        let done = &done;
        async move {
            let summary =
                call(&addr, "anchorwatch.v1.Query/Summary", serde_json::json!({})).await?;
            let view = plan_view(&summary);
            Ok(done(&view).then_some(view))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_restarts_each_workload_the_way_its_controller_replaces_pods() {
    use scenario::{Anchors::Roots, Presents::Leaf, Which::OldIssuer};
    let _serial = SERIAL.lock().await;
    // Every pod still holds only the old root and presents a leaf under the old issuer.
    let stale = |namespace, name, service_account| PodPlan {
        namespace,
        name,
        service_account,
        node: 1,
        presents: Leaf(OldIssuer, -86_400, 86_400),
        anchors: Roots(&[OldIssuer]),
        expect: &["STALE_LEAF:BadSignature", "STALE_TRUST_BUNDLE"],
    };
    let c = cluster(
        22,
        vec![
            stale("emojivoto", "voting-6c8d9f-c1", "voting"),
            stale("emojivoto", "orphan-5f6b8c-d1", "orphan"),
            stale("ledger", "ledger-0", "ledger"),
            stale("edge", "static-proxy-node-1", "default"),
        ],
    )
    .await;
    workload_objects(&c.kube, false, "OnDelete");
    reown(
        &c.kube,
        "ledger",
        "ledger-0",
        &[("apps/v1", "StatefulSet", "ledger")],
        false,
    );
    // Only the kubelet's annotation, which the agent must pass on, tells this pod from a bare
    // one (newer kubelets also make the Node its owner).
    reown(&c.kube, "edge", "static-proxy-node-1", &[], true);
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");
    let procs = Procs(vec![
        process::aggregator(&c.kubeconfig, &addr, c.dir.path(), &[]).unwrap(),
        process::agent(&c.kubeconfig, "node-1", &url, c.dir.path(), &[]).unwrap(),
    ]);

    // The Deployment through its ReplicaSet's ownerReference, the OnDelete StatefulSet and the
    // ReplicaSet that lost its Deployment by eviction, the static pod held.
    let (restarts, held) = plan_until(&addr, "a plan with a method per workload", |(r, _)| {
        r.len() == 3 && !r.contains_key("emojivoto/Deployment/orphan")
    })
    .await;
    let want: BTreeMap<String, String> = [
        ("emojivoto/Deployment/voting", "rollout_restart"),
        ("ledger/StatefulSet/ledger", "evict"),
        ("emojivoto/ReplicaSet/orphan-5f6b8c", "evict"),
    ]
    .into_iter()
    .map(|(w, m)| (w.to_string(), m.to_string()))
    .collect();
    assert_eq!(restarts, want, "held: {held:?}");
    let mirror = &held["edge/Pod/static-proxy-node-1"];
    assert!(
        mirror.contains("static pod") && mirror.contains("needs manual re-create"),
        "{mirror}"
    );

    // The index follows the cluster: a paused Deployment is held; a StatefulSet switched to
    // RollingUpdate gets a rollout restart.
    workload_objects(&c.kube, true, "RollingUpdate");
    let (restarts, held) = plan_until(&addr, "the paused Deployment held", |(r, h)| {
        h.contains_key("emojivoto/Deployment/voting")
            && r.get("ledger/StatefulSet/ledger").map(String::as_str) == Some("rollout_restart")
    })
    .await;
    assert!(
        held["emojivoto/Deployment/voting"].contains("paused"),
        "{held:?}"
    );
    assert!(!restarts.contains_key("emojivoto/Deployment/voting"));

    // ReplicaSets are read as metadata only; the kinds whose spec matters, whole.
    let requests = c.kube.requests();
    let watched = |resource: &str| {
        requests
            .iter()
            .filter(|r| r.resource.as_deref() == Some(resource))
            .filter(|r| matches!(r.verb, Some("list" | "watch")))
            .map(|r| r.accept.clone().unwrap_or_default())
            .collect::<Vec<String>>()
    };
    let replica_sets = watched("replicasets");
    assert!(!replica_sets.is_empty());
    assert!(
        replica_sets
            .iter()
            .all(|a| a.contains("as=PartialObjectMetadata")),
        "{replica_sets:?}"
    );
    assert!(
        watched("deployments")
            .iter()
            .all(|a| !a.contains("PartialObjectMetadata"))
    );

    drop(procs);
    c.scenario.stop().await;
    c.kube.shutdown().await;
}

/// Agents measure a real chronyd on loopback (SNTP): the NTP server becomes the reference, the
/// unshifted node is within its bound of zero, the one under libfaketime within its bound of
/// the shift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sntp_against_a_real_chronyd_measures_within_the_bound() {
    let _serial = SERIAL.lock().await;
    let c = cluster(25, vec![]).await;
    let ntp_port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let chrony = process::chronyd(c.dir.path(), "127.0.0.1", ntp_port, vec![]).unwrap();
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");
    let ntp = format!("127.0.0.1:{ntp_port}");
    let mut procs = Procs(vec![
        chrony,
        process::aggregator(&c.kubeconfig, &addr, c.dir.path(), &[]).unwrap(),
    ]);
    procs.extend(shifted_agents(
        &c,
        &url,
        &[("node-1", None), ("node-2", Some("+3s"))],
        &["--ntp-servers", &ntp],
    ));
    let report = clock_report_until(
        &addr,
        "both nodes measured against chronyd",
        Duration::from_secs(40),
        0,
        |n| {
            n.len() == 2
                && n.iter().all(|x| {
                    x["reference"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("ntp:"))
                })
        },
    )
    .await;
    assert_eq!(report["reference"], "ntp", "{report}");
    for (node, shift) in [("node-1", 0.0), ("node-2", 3.0)] {
        let r = &clock_row(&report, node);
        let offset = r["offsetSeconds"].as_f64().unwrap_or(0.0);
        let bound = r["boundSeconds"].as_f64().unwrap();
        assert!(
            (offset - shift).abs() <= bound + 0.002,
            "{node}: {offset} ± {bound} vs {shift}: {r}"
        );
        assert!(bound < 0.5, "{node}: {r}");
    }
    for p in procs.iter_mut() {
        assert!(p.stop(Duration::from_secs(5)), "{} did not stop", p.name);
    }
}

/// The story a Summary tells, without what only live chains or measured clocks decide: findings
/// as `VERDICT(subject)` with the pods they name, affected pods, the phase, the plan.
fn story(summary: &Value) -> Value {
    let live_only = ["INCONCLUSIVE", "CLOCK_SKEW"];
    let mut findings: Vec<String> = summary["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| !live_only.contains(&f["verdict"].as_str().unwrap_or("")))
        .map(|f| {
            format!(
                "{}({}) {:?}",
                f["verdict"].as_str().unwrap_or(""),
                f["subject"].as_str().unwrap_or(""),
                strings(&f["pods"])
            )
        })
        .collect();
    findings.sort();
    let restarts: Vec<String> = summary["plan"]["restarts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} {} {} {:?}",
                r["tier"].as_str().unwrap_or(""),
                r["workload"].as_str().unwrap_or(""),
                r["method"].as_str().unwrap_or(""),
                strings(&r["pods"])
            )
        })
        .collect();
    let held: Vec<String> = summary["plan"]["held"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["target"].as_str().unwrap_or("").to_string())
        .collect();
    let mut affected = strings(&summary["affected"]);
    affected.sort();
    serde_json::json!({
        "findings": findings,
        "affected": affected,
        "phase": summary["rotationPhase"]["phase"],
        "waiting": strings(&summary["rotationPhase"]["waiting"]),
        "restarts": restarts,
        "held": held,
        "blockers": strings(&summary["plan"]["blockers"]),
        "escalate": summary["plan"]["escalate"].as_bool().unwrap_or(false),
    })
}

/// The live pipeline here is the real thing: the aggregator and one agent per node as processes,
/// following the simulated API server and probing simulated proxies, as in production. The case
/// runner's in-process path builds the analysis input itself and so would compare the analysis
/// with itself; this compares everything `diagnose` replaces (watches, agents, probes, ingest)
/// with reading dumps of the very objects the API server serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_on_a_dump_tells_the_same_story_as_the_live_pipeline() {
    let _serial = SERIAL.lock().await;
    let (kube, dir, kubeconfig) = empty_cluster().await;
    let cluster = anchorwatch_tests::injected::start(&kube, 26).await.unwrap();
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");
    let mut procs = vec![process::aggregator(&kubeconfig, &addr, dir.path(), &[]).unwrap()];
    for n in 1..=2 {
        procs.push(
            process::agent(&kubeconfig, &scenario::node_name(n), &url, dir.path(), &[]).unwrap(),
        );
    }
    // Live: every pod probed, both nodes' clocks measured, owners listed.
    let live = eventually(
        Duration::from_secs(60),
        "the live analysis to settle",
        || {
            let addr = addr.clone();
            let want = cluster.pods.len();
            async move {
                let list = call(
                    &addr,
                    "anchorwatch.v1.Query/ListPods",
                    serde_json::json!({}),
                )
                .await?;
                // Taken after the list and counting every pod: it cannot predate a node's report.
                let s = summary(&addr).await?;
                let judged = verdicts_by_pod(&list);
                let probed = judged.len() == want
                    && s["pods"] == want
                    && judged
                        .values()
                        .all(|v| v.iter().all(|k| !k.starts_with("UNPROBED")));
                let measured = findings_named(&s, "INCONCLUSIVE").is_empty();
                let listed = !s["plan"]["restarts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["reason"].as_str().unwrap_or("").contains("not listed"));
                Ok((probed && measured && listed).then_some((s, judged)))
            }
        },
    )
    .await;
    let (live_summary, live_pods) = live;

    // Offline: dumps of the same objects, and the real binary.
    let dump = dir.path().join("dump");
    std::fs::create_dir(&dump).unwrap();
    anchorwatch_tests::injected::write_dump(&kube, &dump).unwrap();
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(process::bin("anchorwatch-aggregator").unwrap());
        cmd.arg("diagnose")
            .arg(&dump)
            .args(["--output", "json"])
            .args(extra);
        let out = cmd.output().unwrap();
        assert!(
            out.status.code() == Some(1),
            "diagnose exits 1 (something needs attention): {out:?}"
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    // With the node clocks an operator measured by hand (the agents found them ~0 on this host).
    let offline = run(&["--clock", "node-1=0s", "--clock", "node-2=0s"]);

    assert_eq!(
        story(&offline),
        story(&live_summary),
        "offline (left) and live (right) disagree; live pods: {live_pods:?}\noffline:\n{offline:#}"
    );
    let stale: Vec<&String> = live_pods
        .iter()
        .filter(|(_, v)| v.contains(&"STALE_TRUST_BUNDLE".to_string()))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        stale.len(),
        3,
        "the three injected pods lack ca2: {live_pods:?}"
    );
    // Pod by pod: the spec verdicts agree; where the live pipeline judged a chain, the dump says
    // UNPROBED with the reason.
    for pod in offline["pods"].as_array().unwrap() {
        let key = format!(
            "{}/{}",
            pod["namespace"].as_str().unwrap(),
            pod["name"].as_str().unwrap()
        );
        let names: Vec<String> = pod["verdicts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v["verdict"].as_str().unwrap_or("").to_string())
            .collect();
        let live: Vec<String> = live_pods[&key]
            .iter()
            .filter(|v| *v != "OK")
            .cloned()
            .collect();
        let mut offline_faults: Vec<String> =
            names.iter().filter(|v| *v != "UNPROBED").cloned().collect();
        offline_faults.sort();
        assert_eq!(offline_faults, live, "{key}");
        assert!(names.contains(&"UNPROBED".to_string()), "{key}: {pod}");
    }
    // Without hand-given clocks the nodes are INCONCLUSIVE, said plainly, and the rest stands.
    let unmeasured = run(&[]);
    let inconclusive: Vec<&str> = findings_named(&unmeasured, "INCONCLUSIVE")
        .iter()
        .map(|f| f["subject"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(inconclusive, ["node-1", "node-2"]);
    assert_eq!(
        story(&unmeasured)["findings"],
        story(&live_summary)["findings"]
    );
    let caveats = unmeasured["caveats"].to_string();
    assert!(
        caveats.contains("No presented chains") && caveats.contains("key.pem"),
        "{caveats}"
    );
    assert!(
        !std::fs::read_to_string(dump.join("linkerd.yaml"))
            .unwrap()
            .is_empty()
    );

    for mut p in procs {
        if !p.stop(Duration::from_secs(5)) {
            dump_logs(&[p]);
        }
    }
    for p in cluster.proxies {
        p.stop().await;
    }
}

#[test]
fn diagnose_on_input_with_no_usable_object_exits_2_and_says_what_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(dir.path().join("support-bundle.tgz"), &garbage).unwrap();
    std::fs::write(
        dir.path().join("notes.yaml"),
        "kind: Service\nmetadata: {name: x}\n",
    )
    .unwrap();
    let out = std::process::Command::new(process::bin("anchorwatch-aggregator").unwrap())
        .arg("diagnose")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("no Kubernetes object this diagnosis uses"),
        "{stderr}"
    );
    assert!(
        stderr.contains("support-bundle.tgz") && stderr.contains("not UTF-8"),
        "{stderr}"
    );
    assert!(stderr.contains("Service"), "{stderr}");
}

/// A meshed pod as one `kubectl get pod -o yaml` document.
fn mk_diagnose_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n  uid: uid-{name}\n\
         spec:\n  nodeName: n1\n  containers:\n  - name: linkerd-proxy\n    image: cr.l5d.io/linkerd/proxy:edge-25.4.1\n    \
         env:\n    - name: LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS\n      value: not a certificate\n"
    )
}

fn run_diagnose(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(process::bin("anchorwatch-aggregator").unwrap())
        .arg("diagnose")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A critical finding (the trust bundle is missing from the dump) exits 1, as the README says;
/// so does any skipped input (here a path that does not exist), named on stderr.
#[test]
fn diagnose_exits_1_on_a_critical_finding_and_on_skipped_input() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods.yaml");
    std::fs::write(&pods, mk_diagnose_pod("a")).unwrap();
    let (code, stdout, stderr) = run_diagnose(&[pods.as_os_str()]);
    assert!(stdout.contains("INCONCLUSIVE"), "{stdout}");
    assert_eq!(code, Some(1), "{stdout}{stderr}");

    let missing = dir.path().join("linkerd.yaml");
    let (code, _, stderr) = run_diagnose(&[pods.as_os_str(), missing.as_os_str()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("input skipped: ") && stderr.contains("linkerd.yaml"),
        "{stderr}"
    );
}

/// An agent on a node whose clock is absurd keeps running instead of dying on the time library's
/// range: a clock decades before 1970 is measured (critical, with its offset); one millions of
/// years ahead, beyond what any timestamp can hold, is reported as unmeasurable, and the node is
/// INCONCLUSIVE — never healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_absurd_clocks_report_instead_of_dying() {
    let _serial = SERIAL.lock().await;
    let c = cluster(26, vec![]).await;
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");
    let mut procs = Procs(vec![
        process::aggregator(&c.kubeconfig, &addr, c.dir.path(), &[]).unwrap(),
    ]);
    // About 273 million years ahead (beyond chrono's range), and 82 years behind (1944).
    procs.extend(shifted_agents(
        &c,
        &url,
        &[
            ("node-1", Some("+99999999999d")),
            ("node-2", Some("-30000d")),
        ],
        &[],
    ));
    let report = clock_report_until(
        &addr,
        "both absurd clocks measured",
        Duration::from_secs(30),
        0,
        |n| {
            n.len() == 2
                && n.iter().all(|x| {
                    // Measured, or the agent's reason it could not measure.
                    x.get("offsetSeconds").is_some() || x["level"] == "stale"
                })
        },
    )
    .await;
    let row = |n: &str| clock_row(&report, n);
    let ahead = row("node-1");
    assert!(ahead.get("offsetSeconds").is_none(), "{ahead}");
    assert_ne!(ahead["level"], "ok", "{ahead}");
    assert!(
        ahead["problem"]
            .as_str()
            .unwrap()
            .contains("outside the range a measurement can be computed in"),
        "{ahead}"
    );
    let summary = call(&addr, "anchorwatch.v1.Query/Summary", serde_json::json!({}))
        .await
        .unwrap();
    assert!(
        summary["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["verdict"] == "INCONCLUSIVE" && f["subject"] == "node-1"),
        "{summary}"
    );
    let behind = row("node-2");
    assert_eq!(behind["level"], "critical", "{behind}");
    let days = behind["offsetSeconds"].as_f64().unwrap() / 86_400.0;
    assert!((days + 30_000.0).abs() < 1.0, "{behind}");
    for p in procs.iter_mut().skip(1) {
        assert!(p.is_running(), "{} died on its clock", p.name);
    }
    for p in procs.iter_mut() {
        assert!(p.stop(Duration::from_secs(5)), "{} did not stop", p.name);
    }
    c.scenario.stop().await;
    c.kube.shutdown().await;
}

/// Makes an agent pod `name` on `node` running as ServiceAccount `account` in namespace
/// `anchorwatch`, and writes a token bound to it (audience `anchorwatch`) into a file.
fn agent_token(c: &Cluster, name: &str, node: &str, account: &str) -> PathBuf {
    use k8s_openapi::api::core::v1::Pod;
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "anchorwatch"},
        "spec": {"nodeName": node, "serviceAccountName": account,
                 "containers": [{"name": "agent", "image": "anchorwatch-agent"}]},
    }))
    .unwrap();
    let pod = c.kube.apply_pod(pod);
    let token = c.kube.issue_token(anchorwatch_tests::kubesim::TokenClaims {
        namespace: "anchorwatch".into(),
        service_account: account.into(),
        pod_name: name.into(),
        pod_uid: pod.metadata.uid.unwrap(),
        node_name: Some(node.into()),
        audiences: vec!["anchorwatch".into()],
        expires_at: chrono::Utc::now() + chrono::TimeDelta::hours(1),
    });
    let path = c.dir.path().join(format!("{name}.token"));
    std::fs::write(&path, token).unwrap();
    path
}

/// With `--agent-auth tokenreview`, only the agents' ServiceAccount may report, only about its
/// own node and the pods the API places there; everything else is refused, says why, and is
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_authenticated_agents_report_and_only_about_their_own_node() {
    let _serial = SERIAL.lock().await;
    let plans = rotation_subset(&["web-7d9c5b-a1", "web-7d9c5b-a2"]);
    let c = cluster(27, plans).await;
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");
    let metrics = format!("127.0.0.1:{}", process::free_port().unwrap());
    let good = agent_token(&c, "anchorwatch-agent-a1", "node-1", "anchorwatch-agent");
    let other_account = agent_token(&c, "impostor-b2", "node-2", "default");
    let forged = c.dir.path().join("forged.token");
    std::fs::write(
        &forged,
        "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln",
    )
    .unwrap();
    let mut procs = Procs(vec![
        process::aggregator(
            &c.kubeconfig,
            &addr,
            c.dir.path(),
            &["--agent-auth", "tokenreview", "--metrics-listen", &metrics],
        )
        .unwrap(),
        process::agent(
            &c.kubeconfig,
            "node-1",
            &url,
            c.dir.path(),
            &["--token-file", good.to_str().unwrap()],
        )
        .unwrap(),
        process::agent(
            &c.kubeconfig,
            "node-2",
            &url,
            c.dir.path(),
            &["--token-file", other_account.to_str().unwrap()],
        )
        .unwrap(),
    ]);
    // node-1's pod arrives; node-2's agent is refused.
    eventually(Duration::from_secs(30), "node-1's pod", || {
        let addr = addr.clone();
        async move {
            let s = summary(&addr).await?;
            Ok((s["pods"] == 1).then_some(()))
        }
    })
    .await;

    // A rogue client with node-1's valid token: a snapshot naming node-2 is refused outright; a
    // snapshot of node-1 that includes node-2's pod has that pod dropped.
    let node2_pod = c
        .kube
        .pods()
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some("web-7d9c5b-a2"))
        .unwrap();
    let token = std::fs::read_to_string(&good).unwrap();
    let send = |node: &str, pods: Vec<pb::PodEvidence>, token: String| {
        let url = url.clone();
        let node = node.to_string();
        async move {
            let mut client = pb::ingest_client::IngestClient::connect(url).await.unwrap();
            let snapshot = pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Snapshot(pb::NodeSnapshot {
                    node,
                    seq: 1,
                    pods,
                    ..Default::default()
                })),
            };
            let mut request = tonic::Request::new(tokio_stream::iter(vec![snapshot]));
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            match client.report(request).await {
                Err(status) => Err(status),
                Ok(r) => {
                    let mut r = r.into_inner();
                    match r.message().await {
                        Ok(m) => Ok(m),
                        Err(status) => Err(status),
                    }
                }
            }
        }
    };
    let wrong_node = send("node-2", vec![], token.clone()).await.unwrap_err();
    assert_eq!(
        wrong_node.code(),
        tonic::Code::PermissionDenied,
        "{wrong_node:?}"
    );
    assert!(
        wrong_node.message().contains("runs on node node-1"),
        "{wrong_node:?}"
    );
    let forged_token = std::fs::read_to_string(&forged).unwrap();
    let refused = send("node-1", vec![], forged_token).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let none = send("node-1", vec![], String::new()).await.unwrap_err();
    assert_eq!(none.code(), tonic::Code::Unauthenticated, "{none:?}");
    let foreign = pb::PodEvidence {
        pod: Some(pb::PodRef {
            namespace: node2_pod.metadata.namespace.clone().unwrap(),
            name: "web-7d9c5b-a2".into(),
            uid: node2_pod.metadata.uid.clone().unwrap(),
        }),
        node: "node-1".into(),
        ..Default::default()
    };
    let acked = send("node-1", vec![foreign], token).await.unwrap();
    assert!(
        acked.is_some(),
        "the snapshot is acknowledged, minus the foreign pod"
    );
    let pods = call(
        &addr,
        "anchorwatch.v1.Query/ListPods",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    // (The rogue snapshot replaced node-1's view, as any snapshot of node-1 does; node-1's own
    // agent restores it at its next message.)
    let names: Vec<&str> = pods["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["name"].as_str().unwrap_or(""))
        .collect();
    assert!(!names.contains(&"web-7d9c5b-a2"), "{pods}");

    // node-2's agent, refused at its first attempt, may not have tried yet.
    let scraped = eventually(Duration::from_secs(30), "node-2's agent refused", || {
        let metrics = metrics.clone();
        async move {
            let scraped = http_get(&metrics, "/metrics").await;
            let refused =
                "anchorwatch_agent_streams_rejected_total{reason=\"wrong_service_account\"}";
            Ok(scraped.contains(refused).then_some(scraped))
        }
    })
    .await;
    for line in [
        "anchorwatch_agent_streams_rejected_total{reason=\"wrong_service_account\"}",
        "anchorwatch_agent_streams_rejected_total{reason=\"invalid_token\"} 1",
        "anchorwatch_agent_streams_rejected_total{reason=\"no_token\"} 1",
        "anchorwatch_agent_reports_rejected_total{reason=\"foreign_pod\"} 1",
        "anchorwatch_agent_reports_rejected_total{reason=\"wrong_node\"} 1",
    ] {
        assert!(scraped.contains(line), "{line} in {scraped}");
    }
    // node-2's agent said why in its log.
    let log_file = procs[2].log.clone();
    eventually(Duration::from_secs(10), "node-2's agent's reason", || {
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        async move {
            Ok(log
                .contains("is not the agents' ServiceAccount")
                .then_some(()))
        }
    })
    .await;
    for p in procs.iter_mut() {
        assert!(p.stop(Duration::from_secs(5)), "{} did not stop", p.name);
    }
    c.scenario.stop().await;
    c.kube.shutdown().await;
}

/// Over TLS from a Secret: agents verify the aggregator against the CA bundle they are given and
/// stream with their token; real grpcurl queries with `-cacert` (plaintext is refused); a
/// renewed certificate in the Secret is served to new connections without a restart while the
/// agent keeps reporting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_stream_over_tls_and_a_renewed_certificate_is_served_without_a_restart() {
    use k8s_openapi::api::core::v1::Secret;
    let _serial = SERIAL.lock().await;
    let plans = rotation_subset(&["web-7d9c5b-a1"]);
    let c = cluster(28, plans).await;
    let ca = anchorwatch_tests::pki::Ca::root("anchorwatch test CA").unwrap();
    let names = ["anchorwatch-aggregator.anchorwatch.svc", "127.0.0.1"];
    let tls_secret = |(cert, key): (String, String)| -> Secret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "anchorwatch-aggregator-tls", "namespace": "anchorwatch"},
            "stringData": {},
            "data": {
                "tls.crt": base64_encode(cert.as_bytes()),
                "tls.key": base64_encode(key.as_bytes()),
                "ca.crt": base64_encode(ca.cert_pem.as_bytes()),
            },
        }))
        .unwrap()
    };
    let first = ca.server_pem(&names).unwrap();
    let first_der = pem_der(&first.0);
    c.kube.apply_secret(tls_secret(first));
    let ca_file = c.dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let ca_arg = ca_file.to_str().unwrap();
    let token = agent_token(&c, "anchorwatch-agent-t1", "node-1", "anchorwatch-agent");
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let mut procs = Procs(vec![
        process::aggregator(
            &c.kubeconfig,
            &addr,
            c.dir.path(),
            &[
                "--agent-auth",
                "tokenreview",
                "--tls-secret",
                "anchorwatch/anchorwatch-aggregator-tls",
            ],
        )
        .unwrap(),
        process::agent(
            &c.kubeconfig,
            "node-1",
            &format!("https://{addr}"),
            c.dir.path(),
            &[
                "--aggregator-ca",
                ca_arg,
                "--token-file",
                token.to_str().unwrap(),
            ],
        )
        .unwrap(),
    ]);
    let tls = ["-cacert", ca_arg];
    let nodes = |addr: String| async move {
        let out = grpcurl_over(&addr, &tls, &["anchorwatch.v1.Query/ListNodes"]).await?;
        anyhow::Ok(serde_json::from_str::<Value>(&out)?)
    };
    let before = eventually(Duration::from_secs(30), "node-1 over TLS", || {
        let n = nodes(addr.clone());
        async move {
            let n = n.await?;
            let up = n["nodes"][0]["connected"] == true && n["nodes"][0]["pods"] == 1;
            Ok(up.then_some(n))
        }
    })
    .await;
    assert_eq!(presented(&addr, &ca.cert_pem).await, first_der);
    let plain = grpcurl(&addr, &["list"]).await;
    assert!(plain.is_err(), "plaintext must be refused: {plain:?}");

    // cert-manager renews: the Secret gets a new certificate and key.
    let second = ca.server_pem(&names).unwrap();
    let second_der = pem_der(&second.0);
    c.kube.apply_secret(tls_secret(second));
    eventually(
        Duration::from_secs(20),
        "the renewed certificate served",
        || {
            let addr = addr.clone();
            let ca = ca.cert_pem.clone();
            let want = second_der.clone();
            async move { Ok((presented(&addr, &ca).await == want).then_some(())) }
        },
    )
    .await;
    let reported_before = before["nodes"][0]["lastReportAt"]
        .as_str()
        .unwrap()
        .to_string();
    let after = eventually(Duration::from_secs(30), "node-1 still reporting", || {
        let n = nodes(addr.clone());
        let reported_before = reported_before.clone();
        async move {
            let n = n.await?;
            let newer = n["nodes"][0]["lastReportAt"]
                .as_str()
                .is_some_and(|t| t > reported_before.as_str());
            Ok((newer && n["nodes"][0]["connected"] == true).then_some(n))
        }
    })
    .await;
    assert_eq!(after["nodes"][0]["pods"], 1, "{after}");
    assert!(procs[0].is_running() && procs[1].is_running());
    // The clock report over TLS too, from the real command.
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(process::bin("anchorwatch-aggregator").unwrap())
            .args(["report", "clock", "--server", &addr, "--ca", ca_arg])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && table.contains("node-1"),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for p in procs.iter_mut() {
        assert!(p.stop(Duration::from_secs(5)), "{} did not stop", p.name);
    }
    c.scenario.stop().await;
    c.kube.shutdown().await;
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The leaf certificate `addr` presents to a new TLS connection verified against `ca_pem`.
async fn presented(addr: &str, ca_pem: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pem_der(ca_pem).into()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Two aggregator replicas behind a Service that routes to the ready one: the Lease holder
/// serves three agents while the standby refuses; SIGKILL the leader and the standby takes the
/// Lease, agents land on it through the Service, and the whole view is back — every pod once —
/// within a report interval; an agent stopped afterwards leaves its node stale, never healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_leader_dies_and_the_view_is_whole_again() {
    use anchorwatch_tests::service::{self, Backend, Service};
    use k8s_openapi::api::coordination::v1::Lease;
    let _serial = SERIAL.lock().await;
    let plans = rotation_subset(&["web-7d9c5b-a1", "web-7d9c5b-a2", "web-7d9c5b-a3"]);
    let c = cluster(29, plans).await;
    let port = || format!("127.0.0.1:{}", process::free_port().unwrap());
    let (grpc_a, ready_a, grpc_b, ready_b) = (port(), port(), port(), port());
    let replica = |name: &str, grpc: &str, ready: &str| {
        let dir = c.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        process::aggregator(
            &c.kubeconfig,
            grpc,
            &dir,
            &[
                "--metrics-listen",
                ready,
                "--leader-identity",
                name,
                "--lease-duration",
                "4s",
                "--lease-renew-deadline",
                "3s",
                "--lease-retry-period",
                "1s",
                "--stale-after",
                "5s",
            ],
        )
        .unwrap()
    };
    let mut a = replica("aggregator-a", &grpc_a, &ready_a);
    // A leads before B starts, so the test knows which one to kill.
    let ra: std::net::SocketAddr = ready_a.parse().unwrap();
    eventually(
        Duration::from_secs(20),
        "aggregator-a leading",
        || async move { Ok(service::ready(ra).await.then_some(())) },
    )
    .await;
    let b = replica("aggregator-b", &grpc_b, &ready_b);
    let svc = Service::start(
        "127.0.0.1:0".parse().unwrap(),
        vec![
            Backend {
                addr: grpc_a.parse().unwrap(),
                ready_addr: ra,
            },
            Backend {
                addr: grpc_b.parse().unwrap(),
                ready_addr: ready_b.parse().unwrap(),
            },
        ],
    )
    .await
    .unwrap();
    let url = format!("http://{}", svc.addr());
    let mut agents = Procs(
        (1..=3)
            .map(|n| {
                process::agent(
                    &c.kubeconfig,
                    &format!("node-{n}"),
                    &url,
                    c.dir.path(),
                    &["--heartbeat", "1s"],
                )
                .unwrap()
            })
            .collect(),
    );
    let service_addr = svc.addr().to_string();
    let whole = |addr: String| async move {
        let n = call(
            &addr,
            "anchorwatch.v1.Query/ListNodes",
            serde_json::json!({}),
        )
        .await?;
        let p = call(
            &addr,
            "anchorwatch.v1.Query/ListPods",
            serde_json::json!({}),
        )
        .await?;
        let connected = n["nodes"].as_array().is_some_and(|n| {
            n.len() == 3 && n.iter().all(|x| x["connected"] == true && x["pods"] == 1)
        });
        anyhow::Ok(connected.then_some(p))
    };
    eventually(
        Duration::from_secs(30),
        "the whole view on the leader",
        || whole(service_addr.clone()),
    )
    .await;
    // The standby is not ready and refuses agents and queries, naming the leader.
    assert!(!service::ready(ready_b.parse().unwrap()).await);
    let refused = call(
        &grpc_b,
        "anchorwatch.v1.Query/Summary",
        serde_json::json!({}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("standby; the leader is aggregator-a"),
        "{refused}"
    );

    a.kill();
    let killed = std::time::Instant::now();
    let rb: std::net::SocketAddr = ready_b.parse().unwrap();
    eventually(
        Duration::from_secs(20),
        "aggregator-b leading",
        || async move { Ok(service::ready(rb).await.then_some(())) },
    )
    .await;
    let took_over = std::time::Instant::now();
    let pods = eventually(
        Duration::from_secs(20),
        "the whole view on the new leader",
        || whole(service_addr.clone()),
    )
    .await;
    let whole_again = took_over.elapsed();
    // Agents back off at most 2 s here and send a snapshot on connect; a heartbeat is 1 s.
    assert!(whole_again < Duration::from_secs(10), "{whole_again:?}");
    let mut names: Vec<&str> = pods["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["web-7d9c5b-a1", "web-7d9c5b-a2", "web-7d9c5b-a3"],
        "every pod once: {pods}"
    );
    let lease: Lease = c
        .kube
        .get("anchorwatch", "anchorwatch-aggregator")
        .expect("the Lease");
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("aggregator-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    eprintln!(
        "failover: Lease taken {:?} after the kill, view whole {:?} later",
        took_over - killed,
        whole_again
    );

    // An agent that stops leaves its node stale on the new leader.
    assert!(agents[2].stop(Duration::from_secs(5)));
    eventually(Duration::from_secs(20), "node-3 stale", || {
        let addr = service_addr.clone();
        async move {
            let n = call(
                &addr,
                "anchorwatch.v1.Query/ListNodes",
                serde_json::json!({}),
            )
            .await?;
            let stale = n["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|x| x["name"] == "node-3"))
                .is_some_and(|x| x["stale"] == true);
            Ok(stale.then_some(()))
        }
    })
    .await;
    let mut procs = Procs(vec![b]);
    for p in agents.iter_mut().chain(procs.iter_mut()) {
        assert!(p.stop(Duration::from_secs(5)), "{} did not stop", p.name);
    }
    drop(svc);
    c.scenario.stop().await;
    c.kube.shutdown().await;
}

/// A pod as a rogue agent would send it, presenting `chain` (raw DER, possibly garbage).
fn wire_pod(node: &str, name: &str, chain: Vec<Vec<u8>>) -> pb::PodEvidence {
    pb::PodEvidence {
        pod: Some(pb::PodRef {
            namespace: "rogue".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }),
        node: node.into(),
        pod_ip: "127.30.9.9".into(),
        phase: "Running".into(),
        probe: Some(pb::ProbeResult {
            address: "127.30.9.9:4191".into(),
            outcome: Some(pb::probe_result::Outcome::Chain(pb::PresentedChain {
                certificates: chain,
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn snapshot(node: &str, seq: u64, pods: Vec<pb::PodEvidence>) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Snapshot(pb::NodeSnapshot {
            node: node.into(),
            seq,
            pods,
            ..Default::default()
        })),
    }
}

/// What the aggregator answers to `messages` sent on one stream: its first reply or its error.
async fn first_reply(
    url: &str,
    messages: Vec<pb::AgentMessage>,
) -> Result<Option<pb::AggregatorMessage>, tonic::Status> {
    let mut client = pb::ingest_client::IngestClient::connect(url.to_string())
        .await
        .unwrap()
        .max_encoding_message_size(64 * 1024 * 1024);
    let stream =
        tokio_stream::StreamExt::chain(tokio_stream::iter(messages), tokio_stream::pending());
    let mut replies = client.report(stream).await?.into_inner();
    tokio::time::timeout(Duration::from_secs(20), replies.message())
        .await
        .expect("an answer within 20 s")
}

/// Bad input on the agent channel is refused or bounded, each stream closed with its reason in
/// the aggregator's log, while the real agent of node-1 keeps reporting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_streams_are_refused_or_cut_off_and_everyone_else_is_served() {
    let _serial = SERIAL.lock().await;
    let plans = rotation_subset(&["web-7d9c5b-a1"]);
    let c = cluster(30, plans).await;
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");
    let mut procs = Procs(vec![
        process::aggregator(
            &c.kubeconfig,
            &addr,
            c.dir.path(),
            &[
                "--stream-idle-timeout",
                "2s",
                "--stream-send-timeout",
                "2s",
                "--max-pods-per-node",
                "50",
                "--max-message-bytes",
                "1000000",
            ],
        )
        .unwrap(),
        process::agent(
            &c.kubeconfig,
            "node-1",
            &url,
            c.dir.path(),
            &["--heartbeat", "1s"],
        )
        .unwrap(),
    ]);
    eventually(Duration::from_secs(30), "node-1's pod", || {
        let addr = addr.clone();
        async move { Ok((summary(&addr).await?["pods"] == 1).then_some(())) }
    })
    .await;

    // A 2 MB message: refused by size.
    let big = first_reply(
        &url,
        vec![snapshot(
            "node-7",
            1,
            vec![wire_pod("node-7", "big", vec![vec![0x30; 2_000_000]])],
        )],
    )
    .await;
    let status = big.unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::Internal
        ),
        "{status:?}"
    );
    // Garbage DER: acknowledged, and a recorded finding on the pod.
    let garbage = first_reply(
        &url,
        vec![snapshot(
            "node-6",
            1,
            vec![wire_pod(
                "node-6",
                "garbage",
                vec![b"\x30\x82\xff\xffnot DER at all".to_vec()],
            )],
        )],
    )
    .await;
    assert!(matches!(garbage, Ok(Some(_))), "{garbage:?}");
    // Thousands of pods from one node: refused.
    let many: Vec<pb::PodEvidence> = (0..2_000)
        .map(|i| wire_pod("node-5", &format!("p{i}"), vec![]))
        .collect();
    let status = first_reply(&url, vec![snapshot("node-5", 1, many)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("--max-pods-per-node"),
        "{status:?}"
    );
    // A snapshot in parts (as agents send it): applied whole, acknowledged with its last seq.
    let in_parts = |node: &str, prefix: &str, n: usize| {
        let whole = pb::NodeSnapshot {
            node: node.into(),
            pods: (0..n)
                .map(|i| wire_pod(node, &format!("{prefix}{i}"), vec![]))
                .collect(),
            ..Default::default()
        };
        anchorwatch_proto::parts::snapshot(whole, 1, 300)
            .into_iter()
            .map(|p| pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Snapshot(p)),
            })
            .collect::<Vec<_>>()
    };
    let parts = in_parts("node-3", "part", 12);
    assert!(parts.len() >= 3, "{}", parts.len());
    let reply = first_reply(&url, parts.clone()).await.unwrap();
    let acked = match reply.and_then(|m| m.kind) {
        Some(pb::aggregator_message::Kind::Ack(a)) => a.seq,
        other => panic!("no ack: {other:?}"),
    };
    assert_eq!(acked, parts.len() as u64);
    // Parts interrupted by a heartbeat: refused, and nothing of that snapshot applied.
    let mut parts = in_parts("node-2", "interrupted", 12);
    parts.insert(
        1,
        pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Heartbeat(pb::Heartbeat {
                node: "node-2".into(),
                ..Default::default()
            })),
        },
    );
    let status = first_reply(&url, parts).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    // More pods than the limit, spread over parts: refused all the same.
    let status = first_reply(&url, in_parts("node-8", "spread", 60))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    // A stream that sends nothing: closed after the idle timeout.
    let status = first_reply(&url, vec![]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    // A stream that never reads: its replies cannot be delivered, so it is cut off. The
    // client's HTTP/2 window is a few bytes, so replies back up at once.
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .initial_stream_window_size(Some(64))
        .initial_connection_window_size(Some(64))
        .connect()
        .await
        .unwrap();
    let mut client = pb::ingest_client::IngestClient::new(channel);
    let flood: Vec<pb::AgentMessage> = (1..=200)
        .map(|seq| snapshot("node-4", seq, vec![]))
        .collect();
    let stuck = client
        .report(tokio_stream::StreamExt::chain(
            tokio_stream::iter(flood),
            tokio_stream::pending(),
        ))
        .await
        .unwrap();
    let log = logged(
        &procs[0],
        "does not read its stream",
        "the non-reading stream cut off",
        Duration::from_secs(20),
    )
    .await;
    drop(stuck);
    drop(client);
    for reason in [
        "message length too large",
        "--max-pods-per-node",
        "no message for",
    ] {
        assert!(
            log.to_lowercase().contains(&reason.to_lowercase()),
            "{reason} in the aggregator's log:\n{log}"
        );
    }
    let verdicts = all_verdicts(&addr).await.unwrap();
    assert_eq!(
        verdicts.get("rogue/garbage"),
        Some(&vec!["CERT_UNREADABLE".to_string()]),
        "{verdicts:?}"
    );
    for i in 0..12 {
        assert!(
            verdicts.contains_key(&format!("rogue/part{i}")),
            "part{i}: {verdicts:?}"
        );
    }
    assert!(
        !verdicts
            .keys()
            .any(|k| k.contains("interrupted") || k.contains("spread")),
        "{verdicts:?}"
    );
    // Everyone else is served: node-1's agent still reports and the aggregator answers.
    let nodes = call(
        &addr,
        "anchorwatch.v1.Query/ListNodes",
        serde_json::json!({}),
    )
    .await
    .unwrap();
    let node1 = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "node-1")
        .cloned()
        .unwrap();
    assert_eq!(node1["connected"], true, "{nodes}");
    assert_eq!(node1["pods"], 1, "{nodes}");
    // The rogue clients' connections are still open (their request streams never end): the
    // aggregator waits 5 s for them on SIGTERM, then exits anyway.
    for p in procs.iter_mut() {
        assert!(p.is_running(), "{} died", p.name);
        assert!(p.stop(Duration::from_secs(8)), "{} did not stop", p.name);
    }
    c.scenario.stop().await;
    c.kube.shutdown().await;
}

/// A CRI log line of `stream` with tag `tag`, stamped now.
fn cri(tag: &str, message: &str) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    format!("{now} stderr {tag} {message}\n")
}

fn bad_signature(peer: &str) -> String {
    format!(
        "[  12.003112s]  WARN ThreadId(01) outbound:proxy{{addr={peer}}}: linkerd_reconnect: Failed to connect error=endpoint {peer}: invalid peer certificate: BadSignature"
    )
}

fn append(path: &Path, text: &[u8]) {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text)
        .unwrap();
}

/// The log correlations of a pod as GetPod shows them: (logger, kind, peer) → (count, status,
/// explained by).
async fn log_evidence_of(
    addr: &str,
    pod: &str,
) -> anyhow::Result<BTreeMap<(String, String, String), (u64, String, String)>> {
    let (namespace, name) = pod.split_once('/').unwrap();
    let got = call(
        addr,
        "anchorwatch.v1.Query/GetPod",
        serde_json::json!({"namespace": namespace, "name": name}),
    )
    .await?;
    Ok(got["logEvidence"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
            let count = s("count").parse().unwrap_or(0);
            (
                (s("pod"), s("kind"), s("peer")),
                (count, s("status"), s("explainedBy")),
            )
        })
        .collect())
}

const WEB: &str = "emojivoto/web-7d9c5b-a1";
const VOTING: &str = "emojivoto/voting-6c8d9f-c1";
const EMOJI: &str = "emojivoto/emoji-5f6b8c-b1";
const VOTE_BOT: &str = "emojivoto/vote-bot-58f4d-d1";

/// Waits until web's BAD_SIGNATURE lines naming voting number `n`, as the aggregator shows them.
async fn web_rejections_reach(addr: &str, n: u64) {
    eventually(
        Duration::from_secs(30),
        &format!("{n} BAD_SIGNATURE lines of web naming voting"),
        || async move {
            let got = log_evidence_of(addr, VOTING).await?;
            let key = (
                WEB.to_string(),
                "BAD_SIGNATURE".to_string(),
                VOTING.to_string(),
            );
            Ok(got.get(&key).filter(|(c, _, _)| *c == n).map(|_| ()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_logs_on_the_node_are_counted_correlated_and_survive_a_restart() {
    let _serial = SERIAL.lock().await;
    let plans: Vec<PodPlan> = scenario::rotation_pods()
        .into_iter()
        .filter(|p| p.node == 1)
        .collect();
    let c = cluster(26, plans).await;
    let addr = format!("127.0.0.1:{}", process::free_port().unwrap());
    let url = format!("http://{addr}");
    let root = c.dir.path().join("var-log-pods");
    let state = c.dir.path().join("var-lib-anchorwatch");
    std::fs::create_dir_all(&root).unwrap();
    let metrics = format!("127.0.0.1:{}", process::free_port().unwrap());
    let agent_flags = [
        "--log-root",
        root.to_str().unwrap(),
        "--log-state-dir",
        state.to_str().unwrap(),
        "--log-interval",
        "300ms",
        "--metrics-listen",
        metrics.as_str(),
    ];
    let mut procs = Procs(vec![
        process::aggregator(&c.kubeconfig, &addr, c.dir.path(), &[]).unwrap(),
        process::agent(&c.kubeconfig, "node-1", &url, c.dir.path(), &agent_flags).unwrap(),
    ]);

    // Each pod's log folder, named as the kubelet names it, from what the aggregator shows.
    let mut dirs = BTreeMap::new();
    let mut ips = BTreeMap::new();
    for pod in [WEB, VOTING, EMOJI, VOTE_BOT] {
        let (namespace, name) = pod.split_once('/').unwrap();
        let addr = addr.as_str();
        let detail = eventually(Duration::from_secs(60), "the pod reported", || async move {
            let d = call(
                addr,
                "anchorwatch.v1.Query/GetPod",
                serde_json::json!({"namespace": namespace, "name": name}),
            )
            .await?;
            Ok(d["summary"]["podIp"].is_string().then_some(d))
        })
        .await;
        let uid = detail["uid"].as_str().unwrap();
        let dir = root.join(format!("{namespace}_{name}_{uid}/linkerd-proxy"));
        std::fs::create_dir_all(&dir).unwrap();
        dirs.insert(pod, dir);
        ips.insert(
            pod,
            detail["summary"]["podIp"].as_str().unwrap().to_string(),
        );
    }
    let voting_addr = format!("{}:4143", ips[VOTING]);
    let web_log = dirs[WEB].join("0.log");

    // web (OK) fails to connect to voting (a stale leaf): three lines, and one message split
    // into a partial line and its final part.
    let line = bad_signature(&voting_addr);
    let (head, tail) = line.split_at(70);
    let text = cri("F", &line).repeat(3) + &cri("P", head) + &cri("F", tail);
    append(&web_log, text.as_bytes());
    // A line the runtime is still writing: half of it now, the rest once it has been read.
    let half = cri("F", &line);
    let (first, rest) = half.split_at(50);
    append(&web_log, first.as_bytes());
    web_rejections_reach(&addr, 4).await;
    append(&web_log, rest.as_bytes());
    web_rejections_reach(&addr, 5).await;

    // voting, logging JSON, rejects web's chain (its own anchors are the stale ones); emoji
    // cannot reach identity; vote-bot's log is mostly garbage but for one alert: a peer
    // rejected vote-bot's own (stale) leaf.
    let web_addr = format!("{}:8080", ips[WEB]);
    let json = serde_json::json!({
        "timestamp": "2026-12-03T15:03:43.123Z", "level": "WARN",
        "fields": {"message": "Failed to connect", "error": format!("endpoint {web_addr}: invalid peer certificate: BadSignature")},
        "target": "linkerd_reconnect",
        "spans": [{"name": "outbound"}, {"addr": web_addr, "name": "proxy"}]
    });
    append(
        &dirs[VOTING].join("0.log"),
        cri("F", &json.to_string()).as_bytes(),
    );
    append(
        &dirs[EMOJI].join("0.log"),
        cri("F", "linkerd_proxy_identity_client::certify: Failed to obtain identity error=status: Unknown, message: \"controller linkerd-identity-headless.linkerd.svc.cluster.local:8080: service in fail-fast\"").as_bytes(),
    );
    let bot_log = dirs[VOTE_BOT].join("0.log");
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7919 % 251) as u8).collect();
    append(&bot_log, &garbage);
    append(&bot_log, b"\n2026-12-03T15:03:43Z stderr F ");
    append(&bot_log, &vec![b'x'; 10 << 20]);
    append(
        &bot_log,
        b"\n2026-12-03T15:03:43Z stderr F \xff\xfe invalid \xc3 UTF-8\n",
    );
    append(
        &bot_log,
        cri(
            "F",
            r#"{"fields":{"message":7,"error":["x"]},"spans":"nope"}"#,
        )
        .as_bytes(),
    );
    append(
        &bot_log,
        cri("F", &format!("[ 1.0s]  INFO ThreadId(02) daemon:admin{{listen.addr=0.0.0.0:4191}}:accept{{peer.addr={}:51234 target.addr={}:4191}}: linkerd_app_core::serve: Connection closed error=received fatal alert: BadCertificate", ips[WEB], ips[VOTE_BOT])).as_bytes(),
    );

    // Rotation: 0.log is renamed and a new one started; late writes reach the renamed file (the
    // runtime's old descriptor), ending in a partial line that never gets its final part, and
    // the kubelet compresses it before the agent reads them.
    let rotated = dirs[WEB].join("0.log.20261203-150343");
    std::fs::rename(&web_log, &rotated).unwrap();
    let emoji_addr = format!("{}:8080", ips[EMOJI]);
    let unknown = format!(
        "[  14.1s]  WARN ThreadId(01) outbound:proxy{{addr={emoji_addr}}}: linkerd_reconnect: Failed to connect error=endpoint {emoji_addr}: invalid peer certificate: UnknownIssuer"
    );
    append(&web_log, (cri("F", &line) + &cri("F", &unknown)).as_bytes());
    web_rejections_reach(&addr, 6).await;
    append(
        &rotated,
        (cri("F", &line).repeat(2) + &cri("P", &line)).as_bytes(),
    );
    let plain = std::fs::read(&rotated).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &plain).unwrap();
    std::fs::write(
        dirs[WEB].join("0.log.20261203-150343.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    std::fs::remove_file(&rotated).unwrap();
    web_rejections_reach(&addr, 9).await;

    // What a user sees: the pair on both pods, confirmed by voting's stale leaf.
    let on_voting = log_evidence_of(&addr, VOTING).await.unwrap();
    assert_eq!(
        on_voting[&(WEB.into(), "BAD_SIGNATURE".into(), VOTING.into())],
        (
            9,
            "confirmed".into(),
            format!("STALE_LEAF of {VOTING} (BadSignature)")
        )
    );
    assert_eq!(
        on_voting[&(VOTING.into(), "BAD_SIGNATURE".into(), WEB.into())],
        (
            1,
            "confirmed".into(),
            format!("STALE_TRUST_BUNDLE of {VOTING} (proxy lacks the issuer's anchor)")
        ),
        "the JSON line names web: voting's own anchors explain it"
    );
    let voting = call(
        &addr,
        "anchorwatch.v1.Query/GetPod",
        serde_json::json!({"namespace": "emojivoto", "name": "voting-6c8d9f-c1"}),
    )
    .await
    .unwrap();
    let stale_leaf = voting["summary"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["verdict"] == "VERDICT_STALE_LEAF")
        .unwrap();
    assert_eq!(
        stale_leaf["confirmedByLogs"][0],
        format!("9× BAD_SIGNATURE naming {voting_addr} ({VOTING}) logged by {WEB}").as_str()
    );
    let on_web = log_evidence_of(&addr, WEB).await.unwrap();
    assert_eq!(
        on_web[&(WEB.into(), "UNKNOWN_ISSUER".into(), EMOJI.into())].1,
        "unexplained"
    );
    let on_bot = log_evidence_of(&addr, VOTE_BOT).await.unwrap();
    assert_eq!(
        on_bot[&(
            VOTE_BOT.into(),
            "ALERT_RECEIVED(BadCertificate)".into(),
            WEB.into()
        )],
        (
            1,
            "confirmed".into(),
            format!("STALE_LEAF of {VOTE_BOT} (BadSignature)")
        )
    );
    let summary = eventually(
        Duration::from_secs(20),
        "log findings in the summary",
        || {
            let addr = addr.clone();
            async move {
                let s = summary(&addr).await?;
                let done = !findings_named(&s, "IDENTITY_UNREACHABLE").is_empty();
                Ok(done.then_some(s))
            }
        },
    )
    .await;
    let unreachable = findings_named(&summary, "IDENTITY_UNREACHABLE");
    assert_eq!(unreachable.len(), 1, "{summary}");
    assert_eq!(unreachable[0]["subject"], "node-1");
    assert_eq!(strings(&unreachable[0]["pods"]), [EMOJI]);
    let inconclusive = findings_named(&summary, "INCONCLUSIVE");
    let web_finding = inconclusive
        .iter()
        .find(|f| f["subject"] == WEB)
        .expect("web's unexplained UnknownIssuer is a finding");
    assert!(
        web_finding["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("1× UNKNOWN_ISSUER naming {emoji_addr} ({EMOJI})")),
        "{web_finding}"
    );
    assert!(
        summary["logEvidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["pod"] == WEB && c["peer"] == VOTING && c["count"] == "9")
    );

    // The agent's own metrics, and the garbage it skipped without falling over.
    let text = http_get(&metrics, "/metrics").await;
    assert!(
        text.contains(
            "anchorwatch_proxy_log_errors_total{namespace=\"emojivoto\",pod=\"web-7d9c5b-a1\",kind=\"BAD_SIGNATURE\"} 9\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("anchorwatch_proxy_log_skipped_lines_total{reason=\"too_long\"} 1\n"),
        "{text}"
    );
    assert!(procs[1].is_running(), "the agent survives its bad input");

    // Restart: lines written while the agent is down are counted once, nothing twice.
    assert!(
        procs[1].stop(Duration::from_secs(5)),
        "the agent stops on SIGTERM"
    );
    append(&web_log, cri("F", &line).as_bytes());
    procs[1] = process::agent(&c.kubeconfig, "node-1", &url, c.dir.path(), &agent_flags).unwrap();
    web_rejections_reach(&addr, 10).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    web_rejections_reach(&addr, 10).await;
    drop(procs);
    c.scenario.stop().await;
}
