//! Recovery: a torn or corrupt segment tail is cut on reopen and reported, everything before
//! it is served intact and appends continue at the right offset; damage that valid batches
//! follow is kept and reported, reads stop at it, and the operator's repair skips it; a damaged or missing
//! arrival index is rebuilt from the sub-logs; a broker reopens its topics and data.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker::batch::PendingBatch;
use broker::meta::{Retention, SledMetaStore};
use broker::storage::{GapPolicy, StorageConfig};
use broker::{Broker, BrokerConfig, Cursor, Partitioning, Record, StoredRecord};
use bytes::Bytes;

use common::{LOCAL, active_segment, ids, open, read_all, read_all_from, record, small_config};

/// What a test wrote: per batch `(origin, base, records, encoded length)`, in arrival order.
struct Written {
    batches: Vec<(String, u64, Vec<Record>, u64)>,
}

impl Written {
    fn stored(&self) -> Vec<StoredRecord> {
        self.batches
            .iter()
            .flat_map(|(origin, base, records, _)| {
                records.iter().enumerate().map(move |(i, r)| StoredRecord {
                    origin: origin.clone(),
                    offset: base + i as u64,
                    record: r.clone(),
                })
            })
            .collect()
    }
}

/// Appends `rounds` rounds of one local batch and one `r1` batch, then shuts down.
async fn write_batches(dir: &Path, config: &Arc<StorageConfig>, rounds: usize) -> Written {
    let (p, cut) = open(dir, config);
    assert!(cut.is_empty());
    let mut batches = Vec::new();
    let mut r1_next = 0;
    for round in 0..rounds {
        let n = 1 + round % 3;
        let local: Vec<Record> = (0..n)
            .map(|i| record(&format!("l{round}.{i}"), 1_000 + round as i64))
            .collect();
        let pending = PendingBatch::consecutive(&local);
        let len = pending.len() as u64;
        let (base, _) = p.append_local(pending).await.unwrap();
        batches.push((LOCAL.to_string(), base, local, len));

        let remote: Vec<Record> = (0..2)
            .map(|i| record(&format!("r{round}.{i}"), 2_000 + round as i64))
            .collect();
        let bytes = PendingBatch::consecutive(&remote).seal(r1_next);
        let len = bytes.len() as u64;
        p.append_replicated("r1", bytes, GapPolicy::Refuse)
            .await
            .unwrap();
        batches.push(("r1".to_string(), r1_next, remote, len));
        r1_next += 2;
    }
    p.shut_down().await.unwrap();
    Written { batches }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

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
    let mut reader = broker::storage::PartitionReader::new(p.clone(), Cursor::default(), None);
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

fn broker_config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        region: "eu".to_string(),
        data_dir: dir.join("data"),
        storage: (*small_config()).clone(),
        default_retention: Retention::default(),
    }
}

fn open_broker(dir: &Path) -> Broker {
    let meta = SledMetaStore::open(&dir.join("meta")).unwrap();
    Broker::open(broker_config(dir), Arc::new(meta)).unwrap()
}

fn read_partition(broker: &Broker, topic: &str, partition: u32) -> Vec<StoredRecord> {
    read_all(&broker.partition(topic, partition).unwrap())
}

