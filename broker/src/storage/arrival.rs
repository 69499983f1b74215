//! The arrival index of a partition: the order in which batches of all its sub-logs
//! arrived in this region. Reads merge the sub-logs in this order, so a consumer sees one
//! stream, and can still resume from a vector cursor (per origin, entries only move
//! forward, so "everything below the cursor" is well defined wherever a read starts).
//!
//! Files in the partition directory:
//! - `origins`: one origin region id per line; an entry names its origin by line number.
//! - `arrival.log`: 24-byte entries `u16 origin, u16 reserved (0), u64 base offset,
//!   u64 last offset, u32 CRC-32C of the 20 bytes before it`, little-endian.
//!
//! The sub-logs are the truth; this index is fsynced in the same group commit as the data,
//! so the order of acknowledged records is stable across a crash. On open it is reconciled
//! with the recovered sub-logs: entries past a sub-log's end are dropped, batches a sub-log
//! holds beyond the index's last entry for it are added.
//!
//! Retired entries: when a sub-log is replaced by a newer incarnation of its origin's topic
//! (the origin deleted and re-created it), the old sub-log's entries are rewritten in place
//! with the origin number [`RETIRED`]: they keep their sequence numbers (the durable
//! watermark is one) and readers pass over them.
//!
//! Bounded size: retention drops entries from the front, but an origin written rarely keeps
//! its old entry (and every entry after it) alive for as long as its active segment lives.
//! So once more than [`COALESCE_AT`] entries are live, the ones below a *floor* (durable,
//! [`KEEP_RECENT`] entries behind the end) are coalesced: per origin, one entry covering its
//! first to last offset below the floor, placed just below it in origin order. Per origin,
//! entries still only move forward, so vector cursors keep their meaning and nothing is
//! read twice or skipped; what changes is the interleaving of *different* origins' records
//! below the floor (they are read origin by origin). Entries past the floor keep their
//! sequence numbers; a reader that planned by sequence re-plans from its cursor when the
//! index's [`generation`](ArrivalLog::generation) changed.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::open_files::{CachedFile, open_making_room};
use crate::error::{BrokerError, Result};

const ENTRY_LEN: u64 = 24;

/// The origin number of an entry whose sub-log was replaced (see the module docs).
pub const RETIRED: u16 = u16::MAX;

/// Live entries past which the older ones are coalesced.
pub const COALESCE_AT: usize = 20_000;
/// Entries behind the end that keep one entry per batch when coalescing.
pub const KEEP_RECENT: usize = 10_000;

/// One arrival: a batch of `origin` covering `[base, last]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub origin: u16,
    pub base: u64,
    pub last: u64,
}

#[derive(Debug)]
pub struct ArrivalLog {
    dir: PathBuf,
    path: PathBuf,
    file: Arc<CachedFile>,
    origins: Vec<String>,
    /// Entries still in memory; `entries[0]` has sequence number `first_seq`.
    entries: VecDeque<Arrival>,
    first_seq: u64,
    /// Entries in the file, live or dropped.
    file_entries: u64,
    /// Per origin: `(last offset, sequence)` of its entries, in order.
    by_origin: Vec<VecDeque<(u64, u64)>>,
    /// Changes when entries are coalesced (sequence numbers below the floor move).
    generation: u64,
}

