//! The storage seam: what the broker, the replicator and the access point need of a
//! partition's storage, whichever engine holds it, and what opens and removes a region's
//! topics. Two engines implement it: the embedded one (`Partition`, files under the data
//! directory, the default) and JetStream (the `jetstream-engine` crate: streams in a
//! replicated cluster that several nodes of a region share). Everything above this seam
//! (positions, groups, PoP, replication) is written once, against the traits.
//!
//! Metadata (topics, cursors, PoP state, tasks, checkpoints, timers) has its own seam,
//! [`crate::meta::MetaStore`].

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::partition::{GapPolicy, ReplicatedAppend, ReplicatedRun, SubLogInfo};
use super::reader::ReadOutcome;
use super::segment::{Damage, Truncation};
use crate::batch::{Batch, PendingBatch};
use crate::cursor::Cursor;
use crate::error::{BrokerError, Result};
use crate::meta::TopicConfig;
use crate::record::Record;

/// A future a storage engine returns (trait objects cannot have `async fn`s).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which records a partition read delivers: a tag and an SQL92 filter, each optional.
/// Records another filter skips move the cursor like delivered ones.
#[derive(Clone, Default)]
pub struct RecordFilter {
    pub tag: Option<String>,
    pub sql: Option<Arc<crate::sql::SqlFilter>>,
}

impl RecordFilter {
    pub fn tag(tag: Option<String>) -> Self {
        RecordFilter { tag, sql: None }
    }

    /// Whether `record` is delivered.
    pub fn admits(&self, record: &Record) -> bool {
        self.tag
            .as_ref()
            .is_none_or(|t| record.tag.as_ref() == Some(t))
            && self
                .sql
                .as_ref()
                .is_none_or(|f| f.matches(record.tag.as_deref(), &record.properties))
    }
}

/// One partition's storage in this region: its origin sub-logs and their arrival order.
pub trait PartitionStore: Send + Sync + 'static {
    fn index(&self) -> u32;
    fn topic(&self) -> &str;
    /// The topic's incarnation in this region (that of its own origin's sub-log).
    fn incarnation(&self) -> u64;
    /// The incarnation of `origin`'s sub-log here (0: unknown or not held).
    fn incarnation_of(&self, origin: &str) -> u64;
    /// Whether a storage failure fenced this partition (no writes until restart).
    fn is_fenced(&self) -> bool;
    /// `Ok` while the partition takes reads and writes; why not otherwise.
    fn is_open(&self) -> Result<()>;

    /// Appends records produced in this region at the local origin's next offsets;
    /// `(first, last)` offset once durable.
    fn append_local(&self, pending: PendingBatch) -> BoxFuture<'_, Result<(u64, u64)>>;

    /// Appends verified batches replicated from `origin` (of `incarnation` of its topic, 0:
    /// unknown), keeping their offsets, idempotently, one wait for durability for the run.
    fn append_replicated_run_in<'a>(
        &'a self,
        origin: &'a str,
        incarnation: u64,
        batches: Vec<Batch>,
        gap: GapPolicy,
    ) -> BoxFuture<'a, Result<ReplicatedRun>>;

    /// Appends a batch replicated from `origin`, keeping its offsets (see
    /// [`PartitionStore::append_replicated_run_in`]); returns once durable.
    fn append_replicated<'a>(
        &'a self,
        origin: &'a str,
        bytes: Bytes,
        gap: GapPolicy,
    ) -> BoxFuture<'a, Result<ReplicatedAppend>> {
        Box::pin(async move {
            let batch = Batch::from_bytes(bytes, crate::batch::MAX_BATCH_ON_DISK)
                .map_err(BrokerError::MalformedBatch)?;
            let (base, last) = (batch.header().base_offset, batch.header().last_offset());
            let run = self
                .append_replicated_run_in(origin, 0, vec![batch], gap)
                .await?;
            Ok(if run.appended == 1 {
                ReplicatedAppend::Appended { base, last }
            } else {
                ReplicatedAppend::AlreadyHeld
            })
        })
    }

    /// Appends batches replicated from `origin` of an unknown incarnation.
    fn append_replicated_run<'a>(
        &'a self,
        origin: &'a str,
        batches: Vec<Batch>,
        gap: GapPolicy,
    ) -> BoxFuture<'a, Result<ReplicatedRun>> {
        self.append_replicated_run_in(origin, 0, batches, gap)
    }

    /// Rings `bell` whenever a new sub-log appears in this partition (set once).
    fn set_bell(&self, bell: Arc<watch::Sender<u64>>);
    /// Every sub-log's extent.
    fn sub_logs(&self) -> Vec<SubLogInfo>;
    /// One origin's extent, or `None` when this partition holds nothing of it.
    fn sub_log(&self, origin: &str) -> Option<SubLogInfo> {
        self.sub_logs().into_iter().find(|s| s.origin == origin)
    }
    /// Damaged byte ranges recovery kept (the embedded engine's; others have none).
    fn damage(&self) -> Vec<Damage>;
    /// The offset of `origin`'s first record at or after `timestamp_ms` (the durable end
    /// when there is none), or `None` when nothing of that origin is held.
    fn sub_log_offset_for_time(&self, origin: &str, timestamp_ms: i64) -> Result<Option<u64>>;
    /// The cursor past everything durable.
    fn latest_cursor(&self) -> Cursor;
    /// Per origin, the first record at or after `timestamp_ms`, never past the durable end.
    fn cursor_for_time(&self, timestamp_ms: i64) -> Result<Cursor>;
    /// Removes what is past the retention limits (0: unlimited); how many pieces went.
    fn apply_retention(&self, max_bytes: u64, max_age_ms: u64, now_ms: i64) -> Result<usize>;
    /// Makes everything durable and refuses further appends.
    fn shut_down(&self) -> BoxFuture<'_, Result<()>>;
    /// Appends fail from now on; waiting readers wake and end.
    fn mark_deleted(&self);
    /// A counter that rises whenever more of the partition is durable (readers wait on it).
    fn subscribe_durable(&self) -> watch::Receiver<u64>;

    /// A reader of the partition's sub-logs merged in arrival order, from `cursor`.
    fn reader(self: Arc<Self>, cursor: Cursor, filter: RecordFilter) -> Box<dyn PartitionRead>;
    /// A reader of `origin`'s sub-log as stored batches, from the batch holding `from`.
    fn sub_log_reader(self: Arc<Self>, origin: &str, from: u64) -> Box<dyn SubLogRead>;
}

