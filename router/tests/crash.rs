//! A `georouter serve` process is killed with SIGKILL at a random moment while producers
//! run. After a restart every acknowledged record is readable, in order, whole; records
//! that were not acknowledged may be there or not, but never torn.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{Partitioning, pb};
use nix::sys::signal::Signal;
use rand::Rng;

const PARTITIONS: u32 = 2;
const PRODUCERS: u64 = 3;

/// Acknowledged records: (partition, offset) -> body.
type Acked = BTreeMap<(u32, u64), Vec<u8>>;

/// Body of record `i` of producer `p`: self-describing, so a torn record cannot pass.
fn body(producer: u64, i: u64) -> Vec<u8> {
    let mut body = format!("p{producer}-{i:08}-").into_bytes();
    let fill = (i % 200) as usize + 10;
    body.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, fill));
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("r");
    let node = support::spawn("crash", &data);
    let client = client::Client::connect(&node.grpc).await.unwrap();
    client
        .create_topic("orders", PARTITIONS, None)
        .await
        .unwrap();

    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (client, acked) = (client.clone(), acked.clone());
        producers.push(tokio::spawn(async move {
            let mut i = 0u64;
            loop {
                let batch: Vec<_> = (0..10)
                    .map(|k| pb::Record {
                        body: body(p, i + k),
                        ..Default::default()
                    })
                    .collect();
                let bodies: Vec<_> = batch.iter().map(|r| r.body.clone()).collect();
                let partition = ((p + i / 10) % u64::from(PARTITIONS)) as u32;
                match client
                    .produce("orders", batch, Partitioning::Partition(partition))
                    .await
                {
                    Ok(ids) => {
                        let mut acked = acked.lock().unwrap();
                        for (id, b) in ids.into_iter().zip(bodies) {
                            acked.insert((id.partition, id.offset), b);
                        }
                    }
                    Err(_) => return,
                }
                i += 10;
            }
        }));
    }
    // Kill at a random moment once some records were acknowledged.
    let kill_after = rand::rng().random_range(200..2000usize);
    while acked.lock().unwrap().len() < kill_after {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    node.signal(Signal::SIGKILL);
    for producer in producers {
        producer.await.unwrap();
    }
    drop(node);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= kill_after);

    let node = support::spawn("crash", &data);
    let client = client::Client::connect(&node.grpc).await.unwrap();
    let fetched = client
        .fetch_all("orders", client::earliest(), vec![])
        .await
        .unwrap();
    let mut stored: BTreeMap<(u32, u64), Vec<u8>> = BTreeMap::new();
    let mut last_offset: BTreeMap<u32, u64> = BTreeMap::new();
    for r in fetched.records {
        assert_eq!(r.origin, "crash");
        // Per partition, offsets come in order with no hole.
        let expected = last_offset.get(&r.partition).map_or(0, |o| o + 1);
        assert_eq!(
            r.offset, expected,
            "partition {} read out of order or with a hole",
            r.partition
        );
        last_offset.insert(r.partition, r.offset);
        let b = r.record.unwrap().body;
        let text = String::from_utf8(b.clone()).expect("whole record");
        let mut parts = text.splitn(3, '-');
        let (p, i) = (
            parts.next().unwrap(),
            parts.next().unwrap().parse::<u64>().unwrap(),
        );
        assert_eq!(b, body(p[1..].parse().unwrap(), i), "record is whole");
        stored.insert((r.partition, r.offset), b);
    }
    for (id, b) in &acked {
        assert_eq!(
            stored.get(id),
            Some(b),
            "acknowledged record {id:?} lost after SIGKILL"
        );
    }
    // New writes continue after the recovered end.
    let ids = client
        .produce(
            "orders",
            vec![pb::Record {
                body: b"after".to_vec(),
                ..Default::default()
            }],
            Partitioning::Partition(0),
        )
        .await
        .unwrap();
    assert_eq!(ids[0].offset, last_offset.get(&0).map_or(0, |o| o + 1));
}
