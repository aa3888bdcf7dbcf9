use super::*;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};

const TS: &str = "2025-10-23T15:03:43.123456789Z";

/// A CRI line as containerd writes it (without the newline).
fn mk_line(timestamp: &str, stream: &str, tag: &str, message: &str) -> Vec<u8> {
    mk_raw_line(timestamp, stream, tag, message.as_bytes())
}

fn mk_raw_line(timestamp: &str, stream: &str, tag: &str, message: &[u8]) -> Vec<u8> {
    let mut line = format!("{timestamp} {stream} {tag} ").into_bytes();
    line.extend_from_slice(message);
    line
}

/// Pushes a line the test builds on the spot, keeping the record beyond the line's life.
fn push_owned(framer: &mut CriFramer, line: Vec<u8>) -> Option<CriRecord<'static>> {
    framer
        .push_line(&line)
        .expect("a CRI line")
        .map(CriRecord::into_owned)
}

fn mk_ts(text: &str) -> CriTimestamp {
    CriTimestamp::parse(text.as_bytes()).expect("valid timestamp")
}

/// Deterministic proptest settings for CI.
fn mk_proptest_config(seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps

#[test]
fn timestamp_parses_rfc3339_nano_in_utc() {
    let ts = mk_ts(TS);
    // `verification time 1761231823` in the rows of log-lines.md is this second.
    assert_eq!(ts.unix_seconds(), 1_761_231_823);
    assert_eq!(ts.subsec_nanos(), 123_456_789);
    assert_eq!(ts.to_string(), TS);
}

#[test]
fn timestamp_fraction_may_be_short_or_absent() {
    assert_eq!(mk_ts("2025-10-23T15:03:43Z").subsec_nanos(), 0);
    assert_eq!(mk_ts("2025-10-23T15:03:43.5Z").subsec_nanos(), 500_000_000);
    assert_eq!(mk_ts("2025-10-23T15:03:43.000000001Z").subsec_nanos(), 1);
}

#[test]
fn timestamp_offsets_are_converted_to_utc() {
    let utc = mk_ts("2025-10-23T15:03:43Z");
    assert_eq!(mk_ts("2025-10-23T17:03:43+02:00"), utc);
    assert_eq!(mk_ts("2025-10-23T10:33:43-04:30"), utc);
}

#[test]
fn timestamp_handles_epoch_leap_days_and_dates_before_1970() {
    assert_eq!(mk_ts("1970-01-01T00:00:00Z").unix_seconds(), 0);
    assert_eq!(mk_ts("2024-02-29T00:00:00Z").unix_seconds(), 1_709_164_800);
    assert_eq!(mk_ts("1969-12-31T23:59:59Z").unix_seconds(), -1);
    let before = mk_ts("1900-03-01T12:00:00.25Z");
    assert_eq!(before.to_string(), "1900-03-01T12:00:00.250000000Z");
}

#[test]
fn malformed_timestamps_are_rejected() {
    for text in [
        "",
        "2025-10-23",
        "2025-10-23T15:03:43",
        "2025-10-23T15:03:43.Z",
        "2025-10-23T15:03:43.1234567890Z",
        "2025-13-23T15:03:43Z",
        "2025-02-29T15:03:43Z",
        "2025-10-32T15:03:43Z",
        "2025-10-23T24:03:43Z",
        "2025-10-23T15:60:43Z",
        "2025-10-23T15:03:43+2:00",
        "2025-10-23T15:03:43Zjunk",
        "2025/10/23T15:03:43Z",
        "２０２５-10-23T15:03:43Z",
    ] {
        assert_eq!(CriTimestamp::parse(text.as_bytes()), None, "{text:?}");
    }
}

#[test]
fn from_unix_rejects_a_whole_second_of_nanos() {
    assert!(CriTimestamp::from_unix(0, 999_999_999).is_some());
    assert!(CriTimestamp::from_unix(0, 1_000_000_000).is_none());
}

// ---------------------------------------------------------------------------------------------
// Framing

#[test]
fn full_line_is_one_record_borrowing_the_input() {
    let mut framer = CriFramer::default();
    let line = mk_line(TS, "stderr", "F", "hello world");
    let record = framer.push_line(&line).unwrap().unwrap();
    assert_eq!(record.timestamp, mk_ts(TS));
    assert_eq!(record.stream, Stream::Stderr);
    assert_eq!(record.message, "hello world");
    assert!(matches!(record.message, Cow::Borrowed(_)));
    assert!(!record.truncated);
}

#[test]
fn log_lines_md_framing_example_joins_partial_lines() {
    // The example of cases/log-lines.md, with the two streams as written there.
    let text = "2025-10-23T15:03:43.123456789Z stderr F [  12.003112s]  WARN ThreadId(02) identity:identity{server.addr=…}: linkerd_reconnect: Failed to connect error=endpoint 10.244.1.111:8080: invalid peer certificate: BadSignature error.sources=[invalid peer certificate: BadSignature]\n\
2025-10-23T15:03:44.000000001Z stdout P [  13.1s]  WARN ThreadId(01) outbound:proxy{addr=10.42.0.17:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.42.0.17:8080: invalid peer\n\
2025-10-23T15:03:44.000000002Z stdout F  certificate: BadSignature\n";
    let records = frame_lines(text);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].stream, Stream::Stderr);
    assert!(records[0].message.starts_with("[  12.003112s]  WARN"));
    assert!(records[0].message.ends_with("BadSignature]"));
    assert_eq!(records[1].stream, Stream::Stdout);
    assert_eq!(
        records[1].message,
        "[  13.1s]  WARN ThreadId(01) outbound:proxy{addr=10.42.0.17:8080}: linkerd_reconnect: \
         Failed to connect error=endpoint 10.42.0.17:8080: invalid peer certificate: BadSignature"
    );
    assert_eq!(
        records[1].timestamp,
        mk_ts("2025-10-23T15:03:44.000000001Z")
    );
}

