use super::*;
use crate::packet::to_short;
use chrono::TimeDelta;

fn base() -> DateTime<Utc> {
    "2026-12-03T12:00:00Z".parse().unwrap()
}

fn ms(v: i64) -> TimeDelta {
    TimeDelta::milliseconds(v)
}

/// An exchange where the client's clock is `client_ahead` ahead of the server's, the path takes
/// `out` and `back`, and the server holds the request for `hold`.
fn exchange(
    client_ahead: TimeDelta,
    out: TimeDelta,
    back: TimeDelta,
    hold: TimeDelta,
) -> (Packet, Packet, DateTime<Utc>, DateTime<Utc>) {
    let true_send = base();
    let t1 = true_send + client_ahead;
    let request = Packet::request(NtpTimestamp::from_time(t1));
    let t2 = true_send + out;
    let t3 = t2 + hold;
    let reply = reply_to(&request, t2, t3, 2, *b"AWAG", -20);
    let t4 = t3 + back + client_ahead;
    (request, reply, t1, t4)
}

#[test]
fn symmetric_path_gives_the_exact_offset_and_the_bound_holds_for_any_asymmetry() {
    for (out, back) in [(5, 5), (1, 40), (40, 1), (0, 200)] {
        let (req, rep, t1, t4) = exchange(ms(3000), ms(out), ms(back), ms(2));
        let s = check_reply(&req, &rep, t1, t4, 1e-6, true).unwrap();
        assert!(
            (s.delay_s - (out + back) as f64 / 1000.0).abs() < 1e-6,
            "{s:?}"
        );
        assert!((s.offset_s - 3.0).abs() <= s.bound_s, "{out}/{back}: {s:?}");
        if out == back {
            assert!((s.offset_s - 3.0).abs() < 1e-6, "{s:?}");
        }
    }
}

#[test]
fn a_client_behind_has_a_negative_offset() {
    let (req, rep, t1, t4) = exchange(ms(-25_000), ms(1), ms(1), ms(0));
    let s = check_reply(&req, &rep, t1, t4, 1e-6, true).unwrap();
    assert!((s.offset_s + 25.0).abs() < 1e-5, "{s:?}");
    assert_eq!(s.root_distance_s, 0.0);
}

#[test]
fn a_slow_link_gives_an_honest_wide_bound() {
    // Three seconds out, no time back: the offset is off by 1.5 s, and the bound says so.
    let (req, rep, t1, t4) = exchange(ms(0), ms(3000), ms(0), ms(0));
    let s = check_reply(&req, &rep, t1, t4, 1e-6, true).unwrap();
    assert!(
        s.offset_s.abs() > 1.4 && s.offset_s.abs() <= s.bound_s,
        "{s:?}"
    );
}

#[test]
fn bad_replies_are_rejected_with_their_reason() {
    let (req, rep, t1, t4) = exchange(ms(0), ms(1), ms(1), ms(0));
    let check = |p: Packet| check_reply(&req, &p, t1, t4, 1e-6, false);
    assert_eq!(
        check(Packet {
            transmit: NtpTimestamp::ZERO,
            ..rep
        }),
        Err(ReplyError::ZeroTimestamp("transmit"))
    );
    assert_eq!(
        check(Packet {
            receive: NtpTimestamp::ZERO,
            ..rep
        }),
        Err(ReplyError::ZeroTimestamp("receive"))
    );
    assert_eq!(
        check(Packet {
            stratum: 0,
            reference_id: *b"DENY",
            ..rep
        }),
        Err(ReplyError::KissOfDeath("DENY".into()))
    );
    assert_eq!(
        check(Packet {
            origin: NtpTimestamp(rep.origin.0 ^ 1),
            ..rep
        }),
        Err(ReplyError::WrongOrigin)
    );
    assert_eq!(
        check(Packet {
            mode: Mode::Client,
            ..rep
        }),
        Err(ReplyError::WrongMode(Mode::Client))
    );
    assert_eq!(
        check(Packet { version: 7, ..rep }),
        Err(ReplyError::BadVersion(7))
    );
    assert!(matches!(
        check(Packet { leap: 3, ..rep }),
        Err(ReplyError::Unsynchronised { leap: 3, .. })
    ));
    assert!(matches!(
        check(Packet { stratum: 16, ..rep }),
        Err(ReplyError::Unsynchronised { stratum: 16, .. })
    ));
    // The server's clock jumped back between receive and transmit.
    assert!(matches!(
        check(Packet {
            transmit: NtpTimestamp::from_time(rep.receive.to_time() - ms(500)),
            ..rep
        }),
        Err(ReplyError::ServerTimeReversed(_))
    ));
}

#[test]
fn a_client_clock_step_during_the_exchange_is_rejected() {
    let (req, rep, t1, _) = exchange(ms(0), ms(1), ms(1), ms(0));
    // The client's clock stepped back a second before the reply arrived.
    let t4 = t1 - ms(1000);
    assert!(matches!(
        check_reply(&req, &rep, t1, t4, 1e-6, true),
        Err(ReplyError::NegativeDelay(_))
    ));
}

#[test]
fn an_ntp_servers_root_distance_widens_the_bound_to_true_time() {
    let (req, mut rep, t1, t4) = exchange(ms(0), ms(1), ms(1), ms(0));
    rep.root_delay = to_short(0.020);
    rep.root_dispersion = to_short(0.005);
    let s = check_reply(&req, &rep, t1, t4, 1e-6, false).unwrap();
    assert!((s.root_distance_s - 0.015).abs() < 1e-4);
    assert!((s.bound_to_true_time_s() - s.bound_s - 0.015).abs() < 1e-4);
}

mod bound {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, rng_seed: proptest::test_runner::RngSeed::Fixed(11), ..ProptestConfig::default() })]
        /// Whatever the shift and however lopsided the path, the injected shift lies within the
        /// reported bound (the wire's nanosecond rounding is inside the precision term).
        #[test]
        fn the_bound_always_holds(
            ahead_us in -100_000_000i64..100_000_000,
            out_us in 0i64..5_000_000,
            back_us in 0i64..5_000_000,
            hold_us in 0i64..50_000,
        ) {
            let us = TimeDelta::microseconds;
            let (req, rep, t1, t4) = exchange(us(ahead_us), us(out_us), us(back_us), us(hold_us));
            let s = check_reply(&req, &rep, t1, t4, 1e-6, true).unwrap();
            prop_assert!((s.offset_s - ahead_us as f64 / 1e6).abs() <= s.bound_s, "{:?}", s);
        }
    }
}
