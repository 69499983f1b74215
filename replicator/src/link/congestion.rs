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

use std::any::Any;
use std::sync::Arc;

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};

/// Builds [`Floored`] controllers around the ones `inner` builds.
pub(crate) struct FlooredFactory<F> {
    pub inner: Arc<F>,
    pub floor: u64,
}

impl<F: ControllerFactory + Send + Sync + 'static> ControllerFactory for FlooredFactory<F> {
    fn build(self: Arc<Self>, now: std::time::Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Floored {
            inner: self.inner.clone().build(now, current_mtu),
            floor: self.floor,
        })
    }
}

/// A controller whose window never drops below `floor`.
pub(crate) struct Floored {
    inner: Box<dyn Controller>,
    floor: u64,
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
        floored(self.inner.window(), self.floor)
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = self.inner.metrics();
        metrics.congestion_window = floored(metrics.congestion_window, self.floor);
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Floored {
            inner: self.inner.clone_box(),
            floor: self.floor,
        })
    }

    fn initial_window(&self) -> u64 {
        floored(self.inner.initial_window(), self.floor)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The window a controller proposing `window` is given.
fn floored(window: u64, floor: u64) -> u64 {
    window.max(floor)
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
        });
        let controller = factory.build(std::time::Instant::now(), 1200);
        // BBR's own initial window is far below the floor here.
        assert_eq!(controller.window(), 1 << 20);
        assert_eq!(controller.metrics().congestion_window, 1 << 20);
        assert_eq!(floored(4 * 1200, 1 << 20), 1 << 20);
        assert_eq!(floored(8 << 20, 1 << 20), 8 << 20);
    }
}
