//! One segment of a sub-log: `<base offset, 20 digits>.log`, a run of batches (see
//! [`crate::batch`]) starting at `base`, with its sparse indexes beside it.
//!
//! Invariant: every byte before `size` is a whole, CRC-valid batch, and batch offsets
//! strictly increase. Recovery ([`Segment::open`]) re-establishes it by cutting the file at
//! the first batch that is torn, fails its CRC or breaks the order. Only such a batch is
//! cut: a read that fails (an I/O error from the disk) fails the open and cuts nothing, since
//! the bytes behind it may be acknowledged batches.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::config::StorageConfig;
use super::index::{IndexEntry, SegmentIndex};
use super::open_files::{CachedFile, open_making_room};
use crate::batch::{Batch, BatchFormatError, BatchHeader, HEADER_LEN};
use crate::error::{BrokerError, Result};

/// The file of a segment, shared with readers. Its descriptor is opened on use and closed
/// by [`open_files`](super::open_files) past the process's bound (never while written and
/// not yet fsynced). A sealed file that retention removed cannot be opened again: a read of
/// it fails with a not-found I/O error, which readers take as "removed" when the sub-log no
/// longer holds the segment.
#[derive(Debug)]
pub struct SegmentFile {
    pub base: u64,
    file: Arc<CachedFile>,
}

impl SegmentFile {
    fn new(base: u64, path: PathBuf, file: File) -> Arc<Self> {
        Arc::new(SegmentFile {
            base,
            file: CachedFile::new(path, file, true),
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The open descriptor, opening the file again if the cache closed it.
    pub fn handle(&self) -> Result<Arc<File>> {
        self.file.handle()
    }

    /// Reads and verifies the batch that starts at `position`.
    pub fn read_batch(&self, position: u64, max_len: usize) -> Result<Batch> {
        let corrupt = |source| BrokerError::CorruptBatch {
            path: self.path().to_path_buf(),
            position,
            source,
        };
        let file = self.handle()?;
        let mut head = [0u8; HEADER_LEN];
        file.read_exact_at(&mut head, position)
            .map_err(BrokerError::io("read segment", self.path()))?;
        let header = BatchHeader::parse(&head, max_len).map_err(corrupt)?;
        let mut buf = vec![0u8; header.total_len];
        file.read_exact_at(&mut buf, position)
            .map_err(BrokerError::io("read segment", self.path()))?;
        Batch::from_bytes(Bytes::from(buf), max_len).map_err(corrupt)
    }

    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(BrokerError::io("fsync segment", self.path()))
    }
}

/// Bytes inside a segment that are not a valid batch but are followed by valid ones:
/// recovery keeps them (cutting would drop acknowledged batches) and reads stop there with
/// `corrupt-batch` until an operator repairs the segment (`georouter repair`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    /// Byte range `[start, end)` in the file.
    pub start: u64,
    pub end: u64,
    pub reason: String,
}

/// What recovery cut from a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub path: PathBuf,
    pub valid_bytes: u64,
    pub cut_bytes: u64,
    pub reason: String,
}

/// A segment as its sub-log owns it.
#[derive(Debug)]
pub struct Segment {
    file: Arc<SegmentFile>,
    index: SegmentIndex,
    size: u64,
    first_offset: Option<u64>,
    next_offset: u64,
    max_timestamp_ms: i64,
    bytes_since_index: u64,
    created: Instant,
    damage: Vec<Damage>,
}

pub fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

/// The base offset named by a segment file name, if it is one.
pub fn parse_log_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

