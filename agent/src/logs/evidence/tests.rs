use super::*;
use anchorwatch_proxylog::classify;
use chrono::TimeDelta;

const BAD_SIGNATURE: &str = "WARN outbound:proxy{addr=10.42.0.17:8080}: linkerd_reconnect: Failed to connect error=endpoint 10.42.0.17:8080: invalid peer certificate: BadSignature";

fn mk_time(minutes_ago: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    now - TimeDelta::minutes(minutes_ago)
}

fn mk_now() -> DateTime<Utc> {
    "2026-12-03T12:00:30Z".parse().unwrap()
}

#[test]
fn counts_windows_first_and_last_seen_and_peers_per_kind() {
    let now = mk_now();
    let mut logs = PodLogs::default();
    for ago in [90, 30, 4, 1, 0] {
        logs.record(&classify(BAD_SIGNATURE), mk_time(ago, now), BAD_SIGNATURE);
    }
    let e = logs.snapshot(now);
    assert_eq!(e.kinds.len(), 1);
    let k = &e.kinds[0];
    assert_eq!(k.kind, Kind::BadSignature);
    assert_eq!((k.total, k.last_5m, k.last_1h), (5, 3, 4));
    assert_eq!(k.first_seen, mk_time(90, now));
    assert_eq!(k.last_seen, now);
    assert_eq!(k.peers.len(), 1);
    assert_eq!(k.peers[0].addr.to_string(), "10.42.0.17:8080");
    assert_eq!(k.peers[0].count, 5);
    assert!(!k.peers[0].ephemeral_port);
    // An hour later the windows are empty, the total stays.
    let later = logs.snapshot(now + TimeDelta::hours(1));
    assert_eq!((later.kinds[0].last_5m, later.kinds[0].last_1h), (0, 0));
    assert_eq!(later.kinds[0].total, 5);
}

#[test]
fn a_line_with_two_kinds_counts_for_both_and_ignored_lines_not_at_all() {
    let now = mk_now();
    let mut logs = PodLogs::default();
    let both = "daemon:identity: linkerd_proxy_identity::certify: Received invalid certificate: invalid certificate: UnknownIssuer";
    logs.record(&classify(both), now, both);
    let ignored = "INFO ThreadId(01) inbound: linkerd_app_core::serve: Connection closed error=direct connections must be mutually authenticated";
    logs.record(&classify(ignored), now, ignored);
    let kinds: Vec<Kind> = logs.snapshot(now).kinds.iter().map(|k| k.kind).collect();
    assert_eq!(kinds, [Kind::UnknownIssuer, Kind::LocalCertRejected]);
}

#[test]
fn samples_peers_and_buckets_stay_bounded_whatever_the_volume() {
    let now = mk_now();
    let mut logs = PodLogs::default();
    let long_tail = "é".repeat(400);
    for i in 0..5_000i64 {
        let line = format!(
            "WARN outbound:proxy{{addr=10.0.{}.{}:8080}}: invalid peer certificate: BadSignature {long_tail}",
            i % 7,
            i % 40
        );
        logs.record(&classify(&line), now - TimeDelta::minutes(5_000 - i), &line);
    }
    let k = &logs.snapshot(now).kinds[0];
    assert_eq!(k.total, 5_000);
    assert_eq!(k.samples.len(), SAMPLES);
    assert!(k.samples.iter().all(|s| s.len() <= SAMPLE_BYTES));
    assert_eq!(k.peers.len(), PEERS);
    assert!(logs.kinds.values().all(|s| s.minutes.len() <= MINUTES));
    assert_eq!(k.last_1h, 59, "one line a minute, the last at now - 1 min");
}

#[test]
fn an_ephemeral_inbound_peer_is_marked() {
    let now = mk_now();
    let line = "INFO ThreadId(02) daemon:admin{listen.addr=0.0.0.0:4191}:accept{peer.addr=10.1.2.3:51234 target.addr=10.1.2.4:4191}: linkerd2_app_core::serve: Connection closed error=received fatal alert: BadCertificate";
    let mut logs = PodLogs::default();
    logs.record(&classify(line), now, line);
    let k = &logs.snapshot(now).kinds[0];
    assert_eq!(k.kind.to_string(), "ALERT_RECEIVED(BadCertificate)");
    assert!(k.peers[0].ephemeral_port);
}

#[test]
fn the_counts_survive_a_round_trip_through_the_state_file_format() {
    let now = mk_now();
    let mut logs = PodLogs::default();
    logs.record(&classify(BAD_SIGNATURE), now, BAD_SIGNATURE);
    let text = serde_json::to_string(&logs).unwrap();
    let back: PodLogs = serde_json::from_str(&text).unwrap();
    assert_eq!(back.snapshot(now), logs.snapshot(now));
}
