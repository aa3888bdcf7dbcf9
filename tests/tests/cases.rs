//! Every incident case of `shared/cases/` (and of the folders in `ANCHORWATCH_EXTRA_CASES`) runs
//! through the real analysis and planner; each public case file is a named test.

use anchorwatch_tests::cases::{self, run};
use std::collections::BTreeMap;
use std::path::Path;

/// Case ids listed in `tests/cases/disputed.txt`, with the reason.
fn disputed() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/disputed.txt"))
            .unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once('#') {
            Some((id, why)) => (id.trim().to_string(), why.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// Runs every step of one case file; panics with every mismatch of every undisputed step.
fn run_file(path: &Path) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let disputed = disputed();
    let steps = cases::load_file(path).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!steps.is_empty(), "{} holds no case", path.display());
    let mut failed = Vec::new();
    for case in &steps {
        let m = cases::materialise(case).unwrap_or_else(|e| panic!("{e:#}"));
        let (report, failures) = run::run(&m);
        if failures.is_empty() {
            continue;
        }
        let text = format!(
            "case {} (step {}):\n- {}\nreport:\n{}",
            m.id,
            m.step,
            failures.join("\n- "),
            run::describe(&report)
        );
        match disputed.get(&m.id) {
            Some(why) => eprintln!("DISPUTED (not failing: {why})\n{text}"),
            None => failed.push(text),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

fn shared(file: &str) -> std::path::PathBuf {
    cases::shared_dir().join(file)
}

macro_rules! case_tests {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $name() {
                run_file(&shared($file));
            }
        )*

        /// Every public case file has its named test above.
        #[test]
        fn every_public_case_file_has_a_named_test() {
            let named: std::collections::BTreeSet<&str> = [$($file),*].into_iter().collect();
            let files = cases::load_dir(&cases::shared_dir()).unwrap();
            for (path, _) in files {
                let file = path.file_name().unwrap().to_str().unwrap().to_string();
                assert!(named.contains(file.as_str()), "case file {file} has no named test in tests/tests/cases.rs");
            }
        }
    };
}

case_tests! {
    p01_name_mismatch => "p01-name-mismatch.yaml",
    p02_corrupt_bundle_block => "p02-corrupt-bundle-block.yaml",
    p03_bare_pod_stale => "p03-bare-pod-stale.yaml",
    r01_stale_bundle_after_reinstall => "r01-stale-bundle-after-reinstall.yaml",
    r02_old_anchor_removed_too_early => "r02-old-anchor-removed-too-early.yaml",
    r03_leaf_outlives_short_lived_issuer => "r03-leaf-outlives-short-lived-issuer.yaml",
    r05_anchor_rotated_without_overlap => "r05-anchor-rotated-without-overlap.yaml",
    r07_vm_clock_behind => "r07-vm-clock-behind.yaml",
    r08_identity_node_ntp_disabled => "r08-identity-node-ntp-disabled.yaml",
    r10_p521_issuer => "r10-p521-issuer.yaml",
    r12_check_false_positive_trust_bundle => "r12-check-false-positive-trust-bundle.yaml",
    r13_viz_stale_after_anchor_upgrade => "r13-viz-stale-after-anchor-upgrade.yaml",
    r14_trust_manager_rotation => "r14-trust-manager-rotation.yaml",
    r17_cold_boot_after_issuer_expiry => "r17-cold-boot-after-issuer-expiry.yaml",
    r18_leaves_expired_during_identity_outage => "r18-leaves-expired-during-identity-outage.yaml",
}

/// The folders of `ANCHORWATCH_EXTRA_CASES`, every file of each.
#[test]
fn extra_case_folders() {
    // Every case runs, whatever fails before it; the failures are reported together, and the
    // cases that ran are listed (run with --no-capture to see the list on success).
    let mut failed = Vec::new();
    for dir in cases::dirs_from_env().into_iter().skip(1) {
        let files = cases::load_dir(&dir).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            !files.is_empty(),
            "ANCHORWATCH_EXTRA_CASES folder {} holds no case",
            dir.display()
        );
        for (path, _) in files {
            match std::panic::catch_unwind(|| run_file(&path)) {
                Ok(()) => println!("PASS {}", path.display()),
                Err(e) => {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    println!("FAIL {}", path.display());
                    failed.push(format!("{}:\n{why}", path.display()));
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} extra case file(s) failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

/// Runs every step of one case file through `diagnose` (the case rendered as kubectl dumps and
/// proxy log folders); a step whose expectations need what no dump holds (`dump_limits`: a
/// presented chain, the bundle's history, …) is listed with why, not run.
/// Returns the steps that ran and the steps left to the live pipeline, with why.
fn diagnose_file(path: &Path) -> (usize, Vec<String>) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let disputed = disputed();
    let steps = cases::load_file(path).unwrap_or_else(|e| panic!("{e:#}"));
    let mut ran = 0;
    let mut live_only = Vec::new();
    let mut failed = Vec::new();
    for case in &steps {
        let m = cases::materialise(case).unwrap_or_else(|e| panic!("{e:#}"));
        let (live, _) = run::run(&m);
        let limits = cases::dump::dump_limits(&m, &live);
        if !limits.is_empty() {
            live_only.push(format!("{} step {}: {}", m.id, m.step, limits.join("; ")));
            continue;
        }
        ran += 1;
        let dir = tempfile::tempdir().unwrap();
        let rendered = cases::dump::render(&m, dir.path()).unwrap();
        let report = cases::dump::diagnose_case(&m, &rendered).unwrap_or_else(|e| panic!("{e}"));
        let failures = run::check(&m, &report);
        if failures.is_empty() || disputed.contains_key(&m.id) {
            continue;
        }
        failed.push(format!(
            "case {} (step {}) through diagnose:\n- {}\nreport:\n{}",
            m.id,
            m.step,
            failures.join("\n- "),
            run::describe(&report)
        ));
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    (ran, live_only)
}

macro_rules! diagnose_case_tests {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $name() {
                let (ran, live_only) = diagnose_file(&shared($file));
                assert!(ran > 0, "no step of {} can be decided from a dump: {live_only:?}", $file);
                for step in live_only {
                    println!("left to the live pipeline: {step}");
                }
            }
        )*

        /// Every public case file with a step a dump can decide has a named diagnose test above;
        /// the others say why they need the live pipeline.
        #[test]
        fn every_case_a_dump_can_decide_runs_through_diagnose() {
            let named: std::collections::BTreeSet<&str> = [$($file),*].into_iter().collect();
            let mut unnamed = Vec::new();
            for (path, _) in cases::load_dir(&cases::shared_dir()).unwrap() {
                let file = path.file_name().unwrap().to_str().unwrap().to_string();
                if named.contains(file.as_str()) {
                    continue;
                }
                let (ran, live_only) = diagnose_file(&path);
                if ran > 0 {
                    unnamed.push(file);
                } else {
                    println!("live only: {}", live_only.join(" | "));
                }
            }
            assert!(unnamed.is_empty(), "steps a dump can decide: name these in diagnose_case_tests!: {unnamed:?}");
        }
    };
}

diagnose_case_tests! {
    diagnose_p03_bare_pod_stale => "p03-bare-pod-stale.yaml",
    diagnose_r07_vm_clock_behind => "r07-vm-clock-behind.yaml",
    diagnose_r10_p521_issuer => "r10-p521-issuer.yaml",
    diagnose_r14_trust_manager_rotation => "r14-trust-manager-rotation.yaml",
}
