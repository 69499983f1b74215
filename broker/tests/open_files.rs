//! Sealed segments do not hold descriptors: a partition of 10 000 segments is written,
//! read, closed and reopened under a limit of 1 024 open files (each segment used to keep
//! three open for good).

mod common;

use std::sync::Arc;

use broker::batch::{Batch, PendingBatch};
use broker::storage::{GapPolicy, StorageConfig, open_files};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

const SEGMENTS: u64 = 10_000;
const FILE_LIMIT: u64 = 1_024;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// nextest runs each test in a process of its own, so the limit binds this test alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_segments_run_and_restart_under_1024_open_files() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, FILE_LIMIT, hard.max(FILE_LIMIT)).unwrap();
    let temp = tempfile::tempdir().unwrap();
    // Every batch fills a segment.
    let config = Arc::new(StorageConfig {
        segment_bytes: 64,
        ..StorageConfig::default()
    });
    let (partition, _) = common::open(temp.path(), &config);
    for run in 0..SEGMENTS / 500 {
        let batches = (run * 500..(run + 1) * 500)
            .map(|offset| {
                let bytes = PendingBatch::consecutive(&[common::record(&offset.to_string(), 1)])
                    .seal(offset);
                Batch::from_bytes(bytes, usize::MAX).unwrap()
            })
            .collect();
        partition
            .append_replicated_run("us", batches, GapPolicy::Refuse)
            .await
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
    }
    assert_eq!(partition.sub_log("us").unwrap().segments as u64, SEGMENTS);
    let check_bound = |when: &str| {
        assert!(
            open_files::open_sealed() <= open_files::MAX_OPEN_SEALED,
            "{when}: {} sealed segment files open",
            open_files::open_sealed()
        );
        assert!(
            open_descriptors() < FILE_LIMIT as usize / 2,
            "{when}: {} descriptors open",
            open_descriptors()
        );
    };
    check_bound("after writing");
    let read = common::read_all(&partition);
    assert_eq!(read.len() as u64, SEGMENTS);
    check_bound("after reading");
    partition.shut_down().await.unwrap();
    drop(partition);

    let (partition, cut) = common::open(temp.path(), &config);
    assert!(cut.is_empty(), "{cut:?}");
    check_bound("after reopening");
    let read = common::read_all(&partition);
    assert_eq!(
        common::ids(&read).last().unwrap(),
        &("us".to_string(), SEGMENTS - 1, (SEGMENTS - 1).to_string())
    );
    // And it still takes writes.
    partition
        .append_local(PendingBatch::consecutive(&[common::record("after", 1)]))
        .await
        .unwrap();
    check_bound("after writing again");
}
