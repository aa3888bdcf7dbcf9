//! `anchorwatch-aggregator report clock`: the node clock-drift report of a running aggregator,
//! for people (a table, CSV, JSON) and as a picture of offsets over time (SVG). The rendering is
//! pure; `run` fetches the report over gRPC.

use anchorwatch_proto::v1 as pb;
use anchorwatch_proto::v1::query_client::QueryClient;
use chrono::{DateTime, Utc};
use std::fmt::Write as _;

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// Comma-separated, one row per node, with a header.
    Csv,
    /// The report as JSON.
    Json,
}

/// `report clock` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ClockArgs {
    /// The aggregator's gRPC address: `host:port` or `http://host:port`.
    #[arg(
        long,
        env = "ANCHORWATCH_REPORT_SERVER",
        default_value = "http://127.0.0.1:8443"
    )]
    pub server: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also draw the offsets over time per node into this SVG file.
    #[arg(long)]
    pub svg: Option<std::path::PathBuf>,
    /// Offsets per node to fetch for the picture (and the JSON).
    #[arg(long, default_value_t = 360)]
    pub history: u32,
    /// CA bundle (PEM) the aggregator's certificate chains to; needed for an `https://`
    /// server (an aggregator run with `--tls-secret`).
    #[arg(long, env = "ANCHORWATCH_REPORT_CA")]
    pub ca: Option<std::path::PathBuf>,
}

/// Fetches the report and prints it (and writes the picture).
pub async fn run(args: ClockArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let server = server_url(&args.server, args.ca.is_some())?;
    let mut endpoint = tonic::transport::Endpoint::from_shared(server.clone())
        .with_context(|| format!("--server {server}"))?;
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        endpoint = endpoint.tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        )?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the aggregator at {server}"))?;
    let mut client = QueryClient::new(channel);
    let report = client
        .clock_report(pb::ClockReportRequest {
            history: args.history,
        })
        .await
        .map_err(|s| anyhow::anyhow!("ClockReport failed: {}", s.message()))?
        .into_inner();
    let text = match args.format {
        Format::Table => table(&report),
        Format::Csv => csv(&report),
        Format::Json => serde_json::to_string_pretty(&json(&report))? + "\n",
    };
    print!("{text}");
    if let Some(path) = &args.svg {
        std::fs::write(path, svg(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The gRPC URL for `--server`. A bare `host:port` is `https://` when a CA bundle is given
/// (`tls`), else `http://`; `https://` without a CA bundle is refused rather than left to fail
/// obscurely, and `http://` with one is refused rather than sent in plaintext.
pub fn server_url(server: &str, tls: bool) -> anyhow::Result<String> {
    let server = server.trim();
    let (scheme, rest) = match server.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => (if tls { "https" } else { "http" }, server),
    };
    if rest.is_empty() {
        anyhow::bail!(
            "--server {server:?}: expected host:port, http://host:port or https://host:port"
        );
    }
    match (scheme, tls) {
        ("https", true) | ("http", false) => Ok(format!("{scheme}://{rest}")),
        ("https", false) => anyhow::bail!(
            "--server {server}: TLS needs --ca, the CA bundle the aggregator's certificate chains to"
        ),
        ("http", true) => anyhow::bail!(
            "--server {server}: --ca is given but the address is plaintext; use https://{rest}"
        ),
        _ => anyhow::bail!("--server {server}: unknown scheme {scheme:?}"),
    }
}

fn time(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(crate::time::from_proto)
}

fn ms(s: f64) -> String {
    signed(s * 1000.0, 3)
}

/// `v` with its sign and `places` decimals; what rounds to zero is `+0.00`, never `-0.00`.
fn signed(v: f64, places: usize) -> String {
    let text = format!("{v:+.places$}");
    if text.starts_with('-') && text[1..].chars().all(|c| c == '0' || c == '.') {
        format!("+{}", &text[1..])
    } else {
        text
    }
}

fn forecast(at: &Option<prost_types::Timestamp>, beyond: bool) -> String {
    if beyond {
        return "now".into();
    }
    match time(at) {
        Some(t) => t.format("%Y-%m-%d %H:%M").to_string(),
        None => "-".into(),
    }
}

fn kernel(k: &Option<pb::KernelClock>) -> &'static str {
    match k {
        Some(k) if !k.error.is_empty() => "unknown",
        Some(k) if k.synchronised => "synced",
        Some(_) => "unsynced",
        None => "-",
    }
}

/// Cells of one row: node, level, reference, offset ± bound (ms), to identity (ms), drift (ppm),
/// kernel, warn at, critical at, last sample (UTC), problem.
fn cells(r: &pb::NodeClockRow) -> [String; 11] {
    [
        r.node.clone(),
        r.level.clone(),
        if r.reference.is_empty() {
            "-".into()
        } else {
            r.reference.clone()
        },
        r.offset_seconds
            .map(|o| format!("{} ± {:.3}", ms(o), r.bound_seconds * 1000.0))
            .unwrap_or_else(|| "-".into()),
        r.offset_to_identity_seconds
            .map(|o| format!("{} ± {:.3}", ms(o), r.bound_to_identity_seconds * 1000.0))
            .unwrap_or_else(|| "-".into()),
        r.drift_ppm
            .map(|d| format!("{} ± {:.2}", signed(d, 2), r.drift_ppm_uncertainty))
            .unwrap_or_else(|| "-".into()),
        kernel(&r.kernel).into(),
        forecast(&r.warn_at, r.beyond_warn),
        forecast(&r.critical_at, r.beyond_critical),
        time(&r.last_sample_at)
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into()),
        r.problem.clone(),
    ]
}

