//! How georouter's names become JetStream names. Topic, group, task and region names may
//! hold '.', which separates subject tokens, and '%', which bucket and stream names may
//! not hold; a name therefore becomes a *token*: ASCII letters, digits and '-' stay as
//! they are, every other byte becomes '_' and two upper-case hex digits ('.' is `_2E`,
//! '_' itself `_5F`). The empty name is the token `_`, which no other name produces
//! (an escape is always three characters). Tokens are valid in subjects, KV keys, bucket
//! names and stream names, and two names never share a token.

/// The token of `name`.
pub fn token(name: &str) -> String {
    if name.is_empty() {
        return "_".to_string();
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('_');
            out.push_str(&format!("{b:02X}"));
        }
    }
    out
}

/// The name a token stands for; `None` when `token` is not one [`token`] produces.
pub fn name(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let hex = token.get(i + 1..i + 3)?;
                let b = u8::from_str_radix(hex, 16).ok()?;
                if b.is_ascii_alphanumeric() || b == b'-' || hex != format!("{b:02X}") {
                    return None;
                }
                out.push(b);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// The KV bucket holding region `region`'s metadata.
pub fn meta_bucket(region: &str) -> String {
    format!("georouter-meta-{}", token(region))
}

/// The stream holding region `region`'s copy of every sub-log of one creation of a topic:
/// `georouter_R<region>_T<topic>_I<incarnation>`. A token never holds `_R`, `_T` or `_I`
/// (after '_' come two hex digits), so the parts cannot run into each other.
pub fn topic_stream(region: &str, topic: &str, incarnation: u64) -> String {
    format!("{}{incarnation}", topic_stream_prefix(region, topic))
}

/// What the name of every creation's stream of a topic begins with.
pub fn topic_stream_prefix(region: &str, topic: &str) -> String {
    format!("georouter_R{}_T{}_I", token(region), token(topic))
}

/// The subjects of [`topic_stream`]: `georouter.<region>.<topic>.<incarnation>.>`.
pub fn topic_subjects(region: &str, topic: &str, incarnation: u64) -> String {
    format!(
        "georouter.{}.{}.{incarnation}.>",
        token(region),
        token(topic)
    )
}

/// The subjects of one partition of [`topic_stream`], every origin's sub-log.
pub fn partition_subjects(region: &str, topic: &str, incarnation: u64, partition: u32) -> String {
    format!(
        "georouter.{}.{}.{incarnation}.{partition}.*",
        token(region),
        token(topic)
    )
}

/// The subject of one origin sub-log in region `region`'s copy of a topic.
pub fn sub_log_subject(
    region: &str,
    topic: &str,
    incarnation: u64,
    partition: u32,
    origin: &str,
) -> String {
    format!(
        "georouter.{}.{}.{incarnation}.{partition}.{}",
        token(region),
        token(topic),
        token(origin)
    )
}

/// The partition and origin of a sub-log subject of region `region`'s streams.
pub fn parse_sub_log_subject(region: &str, subject: &str) -> Option<(u32, String)> {
    let mut parts = subject.split('.');
    if parts.next()? != "georouter" || parts.next()? != token(region) {
        return None;
    }
    let (_topic, _incarnation) = (parts.next()?, parts.next()?);
    let partition = parts.next()?.parse().ok()?;
    let origin = name(parts.next()?)?;
    parts.next().is_none().then_some((partition, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_plain_names_and_escape_the_rest() {
        assert_eq!(token("orders-eu"), "orders-eu");
        assert_eq!(token("a.b"), "a_2Eb");
        assert_eq!(token("%DLQ%g_1"), "_25DLQ_25g_5F1");
        assert_eq!(token(""), "_");
    }

    #[test]
    fn every_token_is_valid_in_subjects_keys_buckets_and_streams() {
        for n in ["a.b", "%x%", "under_score", "", "é", "a b*>"] {
            let t = token(n);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{n:?} -> {t:?}"
            );
            assert!(!t.is_empty());
        }
    }

    #[test]
    fn names_round_trip_and_distinct_names_get_distinct_tokens() {
        let names = ["a.b", "a_2Eb", "a_b", "a-b", "", "_", "%DLQ%g", "é.x"];
        let mut seen = std::collections::HashSet::new();
        for n in names {
            let t = token(n);
            assert_eq!(name(&t).as_deref(), Some(n), "{t}");
            assert!(seen.insert(t), "{n} collides");
        }
    }

    #[test]
    fn tokens_no_name_produces_are_refused() {
        for t in ["a.b", "_2", "_zz", "_41", "_2e", "a b"] {
            assert_eq!(name(t), None, "{t}");
        }
    }

    #[test]
    fn a_sub_log_subject_names_its_partition_and_origin() {
        let s = sub_log_subject("eu.west", "orders", 3, 1, "us.east");
        assert_eq!(
            parse_sub_log_subject("eu.west", &s),
            Some((1, "us.east".to_string()))
        );
        assert_eq!(parse_sub_log_subject("eu", &s), None);
        assert_eq!(
            parse_sub_log_subject("eu.west", "georouter.eu_2Ewest.x"),
            None
        );
    }

    #[test]
    fn a_sub_log_subject_is_inside_its_partition_and_topic() {
        let s = sub_log_subject("eu.west", "orders", 3, 1, "us");
        assert_eq!(s, "georouter.eu_2Ewest.orders.3.1.us");
        assert!(topic_subjects("eu.west", "orders", 3).ends_with(".>"));
        assert_eq!(
            topic_stream("eu.west", "orders", 3),
            "georouter_Reu_2Ewest_Torders_I3"
        );
        // One topic's prefix does not begin another's stream.
        assert!(!topic_stream("r", "a-b", 3).starts_with(&topic_stream_prefix("r", "a")));
        assert!(s.starts_with(topic_subjects("eu.west", "orders", 3).trim_end_matches('>')));
        assert!(s.starts_with(partition_subjects("eu.west", "orders", 3, 1).trim_end_matches('*')));
    }
}
