//! What an append does when JetStream refused it because the sub-log's last message was not
//! the one the append expected: another writer (another node of the region) appended first.
//! Every append names the sequence of the sub-log's last message it saw, so two writers can
//! never both place a batch at one offset; the loser reads the new end and decides here.

/// The next step of an append of offsets `base..next` that found the sub-log ending at
/// `end` (the offset after its last batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterConflict {
    /// The sub-log already holds every offset of the batch: a replicated batch someone
    /// else applied. Nothing to write, nothing lost, nothing duplicated.
    AlreadyHeld,
    /// The batch still goes right after the end: append again, expecting the new last
    /// message.
    Retry,
    /// The end is before the batch (offsets `end..base` missing) or inside it: the batch
    /// cannot be placed and the caller must resume from `end`.
    Misplaced { end: u64 },
}

/// For a replicated batch, whose offsets are the origin's and never change.
pub fn replicated(end: u64, base: u64, next: u64) -> AfterConflict {
    if end >= next {
        AfterConflict::AlreadyHeld
    } else if end == base {
        AfterConflict::Retry
    } else {
        AfterConflict::Misplaced { end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_someone_else_applied_is_held_already() {
        assert_eq!(replicated(10, 5, 10), AfterConflict::AlreadyHeld);
        assert_eq!(replicated(12, 5, 10), AfterConflict::AlreadyHeld);
    }

    #[test]
    fn a_batch_still_at_the_end_is_tried_again() {
        assert_eq!(replicated(5, 5, 10), AfterConflict::Retry);
    }

    #[test]
    fn a_gap_or_a_partial_overlap_is_misplaced() {
        assert_eq!(replicated(3, 5, 10), AfterConflict::Misplaced { end: 3 });
        assert_eq!(replicated(7, 5, 10), AfterConflict::Misplaced { end: 7 });
    }
}
