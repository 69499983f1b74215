//! The record batch format: the unit written to disk, fsynced, indexed and (in the
//! replicator) shipped between regions as bytes, never re-encoded.
//!
//! All integers are little-endian.
//!
//! ```text
//! offset size field
//!  0      4   length            bytes after this field (crc .. end)
//!  4      4   crc               CRC-32C (Castagnoli) of bytes 8 .. end
//!  8      1   magic             format version, 1
//!  9      1   flags             0 (reserved)
//! 10      2   reserved          0
//! 12      8   base_offset       origin offset of the batch's first slot
//! 20      4   last_offset_delta last slot is base_offset + delta
//! 24      4   record_count      records present (fewer than delta + 1 where a
//!                               replication filter removed records: a gap)
//! 28      8   first_timestamp   ms since epoch of the first record (0 if none)
//! 36      8   max_timestamp     largest record timestamp (0 if none)
//! 44      ..  records
//!
//! record:
//!   u32 offset_delta   (strictly increasing within the batch, <= last_offset_delta)
//!   i64 timestamp_ms
//!   i32 key length     (-1: no key) then the key bytes
//!   i32 tag length     (-1: no tag) then the tag, UTF-8
//!   u32 property count, then per property: u32 len, name (UTF-8), u32 len, value (UTF-8)
//!   u32 body length, then the body
//! ```
//!
//! The CRC covers the offsets, so a flipped offset is caught like any other bit. A local
//! produce encodes the records before it knows its base offset; the records' CRC is then
//! combined with the header's ([`crc32c::crc32c_combine`]) under the partition lock, so
//! the lock is never held while hashing a large payload. Below [`REHASH_BELOW`] bytes the
//! records are hashed again after the header instead: hardware CRC32C of a few KiB costs
//! less than the combine's matrix arithmetic (which showed in profiles of small produces).

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

use crate::record::Record;

pub const MAGIC: u8 = 1;
/// Bytes before the first record.
pub const HEADER_LEN: usize = 44;

/// The largest `max_batch_bytes` a configuration may set. Reading batches back from disk is
/// bounded by this (plus the header), never by the setting in force: lowering the setting
/// between restarts must not make recovery cut acknowledged batches written under it.
pub const MAX_BATCH_BYTES_LIMIT: usize = 1 << 30;

/// The largest batch that can be found on disk, header included.
pub const MAX_BATCH_ON_DISK: usize = MAX_BATCH_BYTES_LIMIT + HEADER_LEN;
/// The length field and the CRC field.
const PREFIX_LEN: usize = 8;

/// Why a run of bytes is not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchFormatError {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("length field {len} is out of range (minimum {min}, maximum {max})")]
    BadLength { len: usize, min: usize, max: usize },
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("unknown magic byte {0}")]
    Magic(u8),
    #[error("flags {flags:#04x} and reserved {reserved:#06x} must be 0 in format version 1")]
    Reserved { flags: u8, reserved: u16 },
    #[error("record {index}: {reason}")]
    Record { index: usize, reason: String },
    #[error("header says {declared} records, found {found}")]
    Count { declared: u32, found: u32 },
    #[error(
        "header timestamps (first {first_declared}, max {max_declared}) disagree with the records (first {first_found}, max {max_found})"
    )]
    Timestamps {
        first_declared: i64,
        max_declared: i64,
        first_found: i64,
        max_found: i64,
    },
    #[error("base offset {base} + delta {delta} overflows")]
    OffsetOverflow { base: u64, delta: u32 },
}

/// The fixed header of a batch, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Total bytes of the batch including the length field.
    pub total_len: usize,
    pub crc: u32,
    pub base_offset: u64,
    pub last_offset_delta: u32,
    pub record_count: u32,
    pub first_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
}

