//! Region metadata: topics with their settings, and consumer-group cursors. Behind the
//! [`MetaStore`] trait so that the engine (sled today) can change without touching callers.

pub mod conformance;
mod memory;
mod sled_store;

use serde::{Deserialize, Serialize};

pub use memory::MemoryMetaStore;
pub use sled_store::SledMetaStore;

use crate::cursor::Cursor;

/// Metadata errors: I/O or corruption in the store (fatal for the request; the store may
/// recover after a restart).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    #[error("metadata store: {0}")]
    Store(#[from] sled::Error),
    #[error("metadata entry '{key}' is unreadable: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("metadata key '{key}': {reason}")]
    Corrupt { key: String, reason: String },
    /// The store is another engine's (JetStream), which failed or could not be reached.
    #[error("metadata engine: {0}")]
    Engine(Box<dyn std::error::Error + Send + Sync>),
}

/// Retention limits of a topic; 0 means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub max_bytes: u64,
    pub max_age_ms: u64,
}

/// A topic as the metadata store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    pub name: String,
    pub partitions: u32,
    pub retention: Retention,
    /// What the topic carries (the RocketMQ access point refuses other kinds); replicated
    /// targets inherit it.
    #[serde(default)]
    pub message_type: MessageType,
    /// Fixed when the topic is created (see `crate::incarnation`); 0 in metadata written
    /// before incarnations existed (the broker assigns one when it opens).
    #[serde(default)]
    pub incarnation: u64,
}

proto::stable_codes! {
    /// The kind of messages a topic carries (its name in requests and metadata).
    #[derive(Default, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum MessageType {
        #[default]
        Normal => "normal",
        /// Ordered per message group.
        Fifo => "fifo",
        Delay => "delay",
        Transaction => "transaction",
    }
}

impl MessageType {
    /// The type a request names; empty is normal.
    pub fn from_request(text: &str) -> Option<Self> {
        if text.is_empty() {
            return Some(MessageType::Normal);
        }
        Self::parse(text)
    }
}

/// A replication task's position in one origin sub-log of a target topic: what it has
/// applied (`offset` is the next offset to pull), for status and for a restart that holds
/// nothing of the sub-log yet (a start position resolved once must not be resolved again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCheckpoint {
    pub task: String,
    pub topic: String,
    pub partition: u32,
    pub origin: String,
    pub offset: u64,
    /// The incarnation of the origin's topic `offset` is of (0: unknown).
    #[serde(default)]
    pub incarnation: u64,
    /// The incarnation of the target topic it was saved for: a checkpoint of a target
    /// topic since deleted and created again does not apply (0: unknown).
    #[serde(default)]
    pub target_incarnation: u64,
}

/// The kinds of records every region shares that the broker keeps (`crate::catalog`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SharedKind {
    Groups,
    Principals,
}

impl SharedKind {
    /// Its tree in the metadata.
    pub fn tree(self) -> &'static str {
        match self {
            SharedKind::Groups => "group_records",
            SharedKind::Principals => "principal_records",
        }
    }
}

