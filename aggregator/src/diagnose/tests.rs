use super::*;
use std::io::Write;

const ANCHORS_ENV: &str = "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS";

/// A meshed pod as `kubectl get pods -o yaml` prints one item (indented under `items:`).
fn mk_pod_item(ns: &str, name: &str, node: &str) -> String {
    format!(
        "- apiVersion: v1
  kind: Pod
  metadata:
    name: {name}
    namespace: {ns}
    uid: uid-{name}
  spec:
    nodeName: {node}
    serviceAccountName: web
    containers:
    - name: linkerd-proxy
      image: cr.l5d.io/linkerd/proxy:edge-25.4.1
      env:
      - name: {ANCHORS_ENV}
        value: not a certificate
"
    )
}

fn mk_dir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    dir
}

fn read(dir: &tempfile::TempDir, max_object: usize) -> Collected {
    collect(
        &[dir.path().to_path_buf()],
        default_sources("linkerd"),
        max_object,
        Utc::now(),
    )
}

fn pod_names(c: &Collected) -> Vec<String> {
    c.pods
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect()
}

#[test]
fn truncated_yaml_keeps_the_objects_before_it_and_says_what_it_skipped() {
    let mut text = format!(
        "apiVersion: v1\nitems:\n{}{}",
        mk_pod_item("shop", "a", "n1"),
        mk_pod_item("shop", "b", "n1")
    );
    // Cut in the middle of a third item's key.
    text.push_str("- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: \"c\n");
    let dir = mk_dir(&[("pods.yaml", text.as_bytes())]);
    let c = read(&dir, 1 << 20);
    assert_eq!(pod_names(&c), ["shop/a", "shop/b"]);
    assert_eq!(c.skipped.len(), 1, "{:?}", c.skipped);
    assert!(
        c.skipped[0].why.contains("not valid YAML"),
        "{:?}",
        c.skipped
    );
    assert!(
        c.skipped[0].origin.ends_with("pods.yaml:33"),
        "{:?}",
        c.skipped
    );
}

#[test]
fn a_list_of_mixed_kinds_feeds_each_kind_and_names_the_ignored_ones() {
    let text = format!(
        "apiVersion: v1\nitems:\n{}- apiVersion: v1\n  kind: Service\n  metadata: {{name: web, namespace: shop}}\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {{name: web, namespace: shop}}\n  spec:\n    paused: true\n    selector: {{}}\n    template: {{}}\n- apiVersion: example.com/v1\n  kind: Widget\n  metadata: {{name: w}}\nkind: List\nmetadata:\n  resourceVersion: \"\"\n",
        mk_pod_item("shop", "web-1", "n1")
    );
    let dir = mk_dir(&[("mixed.yaml", text.as_bytes())]);
    let c = read(&dir, 1 << 20);
    assert_eq!(pod_names(&c), ["shop/web-1"]);
    assert_eq!(
        c.deployments,
        Some(vec![("shop".into(), "web".into(), true)])
    );
    assert_eq!(
        c.ignored_kinds,
        BTreeMap::from([("Service".into(), 1), ("Widget".into(), 1)])
    );
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
}

#[test]
fn a_secret_with_only_a_key_leaves_the_issuer_unavailable_and_the_key_unprinted() {
    use base64::Engine;
    let key = "PRIVATE-KEY-MATERIAL-must-not-appear";
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    let text = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: linkerd-identity-issuer\n  namespace: linkerd\ntype: kubernetes.io/tls\ndata:\n  tls.key: {b64}\n---\n{}",
        mk_pod_item("shop", "a", "n1")
            .replacen("- ", "", 1)
            .replace("\n  ", "\n")
    );
    let dir = mk_dir(&[("linkerd.yaml", text.as_bytes())]);
    let c = read(&dir, 1 << 20);
    assert_eq!(c.ignored_keys, ["tls.key"]);
    let opts = Options {
        settings: Settings::new("linkerd"),
        clocks: BTreeMap::new(),
        now: Utc::now(),
    };
    let d = diagnose(&c, &opts, &BTreeMap::new(), &[]).unwrap();
    for out in [
        render::table(&c, &d, &BTreeMap::new(), &[], &opts),
        render::json(&c, &d, &BTreeMap::new(), &[], &opts),
    ] {
        assert!(!out.contains(key) && !out.contains(&b64), "{out}");
        assert!(
            out.contains("has neither crt.pem nor tls.crt"),
            "the issuer's absence is said: {out}"
        );
        assert!(
            out.contains("`tls.key`") || out.contains("\"tls.key\""),
            "{out}"
        );
    }
}