impl BatchHeader {
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// Decodes the header at the start of `buf` without checking the CRC. `max_len`
    /// bounds the length field so a corrupt length cannot ask for gigabytes.
    pub fn parse(buf: &[u8], max_len: usize) -> Result<Self, BatchFormatError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchFormatError::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        let len = u32_at(buf, 0) as usize;
        let total_len = len + 4;
        if total_len < HEADER_LEN || total_len > max_len {
            return Err(BatchFormatError::BadLength {
                len: total_len,
                min: HEADER_LEN,
                max: max_len,
            });
        }
        if buf[8] != MAGIC {
            return Err(BatchFormatError::Magic(buf[8]));
        }
        let (flags, reserved) = (buf[9], u16::from_le_bytes([buf[10], buf[11]]));
        if flags != 0 || reserved != 0 {
            return Err(BatchFormatError::Reserved { flags, reserved });
        }
        let header = BatchHeader {
            total_len,
            crc: u32_at(buf, 4),
            base_offset: u64_at(buf, 12),
            last_offset_delta: u32_at(buf, 20),
            record_count: u32_at(buf, 24),
            first_timestamp_ms: u64_at(buf, 28) as i64,
            max_timestamp_ms: u64_at(buf, 36) as i64,
        };
        if header
            .base_offset
            .checked_add(u64::from(header.last_offset_delta))
            .and_then(|last| last.checked_add(1))
            .is_none()
        {
            return Err(BatchFormatError::OffsetOverflow {
                base: header.base_offset,
                delta: header.last_offset_delta,
            });
        }
        Ok(header)
    }
}

/// A whole batch whose length and CRC have been verified.
#[derive(Clone, Debug)]
pub struct Batch {
    header: BatchHeader,
    bytes: Bytes,
}

impl Batch {
    /// Verifies a complete batch: length, magic, CRC and the record framing.
    pub fn from_bytes(bytes: Bytes, max_len: usize) -> Result<Self, BatchFormatError> {
        let header = BatchHeader::parse(&bytes, max_len)?;
        if bytes.len() != header.total_len {
            return Err(BatchFormatError::Truncated {
                need: header.total_len,
                have: bytes.len(),
            });
        }
        let computed = crc32c::crc32c(&bytes[PREFIX_LEN..]);
        if computed != header.crc {
            return Err(BatchFormatError::Crc {
                stored: header.crc,
                computed,
            });
        }
        let batch = Batch { header, bytes };
        // Walk the records once so a well-formed CRC over ill-formed content is refused here
        // and the iterator never meets an error later. The header's timestamps drive age
        // retention and the time index, so they must be the records' own.
        let mut found = 0u32;
        let (mut first_found, mut max_found) = (None, 0i64);
        for record in batch.iter_raw() {
            let (_, record) = record?;
            first_found.get_or_insert(record.timestamp_ms);
            max_found = max_found.max(record.timestamp_ms);
            found += 1;
        }
        if found != header.record_count {
            return Err(BatchFormatError::Count {
                declared: header.record_count,
                found,
            });
        }
        let first_found = first_found.unwrap_or(0);
        if (header.first_timestamp_ms, header.max_timestamp_ms) != (first_found, max_found) {
            return Err(BatchFormatError::Timestamps {
                first_declared: header.first_timestamp_ms,
                max_declared: header.max_timestamp_ms,
                first_found,
                max_found,
            });
        }
        Ok(batch)
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The records with their origin offsets.
    pub fn records(&self) -> impl Iterator<Item = (u64, Record)> + '_ {
        // `from_bytes` validated every record, so decoding cannot fail here.
        self.iter_raw().flatten()
    }

    fn iter_raw(&self) -> RecordIter<'_> {
        RecordIter {
            batch: &self.bytes,
            pos: HEADER_LEN,
            index: 0,
            prev_delta: None,
            header: self.header,
        }
    }
}

struct RecordIter<'a> {
    batch: &'a Bytes,
    pos: usize,
    index: usize,
    prev_delta: Option<u32>,
    header: BatchHeader,
}

impl Iterator for RecordIter<'_> {
    type Item = Result<(u64, Record), BatchFormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.batch.len() {
            return None;
        }
        let index = self.index;
        self.index += 1;
        let result = self.decode_one();
        if result.is_err() {
            self.pos = self.batch.len();
        }
        Some(result.map_err(|reason| BatchFormatError::Record { index, reason }))
    }
}