pub trait MetaStore: Send + Sync + 'static {
    fn put_topic(&self, topic: &TopicConfig) -> Result<(), MetaError>;
    /// Stores `topic` unless a topic of its name is stored; returns the stored one then.
    /// On metadata several nodes share this is one compare-and-swap, so two nodes creating
    /// one topic at once never both succeed; on a node's own metadata (creations serialized
    /// by the broker) a read and a write.
    fn create_topic(&self, topic: &TopicConfig) -> Result<Option<TopicConfig>, MetaError> {
        if let Some(stored) = self.topics()?.into_iter().find(|t| t.name == topic.name) {
            return Ok(Some(stored));
        }
        self.put_topic(topic)?;
        Ok(None)
    }
    /// Removes the topic, every group cursor of it and every PoP state of it.
    fn delete_topic(&self, name: &str) -> Result<(), MetaError>;
    fn topics(&self) -> Result<Vec<TopicConfig>, MetaError>;
    fn put_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        cursor: &Cursor,
    ) -> Result<(), MetaError>;
    /// The group's cursors of a topic, by partition.
    fn cursors(&self, group: &str, topic: &str) -> Result<Vec<(u32, Cursor)>, MetaError>;
    /// Every group cursor: `(group, topic, partition, cursor)`.
    fn all_cursors(&self) -> Result<Vec<(String, String, u32, Cursor)>, MetaError>;
    fn put_checkpoint(&self, checkpoint: &TaskCheckpoint) -> Result<(), MetaError>;
    /// Every checkpoint of `task`.
    fn checkpoints(&self, task: &str) -> Result<Vec<TaskCheckpoint>, MetaError>;
    /// The checkpoint of one sub-log of `task`, if one was saved: a lookup, not a scan of
    /// the task's checkpoints (a pull starting reads it, and a task may carry thousands).
    fn checkpoint(
        &self,
        task: &str,
        topic: &str,
        partition: u32,
        origin: &str,
    ) -> Result<Option<TaskCheckpoint>, MetaError>;
    /// When `task` first ran in this region (ms since the epoch): records `now_ms` the
    /// first time and returns the recorded time ever after.
    fn task_started(&self, task: &str, now_ms: i64) -> Result<i64, MetaError>;
    /// Stores the replication task record `name` (opaque bytes owned by the replicator:
    /// its spec, version and whether it was deleted), durably.
    fn put_task_record(&self, name: &str, record: &[u8]) -> Result<(), MetaError>;
    /// Every stored task record, by name.
    fn task_records(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError>;
    /// Stores the shared record `name` of `kind` (JSON of a [`crate::catalog::Record`]),
    /// durably.
    fn put_shared_record(
        &self,
        kind: SharedKind,
        name: &str,
        record: &[u8],
    ) -> Result<(), MetaError>;
    /// Every stored record of `kind`, by name.
    fn shared_records(&self, kind: SharedKind) -> Result<Vec<(String, Vec<u8>)>, MetaError>;
    /// Stores the PoP consumption states of `group` in some of `topic`'s partitions
    /// (`(partition, opaque bytes owned by the RocketMQ access point)`), all at once and
    /// durably: one flush for all of them.
    fn put_pop_states(
        &self,
        group: &str,
        topic: &str,
        states: &[(u32, Vec<u8>)],
    ) -> Result<(), MetaError>;
    /// The group's PoP states of a topic, by partition.
    fn pop_states(&self, group: &str, topic: &str) -> Result<Vec<(u32, Vec<u8>)>, MetaError>;
    /// Writes (`Some(bytes)`) and removes (`None`) delayed messages (`crate::timer`) by
    /// key, all at once and durably. A key is the due time in ms and a sequence number,
    /// both big-endian, so keys sort by due time.
    fn write_timers(&self, changes: &[(TimerKey, Option<Vec<u8>>)]) -> Result<(), MetaError>;
    /// Up to `limit` delayed messages in key order, from `from` on.
    fn timers_from(
        &self,
        from: TimerKey,
        limit: usize,
    ) -> Result<Vec<(TimerKey, Vec<u8>)>, MetaError>;
    /// The delayed message of `key`, if held.
    fn timer(&self, key: TimerKey) -> Result<Option<Vec<u8>>, MetaError>;
    /// Makes every change so far durable.
    fn flush(&self) -> Result<(), MetaError>;
}

/// The key of a delayed message: due time in ms, then a sequence number, big-endian.
pub type TimerKey = [u8; 16];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_are_stored_under_their_names() {
        for t in MessageType::ALL {
            let json = serde_json::to_string(t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(MessageType::from_request(t.as_str()), Some(*t));
        }
        assert_eq!(MessageType::from_request(""), Some(MessageType::Normal));
        assert_eq!(MessageType::from_request("lifo"), None);
    }

    #[test]
    fn memory_store() {
        conformance::exercise(&MemoryMetaStore::default());
    }

    #[test]
    fn sled_store_persists() {
        let dir = tempfile::tempdir().unwrap();
        conformance::exercise(&SledMetaStore::open(dir.path()).unwrap());
        let reopened = SledMetaStore::open(dir.path()).unwrap();
        assert_eq!(reopened.topics().unwrap().len(), 1);
        assert_eq!(reopened.checkpoints("dr").unwrap()[0].offset, 9);
        assert_eq!(reopened.task_started("dr", 100).unwrap(), 5);
    }
}
