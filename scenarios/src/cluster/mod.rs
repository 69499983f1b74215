//! A deployment of region nodes on loopback, each link between two regions running through
//! its own [`WanLink`] (or, with [`ClusterPlan::direct_links`], without one).
//!
//! Wiring: a link's dialling region is given the WAN relay's address for the other end,
//! so every replication packet of that link crosses the emulator. A region therefore
//! starts after the regions it dials (their addresses must be known); each region's config
//! names only the addresses it dials. Certificates come from a fresh deployment CA. The
//! regions may start all at once ([`Cluster::start`]) or some later
//! ([`Cluster::start_only`], then [`Cluster::start_regions`]).
//!
//! With [`ClusterPlan::nodes_per_region`] above 1 (JetStream only) a region is several
//! nodes on its cluster: the dialling side gets every node's address (a relay each), the
//! first node starts first and takes the region's replication lease, and the others
//! start once it holds it, so that the first node's console is the region's.

mod region;

pub use region::{Link, Region, RegionNode};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use console_api::client::ConsoleClient;
use replicator::TaskSpec;
use topology::{ResidencySpec, TopologySpec};

use crate::deploy::{Certificates, NodePlan, merge, node_config, start_order};
use crate::launch::{Bound, Launcher, RegionProcess, wait_ready};
use crate::wan::{Counts, Impairment, WanLink};

use jetstream_engine::local_cluster::LocalCluster;

/// How long a node may take to write its runtime file.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    /// Regions and links; addresses are filled in at start.
    pub topology: TopologySpec,
    pub residency: ResidencySpec,
    pub tasks: Vec<TaskSpec>,
    /// Applied to every link, both ways.
    pub impairment: Impairment,
    /// Links run direct, without WAN relays: the dialling region is given the other
    /// region's own address, and `impairment` does not apply.
    pub direct_links: bool,
    /// Link heartbeat: down after two silent intervals.
    pub heartbeat_ms: u64,
    /// Config sections merged into every node's config, key by key (say `{"storage":
    /// {...}}` or `{"replication": {"stream_window_bytes": ...}}`), or `Null`.
    pub node_settings: serde_json::Value,
    /// Where each region keeps its data: its data directory (the embedded engine), or a
    /// JetStream cluster of three nats-server processes the harness starts for it.
    pub engine: Engine,
    /// Georouter nodes per region (more than one only on JetStream, where they share the
    /// region's cluster).
    pub nodes_per_region: usize,
}

/// `--engine`: what holds each region's data in a scenario.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    #[default]
    Embedded,
    #[value(name = "jetstream")]
    JetStream,
}

impl ClusterPlan {
    /// `topology` with `tasks`, its links direct (no WAN relays), default heartbeat and
    /// node settings, no residency rules.
    pub fn direct(topology: TopologySpec, tasks: Vec<TaskSpec>) -> Self {
        ClusterPlan {
            topology,
            residency: ResidencySpec::default(),
            tasks,
            impairment: Impairment::default(),
            direct_links: true,
            heartbeat_ms: replicator::LinkSettings::default()
                .heartbeat_interval
                .as_millis() as u64,
            node_settings: serde_json::Value::Null,
            engine: Engine::Embedded,
            nodes_per_region: 1,
        }
    }
}

pub struct Cluster {
    /// The running (or killed) regions, in the order of the plan.
    pub regions: Vec<Region>,
    /// The links' WAN relays (none with direct links).
    pub links: Vec<Link>,
    /// The console admin token of every region.
    pub token: String,
    pub mode: &'static str,
    plan: ClusterPlan,
    certs: Certificates,
    /// Certificates, configs and data; removed on drop unless kept.
    dir: Option<tempfile::TempDir>,
    /// Each region's JetStream cluster, with `Engine::JetStream` (kept across the region's
    /// restarts: it is the region's storage).
    jetstream: Vec<(String, LocalCluster)>,
}

impl Cluster {
    /// Starts every region of `plan` with `launcher` and waits until each reports all of
    /// its links up.
    pub async fn start(plan: &ClusterPlan, launcher: &dyn Launcher) -> Result<Cluster> {
        let names: Vec<&str> = plan
            .topology
            .regions
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        Self::start_only(plan, launcher, &names).await
    }

