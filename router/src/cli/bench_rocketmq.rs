//! `georouter bench rocketmq`: the RocketMQ 5 access point of an embedded region, driven by
//! a client of the same protocol (generated from `proto/apache/rocketmq/v2`).
//!
//! In one run, so that every figure stands beside the limits it is measured against:
//! 1. the disk: 4 KiB writes, each followed by `fdatasync`, in the region's data dir;
//! 2. the own gRPC API: one record per produce request, as fast as acknowledged;
//! 3. the access point: one message per `SendMessage`, as fast as acknowledged;
//! 4. the access point paced at `--rate`: acknowledgement latency;
//! 5. end to end: messages paced at `--e2e-rate`, received by a PoP consumer in the same
//!    region (long polling, acknowledging each), latency from send to receipt.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use client::{Partitioning, pb as own};
use hdrhistogram::Histogram;
use proto::rocketmq::v2 as pb;
use proto::rocketmq::v2::messaging_service_client::MessagingServiceClient;

use super::bench::{Quantiles, latency_histogram, write_json};
use crate::config::NodeConfig;
use crate::node::Node;

type Rmq = MessagingServiceClient<tonic::transport::Channel>;

#[derive(clap::Args)]
pub struct RocketMqBench {
    /// Messages of each throughput phase.
    #[arg(long, default_value_t = 50_000)]
    messages: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Queues (partitions) of the benchmark topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Messages per second of the paced ack-latency phase.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Messages per second of the end-to-end phase.
    #[arg(long, default_value_t = 2_000)]
    e2e_rate: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

/// A body of `size` bytes that starts with `stamp` (µs since the run started).
fn body(stamp: u64, size: usize) -> Vec<u8> {
    let mut body = vec![b'x'; size.max(8)];
    body[..8].copy_from_slice(&stamp.to_le_bytes());
    body
}

fn message(topic: &str, queue: u32, id: u64, body: Vec<u8>) -> pb::Message {
    pb::Message {
        topic: resource(topic),
        user_properties: Default::default(),
        system_properties: Some(pb::SystemProperties {
            message_id: format!("{id:034X}"),
            message_type: pb::MessageType::Normal as i32,
            body_encoding: pb::Encoding::Identity as i32,
            queue_id: queue as i32,
            ..Default::default()
        }),
        body,
    }
}

/// fdatasync of 4 KiB appends in `dir`: the disk's own durability cost.
fn fsync_latency(dir: &std::path::Path, count: usize) -> Result<Histogram<u64>> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).context("creating the fsync probe")?;
    let mut latency = latency_histogram()?;
    let block = [0u8; 4096];
    for _ in 0..count {
        file.write_all(&block)?;
        let started = Instant::now();
        file.sync_data()?;
        latency.record(started.elapsed().as_micros().max(1) as u64)?;
    }
    std::fs::remove_file(&path).ok();
    Ok(latency)
}

/// `count` single-message sends with `concurrency` in flight over `partitions` queues,
/// paced at `rate` (0: as fast as acknowledged).
#[derive(Clone, Copy)]
struct Sends {
    count: u64,
    size: usize,
    concurrency: usize,
    partitions: u32,
    rate: u64,
}

/// Runs `sends` to `topic`; the ack latency and the elapsed time.
async fn send_load(
    client: &Rmq,
    topic: &str,
    sends: Sends,
    epoch: Instant,
) -> Result<(Histogram<u64>, Duration)> {
    let Sends {
        count,
        size,
        concurrency,
        partitions,
        rate,
    } = sends;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (mut client, topic, next) = (client.clone(), topic.to_string(), next.clone());
        workers.spawn(async move {
            let mut latency = latency_histogram()?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(latency);
                }
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let stamp = (sent - epoch).as_micros() as u64;
                let request = pb::SendMessageRequest {
                    messages: vec![message(
                        &topic,
                        (i % u64::from(partitions)) as u32,
                        i,
                        body(stamp, size),
                    )],
                };
                let answer = client.send_message(request).await?.into_inner();
                let status = answer.status.unwrap_or_default();
                anyhow::ensure!(
                    status.code == pb::Code::Ok as i32,
                    "send refused: {} {}",
                    status.code,
                    status.message
                );
                latency.record(sent.elapsed().as_micros().max(1) as u64)?;
            }
        });
    }
    let mut latency = latency_histogram()?;
    while let Some(joined) = workers.join_next().await {
        latency.add(joined??)?;
    }
    Ok((latency, started.elapsed()))
}

/// One record per produce request through the own API, as fast as acknowledged.
async fn own_load(
    client: &client::Client,
    topic: &str,
    count: u64,
    size: usize,
    concurrency: usize,
    partitions: u32,
) -> Result<Duration> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, topic, next) = (client.clone(), topic.to_string(), next.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                let record = own::Record {
                    body: body(0, size),
                    ..Default::default()
                };
                client
                    .produce(
                        &topic,
                        vec![record],
                        Partitioning::Partition((i % u64::from(partitions)) as u32),
                    )
                    .await?;
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined??;
    }
    Ok(started.elapsed())
}

