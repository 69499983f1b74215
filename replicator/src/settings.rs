//! Tuning of the replication links, with the defaults measured on loopback and over the
//! WAN emulator (docs/performance.md).

use std::time::Duration;

use crate::wire::CompressionSetting;

/// How links behave. Windows bound what one link keeps in flight: throughput over
/// distance is window / RTT, so 200 MB/s at 60 ms RTT needs 16-64 MiB.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    /// QUIC receive window of one stream (one sub-log).
    pub stream_window_bytes: u64,
    /// QUIC receive window of the connection (all sub-logs of a link).
    pub connection_window_bytes: u64,
    /// QUIC send window of the connection: the most it may grow to (`link::congestion`
    /// sizes it from the path).
    pub send_window_bytes: u64,
    /// Bytes of batches a link holds in memory each way (read for sending, received and
    /// not yet applied), however many sub-logs it carries.
    pub link_buffer_bytes: usize,
    /// The rate a link may always send at once it has measured its round trip, in Mbit/s:
    /// the congestion window never drops below this rate × the minimum RTT (nor below
    /// 1 MiB). Set it below the narrowest inter-region path's capacity; 0 turns it off.
    pub min_rate_mbps: u64,
    /// Whether batches are packed on the links (`link::compression`): off, auto (when the
    /// measured link is the bottleneck), or always with a codec the peer unpacks.
    pub compression: CompressionSetting,
    /// Whether this region serves its new sub-logs to the neighbours that need them before
    /// they ask (`serve::push`), and takes such pushes from its neighbours.
    pub push: bool,
    /// SO_RCVBUF / SO_SNDBUF of the UDP socket (quinn leaves the OS default).
    pub socket_buffer_bytes: usize,
    /// Largest frame accepted; larger frames are refused as oversized.
    pub max_frame_bytes: usize,
    /// A Batches frame is filled up to about this many bytes of batches.
    pub frame_target_bytes: usize,
    /// Longest hop path (regions, origin included) a batch may carry.
    pub hop_limit: usize,
    pub advertise_interval: Duration,
    pub heartbeat_interval: Duration,
    /// A link with no packet for this long is dropped.
    pub idle_timeout: Duration,
    /// First and longest wait between reconnects (doubling, with jitter).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How often task checkpoints and lag gauges are written.
    pub checkpoint_interval: Duration,
    /// How often the console's history samples lag and throughput (an hour of samples
    /// is kept).
    pub history_interval: Duration,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            stream_window_bytes: 16 << 20,
            connection_window_bytes: 64 << 20,
            send_window_bytes: 64 << 20,
            link_buffer_bytes: 64 << 20,
            min_rate_mbps: 400,
            compression: CompressionSetting::Auto,
            push: true,
            socket_buffer_bytes: 4 << 20,
            max_frame_bytes: 8 << 20,
            frame_target_bytes: 1 << 20,
            hop_limit: 8,
            advertise_interval: Duration::from_millis(100),
            heartbeat_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            checkpoint_interval: Duration::from_secs(1),
            history_interval: Duration::from_secs(10),
        }
    }
}
