//! Whether a link packs the batches it sends, and with which codec.
//!
//! Each side's Hello lists the codecs it unpacks (`compress:lz4`, `compress:zstd`); a sender
//! packs only with one of those. `[replication] compression` says what this region sends:
//! `off`, a codec always (`lz4`, `zstd`), or `auto`, which packs only when the link, not
//! the CPU, is what limits the transfer:
//!
//! - the path's `bandwidth` is the delivery rate the congestion controller measured over
//!   round trips in which the sender had more to send than the window let out, or, before
//!   such a round trip (or 10 s after the last), what the congestion window lets out per
//!   round trip (on loopback, gigabytes per second: nothing is packed there);
//! - each codec's `ratio` (packed / raw bytes) and `speed` (raw bytes packed per second on
//!   this machine) are measured on the frames themselves: the first frames of a link, then
//!   one frame per codec every [`SAMPLE_EVERY`] while that codec is not in use (a sample
//!   is sent packed when it came out smaller), every frame while it is;
//! - a codec moves `min(speed, bandwidth / ratio)` raw bytes per second against `bandwidth`
//!   unpacked: the best codec is chosen when that is at least [`GAIN`] times more, and kept
//!   while it stays [`KEEP`] times more.
//!
//! The decision is the pure function [`choose`]; [`LinkCompression`] holds the estimates
//! of one link and re-decides every [`LOOK_EVERY`], and at once after a codec's first
//! measurement (a backlog is queued on the connection within moments of a link's start).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::wire::{Codec, CompressionSetting};

/// How much more a codec must move than the plain link to be chosen, and to be kept.
pub(crate) const GAIN: f64 = 1.25;
pub(crate) const KEEP: f64 = 1.1;
/// How often a link re-decides.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(250);
/// How often a codec not in use is measured on a frame.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Weight of a new sample in a codec's running estimate.
const NEW_SAMPLE_WEIGHT: f64 = 0.3;

/// What packing with one codec measured on this link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Estimate {
    /// Packed bytes per raw byte.
    pub ratio: f64,
    /// Raw bytes packed per second.
    pub speed: f64,
}

impl Estimate {
    /// Raw bytes per second moved over a path delivering `bandwidth` bytes per second.
    fn moves(&self, bandwidth: f64) -> f64 {
        self.speed.min(bandwidth / self.ratio.max(1e-3))
    }
}

/// The codec to send with: see the module. `current` is the codec in use (for [`KEEP`]).
pub(crate) fn choose(
    setting: CompressionSetting,
    accepted: &[Codec],
    bandwidth: Option<f64>,
    estimates: &[(Codec, Estimate)],
    current: Option<Codec>,
) -> Option<Codec> {
    match setting {
        CompressionSetting::Off => None,
        CompressionSetting::Always(codec) => accepted.contains(&codec).then_some(codec),
        CompressionSetting::Auto => {
            let bandwidth = bandwidth?;
            let (codec, moves) = estimates
                .iter()
                .filter(|(c, _)| accepted.contains(c))
                .map(|(c, e)| (*c, e.moves(bandwidth)))
                .max_by(|a, b| a.1.total_cmp(&b.1))?;
            let needed = if current == Some(codec) { KEEP } else { GAIN };
            (moves >= bandwidth * needed).then_some(codec)
        }
    }
}

/// The path's delivery rate in bytes per second, when measured (the link's congestion
/// controller knows it).
pub(crate) type Bandwidth = Box<dyn Fn() -> Option<u64> + Send + Sync>;

/// One link's compression: what the peer unpacks, the estimates, the codec in use.
pub(crate) struct LinkCompression {
    setting: CompressionSetting,
    accepted: Vec<Codec>,
    bandwidth: Bandwidth,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    estimates: Vec<(Codec, Estimate)>,
    chosen: Option<Codec>,
    next_look: Option<Instant>,
    /// When each codec was last handed out to be measured.
    sampled: Vec<(Codec, Instant)>,
}

impl LinkCompression {
    /// `peer_features` is the peer's Hello.
    pub fn new(
        setting: CompressionSetting,
        peer_features: &[String],
        bandwidth: Bandwidth,
    ) -> Self {
        LinkCompression {
            setting,
            accepted: Codec::accepted_by(peer_features),
            bandwidth,
            state: Mutex::new(State::default()),
        }
    }

    /// The codec to pack the next frame with, if any.
    pub fn codec_for_next(&self) -> Option<Codec> {
        if self.setting != CompressionSetting::Auto {
            return self.in_use();
        }
        let mut state = self.state.lock().expect("link compression lock");
        let now = Instant::now();
        // A codec not in use is measured on one frame every SAMPLE_EVERY, at once when it
        // never was: a backlog is queued on the connection within moments, so the first
        // frames decide.
        let due = self.accepted.iter().copied().find(|codec| {
            Some(*codec) != state.chosen
                && state
                    .sampled
                    .iter()
                    .find(|(c, _)| c == codec)
                    .is_none_or(|(_, at)| now - *at >= SAMPLE_EVERY)
        });
        if let Some(codec) = due {
            state.sampled.retain(|(c, _)| *c != codec);
            state.sampled.push((codec, now));
            return Some(codec);
        }
        if state.next_look.is_none_or(|at| now >= at) {
            state.next_look = Some(now + LOOK_EVERY);
            let bandwidth = (self.bandwidth)().map(|b| b as f64);
            state.chosen = choose(
                self.setting,
                &self.accepted,
                bandwidth,
                &state.estimates,
                state.chosen,
            );
        }
        state.chosen
    }