/// Reads a partition as one stream: its sub-logs merged in arrival order, from a vector
/// cursor, never past what is durable.
pub trait PartitionRead: Send + Sync {
    /// The position after everything read (or skipped by the filter) so far.
    fn cursor(&self) -> &Cursor;
    fn partition(&self) -> &dyn PartitionStore;
    /// Reads durable records past the cursor until about `max_bytes` of batches were read.
    /// May block (file or network I/O): call it where blocking is allowed.
    fn read(&mut self, max_bytes: usize) -> Result<ReadOutcome>;
    /// Waits until records past what was read are durable, or the partition closes.
    fn wait_for_data(&mut self) -> BoxFuture<'_, Result<()>>;
}

/// Reads one origin sub-log as stored batches, for replication: whole batches, never
/// re-encoded, never past the sub-log's durable end.
pub trait SubLogRead: Send + Sync {
    /// The offset the next read starts from.
    fn next_offset(&self) -> u64;
    /// Durable batches from [`next_offset`](Self::next_offset) on, at most `max_bytes` of
    /// them (or the one batch, when it alone is larger); empty when caught up. When
    /// retention removed `next_offset`, reading moves on to the oldest batch held.
    fn read(&mut self, max_bytes: usize) -> Result<Vec<Batch>>;
    /// Waits until more of the sub-log is durable, or the partition closes.
    fn wait_for_data(&mut self) -> BoxFuture<'_, Result<()>>;
}

/// A topic's partitions as an engine opened them, and what recovery cut.
pub type OpenedTopic = (Vec<Arc<dyn PartitionStore>>, Vec<Truncation>);

/// What holds a region's topics.
pub trait StorageEngine: Send + Sync + 'static {
    /// Opens (recovering) the partitions of a topic the metadata holds.
    fn open_topic(&self, topic: &TopicConfig) -> Result<OpenedTopic>;
    /// Makes the partitions of a topic just created (nothing of it stored yet), durably.
    fn create_topic(&self, topic: &TopicConfig) -> Result<Vec<Arc<dyn PartitionStore>>>;
    /// Removes whatever is stored of `topic` (deleted, or left by a creation that did not
    /// finish); nothing stored is fine.
    fn remove_topic(&self, topic: &str) -> Result<()>;
    /// Removes what is stored of `topic` under incarnations other than `keep` (on storage
    /// several nodes share, where a creation must not remove a concurrent creator's
    /// data); by default, [`remove_topic`](Self::remove_topic) before `keep`'s is made.
    fn remove_other_incarnations(&self, topic: &str, keep: u64) -> Result<()> {
        let _ = keep;
        self.remove_topic(topic)
    }
    /// Removes what is stored of `topic`'s incarnation `incarnation` only (on storage
    /// several nodes share, where a delete must not remove a creation made since through
    /// another node); by default, [`remove_topic`](Self::remove_topic).
    fn remove_incarnation(&self, topic: &str, incarnation: u64) -> Result<()> {
        let _ = incarnation;
        self.remove_topic(topic)
    }
    /// Where the engine keeps files, for an operator's messages (none: a remote engine).
    fn data_dir(&self) -> Option<PathBuf>;
    /// Whether other nodes of the region share this storage (and may create and delete
    /// topics in it); the broker then follows the shared metadata's topics.
    fn shared(&self) -> bool {
        false
    }
}
