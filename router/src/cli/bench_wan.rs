//! `georouter bench wan`: replication over the project's WAN emulator at several one-way
//! delays, beside the disk's limits measured in the same run.
//!
//! 1. The disk, in a temporary directory: sequential write rate (1 MiB appends, each
//!    followed by `fdatasync`) and the `fdatasync` latency of 4 KiB appends.
//! 2. Per delay, two in-process regions joined through the emulator:
//!    - `active-active` at `--rate` records/s per region: lag (produce call in one region to
//!      readable in the other) of the records produced in the first second, and of the
//!      steady state after it;
//!    - `partition-heal`: the link cut under load and healed; the time until replication
//!      resumed after the heal, and the catch-up rate of the backlog the cut left.
//!
//!    - a cold catch-up: a fresh target region started beside a source that holds a
//!      backlog of `--backlog-mb` (`scenarios::catchup`), timed from the target's start,
//!      link set-up included, until it holds every record;
//!
//!    once per `--compression` setting (say `off,auto`), with `--payload` records, over
//!    links capped at `--bandwidth-mbps` if given.

use std::io::Write as _;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use replicator::CompressionSetting;
use scenarios::catchup::{Backlog, CatchUp, catch_up};
use scenarios::report::{LagMs, Report};
use scenarios::scenario::Options;
use scenarios::workload::Payload;

use super::bench::{Quantiles, write_json};
use super::bench_rocketmq::fsync_latency;
use crate::launch::InProcess;

