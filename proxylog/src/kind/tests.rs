use super::*;

fn mk_alert(name: &str) -> AlertName {
    AlertName::new(name).expect("valid alert name")
}

#[test]
fn every_kind_name_round_trips_through_display_and_from_str() {
    let kinds = [
        Kind::BadSignature,
        Kind::UnknownIssuer,
        Kind::Expired,
        Kind::NotValidYet,
        Kind::NotValidForName,
        Kind::IdentityUnreachable,
        Kind::LocalCertRejected,
        Kind::AlertReceived(mk_alert("BadCertificate")),
        Kind::AlertSent(mk_alert("AlertDescription(0x2a)")),
        Kind::WaitingForIdentity,
        Kind::Ignore,
    ];
    for kind in kinds {
        let name = kind.to_string();
        assert_eq!(name.parse::<Kind>(), Ok(kind), "{name}");
    }
}

#[test]
fn kinds_display_with_the_normative_names() {
    assert_eq!(Kind::BadSignature.to_string(), "BAD_SIGNATURE");
    assert_eq!(Kind::NotValidForName.to_string(), "NOT_VALID_FOR_NAME");
    assert_eq!(Kind::LocalCertRejected.to_string(), "LOCAL_CERT_REJECTED");
    assert_eq!(
        Kind::AlertSent(mk_alert("BadCertificate")).to_string(),
        "ALERT_SENT(BadCertificate)"
    );
    assert_eq!(
        Kind::AlertReceived(mk_alert("UnknownCA")).to_string(),
        "ALERT_RECEIVED(UnknownCA)"
    );
}

#[test]
fn unknown_or_malformed_kind_names_are_rejected() {
    for name in [
        "",
        "bad_signature",
        "ALERT_SENT",
        "ALERT_SENT()",
        "ALERT_SENT(BadCertificate",
        "ALERT_LOST(BadCertificate)",
        "ALERT_SENT(Bad Certificate)",
        "ALERT_SENT(ThisAlertNameIsFarTooLongToBeARealOne)",
    ] {
        assert_eq!(name.parse::<Kind>(), Err(ParseKindError), "{name:?}");
    }
}

#[test]
fn alert_names_are_identifiers_with_an_optional_code() {
    assert!(AlertName::new("BadCertificate").is_some());
    assert!(AlertName::new("AlertDescription(0xff)").is_some());
    assert!(AlertName::new("").is_none());
    assert!(AlertName::new("0x2a").is_none());
    assert!(AlertName::new("Bad(").is_none());
    assert!(AlertName::new("Bad()").is_none());
    assert!(AlertName::new("Bad(1)x").is_none());
    assert!(AlertName::new("BädCertificate").is_none());
}

#[test]
fn alert_name_prefix_stops_at_the_end_of_the_name() {
    let read = |text: &str| AlertName::read_prefix(text.as_bytes()).map(|a| a.to_string());
    assert_eq!(read("BadCertificate"), Some("BadCertificate".into()));
    assert_eq!(
        read("BadCertificate, closing"),
        Some("BadCertificate".into())
    );
    assert_eq!(
        read("AlertDescription(0x2a)]"),
        Some("AlertDescription(0x2a)".into())
    );
    assert_eq!(read("Unknown(7"), Some("Unknown".into()));
    assert_eq!(read(" BadCertificate"), None);
    assert_eq!(read(&"A".repeat(AlertName::CAPACITY + 1)), None);
}

#[test]
fn only_certificate_verdicts_are_verification_kinds() {
    assert!(Kind::BadSignature.is_verification());
    assert!(Kind::NotValidForName.is_verification());
    assert!(!Kind::LocalCertRejected.is_verification());
    assert!(!Kind::AlertSent(mk_alert("BadCertificate")).is_verification());
}
