//! A deployment of region nodes on loopback, each link between two regions running through
//! its own [`WanLink`].
//!
//! Wiring: a link's dialling region is given the WAN relay's address for the other end,
//! so every replication packet of that link crosses the emulator. A region therefore
//! starts after the regions it dials (their addresses must be known); each region's config
//! names only the addresses it dials. Certificates come from a fresh deployment CA.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use console_api::client::ConsoleClient;
use replicator::TaskSpec;
use topology::{LinkSpec, ResidencySpec, TopologySpec};

use crate::launch::{Bound, Launcher, RegionProcess, wait_ready};
use crate::wan::{Counts, Impairment, WanLink};

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
    /// Link heartbeat: down after two silent intervals.
    pub heartbeat_ms: u64,
    /// Config sections merged into every node's config (say `{"storage": {...}}`), or
    /// `Null`.
    pub node_settings: serde_json::Value,
}

/// A running region.
pub struct Region {
    pub name: String,
    pub data_dir: PathBuf,
    pub bound: Bound,
    pub client: client::Client,
    process: Option<Box<dyn RegionProcess>>,
}

impl Region {
    pub fn console_url(&self) -> String {
        format!("http://{}/", self.bound.console)
    }

    pub fn running(&self) -> bool {
        self.process.is_some()
    }

    /// A client of this region's console with `token`.
    pub fn console(&self, token: &str) -> ConsoleClient {
        ConsoleClient::new(self.bound.console, Some(token))
    }
}

/// A link and its emulator.
pub struct Link {
    pub spec: LinkSpec,
    pub wan: WanLink,
}

impl Link {
    pub fn name(&self) -> String {
        format!("{}-{}", self.spec.between[0], self.spec.between[1])
    }
}

pub struct Cluster {
    pub regions: Vec<Region>,
    pub links: Vec<Link>,
    /// The console admin token of every region.
    pub token: String,
    pub mode: &'static str,
    /// Certificates, configs and data; removed on drop unless kept.
    dir: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts every region of `plan` with `launcher` and waits until each reports all of
    /// its links up.
    pub async fn start(plan: &ClusterPlan, launcher: &dyn Launcher) -> Result<Cluster> {
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
        let certs = dir.path().join("certs");
        replicator::certs::write_deployment(&certs, &names, 2)
            .with_context(|| format!("writing certificates to {}", certs.display()))?;
        let token = random_token();
        let mut cluster = Cluster {
            regions: Vec::new(),
            links: Vec::new(),
            token,
            mode: launcher.mode(),
            dir: Some(dir),
        };
        while cluster.regions.len() < names.len() {
            let region = names
                .iter()
                .find(|name| {
                    !cluster.has(name)
                        && plan.topology.links.iter().all(|l| {
                            l.dialer() != name.as_str()
                                || l.other(name).is_some_and(|o| cluster.has(o))
                        })
                })
                .context("no region can start: the links dial in a cycle")?
                .clone();
            cluster.start_region(plan, &region, launcher).await?;
        }
        cluster
            .regions
            .sort_by_key(|r| names.iter().position(|n| *n == r.name));
        cluster.wait_links_up(plan).await?;
        Ok(cluster)
    }

    fn has(&self, name: &str) -> bool {
        self.regions.iter().any(|r| r.name == name)
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("scenario directory").path()
    }

