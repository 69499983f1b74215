//! An origin sub-log: the records of one origin region in one partition, as a directory of
//! segments (`<topic>/<partition>/<origin>/`). Offsets are the origin's; they only grow,
//! and they may skip (an intended gap where a replication filter removed records, or the
//! start of a sub-log replicated from "latest").
//!
//! A sub-log belongs to one *incarnation* of its origin's topic (an id the origin fixed
//! when it created the topic; see `crate::incarnation`), kept in the file `incarnation`
//! beside the segments (absent: 0, unknown, from before incarnations existed). Offsets
//! mean something only within an incarnation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::StorageConfig;
use std::ops::ControlFlow;

use super::segment::{Damage, Segment, SegmentFile, Truncation, parse_log_name};
use crate::batch::{Batch, BatchHeader};
use crate::error::{BrokerError, Result};
use crate::record::Record;

#[derive(Debug)]
pub struct SubLog {
    dir: PathBuf,
    origin: String,
    incarnation: u64,
    /// Sorted by base offset; the last one is active, the others are sealed and fsynced.
    segments: Vec<Segment>,
}

/// Where a reader finds the batch that holds an offset.
#[derive(Clone, Debug)]
pub struct Location {
    pub file: Arc<SegmentFile>,
    pub position: u64,
    /// The segment's size when located: batches lie below it.
    pub segment_size: u64,
}

