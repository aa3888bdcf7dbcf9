//! The follower against real directories shaped like `/var/log/pods`: rotation by rename and
//! gzip, truncation, deleted pods, symlinks, restarts through the state file, the byte budget.

use super::*;
use std::io::Write as _;

const BAD_SIGNATURE: &str = "WARN outbound:proxy{addr=10.42.0.17:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.42.0.17:8080: invalid peer certificate: BadSignature";
const UNKNOWN_ISSUER: &str = "WARN outbound:proxy{addr=10.42.0.18:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.42.0.18:8080: invalid peer certificate: UnknownIssuer";

fn mk_line(message: &str) -> String {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    format!("{now} stderr F {message}\n")
}

fn mk_target(uid: &str) -> LogTarget {
    LogTarget {
        uid: uid.into(),
        namespace: "shop".into(),
        name: format!("api-{uid}"),
        container: "linkerd-proxy".into(),
    }
}

struct Node {
    root: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        Node {
            root: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn dir(&self, t: &LogTarget) -> PathBuf {
        let d = self
            .root
            .path()
            .join(format!("{}_{}_{}", t.namespace, t.name, t.uid))
            .join(&t.container);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn append(&self, t: &LogTarget, file: &str, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir(t).join(file))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn follower(&self, budget: u64) -> Follower {
        let cfg = LogConfig {
            root: self.root.path().to_path_buf(),
            state_dir: Some(self.state.path().to_path_buf()),
            budget,
            max_line: DEFAULT_MAX_LINE,
        };
        Follower::new(cfg, state::load(self.state.path()).unwrap())
    }
}

/// Lines of `kind` the follower has counted for pod `uid`.
fn total(f: &Follower, uid: &str, kind: &str) -> u64 {
    f.pods[uid]
        .logs
        .totals()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, n)| n)
}

fn mk_gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

#[test]
fn new_lines_are_counted_once_and_the_evidence_is_sent_when_it_changes() {
    let node = Node::new();
    let t = mk_target("u1");
    node.append(
        &t,
        "0.log",
        &(mk_line(BAD_SIGNATURE) + &mk_line("INFO unrelated")),
    );
    let mut f = node.follower(1 << 20);
    let changed = f.round(std::slice::from_ref(&t), Utc::now());
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].1.kinds[0].total, 1);
    assert!(
        f.round(std::slice::from_ref(&t), Utc::now()).is_empty(),
        "nothing new"
    );
    node.append(&t, "0.log", &mk_line(BAD_SIGNATURE));
    let changed = f.round(std::slice::from_ref(&t), Utc::now());
    assert_eq!(changed[0].1.kinds[0].total, 2);
    assert_eq!(f.metrics().counters.lines, 3);
}

#[test]
fn a_renamed_file_is_read_to_its_end_then_the_new_one() {
    let node = Node::new();
    let t = mk_target("u2");
    node.append(&t, "0.log", &mk_line(BAD_SIGNATURE));
    let mut f = node.follower(1 << 20);
    f.round(std::slice::from_ref(&t), Utc::now());
    // The runtime wrote more, then the kubelet rotated: rename, and a new 0.log.
    node.append(&t, "0.log", &mk_line(BAD_SIGNATURE));
    let dir = node.dir(&t);
    std::fs::rename(dir.join("0.log"), dir.join("0.log.20261203-190000")).unwrap();
    node.append(&t, "0.log", &mk_line(UNKNOWN_ISSUER));
    f.round(std::slice::from_ref(&t), Utc::now());
    assert_eq!(total(&f, "u2", "BAD_SIGNATURE"), 2);
    assert_eq!(total(&f, "u2", "UNKNOWN_ISSUER"), 1);
}

