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
    let mut reader = PartitionReader::new(partition.clone(), Cursor::default(), None);
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
    let records = [common::record("a", 1), common::record("b", 1)];
    poll_once_and_cancel(partition.append_local(PendingBatch::consecutive(&records))).await;
    wait_readable(&partition, 2).await;
    let ends = partition.sub_log(LOCAL).expect("local sub-log");
    assert_eq!((ends.end_offset, ends.durable_end), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_replicated_run_becomes_visible_without_another_append() {
    let temp = tempfile::tempdir().unwrap();
    let (partition, _) = common::open(temp.path(), &common::small_config());
    let bytes = PendingBatch::consecutive(&[common::record("r", 1)]).seal(0);
    let batch = broker::batch::Batch::from_bytes(bytes, 1 << 20).unwrap();
    poll_once_and_cancel(partition.append_replicated_run("eu", vec![batch], GapPolicy::Refuse))
        .await;
    wait_readable(&partition, 1).await;
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
