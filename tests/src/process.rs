//! Starting the real anchorwatch binaries as child processes, and stopping them by process id.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Path of a workspace binary (`anchorwatch-agent`, `anchorwatch-aggregator`): next to the
/// current executable or its parent (`target/debug` or `target/debug/deps`), or in
/// `ANCHORWATCH_BIN_DIR`.
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("ANCHORWATCH_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    let exe = std::env::current_exe()?;
    if let Some(d) = exe.parent() {
        dirs.push(d.to_path_buf());
        if let Some(p) = d.parent() {
            dirs.push(p.to_path_buf());
        }
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "binary {name} not found in {dirs:?}: run `cargo build --workspace --bins` first"
            )
        })
}

/// A child process that is stopped (SIGTERM, then SIGKILL after a grace period) when dropped.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `program` with `args` and `envs`, stderr and stdout to `log_dir/<name>.log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Proc> {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL at once, as a crashed node or an OOM kill would: nothing is cleaned up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns whether it exited on SIGTERM.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if !self.is_running() {
            return true;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if !self.is_running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(3));
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests run serially).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Starts the aggregator against the API server of `kubeconfig`, gRPC on `listen`.
pub fn aggregator(
    kubeconfig: &Path,
    listen: &str,
    log_dir: &Path,
    extra: &[&str],
) -> anyhow::Result<Proc> {
    let mut args = vec!["--listen".to_string(), listen.to_string()];
    // Tests re-judge every second, so a certificate that expires under them shows up quickly;
    // a bench passes the production interval.
    if !extra.contains(&"--recheck-interval") {
        args.extend(["--recheck-interval".to_string(), "1s".to_string()]);
    }
    if !extra.contains(&"--log-level") {
        args.extend([
            "--log-level".into(),
            "info,anchorwatch_aggregator=debug".into(),
        ]);
    }
    // The clock port on the same address and number as gRPC (UDP and TCP ports are apart), so
    // tests stay on their loopback address and agents find it from the gRPC URL.
    if !extra.contains(&"--clock-listen") {
        args.extend(["--clock-listen".to_string(), listen.to_string()]);
    }
    // Agents in most tests carry no ServiceAccount token; the tests of authentication pass
    // `--agent-auth tokenreview` and give their agents tokens.
    if !extra.contains(&"--agent-auth") {
        args.extend(["--agent-auth".to_string(), "none".to_string()]);
    }
    if !extra.contains(&"--metrics-listen") {
        let ip = listen.rsplit_once(':').map_or("127.0.0.1", |(ip, _)| ip);
        args.extend(["--metrics-listen".to_string(), format!("{ip}:0")]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Proc::spawn(
        "aggregator",
        &bin("anchorwatch-aggregator")?,
        &args,
        &[("KUBECONFIG", kubeconfig.display().to_string())],
        log_dir,
    )
}

/// Starts an agent for `node`.
pub fn agent(
    kubeconfig: &Path,
    node: &str,
    aggregator_url: &str,
    log_dir: &Path,
    extra: &[&str],
) -> anyhow::Result<Proc> {
    agent_with_env(kubeconfig, node, aggregator_url, log_dir, extra, vec![])
}

/// The environment that runs a dynamically linked program under libfaketime with its clock
/// shifted by `shift` (e.g. `+3s`, `-25s`); the monotonic clock is left alone.
pub fn faketime(shift: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    let lib = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .context("libfaketime is not installed (bash .ci/setup installs it)")?;
    Ok(vec![
        ("LD_PRELOAD", lib.to_string()),
        ("FAKETIME", shift.to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ("FAKETIME_NO_CACHE", "1".to_string()),
    ])
}

/// Starts an agent for `node` with extra environment (e.g. [`faketime`]).
pub fn agent_with_env(
    kubeconfig: &Path,
    node: &str,
    aggregator_url: &str,
    log_dir: &Path,
    extra: &[&str],
    env: Vec<(&'static str, String)>,
) -> anyhow::Result<Proc> {
    let mut args = vec!["--aggregator".to_string(), aggregator_url.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    // Test-friendly defaults, unless `extra` sets them.
    let log_root = log_dir.join(format!("pods-{node}")).display().to_string();
    let state_dir = log_dir.join(format!("state-{node}")).display().to_string();
    let clock_server = aggregator_url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    for (flag, value) in [
        ("--probe-interval", "5s"),
        ("--probe-timeout", "2s"),
        ("--max-backoff", "2s"),
        ("--clock-server", clock_server.as_str()),
        ("--clock-interval", "2s"),
        // Several agents share the machine: each its own metrics port, pod log folder and
        // state folder (a pod log folder exists only when a test writes one).
        ("--metrics-listen", "127.0.0.1:0"),
        ("--log-root", log_root.as_str()),
        ("--log-state-dir", state_dir.as_str()),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    Proc::spawn(
        &format!("agent-{node}"),
        &bin("anchorwatch-agent")?,
        &args,
        &[
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("NODE_NAME", node.to_string()),
        ]
        .into_iter()
        .chain(env)
        .collect::<Vec<_>>(),
        log_dir,
    )
}

/// Starts a real `chronyd` serving NTP on `ip:port` from its local clock (stratum 10), never
/// touching the system clock (`-x`), with its files under `dir`; under libfaketime with `env`.
pub fn chronyd(
    dir: &Path,
    ip: &str,
    port: u16,
    env: Vec<(&'static str, String)>,
) -> anyhow::Result<Proc> {
    let program = ["/usr/sbin/chronyd", "/usr/bin/chronyd", "/sbin/chronyd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("chronyd is not installed (bash .ci/setup installs it)")?;
    let conf = dir.join(format!("chrony-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "local stratum 10\nallow 127.0.0.0/8\nbindaddress {ip}\nport {port}\ncmdport 0\n\
             driftfile {d}/chrony-{port}.drift\npidfile {d}/chrony-{port}.pid\nlogdir {d}\n",
            d = dir.display()
        ),
    )?;
    let args = vec![
        "-d".to_string(),
        "-x".into(),
        "-u".into(),
        "root".into(),
        "-f".into(),
        conf.display().to_string(),
    ];
    Proc::spawn(&format!("chronyd-{port}"), &program, &args, &env, dir)
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of a process.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
