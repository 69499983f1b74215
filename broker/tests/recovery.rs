//! Recovery: a torn or corrupt segment tail is cut on reopen and reported, everything before
//! it is served intact and appends continue at the right offset; damage that valid batches
//! follow is kept and reported, reads stop at it, and the operator's repair skips it. (The
//! arrival index: `arrival_rebuild.rs`; a broker's reopen: `broker_reopen.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker::batch::PendingBatch;
use broker::storage::StorageConfig;
use broker::{Cursor, Record, StoredRecord};
use bytes::Bytes;

use broker::storage::PartitionStore;
use broker::storage::RecordFilter;
use common::damage::{Written, file_len, flip_byte, set_len, write_batches};
use common::{LOCAL, active_segment, ids, open, read_all, read_all_from, record, small_config};

/// The last local batch and where it starts in the active segment.
fn last_local(written: &Written, segment: &Path) -> (u64, u64, u64) {
    let (_, base, _, len) = written.batches.iter().rev().find(|b| b.0 == LOCAL).unwrap();
    let size = file_len(segment);
    (*base, size - len, *len)
}

/// After recovery dropped local batches from `first_lost_base` on: the survivors read back
/// intact and in order, the end offset is right, and a new append takes the next offset.
async fn check_after_cut(
    dir: &Path,
    config: &Arc<StorageConfig>,
    written: &Written,
    first_lost_base: u64,
) {
    let (p, cut) = open(dir, config);
    assert!(cut.is_empty(), "a second reopen cut again: {cut:?}");
    let expected: Vec<StoredRecord> = written
        .stored()
        .into_iter()
        .filter(|r| r.origin != LOCAL || r.offset < first_lost_base)
        .collect();
    let got = read_all(&p);
    assert_eq!(ids(&got), ids(&expected));
    assert_eq!(got, expected);
    let local = p
        .sub_logs()
        .into_iter()
        .find(|s| s.origin == LOCAL)
        .unwrap();
    assert_eq!(local.end_offset, first_lost_base);
    let again = record("after-recovery", 9_999);
    let (first, last) = p
        .append_local(PendingBatch::consecutive(std::slice::from_ref(&again)))
        .await
        .unwrap();
    assert_eq!((first, last), (first_lost_base, first_lost_base));
    let got = read_all(&p);
    assert_eq!(got.len(), expected.len() + 1);
    assert_eq!(
        got.last().unwrap(),
        &StoredRecord {
            origin: LOCAL.to_string(),
            offset: first_lost_base,
            record: again,
        }
    );
    // A reader resuming from a cursor taken before the cut continues at the new record.
    let cursor: Cursor = [(LOCAL, first_lost_base)].into_iter().collect();
    let (rest, _) = read_all_from(&p, cursor, None, 1);
    let local_rest: Vec<_> = rest.iter().filter(|r| r.origin == LOCAL).collect();
    assert_eq!(local_rest.len(), 1);
    assert_eq!(local_rest[0].offset, first_lost_base);
    p.shut_down().await.unwrap();
}

#[tokio::test]
async fn cut_tail_of_active_segment_is_truncated_on_reopen() {
    let config = small_config();
    // Cut 1 byte, part of the records, into the header, or all but one byte of the batch.
    for cut_bytes in [1u64, 7, 30, 43, 44, 50, u64::MAX] {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let written = write_batches(dir, &config, 30).await;
        let segment = active_segment(dir, LOCAL);
        let (base, position, len) = last_local(&written, &segment);
        assert!(
            position > 0,
            "the last batch should not be alone in its segment"
        );
        let cut_bytes = cut_bytes.min(len - 1);
        set_len(&segment, position + len - cut_bytes);

        let (p, cut) = open(dir, &config);
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert_eq!(cut[0].path, segment);
        assert_eq!(cut[0].valid_bytes, position);
        assert_eq!(
            cut[0].cut_bytes,
            len - cut_bytes,
            "torn bytes left of the batch"
        );
        assert!(cut[0].reason.contains("torn"), "{}", cut[0].reason);
        assert_eq!(
            file_len(&segment),
            position,
            "file not cut at the batch start"
        );
        drop(p);
        check_after_cut(dir, &config, &written, base).await;
    }
}

#[tokio::test]
async fn whole_batch_cut_at_a_boundary_reopens_clean() {
    let config = small_config();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let written = write_batches(dir, &config, 30).await;
    let segment = active_segment(dir, LOCAL);
    let (base, position, _) = last_local(&written, &segment);
    // As if the last batch never reached the disk (its arrival entry did).
    set_len(&segment, position);
    let (p, cut) = open(dir, &config);
    assert!(cut.is_empty(), "{cut:?}");
    drop(p);
    check_after_cut(dir, &config, &written, base).await;
}

