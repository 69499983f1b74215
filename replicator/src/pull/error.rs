//! Why a pull of a sub-log stopped, and what follows: whether the link is given up for
//! that sub-log (another source is tried) and the refusal reason counted in metrics.

use broker::BrokerError;

use crate::routing::HopError;
use crate::wire::{LinkCode, Refusal, StreamError};

/// Transient unless [`PullError::gives_up_the_link`]: the stream is re-opened from the
/// held end after a backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PullError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("opening the stream: {0}")]
    Open(#[from] quinn::ConnectionError),
    #[error("peer refused: {0}")]
    Refused(Refusal),
    /// A refusal with a code this version does not know (a newer peer): handled like any
    /// refusal that does not give the link up.
    #[error("peer refused with code {code}: {message}")]
    RefusedUnknown { code: String, message: String },
    /// A received batch may not come here (loop, hop limit).
    #[error("batch at offset {offset}: {error}")]
    Hop {
        offset: u64,
        #[source]
        error: HopError,
    },
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    Storage(#[from] BrokerError),
    #[error(
        "the relay does not hold offsets {held}..{start} of this sub-log (only the origin may skip them); pull them from another region"
    )]
    RelayGap { held: u64, start: u64 },
}

impl PullError {
    /// Errors that this link will keep giving: the sub-log is left to another link.
    pub fn gives_up_the_link(&self) -> bool {
        match self {
            PullError::Hop { .. }
            | PullError::RelayGap { .. }
            | PullError::Storage(BrokerError::StaleIncarnation { .. }) => true,
            // The server does not hold records this region needs (a hole in a relay's copy).
            PullError::Refused(r) => r.code == LinkCode::MissingRecords,
            _ => false,
        }
    }

    /// The refusal reason for metrics, or `None` for errors that are not bad input.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            PullError::Stream(StreamError::Frame(e)) => Some(e.reason()),
            PullError::Stream(StreamError::EndedInFrame) => Some("malformed"),
            PullError::Hop { error, .. } => Some(error.reason()),
            PullError::Protocol(_) => Some("protocol"),
            PullError::Storage(BrokerError::OffsetGap { .. }) => Some("gap"),
            PullError::Storage(BrokerError::OverlappingBatch { .. }) => Some("overlap"),
            PullError::Storage(BrokerError::MalformedBatch(_)) => Some("malformed"),
            PullError::Storage(BrokerError::OwnOrigin { .. }) => Some("loop"),
            PullError::Storage(BrokerError::StaleIncarnation { .. }) => Some("stale_incarnation"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_refusal_means_for_the_link() {
        let missing = PullError::Refused(Refusal::new(LinkCode::MissingRecords, "hole"));
        assert!(missing.gives_up_the_link());
        assert_eq!(
            missing.refusal(),
            None,
            "the peer's refusal is not bad input from it"
        );
        let not_allowed = PullError::Refused(Refusal::new(LinkCode::NotAllowed, "paused"));
        assert!(!not_allowed.gives_up_the_link());
        // A newer peer's code: re-subscribe later, neither counted nor a reset.
        let unknown = PullError::RefusedUnknown {
            code: "SOMETHING_NEW".into(),
            message: "m".into(),
        };
        assert!(!unknown.gives_up_the_link());
        assert_eq!(unknown.refusal(), None);
        let hop = PullError::Hop {
            offset: 3,
            error: crate::routing::HopError::Loop {
                region: "eu".into(),
                path: "eu > us".into(),
            },
        };
        assert!(hop.gives_up_the_link());
        assert_eq!(hop.refusal(), Some("loop"));
    }
}
