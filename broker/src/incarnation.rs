//! Topic incarnations: deleting a topic and creating one of the same name makes a new
//! topic, whose offsets start again at 0. Every topic gets an id when it is created — its
//! incarnation — and every origin sub-log records the incarnation of its origin's topic, so
//! that `(origin, topic, incarnation, partition, offset)` names one record everywhere and
//! the records of two incarnations are never merged into one sub-log, one checkpoint or
//! one cursor position.
//!
//! An incarnation is the creation time in milliseconds shifted left 16 bits, plus 16
//! random bits: two incarnations of one origin's topic compare by age (the origin created
//! them one after the other on its own clock). 0 means unknown (data from before
//! incarnations existed), and matches any.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The last incarnation this process made.
static LAST: AtomicU64 = AtomicU64::new(0);

/// A new incarnation id, newer than any this process made before, even within one
/// millisecond (a topic deleted and created again at once must not look older), and than
/// any made by an earlier run on the same clock (to the millisecond).
pub fn new_incarnation() -> u64 {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u16;
    let candidate = ((crate::record::now_ms().max(1) as u64) << 16) | u64::from(random);
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(candidate.max(last + 1))
        })
        .expect("the update always succeeds");
    candidate.max(previous + 1)
}

/// What a region does with records of incarnation `offered` of an origin's sub-log that
/// it holds as incarnation `held`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meeting {
    /// The same incarnation (or one side does not know): append as usual.
    Same,
    /// The sub-log did not know its incarnation: record `offered`, then append.
    Adopt,
    /// The origin re-created the topic: the held sub-log is a stale copy of a topic that
    /// no longer exists there. It is retired (its records dropped from this region) and
    /// the new incarnation starts from scratch.
    Replace,
    /// An older incarnation than the one held (a neighbour still serving the deleted
    /// topic): refused, loudly; never merged.
    Stale,
}

/// The policy, as a pure function of the two ids.
pub fn meet(held: u64, offered: u64) -> Meeting {
    match (held, offered) {
        (h, o) if h == o || o == 0 => Meeting::Same,
        (0, _) => Meeting::Adopt,
        (h, o) if o > h => Meeting::Replace,
        _ => Meeting::Stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_made_one_after_the_other_always_increase() {
        // Thousands within a millisecond or two: the random low bits alone would put some
        // of them out of order.
        let made: Vec<u64> = (0..10_000).map(|_| new_incarnation()).collect();
        assert!(made.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_newer_incarnation_replaces_and_an_older_one_is_refused() {
        assert_eq!(meet(5, 5), Meeting::Same);
        assert_eq!(meet(5, 0), Meeting::Same);
        assert_eq!(meet(0, 5), Meeting::Adopt);
        assert_eq!(meet(5, 9), Meeting::Replace);
        assert_eq!(meet(9, 5), Meeting::Stale);
    }

    #[test]
    fn new_incarnations_grow_with_time_and_are_never_unknown() {
        let a = new_incarnation();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_incarnation();
        assert!(a != 0 && b > a);
    }
}