#[derive(clap::Args)]
pub struct WanBench {
    /// One-way delays to measure, in ms.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 30, 100])]
    delays_ms: Vec<u64>,
    /// Records per second each region writes.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Records each region writes, per scenario.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Record size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// What fills the records: fill, text or random.
    #[arg(long, value_enum, default_value_t = Payload::Fill)]
    payload: Payload,
    /// Compression settings to compare, each run at every delay.
    #[arg(long, value_delimiter = ',', default_values_t = [CompressionSetting::Auto])]
    compression: Vec<CompressionSetting>,
    /// Bandwidth cap of the link, each way, in Mbit/s.
    #[arg(long)]
    bandwidth_mbps: Option<f64>,
    /// `[replication] min_rate_mbps` of both regions (set it at or below the cap).
    #[arg(long)]
    min_rate_mbps: Option<u64>,
    /// Backlog of the cold catch-up, in MB (0: none).
    #[arg(long, default_value_t = 200)]
    backlog_mb: u64,
    /// Sub-logs the backlog is spread over (partitions of topics of up to 4 000).
    #[arg(long, default_value_t = 4)]
    backlog_sub_logs: u32,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// What one delay and compression setting measured.
struct AtDelay {
    delay_ms: u64,
    compression: CompressionSetting,
    /// Bytes that crossed the emulated link, per byte of records produced.
    wire_per_record_byte: f64,
    first: LagMs,
    steady: LagMs,
    resume_s: Option<f64>,
    catchup_mb_per_s: Option<f64>,
    cold: Option<CatchUp>,
}

pub async fn run(args: WanBench) -> Result<()> {
    let probe = tempfile::tempdir().context("creating the disk probe's directory")?;
    let write_mb_per_s = sequential_write_rate(probe.path(), 256)?;
    let fsync = Quantiles::of(&fsync_latency(probe.path(), 2_000)?);
    drop(probe);
    let cap = args
        .bandwidth_mbps
        .map_or("no bandwidth cap".to_string(), |m| {
            format!("links capped at {m} Mbit/s")
        });
    println!(
        "wan: 2 regions in one process, {} B {:?} records, {} records/s per region, {} records each, {cap}",
        args.size, args.payload, args.rate, args.records
    );
    println!("  disk sequential write (1 MiB + fdatasync)  {write_mb_per_s:.0} MB/s");
    println!("  disk fdatasync of 4 KiB  {}", fsync.line());
    let mut rows = Vec::new();
    for &delay_ms in &args.delays_ms {
        for &compression in &args.compression {
            let options = Options {
                regions: Some(2),
                records: args.records,
                size: args.size,
                payload: args.payload,
                rate: Some(args.rate),
                delay_ms,
                bandwidth_mbps: args.bandwidth_mbps,
                compression,
                min_rate_mbps: args.min_rate_mbps,
                quiet: true,
                ..Options::default()
            };
            let lag = scenario("active-active", &options).await?;
            let heal = scenario("partition-heal", &options).await?;
            let cold = match args.backlog_mb {
                0 => None,
                mb => Some(cold_catch_up(&args, mb, &options).await?),
            };
            let row = AtDelay {
                delay_ms,
                compression,
                wire_per_record_byte: heal.wan_bytes as f64 / heal.bytes_produced.max(1) as f64,
                first: lag.first_lag_ms,
                steady: lag.steady_lag_ms,
                resume_s: heal.resume_s,
                catchup_mb_per_s: heal.catchup_mb_per_s,
                cold,
            };
            print_row(&row, args.size);
            rows.push(row);
        }
    }
    let peak_rss_mb = peak_rss_bytes().map(|b| b as f64 / 1e6);
    if let Some(mb) = peak_rss_mb {
        println!(
            "  peak resident memory of this process (both regions, the emulator, the client) {mb:.0} MB"
        );
    }
    if let Some(path) = &args.json {
        let figures = serde_json::json!({
            "disk_write_mb_per_s": write_mb_per_s,
            "disk_fdatasync_ms": fsync.json(),
            "rate": args.rate, "records": args.records, "size": args.size,
            "payload": args.payload, "bandwidth_mbps": args.bandwidth_mbps,
            "min_rate_mbps": args.min_rate_mbps,
            "backlog_sub_logs": args.backlog_sub_logs,
            "peak_rss_mb": peak_rss_mb,
            "delays": rows.iter().map(|r| serde_json::json!({
                "delay_ms": r.delay_ms,
                "compression": r.compression,
                "wire_bytes_per_record_byte": r.wire_per_record_byte,
                "first_second_lag_ms": r.first,
                "steady_lag_ms": r.steady,
                "resume_after_heal_s": r.resume_s,
                "catchup_mb_per_s": r.catchup_mb_per_s,
                "cold_catchup": r.cold.map(|c| serde_json::json!({
                    "records": c.records, "mb": c.bytes as f64 / 1e6,
                    "seconds": c.seconds, "mb_per_s": c.mb_per_s(),
                    "first_record_s": c.first_s,
                    "wire_bytes_per_record_byte": c.wan_bytes as f64 / c.bytes as f64,
                })),
            })).collect::<Vec<_>>(),
        });
        write_json(path, &figures)?;
    }
    Ok(())
}

/// Runs scenario `name` in process; its report, once its invariants held.
pub(super) async fn scenario(name: &str, options: &Options) -> Result<Report> {
    let (report, cluster) =
        scenarios::scenario::run(name, options, &InProcess, &|_: &_| {}).await?;
    cluster.stop().await.context("stopping the regions")?;
    if !report.passed {
        bail!("{name} at {} ms failed its invariants", options.delay_ms);
    }
    Ok(report)
}

fn print_row(row: &AtDelay, size: usize) {
    println!(
        "  {} ms one-way, compression {}: {:.2} bytes on the wire per record byte (partition-heal)",
        row.delay_ms, row.compression, row.wire_per_record_byte
    );
    println!("    lag, first second   {}", row.first.line());
    println!("    lag, steady state   {}", row.steady.line());
    let resume = row
        .resume_s
        .map_or("-".to_string(), |s| format!("{s:.2} s"));
    let catchup = row.catchup_mb_per_s.map_or("-".to_string(), |r| {
        format!("{r:.1} MB/s ({:.0} records/s)", r * 1e6 / size as f64)
    });
    println!("    after a heal: replication resumed in {resume}, backlog caught up at {catchup}");
    if let Some(c) = &row.cold {
        println!(
            "    cold catch-up of {:.0} MB in {} sub-logs: {:.1} MB/s ({:.0} records/s) in {:.2} s, link set-up included; first record after {:.2} s; {:.2} bytes on the wire per record byte",
            c.bytes as f64 / 1e6,
            c.sub_logs,
            c.mb_per_s(),
            c.records as f64 / c.seconds,
            c.seconds,
            c.first_s,
            c.wan_bytes as f64 / c.bytes as f64
        );
    }
}

/// A fresh target catching up `mb` of backlog over links as `options` ask.
async fn cold_catch_up(args: &WanBench, mb: u64, options: &Options) -> Result<CatchUp> {
    let backlog = Backlog {
        records: (mb * 1_000_000).div_ceil(args.size as u64),
        size: args.size,
        payload: args.payload,
        sub_logs: args.backlog_sub_logs,
        impairment: options.impairment(),
        node_settings: options.node_settings(),
    };
    catch_up(&backlog, &InProcess).await
}

/// MB/s of `mib` appends of 1 MiB in `dir`, each followed by `fdatasync`.
pub(super) fn sequential_write_rate(dir: &std::path::Path, mib: usize) -> Result<f64> {
    let path = dir.join("write-probe");
    let mut file = std::fs::File::create(&path).context("creating the write probe")?;
    let block = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    for _ in 0..mib {
        file.write_all(&block)?;
        file.sync_data()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).ok();
    Ok((mib << 20) as f64 / 1e6 / seconds)
}

/// The process's peak resident memory (`VmHWM`, Linux).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}
