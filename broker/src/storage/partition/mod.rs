//! A partition in this region: its origin sub-logs (`logs/<origin>/`) and the arrival index
//! that orders them.
//!
//! Durability: an append writes its batch and arrival entry to the page cache under the
//! partition lock, then waits for the group commit ([`commit`](super::commit)) to raise the
//! durable watermark (an arrival sequence) past its entry. Readers never see past the
//! watermark, so nothing served can vanish in a crash. A failed write or fsync fences the
//! partition: every later append fails until the node restarts and recovers it from disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::arrival::{Arrival, ArrivalLog, RETIRED};
use super::commit::Shared;
use super::config::StorageConfig;
use super::segment::{Damage, SegmentFile, Truncation};
use super::sublog::{Location, SubLog, sync_dir};
use crate::batch::{BatchHeader, PendingBatch};
use crate::cursor::Cursor;
use crate::error::{BrokerError, Result};
use crate::names;

mod as_store;
mod new_sublog;
mod replicated;

pub use replicated::{
    GapPolicy, Placement, ReplicatedAppend, ReplicatedRun, check_replicated_origin, place, refusal,
};

/// One origin sub-log's extent, for describe and for positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubLogInfo {
    pub origin: String,
    pub start_offset: u64,
    pub end_offset: u64,
    pub bytes: u64,
    pub segments: usize,
    /// The next offset past what is durable (what readers and replication may serve).
    pub durable_end: u64,
    /// The incarnation of the origin's topic (0: unknown).
    pub incarnation: u64,
}

const OPEN: u8 = 0;
const DELETED: u8 = 1;
const SHUT_DOWN: u8 = 2;

pub struct Partition {
    /// The topic's incarnation in this region: that of the local origin's sub-log.
    incarnation: u64,
    dir: PathBuf,
    local_origin: String,
    config: Arc<StorageConfig>,
    shared: Arc<Shared>,
    state: AtomicU8,
    /// Rung when a new sub-log appears here (`Broker::sub_logs_changed`).
    bell: std::sync::OnceLock<Arc<watch::Sender<u64>>>,
    /// Held while a sub-log is created (`new_sublog.rs`): one at a time.
    creating: Arc<tokio::sync::Mutex<()>>,
}

pub(super) struct Inner {
    /// Indexed like `arrival.origins()`.
    pub(super) sublogs: Vec<SubLog>,
    pub(super) arrival: ArrivalLog,
    /// Segment files written since the last fsync.
    pub(super) dirty: Vec<Arc<SegmentFile>>,
    /// Per sub-log, the next offset past its durable batches.
    pub(super) durable_ends: Vec<u64>,
    pub(super) fenced: Option<String>,
    /// Whether a committer task is running (or about to).
    pub(super) committing: bool,
}

impl Partition {
    /// Opens the partition at `dir`, recovering every sub-log and reconciling the arrival
    /// index with them. Returns what recovery cut.
    /// `incarnation` is the topic's (this region's origin sub-log is of it).
    pub fn open(
        dir: PathBuf,
        topic: &str,
        incarnation: u64,
        index: u32,
        local_origin: &str,
        config: Arc<StorageConfig>,
    ) -> Result<(Self, Vec<Truncation>)> {
        Self::open_with_fsyncs(dir, topic, incarnation, index, local_origin, config, true)
    }

