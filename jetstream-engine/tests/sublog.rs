//! Sub-logs on a real cluster of three nats-server processes (replicas 3, fsync before
//! acknowledging): batches come back byte for byte in offset and arrival order; two nodes
//! appending to one sub-log never share an offset; a replicated batch two nodes apply is
//! stored once; what was acknowledged survives the SIGKILL of a server mid-append.

use std::sync::Arc;

use broker::batch::{Batch, PendingBatch};
use broker::record::Record;
use broker::storage::GapPolicy;
use bytes::Bytes;
use jetstream_engine::local_cluster::LocalCluster;
use jetstream_engine::{Appended, Engine, JetStreamSettings, SubLogId, SubLogs, Tail};

fn node(cluster: &LocalCluster) -> SubLogs {
    let engine = Engine::connect(JetStreamSettings::new(cluster.all_urls())).unwrap();
    SubLogs::new(engine, "eu.west")
}

fn id(origin: &str) -> SubLogId {
    SubLogId {
        topic: "orders.v1".into(),
        incarnation: 7,
        partition: 1,
        origin: origin.into(),
    }
}

fn batch(base: u64, bodies: &[&str]) -> Bytes {
    let records: Vec<Record> = bodies
        .iter()
        .map(|b| Record {
            body: Bytes::copy_from_slice(b.as_bytes()),
            timestamp_ms: 1_700_000_000_000,
            ..Record::default()
        })
        .collect();
    PendingBatch::consecutive(&records).seal(base)
}

