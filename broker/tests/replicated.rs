//! Replicated appends keep origin offsets and are idempotent; gaps, overlaps, the region's
//! own origin and damaged bytes are refused without storing anything; reads merge the
//! sub-logs in arrival order (a vector cursor in every region: `vector_cursor.rs`).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use broker::batch::PendingBatch;
use broker::meta::{MemoryMetaStore, Retention};
use broker::storage::{GapPolicy, Partition, ReplicatedAppend};
use broker::{Broker, BrokerConfig, BrokerError, Cursor, Partitioning, Record, StartPosition};
use bytes::Bytes;

use broker::storage::PartitionStore;
use common::{
    LOCAL, TOPIC, batch, ids, open, read_all, read_all_from, record, records, row, small_config,
    tagged,
};

fn extent(partition: &Partition, origin: &str) -> Option<(u64, u64)> {
    partition
        .sub_logs()
        .into_iter()
        .find(|s| s.origin == origin)
        .map(|s| (s.start_offset, s.end_offset))
}

#[tokio::test]
async fn replicated_batches_keep_origin_offsets() {
    let temp = tempfile::tempdir().unwrap();
    let (p, _) = open(temp.path(), &small_config());
    let first = records("a", 3);
    let second = records("b", 2);
    assert_eq!(
        p.append_replicated("r1", batch(&first, 0), GapPolicy::Refuse)
            .await
            .unwrap(),
        ReplicatedAppend::Appended { base: 0, last: 2 }
    );
    assert_eq!(
        p.append_replicated("r1", batch(&second, 3), GapPolicy::Refuse)
            .await
            .unwrap(),
        ReplicatedAppend::Appended { base: 3, last: 4 }
    );
    // A sub-log replicated from "latest": its first batch starts far past 0.
    assert_eq!(
        p.append_replicated("r2", batch(&records("c", 2), 1_000), GapPolicy::Allow)
            .await
            .unwrap(),
        ReplicatedAppend::Appended {
            base: 1_000,
            last: 1_001
        }
    );
    // Local records get the local origin's own offsets, independent of the others.
    assert_eq!(
        p.append_local(PendingBatch::consecutive(&records("l", 2)))
            .await
            .unwrap(),
        (0, 1)
    );

    assert_eq!(extent(&p, "r1"), Some((0, 5)));
    assert_eq!(extent(&p, "r2"), Some((1_000, 1_002)));
    assert_eq!(extent(&p, LOCAL), Some((0, 2)));
    let all = read_all(&p);
    assert_eq!(
        ids(&all),
        vec![
            row("r1", 0, "a-0"),
            row("r1", 1, "a-1"),
            row("r1", 2, "a-2"),
            row("r1", 3, "b-0"),
            row("r1", 4, "b-1"),
            row("r2", 1_000, "c-0"),
            row("r2", 1_001, "c-1"),
            row(LOCAL, 0, "l-0"),
            row(LOCAL, 1, "l-1"),
        ]
    );
    // Records come back exactly as they were sent, key, properties and timestamp included.
    assert_eq!(all[0].record, first[0]);
    assert_eq!(all[4].record, second[1]);
}

