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
//!
//! The wrapper also measures the path's delivery rate, for the link's compression choice
//! (`link::compression`) and for its own window: bytes acknowledged per round trip in which the sender was never
//! application-limited (it had more to send than the window let out), the largest such
//! sample of the last [`RATE_WINDOW`]. A link that is always application-limited has no
//! estimate: the path is not what limits it.
//!
//! The window never drops below [`DELIVERY_GAIN`] × that rate × the minimum RTT either
//! (BBR's own rule for its window, from a measurement that grows): quinn's BBR did not
//! raise its bandwidth estimate past what the rate floor let out, so over 100 ms one-way a
//! cold target caught up 200 MB at 40 MB/s, where the window the floor gave (10 MB per
//! 200 ms) was the limit; a window of twice the delivered rate grows by doubling while the
//! path keeps up. It applies only while the path does not queue (the smoothed RTT within
//! a quarter of the minimum): over a link capped at 50 Mbit/s a burst measured above the
//! cap kept the bottleneck's queue full (lag p99 39 → 531 ms) until it did.
//!
//! And it sizes what a link's streams may queue on the connection ([`send_window_for`],
//! set every [`WINDOW_TICK`]): two congestion windows, or [`QUEUE_TIME`] of the measured
//! delivery rate if more, never past `[replication] send_window_bytes`. A fixed 64 MiB
//! let a narrow link queue half a minute of batches, which then crossed as they were
//! queued (unpacked: the compression decision comes too late for them) and delayed every
//! newer record behind them.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
            rate: DeliveryRate::default(),
            by_delivery: 0,
        })
    }
}

/// A controller whose window never drops below `floor`, nor below `floor_rate` × the
/// minimum RTT once one is measured, nor below what the measured delivery rate allows
/// while the path does not queue.
pub(crate) struct Floored {
    inner: Box<dyn Controller>,
    floor: u64,
    floor_rate: u64,
    min_rtt: Option<Duration>,
    rate: DeliveryRate,
    /// [`DELIVERY_GAIN`] × the measured delivery rate × the minimum RTT.
    by_delivery: u64,
}

impl Floored {
    fn floor(&self) -> u64 {
        floor_of(self.floor, self.floor_rate, self.min_rtt).max(self.by_delivery)
    }

    /// Takes an acknowledgement of `bytes` into the delivery rate and the window it allows
    /// (none while the path queues: `srtt`, the smoothed RTT, well above `min_rtt`).
    fn delivered(
        &mut self,
        now: Instant,
        bytes: u64,
        app_limited: bool,
        min_rtt: Duration,
        srtt: Duration,
    ) {
        self.rate.on_ack(now, bytes, app_limited, min_rtt);
        let queueing = srtt > min_rtt.mul_f64(QUEUE_TOLERANCE) + QUEUE_SLACK;
        self.by_delivery = match self.rate.estimate(now) {
            Some(rate) if !queueing => window_for_delivery(rate, min_rtt),
            _ => 0,
        };
    }
}

/// The window a link keeps per bandwidth-delay product it measured.
const DELIVERY_GAIN: f64 = 2.0;
/// A smoothed RTT above this many minimum RTTs (plus [`QUEUE_SLACK`]) means a queue on the
/// path: the delivery term stops, since a bottleneck that let a burst through faster than
/// its rate (a token bucket) would otherwise be kept full.
const QUEUE_TOLERANCE: f64 = 1.25;
const QUEUE_SLACK: Duration = Duration::from_millis(2);

/// The window that `rate` bytes per second measured at `min_rtt` allow.
fn window_for_delivery(rate: u64, min_rtt: Duration) -> u64 {
    (DELIVERY_GAIN * rate as f64 * min_rtt.as_secs_f64()) as u64
}

/// How long a delivery-rate sample counts.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(10);
/// The shortest sample (a loopback round trip is microseconds).
const MIN_SAMPLE: Duration = Duration::from_millis(20);

/// Bytes per second the path delivered while the sender was not application-limited.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeliveryRate {
    /// The sample under way: when it started, bytes acknowledged, whether any of its
    /// acknowledgements came while the sender was application-limited.
    started: Option<Instant>,
    last_ack: Option<Instant>,
    bytes: u64,
    limited: bool,
    /// The largest complete sample and when it was taken.
    best: Option<(u64, Instant)>,
}

impl DeliveryRate {
    fn on_ack(&mut self, now: Instant, bytes: u64, app_limited: bool, min_rtt: Duration) {
        let span = min_rtt.max(MIN_SAMPLE);
        // A pause longer than a sample starts a new one: idle time is not the path's.
        if self.last_ack.is_some_and(|last| now - last > span) {
            self.started = None;
        }
        self.last_ack = Some(now);
        let Some(started) = self.started else {
            *self = DeliveryRate {
                started: Some(now),
                last_ack: Some(now),
                best: self.best,
                ..DeliveryRate::default()
            };
            self.limited = app_limited;
            return;
        };
        self.bytes += bytes;
        self.limited |= app_limited;
        let elapsed = now - started;
        if elapsed < span {
            return;
        }
        if !self.limited {
            let rate = (self.bytes as f64 / elapsed.as_secs_f64()) as u64;
            let stale = self.best.is_none_or(|(_, at)| now - at > RATE_WINDOW);
            if stale || self.best.is_some_and(|(best, _)| rate >= best) {
                self.best = Some((rate, now));
            }
        }
        self.started = Some(now);
        self.bytes = 0;
        self.limited = false;
    }