#[test]
fn partial_lines_of_the_two_streams_are_joined_separately() {
    let mut framer = CriFramer::default();
    let lines = [
        mk_line(TS, "stdout", "P", "out-1 "),
        mk_line(TS, "stderr", "P", "err-1 "),
        mk_line(TS, "stdout", "P", "out-2 "),
        mk_line(TS, "stderr", "F", "err-2"),
        mk_line(TS, "stdout", "F", "out-3"),
    ];
    let records: Vec<_> = lines
        .iter()
        .filter_map(|line| framer.push_line(line).unwrap())
        .map(|record| (record.stream, record.message.into_owned()))
        .collect();
    assert_eq!(
        records,
        [
            (Stream::Stderr, "err-1 err-2".to_string()),
            (Stream::Stdout, "out-1 out-2 out-3".to_string()),
        ]
    );
    assert_eq!(framer.buffered_bytes(), 0);
}

#[test]
fn a_garbage_line_between_partials_does_not_break_the_message() {
    let mut framer = CriFramer::default();
    assert_eq!(framer.push_line(&mk_line(TS, "stdout", "P", "a")), Ok(None));
    assert!(framer.push_line(b"garbage in the middle").is_err());
    let record = push_owned(&mut framer, mk_line(TS, "stdout", "F", "b")).unwrap();
    assert_eq!(record.message, "ab");
}

#[test]
fn the_trailing_newline_is_not_part_of_the_message_but_a_carriage_return_is() {
    let mut framer = CriFramer::default();
    let mut line = mk_line(TS, "stdout", "F", "msg");
    line.push(b'\n');
    assert_eq!(framer.push_line(&line).unwrap().unwrap().message, "msg");
    let line = mk_line(TS, "stdout", "F", "msg\r");
    assert_eq!(framer.push_line(&line).unwrap().unwrap().message, "msg\r");
}

#[test]
fn empty_messages_and_extra_tags_are_accepted() {
    let mut framer = CriFramer::default();
    let empty = push_owned(&mut framer, format!("{TS} stdout F ").into_bytes());
    assert_eq!(empty.unwrap().message, "");
    let bare = push_owned(&mut framer, format!("{TS} stdout F").into_bytes());
    assert_eq!(bare.unwrap().message, "");
    let tagged = push_owned(&mut framer, mk_line(TS, "stdout", "F:x", "m"));
    assert_eq!(tagged.unwrap().message, "m");
    assert_eq!(
        framer.push_line(&mk_line(TS, "stdout", "P:x", "n")),
        Ok(None)
    );
}

