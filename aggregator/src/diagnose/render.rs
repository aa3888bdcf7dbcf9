//! The diagnosis as readable tables, or as one JSON document whose findings, rotation phase and
//! plan are named as the `Summary` RPC names them (both go through [`crate::wire`]).

use super::logs::PodLogs;
use super::{Collected, Diagnosis, Options, Skipped};
use anchorwatch_proto::v1::ClusterFinding;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;

/// What the dump could not show, and what was left out, in words.
fn caveats(
    c: &Collected,
    d: &Diagnosis,
    logs: &BTreeMap<String, PodLogs>,
    log_skipped: &[Skipped],
    opts: &Options,
) -> Vec<String> {
    let mut out = Vec::new();
    if !c.pods.is_empty() {
        out.push(
            "No presented chains: a dump cannot show the certificate a proxy holds in memory, so every pod is \
             UNPROBED and STALE_LEAF, LEAF_EXPIRED, LEAF_NOT_YET_VALID, NAME_MISMATCH, UNSAFE_ANCHOR_REMOVAL and \
             the issuer identity signs with are not judged (run the aggregator, or `linkerd identity <pod>`)."
                .into(),
        );
    }
    let unmeasured: Vec<String> = d
        .nodes
        .iter()
        .filter(|(_, given)| !**given)
        .map(|(n, _)| n.clone())
        .collect();
    if !unmeasured.is_empty() {
        out.push(format!(
            "Node clocks not measured: {} INCONCLUSIVE (never CLOCK_SKEW, never a clean bill); give offsets with --clock NODE=±Ns.",
            bounded_list(&unmeasured, 20)
        ));
    }
    for k in &c.ignored_keys {
        out.push(format!(
            "Private key `{k}` of Secret {}/{} ignored: never read, never printed.",
            c.sources().namespace,
            c.sources().secret
        ));
    }
    if c.trust_roots.is_none() {
        out.push(format!(
            "No ConfigMap {} in the input: add `kubectl -n {} get cm -o yaml`.",
            c.sources().bundle_source(),
            c.sources().namespace
        ));
    }
    if c.issuer.is_none() {
        out.push(format!(
            "No Secret {} in the input: add `kubectl -n {} get secret {} -o yaml`.",
            c.sources().issuer_source(),
            c.sources().namespace,
            c.sources().secret
        ));
    }
    if c.replica_sets.is_none()
        && c.pods
            .iter()
            .any(|p| p.owners.iter().any(|o| o.starts_with("ReplicaSet/")))
    {
        out.push("No ReplicaSets in the input: Deployments are inferred from pod-template-hash (add `kubectl get deploy,rs,sts,ds -A -o yaml`).".into());
    }
    if !c.unmeshed.is_empty() {
        out.push(format!(
            "Pods without a proxy, not judged: {}.",
            bounded_list(&c.unmeshed, 20)
        ));
    }
    if !c.unscheduled.is_empty() {
        out.push(format!(
            "{} not scheduled on a node, not judged: {}.",
            plural(c.unscheduled.len(), "meshed pod"),
            c.unscheduled.join(", ")
        ));
    }
    for s in c.skipped.iter().chain(log_skipped) {
        out.push(format!("Skipped {}: {}.", s.origin, s.why));
    }
    if !c.duplicates.is_empty() {
        let kinds: Vec<String> = c
            .duplicates
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        out.push(format!(
            "Read more than once (same kind, namespace and name; the first copy is used): {}.",
            kinds.join(", ")
        ));
    }
    let stray: Vec<&str> = opts
        .clocks
        .keys()
        .filter(|n| !d.nodes.contains_key(*n))
        .map(String::as_str)
        .collect();
    if !stray.is_empty() {
        out.push(format!(
            "--clock names {}, which no meshed pod of the dump runs on: not used.",
            stray.join(", ")
        ));
    }
    let later: usize = logs.values().map(|l| l.after_now).sum();
    if later > 0 {
        out.push(format!(
            "{} of note in the proxy logs {} later than the moment judged (`--now`): left out.",
            plural(later, "line"),
            if later == 1 { "is" } else { "are" },
        ));
    }
    if !c.ignored_kinds.is_empty() {
        let kinds: Vec<String> = c
            .ignored_kinds
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        out.push(format!(
            "Ignored (kinds the diagnosis does not use): {}.",
            kinds.join(", ")
        ));
    }
    out
}

