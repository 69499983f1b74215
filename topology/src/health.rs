//! The health of one link, from its heartbeats: a smoothed RTT and an up/down state with
//! hysteresis. Fed milliseconds of a monotonic clock by the caller (a heartbeat carries its
//! send time, which the peer echoes back unchanged), so it is deterministic to test and a
//! wall-clock step changes nothing.
//!
//! - A link is up when its connection completes the handshake.
//! - It goes down when no heartbeat has been answered for `down_after` intervals.
//! - A link that went down comes back up only after `up_after` *fresh* answers in a row:
//!   answers to heartbeats sent after it went down, each within one interval of its
//!   heartbeat (heartbeats queued during an outage and answered in a burst when it heals
//!   are not fresh), with no interval missed between them (a lossy link does not come up
//!   on a few lucky packets spread over minutes).

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct HealthSettings {
    pub interval: Duration,
    /// Heartbeat intervals without an answer before the link is down.
    pub down_after: u32,
    /// Fresh answers in a row needed after a down before the link is up again.
    pub up_after: u32,
}

impl HealthSettings {
    pub fn new(interval: Duration) -> Self {
        HealthSettings {
            interval,
            down_after: 2,
            up_after: 3,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

#[derive(Clone, Debug)]
pub struct LinkHealth {
    settings: HealthSettings,
    up: bool,
    /// Smoothed RTT in microseconds (RFC 6298 weights: 7/8 old, 1/8 new).
    srtt_us: Option<u64>,
    last_answer_ms: i64,
    down_at_ms: i64,
    fresh_answers: u32,
    last_fresh_ms: i64,
}

impl LinkHealth {
    /// A link whose handshake completed at `now_ms`.
    pub fn new(settings: HealthSettings, now_ms: i64) -> Self {
        LinkHealth {
            settings,
            up: true,
            srtt_us: None,
            last_answer_ms: now_ms,
            down_at_ms: i64::MIN,
            fresh_answers: 0,
            last_fresh_ms: i64::MIN,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt_us.map(Duration::from_micros)
    }

    fn interval_ms(&self) -> i64 {
        self.settings.interval.as_millis().max(1) as i64
    }

    /// An answer to the heartbeat sent at `sent_at_ms` arrived at `now_ms`.
    pub fn on_answer(&mut self, sent_at_ms: i64, now_ms: i64) -> Option<Transition> {
        let rtt = (now_ms - sent_at_ms).max(0);
        let sample = rtt as u64 * 1000;
        self.srtt_us = Some(match self.srtt_us {
            None => sample,
            Some(s) => (s * 7 + sample) / 8,
        });
        self.last_answer_ms = self.last_answer_ms.max(now_ms);
        if self.up {
            return None;
        }
        let fresh = sent_at_ms > self.down_at_ms && rtt <= self.interval_ms();
        let in_a_row = now_ms.saturating_sub(self.last_fresh_ms) <= self.interval_ms() * 3 / 2;
        if !fresh {
            self.fresh_answers = 0;
            return None;
        }
        self.fresh_answers = if in_a_row { self.fresh_answers + 1 } else { 1 };
        self.last_fresh_ms = now_ms;
        if self.fresh_answers >= self.settings.up_after {
            self.up = true;
            return Some(Transition::Up);
        }
        None
    }

    /// Whether the link has been silent (no heartbeat answered) for `intervals` heartbeat
    /// intervals at `now_ms`.
    pub fn silent_for(&self, intervals: u32, now_ms: i64) -> bool {
        now_ms - self.last_answer_ms > self.interval_ms() * i64::from(intervals)
    }

    /// Checks for silence at `now_ms`; call at least once per interval.
    pub fn on_tick(&mut self, now_ms: i64) -> Option<Transition> {
        let limit = self.interval_ms() * i64::from(self.settings.down_after);
        if self.up && now_ms - self.last_answer_ms > limit {
            self.up = false;
            self.down_at_ms = now_ms;
            self.fresh_answers = 0;
            return Some(Transition::Down);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> LinkHealth {
        LinkHealth::new(HealthSettings::new(Duration::from_millis(100)), 0)
    }

    /// A link that went down at 361.
    fn down() -> LinkHealth {
        let mut h = health();
        h.on_answer(150, 160);
        assert_eq!(
            h.on_tick(360),
            None,
            "200 ms since the last answer is the limit"
        );
        assert_eq!(h.on_tick(361), Some(Transition::Down));
        assert_eq!(h.on_tick(500), None, "reported once");
        h
    }

    #[test]
    fn srtt_is_smoothed() {
        let mut h = health();
        h.on_answer(0, 80);
        assert_eq!(h.srtt(), Some(Duration::from_millis(80)));
        h.on_answer(100, 100 + 160);
        assert_eq!(h.srtt(), Some(Duration::from_millis(90)));
    }

    #[test]
    fn up_again_after_fresh_answers_in_a_row() {
        let mut h = down();
        assert_eq!(h.on_answer(600, 610), None);
        assert_eq!(h.on_answer(700, 710), None);
        assert_eq!(h.on_answer(800, 810), Some(Transition::Up));
        assert!(h.is_up());
    }

    #[test]
    fn a_burst_of_queued_answers_does_not_bring_it_up() {
        let mut h = down();
        // Heartbeats sent before and during the outage, answered together when it heals.
        for sent in [200, 300, 400, 500, 600] {
            assert_eq!(h.on_answer(sent, 750), None);
        }
        assert!(!h.is_up());
        // Then fresh ones.
        assert_eq!(h.on_answer(800, 805), None);
        assert_eq!(h.on_answer(900, 905), None);
        assert_eq!(h.on_answer(1000, 1005), Some(Transition::Up));
    }

    #[test]
    fn lucky_answers_far_apart_do_not_bring_it_up() {
        let mut h = down();
        for sent in [1_000, 5_000, 9_000, 13_000] {
            assert_eq!(h.on_answer(sent, sent + 5), None);
        }
        assert!(!h.is_up());
    }
}