#[test]
fn binary_garbage_is_skipped_with_a_reason_and_good_files_still_count() {
    let garbage: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let pods = format!("apiVersion: v1\nitems:\n{}", mk_pod_item("shop", "a", "n1"));
    let dir = mk_dir(&[
        ("a-garbage.bin", &garbage),
        ("b-pods.yaml", pods.as_bytes()),
    ]);
    let c = read(&dir, 1 << 20);
    assert_eq!(pod_names(&c), ["shop/a"]);
    assert!(
        c.skipped
            .iter()
            .any(|s| s.origin.contains("a-garbage.bin") && s.why.contains("not UTF-8")),
        "{:?}",
        c.skipped
    );
}

#[test]
fn an_api_server_pod_list_in_json_gives_its_items_the_lists_kind() {
    let item = |name: &str| {
        serde_json::json!({"metadata": {"name": name, "namespace": "shop", "uid": name},
            "spec": {"nodeName": "n1", "containers": [{"name": "linkerd-proxy",
                "env": [{"name": ANCHORS_ENV, "value": "x"}]}]}})
    };
    let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {},
        "items": [item("a"), item("b")]});
    let dir = mk_dir(&[("pods.json", list.to_string().as_bytes())]);
    let c = read(&dir, 1 << 20);
    assert_eq!(pod_names(&c), ["shop/a", "shop/b"]);
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
}

#[test]
fn a_json_object_over_the_limit_stops_that_file_with_a_reason() {
    let big = "x".repeat(300_000);
    let list = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{},{{\"kind\":\"Pod\",\"metadata\":{{\"annotations\":{{\"a\":\"{big}\"}}}}}}]}}",
        serde_json::json!({"kind": "Pod", "metadata": {"name": "a", "namespace": "shop", "uid": "a"},
            "spec": {"nodeName": "n1", "containers": [{"name": "linkerd-proxy"}]}})
    );
    let dir = mk_dir(&[("pods.json", list.as_bytes())]);
    let c = read(&dir, 100_000);
    assert_eq!(pod_names(&c), ["shop/a"]);
    assert!(
        c.skipped.iter().any(|s| s.why.contains("larger than")),
        "{:?}",
        c.skipped
    );
}

/// Peak resident memory of this process (nextest runs each test in its own process).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[test]
fn a_200_mib_dump_is_read_in_bounded_memory_and_the_oversized_object_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pods.yaml");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write!(f, "apiVersion: v1\nitems:\n").unwrap();
    for i in 0..50 {
        f.write_all(mk_pod_item("shop", &format!("before-{i}"), "n1").as_bytes())
            .unwrap();
    }
    // One pod whose annotation is a 200 MiB block scalar (a runaway annotation, or a log pasted
    // into a manifest).
    write!(
        f,
        "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: huge\n    namespace: shop\n    annotations:\n      blob: |\n"
    )
    .unwrap();
    let line = format!("        {}\n", "y".repeat(1015));
    for _ in 0..(200 * 1024) {
        f.write_all(line.as_bytes()).unwrap();
    }
    for i in 0..50 {
        f.write_all(mk_pod_item("shop", &format!("after-{i}"), "n2").as_bytes())
            .unwrap();
    }
    write!(f, "kind: List\nmetadata:\n  resourceVersion: \"\"\n").unwrap();
    f.flush().unwrap();
    drop(f);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 200 * 1024 * 1024, "{size}");

    let started = std::time::Instant::now();
    let c = collect(&[path], default_sources("linkerd"), 8 << 20, Utc::now());
    let took = started.elapsed();
    assert_eq!(c.pods.len(), 100, "{:?}", c.skipped);
    assert!(pod_names(&c).contains(&"shop/after-49".to_string()));
    assert_eq!(c.skipped.len(), 1, "{:?}", c.skipped);
    assert!(
        c.skipped[0].why.contains("larger than the 8 MiB limit"),
        "{:?}",
        c.skipped
    );
    let peak = peak_rss_kib().unwrap_or(0);
    eprintln!(
        "200 MiB dump: read in {took:?}, peak RSS {} MiB",
        peak / 1024
    );
    assert!(peak < 128 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn hand_given_clocks_and_questions_parse_or_say_what_is_wrong() {
    assert_eq!(parse_clock("node-1=+0.3s").unwrap(), ("node-1".into(), 0.3));
    assert_eq!(parse_clock("n=-25s").unwrap(), ("n".into(), -25.0));
    assert_eq!(parse_clock("n=150ms").unwrap(), ("n".into(), 0.15));
    assert!(parse_clock("n=soon").unwrap_err().contains("not an offset"));
    assert!(parse_clock("n").unwrap_err().contains("NODE=OFFSET"));
    assert!(matches!(
        parse_what_if("remove-anchor=sha256:946DAAD7").unwrap(),
        WhatIf::RemoveAnchor(h) if h == "946daad7"
    ));
    assert!(
        parse_what_if("issuer=/nonexistent/x.pem")
            .unwrap_err()
            .contains("cannot read")
    );
    assert!(
        parse_what_if("rotate")
            .unwrap_err()
            .contains("remove-anchor=")
    );
}

/// A meshed pod on `node` whose spec holds `anchors` (PEM), as one YAML document.
fn mk_pod_doc(name: &str, node: &str, anchors: &str) -> String {
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
        "spec": {"nodeName": node, "containers": [{"name": "linkerd-proxy", "env": [
            {"name": ANCHORS_ENV, "value": anchors}]}]}});
    format!("---\n{}", serde_yaml::to_string(&pod).unwrap())
}