#[tokio::test]
async fn flipped_byte_in_last_batch_is_cut() {
    let config = small_config();
    // A byte of the length, of the CRC, of the base offset, and of the last record's body.
    for offset_in_batch in [1u64, 5, 13, u64::MAX] {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let written = write_batches(dir, &config, 30).await;
        let segment = active_segment(dir, LOCAL);
        let (base, position, len) = last_local(&written, &segment);
        let at = position + offset_in_batch.min(len - 1);
        flip_byte(&segment, at);

        let (p, cut) = open(dir, &config);
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert_eq!(cut[0].path, segment);
        assert_eq!(cut[0].valid_bytes, position);
        assert_eq!(cut[0].cut_bytes, len);
        drop(p);
        check_after_cut(dir, &config, &written, base).await;
    }
}

/// A local batch in the middle of the active segment: `(segment, position, base, length,
/// records)`.
fn middle_local_batch(dir: &Path, written: &Written) -> (PathBuf, u64, u64, u64, usize) {
    let segment = active_segment(dir, LOCAL);
    let seg_base: u64 = segment
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let in_segment: Vec<(u64, u64, usize)> = written
        .batches
        .iter()
        .filter(|b| b.0 == LOCAL && b.1 >= seg_base)
        .map(|b| (b.1, b.3, b.2.len()))
        .collect();
    assert!(
        in_segment.len() >= 3,
        "active segment holds {} batches",
        in_segment.len()
    );
    let victim = in_segment.len() / 2;
    let position: u64 = in_segment[..victim].iter().map(|(_, len, _)| len).sum();
    let (base, len, records) = in_segment[victim];
    (segment, position, base, len, records)
}

#[tokio::test]
async fn corrupt_batch_mid_segment_is_kept_reads_stop_there_and_a_repair_skips_it() {
    let config = small_config();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let written = write_batches(dir, &config, 30).await;
    let (segment, position, victim_base, victim_len, victim_records) =
        middle_local_batch(dir, &written);
    let size = file_len(&segment);
    let local_end = written
        .stored()
        .iter()
        .filter(|r| r.origin == LOCAL)
        .count() as u64;
    flip_byte(&segment, position + 40);

    // Acknowledged batches follow the damage: nothing is cut, the end is kept, and the
    // damage is reported where it is.
    let (p, cut) = open(dir, &config);
    assert!(cut.is_empty(), "recovery cut acknowledged batches: {cut:?}");
    assert_eq!(file_len(&segment), size);
    assert_eq!(p.sub_log(LOCAL).unwrap().end_offset, local_end);
    let damage = p.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(
        (damage[0].path.clone(), damage[0].start, damage[0].end),
        (segment.clone(), position, position + victim_len)
    );
    // Reads stop there, loudly.
    let mut reader = broker::storage::PartitionReader::new(
        p.clone(),
        Cursor::default(),
        RecordFilter::default(),
    );
    let failed = loop {
        match reader.read(1 << 20) {
            Ok(outcome) if outcome.caught_up => break None,
            Ok(_) => continue,
            Err(e) => break Some(e),
        }
    };
    assert!(
        matches!(failed, Some(broker::BrokerError::CorruptBatch { .. })),
        "a read past the damage did not stop with corrupt-batch: {failed:?}"
    );
    p.shut_down().await.unwrap();
    drop(p);

    // The operator's repair drops the damaged batch; its offsets are reported.
    let repaired = broker::storage::repair::repair_partition(
        dir,
        None,
        LOCAL,
        broker::storage::repair::RepairMode::Skip,
    )
    .unwrap();
    assert_eq!(repaired.len(), 1, "{repaired:?}");
    assert_eq!(
        repaired[0].offsets,
        vec![(victim_base, victim_base + victim_records as u64 - 1)]
    );
    assert_eq!(repaired[0].removed_bytes, victim_len);

    let (p, cut) = open(dir, &config);
    assert!(cut.is_empty() && p.damage().is_empty());
    let expected: Vec<StoredRecord> = written
        .stored()
        .into_iter()
        .filter(|r| {
            r.origin != LOCAL
                || r.offset < victim_base
                || r.offset >= victim_base + victim_records as u64
        })
        .collect();
    assert_eq!(ids(&read_all(&p)), ids(&expected));
    let (next, _) = p
        .append_local(PendingBatch::consecutive(&[record("after-repair", 9_999)]))
        .await
        .unwrap();
    assert_eq!(next, local_end);
}