impl RecordIter<'_> {
    fn decode_one(&mut self) -> Result<(u64, Record), String> {
        let delta = self.u32()?;
        if delta > self.header.last_offset_delta {
            return Err(format!(
                "offset delta {delta} past the batch's last delta {}",
                self.header.last_offset_delta
            ));
        }
        if self.prev_delta.is_some_and(|prev| delta <= prev) {
            return Err(format!("offset delta {delta} does not increase"));
        }
        self.prev_delta = Some(delta);
        let timestamp_ms = self.u64()? as i64;
        let key = self.optional_bytes()?;
        let tag = self.optional_bytes()?.map(utf8).transpose()?;
        let count = self.u32()? as usize;
        let mut properties = BTreeMap::new();
        for _ in 0..count {
            let name = utf8(self.bytes()?)?;
            let value = utf8(self.bytes()?)?;
            properties.insert(name, value);
        }
        let body = self.bytes()?;
        let record = Record {
            key,
            tag,
            properties,
            body,
            timestamp_ms,
        };
        Ok((self.header.base_offset + u64::from(delta), record))
    }

    fn take(&mut self, n: usize) -> Result<Bytes, String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.batch.len());
        let Some(end) = end else {
            return Err(format!("field of {n} bytes runs past the end of the batch"));
        };
        let out = self.batch.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32_at(&b, 0))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64_at(&b, 0))
    }

    fn bytes(&mut self) -> Result<Bytes, String> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn optional_bytes(&mut self) -> Result<Option<Bytes>, String> {
        let len = self.u32()? as i32;
        match len {
            -1 => Ok(None),
            n if n < 0 => Err(format!("negative length {n}")),
            n => self.take(n as usize).map(Some),
        }
    }
}

fn utf8(b: Bytes) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| format!("invalid UTF-8: {e}"))
}

/// The size one record takes inside a batch.
pub fn encoded_record_len(record: &Record) -> usize {
    let opt = |b: Option<usize>| 4 + b.unwrap_or(0);
    4 + 8
        + opt(record.key.as_ref().map(Bytes::len))
        + opt(record.tag.as_ref().map(String::len))
        + 4
        + record
            .properties
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>()
        + 4
        + record.body.len()
}

/// Records encoded for one batch whose base offset is not known yet.
#[derive(Debug)]
pub struct PendingBatch {
    buf: BytesMut,
    records_crc: u32,
    last_offset_delta: u32,
    record_count: u32,
    first_timestamp_ms: i64,
    max_timestamp_ms: i64,
}

impl Batch {
    /// The batch with only the records `keep` accepts, covering the same offsets (the
    /// others leave intended gaps, so identity is the same everywhere). Unchanged when
    /// every record is kept.
    pub fn retain(self, mut keep: impl FnMut(&Record) -> bool) -> Batch {
        let kept: Vec<bool> = self.records().map(|(_, r)| keep(&r)).collect();
        if kept.iter().all(|k| *k) {
            return self;
        }
        let base = self.header().base_offset;
        let records: Vec<_> = self
            .records()
            .zip(kept)
            .filter(|(_, k)| *k)
            .map(|((offset, r), _)| ((offset - base) as u32, r))
            .collect();
        let bytes = PendingBatch::covering(
            self.header().last_offset_delta,
            records.iter().map(|(delta, r)| (*delta, r)),
        )
        .seal(base);
        Batch::from_bytes(bytes, usize::MAX).expect("a batch just encoded is well formed")
    }
}

/// Records shorter than this are hashed again when a batch is sealed, instead of combining
/// their CRC with the header's.
pub const REHASH_BELOW: usize = 16 << 10;