    /// The path's delivery rate in bytes per second, if a busy round trip was measured in
    /// the last [`RATE_WINDOW`].
    pub(crate) fn estimate(&self, now: Instant) -> Option<u64> {
        self.best
            .filter(|(_, at)| now.saturating_duration_since(*at) <= RATE_WINDOW)
            .map(|(rate, _)| rate)
    }
}

/// How often a link's send window is sized.
pub(crate) const WINDOW_TICK: Duration = Duration::from_millis(100);
/// Time of the measured rate a link may queue beyond two congestion windows.
const QUEUE_TIME: Duration = Duration::from_millis(100);

/// The send window of a link: see the module.
pub(crate) fn send_window_for(cwnd: u64, measured_rate: Option<u64>, max: u64) -> u64 {
    let by_rate = measured_rate.map_or(0, |r| (r as f64 * QUEUE_TIME.as_secs_f64()) as u64);
    cwnd.saturating_mul(2).max(by_rate).min(max)
}

/// Sizes `connection`'s send window every [`WINDOW_TICK`] until `stop`.
pub(crate) async fn size_send_window(
    connection: quinn::Connection,
    max: u64,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(WINDOW_TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let state = connection.congestion_state();
        let cwnd = state.window();
        connection.set_send_window(send_window_for(cwnd, measured_rate(state), max));
    }
}

/// The delivery rate a link's controller (a copy of it, as quinn hands out) measured.
fn measured_rate(state: Box<dyn Controller>) -> Option<u64> {
    let floored = state.into_any().downcast::<Floored>().ok()?;
    floored.rate.estimate(Instant::now())
}

/// What `connection`'s path carries, bytes per second: the delivery rate its controller
/// measured in busy round trips (links use [`Floored`]), else what the congestion window
/// lets out per round trip.
pub(crate) fn path_rate(connection: &quinn::Connection) -> Option<u64> {
    measured_rate(connection.congestion_state()).or_else(|| {
        let path = connection.stats().path;
        let rtt = path.rtt.as_secs_f64();
        (rtt > 0.0).then(|| (path.cwnd as f64 / rtt) as u64)
    })
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
        self.delivered(now, bytes, app_limited, rtt.min(), rtt.get());
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
            rate: self.rate.clone(),
            by_delivery: self.by_delivery,
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
    fn the_window_grows_with_the_delivered_rate() {
        let bbr = Arc::new(quinn::congestion::BbrConfig::default());
        let factory = Arc::new(FlooredFactory {
            inner: bbr,
            floor: 1 << 20,
            floor_rate: 0,
        });
        let t0 = Instant::now();
        let mut controller = factory
            .build(t0, 1200)
            .into_any()
            .downcast::<Floored>()
            .unwrap();
        let rtt = Duration::from_millis(200);
        // Busy round trips delivering 10 MB each (50 MB/s at 200 ms).
        for i in 1..=40u64 {
            let at = t0 + Duration::from_millis(i * 20);
            controller.delivered(at, 1_000_000, false, rtt, rtt);
        }
        let window = controller.window();
        assert!(
            (18_000_000..=22_000_000).contains(&window),
            "two bandwidth-delay products of 10 MB, got {window}"
        );
        assert_eq!(window_for_delivery(0, Duration::from_millis(200)), 0);
        // A queue on the path (the smoothed RTT half as long again): BBR and the floors
        // decide alone.
        let at = t0 + Duration::from_millis(900);
        controller.delivered(at, 1_000_000, false, rtt, rtt * 3 / 2);
        assert_eq!(controller.window(), 1 << 20);
    }

    #[test]
    fn the_delivery_rate_counts_busy_round_trips_only() {
        let rtt = Duration::from_millis(50);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut rate = DeliveryRate::default();
        // Application-limited acknowledgements: no estimate.
        for i in 0..20 {
            rate.on_ack(ms(i * 10), 10_000, true, rtt);
        }
        assert_eq!(rate.estimate(ms(200)), None);
        // A busy stretch: 10 kB every 10 ms is 1 MB/s.
        for i in 21..40 {
            rate.on_ack(ms(i * 10), 10_000, false, rtt);
        }
        let busy = rate.estimate(ms(400)).expect("a busy sample");
        assert!((900_000..=1_100_000).contains(&busy), "{busy}");
        // A slower busy stretch does not lower the best sample within the window.
        for i in 41..60 {
            rate.on_ack(ms(i * 10), 1_000, false, rtt);
        }
        assert_eq!(rate.estimate(ms(600)), Some(busy));
        // It expires.
        assert_eq!(rate.estimate(ms(600) + RATE_WINDOW), None);
    }

    #[test]
    fn the_send_window_follows_the_path() {
        let max = 64 << 20;
        // Before a rate is measured: two windows.
        assert_eq!(send_window_for(1 << 20, None, max), 2 << 20);
        // A narrow path (2 MB/s): still two windows, not 64 MiB.
        assert_eq!(send_window_for(1 << 20, Some(2_000_000), max), 2 << 20);
        // A fast path (300 MB/s): 100 ms of it.
        assert_eq!(send_window_for(1 << 20, Some(300_000_000), max), 30_000_000);
        // Never past the setting.
        assert_eq!(send_window_for(40 << 20, None, max), max);
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
