//! Sparse per-segment indexes, fixed-size little-endian entries in files beside the
//! segment. Both are derived data, kept in memory while the segment is written and written
//! out (and fsynced) when it is sealed: recovery reads every batch of the active segment
//! anyway, and rebuilds a sealed segment's indexes from its log whenever they are missing,
//! short or inconsistent. So a segment being written holds no index descriptors.
//!
//! - `NNN.index`: `u32 relative offset, u32 file position` of a batch start, one entry per
//!   `index_interval_bytes` of log.
//! - `NNN.timeindex`: `i64 largest timestamp so far, u32 relative offset`, written together
//!   with the offset entry, so entry `i` of both files describes the same batch.

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
const OFFSET_EXTENSION: &str = "index";
const TIME_EXTENSION: &str = "timeindex";

/// The offset and time index of one segment: in memory, and in files once written out.
#[derive(Debug)]
pub struct SegmentIndex {
    entries: Vec<IndexEntry>,
    offset_path: PathBuf,
    time_path: PathBuf,
    /// The entries differ from what the files hold.
    changed: bool,
}

impl SegmentIndex {
    /// An empty index for the segment at `log_path` (its files are written when it is
    /// sealed).
    pub fn new(log_path: &Path) -> Self {
        SegmentIndex {
            entries: Vec::new(),
            offset_path: log_path.with_extension(OFFSET_EXTENSION),
            time_path: log_path.with_extension(TIME_EXTENSION),
            changed: true,
        }
    }

    /// Reads the index files of the segment at `log_path`, keeping their entries only if
    /// they are consistent with a log of `log_len` bytes; `false` means "rebuild".
    pub fn load(log_path: &Path, log_len: u64) -> Result<(Self, bool)> {
        let mut index = SegmentIndex::new(log_path);
        let read = |path: &Path| match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BrokerError::io("read index", path)(e)),
        };
        let (Some(offsets), Some(times)) = (read(&index.offset_path)?, read(&index.time_path)?)
        else {
            return Ok((index, false));
        };
        let Some(entries) = decode(&offsets, &times, log_len) else {
            return Ok((index, false));
        };
        index.entries = entries;
        index.changed = false;
        Ok((index, true))
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Drops every entry (before a rebuild).
    pub fn clear(&mut self) {
        self.changed |= !self.entries.is_empty();
        self.entries.clear();
    }

    pub fn push(&mut self, entry: IndexEntry) {
        self.entries.push(entry);
        self.changed = true;
    }

    /// Drops entries at or past `log_len` (after the log was truncated).
    pub fn truncate_to_log(&mut self, log_len: u64) {
        let keep = self
            .entries
            .partition_point(|e| u64::from(e.position) < log_len);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            self.changed = true;
        }
    }

    /// Writes the entries to the files and fsyncs them, unless the files hold them already
    /// (a sealed segment; a crash half-way leaves files that [`load`](Self::load) rejects
    /// or that hold a prefix, from which recovery scans the rest).
    pub fn write_out(&mut self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        let mut offsets = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY);
        let mut times = Vec::with_capacity(self.entries.len() * TIME_ENTRY);
        for entry in &self.entries {
            offsets.extend_from_slice(&entry.relative_offset.to_le_bytes());
            offsets.extend_from_slice(&entry.position.to_le_bytes());
            times.extend_from_slice(&entry.max_timestamp_ms.to_le_bytes());
            times.extend_from_slice(&entry.relative_offset.to_le_bytes());
        }
        for (path, bytes) in [(&self.offset_path, offsets), (&self.time_path, times)] {
            std::fs::write(path, &bytes)
                .and_then(|()| std::fs::File::open(path)?.sync_data())
                .map_err(BrokerError::io("write index", path))?;
        }
        self.changed = false;
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
}

/// Removes the index files of the segment at `log_path`, if they were written.
pub fn remove_files(log_path: &Path) -> Result<()> {
    for extension in [OFFSET_EXTENSION, TIME_EXTENSION] {
        let path = log_path.with_extension(extension);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BrokerError::io("remove index", &path)(e)),
        }
    }
    Ok(())
}

/// The entries of both index files, if they are consistent with each other and with a log
/// of `log_len` bytes.
fn decode(offsets: &[u8], times: &[u8], log_len: u64) -> Option<Vec<IndexEntry>> {
    if !offsets.len().is_multiple_of(OFFSET_ENTRY) || !times.len().is_multiple_of(TIME_ENTRY) {
        return None;
    }
    let count = offsets.len() / OFFSET_ENTRY;
    if count != times.len() / TIME_ENTRY || count == 0 {
        return None;
    }
    let mut entries: Vec<IndexEntry> = Vec::with_capacity(count);
    for (o, t) in offsets
        .chunks_exact(OFFSET_ENTRY)
        .zip(times.chunks_exact(TIME_ENTRY))
    {
        let entry = IndexEntry {
            relative_offset: u32::from_le_bytes(o[0..4].try_into().expect("4")),
            position: u32::from_le_bytes(o[4..8].try_into().expect("4")),
            max_timestamp_ms: i64::from_le_bytes(t[0..8].try_into().expect("8")),
        };
        let rel_again = u32::from_le_bytes(t[8..12].try_into().expect("4"));
        let ordered = entries.last().is_none_or(|prev| {
            prev.relative_offset < entry.relative_offset
                && prev.position < entry.position
                && prev.max_timestamp_ms <= entry.max_timestamp_ms
        });
        if rel_again != entry.relative_offset || !ordered || u64::from(entry.position) >= log_len {
            return None;
        }
        entries.push(entry);
    }
    (entries[0].position == 0).then_some(entries)
}