impl Segment {
    /// Creates an empty segment.
    pub fn create(dir: &Path, base: u64) -> Result<Self> {
        let path = log_path(dir, base);
        let file = open_making_room(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true),
            &path,
        )
        .map_err(BrokerError::io("create segment", &path))?;
        Ok(Segment {
            index: SegmentIndex::new(&path),
            file: SegmentFile::new(base, path, file),
            size: 0,
            first_offset: None,
            next_offset: base,
            max_timestamp_ms: 0,
            bytes_since_index: 0,
            created: Instant::now(),
            damage: Vec::new(),
        })
    }

    /// Opens a segment and recovers its tail. With `verify_all`, every batch is read and
    /// checked (the active segment); otherwise, when the index is consistent, only the
    /// batches from the last index entry on are (a sealed segment, fsynced when sealed).
    pub fn open(
        dir: &Path,
        base: u64,
        config: &StorageConfig,
        verify_all: bool,
    ) -> Result<(Self, Option<Truncation>)> {
        let path = log_path(dir, base);
        let file = open_making_room(OpenOptions::new().read(true).write(true), &path)
            .map_err(BrokerError::io("open segment", &path))?;
        let file_len = file
            .metadata()
            .map_err(BrokerError::io("stat segment", &path))?
            .len();
        let (index, loaded) = SegmentIndex::load(&path, file_len)?;
        let mut segment = Segment {
            file: SegmentFile::new(base, path, file),
            index,
            size: 0,
            first_offset: None,
            next_offset: base,
            max_timestamp_ms: 0,
            bytes_since_index: 0,
            created: Instant::now(),
            damage: Vec::new(),
        };
        let resume = match segment.index.entries().last().copied() {
            Some(last) if loaded && !verify_all => Some(last),
            _ => None,
        };
        let start = match resume {
            Some(last) => {
                // A damaged first batch must not keep the partition from opening: a sealed
                // segment starts at its base (no segment starts before a gap), and reads of
                // that batch report it corrupt.
                let first = match segment.file.read_batch(0, crate::batch::MAX_BATCH_ON_DISK) {
                    Ok(first) => first.header().base_offset,
                    Err(e @ BrokerError::Io { .. }) => return Err(e),
                    Err(e) => {
                        tracing::error!(event = "segment_head_damaged", path = %segment.file.path().display(), error = %e, "the first batch of a sealed segment is damaged; serving the rest");
                        base
                    }
                };
                segment.first_offset = Some(first);
                segment.max_timestamp_ms = last.max_timestamp_ms;
                // The batch at the last entry must be past every earlier one.
                segment.next_offset = base + u64::from(last.relative_offset);
                u64::from(last.position)
            }
            None => {
                segment.index.clear();
                0
            }
        };
        let truncation =
            segment.scan_from(start, file_len, resume.is_some(), verify_all, config)?;
        if !verify_all {
            // A sealed segment: indexes rebuilt or extended are kept, and it is read-only.
            segment.index.write_out()?;
            segment.file.file.seal();
        }
        Ok((segment, truncation))
    }

    /// Reads batches from `start` to `file_len`, taking each into the segment's state. At a
    /// batch that is not valid it looks for a valid batch further on: if there is one, the
    /// bytes between are *damage* — kept in place and reported, since acknowledged batches
    /// follow them (reads stop there with `corrupt-batch` until an operator runs
    /// `georouter repair`); if there is none, they are a torn or corrupt tail, and cut.
    fn scan_from(
        &mut self,
        start: u64,
        file_len: u64,
        first_indexed: bool,
        active: bool,
        config: &StorageConfig,
    ) -> Result<Option<Truncation>> {
        let path = self.file.path().to_path_buf();
        let file = self.file.handle()?;
        let io_error = |source| BrokerError::Io {
            action: "read segment during recovery (nothing was cut)",
            path: path.clone(),
            source,
        };
        let mut reader = BufReader::with_capacity(1 << 20, &*file);
        reader
            .seek(SeekFrom::Start(start))
            .map_err(BrokerError::io("seek segment", &path))?;
        let mut position = start;
        let mut first = first_indexed;
        while position < file_len {
            let reason = match read_next(
                &mut reader,
                file_len - position,
                crate::batch::MAX_BATCH_ON_DISK,
            ) {
                Ok(batch) => match self.out_of_order(batch.header()) {
                    None => {
                        let header = *batch.header();
                        self.take_batch(position, &header, first, config)?;
                        first = false;
                        position += header.total_len as u64;
                        continue;
                    }
                    Some(reason) => reason,
                },
                Err(ScanStop::Invalid(reason)) => reason,
                Err(ScanStop::Io(source)) => return Err(io_error(source)),
            };
            let rest = read_rest(&file, position, file_len).map_err(io_error)?;
            let found = find_next_batch(&rest.slice(1..), self.next_offset, self.file.base);
            // Zeros where a batch should be, in the segment being written: writes that had
            // not reached the disk when the machine stopped (blocks allocated, data not
            // written back). Nothing after them was acknowledged either (an fsync covers
            // every earlier write), so they are a torn tail, not damage.
            let unwritten = |found: usize| active && rest[..=found].iter().all(|b| *b == 0);
            let Some(found) = found.filter(|f| !unwritten(*f)) else {
                return self.cut_tail(&file, position, file_len, reason).map(Some);
            };
            let next = position + 1 + found as u64;
            tracing::error!(event = "segment_damaged", path = %path.display(), start = position, end = next, %reason, "damaged bytes inside a segment, followed by valid batches: kept in place; reads stop there until `georouter repair`");
            self.damage.push(Damage {
                path: path.clone(),
                start: position,
                end: next,
                reason,
            });
            reader
                .seek(SeekFrom::Start(next))
                .map_err(BrokerError::io("seek segment", &path))?;
            position = next;
        }
        Ok(None)
    }

    /// Why a CRC-valid batch cannot follow what the segment holds, if it cannot.
    fn out_of_order(&self, header: &BatchHeader) -> Option<String> {
        if header.base_offset < self.next_offset {
            return Some(format!(
                "batch at offset {} does not follow offset {}",
                header.base_offset,
                self.next_offset.saturating_sub(1)
            ));
        }
        if header.last_offset() - self.file.base > u64::from(u32::MAX) {
            return Some(format!(
                "batch offset {} is out of this segment's range",
                header.last_offset()
            ));
        }
        None
    }

    /// Cuts the file at `position`: nothing valid follows (a torn or corrupt tail).
    fn cut_tail(
        &mut self,
        file: &File,
        position: u64,
        file_len: u64,
        reason: String,
    ) -> Result<Truncation> {
        let path = self.file.path().to_path_buf();
        let cut = file_len - position;
        file.set_len(position)
            .and_then(|()| file.sync_data())
            .map_err(BrokerError::io("truncate segment", &path))?;
        self.index.truncate_to_log(position);
        tracing::warn!(event = "segment_tail_cut", path = %path.display(), valid_bytes = position, cut_bytes = cut, %reason, "recovery cut a torn or corrupt segment tail");
        Ok(Truncation {
            path,
            valid_bytes: position,
            cut_bytes: cut,
            reason,
        })
    }

    /// Damaged byte ranges that recovery found inside this segment and kept.
    pub fn damage(&self) -> &[Damage] {
        &self.damage
    }

    /// Updates size, offsets and indexes for a batch written (or found) at `position`.
    fn take_batch(
        &mut self,
        position: u64,
        header: &BatchHeader,
        already_indexed: bool,
        config: &StorageConfig,
    ) -> Result<()> {
        let timestamp =
            config.effective_timestamp(header.max_timestamp_ms, crate::record::now_ms());
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp);
        if already_indexed {
            self.bytes_since_index = 0;
        } else if self.index.entries().is_empty()
            || self.bytes_since_index >= config.index_interval_bytes
        {
            self.index.push(IndexEntry {
                relative_offset: (header.base_offset - self.file.base) as u32,
                position: position as u32,
                max_timestamp_ms: self.max_timestamp_ms,
            });
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_len as u64;
        self.size = position + header.total_len as u64;
        self.first_offset.get_or_insert(header.base_offset);
        self.next_offset = header.last_offset() + 1;
        Ok(())
    }

    /// Appends a verified batch at the end of the file (page cache; the caller fsyncs).
    pub fn append(
        &mut self,
        bytes: &[u8],
        header: &BatchHeader,
        config: &StorageConfig,
    ) -> Result<()> {
        let position = self.size;
        self.file
            .file
            .write_all_at(bytes, position)
            .map_err(BrokerError::io("write segment", self.file.path()))?;
        self.take_batch(position, header, false, config)
    }

    /// Whether a batch covering `[base, last]` of `len` bytes fits this segment.
    pub fn fits(&self, base: u64, last: u64, len: usize, config: &StorageConfig) -> bool {
        if self.size == 0 {
            return base >= self.file.base && last - self.file.base <= u64::from(u32::MAX);
        }
        self.size + len as u64 <= config.segment_bytes
            && self.created.elapsed() < config.segment_age
            && last - self.file.base <= u64::from(u32::MAX)
            && self.size + len as u64 <= u64::from(u32::MAX)
    }

    pub fn file(&self) -> &Arc<SegmentFile> {
        &self.file
    }

    pub fn base(&self) -> u64 {
        self.file.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn first_offset(&self) -> Option<u64> {
        self.first_offset
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub fn max_timestamp_ms(&self) -> i64 {
        self.max_timestamp_ms
    }

    /// Position to scan from for the batch holding `offset` (which must be in range).
    pub fn position_for_offset(&self, offset: u64) -> u64 {
        let relative = offset
            .saturating_sub(self.file.base)
            .min(u64::from(u32::MAX)) as u32;
        u64::from(self.index.position_for_offset(relative))
    }

    /// Position to scan from for the first record at or after `timestamp_ms`.
    pub fn position_for_timestamp(&self, timestamp_ms: i64) -> u64 {
        u64::from(self.index.position_for_timestamp(timestamp_ms))
    }

    /// Makes the log durable (its indexes are rebuilt from it while it is active).
    pub fn sync(&self) -> Result<()> {
        self.file.sync()
    }

    /// Seals the segment: the log fsynced, its indexes written out, and the file reopened
    /// read-only from now on. It is never written again.
    pub fn seal(&mut self) -> Result<()> {
        self.file.sync()?;
        self.index.write_out()?;
        self.file.file.seal();
        Ok(())
    }

    /// Deletes the files; readers holding the [`SegmentFile`] can finish.
    pub fn remove(self) -> Result<()> {
        remove_files(self.file.path())
    }
}

/// Deletes the segment at `path` and its index files.
pub fn remove_files(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(BrokerError::io("remove segment", path))?;
    super::index::remove_files(path)
}

/// The bytes of `file` from `from` to `file_len`.
fn read_rest(file: &File, from: u64, file_len: u64) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; file_len.saturating_sub(from) as usize];
    file.read_exact_at(&mut buf, from)?;
    Ok(Bytes::from(buf))
}

