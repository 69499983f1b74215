//! The facade of the replication service: [`Replicator::start`] builds a node (its QUIC
//! endpoint on `[listen] replication`, the task book, the planner) and starts its tasks;
//! the rest reads status, changes tasks, runs failovers and shuts it down.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::Broker;
use broker::broker::blocking_here;
use topology::{LinkKind, Topology};

use crate::crew::Crew;
use crate::dr::{self, FailoverError, FailoverMode, FailoverReport, OriginRpo};
use crate::identity::seal::{Sealer, Verifier};
use crate::identity::tls::{Identity, TlsError};
use crate::link::endpoint;
use crate::node::Authorship;
use crate::node::{self, Node, Parts, Planner, upkeep};
use crate::observe::{Metrics, StatusBoard, SubLogKey, SubLogStatus};
use crate::pull::{REFUSAL_HOLD_HEARTBEATS, planner};
use crate::settings::LinkSettings;
use crate::tasks::book::Change;
use crate::tasks::catalog::Catalog;
use crate::tasks::{ChangeError, TaskBook, TaskError, TaskRecord, TaskSpec, TaskState};
use crate::wire::FrameLimits;
use broker::catalog::record::Author;

pub struct ReplicatorConfig {
    pub region: String,
    pub identity: Identity,
    /// The deployment's regions, links and residency policy, validated for this region.
    pub topology: Topology,
    pub tasks: Vec<TaskSpec>,
    pub settings: LinkSettings,
    /// A digest of the configuration every region must share, sent in Hello; a
    /// neighbour's that differs is reported as drift.
    pub config_digest: String,
    /// Where its counters and gauges go (kept across restarts of the service in one
    /// process, so that they go on counting).
    pub metrics: Arc<Metrics>,
    /// On a region of several nodes, the nodes this one divides the pulls among
    /// (`crate::crew`); `None`: it pulls everything itself.
    pub crew: Option<Crew>,
}

/// Why the replication service did not start (fatal: the node does not start).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the region's replication key cannot seal control records: {0}")]
    Seal(#[from] crate::identity::seal::SealError),
    #[error("metadata: {0}")]
    Meta(#[from] broker::meta::MetaError),
    #[error("stored task record \"{name}\" does not decode: {source}")]
    StoredTask {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("replication socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// A link as reported by status: every configured neighbour, connected or not.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinkStatus {
    pub peer: String,
    /// The neighbour's configuration digest differs from this region's (its residency,
    /// region names or config principals drifted); `None` until it said.
    pub config_drift: Option<bool>,
    /// Up by its heartbeats.
    pub up: bool,
    /// A connection is open (it may be down by its heartbeats).
    pub connected: bool,
    pub kind: LinkKind,
    pub cost: u32,
    /// The region that dials this link.
    pub dialer: String,
    pub rtt_ms: Option<f64>,
    pub remote: Option<SocketAddr>,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// The codec this region packs batches with on the link now (`None`: sent as stored).
    #[serde(default)]
    pub compression: Option<String>,
    /// The most bytes of batches the open connection held at once, read to be sent and
    /// received not yet applied; each stays within `[replication] link_buffer_bytes`.
    #[serde(default)]
    pub send_buffer_peak_bytes: u64,
    #[serde(default)]
    pub receive_buffer_peak_bytes: u64,
}

/// How this region reaches another one now.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteStatus {
    pub region: String,
    /// The neighbour data of `region` is pulled from, cheapest first, with path costs.
    pub via: Vec<(String, u64)>,
}

pub struct Replicator {
    node: Arc<Node>,
    endpoint: quinn::Endpoint,
    /// DR tasks with a failover running here: a second one waits for the first's answer.
    failovers: Mutex<HashSet<String>>,
}

/// Holds a task's place in `Replicator::failovers` until dropped.
struct FailoverSlot<'a> {
    failovers: &'a Mutex<HashSet<String>>,
    task: String,
}

impl Drop for FailoverSlot<'_> {
    fn drop(&mut self) {
        self.failovers
            .lock()
            .expect("failovers lock")
            .remove(&self.task);
    }
}

/// The task records stored in `broker`'s metadata.
pub(crate) fn stored_task_records(broker: &Broker) -> Result<Vec<TaskRecord>, StartError> {
    let mut stored = Vec::new();
    for (name, bytes) in broker.meta().task_records()? {
        let record = serde_json::from_slice::<TaskRecord>(&bytes)
            .map_err(|source| StartError::StoredTask { name, source })?;
        stored.push(record);
    }
    Ok(stored)
}