#[tokio::test]
async fn same_batch_twice_is_already_held() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config();
    let (p, _) = open(temp.path(), &config);
    let a = batch(&records("a", 3), 0);
    let b = batch(&records("b", 2), 3);
    p.append_replicated("r1", a.clone(), GapPolicy::Refuse)
        .await
        .unwrap();
    p.append_replicated("r1", b.clone(), GapPolicy::Refuse)
        .await
        .unwrap();
    let size = |p: &Partition| p.sub_logs().iter().map(|s| s.bytes).sum::<u64>();
    let bytes_before = size(&p);
    for bytes in [&a, &b, &a] {
        for policy in [GapPolicy::Refuse, GapPolicy::Allow] {
            assert_eq!(
                p.append_replicated("r1", bytes.clone(), policy)
                    .await
                    .unwrap(),
                ReplicatedAppend::AlreadyHeld
            );
        }
    }
    assert_eq!(size(&p), bytes_before, "a duplicate wrote bytes");
    assert_eq!(extent(&p, "r1"), Some((0, 5)));
    let offsets: Vec<u64> = read_all(&p).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);

    // Still a duplicate after a restart.
    p.shut_down().await.unwrap();
    drop(p);
    let (p, cut) = open(temp.path(), &config);
    assert!(cut.is_empty());
    assert_eq!(
        p.append_replicated("r1", a, GapPolicy::Refuse)
            .await
            .unwrap(),
        ReplicatedAppend::AlreadyHeld
    );
    let offsets: Vec<u64> = read_all(&p).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn gap_is_refused_unless_allowed() {
    let temp = tempfile::tempdir().unwrap();
    let (p, _) = open(temp.path(), &small_config());
    p.append_replicated("r1", batch(&records("a", 2), 0), GapPolicy::Refuse)
        .await
        .unwrap();
    let past = batch(&records("b", 2), 5);
    match p
        .append_replicated("r1", past.clone(), GapPolicy::Refuse)
        .await
    {
        Err(BrokerError::OffsetGap {
            topic,
            partition,
            origin,
            expected,
            base,
        }) => {
            assert_eq!(
                (topic.as_str(), partition, origin.as_str()),
                (TOPIC, 0, "r1")
            );
            assert_eq!((expected, base), (2, 5));
        }
        other => panic!("expected an offset gap, got {other:?}"),
    }
    assert_eq!(
        extent(&p, "r1"),
        Some((0, 2)),
        "a refused gap stored something"
    );
    assert_eq!(read_all(&p).len(), 2);

    assert_eq!(
        p.append_replicated("r1", past, GapPolicy::Allow)
            .await
            .unwrap(),
        ReplicatedAppend::Appended { base: 5, last: 6 }
    );
    // A filtered batch: slots 1 and 2 were removed by a task, the batch still covers 7..=10.
    let kept = [record("c-0", 1), record("c-3", 2)];
    let filtered = PendingBatch::covering(3, [(0, &kept[0]), (3, &kept[1])]).seal(7);
    assert_eq!(
        p.append_replicated("r1", filtered, GapPolicy::Refuse)
            .await
            .unwrap(),
        ReplicatedAppend::Appended { base: 7, last: 10 }
    );
    assert_eq!(extent(&p, "r1"), Some((0, 11)));
    let offsets: Vec<u64> = read_all(&p).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![0, 1, 5, 6, 7, 10]);
    // The next batch must start right after the covered range.
    assert!(matches!(
        p.append_replicated("r1", batch(&records("d", 1), 12), GapPolicy::Refuse)
            .await,
        Err(BrokerError::OffsetGap {
            expected: 11,
            base: 12,
            ..
        })
    ));
    // A batch lying inside the gap (or the filtered slots) is not re-stored.
    assert_eq!(
        p.append_replicated("r1", batch(&records("e", 1), 3), GapPolicy::Allow)
            .await
            .unwrap(),
        ReplicatedAppend::AlreadyHeld
    );
    assert_eq!(read_all(&p).len(), 6);
}

#[tokio::test]
async fn overlapping_batch_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (p, _) = open(temp.path(), &small_config());
    p.append_replicated("r1", batch(&records("a", 3), 0), GapPolicy::Refuse)
        .await
        .unwrap();
    for policy in [GapPolicy::Refuse, GapPolicy::Allow] {
        match p
            .append_replicated("r1", batch(&records("b", 4), 1), policy)
            .await
        {
            Err(BrokerError::OverlappingBatch {
                origin,
                expected,
                base,
                last,
                ..
            }) => {
                assert_eq!(origin, "r1");
                assert_eq!((expected, base, last), (3, 1, 4));
            }
            other => panic!("expected an overlap, got {other:?}"),
        }
    }
    assert_eq!(extent(&p, "r1"), Some((0, 3)));
    assert_eq!(
        ids(&read_all(&p)),
        vec![
            row("r1", 0, "a-0"),
            row("r1", 1, "a-1"),
            row("r1", 2, "a-2")
        ]
    );
}

