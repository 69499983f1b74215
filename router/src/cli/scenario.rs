//! `georouter scenario NAME` and `georouter demo`: run a multi-region scenario, print the
//! report (and write it as JSON), exit non-zero when an invariant failed.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use scenarios::cluster::Cluster;
use scenarios::launch::Launcher;
use scenarios::report::Report;
use scenarios::scenario::{NAMES, Options};

use crate::launch::{InProcess, Processes};

#[derive(clap::Args)]
pub struct ScenarioArgs {
    /// active-active, dr-failover, consumer-failover, compliance-mirror, vpc-relay or partition-heal.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(NAMES))]
    name: String,
    #[command(flatten)]
    options: Options,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the regions (and their consoles) up after the report, until Ctrl-C.
    #[arg(long)]
    hold: bool,
    /// Records each region writes.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Records per second per region.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// One-way delay of every link, in ms.
    #[arg(long, default_value_t = 30)]
    delay_ms: u64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub async fn run(args: ScenarioArgs) -> Result<()> {
    let report = run_scenario(&args.name, &args.options, false).await?;
    if !report.passed {
        bail!(
            "scenario {} failed its invariants (see the report)",
            args.name
        );
    }
    Ok(())
}

/// The README's main job: active-active on three in-process regions over 30 ms links.
pub async fn demo(args: DemoArgs) -> Result<()> {
    let options = Options {
        regions: Some(3),
        records: args.records,
        rate: Some(args.rate),
        delay_ms: args.delay_ms,
        json: args.json,
        quiet: false,
        ..Options::default()
    };
    let report = run_scenario("active-active", &options, args.hold).await?;
    if !report.passed {
        bail!("the demo failed its invariants (see the report)");
    }
    Ok(())
}

async fn run_scenario(name: &str, options: &Options, hold: bool) -> Result<Report> {
    let launcher: Box<dyn Launcher> = if options.processes {
        Box::new(Processes::current_exe()?)
    } else {
        Box::new(InProcess)
    };
    let on_ready =
        |cluster: &Cluster| print_consoles(cluster, &format!("regions up ({})", cluster.mode));
    eprintln!("running scenario {name} …");
    let (report, cluster) =
        scenarios::scenario::run(name, options, launcher.as_ref(), &on_ready).await?;
    println!("{}", report.human());
    if let Some(path) = &options.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if hold {
        print_consoles(&cluster, "holding the regions up");
        eprintln!("Ctrl-C to stop");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    cluster.stop().await.context("stopping the regions")?;
    Ok(report)
}

/// Where each region's console is, and the admin token, under `headline`.
fn print_consoles(cluster: &Cluster, headline: &str) {
    eprintln!("{headline}; consoles (admin token {}):", cluster.token);
    for region in &cluster.regions {
        eprintln!("  {:<6} {}", region.name, region.console_url());
    }
}
