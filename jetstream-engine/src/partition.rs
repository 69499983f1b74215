//! A partition on JetStream behind the broker's storage seam
//! (`broker::storage::PartitionStore`). Its sub-logs are subjects of the topic's stream
//! (`crate::sublog`); this node keeps each one's extent (start, end, last sequence,
//! incarnation), read from the cluster when the partition opens and followed as it
//! appends. An append is durable when the cluster acknowledges it (a quorum has it on
//! disk), so there is no group commit to wait for: the durable counter readers wait on is
//! the highest stream sequence appended here.
//!
//! The broker's rules stay the broker's: where a replicated batch goes
//! (`broker::storage::partition::place`) and what meeting another incarnation of an
//! origin's topic means (`broker::incarnation::meet`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use broker::batch::{Batch, PendingBatch};
use broker::cursor::Cursor;
use broker::error::{BrokerError, Result};
use broker::incarnation::Meeting;
use broker::storage::partition::{Placement, check_replicated_origin, place, refusal};
use broker::storage::store::{BoxFuture, PartitionRead, PartitionStore, RecordFilter, SubLogRead};
use broker::storage::{Damage, GapPolicy, ReplicatedRun, SubLogInfo};
use tokio::sync::watch;

use crate::engine::EngineError;
use crate::readers::{JetStreamPartitionReader, JetStreamSubLogReader};
use crate::sublog::{AppendError, Appended, SubLogId, SubLogs, Tail, retention};

/// Openings of partitions in this process, to name each one's appends apart.
static OPENINGS: AtomicU64 = AtomicU64::new(0);

const OPEN: u8 = 0;
const DELETED: u8 = 1;
const SHUT_DOWN: u8 = 2;

/// What this node knows of one origin's sub-log.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Held {
    pub tail: Tail,
    pub start: u64,
    /// Bytes this node stored or heard of since the partition opened (not lowered by
    /// retention).
    pub bytes: u64,
}

pub struct JetStreamPartition {
    logs: Arc<SubLogs>,
    topic: String,
    incarnation: u64,
    index: u32,
    local_origin: String,
    /// Names this opening of the partition in this node's local appends (with a counter),
    /// so that a retried one is recognised by the stream's duplicate window, and only it.
    node: String,
    appended: AtomicU64,
    held: Mutex<BTreeMap<String, Held>>,
    /// One append at a time from this node: each starts from the end the last one left.
    appending: tokio::sync::Mutex<()>,
    /// The highest stream sequence of this partition known to be stored.
    durable: watch::Sender<u64>,
    bell: OnceLock<Arc<watch::Sender<u64>>>,
    state: AtomicU8,
}

fn append_error(topic: &str, partition: u32, origin: &str, e: AppendError) -> BrokerError {
    match e {
        AppendError::Misplaced {
            end, base, next, ..
        } => BrokerError::OverlappingBatch {
            topic: topic.to_string(),
            partition,
            origin: origin.to_string(),
            expected: end,
            base,
            last: next.saturating_sub(1),
        },
        AppendError::Format { source, .. } => BrokerError::MalformedBatch(source),
        AppendError::Engine(e) => e.into(),
    }
}

impl JetStreamPartition {
    /// Opens partition `index` of one creation of `topic`: what each origin's sub-log
    /// holds, read from the cluster.
    pub async fn open(
        logs: Arc<SubLogs>,
        topic: &str,
        incarnation: u64,
        index: u32,
        local_origin: &str,
        node: &str,
    ) -> std::result::Result<Self, EngineError> {
        let mut held = BTreeMap::new();
        for origin in logs.origins(topic, incarnation, index).await? {
            let id = SubLogId {
                topic: topic.to_string(),
                incarnation,
                partition: index,
                origin: origin.clone(),
            };
            let tail = logs.tail(&id).await?;
            let start = logs.start(&id).await?.unwrap_or(tail.end);
            held.insert(
                origin,
                Held {
                    tail,
                    start,
                    bytes: 0,
                },
            );
        }
        let top = held
            .values()
            .map(|h| h.tail.last_sequence)
            .max()
            .unwrap_or(0);
        Ok(JetStreamPartition {
            logs,
            topic: topic.to_string(),
            incarnation,
            index,
            local_origin: local_origin.to_string(),
            // A partition opened again in this process (a topic taken up again) counts its
            // appends from 0 again: a name of its own keeps its message ids apart from
            // those of the earlier opening, still in the stream's duplicate window.
            node: format!("{node}-{}", OPENINGS.fetch_add(1, Ordering::Relaxed)),
            appended: AtomicU64::new(0),
            held: Mutex::new(held),
            appending: tokio::sync::Mutex::new(()),
            durable: watch::Sender::new(top),
            bell: OnceLock::new(),
            state: AtomicU8::new(OPEN),
        })
    }

