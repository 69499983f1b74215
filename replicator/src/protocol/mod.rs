//! The link protocol, version 1. See ARCHITECTURE.md ("Link protocol") for the whole
//! exchange; `frame` owns the byte layout.

pub mod frame;

pub use frame::{BatchesFrame, Frame, FrameError, FrameKind};

/// ALPN of link protocol version 1. A peer speaking another version fails the TLS
/// handshake (no common ALPN) instead of misreading frames.
pub const ALPN: &[u8] = b"georouter-link/1";
pub const PROTOCOL_VERSION: u32 = 1;

/// Codes carried by `Error` frames and stream resets.
pub mod codes {
    /// A frame could not be decoded (bad length, kind, body, batch CRC).
    pub const MALFORMED: &str = "MALFORMED_FRAME";
    /// A frame longer than the receiver's limit.
    pub const OVERSIZED: &str = "OVERSIZED_FRAME";
    /// A frame that is well formed but not allowed here (order, kind).
    pub const PROTOCOL: &str = "PROTOCOL";
    /// No task lets this region pull that topic from the sender.
    pub const NOT_ALLOWED: &str = "NOT_ALLOWED";
    pub const UNKNOWN_TOPIC: &str = "UNKNOWN_TOPIC";
    /// The requesting region is on the data's hop path, or the path is too long.
    pub const LOOP: &str = "LOOP";
    /// Storage failed on the serving side.
    pub const STORAGE: &str = "STORAGE";
    /// A pass-through relay has no way on towards the origin now.
    pub const NO_ROUTE: &str = "NO_ROUTE";
    /// The server does not hold the requested records (a hole in a relay's copy): the
    /// puller takes the sub-log from another region for a while.
    pub const MISSING_RECORDS: &str = "MISSING_RECORDS";
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
}
