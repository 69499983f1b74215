//! Vector cursors: a consumer position in one partition, as the next offset to read per
//! origin region. Offsets are assigned once by the origin and are the same in every
//! region, so a cursor committed in one region is valid in every other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{origin region -> next offset}`. An origin missing from the cursor is read from the
/// start of what the region holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub next: BTreeMap<String, u64>,
}

impl Cursor {
    /// The next offset to read of `origin` (0 when the cursor has not seen it).
    pub fn next_offset(&self, origin: &str) -> u64 {
        self.next.get(origin).copied().unwrap_or(0)
    }

    /// Takes, per origin, the larger next offset of the two; whether anything changed.
    /// This is a join: order and repetition of merges do not matter, so regions that
    /// exchange cursors converge on the same one.
    pub fn merge(&mut self, other: &Cursor) -> bool {
        let mut changed = false;
        for (origin, &next) in &other.next {
            let mine = self.next.entry(origin.clone()).or_insert(0);
            if next > *mine {
                *mine = next;
                changed = true;
            }
        }
        changed
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

    #[test]
    fn advance_never_moves_back() {
        let mut cursor = Cursor::default();
        cursor.advance("a", 9);
        cursor.advance("a", 3);
        assert_eq!(cursor.next_offset("a"), 10);
        assert_eq!(cursor.next_offset("b"), 0);
    }
}