/// Receives and acknowledges until `count` messages arrived; latency from each message's
/// send stamp to its receipt.
async fn consume(
    mut client: Rmq,
    topic: String,
    count: u64,
    epoch: Instant,
) -> Result<Histogram<u64>> {
    let mut latency = latency_histogram()?;
    let mut got = 0;
    while got < count {
        let request = pb::ReceiveMessageRequest {
            group: resource("bench"),
            message_queue: Some(pb::MessageQueue {
                topic: resource(&topic),
                ..Default::default()
            }),
            batch_size: 32,
            invisible_duration: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            long_polling_timeout: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        };
        let mut stream = client.receive_message(request).await?.into_inner();
        let mut entries = Vec::new();
        while let Some(answer) = stream.message().await? {
            if let Some(pb::receive_message_response::Content::Message(m)) = answer.content {
                let now = (Instant::now() - epoch).as_micros() as u64;
                let stamp = u64::from_le_bytes(m.body[..8].try_into().expect("8 bytes"));
                latency.record(now.saturating_sub(stamp).max(1))?;
                let s = m.system_properties.unwrap_or_default();
                entries.push(pb::AckMessageEntry {
                    message_id: s.message_id,
                    receipt_handle: s.receipt_handle.unwrap_or_default(),
                    lite_topic: None,
                });
                got += 1;
            }
        }
        if !entries.is_empty() {
            // One acknowledgement for the whole batch (the protocol takes many entries).
            client
                .ack_message(pb::AckMessageRequest {
                    group: resource("bench"),
                    topic: resource(&topic),
                    entries,
                })
                .await?;
        }
    }
    Ok(latency)
}

pub async fn run(args: RocketMqBench) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let node = Node::start(NodeConfig::loopback("bench", temp.path())).await?;
    let own = client::Client::connect(&node.bound.grpc.to_string()).await?;
    let rmq = Rmq::connect(format!("http://{}", node.bound.rocketmq)).await?;
    for topic in ["own", "sent", "paced", "e2e"] {
        own.create_topic(topic, args.partitions, None).await?;
    }
    let epoch = Instant::now();

    let sends = |count, rate| Sends {
        count,
        size: args.size,
        concurrency: args.concurrency,
        partitions: args.partitions,
        rate,
    };
    let fsync = Quantiles::of(&fsync_latency(temp.path(), 1000)?);
    let own_elapsed = own_load(
        &own,
        "own",
        args.messages,
        args.size,
        args.concurrency,
        args.partitions,
    )
    .await?;
    let own_rate = args.messages as f64 / own_elapsed.as_secs_f64();
    let (_, sent_elapsed) = send_load(&rmq, "sent", sends(args.messages, 0), epoch).await?;
    let sent_rate = args.messages as f64 / sent_elapsed.as_secs_f64();
    let paced_count = (args.rate * 5).max(1);
    let (paced, _) = send_load(&rmq, "paced", sends(paced_count, args.rate), epoch).await?;
    let paced = Quantiles::of(&paced);
    let e2e_count = (args.e2e_rate * 5).max(1);
    let consumer = tokio::spawn(consume(rmq.clone(), "e2e".into(), e2e_count, epoch));
    send_load(&rmq, "e2e", sends(e2e_count, args.e2e_rate), epoch).await?;
    let e2e = Quantiles::of(&consumer.await??);

    println!(
        "rocketmq: {} messages of {} B, concurrency {}, {} queues, embedded region",
        args.messages, args.size, args.concurrency, args.partitions
    );
    println!("  disk fdatasync of 4 KiB  {}", fsync.line());
    println!("  own API, 1 record/request      {own_rate:>10.0} records/s");
    println!(
        "  SendMessage, 1 message/request {sent_rate:>10.0} messages/s  ({:.0} % of the own API)",
        sent_rate / own_rate * 100.0
    );
    println!("  SendMessage ack at {} /s  {}", args.rate, paced.line());
    println!(
        "  send to PoP receipt at {} /s, same region  {}",
        args.e2e_rate,
        e2e.line()
    );
    if let Some(path) = &args.json {
        write_json(
            path,
            &serde_json::json!({
                "messages": args.messages, "size": args.size, "concurrency": args.concurrency,
                "fsync_ms": fsync.json(), "own_records_per_s": own_rate,
                "send_messages_per_s": sent_rate, "rate": args.rate, "ack_ms": paced.json(),
                "e2e_rate": args.e2e_rate, "e2e_ms": e2e.json(),
            }),
        )?;
    }
    node.shut_down().await?;
    Ok(())
}
