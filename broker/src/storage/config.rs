//! Storage settings shared by every sub-log of a broker.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// A segment is sealed and a new one started when the next batch would pass this size.
    pub segment_bytes: u64,
    /// A segment older than this is sealed at the next append.
    pub segment_age: Duration,
    /// One sparse index entry per this many bytes of batches.
    pub index_interval_bytes: u64,
    /// Largest encoded record accepted.
    pub max_record_bytes: usize,
    /// Largest encoded batch accepted (a produce request per partition, or a replicated
    /// batch); at most `batch::MAX_BATCH_BYTES_LIMIT`. Reads from disk are bounded by that
    /// limit, not by this setting.
    pub max_batch_bytes: usize,
    /// How far ahead of this region's clock a record's timestamp may be: a produce past it
    /// is refused, and a replicated batch stamped further ahead counts, for age retention
    /// and the time index, as written at arrival + this skew (an outlier cannot pin a
    /// sub-log's retention or skew time seeks past that).
    pub max_timestamp_skew_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            segment_bytes: 64 << 20,
            segment_age: Duration::from_secs(7 * 24 * 3600),
            index_interval_bytes: 4096,
            max_record_bytes: 1 << 20,
            max_batch_bytes: 16 << 20,
            max_timestamp_skew_ms: 3_600_000,
        }
    }
}

impl StorageConfig {
    /// The largest batch accepted for storage, header included.
    pub fn max_stored_batch(&self) -> usize {
        self.max_batch_bytes + crate::batch::HEADER_LEN
    }

    /// The timestamp a batch counts as for retention and the time index, arriving at
    /// `now_ms`: its own, bounded by the allowed skew.
    pub fn effective_timestamp(&self, timestamp_ms: i64, now_ms: i64) -> i64 {
        timestamp_ms.min(now_ms.saturating_add(self.max_timestamp_skew_ms as i64))
    }
}