/// The position in `bytes` of the first whole, CRC-valid batch whose offsets could follow
/// `next_offset` in a segment based at `base`: where valid data resumes after damage.
/// Every candidate position is tried (a damaged length field says nothing about where the
/// next batch starts); the header checks reject almost all of them before the CRC.
pub fn find_next_batch(bytes: &Bytes, next_offset: u64, base: u64) -> Option<usize> {
    (0..bytes.len()).find(|&at| batch_at(bytes, at, next_offset, base).is_some())
}

/// The header of the whole, CRC-valid batch at `at` in `bytes`, if there is one whose
/// offsets could follow `next_offset` in a segment based at `base`.
pub fn batch_at(bytes: &Bytes, at: usize, next_offset: u64, base: u64) -> Option<BatchHeader> {
    let rest = &bytes[at..];
    let header = BatchHeader::parse(rest, crate::batch::MAX_BATCH_ON_DISK).ok()?;
    (header.total_len <= rest.len()
        && header.base_offset >= next_offset
        && header.last_offset() - base <= u64::from(u32::MAX)
        && Batch::from_bytes(bytes.slice(at..at + header.total_len), usize::MAX).is_ok())
    .then_some(header)
}

/// Why recovery's scan stopped before the end of a segment.
#[derive(Debug)]
enum ScanStop {
    /// The bytes there are not a valid batch (torn, corrupt): the tail is cut from here.
    Invalid(String),
    /// Reading failed: the bytes are unknown, so nothing may be cut.
    Io(std::io::Error),
}

