//! Sparse per-segment indexes, fixed-size little-endian entries in a file beside the
//! segment. Both are derived data: a segment's indexes are rebuilt from the log whenever
//! they are missing, short or inconsistent, so they are only fsynced when a segment is
//! sealed.
//!
//! - `NNN.index`: `u32 relative offset, u32 file position` of a batch start, one entry per
//!   `index_interval_bytes` of log.
//! - `NNN.timeindex`: `i64 largest timestamp so far, u32 relative offset`, written together
//!   with the offset entry, so entry `i` of both files describes the same batch.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{BrokerError, Result};

/// One entry of both indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
    pub max_timestamp_ms: i64,
}

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

/// The offset and time index of one segment, in memory and on disk.
#[derive(Debug)]
pub struct SegmentIndex {
    entries: Vec<IndexEntry>,
    offset_path: PathBuf,
    time_path: PathBuf,
    /// Open while the segment is written; `None` once it is sealed (the entries in memory
    /// serve lookups).
    files: Option<IndexFiles>,
}

#[derive(Debug)]
struct IndexFiles {
    offset: File,
    time: File,
}

impl SegmentIndex {
    /// Opens the index files of the segment at `log_path`, keeping their entries only if
    /// they are consistent with a log of `log_len` bytes. `None` entries means "rebuild".
    pub fn open(log_path: &Path, log_len: u64) -> Result<(Self, bool)> {
        let offset_path = log_path.with_extension("index");
        let time_path = log_path.with_extension("timeindex");
        let open = |path: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(BrokerError::io("open index", path))
        };
        let offset_file = open(&offset_path)?;
        let time_file = open(&time_path)?;
        let mut index = SegmentIndex {
            entries: Vec::new(),
            offset_path,
            time_path,
            files: Some(IndexFiles {
                offset: offset_file,
                time: time_file,
            }),
        };
        let loaded = index.load(log_len)?;
        Ok((index, loaded))
    }

    fn load(&mut self, log_len: u64) -> Result<bool> {
        let offsets = std::fs::read(&self.offset_path)
            .map_err(BrokerError::io("read index", &self.offset_path))?;
        let times = std::fs::read(&self.time_path)
            .map_err(BrokerError::io("read index", &self.time_path))?;
        if offsets.len() % OFFSET_ENTRY != 0 || times.len() % TIME_ENTRY != 0 {
            return Ok(false);
        }
        let count = offsets.len() / OFFSET_ENTRY;
        if count != times.len() / TIME_ENTRY || count == 0 {
            return Ok(false);
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let o = &offsets[i * OFFSET_ENTRY..];
            let t = &times[i * TIME_ENTRY..];
            let entry = IndexEntry {
                relative_offset: u32::from_le_bytes(o[0..4].try_into().expect("4")),
                position: u32::from_le_bytes(o[4..8].try_into().expect("4")),
                max_timestamp_ms: i64::from_le_bytes(t[0..8].try_into().expect("8")),
            };
            let rel_again = u32::from_le_bytes(t[8..12].try_into().expect("4"));
            let ordered = entries.last().is_none_or(|prev: &IndexEntry| {
                prev.relative_offset < entry.relative_offset
                    && prev.position < entry.position
                    && prev.max_timestamp_ms <= entry.max_timestamp_ms
            });
            if rel_again != entry.relative_offset
                || !ordered
                || u64::from(entry.position) >= log_len
            {
                return Ok(false);
            }
            entries.push(entry);
        }
        if entries[0].position != 0 {
            return Ok(false);
        }
        self.entries = entries;
        Ok(true)
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The open files; a sealed segment's index is never written.
    fn files(&self) -> Result<&IndexFiles> {
        self.files.as_ref().ok_or_else(|| BrokerError::Io {
            action: "write index",
            path: self.offset_path.clone(),
            source: std::io::Error::other("the segment is sealed; its index files are closed"),
        })
    }

    /// Closes the files (a sealed segment); lookups keep working from memory.
    pub fn close_files(&mut self) {
        self.files = None;
    }

    /// Drops every entry and empties the files (before a rebuild).
    pub fn clear(&mut self) -> Result<()> {
        self.entries.clear();
        let files = self.files()?;
        files
            .offset
            .set_len(0)
            .map_err(BrokerError::io("truncate index", &self.offset_path))?;
        files
            .time
            .set_len(0)
            .map_err(BrokerError::io("truncate index", &self.time_path))?;
        Ok(())
    }

    pub fn push(&mut self, entry: IndexEntry) -> Result<()> {
        let n = self.entries.len() as u64;
        let mut o = [0u8; OFFSET_ENTRY];
        o[0..4].copy_from_slice(&entry.relative_offset.to_le_bytes());
        o[4..8].copy_from_slice(&entry.position.to_le_bytes());
        let mut t = [0u8; TIME_ENTRY];
        t[0..8].copy_from_slice(&entry.max_timestamp_ms.to_le_bytes());
        t[8..12].copy_from_slice(&entry.relative_offset.to_le_bytes());
        let files = self.files()?;
        files
            .offset
            .write_all_at(&o, n * OFFSET_ENTRY as u64)
            .map_err(BrokerError::io("write index", &self.offset_path))?;
        files
            .time
            .write_all_at(&t, n * TIME_ENTRY as u64)
            .map_err(BrokerError::io("write index", &self.time_path))?;
        self.entries.push(entry);
        Ok(())
    }

    /// Drops entries at or past `log_len` (after the log was truncated).
    pub fn truncate_to_log(&mut self, log_len: u64) -> Result<()> {
        let keep = self
            .entries
            .partition_point(|e| u64::from(e.position) < log_len);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            let files = self.files()?;
            files
                .offset
                .set_len((keep * OFFSET_ENTRY) as u64)
                .map_err(BrokerError::io("truncate index", &self.offset_path))?;
            files
                .time
                .set_len((keep * TIME_ENTRY) as u64)
                .map_err(BrokerError::io("truncate index", &self.time_path))?;
        }
        Ok(())
    }

    /// Position of the last indexed batch starting at or before `relative_offset`.
    pub fn position_for_offset(&self, relative_offset: u32) -> u32 {
        let i = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }

    /// Position from which a scan finds the first record with a timestamp at or after
    /// `timestamp_ms`: the entry before the first whose running maximum reaches it.
    pub fn position_for_timestamp(&self, timestamp_ms: i64) -> u32 {
        let i = self
            .entries
            .partition_point(|e| e.max_timestamp_ms < timestamp_ms);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }

    /// Makes the files durable; a no-op once closed (they were synced when sealed).
    pub fn sync(&self) -> Result<()> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        files
            .offset
            .sync_data()
            .map_err(BrokerError::io("fsync index", &self.offset_path))?;
        files
            .time
            .sync_data()
            .map_err(BrokerError::io("fsync index", &self.time_path))?;
        Ok(())
    }

    pub fn remove_files(&self) -> Result<()> {
        for path in [&self.offset_path, &self.time_path] {
            std::fs::remove_file(path).map_err(BrokerError::io("remove index", path))?;
        }
        Ok(())
    }
}
