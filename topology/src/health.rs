//! The health of one link, from its heartbeats: a smoothed RTT and an up/down state with
//! hysteresis. Fed wall-clock milliseconds by the caller (heartbeats carry the sender's
//! send time, echoed back), so it is deterministic to test.
//!
//! - A link is up when its connection completes the handshake.
//! - It goes down when no heartbeat has been answered for `down_after` intervals.
//! - A link that went down comes back up only after `up_after` answers to heartbeats sent
//!   after it went down: answers to old heartbeats, delivered in a burst when a partition
//!   heals, do not count, and one lucky packet on a lossy link does not flap it.

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct HealthSettings {
    pub interval: Duration,
    /// Heartbeat intervals without an answer before the link is down.
    pub down_after: u32,
    /// Fresh answers needed after a down before the link is up again.
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
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt_us.map(Duration::from_micros)
    }

    /// An answer to the heartbeat sent at `sent_at_ms` arrived at `now_ms`.
    pub fn on_answer(&mut self, sent_at_ms: i64, now_ms: i64) -> Option<Transition> {
        let sample = (now_ms - sent_at_ms).max(0) as u64 * 1000;
        self.srtt_us = Some(match self.srtt_us {
            None => sample,
            Some(s) => (s * 7 + sample) / 8,
        });
        self.last_answer_ms = self.last_answer_ms.max(now_ms);
        if self.up || sent_at_ms <= self.down_at_ms {
            return None;
        }
        self.fresh_answers += 1;
        if self.fresh_answers >= self.settings.up_after {
            self.up = true;
            return Some(Transition::Up);
        }
        None
    }

    /// Checks for silence at `now_ms`; call at least once per interval.
    pub fn on_tick(&mut self, now_ms: i64) -> Option<Transition> {
        let limit = self.settings.interval.as_millis() as i64 * i64::from(self.settings.down_after);
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

    #[test]
    fn srtt_is_smoothed() {
        let mut h = health();
        h.on_answer(0, 80);
        assert_eq!(h.srtt(), Some(Duration::from_millis(80)));
        h.on_answer(100, 100 + 160);
        assert_eq!(h.srtt(), Some(Duration::from_millis(90)));
    }

    #[test]
    fn down_after_silence_up_after_fresh_answers() {
        let mut h = health();
        assert!(h.is_up());
        assert_eq!(h.on_tick(150), None);
        h.on_answer(150, 160);
        assert_eq!(
            h.on_tick(360),
            None,
            "200 ms since the last answer is the limit"
        );
        assert_eq!(h.on_tick(361), Some(Transition::Down));
        assert_eq!(h.on_tick(500), None, "reported once");
        // Answers to heartbeats sent before the link went down arrive in a burst: no flap.
        for sent in [200, 300] {
            assert_eq!(h.on_answer(sent, 600), None);
        }
        assert!(!h.is_up());
        assert_eq!(h.on_answer(400, 610), None);
        assert_eq!(h.on_answer(500, 620), None);
        assert_eq!(h.on_answer(600, 630), Some(Transition::Up));
        assert!(h.is_up());
    }
}
