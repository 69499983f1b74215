//! Storage holds a bounded number of descriptors: a partition of 10 000 segments, and
//! 1 000 partitions each being written by two origins, are written, read, closed and
//! reopened under a limit of 1 024 open files. Each segment used to keep three open for
//! good; then each sub-log's active segment still kept three and each partition its arrival
//! index one. And when other files leave storage fewer descriptors than its bound, it
//! closes what it holds for nothing instead of failing a write.

mod common;

use std::sync::Arc;

use broker::batch::{Batch, PendingBatch};
use broker::storage::PartitionStore;
use broker::storage::{GapPolicy, Partition, StorageConfig, open_files};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

const SEGMENTS: u64 = 10_000;
const FILE_LIMIT: u64 = 1_024;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Lowers this process's limit (nextest runs each test in a process of its own, so it binds
/// that test alone), before storage opens its first file and sizes its bound from it.
fn limit_open_files() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, FILE_LIMIT, hard.max(FILE_LIMIT)).unwrap();
}

fn assert_bounded(when: &str) {
    assert_eq!(open_files::max_open(), FILE_LIMIT as usize / 4);
    assert!(
        open_files::open_now() <= open_files::max_open(),
        "{when}: {} storage files open",
        open_files::open_now()
    );
    assert!(
        open_descriptors() < FILE_LIMIT as usize / 2,
        "{when}: {} descriptors open",
        open_descriptors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_segments_run_and_restart_under_1024_open_files() {
    limit_open_files();
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
    let check_bound = |when: &str| assert_bounded(when);
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

/// Writes one record of each origin (local and "us") to every partition, in turn.
async fn write_two_origins(partitions: &[Arc<Partition>], round: u64) {
    for (i, partition) in partitions.iter().enumerate() {
        let body = format!("{i}.{round}");
        partition
            .append_local(PendingBatch::consecutive(&[common::record(&body, 1)]))
            .await
            .unwrap_or_else(|e| panic!("partition {i}, local write {round}: {e}"));
        let bytes = PendingBatch::consecutive(&[common::record(&body, 1)]).seal(round);
        partition
            .append_replicated_run(
                "us",
                vec![Batch::from_bytes(bytes, usize::MAX).unwrap()],
                GapPolicy::Refuse,
            )
            .await
            .unwrap_or_else(|e| panic!("partition {i}, replicated write {round}: {e}"));
    }
}

/// Every partition holds what [`write_two_origins`] wrote in `rounds`.
fn assert_holds_rounds(partitions: &[Arc<Partition>], rounds: u64) {
    for (i, partition) in partitions.iter().enumerate() {
        let mut rows = common::ids(&common::read_all(partition));
        rows.sort();
        let mut expected: Vec<_> = ["local", "us"]
            .into_iter()
            .flat_map(|origin| (0..rounds).map(move |round| (origin, round)))
            .map(|(origin, round)| (origin.to_string(), round, format!("{i}.{round}")))
            .collect();
        expected.sort();
        assert_eq!(rows, expected, "partition {i}");
    }
}

/// Every partition has two sub-logs being written (a local one and a replicated one), so
/// 1 000 partitions keep 2 000 active segments and 1 000 arrival indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_partitions_written_by_two_origins_run_and_restart_under_1024_open_files() {
    const PARTITIONS: usize = 1_000;
    limit_open_files();
    let temp = tempfile::tempdir().unwrap();
    let config = common::small_config();
    let dir = |i: usize| temp.path().join(i.to_string());
    let partitions: Vec<_> = (0..PARTITIONS)
        .map(|i| common::open(&dir(i), &config).0)
        .collect();
    write_two_origins(&partitions, 0).await;
    assert_bounded("after writing");
    for partition in &partitions {
        partition.shut_down().await.unwrap();
    }
    drop(partitions);

    let partitions: Vec<_> = (0..PARTITIONS)
        .map(|i| {
            let (partition, cut) = common::open(&dir(i), &config);
            assert!(cut.is_empty(), "partition {i}: {cut:?}");
            partition
        })
        .collect();
    assert_bounded("after reopening");
    write_two_origins(&partitions, 1).await;
    assert_bounded("after writing again");
    assert_holds_rounds(&partitions, 2);
    assert_bounded("after reading");
}

/// Other files (sockets, say) took every descriptor the storage's files did not hold: a
/// write that needs a file the cache closed makes room by closing the ones it holds for
/// nothing, where it used to fail for want of a descriptor and fence its partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_makes_room_when_other_files_took_the_free_descriptors() {
    const PARTITIONS: usize = 200;
    limit_open_files();
    let temp = tempfile::tempdir().unwrap();
    let config = common::small_config();
    let partitions: Vec<_> = (0..PARTITIONS)
        .map(|i| common::open(&temp.path().join(i.to_string()), &config).0)
        .collect();
    write_two_origins(&partitions, 0).await;
    // 600 files written, at most a quarter of the limit open: most writes below reopen.
    assert!(open_files::open_now() <= open_files::max_open());
    let taken: Vec<std::fs::File> =
        std::iter::from_fn(|| std::fs::File::open("/dev/null").ok()).collect();
    assert!(
        std::fs::File::open("/dev/null").is_err(),
        "descriptors left"
    );
    write_two_origins(&partitions, 1).await;
    drop(taken);
    assert_holds_rounds(&partitions, 2);
}