/// A cluster between rotation steps: the bundle holds the old root `ca1` and the new `ca2`; the
/// Secret's issuer is still under `ca1`; pod `both` holds both roots, pod `old-only` only `ca1`.
fn mk_bundle_extended() -> (tempfile::TempDir, anchorwatch_tests::scenario::Pki) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let pki = anchorwatch_tests::scenario::Pki::new().unwrap();
    let (ca1, ca2) = (&pki.ca1.cert_pem, &pki.ca2.cert_pem);
    let mut text = String::new();
    text.push_str(&format!(
        "---\n{}",
        serde_yaml::to_string(&anchorwatch_tests::scenario::trust_roots(&[ca1, ca2])).unwrap()
    ));
    text.push_str(&format!(
        "---\n{}",
        serde_yaml::to_string(&anchorwatch_tests::scenario::issuer_secret(&pki.old_issuer))
            .unwrap()
    ));
    text.push_str(&mk_pod_doc("both", "n1", &format!("{ca1}{ca2}")));
    text.push_str(&mk_pod_doc("old-only", "n2", ca1));
    // linkerd-identity, which read the bundle (both roots) when it started.
    let identity = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "linkerd-identity-1", "namespace": "linkerd", "uid": "uid-identity"},
        "spec": {"nodeName": "n1", "serviceAccountName": "linkerd-identity", "containers": [
            {"name": "linkerd-proxy", "env": [{"name": ANCHORS_ENV, "valueFrom": {"configMapKeyRef":
                {"name": "linkerd-identity-trust-roots", "key": "ca-bundle.crt"}}}]}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "linkerd-proxy", "ready": true,
            "restartCount": 0, "image": "", "imageID": "",
            "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}]}});
    text.push_str(&format!(
        "---\n{}",
        serde_yaml::to_string(&identity).unwrap()
    ));
    let dir = mk_dir(&[("dump.yaml", text.as_bytes())]);
    std::fs::write(dir.path().join("new-issuer.pem"), &pki.new_issuer.cert_pem).unwrap();
    (dir, pki)
}

/// What `diagnose` collects from `dump.yaml` in `dir`.
fn collect_dump(dir: &tempfile::TempDir) -> Collected {
    collect(
        &[dir.path().join("dump.yaml")],
        default_sources("linkerd"),
        1 << 20,
        Utc::now(),
    )
}

fn mk_opts() -> Options {
    Options {
        settings: Settings::new("linkerd"),
        clocks: BTreeMap::from([("n1".into(), 0.0), ("n2".into(), 0.0)]),
        now: Utc::now(),
    }
}

#[test]
fn switching_the_issuer_before_every_proxy_holds_its_anchor_is_unsafe_and_names_who_breaks() {
    let (dir, _pki) = mk_bundle_extended();
    let c = collect_dump(&dir);
    let q = parse_what_if(&format!(
        "issuer={}",
        dir.path().join("new-issuer.pem").display()
    ))
    .unwrap();
    let d = diagnose(&c, &mk_opts(), &BTreeMap::new(), &[q]).unwrap();
    assert!(
        d.report
            .has("PENDING_BUNDLE_ROLLOUT", Some("shop/old-only"))
    );
    let a = &d.what_if[0];
    assert!(!a.safe, "{a:?}");
    assert_eq!(a.would_break, ["shop/old-only"], "{a:?}");
    assert!(
        a.findings
            .iter()
            .any(|(n, _, _)| n == "PENDING_BUNDLE_ROLLOUT"),
        "{a:?}"
    );
}

#[test]
fn removing_an_anchor_is_judged_by_what_still_chains_to_it() {
    let (dir, pki) = mk_bundle_extended();
    let c = collect_dump(&dir);
    let fp = |pem: &str| parse_pem_bundle(pem).certs[0].fingerprint.to_string();
    let remove = |pem: &str| WhatIf::RemoveAnchor(fp(pem)[..12].to_string());
    let d = diagnose(
        &c,
        &mk_opts(),
        &BTreeMap::new(),
        &[remove(&pki.ca2.cert_pem), remove(&pki.ca1.cert_pem)],
    )
    .unwrap();
    // ca2 signs nothing yet: taking it out breaks no one (as far as a dump can show).
    let new = &d.what_if[0];
    assert!(new.safe, "{new:?}");
    assert!(new.would_break.is_empty(), "{new:?}");
    assert!(
        new.caveats
            .iter()
            .any(|c| c.contains("UNSAFE_ANCHOR_REMOVAL"))
    );
    // Identity read both roots at start: it must restart to read the change, which breaks no one.
    assert!(
        new.caveats
            .iter()
            .any(|c| c.contains("restart linkerd-identity")),
        "{new:?}"
    );
    // ca1 is the issuer's: without it no new leaf verifies, and every pod breaks.
    let old = &d.what_if[1];
    assert!(!old.safe, "{old:?}");
    assert!(
        old.findings
            .iter()
            .any(|(n, _, _)| n == "ISSUER_NOT_CHAINED_TO_ANCHOR"),
        "{old:?}"
    );
    assert_eq!(
        old.would_break,
        ["linkerd/linkerd-identity-1", "shop/both", "shop/old-only"]
    );
}

#[test]
fn proxy_logs_show_as_evidence_and_identity_unreachable_counts_for_their_node() {
    let (dir, _pki) = mk_bundle_extended();
    let logs_dir = dir.path().join("pods");
    let folder = logs_dir.join("shop_old-only_uid-old-only/linkerd-proxy");
    std::fs::create_dir_all(&folder).unwrap();
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    std::fs::write(
        folder.join("0.log"),
        format!(
            "{now} stderr F [  44.1s]  WARN ThreadId(01) outbound:proxy{{addr=10.42.3.9:8080}}: linkerd_reconnect: Failed to connect error=endpoint 10.42.3.9:8080: invalid peer certificate: BadSignature\n\
             {now} stderr F ERROR daemon:identity: linkerd2_proxy_identity::certify: Failed to certify identity: grpc-status: Unknown, grpc-message: \"the request could not be dispatched in a timely fashion\"\n"
        ),
    )
    .unwrap();
    let (logs, skipped) = logs::read(&[logs_dir], &[], Utc::now());
    assert!(skipped.is_empty(), "{skipped:?}");
    let l = &logs["shop/old-only"];
    assert_eq!(l.kinds.get("BAD_SIGNATURE"), Some(&1), "{l:?}");
    assert!(l.identity_unreachable);
    assert_eq!(l.last_peer.as_deref(), Some("10.42.3.9:8080"));
    let c = collect_dump(&dir);
    let opts = mk_opts();
    let d = diagnose(&c, &opts, &logs, &[]).unwrap();
    assert!(
        d.report.has("IDENTITY_UNREACHABLE", Some("n2")),
        "{:?}",
        d.report.findings
    );
    let table = render::table(&c, &d, &logs, &[], &opts);
    assert!(table.contains("logs: BAD_SIGNATURE×1"), "{table}");
}

#[test]
fn a_dump_without_the_trust_bundle_needs_attention() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let pki = anchorwatch_tests::scenario::Pki::new().unwrap();
    let pods = mk_pod_doc("a", "n1", &pki.ca1.cert_pem);
    let dir = mk_dir(&[("pods.yaml", pods.as_bytes())]);
    let d = diagnose(&read(&dir, 1 << 20), &mk_opts(), &BTreeMap::new(), &[]).unwrap();
    assert!(
        d.report.findings.iter().any(|f| f.name == "INCONCLUSIVE"
            && f.severity == crate::analysis::trust_config::Severity::Critical),
        "{:?}",
        d.report.findings
    );
    assert!(needs_attention(&d));
}

