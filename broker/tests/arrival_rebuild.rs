//! A damaged or missing arrival index is rebuilt from the sub-logs on reopen: every record
//! is still read, each origin in offset order; entries that point past a cut sub-log are
//! dropped.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker::batch::PendingBatch;
use broker::storage::{GapPolicy, StorageConfig};
use broker::{Cursor, StoredRecord};
use bytes::Bytes;

use broker::storage::PartitionStore;
use common::damage::{Written, file_len, flip_byte, set_len, write_batches};
use common::{LOCAL, active_segment, ids, open, read_all, read_all_from, record, small_config};

fn arrival_path(dir: &Path) -> PathBuf {
    dir.join("arrival.log")
}

/// Per origin, records in offset order.
fn per_origin(records: &[StoredRecord]) -> BTreeMap<String, Vec<(u64, Bytes)>> {
    let mut out: BTreeMap<String, Vec<(u64, Bytes)>> = BTreeMap::new();
    for r in records {
        out.entry(r.origin.clone())
            .or_default()
            .push((r.offset, r.record.body.clone()));
    }
    out
}

/// Reopens after the arrival index was damaged: every record is still read, each origin in
/// offset order, the first `kept_entries` batches in their arrival order; the rebuilt index
/// holds across another reopen, and appends go after it.
async fn check_rebuilt(
    dir: &Path,
    config: &Arc<StorageConfig>,
    written: &Written,
    kept_entries: usize,
) {
    let (p, cut) = open(dir, config);
    assert!(cut.is_empty(), "segments were cut: {cut:?}");
    let expected = written.stored();
    let got = read_all(&p);
    assert_eq!(
        got.len(),
        expected.len(),
        "records lost with the arrival index"
    );
    assert_eq!(per_origin(&got), per_origin(&expected));
    let kept_records: usize = written.batches[..kept_entries]
        .iter()
        .map(|b| b.2.len())
        .sum();
    assert_eq!(ids(&got[..kept_records]), ids(&expected[..kept_records]));
    // Reads from a vector cursor still work on the rebuilt index.
    let cursor: Cursor = [(LOCAL, 10u64), ("r1", 7)].into_iter().collect();
    let (rest, _) = read_all_from(&p, cursor.clone(), None, 200);
    let want: Vec<_> = got
        .iter()
        .filter(|r| r.offset >= cursor.next_offset(&r.origin))
        .cloned()
        .collect();
    assert_eq!(ids(&rest), ids(&want));
    p.append_local(PendingBatch::consecutive(&[record("new", 5)]))
        .await
        .unwrap();
    let order = ids(&read_all(&p));
    assert_eq!(order.last().unwrap().2, "new");
    drop(p);
    // Reopen (no shut_down): the rebuilt order is what the index file now holds, so it
    // does not change again.
    let (p, cut) = open(dir, config);
    assert!(cut.is_empty());
    assert_eq!(ids(&read_all(&p)), order, "order changed across a reopen");
}

#[tokio::test]
async fn truncated_arrival_index_is_rebuilt() {
    let config = small_config();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let written = write_batches(dir, &config, 40).await;
    let path = arrival_path(dir);
    let entries = file_len(&path) / 24;
    assert_eq!(entries as usize, written.batches.len());
    // Cut inside entry 31: 31 whole entries stay.
    set_len(&path, 31 * 24 + 10);
    check_rebuilt(dir, &config, &written, 31).await;
}

#[tokio::test]
async fn deleted_arrival_index_is_rebuilt() {
    let config = small_config();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let written = write_batches(dir, &config, 40).await;
    std::fs::remove_file(arrival_path(dir)).unwrap();
    check_rebuilt(dir, &config, &written, 0).await;
}

#[tokio::test]
async fn corrupt_arrival_entry_ends_the_index() {
    let config = small_config();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let written = write_batches(dir, &config, 40).await;
    // A flipped bit in entry 12's last offset: its CRC fails, entries from it are rebuilt.
    flip_byte(&arrival_path(dir), 12 * 24 + 13);
    check_rebuilt(dir, &config, &written, 12).await;
}

#[tokio::test]
async fn arrival_entries_past_a_cut_sub_log_are_dropped() {
    let config = small_config();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let written = write_batches(dir, &config, 20).await;
    // Cut the last r1 batch: its arrival entry is the index's last; the local batch before
    // it stays in place.
    let segment = active_segment(dir, "r1");
    let (_, base, _, len) = written.batches.last().unwrap().clone();
    set_len(&segment, file_len(&segment) - len + 3);
    let (p, cut) = open(dir, &config);
    assert_eq!(cut.len(), 1);
    let expected: Vec<StoredRecord> = written
        .stored()
        .into_iter()
        .filter(|r| r.origin != "r1" || r.offset < base)
        .collect();
    assert_eq!(ids(&read_all(&p)), ids(&expected));
    // The replicator re-sends the lost batch; it lands at its offsets.
    let (_, _, records, _) = written.batches.last().unwrap();
    p.append_replicated(
        "r1",
        PendingBatch::consecutive(records).seal(base),
        GapPolicy::Refuse,
    )
    .await
    .unwrap();
    assert_eq!(ids(&read_all(&p)), ids(&written.stored()));
}
