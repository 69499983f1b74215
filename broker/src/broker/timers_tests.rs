//! Tests of `timers.rs`: firing in time order, recall, exactly once across a crash,
//! transactions and their orphan checks.

use std::sync::Arc;

use super::*;
use crate::meta::{MemoryMetaStore, MetaStore, Retention, SledMetaStore};
use crate::storage::StorageConfig;
use crate::{BrokerConfig, Cursor};

fn open(dir: &std::path::Path, meta: Arc<dyn MetaStore>) -> Broker {
    let config = BrokerConfig {
        region: "eu".into(),
        data_dir: dir.to_path_buf(),
        storage: StorageConfig::default(),
        default_retention: Retention::default(),
    };
    Broker::open(config, meta).unwrap()
}

fn held(body: &str, due_ms: u64) -> Scheduled {
    Scheduled {
        partition: 0,
        message_id: body.into(),
        due_ms,
        record: Record {
            body: body.as_bytes().to_vec().into(),
            ..Default::default()
        },
    }
}

fn bodies(broker: &Broker) -> Vec<String> {
    let p = broker.partition("later", 0).unwrap();
    let mut reader = p.reader(Cursor::default(), RecordFilter::default());
    let read = reader.read(1 << 20).unwrap();
    read.records
        .iter()
        .map(|r| String::from_utf8(r.record.body.to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn due_messages_fire_in_time_order_and_a_recalled_one_never_does() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), Arc::new(MemoryMetaStore::default()));
    broker.create_topic("later", 1, None).unwrap();
    let handles = broker
        .schedule(
            "later",
            vec![
                held("b", 2_000),
                held("a", 1_000),
                held("c", 3_000),
                held("x", 1_500),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        broker
            .recall("later", &handles[3])
            .await
            .unwrap()
            .as_deref(),
        Some("x")
    );
    assert_eq!(
        broker.recall("later", &handles[3]).await.unwrap(),
        None,
        "already recalled"
    );
    assert_eq!(
        broker.recall("other", &handles[0]).await.unwrap(),
        None,
        "another topic's"
    );
    assert_eq!(broker.fire_due(999).await.unwrap(), 0);
    assert_eq!(broker.fire_due(2_000).await.unwrap(), 2);
    assert_eq!(bodies(&broker), ["a", "b"]);
    assert_eq!(
        broker.recall("later", &handles[0]).await.unwrap(),
        None,
        "fired: not held"
    );
    assert_eq!(broker.next_due().unwrap(), Some(3_000));
    assert_eq!(broker.fire_due(10_000).await.unwrap(), 1);
    assert_eq!(bodies(&broker), ["a", "b", "c"]);
    assert_eq!(broker.next_due().unwrap(), None);
}

#[tokio::test]
async fn held_messages_survive_a_restart_and_a_crash_while_firing_does_not_fire_twice() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    let data = dir.path().join("data");
    {
        let broker = open(&data, Arc::new(SledMetaStore::open(&meta).unwrap()));
        broker.create_topic("later", 1, None).unwrap();
        broker
            .schedule("later", vec![held("a", 1_000), held("b", 2_000)])
            .await
            .unwrap();
        broker.shut_down().await.unwrap();
    }
    let broker = open(&data, Arc::new(SledMetaStore::open(&meta).unwrap()));
    // A crash after "a" was marked and appended, before it was removed.
    let (key, bytes) = broker.meta.timers_from([0; 16], 1).unwrap().remove(0);
    let mut entry = Entry::decode(&bytes).unwrap();
    entry.header.firing_from = Some(0);
    broker
        .meta
        .write_timers(&[(key, Some(entry.encode()))])
        .unwrap();
    let mut appended = entry.record.clone();
    appended
        .properties
        .insert(TIMER_PROPERTY.into(), timer::key_text(&key));
    broker
        .produce("later", vec![appended], Partitioning::Explicit(0))
        .await
        .unwrap();
    assert_eq!(broker.fire_due(5_000).await.unwrap(), 1, "only b");
    assert_eq!(bodies(&broker), ["a", "b"]);
    assert_eq!(broker.next_due().unwrap(), None);
}