    /// [`open`](Self::open), fsyncing nothing when `fsyncs` is false: a new topic's
    /// partitions can be made durable together by one
    /// [`sync_file_system`](super::sublog::sync_file_system) before the topic is recorded,
    /// since an fsync per partition made a topic of thousands of partitions take seconds.
    pub fn open_with_fsyncs(
        dir: PathBuf,
        topic: &str,
        incarnation: u64,
        index: u32,
        local_origin: &str,
        config: Arc<StorageConfig>,
        fsyncs: bool,
    ) -> Result<(Self, Vec<Truncation>)> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(BrokerError::io("create partition directory", &logs))?;
        if fsyncs {
            sync_dir(&dir)?;
        }
        // Sub-logs a replacement moved aside and a crash left behind.
        for entry in std::fs::read_dir(&dir).map_err(BrokerError::io("list partition", &dir))? {
            let entry = entry.map_err(BrokerError::io("list partition", &dir))?;
            if entry.file_name().to_string_lossy().starts_with("retired-") {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(BrokerError::io("remove", &path))?;
            }
        }
        let mut arrival = ArrivalLog::open(&dir)?;
        for entry in std::fs::read_dir(&logs).map_err(BrokerError::io("list partition", &logs))? {
            let entry = entry.map_err(BrokerError::io("list partition", &logs))?;
            if let Some(name) = entry.file_name().to_str()
                && names::validate("region", name).is_ok()
            {
                arrival.origin_id(name)?;
            }
        }
        let mut sublogs = Vec::new();
        let mut truncations = Vec::new();
        for origin in arrival.origins().to_vec() {
            let (mut sublog, cut) = SubLog::open(logs.join(&origin), origin, &config)?;
            if sublog.origin() == local_origin && incarnation != 0 {
                sublog.set_incarnation(incarnation)?;
            }
            truncations.extend(cut);
            sublogs.push(sublog);
        }
        reconcile(&mut arrival, &sublogs)?;
        // What a killed process left in the page cache is served (and replicated) from
        // now on as durable: make it so before anyone reads it.
        if fsyncs {
            for sublog in &sublogs {
                sublog.sync()?;
            }
            arrival
                .file()
                .sync_data()
                .map_err(BrokerError::io("fsync arrival index", arrival.path()))?;
        }
        let durable = watch::Sender::new(arrival.end_seq());
        let durable_ends = sublogs.iter().map(SubLog::next_offset).collect();
        let partition = Partition {
            bell: std::sync::OnceLock::new(),
            creating: Arc::default(),
            incarnation,
            dir,
            local_origin: local_origin.to_string(),
            config,
            shared: Arc::new(Shared {
                topic: topic.to_string(),
                index,
                inner: Mutex::new(Inner {
                    sublogs,
                    arrival,
                    dirty: Vec::new(),
                    durable_ends,
                    fenced: None,
                    committing: false,
                }),
                sync_lock: tokio::sync::Mutex::new(()),
                durable,
            }),
            state: AtomicU8::new(OPEN),
        };
        Ok((partition, truncations))
    }

    pub fn index(&self) -> u32 {
        self.shared.index
    }

    /// The topic's incarnation in this region (that of its own origin's sub-log).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The incarnation of `origin`'s sub-log here: the topic's own for this region's
    /// origin (even before its first record), else what the sub-log records (0: unknown or
    /// not held).
    pub fn incarnation_of(&self, origin: &str) -> u64 {
        if origin == self.local_origin {
            return self.incarnation;
        }
        // Called on every read of a serving stream: one lookup, not a whole `sub_logs`.
        let inner = self.lock();
        let id = inner.arrival.origins().iter().position(|o| o == origin);
        id.map_or(0, |id| inner.sublogs[id].incarnation())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    fn check_open(&self) -> Result<()> {
        match self.state.load(Ordering::Acquire) {
            OPEN => Ok(()),
            DELETED => Err(BrokerError::TopicDeleted {
                topic: self.shared.topic.clone(),
            }),
            _ => Err(BrokerError::ShuttingDown),
        }
    }

    /// Whether a storage failure fenced this partition (it takes no writes until restart).
    pub fn is_fenced(&self) -> bool {
        self.lock().fenced.is_some()
    }

    fn fenced(&self, reason: String) -> BrokerError {
        self.shared.fenced(reason)
    }

    /// Appends records produced in this region at the local origin's next offsets, and
    /// returns `(first, last)` offset once they are durable. The caller checked sizes.
    pub async fn append_local(&self, pending: PendingBatch) -> Result<(u64, u64)> {
        self.check_open()?;
        let origin = self
            .sublog_for(&self.local_origin, self.incarnation)
            .await?;
        let (base, last, seq) = {
            let mut inner = self.lock();
            let base = inner.sublogs[origin].next_offset();
            let bytes = pending.seal(base);
            let header =
                BatchHeader::parse(&bytes, usize::MAX).map_err(BrokerError::MalformedBatch)?;
            let seq = self.write(&mut inner, origin, &bytes, &header)?;
            (base, header.last_offset(), seq)
        };
        self.commit_and_wait(seq + 1).await?;
        Ok((base, last))
    }

    /// Rings `bell` whenever a new sub-log appears in this partition (set once).
    pub fn set_bell(&self, bell: Arc<watch::Sender<u64>>) {
        let _ = self.bell.set(bell);
    }

    /// Replaces sub-log `id` (a stale copy of an incarnation its origin deleted) by an empty
    /// one of `incarnation`: its arrival entries are retired (durably, first), then its
    /// files removed. A crash in between leaves either the old sub-log (the entries come
    /// back when the index is reconciled, and the next batch of the new incarnation
    /// replaces it again) or none.
    fn retire(&self, inner: &mut Inner, id: usize, incarnation: u64) -> Result<()> {
        self.retire_files(inner, id, incarnation).inspect_err(|e| {
            // The index and the files may disagree now: stop until a restart recovers.
            tracing::error!(event = "sub_log_replace_failed", topic = %self.shared.topic, partition = self.shared.index, error = %e, "replacing a sub-log failed; partition fenced");
            inner.fenced = Some(format!("replacing a sub-log failed: {e}"));
        })
    }

    fn retire_files(&self, inner: &mut Inner, id: usize, incarnation: u64) -> Result<()> {
        let origin = inner.sublogs[id].origin().to_string();
        let old = inner.sublogs[id].incarnation();
        inner.arrival.retire(id as u16)?;
        let dir = self.dir.join("logs").join(&origin);
        let aside = self.dir.join(format!("retired-{origin}-{old}"));
        std::fs::rename(&dir, &aside).map_err(BrokerError::io("move aside", &dir))?;
        sync_dir(&self.dir.join("logs"))?;
        std::fs::remove_dir_all(&aside).map_err(BrokerError::io("remove", &aside))?;
        let (mut sublog, _) = SubLog::open(dir, origin.clone(), &self.config)?;
        sublog.set_incarnation(incarnation)?;
        sync_dir(&self.dir.join("logs"))?;
        inner.durable_ends[id] = sublog.next_offset();
        inner.sublogs[id] = sublog;
        tracing::warn!(event = "incarnation_replaced", topic = %self.shared.topic, partition = self.shared.index, %origin, retired = old, new = incarnation, "the origin re-created the topic: this region's copy of the old incarnation was dropped and the new one starts from scratch");
        Ok(())
    }

    /// Writes a verified batch and its arrival entry (page cache). Any failure fences.
    fn write(
        &self,
        inner: &mut Inner,
        origin: usize,
        bytes: &[u8],
        header: &BatchHeader,
    ) -> Result<u64> {
        if let Some(reason) = &inner.fenced {
            return Err(self.fenced(reason.clone()));
        }
        let written = inner.sublogs[origin]
            .append(bytes, header, &self.config)
            .and_then(|file| {
                if !inner.dirty.iter().any(|f| Arc::ptr_eq(f, &file)) {
                    inner.dirty.push(file);
                }
                let entry = Arrival {
                    origin: origin as u16,
                    base: header.base_offset,
                    last: header.last_offset(),
                };
                inner.arrival.append(entry)
            });
        written.map_err(|e| {
            // The topic was deleted under this write (its files moved away): not a storage
            // failure, and this partition is gone anyway.
            if let Err(deleted @ BrokerError::TopicDeleted { .. }) = self.check_open() {
                return deleted;
            }
            tracing::error!(event = "partition_write_failed", topic = %self.shared.topic, partition = self.shared.index, error = %e, "write failed; partition fenced");
            inner.fenced = Some(e.to_string());
            e
        })
    }

    /// Makes sure the committer runs, then waits until the arrival sequence `target`
    /// (exclusive) is durable. Cancelling the wait does not stop the commit.
    async fn commit_and_wait(&self, target: u64) -> Result<()> {
        Shared::ensure_committer(&self.shared);
        let mut durable = self.shared.durable.subscribe();
        loop {
            if *durable.borrow_and_update() >= target {
                return Ok(());
            }
            if let Some(reason) = &self.lock().fenced {
                return Err(self.fenced(reason.clone()));
            }
            // The sender lives as long as `self`.
            let _ = durable.changed().await;
        }
    }

    /// Every sub-log's extent.
    pub fn sub_logs(&self) -> Vec<SubLogInfo> {
        let inner = self.lock();
        inner
            .sublogs
            .iter()
            .zip(&inner.durable_ends)
            .map(|(s, durable_end)| SubLogInfo {
                origin: s.origin().to_string(),
                start_offset: s.start_offset(),
                end_offset: s.next_offset(),
                bytes: s.bytes(),
                segments: s.segment_count(),
                durable_end: *durable_end,
                incarnation: s.incarnation(),
            })
            .collect()
    }

    /// Damaged byte ranges that recovery kept (reads stop at them until a repair).
    pub fn damage(&self) -> Vec<Damage> {
        self.lock()
            .sublogs
            .iter()
            .flat_map(SubLog::damage)
            .collect()
    }

    /// The offset of `origin`'s first record at or after `timestamp_ms` (the durable end
    /// when there is none), or `None` when this partition holds nothing of that origin.
    pub fn sub_log_offset_for_time(&self, origin: &str, timestamp_ms: i64) -> Result<Option<u64>> {
        let inner = self.lock();
        let Some(id) = inner.arrival.origins().iter().position(|o| o == origin) else {
            return Ok(None);
        };
        let found = inner.sublogs[id].offset_for_time(timestamp_ms)?;
        Ok(Some(found.min(inner.durable_ends[id])))
    }

    /// The cursor past everything durable: a read from it sees only what is acknowledged
    /// from now on (`latest`). Never the page-cache end: records still waiting for their
    /// fsync may yet be lost in a crash, and a start past them would skip their rewrite.
    pub fn latest_cursor(&self) -> Cursor {
        self.cursor_where(|_| Ok(u64::MAX))
            .expect("the durable end needs no read")
    }

    /// Per origin, the first record at or after `timestamp_ms`, never past the durable end.
    pub fn cursor_for_time(&self, timestamp_ms: i64) -> Result<Cursor> {
        self.cursor_where(|s| s.offset_for_time(timestamp_ms))
    }

    /// A cursor at `offset_of` each sub-log, never past its durable end, with the
    /// sub-logs' incarnations.
    fn cursor_where(&self, offset_of: impl Fn(&SubLog) -> Result<u64>) -> Result<Cursor> {
        let inner = self.lock();
        let mut cursor = Cursor::default();
        for (s, end) in inner.sublogs.iter().zip(&inner.durable_ends) {
            let origin = s.origin().to_string();
            cursor.next.insert(origin.clone(), offset_of(s)?.min(*end));
            if s.incarnation() != 0 {
                cursor.incarnations.insert(origin, s.incarnation());
            }
        }
        Ok(cursor)
    }

    /// Whether `file` is still a segment of `origin`'s sub-log: a read of a sealed file that
    /// fails as not found was racing retention when it is not.
    pub(crate) fn removed(&self, origin: &str, file: &Arc<SegmentFile>) -> bool {
        let inner = self.lock();
        let id = inner.arrival.origins().iter().position(|o| o == origin);
        id.is_none_or(|id| !inner.sublogs[id].holds(file))
    }

    /// For a sub-log reader: `origin`'s start offset, durable end, and where `offset` is.
    pub(crate) fn locate_in(
        &self,
        origin: &str,
        offset: u64,
    ) -> Option<(u64, u64, Option<Location>)> {
        let inner = self.lock();
        let id = inner.arrival.origins().iter().position(|o| o == origin)?;
        let sublog = &inner.sublogs[id];
        Some((
            sublog.start_offset(),
            inner.durable_ends[id],
            sublog.locate(offset),
        ))
    }

    /// Removes segments past the retention limits (0 = unlimited) and the arrival entries
    /// that pointed into them. Returns how many segments went.
    pub fn apply_retention(&self, max_bytes: u64, max_age_ms: u64, now_ms: i64) -> Result<usize> {
        let mut inner = self.lock();
        let mut removed = 0;
        for sublog in &mut inner.sublogs {
            removed += sublog.apply_retention(max_bytes, max_age_ms, now_ms)?;
        }
        if removed > 0 {
            let starts: Vec<u64> = inner.sublogs.iter().map(SubLog::start_offset).collect();
            inner
                .arrival
                .trim_front(|origin| starts[usize::from(origin)]);
            inner.arrival.compact_if_worthwhile()?;
        }
        // An origin written rarely pins the front of the index; bound it anyway.
        let durable = *self.shared.durable.borrow();
        inner.arrival.coalesce_if_large(durable)?;
        Ok(removed)
    }

    /// Makes everything durable and refuses further appends (shutdown).
    pub async fn shut_down(&self) -> Result<()> {
        self.close(SHUT_DOWN);
        let _commit = self.shared.sync_lock.lock().await;
        let inner = self.lock();
        for sublog in &inner.sublogs {
            sublog.sync()?;
        }
        inner
            .arrival
            .file()
            .sync_data()
            .map_err(BrokerError::io("fsync arrival index", inner.arrival.path()))?;
        let end = inner.arrival.end_seq();
        drop(inner);
        self.shared.raise_watermark(end);
        Ok(())
    }

    /// Marks the partition deleted: appends fail, waiting readers wake and end.
    pub fn mark_deleted(&self) {
        self.close(DELETED);
    }

    fn close(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.shared.durable.send_modify(|_| {});
    }

    pub fn subscribe_durable(&self) -> watch::Receiver<u64> {
        self.shared.durable.subscribe()
    }

    pub fn topic(&self) -> &str {
        &self.shared.topic
    }

    pub(crate) fn with_inner<T>(&self, f: impl FnOnce(&ArrivalLog, &[SubLog]) -> T) -> T {
        let inner = self.lock();
        f(&inner.arrival, &inner.sublogs)
    }

    pub(crate) fn is_open(&self) -> Result<()> {
        self.check_open()
    }
}

