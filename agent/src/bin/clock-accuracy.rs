//! Bench: how close the agent's clock measurement is to the truth, over loopback. A real
//! `chronyd` serves NTP from a clock shifted by libfaketime (the injected offset); the agent's
//! burst code measures it again and again. Reports the distribution of |measured − injected| and
//! of the bounds, counts bound violations, and runs `sntp` (ntpsec's ntpdig) and a second
//! `chronyd` (as a client, `-x`) against the same server for comparison. Needs root (port 123), chronyd, libfaketime and sntp (.ci/setup).
//!
//! Full size, by hand:  cargo build --release -p anchorwatch-agent --bin clock-accuracy &&
//!                      target/release/clock-accuracy --samples 500
//! CI runs it small.

use anchorwatch_agent::clock::burst;
use anyhow::Context;
use clap::Parser;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// Measurements (each a burst of 8 exchanges, the lowest-delay one kept).
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// The NTP server's clock shift, whole seconds (libfaketime), e.g. 2 or -3.
    #[arg(long, default_value_t = 2, allow_hyphen_values = true)]
    shift: i64,
    /// Loopback address the server listens on (port 123, so that sntp can query it).
    #[arg(long, default_value = "127.0.60.1")]
    ip: String,
    /// sntp queries to compare with (sntp asks port 123 only).
    #[arg(long, default_value_t = 5)]
    sntp: usize,
    /// The server's UDP port (123 needs root; sntp needs 123).
    #[arg(long, default_value_t = 123)]
    port: u16,
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn faketime_lib() -> anyhow::Result<&'static str> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .context("libfaketime is not installed (bash .ci/setup installs it)")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "local stratum 10\nallow 127.0.0.0/8\nbindaddress {ip}\nport {port}\ncmdport 0\n\
             driftfile {d}/drift\npidfile {d}/pid\nlogdir {d}\n",
            ip = args.ip,
            port = args.port,
            d = dir.path().display()
        ),
    )?;
    let shift = format!("{:+}", args.shift);
    let _server = Stop(
        Command::new("chronyd")
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(&conf)
            .env("LD_PRELOAD", faketime_lib()?)
            .env("FAKETIME", format!("{shift}s"))
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chronyd")?,
    );
    let server = format!("{}:{}", args.ip, args.port);
    let timeout = Duration::from_millis(500);
    // Wait (bounded) until the server answers.
    let mut ready = false;
    for _ in 0..50 {
        if burst(&server, 123, 1, timeout, true).await.best.is_some() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::ensure!(ready, "chronyd on {server} never answered");

    // The client (this process) is on true time; the server is `shift` ahead: the node's
    // offset to the server is −shift.
    let injected = -(args.shift as f64);
    let mut errors = Vec::with_capacity(args.samples);
    let mut bounds = Vec::with_capacity(args.samples);
    let mut violations = 0usize;
    let mut failed = 0usize;
    for _ in 0..args.samples {
        let b = burst(&server, 123, 8, timeout, true).await;
        match b.best {
            Some(s) => {
                let e = (s.offset_s - injected).abs();
                if e > s.bound_s {
                    violations += 1;
                }
                errors.push(e);
                bounds.push(s.bound_s);
            }
            None => failed += 1,
        }
    }
    errors.sort_by(f64::total_cmp);
    bounds.sort_by(f64::total_cmp);
    let us = |v: f64| v * 1e6;
    println!(
        "clock accuracy over loopback: chronyd shifted {shift} s (libfaketime), {} measurements of 8 exchanges",
        args.samples
    );
    println!(
        "  |measured - injected|: median {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us",
        us(percentile(&errors, 0.5)),
        us(percentile(&errors, 0.9)),
        us(percentile(&errors, 0.99)),
        us(percentile(&errors, 1.0))
    );
    println!(
        "  bound: median {:.1} us, p90 {:.1} us, max {:.1} us",
        us(percentile(&bounds, 0.5)),
        us(percentile(&bounds, 0.9)),
        us(percentile(&bounds, 1.0))
    );
    println!(
        "  bound violated: {violations} of {}; failed bursts: {failed}",
        errors.len()
    );

    // sntp against the same server: its offset is the server's clock minus ours (θ).
    let mut theirs = vec![];
    for _ in 0..args.sntp {
        let out = Command::new("sntp")
            .args(["-t", "2", &args.ip])
            .output()
            .context("cannot run sntp")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // e.g. "2026-12-03 18:00:00.123456 (+0000) +2.000012 +/- 0.000123 127.0.60.1 s10 no-leap"
        let words: Vec<&str> = text.split_whitespace().collect();
        let parsed = words.iter().position(|w| *w == "+/-").and_then(|i| {
            let theta: f64 = words.get(i.checked_sub(1)?)?.parse().ok()?;
            let bound: f64 = words.get(i + 1)?.parse().ok()?;
            Some((-theta, bound))
        });
        match parsed {
            Some(x) => theirs.push(x),
            None => println!("  sntp said: {}", text.trim()),
        }
    }
    for (o, b) in &theirs {
        println!(
            "  sntp: offset {:+.6} s ± {:.6} s (error {:.1} us)",
            o,
            b,
            us((o - injected).abs())
        );
    }
    // chronyd's own view: a second chronyd (-x) as a client of the same server logs how far off
    // it finds this machine's clock ("System clock wrong by X seconds", X = server − client).
    let client_conf = dir.path().join("client.conf");
    std::fs::write(
        &client_conf,
        format!(
            "server {ip} port {port} iburst minpoll -2 maxpoll -2\nport 0\ncmdport 0\n\
             driftfile {d}/cdrift\npidfile {d}/cpid\n",
            ip = args.ip,
            port = args.port,
            d = dir.path().display()
        ),
    )?;
    let log = dir.path().join("client.log");
    let _client = Stop(
        Command::new("chronyd")
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(&client_conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start the client chronyd")?,
    );
    let mut chrony_view = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("System clock wrong by ").nth(1) {
            chrony_view = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok());
            break;
        }
    }
    match chrony_view {
        Some(x) => println!(
            "  chronyd as a client of the same server: offset {:+.6} s (error {:.1} us)",
            -x,
            us((-x - injected).abs())
        ),
        None => println!("  chronyd as a client of the same server: no estimate within 20 s"),
    }
    anyhow::ensure!(violations == 0, "the bound was violated {violations} times");
    anyhow::ensure!(failed * 10 <= args.samples, "{failed} bursts failed");
    Ok(())
}
