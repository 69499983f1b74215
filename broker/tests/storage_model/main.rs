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

#[path = "../common/mod.rs"]
mod common;
mod damage;
mod model;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use broker::batch::PendingBatch;
use broker::storage::{GapPolicy, Partition, PartitionReader, ReplicatedAppend, StorageConfig};
use broker::{BrokerError, Cursor, Record, StoredRecord};
use proptest::prelude::*;

use broker::storage::PartitionStore;
use broker::storage::RecordFilter;
use common::{LOCAL, TOPIC, segment_files};
use damage::{cut_arrival_index, tear_active_segment};
use model::*;

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
    let mut tail = PartitionReader::new(
        partition.clone(),
        Cursor::default(),
        RecordFilter::default(),
    );
    let mut tail_read: Vec<StoredRecord> = Vec::new();
    let mut tail_expected: Vec<StoredRecord> = Vec::new();
    let mut lagging = PartitionReader::new(
        partition.clone(),
        Cursor::default(),
        RecordFilter::default(),
    );

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
                tail = PartitionReader::new(
                    partition.clone(),
                    Cursor::default(),
                    RecordFilter::default(),
                );
                lagging = PartitionReader::new(
                    partition.clone(),
                    Cursor::default(),
                    RecordFilter::default(),
                );
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
                tail = PartitionReader::new(
                    partition.clone(),
                    Cursor::default(),
                    RecordFilter::default(),
                );
                lagging = PartitionReader::new(
                    partition.clone(),
                    Cursor::default(),
                    RecordFilter::default(),
                );
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