/// Makes the arrival index agree with the recovered sub-logs: drops entries that point
/// past a sub-log's end, before its start or out of order, then adds entries for batches
/// a sub-log holds past the index's last entry for it (in sub-log order).
fn reconcile(arrival: &mut ArrivalLog, sublogs: &[SubLog]) -> Result<()> {
    let mut previous: Vec<Option<u64>> = vec![None; sublogs.len()];
    let keep: Vec<bool> = (arrival.first_seq()..arrival.end_seq())
        .map(|seq| {
            let entry = arrival.get(seq).expect("sequence in range");
            if entry.origin == RETIRED {
                return false;
            }
            let sublog = &sublogs[usize::from(entry.origin)];
            let prev = &mut previous[usize::from(entry.origin)];
            let ok = entry.last < sublog.next_offset()
                && entry.last >= sublog.start_offset()
                && prev.is_none_or(|p| entry.base > p);
            if ok {
                *prev = Some(entry.last);
            }
            ok
        })
        .collect();
    let dropped = keep.iter().filter(|k| !**k).count();
    if dropped > 0 {
        let mut flags = keep.into_iter();
        arrival.rewrite(|_| flags.next().unwrap_or(false))?;
        tracing::warn!(event = "arrival_index_entries_dropped", path = %arrival.path().display(), dropped, "arrival index held entries the sub-logs do not; dropped");
    }
    let mut added = 0usize;
    for (id, sublog) in sublogs.iter().enumerate() {
        let from = arrival
            .last_offset(id as u16)
            .map_or(sublog.start_offset(), |last| last + 1);
        for header in sublog.headers_from(from)? {
            arrival.append(Arrival {
                origin: id as u16,
                base: header.base_offset,
                last: header.last_offset(),
            })?;
            added += 1;
        }
    }
    if added > 0 {
        tracing::info!(path = %arrival.path().display(), added, "arrival index completed from the sub-logs");
    }
    Ok(())
}