    pub(crate) fn logs(&self) -> &Arc<SubLogs> {
        &self.logs
    }

    pub(crate) fn id(&self, origin: &str) -> SubLogId {
        SubLogId {
            topic: self.topic.clone(),
            incarnation: self.incarnation,
            partition: self.index,
            origin: origin.to_string(),
        }
    }

    /// What this node knows of `origin`'s sub-log.
    pub(crate) fn held(&self, origin: &str) -> Option<Held> {
        self.lock().get(origin).copied()
    }

    /// Every origin held, with what is known of it.
    pub(crate) fn all_held(&self) -> Vec<(String, Held)> {
        self.lock().iter().map(|(o, h)| (o.clone(), *h)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_open(&self) -> Result<()> {
        match self.state.load(Ordering::Acquire) {
            OPEN => Ok(()),
            DELETED => Err(BrokerError::TopicDeleted {
                topic: self.topic.clone(),
            }),
            _ => Err(BrokerError::ShuttingDown),
        }
    }

    /// Records `origin`'s new end after a batch from offset `base` was stored at stream
    /// sequence `tail.last_sequence`, by this node or (seen by the topic's follower) by
    /// another; what is known already is left alone.
    pub(crate) fn appended_to(&self, origin: &str, base: u64, tail: Tail, bytes: u64) {
        let new = {
            let mut held = self.lock();
            let new = !held.contains_key(origin);
            let entry = held.entry(origin.to_string()).or_insert(Held {
                start: base,
                ..Held::default()
            });
            if !new && tail.last_sequence <= entry.tail.last_sequence {
                return;
            }
            entry.tail = tail;
            entry.bytes += bytes;
            new
        };
        self.durable
            .send_modify(|top| *top = (*top).max(tail.last_sequence));
        if new && let Some(bell) = self.bell.get() {
            bell.send_modify(|n| *n += 1);
        }
    }

    async fn append_local_inner(&self, pending: PendingBatch) -> Result<(u64, u64)> {
        self.check_open()?;
        let _one = self.appending.lock().await;
        let mut tail = self.held(&self.local_origin).unwrap_or_default().tail;
        let start = tail.end;
        // Unique in the topic's stream (whose duplicate window it is checked against): the
        // node and this opening of the partition, the partition, and the count of appends.
        let message_id = format!(
            "{}-{}-{}",
            self.node,
            self.index,
            self.appended.fetch_add(1, Ordering::Relaxed)
        );
        let id = self.id(&self.local_origin);
        let stored = self
            .logs
            .append_local(&id, &mut tail, pending.seal(start), &message_id)
            .await
            .map_err(|e| append_error(&self.topic, self.index, &self.local_origin, e))?;
        let header = *stored.batch.header();
        self.appended_to(
            &self.local_origin,
            header.base_offset,
            tail,
            header.total_len as u64,
        );
        Ok((header.base_offset, header.last_offset()))
    }

    async fn append_replicated_inner(
        &self,
        origin: &str,
        incarnation: u64,
        batches: Vec<Batch>,
        gap: GapPolicy,
    ) -> Result<ReplicatedRun> {
        self.check_open()?;
        check_replicated_origin(origin, &self.local_origin)?;
        let _one = self.appending.lock().await;
        let mut run = ReplicatedRun::default();
        let id = self.id(origin);
        let known = self.held(origin);
        let mut tail = known.map(|h| h.tail).unwrap_or_default();
        let held_incarnation = known.map_or(0, |h| h.tail.incarnation);
        match broker::incarnation::meet(held_incarnation, incarnation) {
            Meeting::Same | Meeting::Adopt => {}
            Meeting::Replace => {
                self.logs.purge(&id).await?;
                tail = Tail::default();
                self.lock().remove(origin);
                run.replaced = Some(held_incarnation);
                tracing::warn!(event = "incarnation_replaced", topic = %self.topic, partition = self.index, %origin, retired = held_incarnation, new = incarnation, "the origin re-created the topic: this region's copy of the old incarnation was dropped and the new one starts from scratch");
            }
            Meeting::Stale => {
                return Err(BrokerError::StaleIncarnation {
                    topic: self.topic.clone(),
                    partition: self.index,
                    origin: origin.to_string(),
                    held: held_incarnation,
                    offered: incarnation,
                });
            }
        }
        let incarnation = if incarnation == 0 {
            held_incarnation
        } else {
            incarnation
        };
        for batch in batches {
            let header = *batch.header();
            match place(tail.end, &header, gap) {
                Placement::AlreadyHeld => {
                    run.already_held += 1;
                    continue;
                }
                Placement::Refused => {
                    return Err(refusal(&self.topic, self.index, origin, tail.end, &header));
                }
                Placement::Append => {}
            }
            let appended = self
                .logs
                .append_replicated(&id, &mut tail, batch.into_bytes(), gap, incarnation)
                .await
                .map_err(|e| append_error(&self.topic, self.index, origin, e))?;
            match appended {
                Appended::Stored { .. } => {
                    run.count_appended(&header);
                    self.appended_to(origin, header.base_offset, tail, header.total_len as u64);
                }
                Appended::AlreadyHeld => run.already_held += 1,
            }
        }
        run.end_offset = tail.end;
        Ok(run)
    }

    fn cursor_where(&self, offset_of: impl Fn(&str, &Held) -> Result<u64>) -> Result<Cursor> {
        let mut cursor = Cursor::default();
        for (origin, held) in self.all_held() {
            cursor.next.insert(
                origin.clone(),
                offset_of(&origin, &held)?.min(held.tail.end),
            );
            let incarnation = self.incarnation_of(&origin);
            if incarnation != 0 {
                cursor.incarnations.insert(origin, incarnation);
            }
        }
        Ok(cursor)
    }
}

impl PartitionStore for JetStreamPartition {
    fn index(&self) -> u32 {
        self.index
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    fn incarnation(&self) -> u64 {
        self.incarnation
    }

    fn incarnation_of(&self, origin: &str) -> u64 {
        if origin == self.local_origin {
            return self.incarnation;
        }
        self.held(origin).map_or(0, |h| h.tail.incarnation)
    }

    fn is_fenced(&self) -> bool {
        false
    }

    fn is_open(&self) -> Result<()> {
        self.check_open()
    }

    fn append_local(&self, pending: PendingBatch) -> BoxFuture<'_, Result<(u64, u64)>> {
        Box::pin(self.append_local_inner(pending))
    }

    fn append_replicated_run_in<'a>(
        &'a self,
        origin: &'a str,
        incarnation: u64,
        batches: Vec<Batch>,
        gap: GapPolicy,
    ) -> BoxFuture<'a, Result<ReplicatedRun>> {
        Box::pin(self.append_replicated_inner(origin, incarnation, batches, gap))
    }