#[tokio::test]
async fn own_origin_and_bad_names_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (p, _) = open(temp.path(), &small_config());
    match p
        .append_replicated(LOCAL, batch(&records("a", 1), 0), GapPolicy::Allow)
        .await
    {
        Err(BrokerError::OwnOrigin { origin }) => assert_eq!(origin, LOCAL),
        other => panic!("expected own-origin, got {other:?}"),
    }
    for bad in ["", "../r1", "a/b", ".."] {
        assert!(
            matches!(
                p.append_replicated(bad, batch(&records("a", 1), 0), GapPolicy::Allow)
                    .await,
                Err(BrokerError::InvalidName { .. })
            ),
            "origin {bad:?} accepted"
        );
    }
    assert!(p.sub_logs().is_empty(), "a refused batch created a sub-log");
    assert!(read_all(&p).is_empty());
    // The local origin's offsets are untouched.
    assert_eq!(
        p.append_local(PendingBatch::consecutive(&records("l", 1)))
            .await
            .unwrap(),
        (0, 0)
    );
}

#[tokio::test]
async fn damaged_batch_is_refused_and_nothing_stored() {
    let temp = tempfile::tempdir().unwrap();
    let (p, _) = open(temp.path(), &small_config());
    let good = batch(&[tagged("payload", "eu", 5), record("second", 6)], 0);
    // Every byte: length, CRC, header fields, record framing, payload.
    for i in 0..good.len() {
        let mut bad = good.to_vec();
        bad[i] ^= 0x20;
        match p
            .append_replicated("r1", Bytes::from(bad), GapPolicy::Allow)
            .await
        {
            Err(BrokerError::MalformedBatch(_)) => {}
            other => panic!("flip at byte {i}: {other:?}"),
        }
    }
    // Cut short, or with trailing bytes.
    for bad in [good.slice(..good.len() - 1), good.slice(..10), {
        let mut v = good.to_vec();
        v.push(0);
        Bytes::from(v)
    }] {
        assert!(matches!(
            p.append_replicated("r1", bad, GapPolicy::Allow).await,
            Err(BrokerError::MalformedBatch(_))
        ));
    }
    assert!(p.sub_logs().is_empty(), "a refused batch created a sub-log");
    assert!(!temp.path().join("logs").join("r1").exists());
    assert!(read_all(&p).is_empty());
    // The intact batch is then accepted at the offsets it names.
    assert_eq!(
        p.append_replicated("r1", good, GapPolicy::Refuse)
            .await
            .unwrap(),
        ReplicatedAppend::Appended { base: 0, last: 1 }
    );
    assert_eq!(read_all(&p).len(), 2);
}

#[tokio::test]
async fn merged_read_follows_arrival_order() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config();
    let (p, _) = open(temp.path(), &config);
    let mut expected = Vec::new();
    let mut next: BTreeMap<&str, u64> = BTreeMap::new();
    // Enough batches to roll segments (4 KiB) several times in every sub-log.
    for round in 0..60u64 {
        for origin in match round % 3 {
            0 => [LOCAL, "r1", "r2"],
            1 => ["r2", LOCAL, "r1"],
            _ => ["r1", "r2", LOCAL],
        } {
            let n = 1 + (round % 3) as usize;
            let recs = records(&format!("{origin}-{round}"), n);
            let base = *next.get(origin).unwrap_or(&0);
            if origin == LOCAL {
                let (first, _) = p
                    .append_local(PendingBatch::consecutive(&recs))
                    .await
                    .unwrap();
                assert_eq!(first, base);
            } else {
                p.append_replicated(origin, batch(&recs, base), GapPolicy::Refuse)
                    .await
                    .unwrap();
            }
            for (i, r) in recs.iter().enumerate() {
                expected.push(row(
                    origin,
                    base + i as u64,
                    std::str::from_utf8(&r.body).unwrap(),
                ));
            }
            next.insert(origin, base + n as u64);
        }
    }
    assert!(
        p.sub_logs().iter().all(|s| s.segments > 1),
        "no segment rolled"
    );
    assert_eq!(ids(&read_all(&p)), expected);
    // Paged reads (one batch per call) give the same stream.
    let (paged, cursor) = read_all_from(&p, Cursor::default(), None, 1);
    assert_eq!(ids(&paged), expected);
    for (origin, end) in &next {
        assert_eq!(cursor.next_offset(origin), *end);
    }
    // The order survives a restart.
    p.shut_down().await.unwrap();
    drop(p);
    let (p, _) = open(temp.path(), &config);
    assert_eq!(ids(&read_all(&p)), expected);
}

