//! The exchange against small UDP servers on loopback that answer well, badly, or not at all.

use super::*;
use anchorwatch_clock::exchange::reply_to;
use chrono::TimeDelta;

/// How the test server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// Correctly, with its clock `shift` from ours.
    Shifted(TimeDelta),
    ZeroTransmit,
    KissOfDeath,
    WrongOrigin,
    /// From another socket (another address).
    FromElsewhere,
    Never,
    /// Correctly, but the reply spends this long on the way back (a slow, lopsided link).
    SlowReturn(Duration),
}

/// A server on `ip` answering every request as `answer` says; returns its address.
async fn server(ip: &str, answer: Answer) -> SocketAddr {
    let socket = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let other = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(req) = Packet::decode(&buf[..n]) else {
                continue;
            };
            let shift = match answer {
                Answer::Shifted(s) => s,
                _ => TimeDelta::zero(),
            };
            let t2 = Utc::now() + shift;
            let mut rep = reply_to(&req, t2, Utc::now() + shift, 2, *b"TEST", -20);
            match answer {
                Answer::Never => continue,
                Answer::ZeroTransmit => rep.transmit = NtpTimestamp::ZERO,
                Answer::KissOfDeath => {
                    rep.stratum = 0;
                    rep.reference_id = *b"RATE";
                }
                Answer::WrongOrigin => rep.origin = NtpTimestamp(rep.origin.0 ^ 0xffff),
                _ => {}
            }
            if let Answer::SlowReturn(d) = answer {
                tokio::time::sleep(d).await;
            }
            let sender = if matches!(answer, Answer::FromElsewhere) {
                &other
            } else {
                &socket
            };
            let _ = sender.send_to(&rep.encode(), from).await;
        }
    });
    addr
}

const T: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_shifted_server_is_measured_within_the_bound() {
    let addr = server("127.0.40.1", Answer::Shifted(TimeDelta::seconds(-25))).await;
    let b = burst(&addr.to_string(), 123, 8, T, true).await;
    let s = b.best.expect("a sample");
    assert_eq!((b.tried, b.accepted), (8, 8));
    // We are 25 s ahead of that server.
    assert!((s.offset_s - 25.0).abs() <= s.bound_s, "{s:?}");
    assert!(s.bound_s < 0.05, "{s:?}");
}

#[tokio::test]
async fn bad_replies_are_rejected_with_their_reason_and_never_give_a_sample() {
    for (ip, answer, why) in [
        ("127.0.40.2", Answer::ZeroTransmit, "zero transmit"),
        ("127.0.40.3", Answer::WrongOrigin, "timeout"),
        ("127.0.40.4", Answer::FromElsewhere, "timeout"),
        ("127.0.40.5", Answer::Never, "timeout"),
    ] {
        let addr = server(ip, answer).await;
        let b = burst(&addr.to_string(), 123, 3, T, false).await;
        assert!(b.best.is_none(), "{why}: {b:?}");
        // A server that answers nothing usable is given up after two timeouts in a row.
        let tried = if why == "timeout" { 2 } else { 3 };
        assert_eq!((b.tried, b.accepted), (tried, 0), "{why}");
        assert!(b.error.contains(why), "{why}: {}", b.error);
    }
}

/// Dead NTP servers cost two timeouts each, all at once, not a full burst one after another.
#[tokio::test]
async fn dead_servers_are_given_up_quickly_and_together() {
    let mut dead = vec![];
    for i in 0..6 {
        dead.push(
            server(&format!("127.0.40.{}", 20 + i), Answer::Never)
                .await
                .to_string(),
        );
    }
    let alive = server("127.0.40.30", Answer::Shifted(TimeDelta::zero())).await;
    let cfg = ClockConfig {
        aggregator: alive.to_string(),
        ntp_servers: dead,
        interval: Duration::from_secs(30),
        burst: 8,
        timeout: T,
    };
    let started = std::time::Instant::now();
    let m = measure(&cfg).await;
    // Two timeouts and a spacing, not 6 servers x 8 x (timeout + spacing).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(m.ntp.len(), 6);
    assert!(
        m.ntp
            .iter()
            .all(|n| n.offset.as_ref().unwrap().error.contains("timeout"))
    );
    assert!(m.aggregator.unwrap().offset_seconds.is_some());
}

#[tokio::test]
async fn a_slow_lopsided_link_gives_a_wide_but_honest_bound() {
    // The server is on our clock; its replies take 1.2 s back. The offset is off by about 0.6 s,
    // and the bound says so.
    let addr = server(
        "127.0.40.7",
        Answer::SlowReturn(Duration::from_millis(1200)),
    )
    .await;
    let b = burst(&addr.to_string(), 123, 2, Duration::from_secs(3), true).await;
    let s = b.best.expect("a sample");
    assert!(s.offset_s > 0.5, "{s:?}");
    assert!(s.offset_s.abs() <= s.bound_s, "{s:?}");
    assert!(s.delay_s > 1.1, "{s:?}");
}

#[tokio::test]
async fn a_kiss_of_death_stops_the_burst() {
    let addr = server("127.0.40.6", Answer::KissOfDeath).await;
    let b = burst(&addr.to_string(), 123, 8, T, false).await;
    assert_eq!((b.tried, b.accepted), (1, 0));
    assert!(b.error.contains("kiss-o'-death RATE"), "{}", b.error);
}

#[test]
fn ports_are_added_only_when_missing() {
    assert_eq!(with_port("127.0.0.1", 123), "127.0.0.1:123");
    assert_eq!(with_port("127.0.0.1:9", 123), "127.0.0.1:9");
    assert_eq!(with_port("::1", 123), "[::1]:123");
    assert_eq!(with_port("[::1]:9", 123), "[::1]:9");
    assert_eq!(with_port("time.example", 8123), "time.example:8123");
    assert_eq!(with_port("time.example:77", 8123), "time.example:77");
}
