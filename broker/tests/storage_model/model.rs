//! The model a partition is checked against: the operations the property test draws, and
//! every batch still held, in arrival order.

use std::path::Path;
use std::sync::Arc;

use broker::storage::{Partition, PartitionReader};
use broker::{Cursor, Record, StoredRecord};
use bytes::Bytes;
use proptest::prelude::*;

use crate::common::{self, LOCAL, segment_files};

pub const ORIGINS: [&str; 3] = [LOCAL, "r1", "r2"];

#[derive(Clone, Debug)]
pub struct RecSpec {
    pub key: Option<Vec<u8>>,
    pub tag: Option<&'static str>,
    pub body: Vec<u8>,
    pub timestamp_ms: i64,
}

#[derive(Clone, Debug)]
pub enum Op {
    Local(Vec<RecSpec>),
    /// A batch of `origin` (1 or 2) starting `gap` past its end; `None` slots were filtered
    /// out (a gap inside the batch).
    Replicated {
        origin: usize,
        gap: u64,
        refuse_gap: bool,
        slots: Vec<Option<RecSpec>>,
    },
    /// Sends again a batch already sent for `origin`.
    Duplicate {
        origin: usize,
        pick: usize,
    },
    /// Sends a batch that starts below the end and ends past it.
    Overlap {
        origin: usize,
    },
    Retention {
        max_bytes: u64,
    },
    Reopen {
        graceful: bool,
    },
    /// Reopen after damage, as a crash can leave it: the active segment of `origin` cut by
    /// a seeded number of bytes (a torn tail), and/or the arrival index cut at a seeded
    /// length (entries past it are rebuilt from the sub-logs).
    Crash {
        graceful: bool,
        origin: usize,
        segment_cut: Option<u64>,
        arrival_cut: Option<u64>,
    },
    /// Per origin `None` (absent from the cursor) or a seed for an offset in `0..=end + 1`;
    /// a fresh reader, optionally filtering by tag, reads until caught up.
    Read {
        cursor: Vec<Option<u64>>,
        tag: Option<&'static str>,
        max_bytes: usize,
    },
    /// One read call of a reader that lives from the partition's open and falls behind
    /// (retention may remove what it has not read yet).
    LagRead {
        max_bytes: usize,
    },
}

pub fn rec_spec() -> impl Strategy<Value = RecSpec> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4)),
        proptest::option::of(prop_oneof![Just("a"), Just("b")]),
        proptest::collection::vec(any::<u8>(), 0..40),
        1_000i64..2_000,
    )
        .prop_map(|(key, tag, body, timestamp_ms)| RecSpec {
            key,
            tag,
            body,
            timestamp_ms,
        })
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(rec_spec(), 1..5).prop_map(Op::Local),
        6 => (
            1usize..3,
            prop_oneof![4 => Just(0u64), 1 => 1u64..4],
            any::<bool>(),
            proptest::collection::vec(
                prop_oneof![4 => rec_spec().prop_map(Some), 1 => Just(None)],
                1..5
            ),
        )
            .prop_map(|(origin, gap, refuse_gap, slots)| Op::Replicated {
                origin,
                gap,
                refuse_gap,
                slots,
            }),
        2 => (1usize..3, any::<usize>()).prop_map(|(origin, pick)| Op::Duplicate { origin, pick }),
        1 => (1usize..3).prop_map(|origin| Op::Overlap { origin }),
        2 => prop_oneof![1u64..300, 300u64..2_000].prop_map(|max_bytes| Op::Retention { max_bytes }),
        1 => any::<bool>().prop_map(|graceful| Op::Reopen { graceful }),
        1 => (
            any::<bool>(),
            0usize..3,
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(graceful, origin, segment_cut, arrival_cut)| Op::Crash {
                graceful,
                origin,
                segment_cut,
                arrival_cut,
            }),
        3 => (
            proptest::collection::vec(proptest::option::of(any::<u64>()), 3),
            prop_oneof![3 => Just(None), 1 => Just(Some("a"))],
            prop_oneof![Just(1usize), 1usize..600, Just(1 << 20)],
        )
            .prop_map(|(cursor, tag, max_bytes)| Op::Read { cursor, tag, max_bytes }),
        2 => prop_oneof![Just(1usize), 1usize..600].prop_map(|max_bytes| Op::LagRead { max_bytes }),
    ]
}

