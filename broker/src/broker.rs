//! The region broker: topics and their partitions, produce with partitioning, start
//! positions, consumer groups, retention and shutdown. Owns `<data_dir>/topics`.

mod cursors;
pub mod held;
pub mod query;
mod shared_topics;
mod timers;
mod topic_files;

pub use timers::{Hold, OrphanCheck, OrphanChecker, Scheduled};
use topic_files::{create_topic_files, open_topic, ring_on_new_sub_logs};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::batch::{Batch, PendingBatch, encoded_record_len};
use crate::cursor::Cursor;
use crate::error::{BrokerError, Result};
use crate::meta::{MessageType, MetaStore, Retention, TopicConfig};
use crate::names;
use crate::record::{Record, RecordId, now_ms};
use crate::storage::{
    EmbeddedEngine, GapPolicy, PartitionStore, ReplicatedAppend, ReplicatedRun, StorageConfig,
    StorageEngine, SubLogInfo, Truncation,
};

/// Runs blocking work (metadata flushes, file reads) off the async workers of a
/// multi-threaded runtime (its other tasks move to another thread first), inline otherwise.
pub fn blocking_here<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Upper bound on partitions per topic.
pub const MAX_PARTITIONS: u32 = 4096;

#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// This region's id: the origin of everything produced here.
    pub region: String,
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    /// Retention of topics created without one.
    pub default_retention: Retention,
}

/// How a produce request spreads its records over partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// Every record to this partition.
    Explicit(u32),
    /// `crc32c(key) mod partitions`; records without a key round-robin.
    ByKey,
    /// Round-robin, keys ignored.
    RoundRobin,
}

/// Where a read starts in a partition without an exact cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
    /// First records produced at or after this time (ms since the epoch), per origin.
    Timestamp(i64),
}

pub struct Topic {
    pub config: TopicConfig,
    pub partitions: Vec<Arc<dyn PartitionStore>>,
}

/// Decides whether this region accepts produce on a topic (replication's DR fencing).
pub trait WriteGate: Send + Sync {
    /// Why a produce to `topic` is refused here, if it is.
    fn refuses(&self, topic: &str) -> Option<String>;
}

/// A consumer group's cursor that changed here: by a commit, or by a merge of one that
/// another region synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorChange {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub cursor: Cursor,
}

/// Changes buffered for slow listeners before they miss some (and resync).
const CURSOR_FEED: usize = 4096;

