//! The RocketMQ SDKs' request signature: `authorization: MQv2-HMAC-SHA1
//! Credential=<access key>, SignedHeaders=x-mq-date-time, Signature=<hex>` where the
//! signature is HMAC-SHA1 of the `x-mq-date-time` header (`yyyyMMddTHHmmssZ`) under the
//! principal's secret. A signature proves the secret; the date bounds how long a captured
//! header can be replayed (use TLS against capture).

use std::time::Duration;

/// The algorithm the SDKs name.
pub const ALGORITHM: &str = "MQv2-HMAC-SHA1";

/// The signature of `date_time` under `secret`, lowercase hex.
pub fn sign(secret: &str, date_time: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, date_time.as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `signature` (hex, either case) signs `date_time` under `secret`, in constant
/// time in the signature.
pub fn verify(secret: &str, date_time: &str, signature: &str) -> bool {
    let expected = sign(secret, date_time);
    crate::same(
        expected.as_bytes(),
        signature.to_ascii_lowercase().as_bytes(),
    )
}

/// Seconds since the epoch of `yyyyMMddTHHmmssZ`, or `None` if it is not one.
pub fn parse_date_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Whether `date_time` is within `skew` of `now_s` (seconds since the epoch).
pub fn fresh(date_time: &str, now_s: i64, skew: Duration) -> bool {
    parse_date_time(date_time).is_some_and(|t| (now_s - t).unsigned_abs() <= skew.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_matches_hmac_sha1_of_the_date_under_the_secret() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        let signature = sign("secret", "20261203T101500Z");
        assert!(verify("secret", "20261203T101500Z", &signature));
        assert!(verify(
            "secret",
            "20261203T101500Z",
            &signature.to_uppercase()
        ));
        assert!(!verify("secreT", "20261203T101500Z", &signature));
        assert!(!verify("secret", "20261203T101501Z", &signature));
    }

    #[test]
    fn dates_are_read_and_bounded() {
        assert_eq!(parse_date_time("19700101T000000Z"), Some(0));
        assert_eq!(parse_date_time("20261203T101500Z"), Some(1_796_292_900));
        assert_eq!(parse_date_time("2026-12-03T10:15"), None);
        assert_eq!(parse_date_time("20261303T101500Z"), None);
        let skew = Duration::from_secs(900);
        assert!(fresh("20261203T101500Z", 1_796_292_900 + 899, skew));
        assert!(!fresh("20261203T101500Z", 1_796_292_900 + 901, skew));
        assert!(!fresh("not a date", 0, skew));
    }
}
