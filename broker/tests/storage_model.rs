//! A property test of one partition against a simple in-memory model: random sequences of
//! local appends, replicated appends from two remote origins (in order, with intended gaps,
//! refused gaps, duplicates and overlaps), retention by size, reopen (after shut_down or
//! after a plain drop), reopen after a torn segment tail or a cut arrival index, and reads
//! from random vector cursors (fresh readers, a reader tailing the partition, and one that
//! falls behind retention).
//!
//! The model keeps, in arrival order, every batch still held: `(origin, base, last,
//! records)`. Retention is the only operation that may remove held data (besides the
//! simulated torn tail); the model then drops exactly the batches below the sub-log's new
//! start offset, and the expected set of removed segment files is computed from the files'
//! sizes before the call.
//!
//! Also here: concurrent appends sharing group commits, and a reader waiting for data.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use broker::batch::PendingBatch;
use broker::storage::{GapPolicy, Partition, PartitionReader, ReplicatedAppend, StorageConfig};
use broker::{BrokerError, Cursor, Record, StoredRecord};
use bytes::Bytes;
use proptest::prelude::*;

use common::{LOCAL, TOPIC, segment_files};

const ORIGINS: [&str; 3] = [LOCAL, "r1", "r2"];

#[derive(Clone, Debug)]
struct RecSpec {
    key: Option<Vec<u8>>,
    tag: Option<&'static str>,
    body: Vec<u8>,
    timestamp_ms: i64,
}