#[tokio::test]
async fn tag_filter_skips_records_but_advances_cursor() {
    let temp = tempfile::tempdir().unwrap();
    let (p, _) = open(temp.path(), &small_config());
    let local = [
        tagged("l0", "eu", 1),
        tagged("l1", "us", 2),
        record("l2", 3),
    ];
    p.append_local(PendingBatch::consecutive(&local))
        .await
        .unwrap();
    let remote = [tagged("r0", "us", 4), tagged("r1", "eu", 5)];
    p.append_replicated("r1", batch(&remote, 0), GapPolicy::Refuse)
        .await
        .unwrap();
    let only_us = [tagged("r2", "us", 6)];
    p.append_replicated("r1", batch(&only_us, 2), GapPolicy::Refuse)
        .await
        .unwrap();

    let (eu, cursor) = read_all_from(&p, Cursor::default(), Some("eu"), 1 << 20);
    assert_eq!(ids(&eu), vec![row(LOCAL, 0, "l0"), row("r1", 1, "r1")]);
    // The cursor moved past the skipped records too, including a batch with no match.
    assert_eq!(
        cursor.next,
        [(LOCAL, 3u64), ("r1", 3)]
            .into_iter()
            .collect::<Cursor>()
            .next
    );
    assert!(
        read_all_from(&p, cursor.clone(), None, 1 << 20)
            .0
            .is_empty()
    );
    // A tag nobody uses: nothing delivered, everything consumed.
    let (none, cursor_none) = read_all_from(&p, Cursor::default(), Some("ap"), 1);
    assert!(none.is_empty());
    assert_eq!(cursor_none, cursor);

    // New matching records are delivered from that cursor.
    p.append_local(PendingBatch::consecutive(&[
        tagged("l3", "eu", 7),
        tagged("l4", "us", 8),
    ]))
    .await
    .unwrap();
    let (more, _) = read_all_from(&p, cursor, Some("eu"), 1 << 20);
    assert_eq!(ids(&more), vec![row(LOCAL, 3, "l3")]);
}

fn broker_config(dir: &std::path::Path, region: &str) -> BrokerConfig {
    BrokerConfig {
        region: region.to_string(),
        data_dir: dir.to_path_buf(),
        storage: (*small_config()).clone(),
        default_retention: Retention::default(),
    }
}

