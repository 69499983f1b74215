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
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            segment_bytes: 64 << 20,
            segment_age: Duration::from_secs(7 * 24 * 3600),
            index_interval_bytes: 4096,
            max_record_bytes: 1 << 20,
            max_batch_bytes: 16 << 20,
        }
    }
}

impl StorageConfig {
    /// The largest batch accepted for storage, header included.
    pub fn max_stored_batch(&self) -> usize {
        self.max_batch_bytes + crate::batch::HEADER_LEN
    }
}
