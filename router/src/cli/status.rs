//! `georouter status`: one screen of a region through its console API — its links, routes,
//! tasks with lag, RPO per origin, stalled sub-logs and the bytes its topics hold; `--json`
//! prints the same as one object for scripts. Without replication it shows the region
//! and its topics. The screen is made by `render`, pure, from what the API answered.

use std::fmt::Write;

use anyhow::Result;
use console_api::client::{Regions, Replication, Task, Topic};
use serde::Serialize;

use super::task::ConsoleArg;

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    console: ConsoleArg,
}

/// Everything the screen shows.
#[derive(Serialize)]
pub struct Status {
    pub region: String,
    pub regions: Regions,
    pub tasks: Vec<Task>,
    /// `None`: replication is not configured in this region.
    pub replication: Option<Replication>,
    pub topics: Vec<Topic>,
    /// Bytes held, all topics and origins.
    pub bytes_held: u64,
}

pub async fn run(args: StatusArgs) -> Result<()> {
    let client = args.console.client();
    let regions = client.regions().await?;
    let replication = match client.replication().await {
        Ok(r) => Some(r),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => return Err(e.into()),
    };
    let topics = client.topics().await?;
    let bytes_held = topics
        .iter()
        .flat_map(|t| &t.by_partition)
        .flat_map(|p| &p.origins)
        .map(|o| o.bytes)
        .sum();
    let status = Status {
        region: regions.this.clone(),
        regions,
        tasks: client.tasks().await?,
        replication,
        topics,
        bytes_held,
    };
    if args.console.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// The screen.
pub fn render(s: &Status) -> String {
    let mut w = String::new();
    let _ = writeln!(
        w,
        "region {}: {} topics, {} held",
        s.region,
        s.topics.len(),
        mib(s.bytes_held)
    );
    let Some(r) = &s.replication else {
        let _ = writeln!(w, "replication: not configured (a single region)");
        return w;
    };
    let _ = writeln!(w, "\nlinks:");
    for l in &r.links {
        let rtt = l.rtt_ms.map_or("-".into(), |ms| format!("{ms:.1} ms"));
        let drift = if l.config_drift == Some(true) {
            "  CONFIG DRIFT"
        } else {
            ""
        };
        let packed = l
            .compression
            .as_ref()
            .map_or(String::new(), |c| format!("  packed {c}"));
        let _ = writeln!(
            w,
            "  {:<12} {:<5} rtt {:<10} sent {:<12} received {}{packed}{drift}",
            l.peer,
            if l.up { "up" } else { "DOWN" },
            rtt,
            mib(l.sent_bytes),
            mib(l.received_bytes)
        );
    }
    let _ = writeln!(w, "\nroutes:");
    for route in &r.routes {
        let via = match route.via.first() {
            Some((via, cost)) => format!("via {via} (cost {cost})"),
            None => "UNREACHABLE".into(),
        };
        let _ = writeln!(w, "  {:<12} {via}", route.region);
    }
    let _ = writeln!(w, "\ntasks:");
    if s.tasks.is_empty() {
        let _ = writeln!(w, "  none");
    }
    for t in &s.tasks {
        let _ = writeln!(
            w,
            "  {:<16} {:<8} lag {} records / {:.1} s, {:.0} records/s{}",
            t.name,
            format!("{:?}", t.state).to_lowercase(),
            t.status.lag_records,
            t.status.lag_seconds,
            t.status.records_per_s,
            t.status
                .last_error
                .as_ref()
                .map_or(String::new(), |e| format!("  last error: {e}"))
        );
    }
    let _ = writeln!(w, "\nRPO (what this region lacks of each origin):");
    if r.rpo.is_empty() {
        let _ = writeln!(w, "  nothing pulled");
    }
    for o in &r.rpo {
        let _ = writeln!(
            w,
            "  {:<12} {} records, {}, {:.1} s{}",
            o.origin,
            o.records,
            mib(o.bytes),
            o.seconds,
            if o.unknown {
                " (some ends unknown)"
            } else {
                ""
            }
        );
    }
    if !r.takeovers.is_empty() {
        let _ = writeln!(
            w,
            "\ntakeovers (active-active groups delivering another origin's messages here):"
        );
    }
    for t in &r.takeovers {
        let _ = writeln!(
            w,
            "  {} {}/{} of {}: {} delivered here since {} ms",
            t.group, t.topic, t.partition, t.origin, t.delivered, t.since_ms
        );
    }
    let stalled: Vec<_> = r.sub_logs.iter().filter(|s| s.stalled).collect();
    let _ = writeln!(w, "\nstalled sub-logs: {}", stalled.len());
    for s in stalled {
        let _ = writeln!(
            w,
            "  {} {}/{} from {}: {} records behind{}",
            s.task,
            s.topic,
            s.partition,
            s.origin,
            s.lag_records,
            s.last_error
                .as_ref()
                .map_or(String::new(), |e| format!(" ({e})"))
        );
    }
    w
}
