//! A vector cursor means the same thing in every region: two regions that hold the same
//! batches, appended in different orders, serve the same records past any cursor.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use broker::batch::PendingBatch;
use broker::storage::{GapPolicy, Partition, PartitionReader};
use broker::{Cursor, Record, StoredRecord};

use broker::storage::RecordFilter;
use common::{TOPIC, batch, ids, read_all, read_all_from, records, row, small_config};

/// One batch of one origin, as both regions hold it.
struct Shipped {
    origin: &'static str,
    base: u64,
    records: Vec<Record>,
}

/// Appends `batches` in the given order to a partition whose local origin is `local`.
async fn apply(partition: &Partition, local: &str, batches: &[&Shipped]) {
    for b in batches {
        if b.origin == local {
            let (first, _) = partition
                .append_local(PendingBatch::consecutive(&b.records))
                .await
                .unwrap();
            assert_eq!(first, b.base);
        } else {
            // Each origin's topic has one incarnation everywhere, as replication carries it.
            let bytes = batch(&b.records, b.base);
            let verified = broker::batch::Batch::from_bytes(bytes, usize::MAX).unwrap();
            partition
                .append_replicated_run_in(
                    b.origin,
                    incarnation_of(b.origin),
                    vec![verified],
                    GapPolicy::Refuse,
                )
                .await
                .unwrap();
        }
    }
}

fn incarnation_of(origin: &str) -> u64 {
    match origin {
        "eu" => 1,
        "us" => 2,
        _ => 3,
    }
}

/// Per origin, the records past `cursor`, in offset order.
fn by_origin(records: &[StoredRecord]) -> BTreeMap<String, Vec<(u64, Record)>> {
    let mut out: BTreeMap<String, Vec<(u64, Record)>> = BTreeMap::new();
    for r in records {
        out.entry(r.origin.clone())
            .or_default()
            .push((r.offset, r.record.clone()));
    }
    out
}

#[tokio::test]
async fn vector_cursor_is_region_independent() {
    // Region "eu" produces eu-*; region "us" produces us-*; "ap" reaches both by replication.
    let shipped: Vec<Shipped> = [
        ("eu", 0, 2),
        ("ap", 0, 3),
        ("us", 0, 1),
        ("eu", 2, 3),
        ("us", 1, 2),
        ("ap", 3, 1),
        ("eu", 5, 1),
        ("us", 3, 3),
        ("ap", 4, 2),
    ]
    .into_iter()
    .map(|(origin, base, n)| Shipped {
        origin,
        base,
        records: records(&format!("{origin}-{base}"), n),
    })
    .collect();
    let eu_order: Vec<&Shipped> = shipped.iter().collect();
    // The other region saw them in another order (per origin still in offset order).
    let us_order: Vec<&Shipped> = [2, 4, 7, 1, 0, 5, 3, 8, 6]
        .iter()
        .map(|&i| &shipped[i])
        .collect();

    let (t1, t2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = small_config();
    let eu = Arc::new(
        Partition::open(
            t1.path().to_path_buf(),
            TOPIC,
            incarnation_of("eu"),
            0,
            "eu",
            config.clone(),
        )
        .unwrap()
        .0,
    );
    let us = Arc::new(
        Partition::open(
            t2.path().to_path_buf(),
            TOPIC,
            incarnation_of("us"),
            0,
            "us",
            config.clone(),
        )
        .unwrap()
        .0,
    );
    apply(&eu, "eu", &eu_order).await;
    apply(&us, "us", &us_order).await;
    assert_ne!(
        ids(&read_all(&eu)),
        ids(&read_all(&us)),
        "the two regions should differ in arrival order"
    );

    // Every cursor a consumer in eu can commit (one batch per read) ...
    let mut reader = PartitionReader::new(eu.clone(), Cursor::default(), RecordFilter::default());
    let mut consumed: Vec<StoredRecord> = Vec::new();
    let mut cursors = vec![Cursor::default()];
    loop {
        let outcome = reader.read(1).unwrap();
        consumed.extend(outcome.records);
        cursors.push(reader.cursor().clone());
        if outcome.caught_up {
            break;
        }
    }
    // ... plus cursors inside batches.
    cursors.push([("eu", 3u64), ("ap", 1), ("us", 4)].into_iter().collect());
    cursors.push([("ap", 5u64)].into_iter().collect());
    for cursor in cursors {
        let rest_eu = read_all_from(&eu, cursor.clone(), None, 1 << 20);
        let rest_us = read_all_from(&us, cursor.clone(), None, 1 << 20);
        // The same records remain, each origin in the same order, starting at the same
        // next record per origin, and the final cursors agree.
        assert_eq!(
            by_origin(&rest_eu.0),
            by_origin(&rest_us.0),
            "after {cursor:?}"
        );
        assert_eq!(rest_eu.1, rest_us.1, "final cursor after {cursor:?}");
        for r in rest_eu.0.iter().chain(&rest_us.0) {
            assert!(
                r.offset >= cursor.next_offset(&r.origin),
                "{cursor:?} re-delivered {r:?}"
            );
        }
        // Nothing below the cursor was lost: consumed + rest = everything held.
        let below = read_all(&us)
            .into_iter()
            .filter(|r| r.offset < cursor.next_offset(&r.origin))
            .count();
        assert_eq!(below + rest_us.0.len(), read_all(&us).len());
    }
    // In particular, failing over mid-stream: the consumer resumes in us where it was in eu.
    let mid = {
        let mut r = PartitionReader::new(eu.clone(), Cursor::default(), RecordFilter::default());
        r.read(1).unwrap();
        r.read(1).unwrap();
        r.read(1).unwrap();
        r.cursor().clone()
    };
    assert_eq!(
        mid.next,
        [("eu", 2u64), ("ap", 3), ("us", 1)]
            .into_iter()
            .collect::<Cursor>()
            .next
    );
    let (rest, _) = read_all_from(&us, mid, None, 1 << 20);
    let next_us: Vec<_> = ids(&rest)
        .into_iter()
        .filter(|r| r.0 == "us")
        .take(1)
        .collect();
    assert_eq!(next_us, vec![row("us", 1, "us-1-0")]);
    assert_eq!(consumed.len(), read_all(&us).len());
}
