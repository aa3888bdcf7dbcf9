//! Reading case files and checking the references inside each case.

use super::pem::placeholders;
use super::spec::{
    AnchorsSpec, Bundle, Case, CertSpec, LeafSpec, RESOURCE_SUBJECTS, SecretScheme, VerdictExpr,
    WorkloadRef,
};
use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Environment variable naming extra case folders, colon-separated.
pub const EXTRA_CASES_ENV: &str = "ANCHORWATCH_EXTRA_CASES";

/// The shared case folder (`shared/cases` next to the workspace).
pub fn shared_dir() -> PathBuf {
    crate::pki::shared_dir().join("cases")
}

/// The shared case folder, then each folder of `ANCHORWATCH_EXTRA_CASES`.
pub fn dirs_from_env() -> Vec<PathBuf> {
    let extra = std::env::var_os(EXTRA_CASES_ENV).unwrap_or_default();
    let mut dirs = vec![shared_dir()];
    dirs.extend(parse_extra_dirs(&extra));
    dirs
}

/// The folders of a colon-separated list; empty entries are skipped.
pub fn parse_extra_dirs(value: &OsStr) -> Vec<PathBuf> {
    std::env::split_paths(value)
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

/// Every case of every `*.yaml` file in these folders, each folder as [`load_dir`] reads it;
/// ids must be unique across all of them. A folder listed twice is read once.
pub fn load_dirs(dirs: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, Vec<Case>)>> {
    let mut seen_dirs = BTreeSet::new();
    let mut out = Vec::new();
    for dir in dirs {
        let canonical = dir
            .canonicalize()
            .with_context(|| format!("case folder {}", dir.display()))?;
        if seen_dirs.insert(canonical) {
            out.extend(load_dir(dir)?);
        }
    }
    check_unique_ids(&out)?;
    Ok(out)
}

/// Every `*.yaml` file of `dir` (not recursive), sorted by name, with its cases. Other files
/// (`FORMAT.md`, `log-lines.md`) are not cases. Ids must be unique within the folder.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Vec<Case>)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read case folder {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read case folder {}", dir.display()))?
            .path();
        if path.extension() == Some(OsStr::new("yaml")) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let cases = load_file(&path)?;
        out.push((path, cases));
    }
    check_unique_ids(&out)?;
    Ok(out)
}

/// The cases of one file, one per YAML document, `step` counting from 1.
pub fn load_file(path: &Path) -> anyhow::Result<Vec<Case>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read case file {}", path.display()))?;
    load_str(&text, path)
}

/// The cases of a file's text; `path` is recorded in each case and used in messages.
/// Empty documents (only comments) are skipped.
pub fn load_str(text: &str, path: &Path) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    let docs = serde_yaml::Deserializer::from_str(text);
    for (index, doc) in docs.enumerate() {
        let document = index + 1;
        let value = serde_yaml::Value::deserialize(doc)
            .with_context(|| format!("{}: document {document}", path.display()))?;
        if value.is_null() {
            continue;
        }
        // Read again from the text, not from `value`, so errors carry the field path and line.
        let doc = serde_yaml::Deserializer::from_str(text)
            .nth(index)
            .context("document vanished on the second read")?;
        let mut case = Case::deserialize(doc)
            .with_context(|| format!("{}: document {document}", path.display()))?;
        case.file = path.to_path_buf();
        case.step = cases.len() + 1;
        validate(&case)
            .with_context(|| format!("{}: document {document} (id {})", path.display(), case.id))?;
        cases.push(case);
    }
    let mut ids = BTreeSet::new();
    for c in &cases {
        if !ids.insert(&c.id) {
            bail!("{}: id `{}` is used twice", path.display(), c.id);
        }
    }
    Ok(cases)
}