#[derive(Clone, Debug)]
enum Op {
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

fn rec_spec() -> impl Strategy<Value = RecSpec> {
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

fn op() -> impl Strategy<Value = Op> {
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

fn to_record(spec: &RecSpec) -> Record {
    Record {
        key: spec.key.clone().map(Bytes::from),
        tag: spec.tag.map(str::to_string),
        properties: Default::default(),
        body: Bytes::from(spec.body.clone()),
        timestamp_ms: spec.timestamp_ms,
    }
}

#[derive(Clone, Debug)]
struct ModelBatch {
    origin: usize,
    base: u64,
    last: u64,
    records: Vec<(u64, Record)>,
    /// Encoded length on disk.
    len: u64,
}

#[derive(Default)]
struct Model {
    /// Held batches in arrival order.
    batches: Vec<ModelBatch>,
    next: [u64; 3],
    /// Replicated batches sent per origin (for duplicates).
    sent: [Vec<Bytes>; 3],
    largest_batch: u64,
}

impl Model {
    fn start(&self, origin: usize) -> u64 {
        self.batches
            .iter()
            .find(|b| b.origin == origin)
            .map_or(self.next[origin], |b| b.base)
    }

    /// Every held record in arrival order.
    fn merged(&self) -> Vec<StoredRecord> {
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

    fn push(&mut self, batch: ModelBatch, tail: &mut Vec<StoredRecord>) {
        tail.extend(batch.records.iter().map(|(offset, record)| StoredRecord {
            origin: ORIGINS[batch.origin].to_string(),
            offset: *offset,
            record: record.clone(),
        }));
        self.next[batch.origin] = batch.last + 1;
        self.batches.push(batch);
    }
}

fn origin_index(name: &str) -> usize {
    ORIGINS
        .iter()
        .position(|o| *o == name)
        .unwrap_or_else(|| panic!("unexpected origin {name}"))
}

/// Reads until caught up, `max_bytes` per call.
fn read_until_caught_up(reader: &mut PartitionReader, max_bytes: usize) -> Vec<StoredRecord> {
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

fn short(records: &[StoredRecord]) -> Vec<(String, u64)> {
    records
        .iter()
        .map(|r| (r.origin.clone(), r.offset))
        .collect()
}

/// Compares the partition with the model: extents, a full read, and the files.
fn check_state(partition: &Arc<Partition>, dir: &Path, model: &Model, segment_bytes: u64) {
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

fn run(config: StorageConfig, ops: Vec<Op>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run_async(Arc::new(config), ops));
}

async fn run_async(config: Arc<StorageConfig>, ops: Vec<Op>) {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("p0");
    let segment_bytes = config.segment_bytes;
    let open = || {
        let (partition, cut) = Partition::open(
            dir.clone(),
            TOPIC,
            common::INCARNATION,
            0,
            LOCAL,
            config.clone(),
        )
        .expect("open");
        assert!(cut.is_empty(), "recovery cut intact data: {cut:?}");
        Arc::new(partition)
    };
    let mut partition = open();
    let mut model = Model::default();
    // A reader that follows the partition from its open, catching up after every operation.
    let mut tail = PartitionReader::new(partition.clone(), Cursor::default(), None);
    let mut tail_read: Vec<StoredRecord> = Vec::new();
    let mut tail_expected: Vec<StoredRecord> = Vec::new();
    let mut lagging = PartitionReader::new(partition.clone(), Cursor::default(), None);

    for op in ops {
        match op {
            Op::Local(specs) => {
                let records: Vec<Record> = specs.iter().map(to_record).collect();
                let pending = PendingBatch::consecutive(&records);
                let len = pending.len() as u64;
                model.largest_batch = model.largest_batch.max(len);
                let base = model.next[0];
                let (first, last) = partition.append_local(pending).await.expect("append_local");
                let expected_last = base + records.len() as u64 - 1;
                assert_eq!((first, last), (base, expected_last), "local offsets");
                let records = records
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (base + i as u64, r))
                    .collect();
                model.push(
                    ModelBatch {
                        origin: 0,
                        base,
                        last,
                        records,
                        len,
                    },
                    &mut tail_expected,
                );
            }
            Op::Replicated {
                origin,
                gap,
                refuse_gap,
                slots,
            } => {
                let records: Vec<(u32, Record)> = slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.as_ref().map(|s| (i as u32, to_record(s))))
                    .collect();
                let last_delta = slots.len() as u32 - 1;
                let base = model.next[origin] + gap;
                let bytes =
                    PendingBatch::covering(last_delta, records.iter().map(|(d, r)| (*d, r)))
                        .seal(base);
                model.largest_batch = model.largest_batch.max(bytes.len() as u64);
                let policy = if refuse_gap {
                    GapPolicy::Refuse
                } else {
                    GapPolicy::Allow
                };
                let result = partition
                    .append_replicated(ORIGINS[origin], bytes.clone(), policy)
                    .await;
                if gap > 0 && refuse_gap {
                    match result {
                        Err(BrokerError::OffsetGap {
                            expected,
                            base: b,
                            origin: o,
                            ..
                        }) => {
                            assert_eq!((expected, b), (model.next[origin], base));
                            assert_eq!(o, ORIGINS[origin]);
                        }
                        other => panic!("gap with Refuse: {other:?}"),
                    }
                } else {
                    let last = base + u64::from(last_delta);
                    assert_eq!(
                        result.expect("append_replicated"),
                        ReplicatedAppend::Appended { base, last }
                    );
                    let len = bytes.len() as u64;
                    model.sent[origin].push(bytes);
                    let records = records
                        .into_iter()
                        .map(|(d, r)| (base + u64::from(d), r))
                        .collect();
                    model.push(
                        ModelBatch {
                            origin,
                            base,
                            last,
                            records,
                            len,
                        },
                        &mut tail_expected,
                    );
                }
            }
            Op::Duplicate { origin, pick } => {
                let sent = &model.sent[origin];
                if sent.is_empty() {
                    continue;
                }
                let bytes = sent[pick % sent.len()].clone();
                for policy in [GapPolicy::Refuse, GapPolicy::Allow] {
                    let result = partition
                        .append_replicated(ORIGINS[origin], bytes.clone(), policy)
                        .await;
                    assert_eq!(result.expect("duplicate"), ReplicatedAppend::AlreadyHeld);
                }
            }
            Op::Overlap { origin } => {
                let next = model.next[origin];
                if next == 0 {
                    continue;
                }
                let records = [
                    common::record("overlap-1", 1),
                    common::record("overlap-2", 2),
                ];
                let bytes = PendingBatch::consecutive(&records).seal(next - 1);
                let result = partition
                    .append_replicated(ORIGINS[origin], bytes, GapPolicy::Allow)
                    .await;
                match result {
                    Err(BrokerError::OverlappingBatch {
                        expected,
                        base,
                        last,
                        ..
                    }) => assert_eq!((expected, base, last), (next, next - 1, next)),
                    other => panic!("overlapping batch: {other:?}"),
                }
            }
            Op::Retention { max_bytes } => {
                let before: Vec<Vec<(u64, u64)>> =
                    ORIGINS.iter().map(|o| segment_files(&dir, o)).collect();
                let starts_before: Vec<u64> = (0..3).map(|i| model.start(i)).collect();
                // Oldest first while over the limit; the active segment always stays.
                let expected_kept: Vec<Vec<(u64, u64)>> = before
                    .iter()
                    .map(|files| {
                        let mut kept = files.clone();
                        while kept.len() > 1 && kept.iter().map(|(_, s)| s).sum::<u64>() > max_bytes
                        {
                            kept.remove(0);
                        }
                        kept
                    })
                    .collect();
                let expected_removed: usize = before
                    .iter()
                    .zip(&expected_kept)
                    .map(|(b, k)| b.len() - k.len())
                    .sum();
                let removed = partition
                    .apply_retention(max_bytes, 0, 10_000)
                    .expect("retention");
                assert_eq!(removed, expected_removed, "segments removed");
                let infos = partition.sub_logs();
                for (i, origin) in ORIGINS.iter().enumerate() {
                    assert_eq!(
                        segment_files(&dir, origin),
                        expected_kept[i],
                        "files of {origin}"
                    );
                    let Some(info) = infos.iter().find(|s| s.origin == *origin) else {
                        continue;
                    };
                    assert!(info.start_offset >= starts_before[i], "start moved back");
                    // Whole batches below the new start went; nothing at or past it.
                    model
                        .batches
                        .retain(|b| b.origin != i || b.last >= info.start_offset);
                    assert_eq!(
                        info.start_offset,
                        model.start(i),
                        "start of {origin} is not a batch boundary"
                    );
                    if let Some(&(first_kept, _)) = expected_kept[i].first() {
                        assert!(info.start_offset >= first_kept, "start below first segment");
                    }
                }
                // Index files of removed segments are gone too.
                for origin in ORIGINS {
                    let sub = common::sublog_dir(&dir, origin);
                    let Ok(entries) = std::fs::read_dir(&sub) else {
                        continue;
                    };
                    let logs = segment_files(&dir, origin);
                    for entry in entries {
                        let name = entry
                            .expect("entry")
                            .file_name()
                            .into_string()
                            .expect("utf8");
                        if name == "incarnation" {
                            continue;
                        }
                        let stem = name.split('.').next().expect("stem");
                        let base: u64 = stem.parse().expect("numeric file name");
                        assert!(
                            logs.iter().any(|(b, _)| *b == base),
                            "orphan file {name} in {origin}"
                        );
                    }
                }
            }
            Op::Crash {
                graceful,
                origin,
                segment_cut,
                arrival_cut,
            } => {
                drop(tail);
                drop(lagging);
                if graceful {
                    partition.shut_down().await.expect("shut_down");
                }
                assert_eq!(Arc::strong_count(&partition), 1, "partition still shared");
                drop(partition);
                let expected_cut = match segment_cut {
                    Some(seed) => tear_active_segment(&dir, &mut model, origin, seed),
                    None => Vec::new(),
                };
                if let Some(seed) = arrival_cut {
                    cut_arrival_index(&dir, &mut model, seed);
                }
                let (reopened, cut) = Partition::open(
                    dir.clone(),
                    TOPIC,
                    common::INCARNATION,
                    0,
                    LOCAL,
                    config.clone(),
                )
                .expect("open");
                let cut: Vec<(PathBuf, u64, u64)> = cut
                    .into_iter()
                    .map(|t| (t.path, t.valid_bytes, t.cut_bytes))
                    .collect();
                assert_eq!(cut, expected_cut, "recovery report");
                partition = Arc::new(reopened);
                tail = PartitionReader::new(partition.clone(), Cursor::default(), None);
                lagging = PartitionReader::new(partition.clone(), Cursor::default(), None);
                tail_read.clear();
                tail_expected = model.merged();
            }
            Op::Reopen { graceful } => {
                drop(tail);
                drop(lagging);
                if graceful {
                    partition.shut_down().await.expect("shut_down");
                    let refused = partition
                        .append_local(PendingBatch::consecutive(&[common::record("late", 1)]))
                        .await;
                    assert!(
                        matches!(refused, Err(BrokerError::ShuttingDown)),
                        "append after shut_down: {refused:?}"
                    );
                }
                assert_eq!(Arc::strong_count(&partition), 1, "partition still shared");
                drop(partition);
                partition = open();
                tail = PartitionReader::new(partition.clone(), Cursor::default(), None);
                lagging = PartitionReader::new(partition.clone(), Cursor::default(), None);
                tail_read.clear();
                tail_expected = model.merged();
            }
            Op::Read {
                cursor,
                tag,
                max_bytes,
            } => {
                let cursor: Cursor = ORIGINS
                    .iter()
                    .zip(&cursor)
                    .enumerate()
                    .filter_map(|(i, (origin, seed))| {
                        seed.map(|s| (origin.to_string(), s % (model.next[i] + 2)))
                    })
                    .collect();
                let (got, after) =
                    common::read_all_from(&partition, cursor.clone(), tag, max_bytes);
                let expected: Vec<StoredRecord> = model
                    .merged()
                    .into_iter()
                    .filter(|r| r.offset >= cursor.next_offset(&r.origin))
                    .filter(|r| tag.is_none_or(|t| r.record.tag.as_deref() == Some(t)))
                    .collect();
                assert_eq!(short(&got), short(&expected), "read from {cursor:?}");
                assert_eq!(got, expected, "read contents from {cursor:?}");
                for (i, origin) in ORIGINS.iter().enumerate() {
                    let from = cursor.next_offset(origin);
                    let want = if model
                        .batches
                        .iter()
                        .any(|b| b.origin == i && b.last >= from)
                    {
                        model.next[i]
                    } else {
                        from
                    };
                    assert_eq!(
                        after.next_offset(origin),
                        want,
                        "cursor of {origin} after read"
                    );
                }
            }
            Op::LagRead { max_bytes } => {
                let before = lagging.cursor().clone();
                let outcome = lagging.read(max_bytes).expect("lagging read");
                // Exactly the next held records past its cursor, in arrival order.
                let expected: Vec<StoredRecord> = model
                    .merged()
                    .into_iter()
                    .filter(|r| r.offset >= before.next_offset(&r.origin))
                    .collect();
                if outcome.caught_up {
                    assert_eq!(
                        short(&outcome.records),
                        short(&expected),
                        "lagging read, caught up"
                    );
                } else {
                    assert!(
                        outcome.records.len() <= expected.len(),
                        "lagging read returned more than is held"
                    );
                    assert_eq!(
                        short(&outcome.records),
                        short(&expected[..outcome.records.len()]),
                        "lagging read"
                    );
                }
                assert_eq!(
                    outcome.records,
                    expected[..outcome.records.len()],
                    "lagging contents"
                );
                // Its cursor only moves forward, and never past the end.
                let after = lagging.cursor();
                for (i, origin) in ORIGINS.iter().enumerate() {
                    assert!(after.next_offset(origin) >= before.next_offset(origin));
                    assert!(
                        after.next_offset(origin) <= model.next[i].max(before.next_offset(origin))
                    );
                }
            }
        }
        tail_read.extend(read_until_caught_up(&mut tail, 300));
        assert_eq!(short(&tail_read), short(&tail_expected), "tailing reader");
        assert_eq!(tail_read, tail_expected, "tailing reader contents");
        check_state(&partition, &dir, &model, segment_bytes);
    }
    drop(tail);
    drop(lagging);
    partition.shut_down().await.expect("final shut_down");
}

/// Cuts the active segment of `origin` (closed partition) as a torn write would, and
/// updates the model: the batches the cut touches are lost, the sub-log ends before them.
/// The first batch of the segment is always kept (an emptied active segment is covered by
/// the recovery tests). Returns the truncation recovery must report: path, valid bytes,
/// bytes cut.
fn tear_active_segment(
    dir: &Path,
    model: &mut Model,
    origin: usize,
    seed: u64,
) -> Vec<(PathBuf, u64, u64)> {
    let name = ORIGINS[origin];
    let Some(&(active_base, size)) = segment_files(dir, name).last() else {
        return Vec::new();
    };
    let in_active: Vec<(u64, u64)> = model
        .batches
        .iter()
        .filter(|b| b.origin == origin && b.base >= active_base)
        .map(|b| (b.base, b.len))
        .collect();
    assert_eq!(
        in_active.iter().map(|(_, len)| len).sum::<u64>(),
        size,
        "model and active segment of {name} disagree"
    );
    if in_active.len() < 2 {
        return Vec::new();
    }
    let first_len = in_active[0].1;
    let new_size = size - 1 - seed % (size - first_len);
    let path = common::segment_path(dir, name, active_base);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open segment")
        .set_len(new_size)
        .expect("cut segment");
    // The first batch that does not end within the new size, and everything after it.
    let mut position = 0;
    let mut lost_from = None;
    for (base, len) in &in_active {
        if position + len > new_size {
            lost_from = Some((*base, position));
            break;
        }
        position += len;
    }
    let (lost_base, valid) = lost_from.expect("the cut loses a batch");
    model
        .batches
        .retain(|b| b.origin != origin || b.base < lost_base);
    model.next[origin] = model
        .batches
        .iter()
        .rev()
        .find(|b| b.origin == origin)
        .expect("first batch kept")
        .last
        + 1;
    // Lost batches may be sent again and are then appended, not "already held".
    let next = model.next[origin];
    model.sent[origin].retain(|bytes| {
        let base = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        base < next
    });
    if valid == new_size {
        return Vec::new();
    }
    vec![(path, valid, new_size - valid)]
}

/// Cuts `arrival.log` (closed partition) at a seeded length and reorders the model as
/// recovery rebuilds it: held batches whose entry survived keep their order; the rest
/// follow, origin by origin in the order of the `origins` file, each in offset order.
fn cut_arrival_index(dir: &Path, model: &mut Model, seed: u64) {
    let path = dir.join("arrival.log");
    let raw = std::fs::read(&path).expect("read arrival index");
    let entries = raw.len() / 24;
    let keep = (seed % (entries as u64 + 1)) as usize;
    let extra = if keep < entries {
        (seed / 7 % 24) as usize
    } else {
        0
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open arrival index")
        .set_len((keep * 24 + extra) as u64)
        .expect("cut arrival index");
    // No origins file yet when nothing was ever appended.
    let origins: Vec<String> = std::fs::read_to_string(dir.join("origins"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let kept: Vec<(usize, u64)> = raw[..keep * 24]
        .chunks_exact(24)
        .map(|e| {
            let id = u16::from_le_bytes([e[0], e[1]]) as usize;
            let base = u64::from_le_bytes(e[4..12].try_into().expect("8 bytes"));
            (origin_index(&origins[id]), base)
        })
        .collect();
    let (mut order, mut rest): (Vec<ModelBatch>, Vec<ModelBatch>) =
        std::mem::take(&mut model.batches)
            .into_iter()
            .partition(|b| kept.contains(&(b.origin, b.base)));
    for name in &origins {
        let origin = origin_index(name);
        let mut of_origin: Vec<ModelBatch> = Vec::new();
        rest.retain(|b| {
            if b.origin == origin {
                of_origin.push(b.clone());
                false
            } else {
                true
            }
        });
        of_origin.sort_by_key(|b| b.base);
        order.extend(of_origin);
    }
    assert!(
        rest.is_empty(),
        "a held batch of an origin not in the origins file"
    );
    model.batches = order;
}

proptest! {
    // 64 cases by default; PROPTEST_CASES=n runs more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn partition_matches_model(
        segment_bytes in 150u64..1_000,
        index_interval_bytes in prop_oneof![Just(1u64), 32u64..256],
        // A zero segment age seals the active segment at every append.
        roll_by_age in proptest::bool::weighted(0.2),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let config = StorageConfig {
            segment_bytes,
            index_interval_bytes,
            segment_age: if roll_by_age { Duration::ZERO } else { StorageConfig::default().segment_age },
            ..StorageConfig::default()
        };
        run(config, ops);
    }
}

/// Many appends at once share group commits: each gets its own offsets, every record is
/// stored once with the offsets its append returned, and a reader tailing the partition
/// meanwhile (waking on the durable watermark) sees each origin in offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_and_a_tailing_reader() {
    let temp = tempfile::tempdir().unwrap();
    let config = Arc::new(StorageConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        ..StorageConfig::default()
    });
    let (partition, _) = Partition::open(
        temp.path().to_path_buf(),
        TOPIC,
        common::INCARNATION,
        0,
        LOCAL,
        config,
    )
    .unwrap();
    let partition = Arc::new(partition);
    const PRODUCERS: usize = 6;
    const BATCHES: usize = 25;
    const REMOTE_BATCHES: u64 = 40;
    let total = PRODUCERS * BATCHES * 2 + 2 * REMOTE_BATCHES as usize;

    let reader = {
        let partition = partition.clone();
        tokio::spawn(async move {
            let mut reader = PartitionReader::new(partition, Cursor::default(), None);
            let mut seen: Vec<StoredRecord> = Vec::new();
            while seen.len() < total {
                let outcome = reader.read(700).unwrap();
                seen.extend(outcome.records);
                if outcome.caught_up && seen.len() < total {
                    reader.wait_for_data().await.unwrap();
                }
            }
            seen
        })
    };
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let partition = partition.clone();
        producers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for b in 0..BATCHES {
                let records = [
                    common::record(&format!("p{p}.b{b}.0"), 1),
                    common::record(&format!("p{p}.b{b}.1"), 1),
                ];
                let (first, last) = partition
                    .append_local(PendingBatch::consecutive(&records))
                    .await
                    .unwrap();
                assert_eq!(last, first + 1);
                acked.push((first, records[0].clone()));
                acked.push((last, records[1].clone()));
            }
            acked
        }));
    }
    let mut replicators = Vec::new();
    for origin in ["r1", "r2"] {
        let partition = partition.clone();
        replicators.push(tokio::spawn(async move {
            for base in 0..REMOTE_BATCHES {
                let bytes =
                    PendingBatch::consecutive(&[common::record(&format!("{origin}.{base}"), 1)])
                        .seal(base);
                let outcome = partition
                    .append_replicated(origin, bytes, GapPolicy::Refuse)
                    .await
                    .unwrap();
                assert_eq!(outcome, ReplicatedAppend::Appended { base, last: base });
            }
        }));
    }
    let mut acked: Vec<(u64, Record)> = Vec::new();
    for producer in producers {
        acked.extend(producer.await.unwrap());
    }
    for replicator in replicators {
        replicator.await.unwrap();
    }
    let seen = reader.await.unwrap();
    // Every local offset 0..n was handed out exactly once, to the record stored there.
    acked.sort_by_key(|(offset, _)| *offset);
    let offsets: Vec<u64> = acked.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (0..(PRODUCERS * BATCHES * 2) as u64).collect::<Vec<_>>()
    );
    let stored: Vec<(u64, Record)> = seen
        .iter()
        .filter(|r| r.origin == LOCAL)
        .map(|r| (r.offset, r.record.clone()))
        .collect();
    assert_eq!(
        stored, acked,
        "the tailing reader saw the local origin out of order"
    );
    for origin in ["r1", "r2"] {
        let offsets: Vec<u64> = seen
            .iter()
            .filter(|r| r.origin == origin)
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, (0..REMOTE_BATCHES).collect::<Vec<_>>());
    }
    // A fresh full read gives the same stream as the tailing reader.
    assert_eq!(common::read_all(&partition), seen);
    partition.shut_down().await.unwrap();
}