#[test]
fn a_pod_cut_inside_its_proxy_env_is_reported_truncated_not_unmeshed() {
    // `kubectl` prints `env` before `name`: a cut at a line boundary inside it still parses.
    let cut = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n  namespace: shop\n  uid: uid-web-0\n  \
               annotations: {linkerd.io/inject: enabled}\nspec:\n  nodeName: n1\n  containers:\n  - env:\n    \
               - name: LINKERD2_PROXY_LOG\n      value: warn\n";
    let dir = mk_dir(&[("pods.yaml", cut.as_bytes())]);
    let c = read(&dir, 1 << 20);
    assert!(c.unmeshed.is_empty(), "{:?}", c.unmeshed);
    assert!(
        c.skipped
            .iter()
            .any(|s| s.why.contains("shop/web-0 looks truncated")),
        "{:?}",
        c.skipped
    );
    // Whole containers, but the proxy's is gone while the injector's annotations remain.
    let gone = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  namespace: shop\n  \
                annotations: {linkerd.io/proxy-version: edge-25.4.1}\nspec:\n  nodeName: n1\n  containers:\n  \
                - name: app\n    image: web\n";
    let plain = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop}\nspec:\n  containers:\n  - {name: db, image: db}\n";
    let dir = mk_dir(&[("pods.yaml", format!("{gone}{plain}").as_bytes())]);
    let c = read(&dir, 1 << 20);
    assert!(
        c.skipped
            .iter()
            .any(|s| s.why.contains("shop/web-1 has no linkerd-proxy container")),
        "{:?}",
        c.skipped
    );
    assert_eq!(c.unmeshed, ["shop/db"]);
}