    /// Starts only `regions` of `plan` (the certificates cover all of them), and waits
    /// until their links to one another are up; [`start_regions`](Self::start_regions)
    /// starts the others.
    pub async fn start_only(
        plan: &ClusterPlan,
        launcher: &dyn Launcher,
        regions: &[&str],
    ) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("georouter-scenario-")
            .tempdir()
            .context("creating the scenario directory")?;
        let names: Vec<String> = plan
            .topology
            .regions
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let certs = Certificates::write(&dir.path().join("certs"), &names, 2)?;
        let mut cluster = Cluster {
            regions: Vec::new(),
            links: Vec::new(),
            token: random_token(),
            mode: launcher.mode(),
            plan: plan.clone(),
            certs,
            dir: Some(dir),
            jetstream: Vec::new(),
        };
        cluster.start_regions(regions, launcher).await?;
        cluster.wait_links_up().await?;
        Ok(cluster)
    }

    /// Starts `regions` (each after the regions it dials, which must be among them or
    /// running) and returns once each serves; their links may still be coming up (see
    /// [`wait_links_up`](Self::wait_links_up)).
    pub async fn start_regions(&mut self, regions: &[&str], launcher: &dyn Launcher) -> Result<()> {
        let running: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
        for name in start_order(&self.plan.topology, regions, &running)? {
            self.start_region(&name, launcher).await?;
        }
        let names: Vec<&String> = self.plan.topology.regions.iter().map(|r| &r.name).collect();
        self.regions
            .sort_by_key(|r| names.iter().position(|n| **n == r.name));
        Ok(())
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("scenario directory").path()
    }

    async fn start_region(&mut self, name: &str, launcher: &dyn Launcher) -> Result<()> {
        let plan = &self.plan;
        // This region's view: only the regions it dials have addresses (their relays, or
        // their own with direct links), one per node.
        let mut topology = plan.topology.clone();
        for region in &mut topology.regions {
            region.address = None;
            region.other_addresses.clear();
        }
        for spec in plan.topology.links.iter().filter(|l| l.dialer() == name) {
            let other = spec.other(name).expect("link of this region");
            let addresses: Vec<SocketAddr> = if plan.direct_links {
                self.regions
                    .iter()
                    .find(|r| r.name == other)
                    .map(Region::replication_addresses)
                    .unwrap_or_default()
            } else {
                self.links
                    .iter()
                    .find(|l| l.spec.between == spec.between)
                    .map(Link::addresses)
                    .unwrap_or_default()
            };
            let Some((first, others)) = addresses.split_first() else {
                bail!("region {name} dials {other}, which has not started");
            };
            topology.set_address(other, *first);
            if let Some(r) = topology.regions.iter_mut().find(|r| r.name == other) {
                r.other_addresses = others.to_vec();
            }
        }
        let count = plan.nodes_per_region.max(1);
        let first = self.start_node(name, 0, &topology, launcher).await?;
        if count > 1 {
            let console = ConsoleClient::new(first.bound.console, Some(&self.token));
            wait_replicating(&console, name).await?;
        }
        let mut others = Vec::new();
        for index in 1..count {
            others.push(self.start_node(name, index, &topology, launcher).await?);
        }
        let region = Region::new(name, first, others);
        // The links others dial to this region get their relays now, one per node.
        let relayed = self
            .plan
            .topology
            .links
            .iter()
            .filter(|l| !self.plan.direct_links && l.joins(name) && l.dialer() != name);
        for spec in relayed {
            let mut relays = region.replication_addresses().into_iter().map(|node| {
                WanLink::start_with(node, self.plan.impairment)
                    .with_context(|| format!("starting a WAN relay of link {:?}", spec.between))
            });
            let wan = relays.next().expect("a region has a node")?;
            let more = relays.collect::<Result<Vec<_>>>()?;
            self.links.push(Link {
                spec: spec.clone(),
                wan,
                more,
            });
        }
        self.regions.push(region);
        Ok(())
    }

    /// Starts node `index` of region `name` (node 0 has the region's own data directory
    /// and config file names) and, once it serves, pins the addresses it bound in its
    /// config, so that a restart binds them again: the relays point at them.
    async fn start_node(
        &mut self,
        name: &str,
        index: usize,
        topology: &TopologySpec,
        launcher: &dyn Launcher,
    ) -> Result<RegionNode> {
        let node = match index {
            0 => name.to_string(),
            n => format!("{name}-{n}"),
        };
        let data_dir = self.dir().join(&node);
        let plan = &self.plan;
        let mut config = node_config(&NodePlan {
            region: name,
            data_dir: &data_dir,
            certs: &self.certs,
            topology,
            residency: &plan.residency,
            tasks: &plan.tasks,
        });
        merge(
            &mut config,
            &serde_json::json!({
                "replication": { "heartbeat_interval_ms": plan.heartbeat_ms },
                "console": { "admin_tokens": [self.token] },
            }),
        );
        merge(&mut config, &plan.node_settings);
        if plan.engine == Engine::JetStream {
            let servers = self.jetstream_of(name)?.all_urls();
            merge(
                &mut config,
                &serde_json::json!({
                    "storage": { "engine": "jetstream", "jetstream": { "servers": servers } },
                }),
            );
        }
        let text = toml::to_string(&config).context("writing the node config")?;
        let config_file = self.dir().join(format!("{node}.toml"));
        std::fs::write(&config_file, text)
            .with_context(|| format!("writing {}", config_file.display()))?;

        let mut process = launcher
            .launch(&config_file)
            .await
            .with_context(|| format!("starting region {name} (node {node})"))?;
        let bound = wait_ready(process.as_mut(), &data_dir, READY_WITHIN)
            .await
            .with_context(|| format!("region {name} (node {node})"))?;
        let mut fixed: toml::Table = toml::from_str(&std::fs::read_to_string(&config_file)?)?;
        fixed.insert(
            "listen".into(),
            toml::Value::Table(toml::Table::from_iter([
                (
                    "grpc".to_string(),
                    toml::Value::String(bound.grpc.to_string()),
                ),
                (
                    "replication".to_string(),
                    toml::Value::String(bound.replication.to_string()),
                ),
                (
                    "console".to_string(),
                    toml::Value::String(bound.console.to_string()),
                ),
            ])),
        );
        std::fs::write(&config_file, toml::to_string(&fixed)?)
            .with_context(|| format!("writing {}", config_file.display()))?;
        let client = client::Client::connect(&bound.grpc.to_string()).await?;
        Ok(RegionNode {
            data_dir,
            bound,
            client,
            config_file,
            process: Some(process),
        })
    }

    /// Region `name`'s JetStream cluster, started the first time it is asked for.
    fn jetstream_of(&mut self, name: &str) -> Result<&LocalCluster> {
        if !self.jetstream.iter().any(|(n, _)| n == name) {
            let dir = self.dir().join(format!("{name}-jetstream"));
            let started = LocalCluster::start(&dir, 3)
                .with_context(|| format!("starting region {name}'s JetStream cluster"))?;
            self.jetstream.push((name.to_string(), started));
        }
        Ok(&self
            .jetstream
            .iter()
            .find(|(n, _)| n == name)
            .expect("started above")
            .1)
    }

    /// Waits until every running region reports its links to the other running regions
    /// up.
    pub async fn wait_links_up(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        for region in self.regions.iter().filter(|r| r.running()) {
            let expected: Vec<&str> = self
                .plan
                .topology
                .links
                .iter()
                .filter_map(|l| l.other(&region.name))
                .filter(|other| self.regions.iter().any(|r| r.name == *other && r.running()))
                .collect();
            loop {
                let up: Vec<String> = region
                    .console(&self.token)
                    .links()
                    .await?
                    .into_iter()
                    .filter(|l| l.up)
                    .map(|l| l.peer)
                    .collect();
                if expected.iter().all(|p| up.iter().any(|u| u == p)) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "region {}: links to {expected:?} not all up within {READY_WITHIN:?} (up: {up:?})",
                        region.name
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        self.regions.iter().map(|r| r.name.clone()).collect()
    }

    pub fn region(&self, name: &str) -> &Region {
        self.regions
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no region {name} in the scenario"))
    }

    pub fn link(&self, a: &str, b: &str) -> &Link {
        self.links
            .iter()
            .find(|l| l.spec.joins(a) && l.spec.joins(b))
            .unwrap_or_else(|| panic!("no link between {a} and {b}"))
    }

    /// Cuts every link of `region`.
    pub fn isolate(&self, region: &str) {
        for link in self.links.iter().filter(|l| l.spec.joins(region)) {
            link.cut();
        }
    }

    /// Ends `region` abruptly, every node of it (see [`RegionProcess::kill`]).
    pub async fn kill(&mut self, region: &str) -> Result<()> {
        let entry = self
            .regions
            .iter_mut()
            .find(|r| r.name == region)
            .with_context(|| format!("no region {region}"))?;
        for process in entry.processes_mut() {
            if let Some(mut process) = process.take() {
                process.kill().await?;
            }
        }
        Ok(())
    }

    /// Starts a killed `region` again from its configs (the same data directories and
    /// addresses), its first node first, and waits until every node serves.
    pub async fn restart(&mut self, region: &str, launcher: &dyn Launcher) -> Result<()> {
        let token = self.token.clone();
        let entry = self
            .regions
            .iter_mut()
            .find(|r| r.name == region)
            .with_context(|| format!("no region {region}"))?;
        if entry.process.is_some() {
            bail!("region {region} is running");
        }
        let (process, client) =
            relaunch(launcher, &entry.config_file, &entry.data_dir, &entry.bound).await?;
        entry.client = client;
        entry.process = Some(process);
        if !entry.others.is_empty() {
            wait_replicating(&entry.console(&token), region).await?;
        }
        for node in &mut entry.others {
            let (process, client) =
                relaunch(launcher, &node.config_file, &node.data_dir, &node.bound).await?;
            node.client = client;
            node.process = Some(process);
        }
        Ok(())
    }

    /// The WAN relays' counts, summed.
    pub fn wan_counts(&self) -> Counts {
        let mut total = Counts::default();
        for link in &self.links {
            total += link.counts();
        }
        total
    }

    /// Keeps the scenario directory (data, configs, certificates) after the run.
    pub fn keep_dir(&mut self) -> Option<PathBuf> {
        self.dir.take().map(|d| d.keep())
    }

    /// Where the data, configs and certificates are.
    pub fn path(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// Shuts every running region down, all at once (one by one, the last ones would
    /// spend their time redialling the stopped ones).
    pub async fn stop(mut self) -> Result<()> {
        let stopping = self.regions.iter_mut().flat_map(|region| {
            let name = region.name.clone();
            region.processes_mut().filter_map(move |process| {
                let process = process.take()?;
                let name = name.clone();
                Some(async move {
                    process
                        .stop()
                        .await
                        .with_context(|| format!("stopping region {name}"))
                })
            })
        });
        futures_util::future::join_all(stopping)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    }
}

/// Starts a killed node again from `config_file` (it pins the addresses it bound first)
/// and waits until it serves.
async fn relaunch(
    launcher: &dyn Launcher,
    config_file: &Path,
    data_dir: &Path,
    bound: &Bound,
) -> Result<(Box<dyn RegionProcess>, client::Client)> {
    // A killed node leaves its runtime file behind: readiness is the new one.
    let stale = crate::launch::runtime_file(data_dir);
    match std::fs::remove_file(&stale) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", stale.display())),
    }
    let mut process = launcher
        .launch(config_file)
        .await
        .with_context(|| format!("restarting the node of {}", config_file.display()))?;
    wait_ready(process.as_mut(), data_dir, READY_WITHIN)
        .await
        .with_context(|| format!("the node of {}", config_file.display()))?;
    let client = client::Client::connect(&bound.grpc.to_string()).await?;
    Ok((process, client))
}

/// Waits until the node behind `console` replicates for its region (holds its replication
/// lease).
async fn wait_replicating(console: &ConsoleClient, region: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        if console
            .replication()
            .await
            .is_ok_and(|r| r.replicating_here != Some(false))
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "region {region}: its first node did not take the replication lease within {READY_WITHIN:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn random_token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24)
        .map(|_| {
            let i = rng.random_range(0..36u32);
            char::from_digit(i, 36).expect("digit")
        })
        .collect()
}
