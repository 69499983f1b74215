//! `georouter bench engines`: the same load on a region with each storage engine, one after
//! the other in one run: the embedded files, then a JetStream cluster of three nats-server
//! processes on loopback (`sync_interval: always`, replicas 3). Each region is a
//! `georouter serve` child of this process, so that the CPU time of every process (the
//! node, each nats-server) is read apart from the load generator's, from `/proc`. Printed
//! beside the disk's sequential write rate and fdatasync latency measured in the same run.
//!
//! Per engine: produce throughput and acknowledgement latency (as fast as acknowledged,
//! then paced), a read of everything back from the start (catch-up of a new consumer), and
//! CPU seconds per MB produced, per process. Then replication between two regions on that
//! engine (the scenarios, in this process): end-to-end lag of a paced two-way load
//! (`active-active`) and the rate a backlog built behind a cut link catches up at after
//! the heal (`partition-heal`); on JetStream also with two nodes per region, which divide
//! the pulls and the serving between them.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jetstream_engine::JetStreamSettings;
use jetstream_engine::local_cluster::LocalCluster;
use scenarios::cluster::Engine;
use scenarios::launch::Launcher;
use scenarios::report::LagMs;
use scenarios::scenario::Options;

use super::bench::{Load, Quantiles, drive, write_json};
use super::bench_rocketmq::fsync_latency;
use super::bench_wan::{scenario, sequential_write_rate};
use crate::config::{NodeConfig, StorageEngineKind};
use crate::launch::Processes;

#[derive(clap::Args)]
pub struct EnginesBench {
    /// Records produced on each engine (as fast as acknowledged).
    #[arg(long, default_value_t = 50_000)]
    records: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Records per produce request.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Records per second of the paced run that measures acknowledgement latency.
    #[arg(long, default_value_t = 2_000)]
    paced_rate: u64,
    /// Records each of the two regions writes in the replication runs.
    #[arg(long, default_value_t = 20_000)]
    replication_records: u64,
    /// Records per second each region writes in the replication runs.
    #[arg(long, default_value_t = 2_000)]
    replication_rate: u32,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Linux reports a process's CPU time in `/proc` in ticks of 1/100 s (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds process `pid` has spent.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: fields count from after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / TICKS_PER_SECOND)
}

/// The processes of one engine's region, whose CPU time is read.
struct Measured {
    names: Vec<String>,
    pids: Vec<u32>,
}

impl Measured {
    fn cpu(&self) -> Vec<f64> {
        self.pids
            .iter()
            .map(|p| cpu_seconds(*p).unwrap_or(f64::NAN))
            .collect()
    }
}

struct Row {
    engine: &'static str,
    produce_mb_per_s: f64,
    produce_records_per_s: f64,
    ack: Quantiles,
    paced_ack: Quantiles,
    read_mb_per_s: f64,
    /// Per process: name and CPU seconds per MB produced (produce and read back).
    cpu_per_mb: Vec<(String, f64)>,
    replication: Replication,
    /// The same on regions of two nodes each (JetStream only: pulls and serving divided).
    replication_two_nodes: Option<Replication>,
}

/// Two regions on one engine replicating to each other.
struct Replication {
    /// End-to-end lag (produced in one region to readable in the other), steady state.
    lag: LagMs,
    /// After a cut link healed: how long until records flowed again, and the rate the
    /// backlog caught up at.
    resume_s: Option<f64>,
    catchup_mb_per_s: Option<f64>,
}

/// Replication between two regions of `nodes_per_region` nodes each on `engine`, through
/// the scenarios.
async fn replication_of(
    engine: Engine,
    args: &EnginesBench,
    nodes_per_region: usize,
) -> Result<Replication> {
    let options = Options {
        regions: Some(2),
        engine,
        nodes_per_region,
        records: args.replication_records,
        size: args.size,
        rate: Some(args.replication_rate),
        quiet: true,
        ..Options::default()
    };
    let lag = scenario("active-active", &options).await?;
    let heal = scenario("partition-heal", &options).await?;
    Ok(Replication {
        lag: lag.steady_lag_ms,
        resume_s: heal.resume_s,
        catchup_mb_per_s: heal.catchup_mb_per_s,
    })
}

fn print_replication(what: &str, r: &Replication) {
    println!("  {:<9} {what}: lag {}", "", r.lag.line());
    println!(
        "  {:<9} after a heal: resumed in {}, caught up at {}",
        "",
        r.resume_s.map_or("-".into(), |s| format!("{s:.2} s")),
        r.catchup_mb_per_s
            .map_or("-".into(), |m| format!("{m:.1} MB/s"))
    );
}

