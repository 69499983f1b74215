//! The links' congestion controller: quinn's BBR with a floor under its window.
//!
//! quinn's BBR (a port of BBR v1) enters PROBE_RTT on the first acknowledgement that is not
//! application-limited, because it has never probed yet, and again every 10 s of traffic
//! that is not application-limited; in PROBE_RTT its window is four packets for at least
//! 200 ms and a round trip. On a replication link that is the first burst of a run (every
//! new sub-log's first records at once) and any busy stretch: measured in the demo at
//! 30 ms one-way, records produced in the first second waited up to 500–800 ms, where the
//! link delay is 30 ms. The floor keeps the window at least at what a fresh connection may
//! send before it has measured anything (the initial window), so probing for the minimum
//! RTT costs no stall; above the floor BBR decides as before (bandwidth, loss recovery).
//!
//! The floor also scales with the path: at least `floor_rate` × the minimum RTT measured
//! (`[replication] min_rate_mbps`, 400 by default). A link redialled after a cut starts a
//! fresh connection, and BBR grew its window from 1 MiB slowly over a long path: a
//! 25 MB backlog crossed 100 ms one-way at 10 MB/s, against 98 MB/s at 0 ms. The rate
//! floor is an assumption about the deployment (regions are joined by paths of at least
//! that capacity); on a narrower path it would keep the bottleneck's queue full, so it is
//! a setting, and 0 turns it off.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};

/// Builds [`Floored`] controllers around the ones `inner` builds.
pub(crate) struct FlooredFactory<F> {
    pub inner: Arc<F>,
    /// Bytes the window always allows.
    pub floor: u64,
    /// Bytes per second the window always allows at the minimum RTT measured.
    pub floor_rate: u64,
}

impl<F: ControllerFactory + Send + Sync + 'static> ControllerFactory for FlooredFactory<F> {
    fn build(self: Arc<Self>, now: std::time::Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Floored {
            inner: self.inner.clone().build(now, current_mtu),
            floor: self.floor,
            floor_rate: self.floor_rate,
            min_rtt: None,
        })
    }
}

/// A controller whose window never drops below `floor`, nor below `floor_rate` × the
/// minimum RTT once one is measured.
pub(crate) struct Floored {
    inner: Box<dyn Controller>,
    floor: u64,
    floor_rate: u64,
    min_rtt: Option<Duration>,
}

impl Floored {
    fn floor(&self) -> u64 {
        floor_of(self.floor, self.floor_rate, self.min_rtt)
    }
}

impl Controller for Floored {
    fn on_sent(&mut self, now: std::time::Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: std::time::Instant,
        sent: std::time::Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &quinn_proto::RttEstimator,
    ) {
        self.min_rtt = Some(rtt.min());
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: std::time::Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: std::time::Instant,
        sent: std::time::Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.inner.window().max(self.floor())
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = self.inner.metrics();
        metrics.congestion_window = metrics.congestion_window.max(self.floor());
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Floored {
            inner: self.inner.clone_box(),
            floor: self.floor,
            floor_rate: self.floor_rate,
            min_rtt: self.min_rtt,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window().max(self.floor)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The least window: `floor`, or what `rate` bytes per second need over `min_rtt`.
fn floor_of(floor: u64, rate: u64, min_rtt: Option<Duration>) -> u64 {
    let by_rate = min_rtt.map_or(0, |rtt| (rate as f64 * rtt.as_secs_f64()) as u64);
    floor.max(by_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_never_drops_below_the_floor() {
        let bbr = Arc::new(quinn::congestion::BbrConfig::default());
        let factory = Arc::new(FlooredFactory {
            inner: bbr,
            floor: 1 << 20,
            floor_rate: 50_000_000,
        });
        let controller = factory.build(std::time::Instant::now(), 1200);
        // BBR's own initial window is far below the floor here.
        assert_eq!(controller.window(), 1 << 20);
        assert_eq!(controller.metrics().congestion_window, 1 << 20);
    }

    #[test]
    fn the_floor_scales_with_the_measured_round_trip() {
        let rate = 50_000_000; // 400 Mbit/s
        assert_eq!(floor_of(1 << 20, rate, None), 1 << 20, "no RTT yet");
        let ms = Duration::from_millis;
        assert_eq!(floor_of(1 << 20, rate, Some(ms(1))), 1 << 20, "loopback");
        assert_eq!(floor_of(1 << 20, rate, Some(ms(60))), 3_000_000);
        assert_eq!(floor_of(1 << 20, rate, Some(ms(200))), 10_000_000);
        assert_eq!(floor_of(1 << 20, 0, Some(ms(200))), 1 << 20, "turned off");
    }
}
