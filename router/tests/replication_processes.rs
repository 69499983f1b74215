//! Two regions as separate `georouter serve` processes joined by a QUIC link, with a
//! two-way task. Producers write in region "a" while first the target ("b") and then the
//! source ("a") is killed with SIGKILL and restarted. At the end both regions hold the
//! same records under the same (origin, partition, offset): none lost, none duplicated.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{Partitioning, pb};
use nix::sys::signal::Signal;
use support::ServeProcess;

const TOPIC: &str = "orders";

/// The config of `region` ("a" or "b"); "a" dials "b" at `b_address`.
fn write_config(dir: &Path, region: &str, b_address: Option<&str>) -> std::path::PathBuf {
    let certs = dir.join("certs");
    let address = b_address.map_or(String::new(), |a| format!("address = \"{a}\"\n"));
    let text = format!(
        r#"[region]
id = "{region}"
data_dir = "unused"

[replication]
ca = "{certs}/ca.pem"
cert = "{certs}/{region}.pem"
key = "{certs}/{region}.key"
advertise_interval_ms = 50
idle_timeout_ms = 3000

[[regions]]
name = "a"

[[regions]]
name = "b"
{address}
[[links]]
between = ["a", "b"]

[[tasks]]
name = "orders-aa"
sources = ["a"]
targets = ["b"]
topics = "{TOPIC}"
direction = "two-way"
"#,
        certs = certs.display()
    );
    let path = dir.join(format!("{region}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The (origin, partition) -> end offsets a region reports.
async fn ends(grpc: &str) -> BTreeMap<(String, u32), u64> {
    let Ok(client) = client::Client::connect(grpc).await else {
        return BTreeMap::new();
    };
    let Ok(description) = client.describe_topic(TOPIC).await else {
        return BTreeMap::new();
    };
    description
        .partitions
        .iter()
        .flat_map(|p| {
            p.sub_logs
                .iter()
                .map(move |s| ((s.origin.clone(), p.partition), s.end_offset))
        })
        .collect()
}

async fn wait_for(what: &str, processes: &[&ServeProcess], mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done().await {
        if Instant::now() > deadline {
            let logs: Vec<String> = processes.iter().map(|p| p.logs()).collect();
            panic!(
                "timed out waiting for {what}; logs:\n{}",
                logs.join("\n-----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record of the topic as (origin, partition, offset) -> body.
async fn contents(process: &ServeProcess) -> BTreeMap<(String, u32, u64), Vec<u8>> {
    let client = client::Client::connect(&process.grpc).await.unwrap();
    let fetched = client
        .fetch_all(TOPIC, client::earliest(), vec![])
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for r in fetched.records {
        let previous = out.insert(
            (r.origin.clone(), r.partition, r.offset),
            r.record.unwrap().body,
        );
        assert!(
            previous.is_none(),
            "record {}/{}/{} read twice",
            r.origin,
            r.partition,
            r.offset
        );
    }
    out
}

type Acked = Arc<Mutex<BTreeMap<(u32, u64), Vec<u8>>>>;

/// Produces to region `grpc` in batches of 10 until `stop` or the first error.
fn producer(
    grpc: String,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(client) = client::Client::connect(&grpc).await else {
            return;
        };
        let mut i = seed;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let records: Vec<_> = (0..10)
                .map(|k| pb::Record {
                    body: format!("rec-{}", i + k).into_bytes(),
                    ..Default::default()
                })
                .collect();
            let bodies: Vec<_> = records.iter().map(|r| r.body.clone()).collect();
            match client
                .produce(TOPIC, records, Partitioning::Partition((i / 10 % 2) as u32))
                .await
            {
                Ok(ids) => {
                    let mut acked = acked.lock().unwrap();
                    for (id, body) in ids.into_iter().zip(bodies) {
                        acked.insert((id.partition, id.offset), body);
                    }
                }
                Err(_) => return,
            }
            i += 10;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_target_and_source_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    support::certs(dir.path(), "a,b");
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));

    // "b" accepts; "a" (the lower id) dials it.
    let b_config = write_config(dir.path(), "b", None);
    let mut b = support::spawn_with("b", &b_data, &b_config, &[]);
    let b_replication = b.replication.clone();
    let a_config = write_config(dir.path(), "a", Some(&b_replication));
    let mut a = support::spawn_with("a", &a_data, &a_config, &[]);

    let a_client = client::Client::connect(&a.grpc).await.unwrap();
    a_client.create_topic(TOPIC, 2, None).await.unwrap();
    // A few records the other way, to check the reverse direction after the restarts.
    let b_client = client::Client::connect(&b.grpc).await.unwrap();
    wait_for("the topic to reach b", &[&a, &b], async || {
        b_client.describe_topic(TOPIC).await.is_ok()
    })
    .await;
    for i in 0..5 {
        b_client
            .produce(
                TOPIC,
                vec![pb::Record {
                    body: format!("from-b-{i}").into_bytes(),
                    ..Default::default()
                }],
                Partitioning::Partition(0),
            )
            .await
            .unwrap();
    }

    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = producer(a.grpc.clone(), acked.clone(), stop.clone(), 0);

    // Records of origin "a" a region holds.
    let replicated = |p: &ServeProcess| {
        let grpc = p.grpc.clone();
        async move {
            ends(&grpc)
                .await
                .iter()
                .filter(|((origin, _), _)| origin == "a")
                .map(|(_, end)| *end)
                .sum::<u64>()
        }
    };
    wait_for("replication to be under way", &[&a, &b], async || {
        replicated(&b).await >= 300
    })
    .await;

    // 1. The target dies mid-stream and comes back on the same replication address.
    b.signal(Signal::SIGKILL);
    let _ = b.child.wait();
    let acked_at_kill = acked.lock().unwrap().len();
    wait_for("more records while the target is down", &[&a], async || {
        acked.lock().unwrap().len() >= acked_at_kill + 300
    })
    .await;
    b = support::spawn_with(
        "b",
        &b_data,
        &b_config,
        &[("GEOROUTER__LISTEN__REPLICATION", b_replication.clone())],
    );
    wait_for(
        "the target to catch up after its restart",
        &[&a, &b],
        async || replicated(&b).await >= acked.lock().unwrap().len() as u64,
    )
    .await;

    // 2. The source dies mid-stream (producers and replication in flight).
    a.signal(Signal::SIGKILL);
    let _ = a.child.wait();
    let _ = writing.await;
    a = support::spawn_with("a", &a_data, &a_config, &[]);
    let writing = producer(a.grpc.clone(), acked.clone(), stop.clone(), 1_000_000);
    let acked_now = acked.lock().unwrap().len();
    wait_for(
        "more records after the source restarted",
        &[&a],
        async || acked.lock().unwrap().len() >= acked_now + 300,
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writing.await.unwrap();

    wait_for("both regions to converge", &[&a, &b], async || {
        let (ea, eb) = (ends(&a.grpc).await, ends(&b.grpc).await);
        !ea.is_empty() && ea == eb
    })
    .await;
    let (in_a, in_b) = (contents(&a).await, contents(&b).await);
    assert_eq!(in_a.len(), in_b.len());
    assert!(in_a == in_b, "regions differ after convergence");
    // Nothing acknowledged is missing; offsets per sub-log are dense from 0.
    let acked = acked.lock().unwrap();
    for ((partition, offset), body) in acked.iter() {
        assert_eq!(
            in_b.get(&("a".to_string(), *partition, *offset)),
            Some(body),
            "acknowledged record a/{partition}/{offset} missing or different in b"
        );
    }
    let mut per_sub_log: BTreeMap<(String, u32), Vec<u64>> = BTreeMap::new();
    for (origin, partition, offset) in in_b.keys() {
        per_sub_log
            .entry((origin.clone(), *partition))
            .or_default()
            .push(*offset);
    }
    for (key, offsets) in per_sub_log {
        let dense: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, dense, "sub-log {key:?} has holes");
    }
    assert_eq!(
        in_a.keys().filter(|k| k.0 == "b").count(),
        5,
        "b's records reached a"
    );
}