pub async fn run(args: EnginesBench) -> Result<()> {
    let probe = tempfile::tempdir().context("creating the disk probe's directory")?;
    let write_mb_per_s = sequential_write_rate(probe.path(), 256)?;
    let fsync = Quantiles::of(&fsync_latency(probe.path(), 2_000)?);
    drop(probe);
    println!(
        "engines: one region, {} records of {} B in requests of {}, {} in flight, {} partitions; paced run at {}/s",
        args.records, args.size, args.batch, args.concurrency, args.partitions, args.paced_rate
    );
    println!("  disk sequential write (1 MiB + fdatasync)  {write_mb_per_s:.0} MB/s");
    println!("  disk fdatasync of 4 KiB  {}", fsync.line());
    let mut rows = Vec::new();
    for engine in [StorageEngineKind::Embedded, StorageEngineKind::JetStream] {
        let row = one(engine, &args).await?;
        println!(
            "  {:<9} produce {:>8.0} records/s {:>7.1} MB/s  ack {}",
            row.engine,
            row.produce_records_per_s,
            row.produce_mb_per_s,
            row.ack.line()
        );
        println!(
            "  {:<9} paced   ack {}   read back {:>7.1} MB/s",
            "",
            row.paced_ack.line(),
            row.read_mb_per_s
        );
        let cpu: Vec<String> = row
            .cpu_per_mb
            .iter()
            .map(|(name, s)| format!("{name} {:.3}", s))
            .collect();
        println!("  {:<9} CPU s/MB  {}", "", cpu.join(", "));
        print_replication("replication between two regions", &row.replication);
        if let Some(r) = &row.replication_two_nodes {
            print_replication(
                "two regions of two nodes each (pulls and serving divided)",
                r,
            );
        }
        rows.push(row);
    }
    if let Some(path) = &args.json {
        let figures = serde_json::json!({
            "disk_write_mb_per_s": write_mb_per_s,
            "disk_fdatasync_ms": fsync.json(),
            "engines": rows.iter().map(|r| serde_json::json!({
                "engine": r.engine,
                "produce_mb_per_s": r.produce_mb_per_s,
                "produce_records_per_s": r.produce_records_per_s,
                "ack_ms": r.ack.json(),
                "paced_ack_ms": r.paced_ack.json(),
                "read_mb_per_s": r.read_mb_per_s,
                "cpu_s_per_mb": r.cpu_per_mb.iter().map(|(n, s)| serde_json::json!({"process": n, "seconds": s})).collect::<Vec<_>>(),
                "replication_lag_ms": r.replication.lag,
                "replication_resume_s": r.replication.resume_s,
                "replication_catchup_mb_per_s": r.replication.catchup_mb_per_s,
                "two_nodes_per_region": r.replication_two_nodes.as_ref().map(|t| serde_json::json!({
                    "replication_lag_ms": t.lag,
                    "replication_resume_s": t.resume_s,
                    "replication_catchup_mb_per_s": t.catchup_mb_per_s,
                })),
            })).collect::<Vec<_>>(),
        });
        write_json(path, &figures)?;
    }
    Ok(())
}

async fn one(engine: StorageEngineKind, args: &EnginesBench) -> Result<Row> {
    let dir = tempfile::tempdir().context("creating the benchmark's directory")?;
    let cluster = match engine {
        StorageEngineKind::JetStream => Some(
            LocalCluster::start(&dir.path().join("jetstream"), 3)
                .context("starting the JetStream cluster (is nats-server installed?)")?,
        ),
        StorageEngineKind::Embedded => None,
    };
    let data_dir = dir.path().join("region");
    let mut config = NodeConfig::loopback("bench", &data_dir);
    if let Some(cluster) = &cluster {
        config.storage.engine = StorageEngineKind::JetStream;
        config.storage.jetstream = Some(JetStreamSettings::new(cluster.all_urls()));
    }
    let config_file = dir.path().join("region.toml");
    std::fs::write(&config_file, toml::to_string(&config)?)
        .with_context(|| format!("writing {}", config_file.display()))?;
    let launcher = Processes::current_exe()?;
    let mut process = launcher.launch(&config_file).await?;
    let bound =
        scenarios::launch::wait_ready(process.as_mut(), &data_dir, Duration::from_secs(60)).await?;
    let mut processes = Measured {
        names: vec!["georouter".to_string()],
        pids: vec![process.pid().context("the node's process id")?],
    };
    if let Some(cluster) = &cluster {
        for (i, pid) in cluster.pids().into_iter().enumerate() {
            processes.names.push(format!("nats-server {i}"));
            processes.pids.push(pid);
        }
    }
    let client = client::Client::connect(&bound.grpc.to_string()).await?;
    let topic = "bench-engines";
    client
        .create_topic(topic, args.partitions, None)
        .await
        .context("creating the benchmark topic")?;
    let before = processes.cpu();
    let load = Load {
        records: args.records,
        size: args.size,
        batch: args.batch,
        concurrency: args.concurrency,
        partitions: args.partitions,
        rate: 0,
    };
    let started = Instant::now();
    let ack = Quantiles::of(&drive(&client, topic, &load, None).await?);
    let elapsed = started.elapsed().as_secs_f64();
    let produced_mb = (args.records as f64 * args.size as f64) / 1e6;
    let started = Instant::now();
    let fetched = client
        .fetch_all(topic, client::earliest(), vec![])
        .await
        .context("reading everything back")?;
    let read_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        fetched.records.len() as u64 == args.records,
        "read back {} records of {}",
        fetched.records.len(),
        args.records
    );
    let after = processes.cpu();
    let paced = Load {
        records: (args.paced_rate * 5).max(args.batch),
        rate: args.paced_rate,
        ..load
    };
    let paced_ack = Quantiles::of(&drive(&client, topic, &paced, None).await?);
    process.stop().await?;
    drop(cluster);
    let scenario_engine = match engine {
        StorageEngineKind::Embedded => Engine::Embedded,
        StorageEngineKind::JetStream => Engine::JetStream,
    };
    let replication = replication_of(scenario_engine, args, 1).await?;
    let replication_two_nodes = match engine {
        StorageEngineKind::Embedded => None,
        StorageEngineKind::JetStream => Some(replication_of(scenario_engine, args, 2).await?),
    };
    Ok(Row {
        engine: match engine {
            StorageEngineKind::Embedded => "embedded",
            StorageEngineKind::JetStream => "jetstream",
        },
        produce_mb_per_s: produced_mb / elapsed,
        produce_records_per_s: args.records as f64 / elapsed,
        ack,
        paced_ack,
        read_mb_per_s: produced_mb / read_s,
        cpu_per_mb: processes
            .names
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(name, (b, a))| (name.clone(), (a - b) / produced_mb))
            .collect(),
        replication,
        replication_two_nodes,
    })
}
