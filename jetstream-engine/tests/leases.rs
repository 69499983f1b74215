//! Leases on a region's duties, on a real cluster of three nats-server processes: of the
//! nodes that want a duty exactly one holds it, and releases it when it stops so that a
//! node takes it at its first attempt (a holder that dies is taken over at the lease's
//! expiry, `router/tests/jetstream_takeover.rs`), and delayed messages scheduled through two brokers of one
//! region, each firing only while it holds the `timers` lease, are delivered once each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::Scheduled;
use broker::cursor::Cursor;
use broker::meta::Retention;
use broker::record::Record;
use broker::storage::{PartitionStore, RecordFilter, StorageConfig};
use broker::{Broker, BrokerConfig};
use bytes::Bytes;
use jetstream_engine::lease::run_while_held;
use jetstream_engine::local_cluster::LocalCluster;
use jetstream_engine::{Engine, JetStreamMetaStore, JetStreamSettings, JetStreamStorage};
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(2);

fn meta(cluster: &LocalCluster) -> (Arc<Engine>, Arc<JetStreamMetaStore>) {
    let engine = Engine::connect(JetStreamSettings::new(cluster.all_urls())).unwrap();
    let meta = Arc::new(JetStreamMetaStore::open(engine.clone(), "eu").unwrap());
    (engine, meta)
}

async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_holds_a_duty_and_releases_it_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let stops: Vec<CancellationToken> = (0..3).map(|_| CancellationToken::new()).collect();
    // Each node its own connection (kept for the whole test: the lease loop runs on it).
    let nodes: Vec<_> = stops.iter().map(|_| meta(&cluster)).collect();
    let held: Vec<_> = nodes
        .iter()
        .zip(&stops)
        .enumerate()
        .map(|(i, ((_, meta), stop))| {
            meta.hold_lease("timers", &format!("n{i}"), LEASE, stop.clone())
        })
        .collect();
    let holders = || held.iter().filter(|h| *h.borrow()).count();
    until("a holder", Duration::from_secs(10), || holders() == 1).await;
    // It stays one across several renewals.
    for _ in 0..20 {
        assert!(holders() <= 1, "two nodes hold one duty");
        tokio::time::sleep(LEASE / 10).await;
    }
    let first = held.iter().position(|h| *h.borrow()).unwrap();
    // Every node stops, the holder last: it releases its lease once stopped (its lease
    // loop ends then, closing its channel).
    for (i, stop) in stops.iter().enumerate().filter(|(i, _)| *i != first) {
        stop.cancel();
        let mut ended = held[i].clone();
        while ended.changed().await.is_ok() {}
    }
    stops[first].cancel();
    let mut ended = held[first].clone();
    while ended.changed().await.is_ok() {}
    // A node starting now takes the duty at its first attempt: released, the lease is not
    // waited out (its time would run at least two thirds of a lease past the stop).
    let (_engine, latecomer) = meta(&cluster);
    let late = latecomer.hold_lease("timers", "late", LEASE, CancellationToken::new());
    let taken = until("a new node to take the released duty", 3 * LEASE, || {
        *late.borrow()
    })
    .await;
    eprintln!("a released duty was taken {taken:?} after its holder stopped (lease {LEASE:?})");
    assert!(
        taken < LEASE / 4,
        "taken {taken:?} after a stop: the lease was not released"
    );
}

