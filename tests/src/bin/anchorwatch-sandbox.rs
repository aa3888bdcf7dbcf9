//! The sandbox: a simulated meshed cluster mid trust-anchor rotation, the real aggregator and one
//! real agent per node, until interrupted. See README.md.

use anchorwatch_tests::{kubesim::KubeSim, process, scenario};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--skew node-3=-25s`: that node's agent runs under libfaketime with its clock shifted.
    let mut skews = std::collections::BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = match a.strip_prefix("--skew=") {
            Some(v) => v.to_string(),
            None if a == "--skew" => args.next().unwrap_or_default(),
            None if a == "--help" || a == "-h" => {
                println!(
                    "usage: anchorwatch-sandbox [--skew NODE=SHIFT]...\n  --skew node-3=-25s   run that node's agent under libfaketime, its clock shifted"
                );
                return Ok(());
            }
            None => anyhow::bail!(
                "unknown argument {a:?}; usage: anchorwatch-sandbox [--skew NODE=SHIFT]..."
            ),
        };
        let Some((node, shift)) = value.split_once('=') else {
            anyhow::bail!("--skew wants NODE=SHIFT, e.g. node-3=-25s; got {value:?}");
        };
        if !(1..=3).any(|n| scenario::node_name(n) == node) {
            anyhow::bail!(
                "--skew: the sandbox's nodes are node-1, node-2 and node-3, not {node:?}"
            );
        }
        let ok = shift
            .strip_prefix(['+', '-'])
            .and_then(|n| n.strip_suffix(['s', 'm', 'h', 'd']))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            anyhow::bail!(
                "--skew {node}={shift}: give a signed whole number with a unit, e.g. -25s, +3s, +2m"
            );
        }
        skews.insert(node.to_string(), shift.to_string());
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::Builder::new()
        .prefix("anchorwatch-sandbox-")
        .tempdir()?;
    let kube = KubeSim::start("127.0.0.1:0".parse()?).await?;
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig)?;
    let scenario = scenario::Scenario::start(&kube, 10, scenario::rotation_pods())
        .await
        .map_err(|e| {
            e.context("cannot start the simulated proxies on 127.10.x.y:4191 (is another sandbox running?)")
        })?;
    // The Deployments and ReplicaSets behind the pods, as a cluster would hold them, so the plan
    // resolves owners from real objects.
    for p in &scenario.pods {
        let Some((rs, _)) = p.name.rsplit_once('-') else {
            continue;
        };
        let Some((deployment, _)) = rs.rsplit_once('-') else {
            continue;
        };
        kube.apply_json(serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": deployment, "namespace": p.namespace, "uid": format!("uid-{deployment}")},
            "spec": {"selector": {}, "template": {}, "paused": false}}))?;
        kube.apply_json(serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs, "namespace": p.namespace, "uid": format!("rs-{rs}"),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
                                     "uid": format!("uid-{deployment}"), "controller": true}]},
            "spec": {"selector": {}, "template": {}}}))?;
    }

    write_proxy_logs(&kube, dir.path())?;

    let port = process::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let metrics = format!("127.0.0.1:{}", process::free_port()?);
    let mut procs = vec![process::aggregator(
        &kubeconfig,
        &listen,
        dir.path(),
        &["--metrics-listen", &metrics],
    )?];
    for n in 1..=3 {
        let node = scenario::node_name(n);
        let env = match skews.get(&node) {
            Some(shift) => process::faketime(shift)?,
            None => vec![],
        };
        procs.push(process::agent_with_env(
            &kubeconfig,
            &node,
            &url,
            dir.path(),
            &[],
            env,
        )?);
    }

    // The grpcurl that scripts/sandbox installed into ./.venv, when there is one.
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/grpcurl");
    let grpcurl = match venv.canonicalize() {
        Ok(p) if p.is_file() => p.display().to_string(),
        _ => "grpcurl".to_string(),
    };
    println!(
        r#"anchorwatch sandbox: a simulated cluster in the middle of a trust-anchor rotation
  Kubernetes API (simulated): {kube_url}   kubeconfig: {kubeconfig}
  aggregator gRPC:            {listen}   (pid {agg_pid})
  aggregator metrics:         http://{metrics}/metrics
  agents:                     node-1, node-2, node-3 (pids {agent_pids})
  logs:                       {logs}   (kept while the sandbox runs)
  proxy logs read by agents:  {logs}/pods-node-N/<ns>_<pod>_<uid>/linkerd-proxy/0.log

The bundle holds root ca2; some proxies still present leaves from ca1 (same name, other key).
Findings appear within a few seconds. Try:

  {grpcurl} -plaintext {listen} list
  {grpcurl} -plaintext {listen} describe anchorwatch.v1.Query
  {grpcurl} -plaintext {listen} anchorwatch.v1.Query/Summary
  {grpcurl} -plaintext -d '{{"only_faulty": true}}' {listen} anchorwatch.v1.Query/ListPods
  {grpcurl} -plaintext -d '{{"verdict": "VERDICT_STALE_LEAF"}}' {listen} anchorwatch.v1.Query/ListPods
  {grpcurl} -plaintext -d '{{"namespace": "emojivoto", "name": "voting-6c8d9f-c1"}}' {listen} anchorwatch.v1.Query/GetPod
  {grpcurl} -plaintext {listen} anchorwatch.v1.Query/ListNodes
  {aggregator} report clock --server {url} --svg clocks.svg
  curl -s http://{metrics}/metrics | grep anchorwatch_node_clock

Type a command and Enter:
  extend   add the old root ca1 to the bundle (as in a rotation's first step)
  restore  the bundle holds ca2 only again
  quit     stop everything (Ctrl-C does too)"#,
        kube_url = kube.url(),
        kubeconfig = kubeconfig.display(),
        agg_pid = procs[0].pid(),
        agent_pids = procs[1..]
            .iter()
            .map(|p| p.pid().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        logs = dir.path().display(),
        aggregator = process::bin("anchorwatch-aggregator")?.display(),
    );

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut check = tokio::time::interval(Duration::from_secs(2));
    let mut reported: Vec<u32> = Vec::new();
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut hup) = (
        signal(SignalKind::terminate())?,
        signal(SignalKind::hangup())?,
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => break,
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(l)) => match l.trim() {
                    "extend" => {
                        kube.apply_config_map(scenario::trust_roots(&[&scenario.pki.ca2.cert_pem, &scenario.pki.ca1.cert_pem]));
                        println!("bundle: ca2 + ca1");
                    }
                    "restore" => {
                        kube.apply_config_map(scenario::trust_roots(&[&scenario.pki.ca2.cert_pem]));
                        println!("bundle: ca2");
                    }
                    "quit" | "exit" => break,
                    "" => {}
                    other => println!("unknown command {other:?}: extend, restore or quit"),
                },
                _ => stdin_open = false,
            },
            _ = check.tick() => {
                // A process that exits (or that you stopped, to watch a node turn stale) is
                // reported once; the rest of the sandbox keeps running.
                for p in procs.iter_mut() {
                    if !reported.contains(&p.pid()) && !p.is_running() {
                        reported.push(p.pid());
                        println!("{} (pid {}) exited; its log: {}", p.name, p.pid(), p.log.display());
                    }
                }
            }
        }
    }
    println!("stopping");
    for mut p in procs {
        p.stop(Duration::from_secs(3));
    }
    scenario.stop().await;
    kube.shutdown().await;
    drop(dir);
    // Reading stdin parks a thread the runtime would wait for: exit now that all is stopped.
    std::process::exit(0)
}

/// The log lines the rotation makes proxies write, in the CRI files each node's agent reads
/// (`<dir>/pods-<node>/<ns>_<pod>_<uid>/linkerd-proxy/0.log`): web rejects voting's stale leaf,
/// voting (old anchors) rejects web's, and a node-2 web rejects books' foreign chain. Appending
/// lines there shows them counted within seconds.
fn write_proxy_logs(kube: &KubeSim, dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let pods = kube.pods();
    let find = |name: &str| {
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .with_context(|| format!("the sandbox has no pod {name}"))
    };
    let ip = |name: &str| -> anyhow::Result<String> {
        find(name)?
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .with_context(|| format!("pod {name} has no IP"))
    };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    for (logger, error, peer) in [
        ("web-7d9c5b-a1", "BadSignature", "voting-6c8d9f-c1"),
        ("voting-6c8d9f-c1", "BadSignature", "web-7d9c5b-a1"),
        ("web-7d9c5b-a2", "UnknownIssuer", "books-64c9b-e1"),
    ] {
        let pod = find(logger)?;
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let folder = dir.join(format!("pods-{node}")).join(format!(
            "{}_{}_{}/linkerd-proxy",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            logger,
            pod.metadata.uid.as_deref().unwrap_or_default()
        ));
        std::fs::create_dir_all(&folder)?;
        let addr = format!("{}:4143", ip(peer)?);
        let line = format!(
            "{now} stderr F [  12.003112s]  WARN ThreadId(01) outbound:proxy{{addr={addr}}}: linkerd_reconnect: Failed to connect error=endpoint {addr}: invalid peer certificate: {error}\n"
        );
        std::fs::write(folder.join("0.log"), line.repeat(3))?;
    }
    Ok(())
}
