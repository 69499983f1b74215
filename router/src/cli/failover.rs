//! `georouter failover --task NAME [--forced]` and `georouter failback --task NAME`: call
//! the console of the region to promote (`--console`, `--token` as for `georouter task`)
//! and print the report: the promoted region, the new epoch and, per origin, what had not
//! replicated when it took over (the realised RPO).

use anyhow::Result;
use replicator::{FailoverMode, FailoverReport, OriginRpo};

use super::task::ConsoleArg;

#[derive(clap::Args)]
pub struct FailoverArgs {
    /// The DR task.
    #[arg(long)]
    task: String,
    /// Switch now, without waiting for this region to catch up; reports the RPO.
    #[arg(long)]
    forced: bool,
    /// How long a planned failover waits for this region to catch up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    #[command(flatten)]
    console: ConsoleArg,
}

#[derive(clap::Args)]
pub struct FailbackArgs {
    /// The DR task.
    #[arg(long)]
    task: String,
    /// How long to wait for this region to receive what was written in its absence.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    #[command(flatten)]
    console: ConsoleArg,
}

pub async fn failover(args: FailoverArgs) -> Result<()> {
    let mode = if args.forced {
        FailoverMode::Forced
    } else {
        FailoverMode::Planned
    };
    let report = args
        .console
        .client()
        .failover(&args.task, mode, args.timeout)
        .await?;
    print(args.console.json, &report)
}

pub async fn failback(args: FailbackArgs) -> Result<()> {
    let report = args
        .console
        .client()
        .failback(&args.task, args.timeout)
        .await?;
    print(args.console.json, &report)
}

fn print(json: bool, r: &FailoverReport) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let mode = match r.mode {
        FailoverMode::Planned => "planned",
        FailoverMode::Forced => "forced",
    };
    println!(
        "task {}: {mode} {} is the primary now (was {}), epoch {}, after {:.2} s",
        r.task, r.promoted, r.previous, r.epoch, r.waited_s,
    );
    let missing = |o: &&OriginRpo| o.records != 0 || o.unknown;
    if !r.rpo.iter().any(|o| missing(&o)) {
        println!("RPO: nothing known to be missing");
    }
    for o in r.rpo.iter().filter(missing) {
        println!(
            "RPO from {}: {} records, {} bytes{}, up to {:.1} s of writes",
            o.origin,
            o.records,
            o.bytes,
            if o.unknown {
                " and more not known (a sub-log's end was never advertised here)"
            } else {
                ""
            },
            o.seconds
        );
    }
    Ok(())
}