#[test]
fn a_fingerprint_prefix_too_short_says_how_many_digits_it_needs() {
    let e = parse_what_if("remove-anchor=sha256:946d").unwrap_err();
    assert!(e.contains("at least 8 hex digits"), "{e}");
    let e = parse_what_if("remove-anchor=946d").unwrap_err();
    assert!(e.contains("at least 8 hex digits"), "{e}");
}

#[test]
fn objects_read_twice_count_once_and_are_named() {
    let (dir, _pki) = mk_bundle_extended();
    let dump = dir.path().join("dump.yaml");
    let c = collect(
        &[dump.clone(), dump],
        default_sources("linkerd"),
        1 << 20,
        Utc::now(),
    );
    assert_eq!(c.pods.len(), 3, "{:?}", pod_names(&c));
    assert_eq!(c.kinds.get("Pod"), Some(&3));
    assert_eq!(c.duplicates.get("Pod"), Some(&3), "{:?}", c.duplicates);
    let mut opts = mk_opts();
    opts.clocks.insert("n9".into(), 1.0);
    let d = diagnose(&c, &opts, &BTreeMap::new(), &[]).unwrap();
    let table = render::table(&c, &d, &BTreeMap::new(), &[], &opts);
    assert!(table.contains("Read more than once"), "{table}");
    assert!(table.contains("--clock names n9"), "{table}");
    assert!(!table.contains("Secret ×2"), "{table}");
}

/// Writes one proxy log line at `at` for pod `shop/<pod>` with uid `uid` under `root`.
fn mk_log(root: &std::path::Path, pod: &str, uid: &str, lines: &[(DateTime<Utc>, &str)]) {
    let folder = root.join(format!("shop_{pod}_{uid}/linkerd-proxy"));
    std::fs::create_dir_all(&folder).unwrap();
    let text: String = lines
        .iter()
        .map(|(at, msg)| {
            format!(
                "{} stderr F {msg}\n",
                at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            )
        })
        .collect();
    std::fs::write(folder.join("0.log"), text).unwrap();
}

const BAD_SIG: &str = "[  44.1s]  WARN ThreadId(01) outbound:proxy{addr=10.42.3.9:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.42.3.9:8080: invalid peer certificate: BadSignature";