    async fn start_region(
        &mut self,
        plan: &ClusterPlan,
        name: &str,
        launcher: &dyn Launcher,
    ) -> Result<()> {
        // This region's view: only the regions it dials have addresses (their relays).
        let mut topology = plan.topology.clone();
        for region in &mut topology.regions {
            region.address = None;
        }
        for link in self.links.iter().filter(|l| l.spec.dialer() == name) {
            let other = link.spec.other(name).expect("link of this region");
            topology.set_address(other, link.wan.address());
        }
        let data_dir = self.dir().join(name);
        let certs = self.dir().join("certs");
        let config = serde_json::json!({
            "region": { "id": name, "data_dir": data_dir },
            "listen": { "grpc": "127.0.0.1:0", "replication": "127.0.0.1:0", "console": "127.0.0.1:0" },
            "replication": {
                "ca": certs.join("ca.pem"),
                "cert": certs.join(format!("{name}.pem")),
                "key": certs.join(format!("{name}.key")),
                "heartbeat_interval_ms": plan.heartbeat_ms,
            },
            "console": { "admin_tokens": [self.token] },
            "regions": topology.regions,
            "links": topology.links,
            "residency": plan.residency,
            "tasks": plan.tasks,
        });
        let mut config = config;
        if let (Some(node), Some(extra)) = (config.as_object_mut(), plan.node_settings.as_object())
        {
            for (key, value) in extra {
                node.insert(key.clone(), value.clone());
            }
        }
        let text = toml::to_string(&config).context("writing the node config")?;
        let config_file = self.dir().join(format!("{name}.toml"));
        std::fs::write(&config_file, text)
            .with_context(|| format!("writing {}", config_file.display()))?;

        let mut process = launcher
            .launch(&config_file)
            .await
            .with_context(|| format!("starting region {name}"))?;
        let bound = wait_ready(process.as_mut(), &data_dir, READY_WITHIN)
            .await
            .with_context(|| format!("region {name}"))?;
        // A restart binds the same addresses: the relays of the links others dial point
        // at them.
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
        // The links others dial to this region get their relays now.
        for spec in plan
            .topology
            .links
            .iter()
            .filter(|l| l.joins(name) && l.dialer() != name)
        {
            let wan = WanLink::start_with(bound.replication, plan.impairment)
                .with_context(|| format!("starting the WAN relay of link {:?}", spec.between))?;
            self.links.push(Link {
                spec: spec.clone(),
                wan,
            });
        }
        self.regions.push(Region {
            name: name.to_string(),
            data_dir,
            bound,
            client,
            process: Some(process),
        });
        Ok(())
    }

    async fn wait_links_up(&self, plan: &ClusterPlan) -> Result<()> {
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        for region in &self.regions {
            let expected: Vec<&str> = plan
                .topology
                .links
                .iter()
                .filter_map(|l| l.other(&region.name))
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
            link.wan.cut();
        }
    }

    /// Ends `region` abruptly (see [`RegionProcess::kill`]).
    pub async fn kill(&mut self, region: &str) -> Result<()> {
        let entry = self
            .regions
            .iter_mut()
            .find(|r| r.name == region)
            .with_context(|| format!("no region {region}"))?;
        if let Some(mut process) = entry.process.take() {
            process.kill().await?;
        }
        Ok(())
    }

    /// Starts a killed `region` again from its config (the same data directory and
    /// addresses), and waits until it serves.
    pub async fn restart(&mut self, region: &str, launcher: &dyn Launcher) -> Result<()> {
        let config_file = self.dir().join(format!("{region}.toml"));
        let entry = self
            .regions
            .iter_mut()
            .find(|r| r.name == region)
            .with_context(|| format!("no region {region}"))?;
        if entry.process.is_some() {
            bail!("region {region} is running");
        }
        // A killed node leaves its runtime file behind: readiness is the new one.
        let stale = crate::launch::runtime_file(&entry.data_dir);
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", stale.display())),
        }
        let mut process = launcher
            .launch(&config_file)
            .await
            .with_context(|| format!("restarting region {region}"))?;
        wait_ready(process.as_mut(), &entry.data_dir, READY_WITHIN)
            .await
            .with_context(|| format!("region {region}"))?;
        entry.client = client::Client::connect(&entry.bound.grpc.to_string()).await?;
        entry.process = Some(process);
        Ok(())
    }

    /// The WAN relays' counts, summed.
    pub fn wan_counts(&self) -> Counts {
        let mut total = Counts::default();
        for link in &self.links {
            let c = link.wan.counts();
            total.forwarded += c.forwarded;
            total.cut += c.cut;
            total.lost += c.lost;
            total.overflow += c.overflow;
            total.bytes += c.bytes;
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
        let stopping = self.regions.iter_mut().filter_map(|region| {
            let name = region.name.clone();
            let process = region.process.take()?;
            Some(async move {
                process
                    .stop()
                    .await
                    .with_context(|| format!("stopping region {name}"))
            })
        });
        futures_util::future::join_all(stopping)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
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
