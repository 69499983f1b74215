//! Two regions "a" and "b" as `georouter serve` processes with a two-way task on one topic:
//! their configs, producers that record what was acknowledged, and the checks that the
//! regions converged with nothing lost or duplicated.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{Partitioning, pb};

use super::ServeProcess;

/// Every record of the topic in a region, (origin, partition, offset) -> body.
pub type Records = BTreeMap<(String, u32, u64), Vec<u8>>;

pub const TOPIC: &str = "orders";

/// The config of `region` ("a" or "b"); "a" dials "b" at `b_address`.
pub fn write_config(dir: &Path, region: &str, b_address: Option<&str>) -> std::path::PathBuf {
    write_config_with(dir, region, b_address, "")
}

/// [`write_config`] with `extra` (TOML sections) at its end.
pub fn write_config_with(
    dir: &Path,
    region: &str,
    b_address: Option<&str>,
    extra: &str,
) -> std::path::PathBuf {
    let address = b_address.map_or(String::new(), |a| format!("address = \"{a}\"\n"));
    let topology = format!(
        "[[regions]]\nname = \"a\"\n\n[[regions]]\nname = \"b\"\n{address}\n[[links]]\nbetween = [\"a\", \"b\"]\n"
    );
    write_pair_config(dir, region, region, &topology, extra)
}

/// The config of `region` of the pair as `<name>.toml`: its certificates, the
/// `topology` given (`[[regions]]` and `[[links]]`), the two-way task on [`TOPIC`], and
/// `extra` at its end.
pub fn write_pair_config(
    dir: &Path,
    name: &str,
    region: &str,
    topology: &str,
    extra: &str,
) -> std::path::PathBuf {
    let certs = dir.join("certs");
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

{topology}
[[tasks]]
name = "orders-aa"
sources = ["a"]
targets = ["b"]
topics = "{TOPIC}"
direction = "two-way"
{extra}"#,
        certs = certs.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The `[storage]` sections of a region on `cluster`.
pub fn on_jetstream(cluster: &jetstream_engine::local_cluster::LocalCluster) -> String {
    let servers: Vec<String> = cluster
        .all_urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect();
    format!(
        "\n[storage]\nengine = \"jetstream\"\n\n[storage.jetstream]\nservers = [{}]\n",
        servers.join(", ")
    )
}

/// The (origin, partition) -> end offsets a region reports.
pub async fn ends(grpc: &str) -> BTreeMap<(String, u32), u64> {
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

pub async fn wait_for(
    what: &str,
    processes: &[&ServeProcess],
    mut done: impl AsyncFnMut() -> bool,
) {
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
pub async fn contents(process: &ServeProcess) -> BTreeMap<(String, u32, u64), Vec<u8>> {
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

pub type Acked = Arc<Mutex<BTreeMap<(u32, u64), Vec<u8>>>>;

/// Produces to region `grpc` in batches of 10 until `stop` or the first error, recording
/// what was acknowledged.
pub fn producer(
    grpc: String,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
) -> tokio::task::JoinHandle<()> {
    producing(grpc, acked, stop, seed, false, 2)
}

/// [`producer`] over partitions 0 to `partitions - 1` in turn.
pub fn producer_over(
    grpc: String,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
    partitions: u32,
) -> tokio::task::JoinHandle<()> {
    producing(grpc, acked, stop, seed, false, partitions)
}

/// [`producer`] that goes on after an error (the batch was not acknowledged; the next one
/// carries other bodies), until `stop`.
pub fn producer_retrying(
    grpc: String,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
) -> tokio::task::JoinHandle<()> {
    producing(grpc, acked, stop, seed, true, 2)
}

fn producing(
    grpc: String,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seed: u64,
    retry: bool,
    partitions: u32,
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
                .produce(
                    TOPIC,
                    records,
                    Partitioning::Partition((i / 10) as u32 % partitions),
                )
                .await
            {
                Ok(ids) => {
                    let mut acked = acked.lock().unwrap();
                    for (id, body) in ids.into_iter().zip(bodies) {
                        acked.insert((id.partition, id.offset), body);
                    }
                }
                Err(_) if retry => {
                    // Back off a little before the next attempt.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(_) => return,
            }
            i += 10;
        }
    })
}

/// Waits until both regions hold the same ends, then checks they hold the same records,
/// that every record acknowledged in "a" is in "b", and that every sub-log is dense from 0;
/// returns both regions' records.
pub async fn converged(a: &ServeProcess, b: &ServeProcess, acked: &Acked) -> (Records, Records) {
    wait_for("both regions to converge", &[a, b], async || {
        let (ea, eb) = (ends(&a.grpc).await, ends(&b.grpc).await);
        !ea.is_empty() && ea == eb
    })
    .await;
    let (in_a, in_b) = (contents(a).await, contents(b).await);
    assert_eq!(in_a.len(), in_b.len());
    let differ: Vec<_> = in_a
        .iter()
        .filter(|(k, v)| in_b.get(*k) != Some(*v))
        .map(|(k, v)| {
            (
                k.clone(),
                String::from_utf8_lossy(v).into_owned(),
                in_b.get(k).map(|b| String::from_utf8_lossy(b).into_owned()),
            )
        })
        .take(5)
        .collect();
    assert!(
        differ.is_empty(),
        "regions differ after convergence: {differ:?}"
    );
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
    (in_a, in_b)
}