pub struct Broker {
    config: BrokerConfig,
    gate: std::sync::OnceLock<Arc<dyn WriteGate>>,
    cursor_changes: tokio::sync::broadcast::Sender<CursorChange>,
    /// Serializes cursor writes, so a merge's read-modify-write cannot undo a commit.
    cursor_writes: std::sync::Mutex<()>,
    storage: Arc<StorageConfig>,
    engine: Arc<dyn StorageEngine>,
    meta: Arc<dyn MetaStore>,
    groups: crate::catalog::GroupBook,
    principals: crate::catalog::PrincipalBook,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Held while a topic is created or deleted (see [`Broker::create_topic_of`]).
    topic_creation: std::sync::Mutex<()>,
    /// Topics the last refresh of shared storage did not find (`broker/shared_topics.rs`).
    missing_once: std::sync::Mutex<std::collections::BTreeSet<String>>,
    round_robin: AtomicU64,
    recovery: Vec<Truncation>,
    /// Delayed messages (`broker/timers.rs`): key sequence, and the timer loop's wake-up.
    timer_seq: crate::timer::Sequence,
    timer_wake: tokio::sync::Notify,
    /// Serializes changes of half messages (checks, ends of transactions).
    timer_halves: std::sync::Mutex<()>,
    orphan_checker: std::sync::OnceLock<timers::OrphanChecker>,
    timer_metrics: crate::timer_metrics::TimerMetrics,
    tracer: std::sync::OnceLock<crate::trace::Tracer>,
    /// Bumped when a topic is created or deleted or a partition gets a new sub-log.
    sub_logs_changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Broker {
    /// Opens the broker on the embedded engine (files under `config.data_dir`): every
    /// topic in the metadata store, with recovery of its partitions.
    pub fn open(config: BrokerConfig, meta: Arc<dyn MetaStore>) -> Result<Self> {
        let storage = Arc::new(config.storage.clone());
        let engine = Arc::new(EmbeddedEngine::new(
            config.data_dir.clone(),
            &config.region,
            storage,
        ));
        Self::open_on(config, meta, engine)
    }

    /// Opens the broker on the storage engine `engine`.
    pub fn open_on(
        config: BrokerConfig,
        meta: Arc<dyn MetaStore>,
        engine: Arc<dyn StorageEngine>,
    ) -> Result<Self> {
        names::validate("region", &config.region)?;
        let storage = Arc::new(config.storage.clone());
        let mut topics = BTreeMap::new();
        let mut recovery = Vec::new();
        for mut topic in meta.topics()? {
            if topic.incarnation == 0 {
                // Metadata from before incarnations: this topic's incarnation starts now.
                topic.incarnation = crate::incarnation::new_incarnation();
                meta.put_topic(&topic)?;
                meta.flush()?;
            }
            let (opened, cut) = open_topic(engine.as_ref(), topic)?;
            recovery.extend(cut);
            topics.insert(opened.config.name.clone(), Arc::new(opened));
        }
        let sub_logs_changed = Arc::new(tokio::sync::watch::Sender::new(0));
        for topic in topics.values() {
            ring_on_new_sub_logs(topic, &sub_logs_changed);
        }
        let groups = crate::catalog::GroupBook::load(meta.clone())?;
        let principals = crate::catalog::PrincipalBook::load(meta.clone())?;
        Ok(Broker {
            config,
            groups,
            principals,
            gate: std::sync::OnceLock::new(),
            cursor_changes: tokio::sync::broadcast::Sender::new(CURSOR_FEED),
            cursor_writes: std::sync::Mutex::new(()),
            storage,
            engine,
            meta,
            topics: RwLock::new(topics),
            topic_creation: std::sync::Mutex::default(),
            missing_once: std::sync::Mutex::default(),
            round_robin: AtomicU64::new(0),
            recovery,
            timer_seq: crate::timer::Sequence::default(),
            timer_wake: tokio::sync::Notify::new(),
            timer_halves: std::sync::Mutex::new(()),
            tracer: std::sync::OnceLock::new(),
            sub_logs_changed,
            orphan_checker: std::sync::OnceLock::new(),
            timer_metrics: Default::default(),
        })
    }

    /// Partitions a storage failure fenced (no writes until the node restarts).
    pub fn fenced_partitions(&self) -> usize {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.is_fenced())
            .count()
    }

    pub fn region(&self) -> &str {
        &self.config.region
    }

    /// Installs the gate every produce passes (once; later calls are ignored).
    pub fn set_write_gate(&self, gate: Arc<dyn WriteGate>) {
        let _ = self.gate.set(gate);
    }

    /// Every change of a consumer group's cursor from now on.
    /// Traces what this broker and everything using it sees from now on (set once).
    pub fn set_tracer(&self, tracer: crate::trace::Tracer) {
        let _ = self.tracer.set(tracer);
    }

    /// Where to record trace events: a disabled tracer until one is set.
    pub fn tracer(&self) -> &crate::trace::Tracer {
        static DISABLED: crate::trace::Tracer = crate::trace::Tracer::disabled();
        self.tracer.get().unwrap_or(&DISABLED)
    }

