//! `georouter bench rocketmq`: the RocketMQ 5 access point of two embedded regions, eu
//! and us, joined by a direct QUIC link with one task from eu to us, driven by a client of
//! the same protocol (generated from `proto/apache/rocketmq/v2`).
//!
//! In one run, so that every figure stands beside the limits it is measured against:
//! 1. the disk: 4 KiB writes, each followed by `fdatasync`, in eu's data dir;
//! 2. the own gRPC API of eu: one record per produce request, as fast as acknowledged,
//!    then paced at `--rate` (its acknowledgement latency);
//! 3. eu's access point: one message per `SendMessage`, as fast as acknowledged;
//! 4. eu's access point paced at `--rate`: acknowledgement latency;
//! 5. end to end: messages sent to eu paced at `--e2e-rate`, received by a PoP consumer
//!    in eu and by one in us (long polling, acknowledging each batch), latency from send
//!    to receipt.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use client::{Partitioning, pb as own};
use hdrhistogram::Histogram;
use proto::rocketmq::v2 as pb;
use proto::rocketmq::v2::messaging_service_client::MessagingServiceClient;

use scenarios::cluster::{Cluster, ClusterPlan};

use super::bench::{Quantiles, latency_histogram, write_json};
use crate::launch::InProcess;

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
pub(super) fn fsync_latency(dir: &std::path::Path, count: usize) -> Result<Histogram<u64>> {
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

/// `count` sends of `size` bytes over `partitions` queues (send `i` to queue `i mod
/// partitions`) with `concurrency` in flight, paced at `rate` (0: as fast as acknowledged).
#[derive(Clone, Copy)]
struct Load {
    count: u64,
    size: usize,
    partitions: u32,
    concurrency: usize,
    rate: u64,
}

/// Runs `load`, each send being `send(i, stamp)` (stamp: µs since `epoch`); the
/// acknowledgement latency and the elapsed time.
async fn drive<F, Fut>(load: Load, epoch: Instant, send: F) -> Result<(Histogram<u64>, Duration)>
where
    F: Fn(u64, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..load.concurrency {
        let (send, next) = (send.clone(), next.clone());
        workers.spawn(async move {
            let mut latency = latency_histogram()?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= load.count {
                    return Ok::<_, anyhow::Error>(latency);
                }
                if load.rate > 0 {
                    let due = started + Duration::from_secs_f64(i as f64 / load.rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                send(i, (sent - epoch).as_micros() as u64).await?;
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

/// One message per `SendMessage` to `topic`.
async fn send_load(
    client: &Rmq,
    topic: &str,
    load: Load,
    epoch: Instant,
) -> Result<(Histogram<u64>, Duration)> {
    let (client, topic) = (client.clone(), topic.to_string());
    drive(load, epoch, move |i, stamp| {
        let (mut client, topic) = (client.clone(), topic.clone());
        async move {
            let queue = (i % u64::from(load.partitions)) as u32;
            let request = pb::SendMessageRequest {
                messages: vec![message(&topic, queue, i, body(stamp, load.size))],
            };
            let answer = client.send_message(request).await?.into_inner();
            let status = answer.status.unwrap_or_default();
            anyhow::ensure!(
                status.code == pb::Code::Ok as i32,
                "send refused: {} {}",
                status.code,
                status.message
            );
            Ok(())
        }
    })
    .await
}

/// One record per produce request through the own API to `topic`.
async fn own_load(
    client: &client::Client,
    topic: &str,
    load: Load,
    epoch: Instant,
) -> Result<(Histogram<u64>, Duration)> {
    let (client, topic) = (client.clone(), topic.to_string());
    drive(load, epoch, move |i, stamp| {
        let (client, topic) = (client.clone(), topic.clone());
        async move {
            let record = own::Record {
                body: body(stamp, load.size),
                ..Default::default()
            };
            let partition = Partitioning::Partition((i % u64::from(load.partitions)) as u32);
            client.produce(&topic, vec![record], partition).await?;
            Ok(())
        }
    })
    .await
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

/// eu and us joined directly, one task carrying `e2e` from eu to us.
fn plan() -> ClusterPlan {
    ClusterPlan::direct(
        scenarios::deploy::line(&["eu", "us"]),
        vec![replicator::TaskSpec::new("e2e", &["eu"], &["us"], "e2e")],
    )
}

pub async fn run(args: RocketMqBench) -> Result<()> {
    let cluster = Cluster::start(&plan(), &InProcess).await?;
    let (eu, us) = (&cluster.regions[0], &cluster.regions[1]);
    let own = eu.client.clone();
    let rmq = Rmq::connect(format!("http://{}", eu.bound.rocketmq)).await?;
    let remote = Rmq::connect(format!("http://{}", us.bound.rocketmq)).await?;
    for topic in ["own", "own-paced", "sent", "paced", "e2e"] {
        own.create_topic(topic, args.partitions, None).await?;
    }
    // The task creates e2e in us from eu's advertisement; wait until it has.
    while us.client.describe_topic("e2e").await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let epoch = Instant::now();
    let load = |count, rate| Load {
        count,
        size: args.size,
        partitions: args.partitions,
        concurrency: args.concurrency,
        rate,
    };

    let fsync = Quantiles::of(&fsync_latency(&eu.data_dir, 1000)?);
    let (_, own_elapsed) = own_load(&own, "own", load(args.messages, 0), epoch).await?;
    let own_rate = args.messages as f64 / own_elapsed.as_secs_f64();
    let paced_count = (args.rate * 5).max(1);
    let (own_paced, _) = own_load(&own, "own-paced", load(paced_count, args.rate), epoch).await?;
    let own_paced = Quantiles::of(&own_paced);
    let (_, sent_elapsed) = send_load(&rmq, "sent", load(args.messages, 0), epoch).await?;
    let sent_rate = args.messages as f64 / sent_elapsed.as_secs_f64();
    let (paced, _) = send_load(&rmq, "paced", load(paced_count, args.rate), epoch).await?;
    let paced = Quantiles::of(&paced);
    let e2e_count = (args.e2e_rate * 5).max(1);
    let here = tokio::spawn(consume(rmq.clone(), "e2e".into(), e2e_count, epoch));
    let there = tokio::spawn(consume(remote, "e2e".into(), e2e_count, epoch));
    send_load(&rmq, "e2e", load(e2e_count, args.e2e_rate), epoch).await?;
    let here = Quantiles::of(&here.await??);
    let there = Quantiles::of(&there.await??);

    println!(
        "rocketmq: {} messages of {} B, concurrency {}, {} queues, regions eu and us in this process (direct QUIC link)",
        args.messages, args.size, args.concurrency, args.partitions
    );
    println!("  disk fdatasync of 4 KiB  {}", fsync.line());
    println!("  own API, 1 record/request      {own_rate:>10.0} records/s");
    println!("  own API ack at {} /s  {}", args.rate, own_paced.line());
    println!(
        "  SendMessage, 1 message/request {sent_rate:>10.0} messages/s  ({:.0} % of the own API)",
        sent_rate / own_rate * 100.0
    );
    println!("  SendMessage ack at {} /s  {}", args.rate, paced.line());
    println!(
        "  send to PoP receipt at {} /s, same region (eu)   {}",
        args.e2e_rate,
        here.line()
    );
    println!(
        "  send to PoP receipt at {} /s, other region (us)  {}",
        args.e2e_rate,
        there.line()
    );
    if let Some(path) = &args.json {
        write_json(
            path,
            &serde_json::json!({
                "messages": args.messages, "size": args.size, "concurrency": args.concurrency,
                "fsync_ms": fsync.json(), "own_records_per_s": own_rate,
                "own_ack_ms": own_paced.json(),
                "send_messages_per_s": sent_rate, "rate": args.rate, "ack_ms": paced.json(),
                "e2e_rate": args.e2e_rate, "e2e_ms": here.json(),
                "e2e_other_region_ms": there.json(),
            }),
        )?;
    }
    cluster.stop().await?;
    Ok(())
}
