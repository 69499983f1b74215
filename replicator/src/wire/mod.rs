//! The link protocol, version 1, on the wire: the frame layout and codec (`frame`), the
//! codes of `Error` frames (`code`), compression of batches on the link (`codec`), QUIC close codes, and frames read from and written
//! to QUIC streams under limits (`io`). docs/link-protocol.md describes the exchange.
//!
//! The generated protobuf types (`proto::link::v1`) are built and read by the modules that
//! make and take frames; nothing outside the crate sees them.

mod code;
pub mod codec;
pub mod frame;
pub mod io;
pub mod message;

pub use code::LinkCode;
pub use codec::{Codec, CompressionSetting};
pub use frame::{BatchesFrame, Frame, FrameError, FrameKind};
pub use io::{FrameLimits, StreamError};
pub use message::ErrorFrame;

/// ALPN of link protocol version 1. A peer speaking another version fails the TLS
/// handshake (no common ALPN) instead of misreading frames.
pub const ALPN: &[u8] = b"georouter-link/1";
/// ALPN of a data-only connection (version 1 too). A node that plans its region's
/// replication offers both, the link first; a node that only pulls and serves its share
/// (a region of several) offers this one alone, so a neighbour dialling a link there learns
/// from the handshake that another node holds the region's links.
pub const DATA_ALPN: &[u8] = b"georouter-data/1";
pub const PROTOCOL_VERSION: u32 = 1;

/// The Hello feature that says "serve me my new sub-logs before I ask" (`Frame::Push`).
pub const PUSH_FEATURE: &str = "push";

/// The Hello feature of a data-only connection: another node of the peer region pulls
/// sub-logs over it (its share of the region's pulls, see the crew module), under the link the
/// region's planning node holds; it carries no link state, tasks or heartbeats.
pub const DATA_ONLY_FEATURE: &str = "data-only";

/// The Hello feature of a region that serves data-only connections under its links: only
/// then does the peer's planning node give the sub-logs it pulls from it to other nodes.
pub const DATA_CONNECTIONS_FEATURE: &str = "data-connections";

/// A refusal sent to the peer as an `Error` frame: the code and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: LinkCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: LinkCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// The link's one mapping of a storage error on the serving side: a topic or
    /// partition that is not there, or a failure to read what is.
    pub fn from_storage(error: &broker::BrokerError) -> Self {
        use broker::BrokerError as E;
        let code = match error {
            E::UnknownTopic { .. } | E::UnknownPartition { .. } | E::TopicDeleted { .. } => {
                LinkCode::UnknownTopic
            }
            _ => LinkCode::Storage,
        };
        Refusal::new(code, error.to_string())
    }

    pub fn to_frame(&self) -> Frame {
        Frame::Error(ErrorFrame {
            code: self.code.as_str().to_string(),
            message: self.message.clone(),
        })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// QUIC application error codes used when resetting streams or closing connections.
pub mod close {
    use quinn::VarInt;
    pub const NORMAL: VarInt = VarInt::from_u32(0);
    /// The peer sent bad frames; the stream is reset and re-opened.
    pub const BAD_FRAME: VarInt = VarInt::from_u32(1);
    /// The peer's Hello was wrong (version, region).
    pub const BAD_HELLO: VarInt = VarInt::from_u32(2);
    /// A newer connection from the same region replaced this one.
    pub const REPLACED: VarInt = VarInt::from_u32(3);
    /// The region is not a configured peer.
    pub const UNKNOWN_REGION: VarInt = VarInt::from_u32(4);
    pub const SHUTDOWN: VarInt = VarInt::from_u32(5);
    /// No heartbeat was answered for `CLOSE_AFTER_INTERVALS`: the dialling side redials
    /// (a connection whose retransmission timers backed off during a partition would
    /// otherwise resume seconds after the network heals).
    pub const SILENT: VarInt = VarInt::from_u32(6);
    /// A pushed sub-log stream the receiver does not adopt (it pulls the sub-log from
    /// elsewhere, or from another position): it subscribes as usual.
    pub const NOT_ADOPTED: VarInt = VarInt::from_u32(7);
    /// A data-only connection from a region this one has no link with now (or the link
    /// ended): the peer dials again once its planning node's link is up.
    pub const NO_LINK: VarInt = VarInt::from_u32(8);
}
