//! The Prometheus text exposition format (0.0.4) as the agent and the aggregator write it. Pure
//! string building, shared by both binaries' `/metrics` (STYLE: shared pure logic lives in a
//! small crate with no kube, tonic or tokio inside).

use std::fmt::Write as _;

/// A label value escaped for the text format (backslash, double quote, newline).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_families_declared() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut out = String::new();
        family(&mut out, "x_total", "counter", "Things.");
        assert_eq!(out, "# HELP x_total Things.\n# TYPE x_total counter\n");
    }
}
