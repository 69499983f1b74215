//! `georouter soak --duration SECS`: the randomized soak of ordinary operations (see
//! `scenarios::soak`): prints the report, exits non-zero when it failed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use scenarios::launch::Launcher;
use scenarios::soak::{SoakOptions, run as run_soak};

use crate::launch::{InProcess, Processes};

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long the chaos runs, in seconds (then the regions must converge).
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// One-way delay of every link, in ms.
    #[arg(long, default_value_t = 10)]
    delay_ms: u64,
    /// Seconds between chaos actions.
    #[arg(long, default_value_t = 2.0)]
    every: f64,
    /// The random seed (printed in the report, to run the same choices again).
    #[arg(long)]
    seed: Option<u64>,
    /// Run each region as a `georouter serve` process (kills are SIGKILL).
    #[arg(long)]
    processes: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No line per chaos action.
    #[arg(long)]
    quiet: bool,
}

pub async fn run(args: SoakArgs) -> Result<()> {
    if !(args.duration.is_finite() && args.duration >= 0.0 && args.duration < 1e7) {
        bail!(
            "--duration must be a number of seconds, got {}",
            args.duration
        );
    }
    if !(args.every.is_finite() && args.every >= 0.1 && args.every < 1e6) {
        bail!("--every must be at least 0.1 seconds, got {}", args.every);
    }
    let launcher: Box<dyn Launcher> = if args.processes {
        Box::new(Processes::current_exe()?)
    } else {
        Box::new(InProcess)
    };
    let options = SoakOptions {
        duration: Duration::from_secs_f64(args.duration),
        delay: Duration::from_millis(args.delay_ms),
        seed: args.seed.unwrap_or_else(rand::random),
        every: Duration::from_secs_f64(args.every),
        quiet: args.quiet,
    };
    eprintln!(
        "soak: {} s, seed {}, {} …",
        args.duration,
        options.seed,
        launcher.mode()
    );
    let report = run_soak(&options, launcher.as_ref()).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.passed {
        bail!("the soak failed: {}", report.problems.join("; "));
    }
    Ok(())
}
