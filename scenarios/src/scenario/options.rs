//! The flags every scenario takes, their checks and what they set in a scenario's plan.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::wan::Impairment;
use crate::workload::{self, Payload};

/// The flags every scenario takes.
#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// Regions (active-active and partition-heal; the others have a fixed shape).
    #[arg(long)]
    pub regions: Option<usize>,
    /// What holds each region's data: its data directory, or a JetStream cluster of three
    /// nats-server processes started for it (nats-server from $NATS_SERVER, the PATH or
    /// `~/.cache/georouter/nats`).
    #[arg(long, value_enum, default_value_t = crate::cluster::Engine::Embedded)]
    pub engine: crate::cluster::Engine,
    /// Georouter nodes per region (above 1 with --engine jetstream only: the nodes share
    /// the region's cluster, one holds the links and plans at a time, all pull and serve a
    /// share of the replication, and producers write through all of them).
    #[arg(long, default_value_t = 1)]
    pub nodes_per_region: usize,
    /// Records each producing region writes.
    #[arg(long, default_value_t = 20_000)]
    pub records: u64,
    /// Record size in bytes (at least 16: sequence number and produce time).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// What fills each record after its header: fill (one byte repeated), text (JSON-like
    /// events) or random (incompressible).
    #[arg(long, value_enum, default_value_t = Payload::Fill)]
    pub payload: Payload,
    /// Records per second per producing region (default: as fast as acknowledged).
    #[arg(long)]
    pub rate: Option<u32>,
    /// One-way delay of every link, in ms.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Uniform jitter added to the delay, in ms.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Random datagram loss, in percent.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Bandwidth cap of every link, each way, in Mbit/s.
    #[arg(long)]
    pub bandwidth_mbps: Option<f64>,
    /// Every region's `[replication] compression`: auto, off, lz4 or zstd.
    #[arg(long, default_value = "auto")]
    pub compression: replicator::CompressionSetting,
    /// Every region's `[replication] min_rate_mbps` (the congestion window's floor);
    /// default: the region's default.
    #[arg(long)]
    pub min_rate_mbps: Option<u64>,
    /// Produce for this many seconds instead of stopping after --records.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Run each region as a `georouter serve` process instead of in this process.
    #[arg(long)]
    pub processes: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the data directories (and print where they are).
    #[arg(long)]
    pub keep: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            regions: None,
            engine: crate::cluster::Engine::Embedded,
            nodes_per_region: 1,
            records: 20_000,
            size: 1024,
            payload: Payload::Fill,
            rate: None,
            delay_ms: 0,
            jitter_ms: 0,
            loss: 0.0,
            bandwidth_mbps: None,
            compression: replicator::CompressionSetting::Auto,
            min_rate_mbps: None,
            duration: None,
            processes: false,
            json: None,
            keep: false,
            quiet: true,
        }
    }
}

impl Options {
    pub(crate) fn check(&self) -> Result<()> {
        if self.size < workload::HEADER_BYTES {
            bail!(
                "--size {}: records carry a {}-byte header, so the size must be at least that",
                self.size,
                workload::HEADER_BYTES
            );
        }
        if self.nodes_per_region == 0 || self.nodes_per_region > MAX_NODES_PER_REGION {
            bail!(
                "--nodes-per-region {}: from 1 to {MAX_NODES_PER_REGION}",
                self.nodes_per_region
            );
        }
        if self.nodes_per_region > 1 && self.engine != crate::cluster::Engine::JetStream {
            bail!(
                "--nodes-per-region {}: several nodes of a region share its storage, which needs --engine jetstream",
                self.nodes_per_region
            );
        }
        if !(0.0..100.0).contains(&self.loss) {
            bail!("--loss {}: a percentage from 0 to below 100", self.loss);
        }
        if self.records == 0 && self.duration.is_none() {
            bail!("--records 0: nothing to replicate (or give --duration)");
        }
        if self.duration.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
            bail!("--duration must be a positive number of seconds");
        }
        if self
            .bandwidth_mbps
            .is_some_and(|b| !(b > 0.0 && b.is_finite()))
        {
            bail!("--bandwidth-mbps must be positive");
        }
        if self.rate == Some(0) {
            bail!("--rate 0: give a positive rate, or leave it out for as fast as acknowledged");
        }
        Ok(())
    }

    /// The emulated links' impairment these options ask for.
    pub fn impairment(&self) -> Impairment {
        Impairment {
            delay: Duration::from_millis(self.delay_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            loss: self.loss / 100.0,
            bandwidth_bps: self.bandwidth_mbps.map(|m| (m * 1e6) as u64),
        }
    }

    /// The regions' settings these options ask for (`deploy::merge` form).
    pub fn node_settings(&self) -> serde_json::Value {
        let mut replication = serde_json::json!({ "compression": self.compression });
        if let Some(rate) = self.min_rate_mbps {
            replication["min_rate_mbps"] = rate.into();
        }
        serde_json::json!({ "replication": replication })
    }

    /// `--regions`, which a fixed-shape scenario only accepts at its own count.
    pub(crate) fn regions_or(&self, scenario: &str, default: usize, fixed: bool) -> Result<usize> {
        match self.regions {
            None => Ok(default),
            Some(n) if fixed && n != default => {
                bail!("--regions {n}: {scenario} always runs {default} regions")
            }
            Some(n) if n < 2 => bail!("--regions {n}: a scenario needs at least 2 regions"),
            Some(n) if n > REGION_NAMES.len() => {
                bail!("--regions {n}: at most {} regions", REGION_NAMES.len())
            }
            Some(n) => Ok(n),
        }
    }
}

/// Most nodes a region runs with `--nodes-per-region`.
const MAX_NODES_PER_REGION: usize = 8;

/// Region names for scenarios with a variable number of regions.
pub(crate) const REGION_NAMES: [&str; 8] = ["eu", "us", "ap", "sa", "af", "me", "oc", "ca"];