/// The task catalog as stored, with the config's tasks added (made by the region's
/// configuration, an administrator's), as this node knows it: nothing is stored.
pub(crate) fn stored_catalog(
    broker: &Broker,
    config: &ReplicatorConfig,
    sealer: &Sealer,
) -> Result<Catalog, StartError> {
    let seal = |bytes: &[u8]| sealer.seal(bytes);
    let author = Author {
        region: &config.region,
        principal: None,
        admin: true,
        sealer: Some(&seal),
    };
    Ok(Catalog::load(
        stored_task_records(broker)?,
        &config.tasks,
        &author,
        &config.topology,
    )?)
}

/// [`stored_catalog`], with this region's records sealed and stored.
fn load_catalog(
    broker: &Broker,
    config: &ReplicatorConfig,
    sealer: &Sealer,
) -> Result<Catalog, StartError> {
    let catalog = stored_catalog(broker, config, sealer)?;
    let seal = |bytes: &[u8]| sealer.seal(bytes);
    // Groups and principals made here before replication ran carry no seal yet.
    broker.groups().seal_own(&config.region, &seal);
    broker.principals().seal_own(&config.region, &seal);
    for spec in &config.tasks {
        if let Some(r) = catalog.record(&spec.name).filter(|r| r.spec != *spec) {
            tracing::warn!(event = "config_task_overridden", task = %spec.name, version = r.version, "[[tasks]] differs from the task as changed at run time; the run-time version stays");
        }
    }
    for record in catalog.records() {
        node::persist(broker, &record)?;
    }
    // A task's "latest" start is the moment it first ran here; record it now.
    for task in catalog.active().iter().filter(|t| t.running()) {
        broker
            .meta()
            .task_started(task.name(), broker::record::now_ms())?;
    }
    Ok(catalog)
}

/// The node's QUIC endpoint on `socket`, serving and dialling with the region's identity:
/// links and data-only connections, or (a node pulling and serving its share of a region of
/// several, `data_only`) data-only connections alone.
pub(crate) fn open_endpoint(
    config: &ReplicatorConfig,
    socket: std::net::UdpSocket,
    data_only: bool,
) -> Result<quinn::Endpoint, StartError> {
    let settings = &config.settings;
    let sock = socket2::SockRef::from(&socket);
    sock.set_recv_buffer_size(settings.socket_buffer_bytes)?;
    sock.set_send_buffer_size(settings.socket_buffer_bytes)?;
    socket.set_nonblocking(true)?;
    let (server, client) = endpoint::configs(&config.identity, settings, data_only)?;
    let mut quic = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    quic.set_default_client_config(client);
    Ok(quic)
}

/// A node of `config`'s region with the task set `catalog`.
pub(crate) fn build_node(
    config: ReplicatorConfig,
    broker: Arc<Broker>,
    catalog: Catalog,
    planner: Planner,
    sealer: Sealer,
) -> Arc<Node> {
    let settings = config.settings;
    let max_batch = broker.storage_config().max_stored_batch();
    // Two refusal holds: a sub-log that got nothing from its best source nor from the
    // next-best one.
    let stall_after = settings.heartbeat_interval * REFUSAL_HOLD_HEARTBEATS * 2;
    Node::new(Parts {
        region: config.region.clone(),
        broker,
        limits: FrameLimits {
            max_frame: settings.max_frame_bytes.max(max_batch + (64 << 10)),
            // A batch is bounded by its frame (and the format), never by this
            // region's max_batch_bytes: that limits what is produced here, and an
            // origin with a larger one wrote batches that must still replicate.
            max_batch: broker::batch::MAX_BATCH_ON_DISK,
        },
        settings,
        topology: config.topology,
        config_digest: config.config_digest,
        tasks: TaskBook::new(catalog),
        status: StatusBoard::new(stall_after),
        planner,
        sealer,
        verifier: Verifier::new(&config.identity),
        metrics: config.metrics,
        crew: config.crew,
    })
}

