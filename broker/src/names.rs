//! Naming rules for topics, regions and consumer groups. Names become directory names
//! and metadata keys, so they are restricted to a portable character set. Topics and
//! groups may also hold '%' (RocketMQ's dead-letter topics are `%DLQ%<group>`).

use crate::error::{BrokerError, Result};

pub const MAX_NAME_LEN: usize = 200;

/// Checks a name of kind `what` (for the error message).
pub fn validate(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("must be at most 200 bytes")
    } else if name == "." || name == ".." {
        Some("must not be '.' or '..'")
    } else if what == "region"
        && !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("may only contain ASCII letters, digits, '.', '_' and '-'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'%'))
    {
        Some("may only contain ASCII letters, digits, '.', '_', '-' and '%'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BrokerError::InvalidName {
            what,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(validate("topic", "orders.eu-1_x").is_ok());
        assert!(
            validate("topic", "%DLQ%billing").is_ok(),
            "dead-letter topics"
        );
        assert!(validate("region", "eu%1").is_err(), "region ids stay plain");
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(201)] {
            assert!(validate("topic", bad).is_err(), "{bad:?} passed");
        }
    }
}