    /// What packing `raw` bytes with `codec` into `packed` bytes in `took` measured.
    pub fn measured(&self, codec: Codec, raw: usize, packed: usize, took: Duration) {
        if raw == 0 {
            return;
        }
        let sample = Estimate {
            ratio: packed as f64 / raw as f64,
            speed: raw as f64 / took.as_secs_f64().max(1e-6),
        };
        let mut state = self.state.lock().expect("link compression lock");
        match state.estimates.iter_mut().find(|(c, _)| *c == codec) {
            Some((_, e)) => {
                let w = NEW_SAMPLE_WEIGHT;
                e.ratio = e.ratio * (1.0 - w) + sample.ratio * w;
                e.speed = e.speed * (1.0 - w) + sample.speed * w;
            }
            None => {
                state.estimates.push((codec, sample));
                // A first measurement: decide on the next frame.
                state.next_look = None;
            }
        }
    }

    /// The codec in use now, for status and metrics.
    pub fn in_use(&self) -> Option<Codec> {
        match self.setting {
            CompressionSetting::Off => None,
            CompressionSetting::Always(codec) => self.accepted.contains(&codec).then_some(codec),
            CompressionSetting::Auto => self.state.lock().expect("link compression lock").chosen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;
    const BOTH: [Codec; 2] = [Codec::Lz4, Codec::Zstd];

    fn est(ratio: f64, speed_mb: f64) -> Estimate {
        Estimate {
            ratio,
            speed: speed_mb * MB,
        }
    }

    #[test]
    fn a_narrow_busy_link_packs_with_the_codec_that_moves_most() {
        // 5 MB/s path: lz4 at ratio 0.5 moves 10 MB/s, zstd at 0.25 moves 20 MB/s.
        let estimates = [
            (Codec::Lz4, est(0.5, 600.0)),
            (Codec::Zstd, est(0.25, 200.0)),
        ];
        let auto = CompressionSetting::Auto;
        assert_eq!(
            choose(auto, &BOTH, Some(5.0 * MB), &estimates, None),
            Some(Codec::Zstd)
        );
        // A peer that unpacks only lz4 gets lz4.
        assert_eq!(
            choose(auto, &[Codec::Lz4], Some(5.0 * MB), &estimates, None),
            Some(Codec::Lz4)
        );
        // A path faster than zstd packs: lz4 moves more (600 vs 200 MB/s).
        assert_eq!(
            choose(auto, &BOTH, Some(250.0 * MB), &estimates, None),
            Some(Codec::Lz4)
        );
    }

    #[test]
    fn nothing_is_packed_when_the_link_is_not_the_bottleneck() {
        let estimates = [(Codec::Lz4, est(0.5, 600.0))];
        let auto = CompressionSetting::Auto;
        // No busy round trip measured.
        assert_eq!(choose(auto, &BOTH, None, &estimates, None), None);
        // A path faster than the codec packs.
        assert_eq!(
            choose(auto, &BOTH, Some(900.0 * MB), &estimates, None),
            None
        );
        // Records that do not compress.
        let random = [(Codec::Lz4, est(1.004, 900.0))];
        assert_eq!(choose(auto, &BOTH, Some(5.0 * MB), &random, None), None);
        // Nothing measured yet.
        assert_eq!(choose(auto, &BOTH, Some(5.0 * MB), &[], None), None);
    }

    #[test]
    fn a_codec_in_use_is_kept_on_a_smaller_margin() {
        // lz4 moves 1.2× the plain link: not enough to start, enough to keep.
        let estimates = [(Codec::Lz4, est(1.0 / 1.2, 600.0))];
        let auto = CompressionSetting::Auto;
        let bw = Some(10.0 * MB);
        assert_eq!(choose(auto, &BOTH, bw, &estimates, None), None);
        assert_eq!(
            choose(auto, &BOTH, bw, &estimates, Some(Codec::Lz4)),
            Some(Codec::Lz4)
        );
    }

    #[test]
    fn fixed_settings_follow_the_peer() {
        let always = CompressionSetting::Always(Codec::Zstd);
        assert_eq!(choose(always, &BOTH, None, &[], None), Some(Codec::Zstd));
        assert_eq!(choose(always, &[Codec::Lz4], None, &[], None), None);
        assert_eq!(
            choose(CompressionSetting::Off, &BOTH, Some(1.0), &[], None),
            None
        );
    }

    #[test]
    fn auto_measures_each_codec_then_packs_once_the_estimates_say_so() {
        let features: Vec<String> = BOTH.iter().map(|c| c.feature()).collect();
        let bandwidth = Box::new(|| Some(5_000_000));
        let link = LinkCompression::new(CompressionSetting::Auto, &features, bandwidth);
        // Each codec is measured on a frame first; nothing is chosen before.
        assert_eq!(link.codec_for_next(), Some(Codec::Lz4));
        assert_eq!(link.codec_for_next(), Some(Codec::Zstd));
        assert_eq!(link.codec_for_next(), None);
        // lz4's first measurement: 1 MB to 300 kB in 2 ms moves 500 MB/s or 16.7 MB/s
        // over a 5 MB/s path; chosen on the next frame.
        link.measured(Codec::Lz4, 1_000_000, 300_000, Duration::from_millis(2));
        assert_eq!(link.codec_for_next(), Some(Codec::Lz4));
        assert_eq!(link.in_use(), Some(Codec::Lz4));
    }
}