#[tokio::test]
async fn broker_reopens_topics_and_data_with_sled() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let retention = Retention {
        max_bytes: 1 << 20,
        max_age_ms: 0,
    };
    let (before, cursor) = {
        let broker = open_broker(dir);
        broker.create_topic("orders", 2, Some(retention)).unwrap();
        broker.create_topic("audit", 1, None).unwrap();
        for i in 0..50 {
            broker
                .produce(
                    "orders",
                    vec![
                        record(&format!("o{i}"), 1_000 + i),
                        record(&format!("o{i}b"), 1_000 + i),
                    ],
                    Partitioning::RoundRobin,
                )
                .await
                .unwrap();
        }
        broker
            .produce("audit", vec![record("a0", 5)], Partitioning::Explicit(0))
            .await
            .unwrap();
        broker
            .append_replicated(
                "orders",
                1,
                "us",
                PendingBatch::consecutive(&[record("us0", 7)]).seal(0),
                GapPolicy::Refuse,
            )
            .await
            .unwrap();
        let cursor: Cursor = [("eu", 12u64), ("us", 1)].into_iter().collect();
        broker
            .commit("readers", "orders", &[(1, cursor.clone())])
            .unwrap();
        let before: Vec<Vec<StoredRecord>> = vec![
            read_partition(&broker, "orders", 0),
            read_partition(&broker, "orders", 1),
            read_partition(&broker, "audit", 0),
        ];
        assert_eq!(
            before[0].len() + before[1].len(),
            101,
            "100 produced, 1 replicated"
        );
        broker.shut_down().await.unwrap();
        (before, cursor)
    };

    let broker = open_broker(dir);
    assert!(broker.recovery_report().is_empty());
    let mut topics = broker.topics();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions, t.retention))
            .collect::<Vec<_>>(),
        vec![("audit", 1, Retention::default()), ("orders", 2, retention)]
    );
    assert_eq!(read_partition(&broker, "orders", 0), before[0]);
    assert_eq!(read_partition(&broker, "orders", 1), before[1]);
    assert_eq!(read_partition(&broker, "audit", 0), before[2]);
    assert_eq!(
        broker.group_cursors("readers", "orders").unwrap(),
        vec![(1, cursor)]
    );
    // Produce continues at the next local offset of the partition.
    let next = before[0].iter().filter(|r| r.origin == "eu").count() as u64;
    let ids = broker
        .produce(
            "orders",
            vec![record("after", 9)],
            Partitioning::Explicit(0),
        )
        .await
        .unwrap();
    assert_eq!(ids[0].offset, next);
    broker.shut_down().await.unwrap();
    drop(broker);

    // A torn tail found at broker open is in the recovery report.
    let segment = active_segment(&dir.join("data/topics/orders/0"), "eu");
    set_len(&segment, file_len(&segment) - 5);
    let broker = open_broker(dir);
    let report = broker.recovery_report();
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0].path, segment);
    assert_eq!(read_partition(&broker, "orders", 0), before[0]);
    broker.shut_down().await.unwrap();
}

#[tokio::test]
async fn damaged_segment_indexes_are_rebuilt() {
    let temp = tempfile::tempdir().unwrap();
    let meta: Arc<broker::meta::MemoryMetaStore> = Arc::new(Default::default());
    let config = BrokerConfig {
        data_dir: temp.path().to_path_buf(),
        ..broker_config(temp.path())
    };
    let broker = Broker::open(config.clone(), meta.clone()).unwrap();
    broker.create_topic("t", 1, None).unwrap();
    let mut produced = Vec::new();
    for i in 0..150i64 {
        let r = record(&format!("m{i}"), 50_000 + 3 * i);
        broker
            .produce("t", vec![r.clone()], Partitioning::Explicit(0))
            .await
            .unwrap();
        produced.push(r);
    }
    broker.shut_down().await.unwrap();
    drop(broker);

    let pdir = temp.path().join("topics/t/0");
    let segments = common::segment_files(&pdir, "eu");
    assert!(segments.len() >= 4, "only {} segments", segments.len());
    let index =
        |i: usize, ext: &str| common::segment_path(&pdir, "eu", segments[i].0).with_extension(ext);
    // Sealed segment 0: offset index gone. 1: time index torn. 2: entries out of order.
    std::fs::remove_file(index(0, "index")).unwrap();
    set_len(&index(1, "timeindex"), file_len(&index(1, "timeindex")) - 5);
    let mut swapped = std::fs::read(index(2, "index")).unwrap();
    assert!(swapped.len() >= 16, "segment 2 has a single index entry");
    swapped[..16].rotate_left(8);
    std::fs::write(index(2, "index"), swapped).unwrap();

    let broker = Broker::open(config, meta).unwrap();
    assert!(
        broker.recovery_report().is_empty(),
        "{:?}",
        broker.recovery_report()
    );
    let partition = broker.partition("t", 0).unwrap();
    let all = read_all(&partition);
    assert_eq!(
        all.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
        produced
    );
    // Every offset is found through the rebuilt indexes.
    for from in 0..=150u64 {
        let cursor: Cursor = [("eu", from)].into_iter().collect();
        let (rest, _) = read_all_from(&partition, cursor, None, 1 << 20);
        assert_eq!(rest.first().map(|r| r.offset), (from < 150).then_some(from));
        assert_eq!(rest.len() as u64, 150 - from);
    }
    for at in [0, 50_000, 50_001, 50_200, 50_447, 50_448] {
        let cursor = broker
            .start_cursor(&partition, broker::StartPosition::Timestamp(at))
            .unwrap();
        let first = produced
            .iter()
            .position(|r| r.timestamp_ms >= at)
            .unwrap_or(150) as u64;
        assert_eq!(cursor.next_offset("eu"), first, "timestamp {at}");
    }
    // Appends continue.
    let ids = broker
        .produce("t", vec![record("m150", 60_000)], Partitioning::Explicit(0))
        .await
        .unwrap();
    assert_eq!(ids[0].offset, 150);
    broker.shut_down().await.unwrap();
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
    let mut reader = broker::storage::PartitionReader::new(p.clone(), Cursor::default(), None);
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