impl PendingBatch {
    /// Encodes records at the given offset deltas (strictly increasing).
    pub fn encode<'a>(records: impl IntoIterator<Item = (u32, &'a Record)>) -> Self {
        let mut buf = BytesMut::with_capacity(HEADER_LEN);
        buf.resize(HEADER_LEN, 0);
        let (mut count, mut last, mut first_ts, mut max_ts) = (0u32, 0u32, None, 0i64);
        for (delta, record) in records {
            put_record(&mut buf, delta, record);
            count += 1;
            last = delta;
            first_ts.get_or_insert(record.timestamp_ms);
            max_ts = max_ts.max(record.timestamp_ms);
        }
        let records_crc = crc32c::crc32c(&buf[HEADER_LEN..]);
        PendingBatch {
            buf,
            records_crc,
            last_offset_delta: last,
            record_count: count,
            first_timestamp_ms: first_ts.unwrap_or(0),
            max_timestamp_ms: max_ts,
        }
    }

    /// Encodes records at consecutive offsets, as a local produce does.
    pub fn consecutive(records: &[Record]) -> Self {
        Self::encode(records.iter().enumerate().map(|(i, r)| (i as u32, r)))
    }

    /// Encodes a batch that covers `[0, last_offset_delta]` with the given records at their
    /// deltas (a filtered range: the missing slots are an intended gap).
    pub fn covering<'a>(
        last_offset_delta: u32,
        records: impl IntoIterator<Item = (u32, &'a Record)>,
    ) -> Self {
        let mut pending = Self::encode(records);
        pending.last_offset_delta = pending.last_offset_delta.max(last_offset_delta);
        pending
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    pub fn last_offset_delta(&self) -> u32 {
        self.last_offset_delta
    }

    pub fn max_timestamp_ms(&self) -> i64 {
        self.max_timestamp_ms
    }

    /// Fixes the base offset and finishes the header and CRC.
    pub fn seal(mut self, base_offset: u64) -> Bytes {
        let len = self.buf.len();
        let header = &mut self.buf[..HEADER_LEN];
        header[0..4].copy_from_slice(&((len - 4) as u32).to_le_bytes());
        header[8] = MAGIC;
        header[12..20].copy_from_slice(&base_offset.to_le_bytes());
        header[20..24].copy_from_slice(&self.last_offset_delta.to_le_bytes());
        header[24..28].copy_from_slice(&self.record_count.to_le_bytes());
        header[28..36].copy_from_slice(&self.first_timestamp_ms.to_le_bytes());
        header[36..44].copy_from_slice(&self.max_timestamp_ms.to_le_bytes());
        let header_crc = crc32c::crc32c(&header[PREFIX_LEN..HEADER_LEN]);
        let records_len = len - HEADER_LEN;
        let crc = if records_len < REHASH_BELOW {
            crc32c::crc32c_append(header_crc, &self.buf[HEADER_LEN..])
        } else {
            crc32c::crc32c_combine(header_crc, self.records_crc, records_len)
        };
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        self.buf.freeze()
    }
}

/// The sealed batch `bytes` moved to `base_offset`: the header's offset and the CRC
/// rewritten, the records untouched. For a local append that lost a race for its place
/// (another writer appended first) and must take the next one.
pub fn rebase(bytes: &Bytes, base_offset: u64) -> Bytes {
    let mut buf = BytesMut::from(&bytes[..]);
    buf[12..20].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32c::crc32c(&buf[PREFIX_LEN..]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    buf.freeze()
}

fn put_record(buf: &mut BytesMut, delta: u32, record: &Record) {
    buf.reserve(encoded_record_len(record));
    buf.put_u32_le(delta);
    buf.put_i64_le(record.timestamp_ms);
    put_optional(buf, record.key.as_deref());
    put_optional(buf, record.tag.as_deref().map(str::as_bytes));
    buf.put_u32_le(record.properties.len() as u32);
    for (name, value) in &record.properties {
        put_bytes(buf, name.as_bytes());
        put_bytes(buf, value.as_bytes());
    }
    put_bytes(buf, &record.body);
}

fn put_optional(buf: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        None => buf.put_i32_le(-1),
        Some(v) => put_bytes(buf, v),
    }
}