#[test]
fn non_cri_lines_are_errors_not_panics() {
    let mut framer = CriFramer::default();
    let cases: [(&[u8], FrameError); 11] = [
        (b"", FrameError::Empty),
        (b"\n", FrameError::Empty),
        (b"garbage", FrameError::BadTimestamp),
        (b"2025-10-23T15:03:43Z", FrameError::MissingField("stream")),
        (
            b"2025-10-23T15:03:43Z stdout",
            FrameError::MissingField("tag"),
        ),
        (b"yesterday stdout F hi", FrameError::BadTimestamp),
        (b"2025-10-23T15:03:43Z stdin F hi", FrameError::BadStream),
        (b"2025-10-23T15:03:43Z stdout X hi", FrameError::BadTag),
        (b"2025-10-23T15:03:43Z stdout  F hi", FrameError::BadTag),
        (b"\x00\x01\x02 \xff\xfe \x80 \xc3", FrameError::BadTimestamp),
        (
            b"{\"log\":\"docker json\",\"stream\":\"stderr\"}",
            FrameError::BadTimestamp,
        ),
    ];
    for (line, error) in cases {
        assert_eq!(framer.push_line(line), Err(error), "{line:?}");
    }
}

#[test]
fn frame_errors_read_as_lower_case_phrases() {
    assert_eq!(
        FrameError::MissingField("tag").to_string(),
        "line has no tag field"
    );
    assert_eq!(
        FrameError::BadStream.to_string(),
        "stream is neither stdout nor stderr"
    );
}

#[test]
fn invalid_utf8_in_a_message_is_replaced_lossily() {
    let mut framer = CriFramer::default();
    let line = mk_raw_line(TS, "stderr", "F", b"bad \xff\xfe bytes \xc3");
    let record = framer.push_line(&line).unwrap().unwrap();
    assert_eq!(record.message, "bad \u{fffd}\u{fffd} bytes \u{fffd}");
    assert!(!record.truncated);
}

#[test]
fn a_utf8_character_split_over_partial_lines_is_rejoined() {
    let mut framer = CriFramer::default();
    let bytes = "naïve ✓".as_bytes();
    let (head, tail) = bytes.split_at(3); // inside `ï`
    assert_eq!(
        framer.push_line(&mk_raw_line(TS, "stdout", "P", head)),
        Ok(None)
    );
    let record = push_owned(&mut framer, mk_raw_line(TS, "stdout", "F", tail)).unwrap();
    assert_eq!(record.message, "naïve ✓");
}

#[test]
fn a_10_mib_line_is_truncated_to_the_bound() {
    let mut framer = CriFramer::default();
    let message = "x".repeat(10 * 1024 * 1024);
    let line = mk_line(TS, "stderr", "F", &message);
    let record = framer.push_line(&line).unwrap().unwrap();
    assert!(record.truncated);
    assert_eq!(record.message.len(), DEFAULT_MAX_MESSAGE);
    assert_eq!(framer.buffered_bytes(), 0);
}

#[test]
fn a_10_mib_message_in_partial_lines_never_buffers_more_than_the_bound() {
    let max = 1024;
    let mut framer = CriFramer::new(max);
    let chunk = "y".repeat(16 * 1024);
    for _ in 0..640 {
        let line = mk_line(TS, "stdout", "P", &chunk);
        assert_eq!(framer.push_line(&line), Ok(None));
        assert!(framer.buffered_bytes() <= max);
        assert!(framer.stdout.bytes.capacity() <= max);
    }
    let record = push_owned(&mut framer, mk_line(TS, "stdout", "F", "end")).unwrap();
    assert!(record.truncated);
    assert_eq!(record.message, "y".repeat(max));
    assert_eq!(framer.buffered_bytes(), 0);
    let next = push_owned(&mut framer, mk_line(TS, "stdout", "F", "next")).unwrap();
    assert!(!next.truncated, "the flag is cleared with the message");
}

#[test]
fn truncation_does_not_leave_half_a_character() {
    let mut framer = CriFramer::new(5);
    // `é` is two bytes; the bound falls inside the third one.
    let line = mk_line(TS, "stdout", "F", "éééé");
    let record = framer.push_line(&line).unwrap().unwrap();
    assert_eq!(record.message, "éé");
    assert!(record.truncated);

    assert_eq!(
        framer.push_line(&mk_line(TS, "stdout", "P", "ab")),
        Ok(None)
    );
    // Room for three more bytes: `x` and two of the three bytes of `✓`.
    let joined = push_owned(&mut framer, mk_line(TS, "stdout", "F", "x✓")).unwrap();
    assert_eq!(joined.message, "abx");
    assert!(joined.truncated);
}

#[test]
fn replacement_characters_cannot_blow_the_bound() {
    let mut framer = CriFramer::new(8);
    let line = mk_raw_line(TS, "stdout", "F", &[0xff; 8]);
    let record = framer.push_line(&line).unwrap().unwrap();
    assert!(record.message.len() <= 8);
    assert!(record.truncated);
}