    fn set_bell(&self, bell: Arc<watch::Sender<u64>>) {
        let _ = self.bell.set(bell);
    }

    fn sub_logs(&self) -> Vec<SubLogInfo> {
        self.all_held()
            .into_iter()
            .map(|(origin, h)| SubLogInfo {
                incarnation: self.incarnation_of(&origin),
                origin,
                start_offset: h.start,
                end_offset: h.tail.end,
                bytes: h.bytes,
                segments: 0,
                durable_end: h.tail.end,
            })
            .collect()
    }

    fn damage(&self) -> Vec<Damage> {
        Vec::new()
    }

    fn sub_log_offset_for_time(&self, origin: &str, timestamp_ms: i64) -> Result<Option<u64>> {
        let Some(held) = self.held(origin) else {
            return Ok(None);
        };
        self.offset_for_time_blocking(origin, held.tail.end, timestamp_ms)
            .map(Some)
    }

    fn latest_cursor(&self) -> Cursor {
        self.cursor_where(|_, h| Ok(h.tail.end))
            .expect("the end needs no read")
    }

    fn cursor_for_time(&self, timestamp_ms: i64) -> Result<Cursor> {
        self.cursor_where(|origin, h| {
            self.offset_for_time_blocking(origin, h.tail.end, timestamp_ms)
        })
    }

