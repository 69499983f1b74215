//! Receipt handles: opaque to the client, they name the message's identity in the
//! partition and the nonce of the delivery they belong to, so a handle that was replaced
//! (by a later delivery or a change of invisibility) is refused.
//!
//! Layout: `v1.{partition}.{offset}.{nonce hex}.{origin}` (the origin last: region ids may
//! hold dots).

/// What a receipt handle names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handle {
    pub partition: u32,
    pub origin: String,
    pub offset: u64,
    pub nonce: u64,
}

impl Handle {
    pub fn encode(&self) -> String {
        format!(
            "v1.{}.{}.{:x}.{}",
            self.partition, self.offset, self.nonce, self.origin
        )
    }

    /// The handle `text` names, or what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(5, '.');
        let bad = || format!("\"{text}\" is not a receipt handle of this access point");
        if parts.next() != Some("v1") {
            return Err(bad());
        }
        let partition = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let offset = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let nonce = parts
            .next()
            .and_then(|p| u64::from_str_radix(p, 16).ok())
            .ok_or_else(bad)?;
        let origin = parts.next().filter(|o| !o.is_empty()).ok_or_else(bad)?;
        Ok(Handle {
            partition,
            origin: origin.to_string(),
            offset,
            nonce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_garbage_is_refused() {
        let handle = Handle {
            partition: 3,
            origin: "eu.west-1".into(),
            offset: 42,
            nonce: 0xdead,
        };
        assert_eq!(Handle::parse(&handle.encode()).unwrap(), handle);
        for bad in [
            "",
            "v2.1.2.3.eu",
            "v1.x.2.3.eu",
            "v1.1.2.zz.eu",
            "v1.1.2.3.",
            "v1.1.2",
        ] {
            let error = Handle::parse(bad).unwrap_err();
            assert!(error.contains("not a receipt handle"), "{bad}: {error}");
        }
    }
}