impl ArrivalLog {
    /// Opens the index, keeping the valid prefix of entries (a torn or corrupt entry ends it).
    pub fn open(dir: &Path) -> Result<Self> {
        let origins_path = dir.join("origins");
        let origins = match std::fs::read_to_string(&origins_path) {
            Ok(text) => text
                .lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(BrokerError::Io {
                    action: "read origins",
                    path: origins_path,
                    source: e,
                });
            }
        };
        let path = dir.join("arrival.log");
        let file = open_making_room(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
            &path,
        )
        .map_err(BrokerError::io("open arrival index", &path))?;
        let raw = std::fs::read(&path).map_err(BrokerError::io("read arrival index", &path))?;
        let mut log = ArrivalLog {
            dir: dir.to_path_buf(),
            file: CachedFile::new(path.clone(), file, true),
            path,
            by_origin: vec![VecDeque::new(); origins.len()],
            origins,
            entries: VecDeque::new(),
            first_seq: 0,
            file_entries: 0,
            generation: 0,
        };
        for chunk in raw.chunks_exact(ENTRY_LEN as usize) {
            match decode(chunk) {
                Some(entry)
                    if usize::from(entry.origin) < log.origins.len() || entry.origin == RETIRED =>
                {
                    log.push_memory(entry);
                }
                _ => break,
            }
        }
        log.file_entries = log.entries.len() as u64;
        if log.file_entries * ENTRY_LEN != raw.len() as u64 {
            let valid = log.file_entries * ENTRY_LEN;
            tracing::warn!(event = "arrival_index_tail_cut", path = %log.path.display(), valid_bytes = valid, cut_bytes = raw.len() as u64 - valid, "arrival index had a torn or corrupt tail; cut");
            log.file
                .set_len(valid)
                .map_err(BrokerError::io("truncate arrival index", &log.path))?;
        }
        Ok(log)
    }

    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// The number for `origin`, registering it (durably) the first time.
    pub fn origin_id(&mut self, origin: &str) -> Result<u16> {
        if let Some(i) = self.origins.iter().position(|o| o == origin) {
            return Ok(i as u16);
        }
        record_origin(&self.dir, origin)?;
        Ok(self.push_origin(origin))
    }

    /// Registers in memory an origin that [`record_origin`] wrote durably, as the next
    /// number. The caller serializes registrations, so that numbers follow the file.
    pub fn push_origin(&mut self, origin: &str) -> u16 {
        self.origins.push(origin.to_string());
        self.by_origin.push(VecDeque::new());
        (self.origins.len() - 1) as u16
    }

    /// Records an arrival (page cache; fsynced by the group commit). Returns its sequence.
    pub fn append(&mut self, entry: Arrival) -> Result<u64> {
        let buf = encode(&entry);
        self.file
            .write_all_at(&buf, self.file_entries * ENTRY_LEN)
            .map_err(BrokerError::io("write arrival index", &self.path))?;
        self.file_entries += 1;
        Ok(self.push_memory(entry))
    }

    fn push_memory(&mut self, entry: Arrival) -> u64 {
        let seq = self.end_seq();
        self.entries.push_back(entry);
        if entry.origin != RETIRED {
            self.by_origin[usize::from(entry.origin)].push_back((entry.last, seq));
        }
        seq
    }

    /// The sequence the next entry gets.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    pub fn get(&self, seq: u64) -> Option<Arrival> {
        let i = seq.checked_sub(self.first_seq)?;
        self.entries.get(i as usize).copied()
    }

    /// The sequence of the first entry of `origin` holding an offset at or past `offset`.
    pub fn first_seq_reaching(&self, origin: u16, offset: u64) -> Option<u64> {
        let list = self.by_origin.get(usize::from(origin))?;
        let i = list.partition_point(|&(last, _)| last < offset);
        list.get(i).map(|&(_, seq)| seq)
    }

    /// The last offset the index holds for `origin`.
    pub fn last_offset(&self, origin: u16) -> Option<u64> {
        self.by_origin
            .get(usize::from(origin))?
            .back()
            .map(|&(last, _)| last)
    }

    /// Drops, from the front, entries whose batches retention removed (`start_of(origin)`
    /// gives each sub-log's first held offset).
    pub fn trim_front(&mut self, start_of: impl Fn(u16) -> u64) {
        while let Some(front) = self.entries.front().copied() {
            if front.origin != RETIRED {
                if front.last >= start_of(front.origin) {
                    break;
                }
                self.by_origin[usize::from(front.origin)].pop_front();
            }
            self.entries.pop_front();
            self.first_seq += 1;
        }
    }

    /// Retires every entry of `origin` (its sub-log is being replaced): rewritten in place
    /// as [`RETIRED`] and fsynced, before the sub-log's files go.
    pub fn retire(&mut self, origin: u16) -> Result<()> {
        let dead = self.file_entries - self.entries.len() as u64;
        let mut touched = false;
        for (i, entry) in self.entries.iter_mut().enumerate() {
            if entry.origin != origin {
                continue;
            }
            entry.origin = RETIRED;
            self.file
                .write_all_at(&encode(entry), (dead + i as u64) * ENTRY_LEN)
                .map_err(BrokerError::io("write arrival index", &self.path))?;
            touched = true;
        }
        if touched {
            self.file
                .sync_data()
                .map_err(BrokerError::io("fsync arrival index", &self.path))?;
        }
        self.by_origin[usize::from(origin)].clear();
        Ok(())
    }

    /// Keeps only the entries accepted by `keep`, in order, and rewrites the file (recovery,
    /// before any reader exists: sequences restart).
    pub fn rewrite(&mut self, keep: impl FnMut(&Arrival) -> bool) -> Result<()> {
        let kept: Vec<Arrival> = self.entries.iter().copied().filter(keep).collect();
        self.replace(kept)
    }

    /// Rewrites the file with the live entries when the dropped prefix is large.
    pub fn compact_if_worthwhile(&mut self) -> Result<()> {
        let dead = self.file_entries - self.entries.len() as u64;
        if dead < 65_536 || dead < self.file_entries / 2 {
            return Ok(());
        }
        let live: Vec<Arrival> = self.entries.iter().copied().collect();
        self.replace_from(live, self.first_seq)
    }

    /// Changes whenever sequence numbers below the floor were reassigned.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Coalesces the entries below the floor (see the module docs) when more than
    /// [`COALESCE_AT`] are live. `durable` bounds the floor: only fsynced entries move.
    /// Returns whether it did.
    pub fn coalesce_if_large(&mut self, durable: u64) -> Result<bool> {
        if self.entries.len() <= COALESCE_AT {
            return Ok(false);
        }
        let floor = durable.min(self.end_seq().saturating_sub(KEEP_RECENT as u64));
        let below = floor.saturating_sub(self.first_seq) as usize;
        if below <= self.origins.len() {
            return Ok(false);
        }
        let mut ranges: Vec<Option<(u64, u64)>> = vec![None; self.origins.len()];
        for entry in self.entries.iter().take(below) {
            if entry.origin == RETIRED {
                continue;
            }
            let range = &mut ranges[usize::from(entry.origin)];
            *range = Some(match *range {
                None => (entry.base, entry.last),
                Some((base, _)) => (base, entry.last),
            });
        }
        let coalesced: Vec<Arrival> = ranges
            .iter()
            .enumerate()
            .filter_map(|(origin, range)| {
                range.map(|(base, last)| Arrival {
                    origin: origin as u16,
                    base,
                    last,
                })
            })
            .collect();
        let first_seq = floor - coalesced.len() as u64;
        let entries: Vec<Arrival> = coalesced
            .into_iter()
            .chain(self.entries.iter().skip(below).copied())
            .collect();
        tracing::debug!(path = %self.path.display(), before = self.entries.len(), after = entries.len(), "arrival index coalesced below its floor");
        self.replace_from(entries, first_seq)?;
        self.generation += 1;
        Ok(true)
    }

    /// [`replace`](Self::replace), numbering the entries from `first_seq`.
    fn replace_from(&mut self, entries: Vec<Arrival>, first_seq: u64) -> Result<()> {
        self.replace(entries)?;
        self.first_seq = first_seq;
        for list in &mut self.by_origin {
            for (_, seq) in list.iter_mut() {
                *seq += first_seq;
            }
        }
        Ok(())
    }

    /// Writes `entries` as the whole index (temporary file, fsync, rename, fsync directory).
    fn replace(&mut self, entries: Vec<Arrival>) -> Result<()> {
        let tmp = self.dir.join("arrival.log.tmp");
        let mut buf = Vec::with_capacity(entries.len() * ENTRY_LEN as usize);
        for entry in &entries {
            buf.extend_from_slice(&encode(entry));
        }
        std::fs::write(&tmp, &buf)
            .and_then(|()| File::open(&tmp)?.sync_all())
            .map_err(BrokerError::io("write arrival index", &tmp))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(BrokerError::io("replace arrival index", &self.path))?;
        super::sublog::sync_dir(&self.dir)?;
        let file = open_making_room(OpenOptions::new().read(true).write(true), &self.path)
            .map_err(BrokerError::io("open arrival index", &self.path))?;
        self.file = CachedFile::new(self.path.clone(), file, true);
        self.entries.clear();
        self.first_seq = 0;
        self.by_origin.iter_mut().for_each(VecDeque::clear);
        for entry in entries {
            self.push_memory(entry);
        }
        self.file_entries = self.entries.len() as u64;
        Ok(())
    }

    /// The descriptor for a group commit's fsync.
    pub fn file(&self) -> &Arc<CachedFile> {
        &self.file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn encode(entry: &Arrival) -> [u8; ENTRY_LEN as usize] {
    let mut buf = [0u8; ENTRY_LEN as usize];
    buf[0..2].copy_from_slice(&entry.origin.to_le_bytes());
    buf[4..12].copy_from_slice(&entry.base.to_le_bytes());
    buf[12..20].copy_from_slice(&entry.last.to_le_bytes());
    let crc = crc32c::crc32c(&buf[0..20]);
    buf[20..24].copy_from_slice(&crc.to_le_bytes());
    buf
}

fn decode(buf: &[u8]) -> Option<Arrival> {
    let crc = u32::from_le_bytes(buf[20..24].try_into().ok()?);
    if crc != crc32c::crc32c(&buf[0..20]) || buf[2..4] != [0, 0] {
        return None;
    }
    let entry = Arrival {
        origin: u16::from_le_bytes(buf[0..2].try_into().ok()?),
        base: u64::from_le_bytes(buf[4..12].try_into().ok()?),
        last: u64::from_le_bytes(buf[12..20].try_into().ok()?),
    };
    (entry.base <= entry.last).then_some(entry)
}

/// Appends `origin` to the `origins` file of the index in `dir`, durably (the file, and the
/// directory when the file is new, fsynced): blocking I/O, run off the async threads by a
/// new sub-log's creation.
pub fn record_origin(dir: &Path, origin: &str) -> Result<()> {
    let path = dir.join("origins");
    // The directory needs an fsync only for the file's own entry, when it is new.
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(BrokerError::io("open origins", &path))?;
    file.write_all(format!("{origin}\n").as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(BrokerError::io("write origins", &path))?;
    if existed {
        return Ok(());
    }
    super::sublog::sync_dir(dir)
}