#[test]
fn a_compressed_tail_is_read_from_the_gz_with_its_pending_partial_line_ended() {
    let node = Node::new();
    let t = mk_target("u4");
    let dir = node.dir(&t);
    let first = mk_line(BAD_SIGNATURE);
    node.append(&t, "0.log", &first);
    let mut f = node.follower(1 << 20);
    f.round(std::slice::from_ref(&t), Utc::now());
    // Between two rounds: more lines (the last a partial line that never gets its F), then
    // rename, compress, remove: what the kubelet does to a file over two rotations.
    let partial = mk_line(UNKNOWN_ISSUER).replacen(" F ", " P ", 1);
    let whole = first + &mk_line(BAD_SIGNATURE) + &mk_line(BAD_SIGNATURE) + &partial;
    std::fs::remove_file(dir.join("0.log")).unwrap();
    std::fs::write(dir.join("0.log.20261203-190000.gz"), mk_gzip(&whole)).unwrap();
    // The follower knew the file as 0.log; it finds its tail under the rotated name's .gz
    // once it has seen the rename.
    f.pods.get_mut("u4").unwrap().files[0].name = "0.log.20261203-190000".into();
    node.append(&t, "0.log", &mk_line(BAD_SIGNATURE));
    f.round(std::slice::from_ref(&t), Utc::now());
    assert_eq!(
        total(&f, "u4", "BAD_SIGNATURE"),
        4,
        "1 before, 2 from the gz, 1 new"
    );
    assert_eq!(
        total(&f, "u4", "UNKNOWN_ISSUER"),
        1,
        "the partial line, ended"
    );
    assert_eq!(
        f.pods["u4"].files.len(),
        1,
        "the compressed file is done with"
    );
}

#[test]
fn a_truncated_file_is_read_again_from_its_start() {
    let node = Node::new();
    let t = mk_target("u5");
    let dir = node.dir(&t);
    node.append(
        &t,
        "0.log",
        &(mk_line("INFO a long unrelated line, long enough") + &mk_line(BAD_SIGNATURE)),
    );
    let mut f = node.follower(1 << 20);
    f.round(std::slice::from_ref(&t), Utc::now());
    // copytruncate: same inode, shorter content.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.join("0.log"))
        .unwrap();
    node.append(&t, "0.log", &mk_line(UNKNOWN_ISSUER));
    f.round(std::slice::from_ref(&t), Utc::now());
    assert_eq!(total(&f, "u5", "BAD_SIGNATURE"), 1);
    assert_eq!(total(&f, "u5", "UNKNOWN_ISSUER"), 1);
}

#[test]
fn a_restart_neither_recounts_nor_misses_lines() {
    let node = Node::new();
    let t = mk_target("u6");
    let (head, tail) = BAD_SIGNATURE.split_at(60);
    node.append(
        &t,
        "0.log",
        &(mk_line(BAD_SIGNATURE) + &mk_line(head).replacen(" F ", " P ", 1)),
    );
    {
        let mut f = node.follower(1 << 20);
        f.round(std::slice::from_ref(&t), Utc::now());
        assert_eq!(total(&f, "u6", "BAD_SIGNATURE"), 1);
        state::save(node.state.path(), &f.take_state().unwrap()).unwrap();
    }
    // Written while the agent was down: the rest of the partial message, and one more line.
    node.append(&t, "0.log", &(mk_line(tail) + &mk_line(BAD_SIGNATURE)));
    let mut f = node.follower(1 << 20);
    let changed = f.round(std::slice::from_ref(&t), Utc::now());
    assert_eq!(total(&f, "u6", "BAD_SIGNATURE"), 3);
    assert_eq!(changed[0].1.kinds[0].total, 3);
}

#[test]
fn a_corrupt_state_file_is_refused_not_trusted() {
    let node = Node::new();
    std::fs::write(
        node.state.path().join(state::FILE_NAME),
        b"{\"version\": 1, \"pods\": 7}",
    )
    .unwrap();
    assert!(matches!(
        state::load(node.state.path()),
        Err(state::StateError::Format { .. })
    ));
}