/// `n thing` or `n things`.
pub(super) fn plural(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// The first `max` names, and how many more.
fn bounded_list(names: &[String], max: usize) -> String {
    let mut s = names
        .iter()
        .take(max)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > max {
        let _ = write!(s, " and {} more", names.len() - max);
    }
    s
}

fn logs_text(l: &PodLogs) -> String {
    let kinds: Vec<String> = l
        .kinds
        .iter()
        .filter(|(k, _)| k.as_str() != "IGNORE")
        .map(|(k, n)| format!("{k}×{n}"))
        .collect();
    let mut s = if kinds.is_empty() {
        format!("logs: nothing of note ({} files)", l.files)
    } else {
        format!("logs: {}", kinds.join(" "))
    };
    if let Some(p) = &l.last_peer {
        let _ = write!(s, " (last peer {p})");
    }
    s
}

/// Rows as aligned columns.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The diagnosis as tables.
pub fn table(
    c: &Collected,
    d: &Diagnosis,
    logs: &BTreeMap<String, PodLogs>,
    log_skipped: &[Skipped],
    opts: &Options,
) -> String {
    let mut o = String::new();
    let kinds: Vec<String> = c.kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    let _ = writeln!(
        o,
        "anchorwatch diagnose: {} meshed on {} ({} without a proxy), judged at {}",
        plural(c.pods.len(), "pod"),
        plural(d.nodes.len(), "node"),
        plural(c.unmeshed.len(), "pod"),
        opts.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let _ = writeln!(o, "Read: {}", kinds.join(", "));
    let cav = caveats(c, d, logs, log_skipped, opts);
    if !cav.is_empty() {
        let _ = writeln!(o, "\nWhat this dump cannot show, and what was left out:");
        for s in cav {
            let _ = writeln!(o, "  - {s}");
        }
    }
    let _ = writeln!(o, "\nTrust bundle {}:", c.sources().bundle_source());
    match d.trust.bundle() {
        Some(b) => {
            let mut rows = vec![header(&[
                "ANCHOR",
                "SUBJECT",
                "VALID",
                "ISSUER CHAINS TO IT",
            ])];
            for a in &b.certs {
                rows.push(vec![
                    format!("sha256:{}", a.fingerprint),
                    a.subject.clone(),
                    format!(
                        "{} → {}",
                        a.not_before.format("%Y-%m-%d"),
                        a.not_after.format("%Y-%m-%d")
                    ),
                    if d.issuer_anchors.contains(&a.fingerprint) {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                ]);
            }
            o.push_str(&indent(&columns(&rows)));
        }
        None => {
            let _ = writeln!(
                o,
                "  unavailable: {}",
                d.trust.bundle_problem().unwrap_or_default()
            );
        }
    }
    match d.trust.issuer_cert() {
        Some(i) => {
            let _ = writeln!(
                o,
                "Issuer {}: {} sha256:{} valid {} → {}",
                c.sources().issuer_source(),
                i.subject,
                i.fingerprint,
                i.not_before.format("%Y-%m-%d"),
                i.not_after.format("%Y-%m-%d")
            );
        }
        None => {
            let why = match &d.trust.issuer {
                crate::trust::IssuerState::Unavailable(w) => w.clone(),
                _ => "not read".into(),
            };
            let _ = writeln!(
                o,
                "Issuer {}: unavailable: {why}",
                c.sources().issuer_source()
            );
        }
    }

    let findings = crate::wire::findings(&d.report.findings);
    let _ = writeln!(o, "\nFindings ({}):", findings.len());
    if findings.is_empty() {
        let _ = writeln!(o, "  none");
    } else {
        let mut rows = vec![header(&["SEVERITY", "VERDICT", "SUBJECT", "DETAIL"])];
        for g in finding_groups(&findings) {
            let f = g[0];
            if g.len() > GROUP_ABOVE {
                let subjects: Vec<String> = g.iter().map(|f| f.subject.clone()).collect();
                rows.push(vec![
                    f.severity.clone(),
                    f.verdict.clone(),
                    format!("×{}", g.len()),
                    format!(
                        "{} ({}; each in --output json)",
                        f.detail.replace(&f.subject, "…"),
                        bounded_list(&subjects, 10)
                    ),
                ]);
                continue;
            }
            for f in g {
                let mut detail = f.detail.clone();
                if !f.pods.is_empty() {
                    let _ = write!(detail, " [pods: {}]", f.pods.join(", "));
                }
                rows.push(vec![
                    f.severity.clone(),
                    f.verdict.clone(),
                    f.subject.clone(),
                    detail,
                ]);
            }
        }
        o.push_str(&indent(&columns(&rows)));
    }

    let _ = writeln!(o, "\nPods ({}):", d.report.pods.len());
    let mut rows = vec![header(&["POD", "NODE", "VERDICTS", "EVIDENCE"])];
    let mut quiet = 0usize;
    for p in &c.pods {
        let key = format!("{}/{}", p.namespace, p.name);
        let Some(a) = d.report.pods.get(&key) else {
            continue;
        };
        let names: Vec<&str> = a.verdicts.iter().map(|v| v.kind.name()).collect();
        let evidence: Vec<String> = a
            .verdicts
            .iter()
            .filter(|v| v.kind != crate::analysis::VerdictKind::Unprobed)
            .filter(|v| !v.detail.is_empty())
            .map(|v| v.detail.to_string())
            .chain(logs.get(&key).map(logs_text))
            .collect();
        // A large dump lists only the pods with something to say: a table of twenty thousand
        // UNPROBED rows hides the few that matter.
        let unprobed_only = names == [crate::analysis::VerdictKind::Unprobed.name()];
        if c.pods.len() > LIST_EVERY_POD_UP_TO && unprobed_only && evidence.is_empty() {
            quiet += 1;
            continue;
        }
        rows.push(vec![
            key,
            p.node.clone(),
            names.join(","),
            evidence.join("; "),
        ]);
    }
    let listed = rows.len() > 1;
    if listed {
        o.push_str(&indent(&columns(&rows)));
    }
    if quiet > 0 {
        let _ = writeln!(
            o,
            "  ({} UNPROBED with no other evidence, not listed: each is in --output json)",
            plural(quiet, if listed { "more pod" } else { "pod" })
        );
    }
    let mut extra: Vec<&String> = logs
        .keys()
        .filter(|k| !d.report.pods.contains_key(*k))
        .collect();
    extra.sort();
    if !extra.is_empty() {
        let _ = writeln!(
            o,
            "  (proxy logs of pods not in the dump, not judged: {})",
            extra
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let affected: Vec<&str> = d.report.affected.iter().map(String::as_str).collect();
    let _ = writeln!(
        o,
        "\nAffected pods ({}): {}",
        affected.len(),
        if affected.is_empty() {
            "none".into()
        } else {
            affected.join(", ")
        }
    );
    let phase = crate::wire::phase(&d.report.phase);
    let _ = writeln!(
        o,
        "Rotation phase: {} (next step: {})",
        phase.phase, phase.next_step
    );
    if !phase.waiting.is_empty() {
        let _ = writeln!(o, "  waiting for: {}", phase.waiting.join(", "));
    }

    let plan = crate::wire::plan(&d.report.plan);
    let _ = writeln!(o, "\nPlan (computed only: nothing is restarted):");
    if plan.restarts.is_empty() {
        let _ = writeln!(o, "  restarts nothing");
    } else {
        let mut rows = vec![header(&["#", "TIER", "WORKLOAD", "METHOD", "PODS", "WHY"])];
        for (i, r) in plan.restarts.iter().enumerate() {
            rows.push(vec![
                (i + 1).to_string(),
                r.tier.clone(),
                r.workload.clone(),
                r.method.clone(),
                r.pods.join(","),
                r.reason.clone(),
            ]);
        }
        o.push_str(&indent(&columns(&rows)));
    }
    if !plan.held.is_empty() {
        let _ = writeln!(o, "  Held:");
        let rows: Vec<Vec<String>> = plan
            .held
            .iter()
            .map(|h| vec![h.target.clone(), h.reason.clone()])
            .collect();
        o.push_str(&indent(&indent(&columns(&rows))));
    }
    for b in &plan.blockers {
        let _ = writeln!(o, "  Blocked by: {b}");
    }
    let _ = writeln!(
        o,
        "  Escalate to a human: {}",
        if plan.escalate { "yes" } else { "no" }
    );

    for w in &d.what_if {
        let _ = writeln!(o, "\nWhat if: {}", w.question);
        let _ = writeln!(
            o,
            "  Answer: {}",
            if w.safe {
                "safe as far as this dump shows"
            } else {
                "NOT SAFE"
            }
        );
        for (name, subject, detail) in &w.findings {
            let _ = writeln!(o, "  - {name}({subject}): {detail}");
        }
        if !w.would_break.is_empty() {
            let _ = writeln!(
                o,
                "  Pods that would break ({}): {}",
                w.would_break.len(),
                w.would_break.join(", ")
            );
        }
        for c in &w.caveats {
            let _ = writeln!(o, "  Note: {c}");
        }
    }
    o
}

/// Pods listed one per row whatever they show, up to this many; above it only those with a
/// verdict other than UNPROBED or some evidence.
const LIST_EVERY_POD_UP_TO: usize = 50;

/// Findings of one shape (severity, verdict, detail but for the subject) are printed as one row
/// when there are more than this many: 5,000 nodes without a clock are one fact, not 5,000.
const GROUP_ABOVE: usize = 5;

fn finding_groups(findings: &[ClusterFinding]) -> Vec<Vec<&ClusterFinding>> {
    let mut groups: Vec<Vec<&ClusterFinding>> = Vec::new();
    let mut index: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for f in findings {
        if !f.pods.is_empty() || f.subject.is_empty() || !f.detail.contains(&f.subject) {
            groups.push(vec![f]);
            continue;
        }
        let key = (
            f.severity.clone(),
            f.verdict.clone(),
            f.detail.replace(&f.subject, "…"),
        );
        match index.get(&key) {
            Some(&i) => groups[i].push(f),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![f]);
            }
        }
    }
    groups
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// The diagnosis as one JSON document.
pub fn json(
    c: &Collected,
    d: &Diagnosis,
    logs: &BTreeMap<String, PodLogs>,
    log_skipped: &[Skipped],
    opts: &Options,
) -> String {
    let findings: Vec<Value> = crate::wire::findings(&d.report.findings)
        .into_iter()
        .map(|f| json!({"verdict": f.verdict, "severity": f.severity, "subject": f.subject, "detail": f.detail, "pods": f.pods}))
        .collect();
    let pods: Vec<Value> = c
        .pods
        .iter()
        .filter_map(|p| {
            let key = format!("{}/{}", p.namespace, p.name);
            let a = d.report.pods.get(&key)?;
            Some(json!({
                "namespace": p.namespace,
                "name": p.name,
                "node": p.node,
                "verdicts": a.verdicts.iter().map(|v| json!({"verdict": v.kind.name(), "reason": &*v.reason, "detail": &*v.detail})).collect::<Vec<_>>(),
                "logs": logs.get(&key).map(|l| json!({"kinds": l.kinds, "lastPeer": l.last_peer, "identityUnreachable": l.identity_unreachable, "files": l.files})),
            }))
        })
        .collect();
    let phase = crate::wire::phase(&d.report.phase);
    let plan = crate::wire::plan(&d.report.plan);
    let anchors: Vec<Value> = d
        .trust
        .bundle()
        .map(|b| {
            b.certs
                .iter()
                .map(|a| json!({"fingerprint": a.fingerprint.to_string(), "subject": a.subject, "notBefore": a.not_before.to_rfc3339(), "notAfter": a.not_after.to_rfc3339(), "issuerChainsToIt": d.issuer_anchors.contains(&a.fingerprint)}))
                .collect()
        })
        .unwrap_or_default();
    let doc = json!({
        "now": opts.now.to_rfc3339(),
        "read": c.kinds,
        "caveats": caveats(c, d, logs, log_skipped, opts),
        "skipped": c.skipped.iter().chain(log_skipped).map(|s| json!({"origin": s.origin, "why": s.why})).collect::<Vec<_>>(),
        "ignoredPrivateKeys": c.ignored_keys,
        "bundle": {"source": c.sources().bundle_source(), "anchors": anchors, "problem": d.trust.bundle_problem()},
        "issuerProblem": match &d.trust.issuer {
            crate::trust::IssuerState::Unavailable(why) => Some(why.clone()),
            _ => None,
        },
        "issuer": d.trust.issuer_cert().map(|i| json!({"subject": i.subject, "fingerprint": i.fingerprint.to_string(), "notAfter": i.not_after.to_rfc3339()})),
        "nodes": d.nodes.iter().map(|(n, given)| json!({"name": n, "clockGiven": given})).collect::<Vec<_>>(),
        "pods": pods,
        "findings": findings,
        "affected": d.report.affected,
        "rotationPhase": {"phase": phase.phase, "nextStep": phase.next_step, "waiting": phase.waiting},
        "plan": {
            "restarts": plan.restarts.iter().map(|r| json!({"workload": r.workload, "method": r.method, "tier": r.tier, "pods": r.pods, "reason": r.reason})).collect::<Vec<_>>(),
            "held": plan.held.iter().map(|h| json!({"target": h.target, "reason": h.reason})).collect::<Vec<_>>(),
            "blockers": plan.blockers,
            "escalate": plan.escalate,
        },
        "whatIf": d.what_if.iter().map(|w| json!({
            "question": w.question, "safe": w.safe,
            "findings": w.findings.iter().map(|(n, s, t)| json!({"verdict": n, "subject": s, "detail": t})).collect::<Vec<_>>(),
            "wouldBreak": w.would_break, "caveats": w.caveats,
        })).collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}