/// A reader waiting for data wakes when it is durable, and ends when the partition closes.
#[tokio::test]
async fn waiting_reader_wakes_on_append_and_on_close() {
    let temp = tempfile::tempdir().unwrap();
    let (partition, _) = common::open(temp.path(), &common::small_config());
    let mut reader = PartitionReader::new(partition.clone(), Cursor::default(), None);
    let outcome = reader.read(1 << 20).unwrap();
    assert!(outcome.records.is_empty() && outcome.caught_up);
    let waiting = tokio::spawn(async move {
        reader.wait_for_data().await.unwrap();
        let got = reader.read(1 << 20).unwrap();
        (reader, got.records)
    });
    partition
        .append_local(PendingBatch::consecutive(&[common::record("wake", 1)]))
        .await
        .unwrap();
    let (mut reader, records) = waiting.await.unwrap();
    assert_eq!(
        common::ids(&records),
        vec![(LOCAL.to_string(), 0, "wake".to_string())]
    );

    let waiting = tokio::spawn(async move { reader.wait_for_data().await });
    partition.mark_deleted();
    assert!(matches!(
        waiting.await.unwrap(),
        Err(BrokerError::TopicDeleted { .. })
    ));
    assert!(matches!(
        partition
            .append_local(PendingBatch::consecutive(&[common::record("late", 1)]))
            .await,
        Err(BrokerError::TopicDeleted { .. })
    ));
}
