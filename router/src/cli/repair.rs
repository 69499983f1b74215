//! `georouter repair --config FILE --topic T [--partition P] [--origin O] [--refetch]`:
//! repairs damaged segments of a stopped node (see `broker::storage::repair`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use broker::meta::SledMetaStore;
use broker::storage::repair::{RepairMode, repair_partition};

use crate::config::NodeConfig;

#[derive(clap::Args)]
pub struct RepairArgs {
    /// The node's TOML config (its data directory and region).
    #[arg(long)]
    config: PathBuf,
    /// The topic to repair.
    #[arg(long)]
    topic: String,
    /// Only this partition (default: every partition of the topic).
    #[arg(long)]
    partition: Option<u32>,
    /// Only this origin's sub-log (default: every origin).
    #[arg(long)]
    origin: Option<String>,
    /// Cut each damaged sub-log at its first damage so that replication pulls the rest
    /// again (a sub-log replicated from another region only); without it, the damaged
    /// bytes are dropped and their offsets become a gap.
    #[arg(long)]
    refetch: bool,
}

pub fn run(args: RepairArgs) -> Result<()> {
    let config = NodeConfig::load(&args.config)?;
    let data_dir = &config.region.data_dir;
    // The metadata store is locked while the node runs: a repair needs it stopped.
    let meta = SledMetaStore::open(&data_dir.join("meta")).with_context(|| {
        format!(
            "cannot open {}: stop the node before repairing",
            data_dir.join("meta").display()
        )
    })?;
    drop(meta);
    broker::names::validate("topic", &args.topic)?;
    let topic_dir = data_dir.join("topics").join(&args.topic);
    if !topic_dir.is_dir() {
        bail!("no topic '{}' in {}", args.topic, data_dir.display());
    }
    let mut partitions: Vec<u32> = match args.partition {
        Some(p) => vec![p],
        None => std::fs::read_dir(&topic_dir)?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    };
    partitions.sort_unstable();
    let mode = if args.refetch {
        RepairMode::Refetch
    } else {
        RepairMode::Skip
    };
    let mut any = false;
    for p in partitions {
        let dir = topic_dir.join(p.to_string());
        if !dir.is_dir() {
            bail!("topic '{}' has no partition {p}", args.topic);
        }
        for r in repair_partition(&dir, args.origin.as_deref(), &config.region.id, mode)? {
            any = true;
            let offsets: Vec<String> = r
                .offsets
                .iter()
                .map(|(first, last)| match (mode, *last) {
                    (RepairMode::Refetch, _) => format!("{first}- (pulled again)"),
                    (_, u64::MAX) => format!("{first}- (the tail)"),
                    _ => format!("{first}-{last}"),
                })
                .collect();
            println!(
                "{}/{p} origin {}: {} ({} bytes removed; offsets {})",
                args.topic,
                r.origin,
                r.path.display(),
                r.removed_bytes,
                offsets.join(", ")
            );
        }
    }
    if !any {
        println!("nothing damaged");
    }
    Ok(())
}
