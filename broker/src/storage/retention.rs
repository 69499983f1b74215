//! The retention rule every storage engine applies to a sub-log, oldest data first: the
//! oldest piece (a segment of the embedded engine, a batch of the JetStream engine) goes
//! while the sub-log holds more than the topic's `max_bytes`, or while the piece's newest
//! record is older than `max_age_ms` (0: no limit). Each engine keeps its newest piece
//! whatever this says: it is where the sub-log's end is known.

/// Whether a sub-log holding `held_bytes`, whose oldest piece's newest record was written
/// at `oldest_max_timestamp_ms`, loses that piece now.
pub fn removes_oldest(
    held_bytes: u64,
    oldest_max_timestamp_ms: i64,
    max_bytes: u64,
    max_age_ms: u64,
    now_ms: i64,
) -> bool {
    let over_size = max_bytes > 0 && held_bytes > max_bytes;
    let too_old = max_age_ms > 0
        && now_ms.saturating_sub(oldest_max_timestamp_ms)
            > i64::try_from(max_age_ms).unwrap_or(i64::MAX);
    over_size || too_old
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_when_over_size_or_too_old_and_zero_is_no_limit() {
        assert!(removes_oldest(101, 1_000, 100, 0, 1_000), "over size");
        assert!(!removes_oldest(100, 1_000, 100, 0, 1_000), "at the size");
        assert!(removes_oldest(1, 1_000, 0, 500, 1_501), "too old");
        assert!(!removes_oldest(1, 1_000, 0, 500, 1_500), "just at the age");
        assert!(
            !removes_oldest(u64::MAX, i64::MIN, 0, 0, 1_000),
            "no limits"
        );
    }
}