fn check_unique_ids(files: &[(PathBuf, Vec<Case>)]) -> anyhow::Result<()> {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for (path, cases) in files {
        for c in cases {
            if let Some(other) = seen.insert(&c.id, path) {
                bail!(
                    "case id `{}` is used in {} and {}",
                    c.id,
                    other.display(),
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// Checks what serde cannot: every label, node, pod and subject a case names exists, and the
/// combinations FORMAT.md rules out. All problems are reported at once.
pub fn validate(case: &Case) -> anyhow::Result<()> {
    let mut errors: Vec<String> = Vec::new();
    let mut err = |e: String| errors.push(e);

    if case.id.is_empty()
        || !case
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        err(format!("id `{}` is not kebab-case", case.id));
    }

    let certs = &case.certs;
    let generated = |label: &str| matches!(certs.get(label), Some(CertSpec::Generated(_)));
    let check_labels = |field: &str, labels: &[String], err: &mut dyn FnMut(String)| {
        for l in labels {
            if !certs.contains_key(l) {
                err(format!("{field}: unknown certificate label `{l}`"));
            }
        }
    };
    let check_raw = |field: &str, text: &str, err: &mut dyn FnMut(String)| match placeholders(text)
    {
        Err(e) => err(format!("{field}: {e}")),
        Ok(labels) => {
            for l in labels {
                if !generated(l) {
                    err(format!(
                        "{field}: `{{{{{l}}}}}` names no generated certificate"
                    ));
                }
            }
        }
    };

    // Certificates: signers exist, can sign and form no cycle; one algorithm per key label.
    let mut key_algs = BTreeMap::new();
    for (label, spec) in certs {
        let field = format!("certs.{label}");
        match spec {
            CertSpec::Raw(text) => check_raw(&format!("{field}.raw"), text, &mut err),
            CertSpec::Generated(g) => {
                if let Some(s) = &g.signed_by {
                    match certs.get(s) {
                        None => err(format!(
                            "{field}.signed_by: unknown certificate label `{s}`"
                        )),
                        Some(CertSpec::Raw(_)) => err(format!(
                            "{field}.signed_by: `{s}` is literal PEM and has no key to sign with"
                        )),
                        Some(CertSpec::Generated(_)) => {}
                    }
                }
                let key = g.key_label(label);
                match key_algs.get(&key) {
                    Some((alg, other)) if *alg != g.alg => err(format!(
                        "{field}.alg: key `{key}` is {} here but {alg} in certs.{other}",
                        g.alg
                    )),
                    _ => {
                        key_algs.insert(key, (g.alg, label.clone()));
                    }
                }
            }
        }
    }
    for label in certs.keys() {
        let mut chain = vec![label.as_str()];
        let mut current = label.as_str();
        while let Some(CertSpec::Generated(g)) = certs.get(current) {
            let Some(next) = g.signed_by.as_deref() else {
                break;
            };
            if chain.contains(&next) {
                err(format!(
                    "certs.{label}: signing cycle {} -> {next}",
                    chain.join(" -> ")
                ));
                break;
            }
            chain.push(next);
            current = next;
        }
    }

    let c = &case.cluster;
    match &c.trust_roots {
        Some(Bundle::Labels(l)) => check_labels("cluster.trust_roots", l, &mut err),
        Some(Bundle::Raw(text)) => check_raw("cluster.trust_roots_raw", text, &mut err),
        None => {}
    }
    if let Some(l) = &c.trust_roots_before {
        check_labels("cluster.trust_roots_before", l, &mut err);
        if c.trust_roots_changed.is_none() {
            err("cluster.trust_roots_before needs cluster.trust_roots_changed".to_string());
        }
    }
    if let Some(l) = &c.linkerd_config_anchors {
        check_labels("cluster.linkerd_config_anchors", l, &mut err);
    }
    if let Some(s) = &c.issuer_secret {
        if s.crt.is_empty() {
            err("cluster.issuer_secret.crt is empty".to_string());
        }
        check_labels("cluster.issuer_secret.crt", &s.crt, &mut err);
        if let Some(ca) = &s.ca {
            if s.scheme != SecretScheme::KubernetesTls {
                err(format!(
                    "cluster.issuer_secret.ca: a {} Secret has no ca.crt",
                    s.scheme.name()
                ));
            }
            check_labels("cluster.issuer_secret.ca", ca, &mut err);
        }
    }
    if let Some(id) = &c.identity {
        check_labels(
            "cluster.identity.issuer",
            std::slice::from_ref(&id.issuer),
            &mut err,
        );
        check_labels("cluster.identity.anchors", &id.anchors, &mut err);
        if !c.nodes.contains_key(&id.node) {
            err(format!("cluster.identity.node: unknown node `{}`", id.node));
        }
    }

    let mut pod_names = BTreeSet::new();
    for (i, p) in c.pods.iter().enumerate() {
        let full = p.full_name();
        let field = format!("cluster.pods[{i}] ({full})");
        if !pod_names.insert(full.clone()) {
            err(format!("{field}: pod listed twice"));
        }
        match c.nodes.get(&p.node) {
            None => err(format!("{field}.node: unknown node `{}`", p.node)),
            Some(n) => {
                if let (Some(pr), Some(nr)) = (&p.remote, &n.remote)
                    && pr != nr
                {
                    err(format!(
                        "{field}.remote: `{pr}` but node {} belongs to `{nr}`",
                        p.node
                    ));
                }
            }
        }
        match &p.anchors {
            AnchorsSpec::Labels(l) => check_labels(&format!("{field}.anchors"), l, &mut err),
            AnchorsSpec::Raw(text) => check_raw(&format!("{field}.anchors_raw"), text, &mut err),
            AnchorsSpec::ConfigMap => {}
        }
        match &p.leaf {
            Some(LeafSpec::Issued(l)) if !generated(&l.signed_by) => err(format!(
                "{field}.leaf.signed_by: `{}` is not a generated certificate",
                l.signed_by
            )),
            Some(LeafSpec::Raw(text)) => check_raw(&format!("{field}.leaf.raw"), text, &mut err),
            Some(LeafSpec::Issued(_)) | None => {}
        }
    }

    let e = &case.expect;
    let check_subject = |field: &str, v: &VerdictExpr, err: &mut dyn FnMut(String)| {
        if let Some(s) = &v.subject
            && !c.nodes.contains_key(s)
            && !pod_names.contains(s)
            && !RESOURCE_SUBJECTS.contains(&s.as_str())
        {
            err(format!(
                "{field}: `{v}` names `{s}`, which is no node, pod or {}",
                RESOURCE_SUBJECTS.join(", ")
            ));
        }
    };
    for v in &e.verdicts {
        check_subject("expect.verdicts", v, &mut err);
    }
    for v in &e.must_not {
        check_subject("expect.must_not", v, &mut err);
    }
    for a in &e.affected {
        if !pod_names.contains(a) {
            err(format!("expect.affected: unknown pod `{a}`"));
        }
    }
    let workload_exists = |w: &WorkloadRef| {
        c.pods.iter().any(|p| {
            p.namespace == w.namespace
                && match &p.owner {
                    Some(o) => o.kind == w.kind && o.name == w.name,
                    None => w.kind == "Pod" && p.name == w.name,
                }
        })
    };
    for (field, list) in [("expect.restart", &e.restart), ("expect.held", &e.held)] {
        for w in list {
            if !workload_exists(w) {
                err(format!("{field}: no pod belongs to `{w}`"));
            }
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}
