//! When a certificate stops being valid: its `notAfter`, read from the DER of an X.509
//! certificate (the first of a PEM file), so that certificates close to expiry are reported
//! before they break links and clients.

/// A DER element: (tag, contents, the rest after it).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[count..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Seconds since the epoch of a UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let full = match tag {
        0x17 => {
            let yy: i64 = text.get(0..2)?.parse().ok()?;
            format!("{}{}", if yy >= 50 { 19 } else { 20 }, text)
        }
        0x18 => text.to_string(),
        _ => return None,
    };
    // yyyyMMddHHmmssZ → the signature module's yyyyMMddTHHmmssZ.
    let iso = format!("{}T{}", full.get(0..8)?, full.get(8..)?);
    crate::signature::parse_date_time(&iso)
}

/// The `notAfter` (seconds since the epoch) of the DER certificate `der`.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, certificate, _) = element(der)?;
    let (_, mut tbs, _) = element(certificate)?;
    // An explicit version [0] comes first when present.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    // serialNumber, signature, issuer, then validity.
    for _ in 0..3 {
        tbs = element(tbs)?.2;
    }
    let (_, validity, _) = element(tbs)?;
    let (_, _, after_not_before) = element(validity)?;
    let (tag, not_after, _) = element(after_not_before)?;
    time(tag, not_after)
}

/// The `notAfter` of the first certificate of PEM `text`.
pub fn not_after_pem(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let start = text.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = start + text[start..].find("-----END CERTIFICATE-----")?;
    let base64: String = text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    not_after(&decode_base64(&base64)?)
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let take = chunk.len().saturating_sub(1);
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    fn certificate(year: i32) -> String {
        let mut params = rcgen::CertificateParams::new(vec!["test".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn reads_the_not_after_of_a_certificate() {
        // UTCTime before 2050, GeneralizedTime from then on.
        assert_eq!(
            super::not_after_pem(certificate(2030).as_bytes()),
            Some(1_893_456_000)
        );
        assert_eq!(
            super::not_after_pem(certificate(2051).as_bytes()),
            Some(2_556_144_000)
        );
        assert_eq!(super::not_after_pem(b"not a certificate"), None);
    }
}
