//! The codes a region puts in `Error` frames: one enum, so the set of codes on the wire is
//! the set in this file (docs/errors.md is checked against [`LinkCode::ALL`]).

proto::stable_codes! {
    /// Why a region refused or ended a sub-log stream (`Error.code` on the wire).
    #[non_exhaustive]
    pub enum LinkCode {
        /// A frame could not be decoded (bad length, kind, body, batch CRC).
        Malformed => "MALFORMED_FRAME",
        /// A frame longer than the receiver's limit.
        Oversized => "OVERSIZED_FRAME",
        /// A frame that is well formed but not allowed here (order, kind).
        Protocol => "PROTOCOL",
        /// No running task lets the requesting region pull that topic from the sender.
        NotAllowed => "NOT_ALLOWED",
        /// The requested topic or partition does not exist on the sender.
        UnknownTopic => "UNKNOWN_TOPIC",
        /// The requesting region is on the data's hop path, or the path is too long.
        Loop => "LOOP",
        /// Storage failed on the serving side.
        Storage => "STORAGE",
        /// A pass-through relay has no way on towards the origin now.
        NoRoute => "NO_ROUTE",
        /// The server does not hold the requested records (a hole in a relay's copy): the
        /// puller takes the sub-log from another region for a while.
        MissingRecords => "MISSING_RECORDS",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_and_codes_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for code in LinkCode::ALL {
            assert_eq!(LinkCode::parse(code.as_str()), Some(*code));
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
        assert_eq!(LinkCode::parse("SOMETHING_ELSE"), None);
    }
}
