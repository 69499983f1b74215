//! A region of a [`Cluster`](super::Cluster): its nodes (one, or several sharing the
//! region's JetStream cluster with `--nodes-per-region`) and the WAN relays of its links.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use console_api::client::ConsoleClient;
use topology::LinkSpec;

use crate::launch::{Bound, RegionProcess};
use crate::wan::{Counts, WanLink};

/// One georouter node of a region.
pub struct RegionNode {
    pub data_dir: PathBuf,
    pub bound: Bound,
    pub client: client::Client,
    pub(super) config_file: PathBuf,
    pub(super) process: Option<Box<dyn RegionProcess>>,
}

/// A running region. Its first node is the one the harness talks to (its console is the
/// region's: that node is made to hold the region's replication lease first); every node
/// serves clients.
pub struct Region {
    pub name: String,
    pub data_dir: PathBuf,
    pub bound: Bound,
    pub client: client::Client,
    pub(super) config_file: PathBuf,
    pub(super) process: Option<Box<dyn RegionProcess>>,
    /// The region's other nodes (`--nodes-per-region`), on the same storage.
    pub others: Vec<RegionNode>,
}

impl Region {
    pub(super) fn new(name: &str, first: RegionNode, others: Vec<RegionNode>) -> Self {
        Region {
            name: name.to_string(),
            data_dir: first.data_dir,
            bound: first.bound,
            client: first.client,
            config_file: first.config_file,
            process: first.process,
            others,
        }
    }

    pub fn console_url(&self) -> String {
        format!("http://{}/", self.bound.console)
    }

    pub fn running(&self) -> bool {
        self.process.is_some()
    }

    /// A client of each of the region's nodes, the first node's first.
    pub fn clients(&self) -> Vec<client::Client> {
        std::iter::once(self.client.clone())
            .chain(self.others.iter().map(|n| n.client.clone()))
            .collect()
    }

    /// Each node's process (`None` once killed or stopped), the first node's first.
    pub(super) fn processes_mut(
        &mut self,
    ) -> impl Iterator<Item = &mut Option<Box<dyn RegionProcess>>> {
        std::iter::once(&mut self.process).chain(self.others.iter_mut().map(|n| &mut n.process))
    }

    /// Where each of the region's nodes accepts links, the first node's first.
    pub fn replication_addresses(&self) -> Vec<SocketAddr> {
        std::iter::once(self.bound.replication)
            .chain(self.others.iter().map(|n| n.bound.replication))
            .collect()
    }

    /// The offsets of `origin`'s sub-logs of `topic` this region holds (durable), summed
    /// over partitions: 0 before the topic exists here.
    pub async fn held(&self, topic: &str, origin: &str) -> Result<u64> {
        let described = match self.client.describe_topic(topic).await {
            Ok(d) => d,
            Err(e) if e.code() == Some("unknown-topic") => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        Ok(described
            .partitions
            .iter()
            .flat_map(|p| &p.sub_logs)
            .filter(|s| s.origin == origin)
            .map(|s| s.end_offset)
            .sum())
    }

    /// A client of this region's console with `token`.
    pub fn console(&self, token: &str) -> ConsoleClient {
        ConsoleClient::new(self.bound.console, Some(token))
    }
}

/// A link and its WAN relays: one to each node of the region that is dialled.
pub struct Link {
    pub spec: LinkSpec,
    /// The relay to the dialled region's first node.
    pub wan: WanLink,
    /// The relays to its other nodes.
    pub more: Vec<WanLink>,
}

impl Link {
    pub fn name(&self) -> String {
        format!("{}-{}", self.spec.between[0], self.spec.between[1])
    }

    fn relays(&self) -> impl Iterator<Item = &WanLink> {
        std::iter::once(&self.wan).chain(&self.more)
    }

    /// The relays' addresses, the one to the first node first: where the dialling region
    /// dials.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.relays().map(WanLink::address).collect()
    }

    /// Cuts the link (every relay).
    pub fn cut(&self) {
        self.relays().for_each(WanLink::cut);
    }

    pub fn heal(&self) {
        self.relays().for_each(WanLink::heal);
    }

    /// Datagram counts of every relay, summed.
    pub fn counts(&self) -> Counts {
        let mut total = Counts::default();
        for relay in self.relays() {
            total += relay.counts();
        }
        total
    }
}