#[test]
fn symlinks_are_not_followed_out_of_the_log_root() {
    let node = Node::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.log"), mk_line(BAD_SIGNATURE)).unwrap();
    // A file replaced by a symlink to elsewhere.
    let t = mk_target("u7");
    node.append(&t, "0.log", &mk_line(UNKNOWN_ISSUER));
    let mut f = node.follower(1 << 20);
    f.round(std::slice::from_ref(&t), Utc::now());
    let dir = node.dir(&t);
    std::fs::remove_file(dir.join("0.log")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.log"), dir.join("0.log")).unwrap();
    f.round(std::slice::from_ref(&t), Utc::now());
    assert_eq!(total(&f, "u7", "BAD_SIGNATURE"), 0);
    // A pod directory that is a symlink to elsewhere.
    let t2 = mk_target("u8");
    let linked = outside.path().join("pod");
    std::fs::create_dir_all(linked.join("linkerd-proxy")).unwrap();
    std::fs::write(linked.join("linkerd-proxy/0.log"), mk_line(BAD_SIGNATURE)).unwrap();
    std::os::unix::fs::symlink(
        &linked,
        node.root
            .path()
            .join(format!("{}_{}_{}", t2.namespace, t2.name, t2.uid)),
    )
    .unwrap();
    let changed = f.round(&[t.clone(), t2.clone()], Utc::now());
    let e = &changed.iter().find(|(uid, _)| uid == "u8").unwrap().1;
    assert!(e.kinds.is_empty());
    assert!(e.problem.as_deref().unwrap().contains("symlink"), "{e:?}");
    // A FIFO named like a log never blocks the reader.
    let t3 = mk_target("u9");
    let fifo = node.dir(&t3).join("0.log");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: mkfifo reads a NUL-terminated path that lives across the call.
    let made = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(made, 0);
    f.round(&[t, t2, t3], Utc::now());
}

#[test]
fn a_missing_log_root_is_said_for_each_pod_and_is_not_fatal() {
    let node = Node::new();
    let mut f = node.follower(1 << 20);
    f.cfg.root = node.root.path().join("not-mounted");
    let changed = f.round(&[mk_target("r1")], Utc::now());
    let problem = changed[0].1.problem.as_deref().unwrap();
    assert!(problem.starts_with("no log root"), "{problem}");
    assert!(problem.contains("mounted"), "{problem}");
}

#[test]
fn a_pod_without_logs_says_so_and_a_deleted_pod_is_forgotten() {
    let node = Node::new();
    let t = mk_target("u10");
    let mut f = node.follower(1 << 20);
    let changed = f.round(std::slice::from_ref(&t), Utc::now());
    assert!(
        changed[0]
            .1
            .problem
            .as_deref()
            .unwrap()
            .starts_with("no log directory")
    );
    node.append(&t, "0.log", &mk_line(BAD_SIGNATURE));
    f.round(std::slice::from_ref(&t), Utc::now());
    assert_eq!(total(&f, "u10", "BAD_SIGNATURE"), 1);
    // Deleted while being read: its directory goes, then the pod leaves the view.
    std::fs::remove_dir_all(node.root.path().join("shop_api-u10_u10")).unwrap();
    let changed = f.round(std::slice::from_ref(&t), Utc::now());
    assert!(changed[0].1.problem.is_some());
    f.round(&[], Utc::now());
    assert!(f.pods.is_empty());
    assert!(f.take_state().unwrap().pods.is_empty());
}

#[test]
fn the_byte_budget_bounds_a_round_and_every_pod_gets_its_turn() {
    let node = Node::new();
    let targets: Vec<LogTarget> = (0..3).map(|i| mk_target(&format!("b{i}"))).collect();
    let line = mk_line(BAD_SIGNATURE);
    for t in &targets {
        node.append(t, "0.log", &line.repeat(2_000));
    }
    let file_len = (line.len() * 2_000) as u64;
    let mut f = node.follower(256 * 1024);
    let mut rounds = 0;
    loop {
        let before = f.metrics().counters.bytes;
        f.round(&targets, Utc::now());
        let read = f.metrics().counters.bytes - before;
        assert!(
            read <= 256 * 1024 + 64 * 1024 + DEFAULT_MAX_LINE as u64,
            "{read}"
        );
        rounds += 1;
        if read == 0 {
            break;
        }
        assert!(rounds < 100);
    }
    assert!(rounds >= 3 * file_len as usize / (320 * 1024));
    for t in &targets {
        assert_eq!(total(&f, &t.uid, "BAD_SIGNATURE"), 2_000);
    }
    assert!(f.metrics().counters.behind_rounds > 0);
}
