//! Vector cursors: a consumer position in one partition, as the next offset to read per
//! origin region. Offsets are assigned once by the origin and are the same in every
//! region, so a cursor committed in one region is valid in every other.
//!
//! Offsets mean something only within one incarnation of the origin's topic (see
//! `crate::incarnation`): a cursor also records, per origin, the incarnation its offset is
//! of, and a position of another incarnation than the sub-log read is never applied to it
//! (that origin is read from the start of what is held).
//!
//! Cursors synced between regions merge by the larger position per origin, so a cursor
//! never moves back by a merge. An administrator's rewind moves it back on purpose: it
//! starts a new `epoch`, and a cursor of a newer epoch replaces one of an older epoch
//! whole, in every region it reaches. Within one epoch the per-origin join applies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{origin region -> next offset}`. An origin missing from the cursor is read from the
/// start of what the region holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub next: BTreeMap<String, u64>,
    /// Per origin, the incarnation `next` is of (absent: unknown, matches any).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub incarnations: BTreeMap<String, u64>,
    /// Grows with each administrator's rewind (0: never rewound).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Cursor {
    /// The next offset to read of `origin` (0 when the cursor has not seen it).
    pub fn next_offset(&self, origin: &str) -> u64 {
        self.next.get(origin).copied().unwrap_or(0)
    }

    /// The incarnation the position of `origin` is of (0: unknown).
    pub fn incarnation(&self, origin: &str) -> u64 {
        self.incarnations.get(origin).copied().unwrap_or(0)
    }

    /// The next offset to read of `origin`'s sub-log of `incarnation`: 0 when the cursor's
    /// position is of another incarnation (known on both sides).
    pub fn next_offset_in(&self, origin: &str, incarnation: u64) -> u64 {
        let mine = self.incarnation(origin);
        if mine != 0 && incarnation != 0 && mine != incarnation {
            return 0;
        }
        self.next_offset(origin)
    }

    /// Takes the cursor of the newer epoch whole; within one epoch, per origin, the
    /// position of the newer incarnation, and within one the larger next offset. Returns
    /// whether anything changed. This is a join: order and repetition of merges do not
    /// matter, so regions that exchange cursors converge on the same one.
    pub fn merge(&mut self, other: &Cursor) -> bool {
        if other.epoch != self.epoch {
            let newer = other.epoch > self.epoch;
            if newer {
                *self = other.clone();
            }
            return newer;
        }
        let mut changed = false;
        for (origin, &next) in &other.next {
            let (mine, theirs) = (self.incarnation(origin), other.incarnation(origin));
            let position = self.next.entry(origin.clone()).or_insert(0);
            // A known incarnation wins over an unknown one (a cursor from before
            // incarnations): its offset could be of another incarnation, and reading again
            // is safe where skipping is not.
            let newer = theirs != 0 && (mine == 0 || theirs > mine);
            let older = mine != 0 && (theirs == 0 || theirs < mine);
            if newer || (!older && next > *position) {
                changed |= *position != next;
                *position = next;
            }
            if !older && theirs != 0 && theirs != mine {
                self.incarnations.insert(origin.clone(), theirs);
                changed = true;
            }
        }
        changed
    }

    /// Marks everything up to and including `offset` of `origin`'s sub-log of
    /// `incarnation` as consumed: within one incarnation never backwards; a position of
    /// another incarnation is replaced.
    pub fn advance_in(&mut self, origin: &str, incarnation: u64, offset: u64) {
        let mine = self.incarnation(origin);
        if mine != 0 && incarnation != 0 && incarnation < mine {
            // A stale copy of an older incarnation read here: the cursor keeps its place in
            // the newer one.
            return;
        }
        if mine != 0 && incarnation != 0 && mine != incarnation {
            self.next.insert(origin.to_string(), offset + 1);
        } else {
            self.advance(origin, offset);
        }
        if incarnation != 0 {
            self.incarnations.insert(origin.to_string(), incarnation);
        }
    }

    /// Marks everything up to and including `offset` of `origin` as consumed. Never moves
    /// a position backwards.
    pub fn advance(&mut self, origin: &str, offset: u64) {
        let next = offset + 1;
        match self.next.get_mut(origin) {
            Some(current) => *current = (*current).max(next),
            None => {
                self.next.insert(origin.to_string(), next);
            }
        }
    }
}