fn put_bytes(buf: &mut BytesMut, value: &[u8]) {
    buf.put_u32_le(value.len() as u32);
    buf.put_slice(value);
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &str) -> Record {
        Record {
            key: Some(Bytes::from_static(b"k")),
            tag: Some("eu".into()),
            properties: [("a".to_string(), "b".to_string())].into(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            timestamp_ms: 1_700_000_000_000,
        }
    }

    /// Re-seals `bytes` with a header field changed (the CRC recomputed), as a buggy or
    /// hostile encoder would.
    fn with_field(mut bytes: Vec<u8>, at: usize, value: i64) -> Bytes {
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[PREFIX_LEN..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        Bytes::from(bytes)
    }

    #[test]
    fn header_timestamps_must_be_the_records_own() {
        let mut late = record("late");
        late.timestamp_ms += 5;
        let bytes = PendingBatch::consecutive(&[record("a"), late]).seal(0);
        assert!(Batch::from_bytes(bytes.clone(), 1 << 20).is_ok());
        let far_future = 1_700_000_000_000 + 10 * 365 * 86_400_000;
        for (at, value) in [
            (28, 1_700_000_000_001),
            (36, far_future),
            (36, 1_700_000_000_000),
        ] {
            let changed = with_field(bytes.to_vec(), at, value);
            assert!(
                matches!(
                    Batch::from_bytes(changed, 1 << 20),
                    Err(BatchFormatError::Timestamps { .. })
                ),
                "a header timestamp at byte {at} set to {value} was accepted"
            );
        }
    }

    #[test]
    fn round_trip_keeps_records_and_offsets() {
        let records = vec![record("one"), record("two"), Record::default()];
        let bytes = PendingBatch::consecutive(&records).seal(41);
        let batch = Batch::from_bytes(bytes, 1 << 20).unwrap();
        assert_eq!(batch.header().base_offset, 41);
        assert_eq!(batch.header().last_offset(), 43);
        let back: Vec<_> = batch.records().collect();
        assert_eq!(
            back,
            vec![
                (41, records[0].clone()),
                (42, records[1].clone()),
                (43, records[2].clone())
            ]
        );
    }

    #[test]
    fn a_rebased_batch_is_the_batch_sealed_at_the_new_offset() {
        let records = vec![record("one"), record("two")];
        let at_41 = PendingBatch::consecutive(&records).seal(41);
        let at_90 = PendingBatch::consecutive(&records).seal(90);
        assert_eq!(rebase(&at_41, 90), at_90);
        assert_eq!(
            Batch::from_bytes(rebase(&at_41, 90), 1 << 20)
                .unwrap()
                .header()
                .base_offset,
            90
        );
    }

    #[test]
    fn sealed_crc_equals_crc_of_whole_rehashed_or_combined() {
        let large = Record {
            body: Bytes::from(vec![7u8; REHASH_BELOW]),
            ..record("x")
        };
        for records in [vec![record("x")], vec![large]] {
            let bytes = PendingBatch::consecutive(&records).seal(7);
            assert_eq!(u32_at(&bytes, 4), crc32c::crc32c(&bytes[8..]));
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = PendingBatch::consecutive(&[record("payload")]).seal(3);
        for i in 0..bytes.len() {
            let mut copy = bytes.to_vec();
            copy[i] ^= 0x10;
            assert!(
                Batch::from_bytes(Bytes::from(copy), 1 << 20).is_err(),
                "flip at byte {i} passed"
            );
        }
    }

    #[test]
    fn covering_batch_leaves_a_gap() {
        let r = record("kept");
        let bytes = PendingBatch::covering(9, [(4, &r)]).seal(100);
        let batch = Batch::from_bytes(bytes, 1 << 20).unwrap();
        assert_eq!(batch.header().last_offset(), 109);
        assert_eq!(
            batch.records().map(|(o, _)| o).collect::<Vec<_>>(),
            vec![104]
        );
    }

    #[test]
    fn set_flags_or_reserved_bytes_are_refused_even_with_a_valid_crc() {
        for (at, value) in [(9, 0x01u8), (10, 0x80), (11, 0x01)] {
            let mut bytes = PendingBatch::consecutive(&[record("x")]).seal(0).to_vec();
            bytes[at] = value;
            let crc = crc32c::crc32c(&bytes[8..]);
            bytes[4..8].copy_from_slice(&crc.to_le_bytes());
            let err = Batch::from_bytes(Bytes::from(bytes), 1 << 20).unwrap_err();
            assert!(matches!(err, BatchFormatError::Reserved { .. }), "{err}");
        }
    }

    #[test]
    fn oversized_length_field_is_refused() {
        let mut bytes = PendingBatch::consecutive(&[record("x")]).seal(0).to_vec();
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            BatchHeader::parse(&bytes, 1 << 20),
            Err(BatchFormatError::BadLength { .. })
        ));
    }
}