#[test]
fn flush_ends_pending_messages_oldest_first() {
    let mut framer = CriFramer::default();
    let late = "2025-10-23T15:03:45Z";
    let early = "2025-10-23T15:03:44Z";
    assert_eq!(
        framer.push_line(&mk_line(late, "stdout", "P", "out")),
        Ok(None)
    );
    assert_eq!(
        framer.push_line(&mk_line(early, "stderr", "P", "err")),
        Ok(None)
    );
    let records = framer.flush();
    let streams: Vec<_> = records.iter().map(|r| (r.stream, &*r.message)).collect();
    assert_eq!(streams, [(Stream::Stderr, "err"), (Stream::Stdout, "out")]);
    assert!(framer.flush().is_empty());
    assert_eq!(framer.buffered_bytes(), 0);
}

#[test]
fn frame_lines_skips_garbage_and_flushes_at_the_end() {
    let mut text = mk_line(TS, "stdout", "F", "one");
    text.extend_from_slice(b"\n\x00\xffbinary junk\n\n");
    text.extend_from_slice(&mk_line(TS, "stderr", "P", "unfinished"));
    let records = frame_lines(&text);
    let messages: Vec<_> = records.iter().map(|r| &*r.message).collect();
    assert_eq!(messages, ["one", "unfinished"]);
}

#[test]
fn into_owned_keeps_everything() {
    let line = mk_line(TS, "stderr", "F", "kept");
    let record = CriFramer::default().push_line(&line).unwrap().unwrap();
    let owned = record.clone().into_owned();
    drop(line);
    assert_eq!(owned.message, "kept");
    assert_eq!(owned.timestamp, mk_ts(TS));
    assert_eq!(owned.stream, Stream::Stderr);
}

// ---------------------------------------------------------------------------------------------
// Properties

/// A line that is CRI-shaped often enough to reach every branch, and garbage otherwise.
fn arb_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        (
            prop_oneof![Just("stdout"), Just("stderr"), Just("stdin")],
            prop_oneof![Just("P"), Just("F"), Just("X"), Just("F:x")],
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(stream, tag, message)| mk_raw_line(TS, stream, tag, &message)),
    ]
}

proptest! {
    #![proptest_config(mk_proptest_config(0x00C1_F4A3))]

    #[test]
    fn framer_never_panics_and_stays_bounded(
        max in 0usize..128,
        lines in proptest::collection::vec(arb_line(), 0..40),
    ) {
        let mut framer = CriFramer::new(max);
        for line in &lines {
            if let Ok(Some(record)) = framer.push_line(line) {
                prop_assert!(record.message.len() <= max);
            }
            prop_assert!(framer.buffered_bytes() <= 2 * max);
            prop_assert!(framer.stdout.bytes.capacity() <= max);
            prop_assert!(framer.stderr.bytes.capacity() <= max);
        }
        for record in framer.flush() {
            prop_assert!(record.message.len() <= max);
        }
    }

    #[test]
    fn splitting_a_message_into_partial_lines_yields_the_same_message(
        message in "[^\n]{0,200}",
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        interleave in any::<bool>(),
    ) {
        let bytes = message.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut framer = CriFramer::default();
        let mut start = 0;
        for point in points {
            let line = mk_raw_line(TS, "stderr", "P", &bytes[start..point]);
            prop_assert_eq!(framer.push_line(&line), Ok(None));
            if interleave {
                let other = mk_line(TS, "stdout", "F", "other stream");
                let record = framer.push_line(&other).unwrap().unwrap();
                prop_assert_eq!(record.message, "other stream");
            }
            start = point;
        }
        let last = mk_raw_line(TS, "stderr", "F", &bytes[start..]);
        let record = framer.push_line(&last).unwrap().unwrap();
        prop_assert_eq!(&*record.message, message.as_str());
        prop_assert!(!record.truncated);
        prop_assert_eq!(framer.buffered_bytes(), 0);
    }

    #[test]
    fn timestamp_parse_never_panics_and_display_round_trips(
        text in "[1-8][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        junk in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let _ = CriTimestamp::parse(&junk);
        if let Some(ts) = CriTimestamp::parse(text.as_bytes()) {
            prop_assert_eq!(CriTimestamp::parse(ts.to_string().as_bytes()), Some(ts));
        }
    }
}
