//! Pacing of the scans of the whole region that a change of its sub-logs sets off: the
//! advertisement of every sub-log to a neighbour, the search for new empty sub-logs to
//! push. Each costs time in proportion to the sub-logs held, and a catch-up into a fresh
//! region creates sub-logs by the thousand, each a change: scanning again on every one
//! made the work quadratic, kept a core busy and delayed the link's heartbeats until the
//! link was declared dead.
//!
//! So after a scan that took `cost`, the next one waits [`REST_PER_COST`] × `cost`; the
//! changes meanwhile are taken together by that next scan. Such scans then take at most a
//! fifth of a core, and in a region of a few hundred sub-logs (a scan of microseconds) a
//! change is still acted on at once: no fixed interval is added to the path.

use std::time::{Duration, Instant};

/// How long a scan's cost is rested after it, as a multiple of the cost.
pub const REST_PER_COST: u32 = 4;
/// The longest rest, whatever a scan cost.
pub const MAX_REST: Duration = Duration::from_millis(500);

/// When the next scan may run, after one that ran from `started` to `finished`.
pub fn next_scan_at(started: Instant, finished: Instant) -> Instant {
    finished + (finished.saturating_duration_since(started) * REST_PER_COST).min(MAX_REST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_is_in_proportion_to_the_cost_and_bounded() {
        let start = Instant::now();
        let after = |cost_us: u64| {
            let finished = start + Duration::from_micros(cost_us);
            next_scan_at(start, finished) - finished
        };
        assert_eq!(after(0), Duration::ZERO);
        assert_eq!(after(50), Duration::from_micros(200));
        assert_eq!(after(30_000), Duration::from_millis(120));
        assert_eq!(after(400_000), MAX_REST);
    }
}