const HEADER: [&str; 11] = [
    "NODE",
    "LEVEL",
    "REFERENCE",
    "OFFSET ms",
    "TO IDENTITY ms",
    "DRIFT ppm",
    "KERNEL",
    "WARN AT",
    "CRITICAL AT",
    "LAST SAMPLE UTC",
    "PROBLEM",
];

/// The report as aligned columns, with a heading saying what the reference is.
pub fn table(r: &pb::ClockReportResponse) -> String {
    let mut out = String::new();
    let reference = if r.reference == "ntp" {
        "NTP servers (true time)".to_string()
    } else if r.reference == "mixed" {
        "NTP servers for some nodes and the aggregator's clock for others (see each node's reference)"
            .to_string()
    } else {
        "the aggregator's clock (relative skew only: no NTP server is configured)".to_string()
    };
    let _ = writeln!(
        out,
        "Node clocks against {reference}; warn above {} ms, critical above {} s (identity's clock-skew allowance){}",
        r.warn_seconds * 1000.0,
        r.critical_seconds,
        if r.identity_node.is_empty() {
            String::new()
        } else {
            format!("; linkerd-identity runs on {}", r.identity_node)
        }
    );
    let rows: Vec<[String; 11]> = r.nodes.iter().map(cells).collect();
    let mut width = HEADER.map(str::len);
    for row in &rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut l = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == cols.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = width[i]);
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&HEADER.map(String::from)));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// CSV with plain numbers (seconds to the nanosecond, ppm to 0.001, RFC 3339 times).
pub fn csv(r: &pb::ClockReportResponse) -> String {
    let mut out = String::from(
        "node,level,reference,offset_seconds,bound_seconds,offset_to_identity_seconds,bound_to_identity_seconds,drift_ppm,drift_ppm_uncertainty,kernel,warn_at,critical_at,last_sample_at,problem\n",
    );
    let secs = |v: f64| trim_zeros(format!("{v:.9}"));
    let num = |v: Option<f64>| v.map(secs).unwrap_or_default();
    let ppm = |v: f64| trim_zeros(format!("{v:.3}"));
    let ts =
        |t: &Option<prost_types::Timestamp>| time(t).map(|t| t.to_rfc3339()).unwrap_or_default();
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    for n in &r.nodes {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            quote(&n.node),
            n.level,
            quote(&n.reference),
            num(n.offset_seconds),
            secs(n.bound_seconds),
            num(n.offset_to_identity_seconds),
            secs(n.bound_to_identity_seconds),
            n.drift_ppm.map(ppm).unwrap_or_default(),
            ppm(n.drift_ppm_uncertainty),
            kernel(&n.kernel),
            if n.beyond_warn {
                "now".into()
            } else {
                ts(&n.warn_at)
            },
            if n.beyond_critical {
                "now".into()
            } else {
                ts(&n.critical_at)
            },
            ts(&n.last_sample_at),
            quote(&n.problem),
        );
    }
    out
}

/// `1.500000000` → `1.5`, `3.000` → `3`, `-0.000` → `0`.
fn trim_zeros(s: String) -> String {
    let t = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if t == "-0" { "0".into() } else { t.into() }
}