fn broker_node(cluster: &LocalCluster) -> (Arc<Broker>, Arc<JetStreamMetaStore>) {
    let (engine, meta) = meta(cluster);
    let config = BrokerConfig {
        region: "eu".to_string(),
        data_dir: std::path::PathBuf::from("/nonexistent/georouter"),
        storage: StorageConfig::default(),
        default_retention: Retention::default(),
    };
    let storage = Arc::new(JetStreamStorage::new(engine, "eu"));
    let broker = Broker::open_on(config, meta.clone(), storage).unwrap();
    (Arc::new(broker), meta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_of_a_region_with_two_nodes_fire_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let stop = CancellationToken::new();
    let nodes: Vec<_> = (0..2).map(|_| broker_node(&cluster)).collect();
    nodes[0].0.create_topic("later", 1, None).unwrap();
    let mut loops = Vec::new();
    for (i, (broker, meta)) in nodes.iter().enumerate() {
        let held = meta.hold_lease("timers", &format!("n{i}"), LEASE, stop.clone());
        let b = broker.clone();
        loops.push(tokio::spawn(run_while_held(held, stop.clone(), move |s| {
            b.clone().run_timers(s)
        })));
    }
    let due = u64::try_from(broker::record::now_ms()).unwrap() + 300;
    const EACH: usize = 20;
    for (n, (broker, _)) in nodes.iter().enumerate() {
        let held = (0..EACH)
            .map(|i| Scheduled {
                partition: 0,
                message_id: format!("m{n}-{i}"),
                due_ms: due + i as u64,
                record: Record {
                    body: Bytes::from(format!("n{n}-{i}")),
                    timestamp_ms: 1_700_000_000_000,
                    ..Record::default()
                },
            })
            .collect();
        broker.schedule("later", held).await.unwrap();
    }
    let partition = nodes[1].0.partition("later", 0).unwrap();
    let read = |p: &Arc<dyn PartitionStore>| {
        let mut reader = p.clone().reader(Cursor::default(), RecordFilter::default());
        let mut bodies = Vec::new();
        loop {
            let outcome = reader.read(1 << 20).unwrap();
            bodies.extend(outcome.records.into_iter().map(|r| r.record.body));
            if outcome.caught_up {
                return bodies;
            }
        }
    };
    until(
        "every delayed message to fire",
        Duration::from_secs(30),
        || read(&partition).len() >= 2 * EACH,
    )
    .await;
    // Past the last due time and a lease time more: nothing fires twice.
    tokio::time::sleep(LEASE).await;
    let mut bodies = read(&partition);
    bodies.sort();
    let before = bodies.len();
    bodies.dedup();
    assert_eq!(before, bodies.len(), "a delayed message fired twice");
    assert_eq!(bodies.len(), 2 * EACH);
    stop.cancel();
    for l in loops {
        l.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_do_its_duty_steps_down_and_another_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let (_a_engine, a) = meta(&cluster);
    let (held_a, step) = a.hold_lease_yielding("replication", "a", LEASE, CancellationToken::new());
    until("a to hold the duty", Duration::from_secs(10), || {
        *held_a.borrow()
    })
    .await;
    step.step_down(Duration::from_secs(60));
    until("a to let the duty go", LEASE, || !*held_a.borrow()).await;
    let (_b_engine, b) = meta(&cluster);
    let held_b = b.hold_lease("replication", "b", LEASE, CancellationToken::new());
    let taken = until("b to take the duty", 3 * LEASE, || *held_b.borrow()).await;
    eprintln!("b took the duty {taken:?} after a stepped down (lease {LEASE:?})");
    // Released: within b's first or second attempt (a renewal period apart), not at the
    // lease's expiry (at least two thirds of a lease after a's last renewal).
    assert!(
        taken < LEASE * 3 / 5,
        "b took the duty {taken:?} after a stepped down: not released"
    );
    // a stays away for its pause: b goes on holding across renewals.
    for _ in 0..10 {
        assert!(
            *held_b.borrow() && !*held_a.borrow(),
            "a took the duty back"
        );
        tokio::time::sleep(LEASE / 10).await;
    }
}

/// Each node's own lease (`member-<instance>`, the nodes a region divides its pulls among):
/// the live holders are listed, a released one is not, and a record lapsed long enough is
/// removed while a live one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_leases_list_the_live_nodes_and_lapsed_ones_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let (_engine, meta) = meta(&cluster);
    let stops: Vec<CancellationToken> = (0..2).map(|_| CancellationToken::new()).collect();
    let held: Vec<_> = stops
        .iter()
        .enumerate()
        .map(|(i, stop)| {
            meta.hold_lease(
                &format!("member-{i}"),
                &format!("n{i}"),
                LEASE,
                stop.clone(),
            )
        })
        .collect();
    until(
        "both members hold their leases",
        Duration::from_secs(10),
        || held.iter().all(|h| *h.borrow()),
    )
    .await;
    let live = |meta: &Arc<JetStreamMetaStore>| {
        let mut live = meta.lease_holders("member-").unwrap();
        live.sort();
        live
    };
    let m = meta.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || live(&m)).await.unwrap(),
        ["n0", "n1"]
    );
    // n1 stops: released at once, no longer alive.
    stops[1].cancel();
    let m = meta.clone();
    let gone = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        while live(&m) != ["n0"] {
            assert!(started.elapsed() < Duration::from_secs(10), "n1 released");
            std::thread::sleep(Duration::from_millis(20));
        }
        m.prune_lapsed_leases("member-", Duration::ZERO).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        gone, 1,
        "n1's released record is removed, n0's live one stays"
    );
    let m = meta.clone();
    let after = tokio::task::spawn_blocking(move || {
        (
            live(&m),
            m.prune_lapsed_leases("member-", Duration::ZERO).unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(after, (vec!["n0".to_string()], 0));
    stops[0].cancel();
}
