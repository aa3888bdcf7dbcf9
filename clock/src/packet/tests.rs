use super::*;
use proptest::prelude::*;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[test]
fn timestamps_round_trip_to_the_nanosecond_scale() {
    for s in [
        "1970-01-01T00:00:00Z",
        "2026-12-03T16:00:00.123456789Z",
        "2036-02-07T06:28:15Z",
        "2036-02-07T06:28:16Z",
        "2040-01-01T00:00:00.5Z",
    ] {
        let back = NtpTimestamp::from_time(t(s)).to_time();
        assert!(
            (back - t(s)).num_nanoseconds().unwrap().abs() <= 1,
            "{s} -> {back}"
        );
    }
}

#[test]
fn known_wire_values() {
    // 1900-01-01 + 2^31 s is 1968-01-20T03:14:08Z; the Unix epoch is 2208988800 s.
    assert_eq!(
        NtpTimestamp::from_time(t("1970-01-01T00:00:00Z")).0,
        2_208_988_800u64 << 32
    );
    assert_eq!(
        NtpTimestamp::from_time(t("1970-01-01T00:00:00.5Z")).0,
        (2_208_988_800u64 << 32) | 0x8000_0000
    );
    // Era 1 starts 2036-02-07T06:28:16Z with seconds 0.
    assert_eq!(
        NtpTimestamp::from_time(t("2036-02-07T06:28:16Z")).0 >> 32,
        0
    );
}

#[test]
fn a_packet_encodes_and_decodes_and_short_input_is_an_error() {
    let p = Packet {
        leap: 1,
        version: 4,
        mode: Mode::Server,
        stratum: 2,
        poll: 6,
        precision: -20,
        root_delay: to_short(0.015),
        root_dispersion: to_short(0.002),
        reference_id: *b"AWAG",
        reference: NtpTimestamp(1),
        origin: NtpTimestamp(2),
        receive: NtpTimestamp(3),
        transmit: NtpTimestamp(u64::MAX),
    };
    let b = p.encode();
    assert_eq!(b[0], 0b01_100_100);
    assert_eq!(Packet::decode(&b), Ok(p));
    let mut longer = b.to_vec();
    longer.extend_from_slice(&[0; 20]);
    assert_eq!(Packet::decode(&longer), Ok(p));
    assert_eq!(Packet::decode(&b[..47]), Err(PacketError::Short(47)));
    assert!((p.root_distance_s() - 0.0095).abs() < 1e-4);
    assert_eq!(p.kiss_code(), None);
    let kod = Packet {
        stratum: 0,
        reference_id: *b"RATE",
        ..p
    };
    assert_eq!(kod.kiss_code().as_deref(), Some("RATE"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]
    #[test]
    fn any_48_bytes_decode_and_encode_back(bytes in proptest::collection::vec(any::<u8>(), 48)) {
        let p = Packet::decode(&bytes).unwrap();
        prop_assert_eq!(p.encode().to_vec(), bytes);
    }

    #[test]
    // 1968-01-20T03:14:08Z (2^31 s after 1900) to 2103: what RFC 4330's era rule maps back.
    fn times_between_1968_and_2104_round_trip(secs in -61_505_152i64..4_200_000_000i64, nanos in 0u32..1_000_000_000) {
        let at = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
        let back = NtpTimestamp::from_time(at).to_time();
        prop_assert!((back - at).num_nanoseconds().unwrap().abs() <= 1);
    }
}
