//! An origin written rarely no longer pins the arrival index: past a bound, the entries
//! below the floor are coalesced per origin, and reads (fresh, in progress, after a
//! restart) still deliver every record exactly once, each origin in offset order.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use broker::batch::{Batch, PendingBatch};
use broker::storage::PartitionStore;
use broker::storage::RecordFilter;
use broker::storage::arrival::{COALESCE_AT, KEEP_RECENT};
use broker::storage::{GapPolicy, Partition, PartitionReader};
use broker::{Cursor, StoredRecord};

const BUSY_BATCHES: u64 = 25_000;

fn batch(body: &str, offset: u64) -> Batch {
    Batch::from_bytes(
        PendingBatch::consecutive(&[common::record(body, 1)]).seal(offset),
        usize::MAX,
    )
    .unwrap()
}

async fn append(partition: &Partition, origin: &str, offsets: std::ops::Range<u64>) {
    let batches = offsets
        .map(|o| batch(&format!("{origin}-{o}"), o))
        .collect();
    partition
        .append_replicated_run(origin, batches, GapPolicy::Refuse)
        .await
        .unwrap();
}

/// Per origin, the offsets delivered, checking each origin's order and no repeats.
fn by_origin(records: &[StoredRecord]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in records {
        let list = out.entry(r.origin.clone()).or_default();
        assert!(
            list.last().is_none_or(|last| *last < r.offset),
            "{} {} delivered out of order or twice",
            r.origin,
            r.offset
        );
        list.push(r.offset);
    }
    out
}

fn expected() -> BTreeMap<String, Vec<u64>> {
    [
        ("busy".to_string(), (0..BUSY_BATCHES).collect()),
        ("rare".to_string(), vec![0, 1]),
    ]
    .into()
}

fn arrival_entries(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("arrival.log")).unwrap().len() / 24
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rarely_written_origin_does_not_pin_the_arrival_index() {
    let temp = tempfile::tempdir().unwrap();
    let config = Arc::new(broker::storage::StorageConfig::default());
    let (partition, _) = common::open(temp.path(), &config);
    append(&partition, "rare", 0..1).await;
    for run in 0..BUSY_BATCHES / 1_000 {
        append(&partition, "busy", run * 1_000..(run + 1) * 1_000).await;
        if run == 12 {
            append(&partition, "rare", 1..2).await;
        }
    }
    assert!(arrival_entries(temp.path()) as usize > COALESCE_AT);

    // A reader part-way through when the index is coalesced.
    let mut reader = PartitionReader::new(
        partition.clone(),
        Cursor::default(),
        RecordFilter::default(),
    );
    let mut in_progress = reader.read(64 << 10).unwrap().records;
    assert!(!in_progress.is_empty() && in_progress.len() < 20_000);

    partition
        .apply_retention(0, 0, broker::record::now_ms())
        .unwrap();
    let entries = arrival_entries(temp.path());
    assert!(
        entries as usize <= KEEP_RECENT + 2,
        "the arrival index still holds {entries} entries"
    );

    loop {
        let outcome = reader.read(64 << 10).unwrap();
        in_progress.extend(outcome.records);
        if outcome.caught_up {
            break;
        }
    }
    assert_eq!(
        by_origin(&in_progress),
        expected(),
        "the reader in progress"
    );
    assert_eq!(
        by_origin(&common::read_all(&partition)),
        expected(),
        "a fresh reader"
    );
    // A consumer resuming from a cursor taken before the coalescing.
    let (_, halfway) = common::read_all_from(
        &partition,
        Cursor::from_iter([("busy", 12_000), ("rare", 0)]),
        None,
        1 << 20,
    );
    assert_eq!(
        halfway,
        Cursor::from_iter([("busy", BUSY_BATCHES), ("rare", 2)])
    );
    let (rest, _) = common::read_all_from(
        &partition,
        Cursor::from_iter([("busy", 12_000), ("rare", 0)]),
        None,
        1 << 20,
    );
    let rest = by_origin(&rest);
    assert_eq!(rest["busy"], (12_000..BUSY_BATCHES).collect::<Vec<_>>());
    assert_eq!(rest["rare"], vec![0, 1]);

    partition.shut_down().await.unwrap();
    drop(partition);
    let (partition, _) = common::open(temp.path(), &config);
    assert_eq!(
        by_origin(&common::read_all(&partition)),
        expected(),
        "after a restart"
    );
    assert!(arrival_entries(temp.path()) as usize <= KEEP_RECENT + 2);
}