    /// Changes when a topic is created or deleted or a partition gets a new sub-log: what
    /// this region can offer its neighbours changed (replication advertises at once).
    pub fn sub_logs_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sub_logs_changed.subscribe()
    }

    fn ring(&self) {
        self.sub_logs_changed.send_modify(|v| *v += 1);
    }

    pub fn cursor_changes(&self) -> tokio::sync::broadcast::Receiver<CursorChange> {
        self.cursor_changes.subscribe()
    }

    pub fn storage_config(&self) -> &StorageConfig {
        &self.storage
    }

    /// What recovery cut from torn or corrupt segment tails when the broker opened.
    pub fn recovery_report(&self) -> &[Truncation] {
        &self.recovery
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        retention: Option<Retention>,
    ) -> Result<TopicConfig> {
        self.create_topic_of(name, partitions, retention, MessageType::Normal)
    }

    /// Creates a topic that carries `message_type` messages.
    pub fn create_topic_of(
        &self,
        name: &str,
        partitions: u32,
        retention: Option<Retention>,
        message_type: MessageType,
    ) -> Result<TopicConfig> {
        names::validate("topic", name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(BrokerError::InvalidPartitionCount {
                count: partitions,
                max: MAX_PARTITIONS,
            });
        }
        // Creations are serialized, and the topics stay readable while the files of a new
        // one are made (thousands of partitions take a while): the map is locked only to
        // check the name and to insert the topic.
        let _creating = self
            .topic_creation
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.topics.read().expect("topics lock").contains_key(name) {
            return Err(BrokerError::TopicExists {
                topic: name.to_string(),
            });
        }
        let config = TopicConfig {
            name: name.to_string(),
            partitions,
            retention: retention.unwrap_or(self.config.default_retention),
            message_type,
            incarnation: crate::incarnation::new_incarnation(),
        };
        let topic = if self.engine.shared() {
            // Another node of the region may be creating it at this moment: the name is
            // claimed in the shared metadata first, and only the node that claimed it
            // makes it (the others take it up). What another incarnation left (a delete
            // that did not finish) is removed after the claim, never a concurrent
            // creator's streams.
            if self.meta.create_topic(&config)?.is_some() {
                return Err(BrokerError::TopicExists {
                    topic: name.to_string(),
                });
            }
            self.engine
                .remove_other_incarnations(name, config.incarnation)?;
            create_topic_files(self.engine.as_ref(), config.clone())?
        } else {
            // Files left by a topic of that name whose delete did not finish are not this
            // topic's.
            self.engine.remove_topic(name)?;
            let topic = create_topic_files(self.engine.as_ref(), config.clone())?;
            self.meta.put_topic(&config)?;
            topic
        };
        self.meta.flush()?;
        ring_on_new_sub_logs(&topic, &self.sub_logs_changed);
        self.topics
            .write()
            .expect("topics lock")
            .insert(name.to_string(), Arc::new(topic));
        self.ring();
        tracing::info!(
            topic = name,
            partitions,
            incarnation = config.incarnation,
            "topic created"
        );
        Ok(config)
    }

    pub fn delete_topic(&self, name: &str) -> Result<()> {
        // A creation of the same name waits until the old files are moved aside.
        let _creating = self
            .topic_creation
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let topic = self
            .topics
            .write()
            .expect("topics lock")
            .remove(name)
            .ok_or_else(|| BrokerError::UnknownTopic {
                topic: name.to_string(),
            })?;
        for partition in &topic.partitions {
            partition.mark_deleted();
        }
        self.meta.delete_topic(name)?;
        self.meta.flush()?;
        if self.engine.shared() {
            // Another node may have created the name again since: only this incarnation
            // goes.
            self.engine
                .remove_incarnation(name, topic.config.incarnation)?;
        } else {
            self.engine.remove_topic(name)?;
        }
        self.ring();
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Every topic open here, taken out of the map (its lock is not held after).
    pub(crate) fn open_topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn topics(&self) -> Vec<TopicConfig> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .map(|t| t.config.clone())
            .collect()
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        let known = self.topics.read().expect("topics lock").get(name).cloned();
        match known {
            Some(topic) => Ok(topic),
            None => self.adopt_topic(name),
        }
    }

    pub fn partition(&self, topic: &str, partition: u32) -> Result<Arc<dyn PartitionStore>> {
        let t = self.topic(topic)?;
        t.partitions
            .get(partition as usize)
            .cloned()
            .ok_or(BrokerError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: t.config.partitions,
            })
    }

    /// Per partition, every origin sub-log's extent.
    pub fn describe(&self, topic: &str) -> Result<(TopicConfig, Vec<Vec<SubLogInfo>>)> {
        let t = self.topic(topic)?;
        Ok((
            t.config.clone(),
            t.partitions.iter().map(|p| p.sub_logs()).collect(),
        ))
    }

    /// Appends records at this region's origin and returns their identities, in request
    /// order, once every one is durable.
    pub async fn produce(
        &self,
        topic: &str,
        mut records: Vec<Record>,
        partitioning: Partitioning,
    ) -> Result<Vec<RecordId>> {
        let t = self.topic(topic)?;
        let targets = self.admit(&t, &mut records, partitioning)?;
        let mut per_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        let mut slots = Vec::with_capacity(records.len());
        for (record, partition) in records.into_iter().zip(&targets) {
            let list = per_partition.entry(*partition).or_default();
            slots.push(list.len() as u64);
            list.push(record);
        }
        let mut appends = Vec::with_capacity(per_partition.len());
        for (partition, list) in &per_partition {
            let pending = PendingBatch::consecutive(list);
            if pending.len() > self.storage.max_batch_bytes {
                return Err(BrokerError::BatchTooLarge {
                    size: pending.len(),
                    limit: self.storage.max_batch_bytes,
                });
            }
            let p = t.partitions[*partition as usize].clone();
            appends.push(async move {
                p.append_local(pending)
                    .await
                    .map(|(base, _)| (*partition, base))
            });
        }
        let bases: BTreeMap<u32, u64> = futures_util::future::try_join_all(appends)
            .await?
            .into_iter()
            .collect();
        Ok(targets
            .iter()
            .zip(slots)
            .map(|(p, slot)| RecordId {
                partition: *p,
                origin: self.config.region.clone(),
                offset: bases[p] + slot,
            })
            .collect())
    }

    /// Checks a produce to `t` (the write gate, each record's size and timestamp, stamping
    /// records without one) and returns each record's partition.
    fn admit(
        &self,
        t: &Topic,
        records: &mut [Record],
        partitioning: Partitioning,
    ) -> Result<Vec<u32>> {
        let topic = t.config.name.as_str();
        if let Some(reason) = self.gate.get().and_then(|g| g.refuses(topic)) {
            return Err(BrokerError::ReadOnly {
                topic: topic.to_string(),
                reason,
            });
        }
        if records.is_empty() {
            return Err(BrokerError::EmptyProduce {
                topic: topic.to_string(),
            });
        }
        let now = now_ms();
        for (index, record) in records.iter_mut().enumerate() {
            let size = encoded_record_len(record);
            if size > self.storage.max_record_bytes {
                return Err(BrokerError::RecordTooLarge {
                    index,
                    size,
                    limit: self.storage.max_record_bytes,
                });
            }
            if record.timestamp_ms == 0 {
                record.timestamp_ms = now;
            }
            self.check_timestamp(index, record.timestamp_ms, now)?;
        }
        self.assign(topic, records, partitioning, t.config.partitions)
    }

    /// A producer's timestamp must not lie before the epoch, nor further ahead of this
    /// region's clock than the configured skew: one record stamped years ahead would
    /// otherwise hold its segment back from age retention and skew time seeks.
    fn check_timestamp(&self, index: usize, timestamp_ms: i64, now_ms: i64) -> Result<()> {
        let skew_ms = self.storage.max_timestamp_skew_ms;
        let reason = if timestamp_ms < 0 {
            "before the epoch"
        } else if timestamp_ms > now_ms.saturating_add(skew_ms as i64) {
            "too far in the future"
        } else {
            return Ok(());
        };
        Err(BrokerError::InvalidTimestamp {
            index,
            timestamp_ms,
            now_ms,
            skew_ms,
            reason,
        })
    }

    fn assign(
        &self,
        topic: &str,
        records: &[Record],
        partitioning: Partitioning,
        n: u32,
    ) -> Result<Vec<u32>> {
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed);
        let spread = |i: usize| ((start + i as u64) % u64::from(n)) as u32;
        Ok(match partitioning {
            Partitioning::Explicit(p) if p >= n => {
                return Err(BrokerError::UnknownPartition {
                    topic: topic.to_string(),
                    partition: p,
                    partitions: n,
                });
            }
            Partitioning::Explicit(p) => vec![p; records.len()],
            Partitioning::RoundRobin => (0..records.len()).map(spread).collect(),
            Partitioning::ByKey => records
                .iter()
                .enumerate()
                .map(|(i, r)| match &r.key {
                    Some(key) => crc32c::crc32c(key) % n,
                    None => spread(i),
                })
                .collect(),
        })
    }

    /// Appends a batch replicated from `origin` (see [`PartitionStore::append_replicated_run_in`]).
    pub async fn append_replicated(
        &self,
        topic: &str,
        partition: u32,
        origin: &str,
        batch: Bytes,
        gap: GapPolicy,
    ) -> Result<ReplicatedAppend> {
        self.partition(topic, partition)?
            .append_replicated(origin, batch, gap)
            .await
    }

    /// Appends verified batches replicated from `origin` (see
    /// [`PartitionStore::append_replicated_run_in`]).
    pub async fn append_replicated_run(
        &self,
        topic: &str,
        partition: u32,
        origin: &str,
        batches: Vec<Batch>,
        gap: GapPolicy,
    ) -> Result<ReplicatedRun> {
        self.partition(topic, partition)?
            .append_replicated_run(origin, batches, gap)
            .await
    }

    /// Appends verified batches of `incarnation` of `origin`'s topic (see
    /// [`PartitionStore::append_replicated_run_in`]).
    pub async fn append_replicated_run_in(
        &self,
        topic: &str,
        partition: u32,
        origin: &str,
        incarnation: u64,
        batches: Vec<Batch>,
        gap: GapPolicy,
    ) -> Result<ReplicatedRun> {
        self.partition(topic, partition)?
            .append_replicated_run_in(origin, incarnation, batches, gap)
            .await
    }

    /// The topic `name`, created with `partitions` (and default retention) when missing:
    /// replication's target topics. An existing topic keeps its settings.
    pub fn ensure_topic(&self, name: &str, partitions: u32) -> Result<TopicConfig> {
        self.ensure_topic_of(name, partitions, MessageType::Normal)
    }

    /// Like [`Broker::ensure_topic`], creating a topic of `message_type` (a replication
    /// target inherits its source's type).
    pub fn ensure_topic_of(
        &self,
        name: &str,
        partitions: u32,
        message_type: MessageType,
    ) -> Result<TopicConfig> {
        if let Ok(topic) = self.topic(name) {
            return Ok(topic.config.clone());
        }
        match self.create_topic_of(name, partitions, None, message_type) {
            Err(BrokerError::TopicExists { .. }) => Ok(self.topic(name)?.config.clone()),
            other => other,
        }
    }

    /// The metadata store (replication keeps task checkpoints in it).
    /// The consumer groups' settings (shared with every region).
    pub fn groups(&self) -> &crate::catalog::GroupBook {
        &self.groups
    }

    /// The principals changed at run time (shared with every region).
    pub fn principals(&self) -> &crate::catalog::PrincipalBook {
        &self.principals
    }

    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    /// The cursor of a start position in one partition.
    pub fn start_cursor(
        &self,
        partition: &dyn PartitionStore,
        start: StartPosition,
    ) -> Result<Cursor> {
        Ok(match start {
            StartPosition::Earliest => Cursor::default(),
            StartPosition::Latest => partition.latest_cursor(),
            StartPosition::Timestamp(ms) => partition.cursor_for_time(ms)?,
        })
    }

    /// Runs retention over every partition; returns how many segments were removed.
    pub fn apply_retention(&self) -> Result<usize> {
        let topics = self.open_topics();
        let now = now_ms();
        let mut removed = 0;
        for topic in topics {
            let r = topic.config.retention;
            for partition in &topic.partitions {
                match partition.apply_retention(r.max_bytes, r.max_age_ms, now) {
                    Ok(n) => removed += n,
                    // Deleted while retention ran: its files went with it.
                    Err(_) if partition.is_open().is_err() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }

    /// Refuses new appends, fsyncs every partition, flushes metadata.
    pub async fn shut_down(&self) -> Result<()> {
        let topics = self.open_topics();
        for topic in topics {
            for partition in &topic.partitions {
                partition.shut_down().await?;
            }
        }
        self.meta.flush()?;
        Ok(())
    }
}