impl SubLog {
    /// Opens (or creates) the sub-log in `dir`, recovering the tail of each segment.
    pub fn open(
        dir: PathBuf,
        origin: String,
        config: &StorageConfig,
    ) -> Result<(Self, Vec<Truncation>)> {
        std::fs::create_dir_all(&dir).map_err(BrokerError::io("create sub-log directory", &dir))?;
        let mut bases = Vec::new();
        for entry in
            std::fs::read_dir(&dir).map_err(BrokerError::io("list sub-log directory", &dir))?
        {
            let entry = entry.map_err(BrokerError::io("list sub-log directory", &dir))?;
            if let Some(base) = entry.file_name().to_str().and_then(parse_log_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let mut truncations = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let (segment, cut) = Segment::open(&dir, base, config, active)?;
            truncations.extend(cut);
            segments.push(segment);
        }
        if segments.is_empty() {
            segments.push(Segment::create(&dir, 0)?);
            sync_dir(&dir)?;
        }
        let incarnation = read_incarnation(&dir)?;
        Ok((
            SubLog {
                dir,
                origin,
                incarnation,
                segments,
            },
            truncations,
        ))
    }

    /// Creates a sub-log in `dir`, a directory just created and empty: its first segment
    /// and its incarnation file, made durable with one fsync of the file and one of the
    /// directory (which covers the segment's and the incarnation's entries). Opening and
    /// then setting the incarnation fsynced the directory twice.
    pub fn create(dir: PathBuf, origin: String, incarnation: u64) -> Result<Self> {
        let segment = Segment::create(&dir, 0)?;
        if incarnation != 0 {
            write_incarnation(&dir, incarnation)?;
        }
        sync_dir(&dir)?;
        Ok(SubLog {
            dir,
            origin,
            incarnation,
            segments: vec![segment],
        })
    }

    /// The incarnation of the origin's topic these records belong to (0: unknown).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Records the incarnation (durably), for a new sub-log or one that did not know it.
    pub fn set_incarnation(&mut self, incarnation: u64) -> Result<()> {
        if incarnation == self.incarnation {
            return Ok(());
        }
        write_incarnation(&self.dir, incarnation)?;
        sync_dir(&self.dir)?;
        self.incarnation = incarnation;
        Ok(())
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The next offset to be written: the sub-log's durable end once synced.
    pub fn next_offset(&self) -> u64 {
        self.active().next_offset()
    }

    /// The first offset held.
    pub fn start_offset(&self) -> u64 {
        self.segments
            .iter()
            .find_map(Segment::first_offset)
            .unwrap_or_else(|| self.next_offset())
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a sub-log always has an active segment")
    }

    /// Appends a verified batch whose offsets follow the sub-log's end, rolling to a new
    /// segment first when the active one is full or old. Returns the file to fsync.
    pub fn append(
        &mut self,
        bytes: &[u8],
        header: &BatchHeader,
        config: &StorageConfig,
    ) -> Result<Arc<SegmentFile>> {
        debug_assert!(header.base_offset >= self.next_offset());
        let active = self.active();
        if !active.fits(
            header.base_offset,
            header.last_offset(),
            bytes.len(),
            config,
        ) {
            self.roll(header.base_offset)?;
        }
        let active = self.segments.last_mut().expect("active segment");
        active.append(bytes, header, config)?;
        Ok(active.file().clone())
    }

    /// Seals the active segment (fsynced with its indexes) and starts one at `base`. An
    /// empty active segment is replaced instead, so a segment never starts before a gap.
    fn roll(&mut self, base: u64) -> Result<()> {
        if self.active().is_empty() {
            let empty = self.segments.pop().expect("active segment");
            empty.remove()?;
        } else {
            self.segments.last_mut().expect("active segment").seal()?;
        }
        self.segments.push(Segment::create(&self.dir, base)?);
        sync_dir(&self.dir)
    }

    /// Where to read `offset` from, or `None` when it is no longer held (retention).
    pub fn locate(&self, offset: u64) -> Option<Location> {
        if offset < self.start_offset() || offset >= self.next_offset() {
            return None;
        }
        let i = self
            .segments
            .partition_point(|s| s.base() <= offset)
            .checked_sub(1)?;
        let segment = &self.segments[i];
        if offset >= segment.next_offset() {
            // In a gap after this segment (a late start, records retention removed at the
            // origin): the next segment holds the first offset past it.
            let next = self.segments.get(i + 1)?;
            return Some(Location {
                file: next.file().clone(),
                position: 0,
                segment_size: next.size(),
            });
        }
        Some(Location {
            file: segment.file().clone(),
            position: segment.position_for_offset(offset),
            segment_size: segment.size(),
        })
    }

    /// Calls `visit` with every held batch that ends at or after `from`, in order, until it
    /// breaks. Reads under the caller's lock: for recovery and for rare lookups only.
    pub fn scan(&self, from: u64, mut visit: impl FnMut(&Batch) -> ControlFlow<()>) -> Result<()> {
        for segment in self
            .segments
            .iter()
            .filter(|s| s.next_offset() > from && !s.is_empty())
        {
            let mut position = if segment.base() <= from {
                segment.position_for_offset(from)
            } else {
                0
            };
            while position < segment.size() {
                let batch = segment
                    .file()
                    .read_batch(position, crate::batch::MAX_BATCH_ON_DISK)?;
                position += batch.header().total_len as u64;
                if batch.header().last_offset() >= from && visit(&batch).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The headers of the batches from `from` on.
    pub fn headers_from(&self, from: u64) -> Result<Vec<BatchHeader>> {
        let mut headers = Vec::new();
        self.scan(from, |batch| {
            headers.push(*batch.header());
            ControlFlow::Continue(())
        })?;
        Ok(headers)
    }

    /// The offset of the first held record with a timestamp at or after `timestamp_ms`, or
    /// the end offset when there is none.
    pub fn offset_for_time(&self, timestamp_ms: i64) -> Result<u64> {
        let Some(segment) = self
            .segments
            .iter()
            .find(|s| !s.is_empty() && s.max_timestamp_ms() >= timestamp_ms)
        else {
            return Ok(self.next_offset());
        };
        let mut found = None;
        let mut position = segment.position_for_timestamp(timestamp_ms);
        while found.is_none() && position < segment.size() {
            let batch = segment
                .file()
                .read_batch(position, crate::batch::MAX_BATCH_ON_DISK)?;
            position += batch.header().total_len as u64;
            found = batch
                .records()
                .find(|(_, r): &(u64, Record)| r.timestamp_ms >= timestamp_ms)
                .map(|(o, _)| o);
        }
        Ok(found.unwrap_or_else(|| self.next_offset()))
    }

    /// Removes sealed segments past the retention limits (0 = unlimited): oldest first while
    /// the sub-log is over `max_bytes`, and every sealed segment whose newest record is older
    /// than `max_age_ms`. The active segment is never removed. Returns how many went.
    pub fn apply_retention(
        &mut self,
        max_bytes: u64,
        max_age_ms: u64,
        now_ms: i64,
    ) -> Result<usize> {
        let mut removed = 0;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            if !super::retention::removes_oldest(
                self.bytes(),
                oldest.max_timestamp_ms(),
                max_bytes,
                max_age_ms,
                now_ms,
            ) {
                break;
            }
            let segment = self.segments.remove(0);
            tracing::debug!(path = %segment.file().path().display(), "retention removed a segment");
            segment.remove()?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Makes everything durable (shutdown).
    pub fn sync(&self) -> Result<()> {
        self.active().sync()
    }

    /// Damaged byte ranges recovery kept in this sub-log's segments.
    pub fn damage(&self) -> Vec<Damage> {
        self.segments
            .iter()
            .flat_map(|s| s.damage().iter().cloned())
            .collect()
    }

    /// Whether `file` is still one of this sub-log's segments (retention did not remove it).
    pub fn holds(&self, file: &Arc<SegmentFile>) -> bool {
        self.segments.iter().any(|s| Arc::ptr_eq(s.file(), file))
    }

    /// The segments' files, oldest first (for scans and tests).
    pub fn files(&self) -> Vec<Arc<SegmentFile>> {
        self.segments.iter().map(|s| s.file().clone()).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

const INCARNATION_FILE: &str = "incarnation";

/// Writes the incarnation file in `dir` (fsynced, renamed into place); the caller fsyncs
/// `dir`.
fn write_incarnation(dir: &Path, incarnation: u64) -> Result<()> {
    let path = dir.join(INCARNATION_FILE);
    let tmp = dir.join("incarnation.tmp");
    std::fs::write(&tmp, format!("{incarnation}\n"))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .map_err(BrokerError::io("write incarnation", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(BrokerError::io("write incarnation", &path))
}

fn read_incarnation(dir: &Path) -> Result<u64> {
    let path = dir.join(INCARNATION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|e| BrokerError::Io {
            action: "read incarnation",
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(BrokerError::io("read incarnation", &path)(e)),
    }
}

/// Makes everything written to the file system that holds `path` durable (`syncfs`): one
/// call where creating many files would otherwise fsync each of them and their directories.
/// It reports writeback errors from Linux 5.8 on.
pub fn sync_file_system(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| nix::unistd::syncfs(f).map_err(std::io::Error::from))
        .map_err(BrokerError::io("sync file system", path))
}

/// Makes a directory's entries (created or removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BrokerError::io("fsync directory", dir))
}