#[tokio::test]
async fn start_positions_timestamp_and_latest() {
    let temp = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        broker_config(temp.path(), "eu"),
        Arc::new(MemoryMetaStore::default()),
    )
    .unwrap();
    broker.create_topic("events", 1, None).unwrap();
    // Local records at 10_000, 10_010, ...; remote ones at 10_005, 10_015, ... Enough of
    // them that the time index of several segments is used.
    let mut all = Vec::new();
    for i in 0..120i64 {
        let local = record(&format!("eu-{i}"), 10_000 + 10 * i);
        let ids = broker
            .produce("events", vec![local.clone()], Partitioning::Explicit(0))
            .await
            .unwrap();
        assert_eq!((ids[0].origin.as_str(), ids[0].offset), ("eu", i as u64));
        all.push(("eu", i as u64, local.timestamp_ms));
        let remote = record(&format!("us-{i}"), 10_005 + 10 * i);
        broker
            .append_replicated(
                "events",
                0,
                "us",
                batch(std::slice::from_ref(&remote), i as u64),
                GapPolicy::Refuse,
            )
            .await
            .unwrap();
        all.push(("us", i as u64, remote.timestamp_ms));
    }
    let partition = broker.partition("events", 0).unwrap();
    assert!(
        partition.sub_logs().iter().all(|s| s.segments > 1),
        "no segment rolled"
    );

    for at in [
        0, 10_000, 10_001, 10_005, 10_006, 10_500, 10_995, 11_185, 11_190, 11_196, 99_999,
    ] {
        let cursor = broker
            .start_cursor(partition.as_ref(), StartPosition::Timestamp(at))
            .unwrap();
        for origin in ["eu", "us"] {
            let first = all
                .iter()
                .filter(|(o, _, ts)| *o == origin && *ts >= at)
                .map(|(_, offset, _)| *offset)
                .next()
                .unwrap_or(120);
            assert_eq!(cursor.next_offset(origin), first, "{origin} at {at}");
        }
        let (got, _) = read_all_from(&partition, cursor, None, 1 << 20);
        let want: Vec<(String, u64)> = all
            .iter()
            .filter(|(_, _, ts)| *ts >= at)
            .map(|(o, offset, _)| (o.to_string(), *offset))
            .collect();
        let got: Vec<(String, u64)> = got.into_iter().map(|r| (r.origin, r.offset)).collect();
        assert_eq!(got, want, "read from timestamp {at}");
    }

    let latest = broker
        .start_cursor(partition.as_ref(), StartPosition::Latest)
        .unwrap();
    assert_eq!(
        latest.next,
        [("eu", 120u64), ("us", 120)]
            .into_iter()
            .collect::<Cursor>()
            .next
    );
    assert!(
        read_all_from(&partition, latest.clone(), None, 1 << 20)
            .0
            .is_empty()
    );
    broker
        .produce(
            "events",
            vec![record("eu-new", 20_000)],
            Partitioning::Explicit(0),
        )
        .await
        .unwrap();
    let (fresh, _) = read_all_from(&partition, latest, None, 1 << 20);
    assert_eq!(ids(&fresh), vec![row("eu", 120, "eu-new")]);
    assert_eq!(
        broker
            .start_cursor(partition.as_ref(), StartPosition::Earliest)
            .unwrap(),
        Cursor::default()
    );
    broker.shut_down().await.unwrap();
}

/// `max_batch_bytes` limits what is produced in this region, not what an origin with a
/// larger limit wrote: such a batch replicates here whole.
#[tokio::test]
async fn a_replicated_batch_larger_than_the_local_produce_limit_is_stored() {
    let temp = tempfile::tempdir().unwrap();
    let config = Arc::new(broker::storage::StorageConfig {
        max_batch_bytes: 1024,
        max_record_bytes: 1024,
        ..broker::storage::StorageConfig::default()
    });
    let (p, _) = open(temp.path(), &config);
    let big: Vec<Record> = (0..8)
        .map(|i| Record {
            body: Bytes::from(vec![b'x'; 700]),
            ..record(&format!("big-{i}"), 1_000)
        })
        .collect();
    let bytes = batch(&big, 0);
    assert!(bytes.len() > 4 * config.max_batch_bytes);
    assert_eq!(
        p.append_replicated("r1", bytes.clone(), GapPolicy::Refuse)
            .await
            .expect("a large replicated batch is refused"),
        ReplicatedAppend::Appended { base: 0, last: 7 }
    );
    let run = p
        .append_replicated_run(
            "r2",
            vec![broker::batch::Batch::from_bytes(bytes, usize::MAX).unwrap()],
            GapPolicy::Refuse,
        )
        .await
        .expect("a large replicated run is refused");
    assert_eq!(run.appended, 1);
    assert_eq!(read_all(&p).len(), 16);
}