/// Reads one batch from the reader, `remaining` bytes being left in the file.
fn read_next(
    reader: &mut impl Read,
    remaining: u64,
    max_len: usize,
) -> std::result::Result<Batch, ScanStop> {
    let read_failed = |e: std::io::Error| match e.kind() {
        // The file is shorter than its length said a moment ago: a tail being cut.
        std::io::ErrorKind::UnexpectedEof => ScanStop::Invalid(format!("torn batch: {e}")),
        _ => ScanStop::Io(e),
    };
    let mut head = [0u8; HEADER_LEN];
    if remaining < HEADER_LEN as u64 {
        return Err(ScanStop::Invalid(format!(
            "torn batch header: {remaining} bytes left"
        )));
    }
    reader.read_exact(&mut head).map_err(read_failed)?;
    let header =
        BatchHeader::parse(&head, max_len).map_err(|e| ScanStop::Invalid(e.to_string()))?;
    if header.total_len as u64 > remaining {
        return Err(ScanStop::Invalid(format!(
            "torn batch: needs {} bytes, {remaining} left",
            header.total_len
        )));
    }
    let mut buf = vec![0u8; header.total_len];
    buf[..HEADER_LEN].copy_from_slice(&head);
    reader
        .read_exact(&mut buf[HEADER_LEN..])
        .map_err(read_failed)?;
    Batch::from_bytes(Bytes::from(buf), max_len)
        .map_err(|e: BatchFormatError| ScanStop::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::PendingBatch;
    use crate::record::Record;

    /// Serves `good` bytes, then fails every read with EIO.
    struct FailingDisk<'a> {
        good: &'a [u8],
    }

    impl Read for FailingDisk<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.good.is_empty() {
                return Err(std::io::Error::from_raw_os_error(5));
            }
            let n = buf.len().min(self.good.len());
            buf[..n].copy_from_slice(&self.good[..n]);
            self.good = &self.good[n..];
            Ok(n)
        }
    }

    fn batch_bytes() -> Bytes {
        let record = Record {
            body: Bytes::from_static(b"acknowledged"),
            timestamp_ms: 1,
            ..Record::default()
        };
        PendingBatch::consecutive(&[record]).seal(0)
    }

    #[test]
    fn a_read_error_stops_the_scan_as_io_not_as_a_torn_tail() {
        let bytes = batch_bytes();
        for good in [0, 10, HEADER_LEN + 3] {
            let mut disk = FailingDisk {
                good: &bytes[..good],
            };
            match read_next(&mut disk, bytes.len() as u64, 1 << 20) {
                Err(ScanStop::Io(e)) => assert_eq!(e.raw_os_error(), Some(5)),
                other => panic!("after {good} good bytes, an EIO was taken for {other:?}"),
            }
        }
    }

    #[test]
    fn short_and_damaged_bytes_are_invalid() {
        let bytes = batch_bytes();
        let mut short = &bytes[..bytes.len() - 1];
        assert!(matches!(
            read_next(&mut short, bytes.len() as u64 - 1, 1 << 20),
            Err(ScanStop::Invalid(_))
        ));
        let mut damaged = bytes.to_vec();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(matches!(
            read_next(&mut damaged.as_slice(), damaged.len() as u64, 1 << 20),
            Err(ScanStop::Invalid(_))
        ));
        let mut whole = &bytes[..];
        assert!(read_next(&mut whole, bytes.len() as u64, 1 << 20).is_ok());
    }
}