#[test]
fn logs_of_an_earlier_pod_of_the_same_name_are_not_used_for_it() {
    let (dir, _pki) = mk_bundle_extended();
    let c = collect_dump(&dir);
    let root = dir.path().join("pods");
    let now = Utc::now();
    mk_log(&root, "both", "uid-earlier", &[(now, BAD_SIG)]);
    mk_log(&root, "old-only", "uid-old-only", &[(now, BAD_SIG)]);
    let (logs, skipped) = logs::read(std::slice::from_ref(&root), &c.pods, now);
    assert!(!logs.contains_key("shop/both"), "{logs:?}");
    assert!(logs.contains_key("shop/old-only"), "{logs:?}");
    assert!(
        skipped
            .iter()
            .any(|s| s.why.contains("earlier pod shop/both (uid uid-earlier)")),
        "{skipped:?}"
    );
    // The same folder reached through two roots is read once.
    let (logs, _) = logs::read(&[root.clone(), root.join("..").join("pods")], &c.pods, now);
    assert_eq!(logs["shop/old-only"].kinds.get("BAD_SIGNATURE"), Some(&1));
}

#[test]
fn log_windows_end_at_the_moment_judged_and_later_lines_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let alert = "[  10.0s]  WARN ThreadId(01) inbound:server{port=4143}:direct{client.addr=10.42.0.7:52000}: linkerd_app_core::serve: Connection closed error=received fatal alert: BadCertificate";
    mk_log(
        dir.path(),
        "web",
        "uid-web",
        &[
            (now - chrono::TimeDelta::hours(2), BAD_SIG),
            (now - chrono::TimeDelta::minutes(30), BAD_SIG),
            (now - chrono::TimeDelta::minutes(1), BAD_SIG),
            (now - chrono::TimeDelta::minutes(1), alert),
            (now + chrono::TimeDelta::minutes(10), BAD_SIG),
        ],
    );
    let (logs, _) = logs::read(&[dir.path().to_path_buf()], &[], now);
    let l = &logs["shop/web"];
    assert_eq!(l.after_now, 1);
    let bad = l
        .evidence
        .iter()
        .find(|e| e.kind == anchorwatch_proxylog::Kind::BadSignature)
        .unwrap();
    assert_eq!((bad.total, bad.last_1h, bad.last_5m), (3, 2, 1), "{bad:?}");
    // An alert names who sent it, as the agent's evidence does.
    let got = l
        .evidence
        .iter()
        .find(|e| matches!(e.kind, anchorwatch_proxylog::Kind::AlertReceived(_)))
        .unwrap_or_else(|| panic!("{:?}", l.evidence));
    assert_eq!(got.peers.len(), 1, "{got:?}");
    assert_eq!(got.peers[0].addr.to_string(), "10.42.0.7:52000");
}

#[test]
fn a_large_dump_lists_the_pods_that_say_something_and_groups_same_shaped_findings() {
    let (dir, pki) = mk_bundle_extended();
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(&mk_pod_doc(
            &format!("quiet-{i}"),
            &format!("far-{i}"),
            &pki.ca1.cert_pem,
        ));
    }
    text.push_str(&mk_pod_doc(
        "garbled",
        "n1",
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    ));
    std::fs::write(dir.path().join("more.yaml"), text).unwrap();
    let c = read(&dir, 1 << 20);
    let opts = mk_opts();
    let d = diagnose(&c, &opts, &BTreeMap::new(), &[]).unwrap();
    let table = render::table(&c, &d, &BTreeMap::new(), &[], &opts);
    // 60 nodes without a clock: one row, counted, a few named.
    let clock_rows: Vec<&str> = table
        .lines()
        .filter(|l| l.contains("has no clock measurement"))
        .collect();
    assert_eq!(clock_rows.len(), 1, "{table}");
    assert!(clock_rows[0].contains("×60"), "{}", clock_rows[0]);
    assert!(clock_rows[0].contains("and 50 more"), "{}", clock_rows[0]);
    // The pod with an unreadable anchor is listed; the quiet ones are counted, not listed.
    assert!(table.lines().any(|l| l.contains("shop/garbled")), "{table}");
    assert!(!table.contains("shop/quiet-7 "), "{table}");
    assert!(
        table.contains("UNPROBED with no other evidence, not listed"),
        "{table}"
    );
    // JSON still carries every pod and every finding.
    let text = render::json(&c, &d, &BTreeMap::new(), &[], &opts);
    assert!(
        text.contains("shop/quiet-7") || text.contains("\"quiet-7\""),
        "json lacks a pod"
    );
    assert!(text.contains("far-59"), "json lacks a node finding");
}
