//! The record model of the broker's core (independent of the wire types).

use std::collections::BTreeMap;

use bytes::Bytes;

/// A record as a producer hands it in and a consumer reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub tag: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub body: Bytes,
    /// Produce time in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// Where a record lives: identical in every region that holds it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    pub partition: u32,
    pub origin: String,
    pub offset: u64,
}

/// A record read back from a partition, with its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub origin: String,
    pub offset: u64,
    pub record: Record,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
