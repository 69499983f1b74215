//! `georouter failover --task NAME [--forced]` and `georouter failback --task NAME`: call
//! the console of the region to promote (`--console`, `--token` as for `georouter task`)
//! and print the report: the promoted region, the new epoch and, per origin, what had not
//! replicated when it took over (the realised RPO).

use anyhow::Result;

use super::task::{Console, ConsoleArg};

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
    let mode = if args.forced { "forced" } else { "planned" };
    let body = serde_json::json!({"mode": mode, "timeout_s": args.timeout.as_secs_f64()});
    call(args.console, &args.task, "failover", body).await
}

pub async fn failback(args: FailbackArgs) -> Result<()> {
    let body = serde_json::json!({"timeout_s": args.timeout.as_secs_f64()});
    call(args.console, &args.task, "failback", body).await
}

async fn call(
    console: ConsoleArg,
    task: &str,
    action: &str,
    body: serde_json::Value,
) -> Result<()> {
    let json = console.json;
    let reply = Console::new(console)
        .call(
            "POST",
            &format!("/api/v1/tasks/{task}/{action}"),
            None,
            Some(body),
        )
        .await?;
    let r = &reply.body;
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "task {}: {} {} is the primary now (was {}), epoch {}, after {:.2} s",
        r["task"].as_str().unwrap_or_default(),
        r["mode"].as_str().unwrap_or_default(),
        r["promoted"].as_str().unwrap_or_default(),
        r["previous"].as_str().unwrap_or_default(),
        r["epoch"],
        r["waited_s"].as_f64().unwrap_or_default(),
    );
    let rpo = r["rpo"].as_array().cloned().unwrap_or_default();
    let missing = |o: &serde_json::Value| o["records"] != 0 || o["unknown"] == true;
    if !rpo.iter().any(missing) {
        println!("RPO: nothing known to be missing");
    }
    for o in rpo.iter().filter(|o| missing(o)) {
        println!(
            "RPO from {}: {} records, {} bytes{}, up to {:.1} s of writes",
            o["origin"].as_str().unwrap_or_default(),
            o["records"],
            o["bytes"],
            if o["unknown"] == true {
                " and more not known (a sub-log's end was never advertised here)"
            } else {
                ""
            },
            o["seconds"].as_f64().unwrap_or_default()
        );
    }
    Ok(())
}
