use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};

const BAD_SIGNATURE: &str = "WARN outbound:proxy{addr=10.42.0.17:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.42.0.17:8080: invalid peer certificate: BadSignature";

fn mk_line(tag: &str, message: &str) -> String {
    format!("2025-10-23T15:03:43.123456789Z stderr {tag} {message}\n")
}

/// Scans `bytes` from `pos` with a reader that hands out `chunk` bytes at a time; the messages.
fn mk_scan(
    scanner: &mut Scanner,
    bytes: &[u8],
    pos: &mut Position,
    chunk: usize,
    finished: bool,
) -> (Vec<String>, ScanStats) {
    let from = usize::try_from(pos.offset).unwrap().min(bytes.len());
    let mut reader = std::io::BufReader::with_capacity(chunk.max(1), &bytes[from..]);
    let mut out = Vec::new();
    let stats = scanner
        .scan(&mut reader, pos, u64::MAX, finished, &mut |r| {
            out.push(r.message.to_string())
        })
        .unwrap();
    (out, stats)
}

#[test]
fn complete_lines_become_messages_and_the_position_follows() {
    let text = mk_line("F", BAD_SIGNATURE) + &mk_line("F", "second");
    let mut s = Scanner::new(1024, 1024);
    let mut pos = Position::default();
    let (msgs, stats) = mk_scan(&mut s, text.as_bytes(), &mut pos, 64 * 1024, false);
    assert_eq!(msgs, [BAD_SIGNATURE, "second"]);
    assert_eq!(pos.offset, text.len() as u64);
    assert_eq!(pos.resume, pos.offset);
    assert!(stats.eof);
    assert_eq!(stats.lines, 2);
}

#[test]
fn an_incomplete_last_line_waits_for_its_newline_and_is_counted_once() {
    let full = mk_line("F", BAD_SIGNATURE);
    let (head, _) = full.split_at(40);
    let mut s = Scanner::new(1024, 1024);
    let mut pos = Position::default();
    let (msgs, _) = mk_scan(&mut s, head.as_bytes(), &mut pos, 16, false);
    assert!(msgs.is_empty());
    assert_eq!(pos.offset, 0, "the incomplete line is read again next time");
    let (msgs, _) = mk_scan(&mut s, full.as_bytes(), &mut pos, 16, false);
    assert_eq!(msgs, [BAD_SIGNATURE]);
    assert_eq!(pos.offset, full.len() as u64);
}

#[test]
fn partial_lines_are_joined_and_a_restart_neither_loses_nor_recounts_them() {
    let (a, b) = BAD_SIGNATURE.split_at(50);
    let first = mk_line("F", "before") + &mk_line("P", a);
    let mut s = Scanner::new(1024, 1024);
    let mut pos = Position::default();
    let (msgs, _) = mk_scan(&mut s, first.as_bytes(), &mut pos, 7, false);
    assert_eq!(msgs, ["before"]);
    let p_start = mk_line("F", "before").len() as u64;
    assert_eq!(
        pos.resume, p_start,
        "a restart re-reads the pending partial line"
    );
    assert_eq!(pos.offset, first.len() as u64);

    // The agent restarts: a new scanner resumes from the saved position.
    let whole = first + &mk_line("F", b) + &mk_line("F", "after");
    let (mut s, mut from) = Scanner::resuming(1024, 1024, pos);
    assert_eq!(from.offset, p_start);
    let (msgs, _) = mk_scan(&mut s, whole.as_bytes(), &mut from, 5, false);
    assert_eq!(msgs, [BAD_SIGNATURE, "after"], "nothing counted twice");
}

#[test]
fn a_ten_mib_line_is_skipped_in_bounded_memory() {
    let mut text = b"2025-10-23T15:03:43Z stderr F ".to_vec();
    text.extend(std::iter::repeat_n(b'x', 10 << 20));
    text.push(b'\n');
    text.extend_from_slice(mk_line("F", BAD_SIGNATURE).as_bytes());
    let mut s = Scanner::new(64 * 1024, 64 * 1024);
    let mut pos = Position::default();
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, &text[..]);
    let mut msgs = Vec::new();
    let stats = s
        .scan(&mut reader, &mut pos, u64::MAX, false, &mut |r| {
            msgs.push(r.message.to_string())
        })
        .unwrap();
    let peak = s.buffered_bytes();
    assert_eq!(msgs, [BAD_SIGNATURE]);
    assert_eq!(stats.too_long, 1);
    assert!(peak <= 2 * 64 * 1024, "held {peak} bytes");
    assert_eq!(pos.offset, text.len() as u64);
}

#[test]
fn a_long_line_at_the_end_is_skipped_across_calls() {
    let mut text = b"2025-10-23T15:03:43Z stderr F ".to_vec();
    text.extend(std::iter::repeat_n(b'y', 300_000));
    let mut s = Scanner::new(1024, 1024);
    let mut pos = Position::default();
    let (msgs, _) = mk_scan(&mut s, &text, &mut pos, 4096, false);
    assert!(msgs.is_empty());
    assert!(pos.skipping);
    assert!(s.buffered_bytes() <= 2048);
    text.extend_from_slice(b"yyy\n");
    text.extend_from_slice(mk_line("F", "next").as_bytes());
    let (msgs, stats) = mk_scan(&mut s, &text, &mut pos, 4096, false);
    assert_eq!(msgs, ["next"]);
    assert_eq!(stats.too_long, 1);
    assert!(!pos.skipping);
}

