//! Delay and timer messages: a message held until its delivery time, then appended to its
//! topic's partition in this region (its origin), from where it is read and replicated
//! like any other.
//!
//! - **Store.** Held messages live in the metadata store's `timers` tree, keyed by due time
//!   (ms) and a sequence number, big-endian: a time-ordered index on disk. Firing reads
//!   only the keys due now (a range from the start), so holding millions costs disk, not
//!   memory or a scan. Scheduling is durable when it returns (one flush per batch).
//! - **Entry.** `[u32 little-endian length][JSON header][one stored batch holding the
//!   record]`; the header names the topic, the partition, the message id, and, while it is
//!   being fired, the end of this region's sub-log just before (`firing_from`).
//! - **Firing exactly once.** Due entries are first marked `firing_from` (durably), then
//!   appended with the property `mq:timer_key` (the key in hex), then removed. After a crash
//!   between the append and the removal, an entry still marked is looked for in its
//!   partition from `firing_from` on: found, it is only removed; not found, it is fired.
//! - **Recall.** A send answers with a recall handle (the key in hex); recalling removes
//!   the entry if it has not fired.
//! - **Transactions.** A half message is an entry marked `transaction` (the checks made so
//!   far), due at its next orphan check: when due it is not appended but checked (the
//!   access point asks a producer of its topic) and held again until the next check, and
//!   after `MAX_CHECKS` it is rolled back. Its transaction id names an index entry, key
//!   `(u64::MAX, seq)` (never due), whose value is the key the half message is held under
//!   now. A commit holds it again as an ordinary entry due now; a rollback removes it. Half
//!   messages are held only in their origin region: nothing of them is replicated.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::batch::{Batch, PendingBatch};
use crate::meta::TimerKey;
use crate::record::Record;

/// The property a fired message carries: the key of its timer entry, in hex.
pub const TIMER_PROPERTY: &str = "mq:timer_key";

/// The longest delay taken.
pub const MAX_DELAY_MS: u64 = 90 * 86_400_000;

/// What a held message is, besides the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub topic: String,
    pub partition: u32,
    pub message_id: String,
    /// Set while it is being fired: this region's end of the partition just before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_from: Option<u64>,
    /// A half message of a transaction: the orphan checks made so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<u32>,
}

/// Orphan checks of a half message before it is rolled back.
pub const MAX_CHECKS: u32 = 15;
/// From a half message's send, and from each check, to its next check.
pub const CHECK_INTERVAL_MS: u64 = 5_000;

/// The index key of the half message held under `key` (its transaction id, as text).
pub fn index_of(key: &TimerKey) -> TimerKey {
    let mut index = *key;
    index[..8].copy_from_slice(&u64::MAX.to_be_bytes());
    index
}

/// The key of the same message due at `due_ms` instead.
pub fn moved(key: &TimerKey, due_ms: u64) -> TimerKey {
    let mut moved = *key;
    moved[..8].copy_from_slice(&due_ms.to_be_bytes());
    moved
}

/// A held message.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub header: Header,
    pub record: Record,
}

/// Why an entry's bytes do not decode.
#[derive(Debug, thiserror::Error)]
#[error("a held delayed message does not decode: {0}")]
pub struct EntryError(String);

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).expect("a header encodes");
        let batch = PendingBatch::consecutive(std::slice::from_ref(&self.record)).seal(0);
        let mut out = Vec::with_capacity(4 + header.len() + batch.len());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&batch);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        let fail = |what: &str| EntryError(what.to_string());
        let len = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| fail("shorter than its length"))?;
        let header = bytes
            .get(4..4 + len)
            .ok_or_else(|| fail("shorter than its header"))?;
        let header: Header = serde_json::from_slice(header).map_err(|e| fail(&e.to_string()))?;
        let batch = Batch::from_bytes(Bytes::copy_from_slice(&bytes[4 + len..]), usize::MAX)
            .map_err(|e| fail(&e.to_string()))?;
        let record = batch
            .records()
            .next()
            .map(|(_, r)| r)
            .ok_or_else(|| fail("its batch holds no record"))?;
        Ok(Entry { header, record })
    }
}

/// The key of a message due at `due_ms`, unique by `seq`.
pub fn key(due_ms: u64, seq: u64) -> TimerKey {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&due_ms.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// When the message of `key` is due.
pub fn due_ms(key: &TimerKey) -> u64 {
    u64::from_be_bytes(key[..8].try_into().expect("8 bytes"))
}

/// A key as text (recall handles, the fired message's property).
pub fn key_text(key: &TimerKey) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key a text names, if it names one.
pub fn parse_key(text: &str) -> Option<TimerKey> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// Sequence numbers for keys: they start from the clock in microseconds, so keys made
/// after a restart never repeat those made before.
pub struct Sequence(AtomicU64);

impl Default for Sequence {
    fn default() -> Self {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Sequence(AtomicU64::new(micros))
    }
}

impl Sequence {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_due_time_and_round_trip_as_text() {
        let (early, late) = (key(1_000, u64::MAX), key(1_001, 0));
        assert!(early < late);
        assert_eq!(due_ms(&late), 1_001);
        assert_eq!(parse_key(&key_text(&early)), Some(early));
        assert_eq!(parse_key("zz"), None);
        assert_eq!(parse_key(&"g".repeat(32)), None);
    }

    #[test]
    fn an_entry_round_trips() {
        let entry = Entry {
            header: Header {
                topic: "orders".into(),
                partition: 2,
                message_id: "m1".into(),
                firing_from: Some(7),
                transaction: Some(2),
            },
            record: Record {
                tag: Some("t".into()),
                properties: [("k".to_string(), "v".to_string())].into(),
                body: Bytes::from_static(b"hello"),
                timestamp_ms: 5,
                ..Default::default()
            },
        };
        let decoded = Entry::decode(&entry.encode()).unwrap();
        assert_eq!(decoded.header, entry.header);
        assert_eq!(
            (
                decoded.record.body,
                decoded.record.tag,
                decoded.record.properties
            ),
            (entry.record.body, entry.record.tag, entry.record.properties)
        );
        assert!(Entry::decode(b"\x05\x00").is_err());
    }
}
