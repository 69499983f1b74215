//! The durable watermark moves without its waiters: a write whose request was cancelled
//! becomes visible, and start positions never point past what is durable.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use broker::Cursor;
use broker::batch::PendingBatch;
use broker::storage::{GapPolicy, PartitionReader};

use broker::storage::PartitionStore;
use broker::storage::RecordFilter;
use common::LOCAL;

/// Polls `future` once (it runs until its first wait) and drops it: a client that went
/// away while its produce waited for the fsync.
async fn poll_once_and_cancel<F: Future>(future: F) {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        assert!(
            future.as_mut().poll(cx).is_pending(),
            "the append finished without waiting for its fsync"
        );
        Poll::Ready(())
    })
    .await;
}

/// Waits (bounded) until a reader from the start sees `count` records.
async fn wait_readable(partition: &std::sync::Arc<broker::storage::Partition>, count: usize) {
    let mut reader = PartitionReader::new(
        partition.clone(),
        Cursor::default(),
        RecordFilter::default(),
    );
    let mut seen = 0;
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let outcome = reader.read(1 << 20).expect("read");
            seen += outcome.records.len();
            if seen >= count {
                return;
            }
            reader.wait_for_data().await.expect("wait for data");
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "after 10 s a reader saw {seen} of {count} written records: the durable watermark \
         did not move without the cancelled waiter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_local_append_becomes_visible_without_another_append() {
    let temp = tempfile::tempdir().unwrap();
    let (partition, _) = common::open(temp.path(), &common::small_config());
    // The sub-log exists, so the next append writes before it first waits.
    let first = [common::record("first", 1)];
    partition
        .append_local(PendingBatch::consecutive(&first))
        .await
        .unwrap();
    let records = [common::record("a", 1), common::record("b", 1)];
    poll_once_and_cancel(partition.append_local(PendingBatch::consecutive(&records))).await;
    wait_readable(&partition, 3).await;
    let ends = partition.sub_log(LOCAL).expect("local sub-log");
    assert_eq!((ends.end_offset, ends.durable_end), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_replicated_run_becomes_visible_without_another_append() {
    let temp = tempfile::tempdir().unwrap();
    let (partition, _) = common::open(temp.path(), &common::small_config());
    let batch = |offset| {
        let bytes = PendingBatch::consecutive(&[common::record("r", 1)]).seal(offset);
        broker::batch::Batch::from_bytes(bytes, 1 << 20).unwrap()
    };
    // The sub-log exists, so the next run writes before it first waits.
    partition
        .append_replicated_run("eu", vec![batch(0)], GapPolicy::Refuse)
        .await
        .unwrap();
    poll_once_and_cancel(partition.append_replicated_run("eu", vec![batch(1)], GapPolicy::Refuse))
        .await;
    wait_readable(&partition, 2).await;
}

/// The first batch of an origin creates its sub-log off the async threads; a request
/// cancelled while that runs must not leave the origin registered on disk but not in
/// memory, or the next batch registers it again and every later origin's number shifts
/// at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_first_batch_registers_its_origin_once() {
    let temp = tempfile::tempdir().unwrap();
    let config = common::small_config();
    let (partition, _) = common::open(temp.path(), &config);
    let batch = |body| {
        let bytes = PendingBatch::consecutive(&[common::record(body, 1)]).seal(0);
        broker::batch::Batch::from_bytes(bytes, 1 << 20).unwrap()
    };
    poll_once_and_cancel(partition.append_replicated_run(
        "eu",
        vec![batch("gone")],
        GapPolicy::Refuse,
    ))
    .await;
    partition
        .append_replicated_run("eu", vec![batch("kept")], GapPolicy::Refuse)
        .await
        .unwrap();
    partition
        .append_local(PendingBatch::consecutive(&[common::record("local", 1)]))
        .await
        .unwrap();
    partition.shut_down().await.unwrap();
    drop(partition);
    let origins = std::fs::read_to_string(temp.path().join("origins")).unwrap();
    assert_eq!(origins.lines().collect::<Vec<_>>(), ["eu", LOCAL]);
    let (reopened, _) = common::open(temp.path(), &config);
    assert_eq!(
        common::ids(&common::read_all(&reopened)),
        [
            ("eu".into(), 0, "kept".into()),
            (LOCAL.into(), 0, "local".into())
        ]
    );
}

/// Two appends in flight, on a runtime that has not yet run the fsync: `latest` and a
/// timestamp start stop at the durable end, not at what is only in the page cache.
#[tokio::test(flavor = "current_thread")]
async fn latest_and_timestamp_starts_use_the_durable_end() {
    let temp = tempfile::tempdir().unwrap();
    let (partition, _) = common::open(temp.path(), &common::small_config());
    partition
        .append_local(PendingBatch::consecutive(&[common::record("durable", 10)]))
        .await
        .unwrap();
    // Written to the page cache; its fsync has not run (this thread has not yielded).
    let mut pending =
        pin!(partition.append_local(PendingBatch::consecutive(&[common::record("late", 20)])));
    std::future::poll_fn(|cx| {
        assert!(pending.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    let info = partition.sub_log(LOCAL).unwrap();
    assert_eq!((info.end_offset, info.durable_end), (2, 1));
    assert_eq!(
        partition.latest_cursor().next,
        Cursor::from_iter([(LOCAL, 1)]).next,
        "latest pointed past the durable end"
    );
    assert_eq!(
        partition.cursor_for_time(15).unwrap().next,
        Cursor::from_iter([(LOCAL, 1)]).next,
        "a timestamp start pointed past the durable end"
    );
    assert_eq!(pending.await.unwrap(), (1, 1));
    assert_eq!(
        partition.latest_cursor().next,
        Cursor::from_iter([(LOCAL, 2)]).next
    );
}