#[test]
fn garbage_invalid_utf8_and_json_of_the_wrong_shape_never_panic() {
    let mut text: Vec<u8> = (0..=255u8).cycle().take(20_000).collect();
    text.push(b'\n');
    text.extend_from_slice(b"2025-10-23T15:03:43Z stderr F \xff\xfe BadSignature \xc3\n");
    text.extend_from_slice(
        mk_line(
            "F",
            r#"{"fields":{"message":7,"error":["BadSignature"]},"spans":"x","level":1}"#,
        )
        .as_bytes(),
    );
    text.extend_from_slice(b"\n\n\x00\x00\n");
    let mut s = Scanner::new(1024, 1024);
    let mut pos = Position::default();
    let mut logs = crate::logs::PodLogs::default();
    let mut reader = std::io::BufReader::with_capacity(333, &text[..]);
    let stats = s
        .scan(&mut reader, &mut pos, u64::MAX, true, &mut |r| {
            crate::logs::count_record(&mut logs, r)
        })
        .unwrap();
    assert!(stats.not_cri >= 2, "{stats:?}");
    let kinds: Vec<String> = logs
        .snapshot(chrono::Utc::now())
        .kinds
        .iter()
        .map(|k| k.kind.to_string())
        .collect();
    // The invalid UTF-8 line still names BadSignature (lossily decoded); the JSON line with
    // wrong types is read as text and names it too.
    assert_eq!(kinds, ["BAD_SIGNATURE"]);
    assert_eq!(pos.offset, text.len() as u64);
}

#[test]
fn the_budget_stops_a_round_and_the_next_one_goes_on() {
    let text: String = (0..100)
        .map(|i| mk_line("F", &format!("line {i}")))
        .collect();
    let mut s = Scanner::new(1024, 1024);
    let mut pos = Position::default();
    let mut msgs = Vec::new();
    let mut rounds = 0;
    loop {
        let from = usize::try_from(pos.offset).unwrap();
        let mut reader = std::io::BufReader::with_capacity(256, &text.as_bytes()[from..]);
        let stats = s
            .scan(&mut reader, &mut pos, 1000, false, &mut |r| {
                msgs.push(r.message.to_string())
            })
            .unwrap();
        rounds += 1;
        assert!(stats.bytes <= 1000 + 256 + 64, "{stats:?}");
        if stats.eof {
            break;
        }
    }
    assert!(rounds > 3);
    let want: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
    assert_eq!(msgs, want);
}

#[test]
fn a_finished_file_ends_its_pending_partial_message() {
    let text = mk_line("P", BAD_SIGNATURE);
    let mut s = Scanner::new(1024, 1024);
    let mut pos = Position::default();
    let (msgs, _) = mk_scan(&mut s, text.as_bytes(), &mut pos, 64, false);
    assert!(msgs.is_empty());
    let (msgs, _) = mk_scan(&mut s, text.as_bytes(), &mut pos, 64, true);
    assert_eq!(msgs, [BAD_SIGNATURE]);
    assert_eq!(pos.resume, pos.offset);
}

fn mk_proptest_config(seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn arb_log() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "[ -~]{0,80}".prop_map(|m| mk_line("F", &m).into_bytes()),
        "[ -~]{0,80}".prop_map(|m| mk_line("P", &m).into_bytes()),
        "[ -~]{0,80}".prop_map(|m| format!("2025-10-23T15:03:43Z stdout F {m}\n").into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..120),
    ];
    proptest::collection::vec(line, 0..30).prop_map(|ls| ls.concat())
}

proptest! {
    #![proptest_config(mk_proptest_config(0x5CA7_0001))]

    /// However the bytes arrive (read sizes, budgets, restarts in between), the messages are
    /// those of framing the whole file at once, each once.
    #[test]
    fn reading_in_pieces_with_restarts_yields_the_messages_of_the_whole_file(
        text in arb_log(),
        chunk in 1usize..64,
        budget in 1u64..200,
        restarts in proptest::collection::btree_set(1usize..40, 0..4),
    ) {
        let whole: Vec<String> = {
            let mut s = Scanner::new(1024, 1024);
            let mut pos = Position::default();
            mk_scan(&mut s, &text, &mut pos, 4096, true).0
        };
        let mut s = Scanner::new(1024, 1024);
        let mut pos = Position::default();
        let mut got = Vec::new();
        for round in 1.. {
            let from = usize::try_from(pos.offset).unwrap();
            let mut reader = std::io::BufReader::with_capacity(chunk, &text[from..]);
            let stats = s
                .scan(&mut reader, &mut pos, budget, true, &mut |r| got.push(r.message.to_string()))
                .unwrap();
            prop_assert!(s.buffered_bytes() <= 2 * 1024 + 1024);
            if stats.eof {
                break;
            }
            if restarts.contains(&round) {
                let (fresh, from) = Scanner::resuming(1024, 1024, pos);
                s = fresh;
                pos = from;
            }
            prop_assert!(round < 10_000);
        }
        prop_assert_eq!(got, whole);
    }
}
