//! The codes a region puts in `Error` frames: one enum, so the set of codes on the wire is
//! the set in this file (the documentation's table is checked against [`LinkCode::ALL`]).

use std::fmt;

/// Why a region refused or ended a sub-log stream (`Error.code` on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkCode {
    /// A frame could not be decoded (bad length, kind, body, batch CRC).
    Malformed,
    /// A frame longer than the receiver's limit.
    Oversized,
    /// A frame that is well formed but not allowed here (order, kind).
    Protocol,
    /// No running task lets the requesting region pull that topic from the sender.
    NotAllowed,
    /// The requested topic or partition does not exist on the sender.
    UnknownTopic,
    /// The requesting region is on the data's hop path, or the path is too long.
    Loop,
    /// Storage failed on the serving side.
    Storage,
    /// A pass-through relay has no way on towards the origin now.
    NoRoute,
    /// The server does not hold the requested records (a hole in a relay's copy): the
    /// puller takes the sub-log from another region for a while.
    MissingRecords,
}

impl LinkCode {
    pub const ALL: [LinkCode; 9] = [
        LinkCode::Malformed,
        LinkCode::Oversized,
        LinkCode::Protocol,
        LinkCode::NotAllowed,
        LinkCode::UnknownTopic,
        LinkCode::Loop,
        LinkCode::Storage,
        LinkCode::NoRoute,
        LinkCode::MissingRecords,
    ];

    /// The code as it travels in `Error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkCode::Malformed => "MALFORMED_FRAME",
            LinkCode::Oversized => "OVERSIZED_FRAME",
            LinkCode::Protocol => "PROTOCOL",
            LinkCode::NotAllowed => "NOT_ALLOWED",
            LinkCode::UnknownTopic => "UNKNOWN_TOPIC",
            LinkCode::Loop => "LOOP",
            LinkCode::Storage => "STORAGE",
            LinkCode::NoRoute => "NO_ROUTE",
            LinkCode::MissingRecords => "MISSING_RECORDS",
        }
    }

    /// The code a peer sent, if it is one of this version's.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl fmt::Display for LinkCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_and_codes_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for code in LinkCode::ALL {
            assert_eq!(LinkCode::parse(code.as_str()), Some(code));
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
        assert_eq!(LinkCode::parse("SOMETHING_ELSE"), None);
    }
}