impl<S: Into<String>> FromIterator<(S, u64)> for Cursor {
    fn from_iter<T: IntoIterator<Item = (S, u64)>>(iter: T) -> Self {
        Cursor {
            next: iter.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            incarnations: BTreeMap::new(),
            epoch: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_takes_the_larger_offset_per_origin_and_never_moves_back() {
        let mut a: Cursor = [("eu", 10), ("us", 3)].into_iter().collect();
        let b: Cursor = [("eu", 7), ("us", 5), ("ap", 1)].into_iter().collect();
        assert!(a.merge(&b));
        assert_eq!(a, [("eu", 10), ("us", 5), ("ap", 1)].into_iter().collect());
        assert!(!a.merge(&b), "merging again changes nothing");
        let mut c = b.clone();
        c.merge(&[("eu", 10), ("us", 3)].into_iter().collect());
        assert_eq!(c, a, "the merge commutes");
    }

    fn of(pairs: &[(&str, u64, u64)]) -> Cursor {
        let mut c = Cursor::default();
        for (origin, incarnation, next) in pairs {
            c.next.insert(origin.to_string(), *next);
            c.incarnations.insert(origin.to_string(), *incarnation);
        }
        c
    }

    #[test]
    fn a_position_of_another_incarnation_is_never_applied() {
        let c = of(&[("eu", 5, 100)]);
        assert_eq!(c.next_offset_in("eu", 5), 100);
        assert_eq!(
            c.next_offset_in("eu", 9),
            0,
            "the old incarnation's position"
        );
        assert_eq!(c.next_offset_in("eu", 0), 100, "unknown matches");
        let mut c = c;
        c.advance_in("eu", 9, 3);
        assert_eq!((c.next_offset("eu"), c.incarnation("eu")), (4, 9));
        // Reading a stale copy of the older incarnation does not move it back.
        c.advance_in("eu", 5, 200);
        assert_eq!((c.next_offset("eu"), c.incarnation("eu")), (4, 9));
    }

    #[test]
    fn merge_prefers_the_newer_incarnation_and_still_commutes() {
        let old = of(&[("eu", 5, 100), ("us", 1, 7)]);
        let new = of(&[("eu", 9, 3), ("us", 1, 2)]);
        let mut a = old.clone();
        assert!(a.merge(&new));
        assert_eq!(a, of(&[("eu", 9, 3), ("us", 1, 7)]));
        let mut b = new.clone();
        b.merge(&old);
        assert_eq!(a, b, "the merge commutes");
        assert!(
            !a.merge(&old) && !a.merge(&new),
            "merging again changes nothing"
        );
        // A position of unknown incarnation does not carry over to a known one.
        let legacy: Cursor = [("eu", 100u64)].into_iter().collect();
        let mut c = legacy.clone();
        c.merge(&of(&[("eu", 9, 3)]));
        assert_eq!(c, of(&[("eu", 9, 3)]));
        let mut d = of(&[("eu", 9, 3)]);
        assert!(!d.merge(&legacy));
        assert_eq!(c, d, "the merge commutes");
    }

    #[test]
    fn a_rewind_of_a_newer_epoch_replaces_the_cursor_and_still_commutes() {
        let ahead: Cursor = [("eu", 100u64), ("us", 50)].into_iter().collect();
        let mut rewound: Cursor = [("eu", 10u64)].into_iter().collect();
        rewound.epoch = 1;
        let mut a = ahead.clone();
        assert!(a.merge(&rewound));
        assert_eq!(
            a, rewound,
            "the whole cursor, origins it does not name dropped"
        );
        let mut b = rewound.clone();
        assert!(!b.merge(&ahead), "an older epoch changes nothing");
        assert_eq!(a, b, "the merge commutes");
        // Within the new epoch, the join again.
        let mut later: Cursor = [("eu", 12u64), ("us", 1)].into_iter().collect();
        later.epoch = 1;
        assert!(a.merge(&later));
        assert_eq!(a.next, later.next);
    }

    #[test]
    fn advance_never_moves_back() {
        let mut cursor = Cursor::default();
        cursor.advance("a", 9);
        cursor.advance("a", 3);
        assert_eq!(cursor.next_offset("a"), 10);
        assert_eq!(cursor.next_offset("b"), 0);
    }
}