#[tokio::test]
async fn half_messages_wait_for_their_transaction_and_orphans_are_checked_then_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), Arc::new(MemoryMetaStore::default()));
    broker.create_topic("later", 1, None).unwrap();
    let checks = Arc::new(std::sync::Mutex::new(Vec::<OrphanCheck>::new()));
    let seen = checks.clone();
    broker.set_orphan_checker(Arc::new(move |c| seen.lock().unwrap().push(c)));
    let ids = broker
        .hold_half(
            "later",
            vec![held("commit", 0), held("rollback", 0), held("orphan", 0)],
        )
        .unwrap();
    let now = unsigned_now();
    assert_eq!(
        broker.fire_due(now).await.unwrap(),
        0,
        "invisible until committed"
    );
    assert_eq!(
        broker
            .end_transaction("later", &ids[0], true)
            .unwrap()
            .as_deref(),
        Some("commit")
    );
    assert_eq!(
        broker.end_transaction("later", &ids[0], true).unwrap(),
        None,
        "ended"
    );
    assert!(
        broker
            .end_transaction("later", &ids[1], false)
            .unwrap()
            .is_some()
    );
    assert_eq!(broker.fire_due(unsigned_now()).await.unwrap(), 1);
    assert_eq!(bodies(&broker), ["commit"]);
    assert!(checks.lock().unwrap().is_empty());

    // The orphan is checked at each interval, under the same transaction id.
    let mut at = now;
    for check in 1..=timer::MAX_CHECKS {
        at += timer::CHECK_INTERVAL_MS;
        assert_eq!(broker.fire_due(at).await.unwrap(), 0);
        let made = checks.lock().unwrap();
        assert_eq!(made.len(), check as usize);
        assert_eq!(made.last().unwrap().transaction_id, ids[2]);
        assert_eq!(made.last().unwrap().message_id, "orphan");
    }
    at += timer::CHECK_INTERVAL_MS;
    broker.fire_due(at).await.unwrap();
    assert_eq!(checks.lock().unwrap().len(), timer::MAX_CHECKS as usize);
    let m = broker.timer_metrics();
    assert_eq!(
        (
            m.fired.get(),
            m.orphan_checks.get(),
            m.orphans_rolled_back.get()
        ),
        (1, u64::from(timer::MAX_CHECKS), 1)
    );
    assert_eq!(
        broker.end_transaction("later", &ids[2], true).unwrap(),
        None,
        "rolled back after the last check"
    );
    assert_eq!(bodies(&broker), ["commit"]);
}

#[tokio::test]
async fn a_checked_orphan_committed_by_its_producer_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), Arc::new(MemoryMetaStore::default()));
    broker.create_topic("later", 1, None).unwrap();
    let ids = broker.hold_half("later", vec![held("late", 0)]).unwrap();
    let at = unsigned_now() + timer::CHECK_INTERVAL_MS;
    broker.fire_due(at).await.unwrap();
    assert!(
        broker
            .end_transaction("later", &ids[0], true)
            .unwrap()
            .is_some()
    );
    assert_eq!(broker.fire_due(unsigned_now()).await.unwrap(), 1);
    assert_eq!(bodies(&broker), ["late"]);
    assert_eq!(
        broker.recall("later", &ids[0]).await.unwrap(),
        None,
        "not a recall handle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_loop_fires_each_message_within_its_second() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Arc::new(open(dir.path(), Arc::new(MemoryMetaStore::default())));
    broker.create_topic("later", 1, None).unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn(broker.clone().run_timers(stop.clone()));
    // Due one every millisecond: some come due while a round runs.
    let first = unsigned_now() + 100;
    let held = (0..300).map(|i| held(&i.to_string(), first + i)).collect();
    broker.schedule("later", held).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let records = loop {
        let p = broker.partition("later", 0).unwrap();
        let read = p
            .reader(Cursor::default(), RecordFilter::default())
            .read(1 << 20)
            .unwrap();
        if read.records.len() == 300 {
            break read.records;
        }
        assert!(std::time::Instant::now() < deadline, "all fired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for r in records {
        let index: u64 = std::str::from_utf8(&r.record.body)
            .unwrap()
            .parse()
            .unwrap();
        let late = r.record.timestamp_ms - (first + index) as i64;
        assert!(
            (0..500).contains(&late),
            "message {index} fired {late} ms after due"
        );
    }
    stop.cancel();
    running.await.unwrap();
}