/// Zeros where a batch should be in the active segment are writes that never reached the
/// disk (the machine stopped): nothing after them was acknowledged, so they are a torn
/// tail and cut, not damage that would stop reads until a repair.
#[tokio::test]
async fn zeros_in_the_active_segment_are_a_torn_tail() {
    let config = small_config();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let written = write_batches(dir, &config, 30).await;
    let (segment, position, victim_base, victim_len, _) = middle_local_batch(dir, &written);
    let mut bytes = std::fs::read(&segment).unwrap();
    let end = position + victim_len;
    bytes[position as usize..end as usize].fill(0);
    std::fs::write(&segment, bytes).unwrap();
    let (p, cut) = open(dir, &config);
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert_eq!(cut[0].valid_bytes, position);
    assert!(p.damage().is_empty());
    drop(p);
    check_after_cut(dir, &config, &written, victim_base).await;
}

#[tokio::test]
async fn torn_first_batch_of_a_new_segment() {
    let config = small_config();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    // Write until the local sub-log's newest segment holds exactly one batch.
    let mut rounds = 1;
    let written = loop {
        let attempt = tempfile::tempdir().unwrap();
        let written = write_batches(attempt.path(), &config, rounds).await;
        let segments = common::segment_files(attempt.path(), LOCAL);
        let (base, _) = *segments.last().unwrap();
        let last = written.batches.iter().rev().find(|b| b.0 == LOCAL).unwrap();
        if segments.len() > 1 && last.1 == base {
            break write_batches(dir, &config, rounds).await;
        }
        rounds += 1;
        assert!(rounds < 200, "no roll");
    };
    let segment = active_segment(dir, LOCAL);
    let (base, position, len) = last_local(&written, &segment);
    assert_eq!(position, 0);
    set_len(&segment, len / 2);
    let (p, cut) = open(dir, &config);
    assert_eq!(cut.len(), 1);
    assert_eq!((cut[0].valid_bytes, cut[0].cut_bytes), (0, len / 2));
    drop(p);
    check_after_cut(dir, &config, &written, base).await;
}

#[tokio::test]
async fn lowering_max_batch_bytes_keeps_batches_written_under_the_old_setting() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let big = Arc::new(StorageConfig {
        segment_bytes: 1 << 20,
        ..StorageConfig::default()
    });
    // One 200 KB batch and a small one after it, in the active segment.
    let bodies: Vec<String> = (0..100).map(|i| format!("{i:0>2000}")).collect();
    let records: Vec<Record> = bodies.iter().map(|b| record(b, 1)).collect();
    {
        let (p, _) = open(dir, &big);
        p.append_local(PendingBatch::consecutive(&records))
            .await
            .unwrap();
        p.append_local(PendingBatch::consecutive(&[record("after", 2)]))
            .await
            .unwrap();
    }
    // Reopened with a limit far below that batch: nothing is cut, everything reads back.
    let small = Arc::new(StorageConfig {
        segment_bytes: 1 << 20,
        max_record_bytes: 4096,
        max_batch_bytes: 16 << 10,
        ..StorageConfig::default()
    });
    let (p, cut) = open(dir, &small);
    assert!(cut.is_empty(), "recovery cut acknowledged data: {cut:?}");
    let held = read_all(&p);
    assert_eq!(held.len(), 101);
    assert_eq!(held[100].record.body, Bytes::from("after"));
}

#[tokio::test]
async fn a_damaged_first_batch_of_a_sealed_segment_does_not_stop_the_partition() {
    let config = small_config();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let written = write_batches(dir, &config, 30).await;
    let segments = common::segment_files(dir, LOCAL);
    assert!(segments.len() >= 2, "{segments:?}");
    let (first_base, _) = segments[0];
    let (second_base, _) = segments[1];
    flip_byte(&common::segment_path(dir, LOCAL, first_base), 40);

    let (p, cut) = open(dir, &config);
    assert!(cut.is_empty(), "{cut:?}");
    // Reading the damaged batch reports it; everything after that segment reads back.
    let mut reader = broker::storage::PartitionReader::new(
        p.clone(),
        Cursor::default(),
        RecordFilter::default(),
    );
    let damaged = reader
        .read(1 << 20)
        .expect_err("the damaged batch is reported");
    assert_eq!(damaged.code(), "corrupt-batch", "{damaged}");
    let from_second: Cursor = [(LOCAL, second_base), ("r1", 0)].into_iter().collect();
    let (records, _) = read_all_from(&p, from_second, None, 1 << 20);
    let expected: Vec<StoredRecord> = written
        .stored()
        .into_iter()
        .filter(|r| r.origin != LOCAL || r.offset >= second_base)
        .collect();
    assert_eq!(ids(&records), ids(&expected));
}