    /// Removes each sub-log's oldest batches by the broker's rule, never its last
    /// (`sublog::retention`), and learns where each sub-log starts now (another node of the
    /// region may have removed them first: purges are idempotent). Returns the batches
    /// removed.
    fn apply_retention(&self, max_bytes: u64, max_age_ms: u64, now_ms: i64) -> Result<usize> {
        if max_bytes == 0 && max_age_ms == 0 {
            return Ok(0);
        }
        let sub_logs: Vec<(SubLogId, u64)> = self
            .lock()
            .iter()
            .filter(|(_, h)| h.tail.last_sequence > 0)
            .map(|(origin, h)| (self.id(origin), h.tail.last_sequence))
            .collect();
        let logs = self.logs.clone();
        // One sub-log failing (the cluster slow to answer) leaves the others to go on.
        let (starts, failed) = self.logs.engine().run(async move {
            let mut starts = Vec::new();
            let mut failed = None;
            for (id, last) in sub_logs {
                let trimmed = async {
                    let batches = logs.weigh(&id, last).await?;
                    let gone = retention::expired(&batches, max_bytes, max_age_ms, now_ms);
                    let Some(first_kept) = batches.get(gone) else {
                        return Ok(None);
                    };
                    if gone > 0 {
                        logs.purge_before(&id, first_kept.sequence).await?;
                    }
                    Ok::<_, EngineError>(Some((first_kept.base, gone)))
                };
                match trimmed.await {
                    Ok(Some((start, gone))) => starts.push((id.origin.clone(), start, gone)),
                    Ok(None) => {}
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            (starts, failed)
        })?;
        let mut held = self.lock();
        let mut removed = 0;
        for (origin, start, gone) in starts {
            if let Some(h) = held.get_mut(&origin) {
                h.start = h.start.max(start);
            }
            removed += gone;
        }
        drop(held);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(removed),
        }
    }

    fn shut_down(&self) -> BoxFuture<'_, Result<()>> {
        self.state.store(SHUT_DOWN, Ordering::Release);
        self.durable.send_modify(|_| {});
        Box::pin(async { Ok(()) })
    }

    fn mark_deleted(&self) {
        self.state.store(DELETED, Ordering::Release);
        self.durable.send_modify(|_| {});
    }

    fn subscribe_durable(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    fn reader(self: Arc<Self>, cursor: Cursor, filter: RecordFilter) -> Box<dyn PartitionRead> {
        Box::new(JetStreamPartitionReader::new(self, cursor, filter))
    }

    fn sub_log_reader(self: Arc<Self>, origin: &str, from: u64) -> Box<dyn SubLogRead> {
        Box::new(JetStreamSubLogReader::new(self, origin, from))
    }
}

impl JetStreamPartition {
    /// The offset of `origin`'s first record at or after `timestamp_ms`, or `end`: a pass
    /// over the sub-log from its start (no time index here), on the engine's runtime.
    fn offset_for_time_blocking(&self, origin: &str, end: u64, timestamp_ms: i64) -> Result<u64> {
        let (logs, id) = (self.logs.clone(), self.id(origin));
        Ok(self
            .logs
            .engine()
            .run_fallible(async move { offset_for_time(&logs, &id, end, timestamp_ms).await })?)
    }
}

async fn offset_for_time(
    logs: &SubLogs,
    id: &SubLogId,
    end: u64,
    timestamp_ms: i64,
) -> std::result::Result<u64, EngineError> {
    let mut from = 0;
    loop {
        let batches = logs.read(id, from, 64).await?;
        let Some(last) = batches.last() else {
            return Ok(end);
        };
        for stored in &batches {
            if stored.batch.header().max_timestamp_ms >= timestamp_ms
                && let Some((offset, _)) = stored
                    .batch
                    .records()
                    .find(|(o, r)| *o >= from && r.timestamp_ms >= timestamp_ms)
            {
                return Ok(offset);
            }
        }
        from = last.batch.header().last_offset() + 1;
    }
}