impl Replicator {
    /// Validates the tasks and peers, starts the endpoint on `socket`, and begins dialling.
    pub fn start(
        config: ReplicatorConfig,
        broker: Arc<Broker>,
        socket: std::net::UdpSocket,
    ) -> Result<Self, StartError> {
        let sealer = Sealer::new(&config.identity)?;
        let catalog = load_catalog(&broker, &config, &sealer)?;
        let quic = open_endpoint(&config, socket, false)?;
        let (planner_handle, planner_events) = Planner::channel();
        let node = build_node(config, broker, catalog, planner_handle, sealer);
        for task in node.active_tasks().iter() {
            for checkpoint in node.broker.meta().checkpoints(task.name())? {
                let key = SubLogKey {
                    topic: checkpoint.topic,
                    partition: checkpoint.partition,
                    origin: checkpoint.origin,
                };
                node.status.restored(task.name(), &key, checkpoint.offset);
            }
        }
        node.tracker.spawn(endpoint::accept_loop(
            node.clone(),
            quic.clone(),
            endpoint::Accepts::Links,
        ));
        for peer in node.topology.neighbours(&node.region) {
            if peer.dial && !peer.addresses.is_empty() {
                node.tracker.spawn(endpoint::dial_loop(
                    node.clone(),
                    quic.clone(),
                    peer.region.clone(),
                    peer.addresses,
                ));
            }
        }
        node.tracker.spawn(upkeep::checkpoint_loop(node.clone()));
        node.tracker.spawn(upkeep::routing_loop(node.clone()));
        node.tracker.spawn(upkeep::history_loop(node.clone()));
        node.tracker.spawn(crate::groups::sync_loop(node.clone()));
        node.tracker
            .spawn(planner::run(node.clone(), planner_events));
        if let Some(crew) = &node.crew {
            node.tracker
                .spawn(replan_on_changes(node.clone(), crew.members.clone()));
        }
        node.links_changed();
        node.broker
            .set_write_gate(Arc::new(dr::Gate(Arc::downgrade(&node))));
        tracing::info!(region = %node.region, address = ?quic.local_addr().ok(), tasks = node.active_tasks().len(), peers = node.peers.len(), "replication started");
        Ok(Replicator {
            node,
            endpoint: quic,
            failovers: Mutex::default(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.node.metrics
    }

    /// The console's history: lag and throughput per task and origin, and the RPO, over
    /// the last hour; and the interval between samples.
    pub fn history(&self) -> (Duration, Vec<crate::observe::history::Sample>) {
        (
            self.node.settings.history_interval,
            self.node.history.samples(),
        )
    }

    /// Per origin, what this region has not yet received: the RPO if it took over now.
    pub fn rpo(&self) -> Vec<OriginRpo> {
        dr::rpo_by_origin(&self.status())
    }

    /// Promotes this region to primary of DR task `task` (see `dr`). The failover runs as
    /// a task of its own: a caller that goes away (a closed HTTP request) does not leave
    /// it half done, with the task fenced. One failover per task at a time.
    pub async fn failover(
        self: &Arc<Self>,
        task: &str,
        mode: FailoverMode,
        timeout: Duration,
    ) -> Result<FailoverReport, FailoverError> {
        self.detached(task, move |this, task| async move {
            dr::failover(&*this, &task, mode, timeout).await
        })
        .await
    }

    /// Returns DR task `task` to this region, its first source, by a planned failover
    /// (run like [`Replicator::failover`]).
    pub async fn failback(
        self: &Arc<Self>,
        task: &str,
        timeout: Duration,
    ) -> Result<FailoverReport, FailoverError> {
        self.detached(task, move |this, task| async move {
            dr::failback(&*this, &task, timeout).await
        })
        .await
    }

    async fn detached<F, Fut>(
        self: &Arc<Self>,
        task: &str,
        run: F,
    ) -> Result<FailoverReport, FailoverError>
    where
        F: FnOnce(Arc<Self>, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<FailoverReport, FailoverError>> + Send,
    {
        if !self
            .failovers
            .lock()
            .expect("failovers lock")
            .insert(task.to_string())
        {
            return Err(FailoverError::InProgress(task.to_string()));
        }
        let this = self.clone();
        let task = task.to_string();
        tokio::spawn(async move {
            let _slot = FailoverSlot {
                failovers: &this.failovers,
                task: task.clone(),
            };
            let mut report = run(this.clone(), task.clone()).await?;
            report.adopted_delay_messages = this.adopt_delay_messages(&task).await;
            Ok(report)
        })
        .await
        .expect("the failover task does not panic")
    }

    /// After this region was promoted for `task`: holds the delay messages of the task's
    /// topics that other regions held and had not fired. Failures are logged: the
    /// failover stands, and a later failover or failback adopts again.
    async fn adopt_delay_messages(&self, task: &str) -> usize {
        let Some(task) = self.node.tasks.task(task) else {
            return 0;
        };
        let broker = &self.node.broker;
        let mut adopted = 0;
        for topic in broker.topics() {
            let name = &topic.name;
            if broker::broker::held::base_topic(name).is_some() || !task.matches(name) {
                continue;
            }
            match broker.adopt_held(name).await {
                Ok(n) => adopted += n,
                Err(e) => {
                    tracing::error!(event = "delay_adoption_failed", task = task.name(), topic = %name, error = %e, "adopting the delay messages another region held failed");
                }
            }
        }
        adopted
    }

    /// The regions where consumer group `group` consumes `topic` with its progress shared:
    /// every region of each running task whose `groups` pattern names the group and whose
    /// topics include `topic`, sorted (empty: none).
    pub fn group_regions(&self, group: &str, topic: &str) -> Vec<String> {
        crate::tasks::group_regions(&self.node.tasks.active(), group, topic)
    }

    /// The primary of a running DR task that shares `group`'s progress on `topic`.
    pub fn group_primary(&self, group: &str, topic: &str) -> Option<String> {
        crate::tasks::group_primary(&self.node.tasks.active(), group, topic)
    }

    /// Whether this region has a route to `region` now.
    pub fn has_route(&self, region: &str) -> bool {
        dr::Host::reachable(self, region)
    }

    /// Every task's sub-log status, with lag computed now.
    pub fn status(&self) -> Vec<SubLogStatus> {
        self.node.status_now()
    }

    /// Every configured link of this region, by neighbour.
    pub fn links(&self) -> Vec<LinkStatus> {
        let links = self.node.links.load();
        let me = &self.node.region;
        self.node
            .topology
            .neighbours(me)
            .into_iter()
            .map(|n| {
                let open = links.get(&n.region);
                let (up, srtt) = open.map_or((false, None), |l| l.health_now());
                let connection = open.map(|l| &l.ctx.connection);
                let stats = connection.map(|c| c.stats());
                LinkStatus {
                    config_drift: self.node.config_drift(&n.region),
                    up,
                    connected: open.is_some(),
                    kind: n.kind,
                    cost: n.cost,
                    dialer: if n.dial { me.clone() } else { n.region.clone() },
                    rtt_ms: srtt.map(|d| d.as_secs_f64() * 1000.0),
                    remote: connection.map(|c| c.remote_address()),
                    sent_bytes: stats.as_ref().map_or(0, |s| s.udp_tx.bytes),
                    received_bytes: stats.as_ref().map_or(0, |s| s.udp_rx.bytes),
                    compression: open
                        .and_then(|l| l.ctx.compression.in_use())
                        .map(|c| c.name().to_string()),
                    send_buffer_peak_bytes: open.map_or(0, |l| l.ctx.send_budget.peak() as u64),
                    receive_buffer_peak_bytes: open
                        .map_or(0, |l| l.ctx.receive_budget.peak() as u64),
                    peer: n.region,
                }
            })
            .collect()
    }

    /// The deployment as this region sees it, for the topology picture.
    pub fn topology_view(&self) -> crate::observe::TopologyView {
        let local = self
            .links()
            .into_iter()
            .filter(|l| l.connected)
            .map(|l| (l.peer, (l.sent_bytes, l.received_bytes)))
            .collect();
        let states = self.node.link_states();
        crate::observe::topology::view(
            &self.node.region,
            &self.node.topology,
            &states,
            |r| self.has_route(r),
            &local,
        )
    }

    /// How each other region is reached now.
    pub fn routes(&self) -> Vec<RouteStatus> {
        let view = self.node.view();
        self.node
            .topology
            .regions()
            .filter(|r| *r != self.node.region)
            .map(|r| RouteStatus {
                region: r.to_string(),
                via: view.candidates(&self.node.region, r).to_vec(),
            })
            .collect()
    }

    /// Every task (not deleted) with its version.
    pub fn tasks(&self) -> Vec<TaskRecord> {
        let snapshot = self.node.tasks.snapshot();
        snapshot
            .records
            .values()
            .filter(|r| !r.deleted)
            .cloned()
            .collect()
    }

    pub fn task(&self, name: &str) -> Option<TaskRecord> {
        self.node.tasks.snapshot().record(name).cloned()
    }

    /// Creates a task at `by`'s request; fails if one of that name exists.
    pub fn create_task(&self, spec: TaskSpec, by: &Authorship) -> Result<TaskRecord, ChangeError> {
        let name = spec.name.clone();
        self.change(
            Change {
                name: &name,
                spec: Some(spec),
                if_version: None,
                create_only: true,
            },
            by,
        )
    }

    /// Creates or replaces task `spec.name`, if its version is `if_version` (0: absent).
    pub fn put_task(
        &self,
        spec: TaskSpec,
        if_version: Option<u64>,
        by: &Authorship,
    ) -> Result<TaskRecord, ChangeError> {
        let name = spec.name.clone();
        self.change(
            Change {
                name: &name,
                spec: Some(spec),
                if_version,
                create_only: false,
            },
            by,
        )
    }

    pub fn delete_task(
        &self,
        name: &str,
        if_version: Option<u64>,
        by: &Authorship,
    ) -> Result<TaskRecord, ChangeError> {
        self.change(
            Change {
                name,
                spec: None,
                if_version,
                create_only: false,
            },
            by,
        )
    }

    /// Pauses or resumes a task.
    pub fn set_task_state(
        &self,
        name: &str,
        state: TaskState,
        if_version: Option<u64>,
        by: &Authorship,
    ) -> Result<TaskRecord, ChangeError> {
        let mut spec = self
            .task(name)
            .ok_or_else(|| ChangeError::NotFound(name.to_string()))?
            .spec;
        spec.state = state;
        self.change(
            Change {
                name,
                spec: Some(spec),
                if_version,
                create_only: false,
            },
            by,
        )
    }

    /// A change of a shared record (a consumer group's settings, a principal) made here,
    /// passed on to every region. It stores the record (an fsync), so it runs as blocking
    /// code.
    pub fn change_shared<S: crate::node::Carried>(
        &self,
        change: broker::catalog::Change<'_, S>,
        by: &Authorship,
    ) -> Result<broker::catalog::Record<S>, broker::catalog::ChangeError> {
        blocking_here(|| self.node.change_shared(change, by))
    }

    /// A change made here. It stores the record (an fsync), so it runs as blocking code:
    /// called on an async worker, the worker's other tasks move to another thread first.
    fn change(&self, change: Change<'_>, by: &Authorship) -> Result<TaskRecord, ChangeError> {
        blocking_here(|| self.node.change_task(change, by))
    }

    /// Why this region may not accept produce on `topic` now (its DR tasks' fence).
    pub fn refuses_produce(&self, topic: &str) -> Option<String> {
        dr::refusal(&self.node, topic)
    }

    /// Refuses every link on `socket` until `until` is cancelled, then lets the socket go:
    /// what a node of a region of several does while another node replicates, so that a
    /// neighbour dialling it is refused at once and dials the region's next address.
    pub async fn refuse_links(
        identity: &Identity,
        socket: std::net::UdpSocket,
        until: tokio_util::sync::CancellationToken,
    ) -> Result<(), StartError> {
        let server = quinn::ServerConfig::with_crypto(Arc::new(identity.server_config()?));
        Ok(endpoint::refuse_links(server, socket, until).await?)
    }

    /// Stops pulling and serving, closes the links, and saves checkpoints.
    pub async fn shut_down(&self) {
        endpoint::stop_node(&self.node, &self.endpoint, b"region shutting down").await;
        let node = self.node.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || upkeep::save_checkpoints(&node)).await {
            tracing::error!(event = "checkpoints_save_failed", error = %e, "saving replication checkpoints failed");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Plans again whenever the region's live nodes change: a node that died leaves its share
/// to the others, a new one takes its own.
async fn replan_on_changes(
    node: Arc<Node>,
    mut members: tokio::sync::watch::Receiver<Vec<String>>,
) {
    loop {
        tokio::select! {
            changed = members.changed() => if changed.is_err() { return },
            () = node.stop.cancelled() => return,
        }
        node.planner.replan();
    }
}

impl dr::Host for Replicator {
    fn region(&self) -> &str {
        &self.node.region
    }

    fn record(&self, task: &str) -> Option<TaskRecord> {
        self.task(task)
    }

    fn put(&self, spec: TaskSpec, version: u64) -> Result<TaskRecord, ChangeError> {
        // A failover is made by the region taking over, a region of the task.
        self.put_task(spec, Some(version), &Authorship::region())
    }

    fn lag_of(&self, task: &str) -> Vec<SubLogStatus> {
        self.status()
            .into_iter()
            .filter(|s| s.task == task && s.origin != self.node.region)
            .collect()
    }

    fn quiet_period(&self) -> Duration {
        // An advertisement round or three, and a round trip or two on the slowest link.
        let rtt = self
            .links()
            .iter()
            .filter_map(|l| l.rtt_ms)
            .fold(0.0_f64, f64::max);
        self.node.settings.advertise_interval * 3 + Duration::from_secs_f64(rtt * 2.0 / 1000.0)
    }

    fn reachable(&self, region: &str) -> bool {
        self.routes()
            .iter()
            .any(|r| r.region == region && !r.via.is_empty())
    }
}