/// The report as JSON.
pub fn json(r: &pb::ClockReportResponse) -> serde_json::Value {
    let ts = |t: &Option<prost_types::Timestamp>| time(t).map(|t| t.to_rfc3339());
    serde_json::json!({
        "at": ts(&r.at),
        "reference": r.reference,
        "warn_seconds": r.warn_seconds,
        "critical_seconds": r.critical_seconds,
        "identity_node": r.identity_node,
        "nodes": r.nodes.iter().map(|n| serde_json::json!({
            "node": n.node,
            "level": n.level,
            "reference": n.reference,
            "offset_seconds": n.offset_seconds,
            "bound_seconds": n.bound_seconds,
            "offset_to_identity_seconds": n.offset_to_identity_seconds,
            "bound_to_identity_seconds": n.bound_to_identity_seconds,
            "drift_ppm": n.drift_ppm,
            "drift_ppm_uncertainty": n.drift_ppm_uncertainty,
            "kernel": n.kernel.as_ref().map(|k| serde_json::json!({
                "synchronised": k.synchronised,
                "max_error_seconds": k.max_error_seconds,
                "est_error_seconds": k.est_error_seconds,
                "frequency_ppm": k.frequency_ppm,
                "error": k.error,
            })),
            "warn_at": if n.beyond_warn { Some("now".to_string()) } else { ts(&n.warn_at) },
            "critical_at": if n.beyond_critical { Some("now".to_string()) } else { ts(&n.critical_at) },
            "last_sample_at": ts(&n.last_sample_at),
            "problem": n.problem,
            "history": n.history.iter().map(|p| serde_json::json!({
                "at": ts(&p.at),
                "offset_seconds": p.offset_seconds,
                "bound_seconds": p.bound_seconds,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#9467bd", "#2ca02c", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
];

/// Nodes drawn in the picture, worst first; the rest are counted in the legend.
const MAX_DRAWN: usize = 16;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A node name short enough for the legend: long cloud names keep their start and end.
fn short(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= 22 {
        return name.to_string();
    }
    let head: String = chars[..10].iter().collect();
    let tail: String = chars[chars.len() - 10..].iter().collect();
    format!("{head}…{tail}")
}

/// The colour a level is written in.
fn level_colour(level: &str) -> &'static str {
    match level {
        "ok" => "#2ca02c",
        "warn" => "#ff7f0e",
        "critical" => "#d62728",
        _ => "#7f7f7f",
    }
}

/// Worst first: critical, warn, stale, unmeasured, ok; then the larger |offset|.
fn severity(n: &pb::NodeClockRow) -> (u8, f64) {
    let rank = match n.level.as_str() {
        "critical" => 0,
        "warn" => 1,
        "stale" => 2,
        "ok" => 4,
        _ => 3,
    };
    (rank, -n.offset_seconds.unwrap_or(0.0).abs())
}

/// The y axis unit for offsets up to `y_max` seconds: its name and its size in seconds.
fn axis_unit(y_max: f64) -> (&'static str, f64) {
    if y_max < 1.0 {
        ("ms", 1e-3)
    } else if y_max < 3.0 * 86_400.0 {
        ("s", 1.0)
    } else {
        ("days", 86_400.0)
    }
}

/// A tick label: short enough for the margin whatever the magnitude.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e5 {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim_zeros(format!("{v:.2}"))
    } else {
        trim_zeros(format!("{v:.3}"))
    }
}

/// Offsets over time, one line per node (the worst [`MAX_DRAWN`]), its error bound as a band, the
/// warn and critical thresholds as dashed lines; the legend gives each node's level in the
/// level's colour.
pub fn svg(r: &pb::ClockReportResponse) -> String {
    let (w, h, left, right, top, bottom) = (960.0, 480.0, 80.0, 220.0, 40.0, 50.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let mut nodes: Vec<&pb::NodeClockRow> = r.nodes.iter().collect();
    nodes.sort_by(|a, b| {
        let (ra, oa) = severity(a);
        let (rb, ob) = severity(b);
        ra.cmp(&rb)
            .then(oa.total_cmp(&ob))
            .then(a.node.cmp(&b.node))
    });
    let drawn = &nodes[..nodes.len().min(MAX_DRAWN)];
    let points: Vec<(DateTime<Utc>, f64, f64)> = drawn
        .iter()
        .flat_map(|n| n.history.iter())
        .filter_map(|p| Some((time(&p.at)?, p.offset_seconds, p.bound_seconds)))
        .filter(|p| p.1.is_finite() && p.2.is_finite())
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let to = if r.reference == "ntp" {
        "NTP (true time)"
    } else if r.reference == "mixed" {
        "NTP or the aggregator"
    } else {
        "the aggregator"
    };
    if points.is_empty() {
        let _ = writeln!(
            out,
            r#"<text x="{left}" y="24" font-size="15">Node clock offset to {to}</text><text x="{}" y="{}">no clock measurements yet</text></svg>"#,
            left + 20.0,
            top + plot_h / 2.0
        );
        return out;
    }
    let t0 = points.iter().map(|p| p.0).min().unwrap_or_default();
    let t1 = points.iter().map(|p| p.0).max().unwrap_or_default();
    let span = (t1 - t0).as_seconds_f64().max(1.0);
    let peak = points
        .iter()
        .map(|p| p.1.abs() + p.2)
        .fold(r.warn_seconds, f64::max)
        .max(1e-3);
    let y_max = if peak > r.critical_seconds {
        peak * 1.1
    } else {
        peak.max(r.warn_seconds) * 1.2
    };
    let (unit, unit_s) = axis_unit(y_max);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="24" font-size="15">Node clock offset to {to} ({unit})</text>"#
    );
    let x = |t: DateTime<Utc>| left + (t - t0).as_seconds_f64() / span * plot_w;
    let y = |v: f64| top + plot_h / 2.0 - (v / y_max).clamp(-1.05, 1.05) * plot_h / 2.0;
    // Axes, zero line, ticks.
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>"##
    );
    for i in -2..=2 {
        let v = y_max * i as f64 / 2.0;
        let _ = writeln!(
            out,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            y(v) + 4.0,
            tick(v / unit_s),
            yy = y(v)
        );
    }
    // A threshold too close to the other on this scale is drawn without its label.
    let crowded = (y(r.warn_seconds) - y(r.critical_seconds)).abs() < 14.0;
    for (level, v) in [("warn", r.warn_seconds), ("critical", r.critical_seconds)] {
        if v < y_max && !(crowded && level == "warn") {
            let colour = level_colour(level);
            for (s, dy) in [(v, -4.0), (-v, 14.0)] {
                let _ = writeln!(
                    out,
                    r#"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{colour}" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" fill="{colour}" font-size="11">{level} {}{}</text>"#,
                    left + plot_w,
                    left + 4.0,
                    y(s) + dy,
                    if s < 0.0 { "−" } else { "+" },
                    tick(v / unit_s),
                    yy = y(s)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
        h - 20.0,
        t0.format("%Y-%m-%d %H:%M:%S UTC"),
        left + plot_w,
        h - 20.0,
        t1.format("%H:%M:%S UTC")
    );
    // One band and line per drawn node, and its legend entry.
    let legend_x = w - right + 16.0;
    for (i, n) in drawn.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<(f64, f64, f64)> = n
            .history
            .iter()
            .filter_map(|p| {
                let t = time(&p.at)?;
                Some((x(t), p.offset_seconds, p.bound_seconds))
            })
            .filter(|p| p.1.is_finite() && p.2.is_finite())
            .collect();
        if !pts.is_empty() {
            let upper: Vec<String> = pts
                .iter()
                .map(|(px, o, b)| format!("{px:.1},{:.1}", y(o + b)))
                .collect();
            let lower: Vec<String> = pts
                .iter()
                .rev()
                .map(|(px, o, b)| format!("{px:.1},{:.1}", y(o - b)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polygon points="{} {}" fill="{colour}" fill-opacity="0.15" stroke="none"/>"#,
                upper.join(" "),
                lower.join(" ")
            );
            let line: Vec<String> = pts
                .iter()
                .map(|(px, o, _)| format!("{px:.1},{:.1}", y(*o)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#,
                line.join(" ")
            );
            // The newest point, visible even when it is the only one.
            if let Some((px, o, _)) = pts.last() {
                let _ = writeln!(
                    out,
                    r#"<circle cx="{px:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                    y(*o)
                );
            }
        }
        let ly = top + 12.0 + 22.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{legend_x}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{ly}">{} <tspan fill="{}" font-weight="bold">{}</tspan></text>"#,
            ly - 10.0,
            legend_x + 18.0,
            escape(&short(&n.node)),
            level_colour(&n.level),
            escape(&n.level)
        );
    }
    if nodes.len() > drawn.len() {
        let _ = writeln!(
            out,
            r##"<text x="{legend_x}" y="{}" fill="#555">+{} more (see the table)</text>"##,
            top + 12.0 + 22.0 * drawn.len() as f64,
            nodes.len() - drawn.len()
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests;