fn bodies(batches: &[Batch]) -> Vec<(u64, String)> {
    batches
        .iter()
        .flat_map(|b| b.records())
        .map(|(offset, r)| (offset, String::from_utf8(r.body.to_vec()).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_come_back_byte_for_byte_by_offset_and_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let logs = node(&cluster);
    logs.create_topic("orders.v1", 7).await.unwrap();
    let (us, eu) = (id("us"), id("eu.west"));
    let (mut us_tail, mut eu_tail) = (Tail::default(), Tail::default());
    let sent = [
        batch(0, &["a", "b"]),
        batch(2, &["c"]),
        batch(3, &["d", "e", "f"]),
    ];
    for (i, bytes) in sent.iter().enumerate() {
        let stored = logs
            .append_replicated(&us, &mut us_tail, bytes.clone(), GapPolicy::Refuse, 3)
            .await
            .unwrap();
        assert!(matches!(stored, Appended::Stored { .. }));
        let local = logs
            .append_local(&eu, &mut eu_tail, batch(0, &["local"]), &format!("m{i}"))
            .await
            .unwrap();
        assert_eq!(local.batch.header().base_offset, i as u64);
    }
    assert_eq!(logs.tail(&us).await.unwrap(), us_tail);
    assert_eq!(us_tail.end, 6);

    let all = logs.read(&us, 0, 10).await.unwrap();
    let back: Vec<Bytes> = all.iter().map(|s| s.batch.bytes().clone()).collect();
    assert_eq!(back, sent.to_vec(), "byte for byte");
    let from_4: Vec<Batch> = logs
        .read(&us, 4, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.batch)
        .collect();
    assert_eq!(
        from_4.len(),
        1,
        "the batch holding offset 4 and none before it"
    );
    assert_eq!(bodies(&from_4)[0], (3, "d".to_string()));
    assert!(logs.read(&us, 6, 10).await.unwrap().is_empty());

    // Arrival order interleaves the origins as they were appended.
    let arrivals = logs.arrivals("orders.v1", 7, 1, 0, 100).await.unwrap();
    let origins: Vec<&str> = arrivals.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(origins, ["us", "eu.west", "us", "eu.west", "us", "eu.west"]);
    assert!(
        arrivals
            .windows(2)
            .all(|w| w[0].1.sequence < w[1].1.sequence)
    );
    let rest = logs
        .arrivals("orders.v1", 7, 1, arrivals[3].1.sequence + 1, 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert!(
        logs.arrivals("orders.v1", 7, 0, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_to_one_sub_log_never_share_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let nodes = [Arc::new(node(&cluster)), Arc::new(node(&cluster))];
    nodes[0].create_topic("orders.v1", 7).await.unwrap();
    const EACH: usize = 40;
    let mut writers = Vec::new();
    for (n, logs) in nodes.iter().enumerate() {
        let logs = logs.clone();
        writers.push(tokio::spawn(async move {
            // Each node's own idea of the end, stale whenever the other wrote.
            let mut tail = Tail::default();
            for i in 0..EACH {
                let body = format!("n{n}-{i}");
                logs.append_local(&id("eu.west"), &mut tail, batch(0, &[&body, &body]), &body)
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let stored: Vec<Batch> = nodes[1]
        .read(&id("eu.west"), 0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.batch)
        .collect();
    let records = bodies(&stored);
    assert_eq!(records.len(), 2 * 2 * EACH);
    for (i, (offset, _)) in records.iter().enumerate() {
        assert_eq!(*offset, i as u64, "offsets are dense and unique");
    }
    let mut names: Vec<&String> = records.iter().map(|(_, b)| b).collect();
    names.dedup();
    assert_eq!(names.len(), 2 * EACH, "every append once, none lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_batch_two_nodes_apply_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let (a, b) = (node(&cluster), node(&cluster));
    a.create_topic("orders.v1", 7).await.unwrap();
    let us = id("us");
    let (mut a_tail, mut b_tail) = (Tail::default(), Tail::default());
    let first = batch(0, &["x", "y"]);
    assert!(matches!(
        a.append_replicated(&us, &mut a_tail, first.clone(), GapPolicy::Refuse, 3)
            .await
            .unwrap(),
        Appended::Stored { .. }
    ));
    // b has not seen a's append: its expectation fails, it finds the batch held.
    assert_eq!(
        b.append_replicated(&us, &mut b_tail, first, GapPolicy::Refuse, 3)
            .await
            .unwrap(),
        Appended::AlreadyHeld
    );
    assert_eq!(b_tail, a_tail);
    // A batch that does not follow the end is refused, saying where the end is.
    let err = b
        .append_replicated(&us, &mut b_tail, batch(5, &["z"]), GapPolicy::Refuse, 3)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot follow its end at 2"), "{err}");
    assert_eq!(b.read(&us, 0, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_acknowledged_before_a_server_is_killed_are_all_there_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let logs = node(&cluster);
    logs.create_topic("orders.v1", 7).await.unwrap();
    let us = id("us");
    let mut tail = Tail::default();
    let mut acknowledged = 0u64;
    for victim in 0..cluster.len() {
        for _ in 0..20 {
            let bytes = batch(acknowledged, &["r"]);
            logs.append_replicated(&us, &mut tail, bytes, GapPolicy::Refuse, 3)
                .await
                .unwrap();
            acknowledged += 1;
        }
        cluster.kill(victim).unwrap();
        // The appends go on with two of three servers, once a new leader is elected if
        // the victim led the stream: the first append's wait is the takeover.
        let killed = std::time::Instant::now();
        for i in 0..5 {
            let bytes = batch(acknowledged, &["r"]);
            logs.append_replicated(&us, &mut tail, bytes, GapPolicy::Refuse, 3)
                .await
                .unwrap();
            if i == 0 {
                eprintln!(
                    "first append after the SIGKILL of server {victim}: {:?}",
                    killed.elapsed()
                );
            }
            acknowledged += 1;
        }
        cluster.restart(victim).unwrap();
    }
    let reader = node(&cluster);
    let stored: Vec<Batch> = reader
        .read(&us, 0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.batch)
        .collect();
    let offsets: Vec<u64> = bodies(&stored).into_iter().map(|(o, _)| o).collect();
    assert_eq!(offsets, (0..acknowledged).collect::<Vec<_>>());
}
