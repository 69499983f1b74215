//! What every way of starting region nodes on one machine shares: the deployment's
//! certificates, a node's config, and the order in which regions start. The scenario
//! [`Cluster`](crate::cluster::Cluster) (and the benchmarks that run on it) and the
//! integration tests' in-process nodes are built from these.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use replicator::TaskSpec;
use topology::{ResidencySpec, TopologySpec};

/// A deployment CA and a certificate per region, written into a directory
/// (`ca.pem`, `ca.key`, `<region>.pem`, `<region>.key`).
#[derive(Clone, Debug)]
pub struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    /// Writes the CA and certificates of `regions`, valid for `days`, into `dir`.
    pub fn write(dir: &Path, regions: &[String], days: u32) -> Result<Self> {
        replicator::certs::write_deployment(dir, regions, days)
            .with_context(|| format!("writing certificates to {}", dir.display()))?;
        Ok(Certificates {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self, region: &str) -> PathBuf {
        self.dir.join(format!("{region}.pem"))
    }

    pub fn key(&self, region: &str) -> PathBuf {
        self.dir.join(format!("{region}.key"))
    }
}

/// What a node's config says, for [`node_config`].
pub struct NodePlan<'a> {
    pub region: &'a str,
    pub data_dir: &'a Path,
    pub certs: &'a Certificates,
    /// Regions and links; a region dials the addresses given here.
    pub topology: &'a TopologySpec,
    pub residency: &'a ResidencySpec,
    pub tasks: &'a [TaskSpec],
}

/// The config of a node of `plan.region` with every listener on loopback port 0 and
/// replication on, as the config file's sections (a `georouter serve` config, or a
/// `NodeConfig` by deserializing it). Sections not named take their defaults.
/// Auth is `open` (callers without credentials are let in; the console still needs the
/// cluster's token when one is set): every listener is on loopback, and the harness
/// drives the nodes as anonymous clients.
pub fn node_config(plan: &NodePlan) -> serde_json::Value {
    let region = plan.region;
    serde_json::json!({
        "region": { "id": region, "data_dir": plan.data_dir },
        "listen": { "grpc": "127.0.0.1:0", "replication": "127.0.0.1:0", "console": "127.0.0.1:0", "rocketmq": "127.0.0.1:0" },
        "replication": {
            "ca": plan.certs.ca(),
            "cert": plan.certs.cert(region),
            "key": plan.certs.key(region),
        },
        "regions": plan.topology.regions,
        "links": plan.topology.links,
        "residency": plan.residency,
        "tasks": plan.tasks,
        "auth": { "mode": "open" },
    })
}

/// Merges `extra` into `config`: objects key by key, anything else replaced.
pub fn merge(config: &mut serde_json::Value, extra: &serde_json::Value) {
    match (config, extra) {
        (serde_json::Value::Object(config), serde_json::Value::Object(extra)) => {
            for (key, value) in extra {
                match config.get_mut(key) {
                    Some(held) => merge(held, value),
                    None => {
                        config.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (_, serde_json::Value::Null) => {}
        (config, extra) => *config = extra.clone(),
    }
}

/// `regions` in a line joined by cost-10 links, each region dialling the one before it
/// (so they start in this order).
pub fn line(regions: &[&str]) -> TopologySpec {
    TopologySpec {
        regions: regions
            .iter()
            .map(|name| topology::RegionSpec {
                name: name.to_string(),
                address: None,
                other_addresses: Vec::new(),
            })
            .collect(),
        links: regions
            .windows(2)
            .map(|pair| {
                let mut link = topology::LinkSpec::new(pair[0], pair[1], 10);
                link.dial = Some(pair[1].to_string());
                link
            })
            .collect(),
    }
}

/// The order in which to start `regions` of `topology`: each after the regions it dials
/// (their addresses must be known), which must be among `regions` or in `running`.
pub fn start_order(
    topology: &TopologySpec,
    regions: &[&str],
    running: &[&str],
) -> Result<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < regions.len() {
        let known = |r: &str| running.contains(&r) || order.iter().any(|o| o == r);
        let next = regions
            .iter()
            .find(|name| {
                !known(name)
                    && topology.links.iter().all(|l| {
                        l.dialer() != **name || l.other(name).is_some_and(&known)
                    })
            })
            .with_context(|| {
                format!(
                    "no region of {regions:?} can start: the links dial in a cycle or a region they dial is not running"
                )
            })?;
        order.push(next.to_string());
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_start_after_the_regions_they_dial() {
        let mut topology = TopologySpec::mesh(&["a", "b", "c"]);
        // By default the smaller name dials: a dials b and c, b dials c.
        assert_eq!(
            start_order(&topology, &["a", "b", "c"], &[]).unwrap(),
            ["c", "b", "a"]
        );
        assert_eq!(start_order(&topology, &["a"], &["b", "c"]).unwrap(), ["a"]);
        assert!(start_order(&topology, &["a"], &["b"]).is_err());
        topology.links[0].dial = Some("b".into());
        topology.links[2].dial = Some("c".into());
        topology.links[1].dial = Some("a".into());
        // b dials a, c dials b, a dials c: a cycle.
        assert!(start_order(&topology, &["a", "b", "c"], &[]).is_err());
        let line = line(&["a", "b", "c"]);
        assert_eq!(
            start_order(&line, &["c", "b", "a"], &[]).unwrap(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn settings_merge_section_by_section() {
        let mut config =
            serde_json::json!({"replication": {"ca": "x", "hop_limit": 3}, "tasks": [1]});
        merge(
            &mut config,
            &serde_json::json!({"replication": {"hop_limit": 5}, "storage": {"segment_bytes": 1}}),
        );
        assert_eq!(
            config,
            serde_json::json!({"replication": {"ca": "x", "hop_limit": 5}, "tasks": [1], "storage": {"segment_bytes": 1}})
        );
        merge(&mut config, &serde_json::Value::Null);
        assert_eq!(config["tasks"], serde_json::json!([1]));
    }
}