pub fn to_record(spec: &RecSpec) -> Record {
    Record {
        key: spec.key.clone().map(Bytes::from),
        tag: spec.tag.map(str::to_string),
        properties: Default::default(),
        body: Bytes::from(spec.body.clone()),
        timestamp_ms: spec.timestamp_ms,
    }
}

#[derive(Clone, Debug)]
pub struct ModelBatch {
    pub origin: usize,
    pub base: u64,
    pub last: u64,
    pub records: Vec<(u64, Record)>,
    /// Encoded length on disk.
    pub len: u64,
}

#[derive(Default)]
pub struct Model {
    /// Held batches in arrival order.
    pub batches: Vec<ModelBatch>,
    pub next: [u64; 3],
    /// Replicated batches sent per origin (for duplicates).
    pub sent: [Vec<Bytes>; 3],
    pub largest_batch: u64,
}

impl Model {
    pub fn start(&self, origin: usize) -> u64 {
        self.batches
            .iter()
            .find(|b| b.origin == origin)
            .map_or(self.next[origin], |b| b.base)
    }

    /// Every held record in arrival order.
    pub fn merged(&self) -> Vec<StoredRecord> {
        self.batches
            .iter()
            .flat_map(|b| {
                b.records.iter().map(|(offset, record)| StoredRecord {
                    origin: ORIGINS[b.origin].to_string(),
                    offset: *offset,
                    record: record.clone(),
                })
            })
            .collect()
    }

    pub fn push(&mut self, batch: ModelBatch, tail: &mut Vec<StoredRecord>) {
        tail.extend(batch.records.iter().map(|(offset, record)| StoredRecord {
            origin: ORIGINS[batch.origin].to_string(),
            offset: *offset,
            record: record.clone(),
        }));
        self.next[batch.origin] = batch.last + 1;
        self.batches.push(batch);
    }
}

pub fn origin_index(name: &str) -> usize {
    ORIGINS
        .iter()
        .position(|o| *o == name)
        .unwrap_or_else(|| panic!("unexpected origin {name}"))
}

/// Reads until caught up, `max_bytes` per call.
pub fn read_until_caught_up(reader: &mut PartitionReader, max_bytes: usize) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let outcome = reader.read(max_bytes).expect("read");
        out.extend(outcome.records);
        if outcome.caught_up {
            return out;
        }
    }
    panic!("reader never caught up");
}

pub fn short(records: &[StoredRecord]) -> Vec<(String, u64)> {
    records
        .iter()
        .map(|r| (r.origin.clone(), r.offset))
        .collect()
}

/// Compares the partition with the model: extents, a full read, and the files.
pub fn check_state(partition: &Arc<Partition>, dir: &Path, model: &Model, segment_bytes: u64) {
    let infos = partition.sub_logs();
    for info in &infos {
        origin_index(&info.origin);
    }
    for (i, origin) in ORIGINS.iter().enumerate() {
        let (start, end) = infos
            .iter()
            .find(|s| s.origin == *origin)
            .map_or((0, 0), |s| (s.start_offset, s.end_offset));
        assert_eq!(end, model.next[i], "end offset of {origin}");
        assert_eq!(start, model.start(i), "start offset of {origin}");
        // Segments respect the size limit (a single batch larger than it is alone).
        let files = segment_files(dir, origin);
        for (base, size) in &files {
            assert!(
                *size <= segment_bytes.max(model.largest_batch),
                "segment {base} of {origin} is {size} bytes"
            );
        }
        if let Some(info) = infos.iter().find(|s| s.origin == *origin) {
            assert_eq!(info.segments, files.len(), "segment count of {origin}");
            assert_eq!(
                info.bytes,
                files.iter().map(|(_, size)| size).sum::<u64>(),
                "bytes of {origin}"
            );
        }
    }
    let expected = model.merged();
    let (all, cursor) = common::read_all_from(partition, Cursor::default(), None, 1 << 20);
    assert_eq!(short(&all), short(&expected), "full read order");
    assert_eq!(all, expected, "full read contents");
    for (i, origin) in ORIGINS.iter().enumerate() {
        if model.batches.iter().any(|b| b.origin == i) {
            assert_eq!(
                cursor.next_offset(origin),
                model.next[i],
                "cursor of {origin}"
            );
        }
    }
}
