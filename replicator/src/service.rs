//! The replication service of a node: one QUIC endpoint on `[listen] replication` that
//! accepts links from its neighbours and dials the links it is the dialling side of, keeps
//! every link's subscriptions and health, the routes, status, metrics and checkpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::Broker;
use broker::meta::TaskCheckpoint;
use proto::link::v1 as pb;
use quinn::{IdleTimeout, VarInt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use topology::{LinkHealth, LinkKind, Topology};

use crate::catalog::{Catalog, ChangeError, Snapshot, TaskRecord};
use crate::inbox::Inbox;
use crate::io::FrameLimits;
use crate::link::{self, LinkCtx, Role};
use crate::metrics::Metrics;
use crate::protocol::{Frame, close};
use crate::routing::{self, RouteView, Routing};
use crate::settings::LinkSettings;
use crate::status::{StatusBoard, SubLogKey, SubLogStatus};
use crate::task::{Task, TaskError, TaskSpec, TaskState};
use crate::tls::{self, Identity, TlsError};

pub struct ReplicatorConfig {
    pub region: String,
    pub identity: Identity,
    /// The deployment's regions, links and residency policy, validated for this region.
    pub topology: Topology,
    pub tasks: Vec<TaskSpec>,
    pub settings: LinkSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("metadata: {0}")]
    Meta(String),
    #[error("replication socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// A link whose connection is open (its health says whether it is up for routing).
pub(crate) struct LinkEntry {
    pub id: u64,
    pub ctx: Arc<LinkCtx>,
    pub connection: quinn::Connection,
    pub health: Arc<Mutex<LinkHealth>>,
    /// The region that dialled this connection.
    pub dialer: String,
    /// The link's control stream (advertisements, heartbeats, link states).
    pub control: mpsc::Sender<Frame>,
    /// UDP bytes already counted in the link metrics.
    pub counted_tx: AtomicU64,
    pub counted_rx: AtomicU64,
}

impl LinkEntry {
    /// Whether the link is up by its heartbeats, and its smoothed RTT.
    pub fn health_now(&self) -> (bool, Option<Duration>) {
        let health = self.health.lock().expect("health lock");
        (health.is_up(), health.srtt())
    }
}

/// Which link pulls a sub-log now.
pub(crate) struct Slot {
    pub id: u64,
    pub link_id: u64,
    /// The task it pulls for; a changed task (a new object) restarts the pull.
    pub task: Arc<Task>,
    /// The incarnation of the local topic it pulls into: a topic deleted and created again
    /// here is another topic, whose pull starts afresh (an idle stream would not notice).
    pub target_incarnation: u64,
    pub cancel: CancellationToken,
}

pub(crate) struct Shared {
    pub region: String,
    pub epoch: u64,
    pub broker: Arc<Broker>,
    /// Serializes changes to the tasks; held across storing one.
    pub catalog: Mutex<Catalog>,
    /// The tasks as readers see them, swapped after each stored change: read without a
    /// lock, so produce (the DR write gate) never waits on a change being stored.
    pub snapshot: arc_swap::ArcSwap<Snapshot>,
    /// Bumped whenever the tasks change (serving streams watch it).
    pub task_generation: tokio::sync::watch::Sender<u64>,
    pub settings: LinkSettings,
    pub limits: FrameLimits,
    pub topology: Topology,
    /// The regions this one has links with.
    pub peers: Vec<String>,
    pub metrics: Arc<Metrics>,
    pub status: StatusBoard,
    pub links: Mutex<HashMap<String, LinkEntry>>,
    pub slots: Mutex<HashMap<SubLogKey, Slot>>,
    /// The latest advertisement of each neighbour whose link is open.
    pub heard: Mutex<HashMap<String, Arc<pb::Advertise>>>,
    /// (sub-log, link) pairs given up (loop, hop limit, a relay missing records), and
    /// when: another source is preferred for a while.
    pub refused: Mutex<HashMap<(SubLogKey, u64), Instant>>,
    pub routing: Mutex<Routing>,
    pub view: Mutex<Arc<RouteView>>,
    /// Wakes the planner (`pull::reconcile_loop`).
    pub replan: tokio::sync::Notify,
    /// Bumped whenever the routes change (pass-through relays watch it).
    pub route_generation: tokio::sync::watch::Sender<u64>,
    /// Task records from neighbours, waiting to be merged and stored.
    pub tasks_inbox: Inbox<(Arc<Shared>, String, Vec<TaskRecord>)>,
    /// Hop path of the data held per sub-log (origin first, this region last).
    pub paths: Mutex<HashMap<SubLogKey, Vec<String>>>,
    next_id: AtomicU64,
    pub stop: CancellationToken,
    pub tracker: TaskTracker,
}

impl Shared {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The live tasks now.
    pub fn tasks(&self) -> Arc<Vec<Arc<Task>>> {
        self.snapshot.load().active.clone()
    }

    /// Makes `catalog`, as just changed and stored, what readers see. Called with the
    /// catalog's lock held, so snapshots are published in the order of the changes.
    fn publish(&self, catalog: &Catalog) {
        self.snapshot.store(Arc::new(catalog.snapshot()));
    }

    pub fn task(&self, name: &str) -> Option<Arc<Task>> {
        self.tasks().iter().find(|t| t.name() == name).cloned()
    }

    /// Every task's sub-log status, with lag computed now; only sub-logs of running tasks
    /// count as stalled (a paused one stands still on purpose).
    pub fn status_now(&self) -> Vec<SubLogStatus> {
        let tasks = self.tasks();
        let mut status = self.status.snapshot(|r| self.link_up(r));
        for s in &mut status {
            s.stalled &= tasks.iter().any(|t| t.name() == s.task && t.running());
        }
        status
    }

    /// The hop path of what this region holds of a sub-log.
    pub fn path_of(&self, key: &SubLogKey) -> Vec<String> {
        if key.origin == self.region {
            return vec![self.region.clone()];
        }
        self.paths
            .lock()
            .expect("paths lock")
            .get(key)
            .cloned()
            .unwrap_or_else(|| vec![key.origin.clone(), self.region.clone()])
    }

    pub fn link_up(&self, region: &str) -> bool {
        self.links
            .lock()
            .expect("links lock")
            .get(region)
            .is_some_and(|l| l.health_now().0)
    }

    /// The routes now.
    pub fn view(&self) -> Arc<RouteView> {
        self.view.lock().expect("route view lock").clone()
    }

    /// Whether this region relays without storing.
    pub fn pass_through(&self) -> bool {
        self.topology.residency.pass_through(&self.region)
    }
}

pub struct Replicator {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    /// DR tasks with a failover running here: a second one waits for the first's answer.
    failovers: Mutex<std::collections::HashSet<String>>,
}

/// Holds a task's place in `Replicator::failovers` until dropped.
struct FailoverSlot<'a> {
    failovers: &'a Mutex<std::collections::HashSet<String>>,
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

/// A link as reported by status: every configured neighbour, connected or not.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LinkStatus {
    pub peer: String,
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
}

/// How this region reaches another one now.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RouteStatus {
    pub region: String,
    /// The neighbour data of `region` is pulled from, cheapest first, with path costs.
    pub via: Vec<(String, u64)>,
}

impl Replicator {
    /// Validates the tasks and peers, starts the endpoint on `socket`, and begins dialling.
    pub fn start(
        config: ReplicatorConfig,
        broker: Arc<Broker>,
        socket: std::net::UdpSocket,
    ) -> Result<Self, StartError> {
        let meta_error = |e: broker::meta::MetaError| StartError::Meta(e.to_string());
        let mut stored = Vec::new();
        for (name, bytes) in broker.meta().task_records().map_err(meta_error)? {
            match serde_json::from_slice::<TaskRecord>(&bytes) {
                Ok(record) => stored.push(record),
                Err(e) => {
                    return Err(StartError::Meta(format!(
                        "stored task record \"{name}\" does not decode: {e}"
                    )));
                }
            }
        }
        let catalog = Catalog::load(stored, &config.tasks, &config.region, &config.topology)?;
        for spec in &config.tasks {
            if let Some(r) = catalog.record(&spec.name).filter(|r| r.spec != *spec) {
                tracing::warn!(task = %spec.name, version = r.version, "[[tasks]] differs from the task as changed at run time; the run-time version stays");
            }
        }
        for record in catalog.records() {
            persist(&broker, &record).map_err(meta_error)?;
        }
        // A task's "latest" start is the moment it first ran here; record it now.
        for task in catalog.active().iter().filter(|t| t.running()) {
            broker
                .meta()
                .task_started(task.name(), broker::record::now_ms())
                .map_err(meta_error)?;
        }
        let neighbours = config.topology.neighbours(&config.region);
        let settings = config.settings;

        let sock = socket2::SockRef::from(&socket);
        sock.set_recv_buffer_size(settings.socket_buffer_bytes)?;
        sock.set_send_buffer_size(settings.socket_buffer_bytes)?;
        socket.set_nonblocking(true)?;

        let transport = Arc::new(transport_config(&settings));
        let mut server =
            quinn::ServerConfig::with_crypto(Arc::new(config.identity.server_config()?));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(config.identity.client_config()?));
        client.transport_config(transport);
        let mut endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        endpoint.set_default_client_config(client);

        let max_batch = broker.storage_config().max_stored_batch();
        // Two refusal holds: a sub-log that got nothing from its best source nor from the
        // next-best one.
        let stall_after = settings.heartbeat_interval * crate::pull::REFUSAL_HOLD_HEARTBEATS * 2;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let shared = Arc::new(Shared {
            region: config.region.clone(),
            epoch: rand::random(),
            broker,
            snapshot: arc_swap::ArcSwap::from_pointee(catalog.snapshot()),
            catalog: Mutex::new(catalog),
            task_generation: tokio::sync::watch::Sender::new(0),
            limits: FrameLimits {
                max_frame: settings.max_frame_bytes.max(max_batch + (64 << 10)),
                // A batch is bounded by its frame (and the format), never by this
                // region's max_batch_bytes: that limits what is produced here, and an
                // origin with a larger one wrote batches that must still replicate.
                max_batch: broker::batch::MAX_BATCH_ON_DISK,
            },
            settings,
            peers: neighbours.iter().map(|n| n.region.clone()).collect(),
            topology: config.topology,
            metrics: Arc::new(Metrics::default()),
            status: StatusBoard::new(stall_after),
            links: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            heard: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            routing: Mutex::new(Routing::new()),
            view: Mutex::new(Arc::new(RouteView::default())),
            replan: tokio::sync::Notify::new(),
            route_generation: tokio::sync::watch::Sender::new(0),
            paths: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            tasks_inbox: Inbox::start(
                &tracker,
                stop.clone(),
                TASKS_INBOX,
                |(shared, from, records): (Arc<Shared>, String, Vec<TaskRecord>)| {
                    merge_tasks(&shared, &from, records)
                },
            ),
            stop,
            tracker,
        });
        for task in shared.tasks().iter() {
            let saved = shared
                .broker
                .meta()
                .checkpoints(task.name())
                .map_err(|e| StartError::Meta(e.to_string()))?;
            for checkpoint in saved {
                let key = SubLogKey {
                    topic: checkpoint.topic,
                    partition: checkpoint.partition,
                    origin: checkpoint.origin,
                };
                shared.status.restored(task.name(), &key, checkpoint.offset);
            }
        }
        shared
            .tracker
            .spawn(accept_loop(shared.clone(), endpoint.clone()));
        for peer in &neighbours {
            if let (true, Some(address)) = (peer.dial, peer.address) {
                shared.tracker.spawn(dial_loop(
                    shared.clone(),
                    endpoint.clone(),
                    peer.region.clone(),
                    address,
                ));
            }
        }
        shared.tracker.spawn(checkpoint_loop(shared.clone()));
        shared.tracker.spawn(routing_loop(shared.clone()));
        shared
            .tracker
            .spawn(crate::groups::sync_loop(shared.clone()));
        shared
            .tracker
            .spawn(crate::pull::reconcile_loop(shared.clone()));
        routing::links_changed(&shared);
        shared
            .broker
            .set_write_gate(Arc::new(crate::dr::Gate(Arc::downgrade(&shared))));
        tracing::info!(region = %config.region, address = ?endpoint.local_addr().ok(), tasks = shared.tasks().len(), peers = shared.peers.len(), "replication started");
        Ok(Replicator {
            shared,
            endpoint,
            failovers: Mutex::default(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Per origin, what this region has not yet received: the RPO if it took over now.
    pub fn rpo(&self) -> Vec<crate::dr::OriginRpo> {
        crate::dr::rpo_by_origin(&self.status())
    }

    /// Promotes this region to primary of DR task `task` (see `dr`). The failover runs as
    /// a task of its own: a caller that goes away (a closed HTTP request) does not leave
    /// it half done, with the task fenced. One failover per task at a time.
    pub async fn failover(
        self: &Arc<Self>,
        task: &str,
        mode: crate::dr::FailoverMode,
        timeout: Duration,
    ) -> Result<crate::dr::FailoverReport, crate::dr::FailoverError> {
        self.detached(task, move |this, task| async move {
            crate::dr::failover(&*this, &task, mode, timeout).await
        })
        .await
    }

    /// Returns DR task `task` to this region, its first source, by a planned failover
    /// (run like [`Replicator::failover`]).
    pub async fn failback(
        self: &Arc<Self>,
        task: &str,
        timeout: Duration,
    ) -> Result<crate::dr::FailoverReport, crate::dr::FailoverError> {
        self.detached(task, move |this, task| async move {
            crate::dr::failback(&*this, &task, timeout).await
        })
        .await
    }

    async fn detached<F, Fut>(
        self: &Arc<Self>,
        task: &str,
        run: F,
    ) -> Result<crate::dr::FailoverReport, crate::dr::FailoverError>
    where
        F: FnOnce(Arc<Self>, String) -> Fut + Send + 'static,
        Fut: std::future::Future<
                Output = Result<crate::dr::FailoverReport, crate::dr::FailoverError>,
            > + Send,
    {
        if !self
            .failovers
            .lock()
            .expect("failovers lock")
            .insert(task.to_string())
        {
            return Err(crate::dr::FailoverError::InProgress(task.to_string()));
        }
        let this = self.clone();
        let task = task.to_string();
        tokio::spawn(async move {
            let _slot = FailoverSlot {
                failovers: &this.failovers,
                task: task.clone(),
            };
            run(this.clone(), task).await
        })
        .await
        .expect("the failover task does not panic")
    }

    /// Every task's sub-log status, with lag computed now.
    pub fn status(&self) -> Vec<SubLogStatus> {
        self.shared.status_now()
    }

    /// Every configured link of this region, by neighbour.
    pub fn links(&self) -> Vec<LinkStatus> {
        let links = self.shared.links.lock().expect("links lock");
        let me = &self.shared.region;
        self.shared
            .topology
            .neighbours(me)
            .into_iter()
            .map(|n| {
                let open = links.get(&n.region);
                let (up, srtt) = open.map_or((false, None), |l| l.health_now());
                let stats = open.map(|l| l.connection.stats());
                LinkStatus {
                    up,
                    connected: open.is_some(),
                    kind: n.kind,
                    cost: n.cost,
                    dialer: if n.dial { me.clone() } else { n.region.clone() },
                    rtt_ms: srtt.map(|d| d.as_secs_f64() * 1000.0),
                    remote: open.map(|l| l.connection.remote_address()),
                    sent_bytes: stats.as_ref().map_or(0, |s| s.udp_tx.bytes),
                    received_bytes: stats.as_ref().map_or(0, |s| s.udp_rx.bytes),
                    peer: n.region,
                }
            })
            .collect()
    }

    /// How each other region is reached now.
    pub fn routes(&self) -> Vec<RouteStatus> {
        let view = self.shared.view();
        self.shared
            .topology
            .regions()
            .filter(|r| *r != self.shared.region)
            .map(|r| RouteStatus {
                region: r.to_string(),
                via: view.candidates(&self.shared.region, r).to_vec(),
            })
            .collect()
    }

    /// Every task (not deleted) with its version.
    pub fn tasks(&self) -> Vec<TaskRecord> {
        let snapshot = self.shared.snapshot.load();
        snapshot
            .records
            .values()
            .filter(|r| !r.deleted)
            .cloned()
            .collect()
    }

    pub fn task(&self, name: &str) -> Option<TaskRecord> {
        self.shared.snapshot.load().record(name).cloned()
    }

    /// Creates a task; fails if one of that name exists.
    pub fn create_task(&self, spec: TaskSpec) -> Result<TaskRecord, ChangeError> {
        let name = spec.name.clone();
        self.change(&name, Some(spec), None, true)
    }

    /// Creates or replaces task `spec.name`, if its version is `if_version` (0: absent).
    pub fn put_task(
        &self,
        spec: TaskSpec,
        if_version: Option<u64>,
    ) -> Result<TaskRecord, ChangeError> {
        let name = spec.name.clone();
        self.change(&name, Some(spec), if_version, false)
    }

    pub fn delete_task(
        &self,
        name: &str,
        if_version: Option<u64>,
    ) -> Result<TaskRecord, ChangeError> {
        self.change(name, None, if_version, false)
    }

    /// Pauses or resumes a task.
    pub fn set_task_state(
        &self,
        name: &str,
        state: TaskState,
        if_version: Option<u64>,
    ) -> Result<TaskRecord, ChangeError> {
        let mut spec = self
            .task(name)
            .ok_or_else(|| ChangeError::NotFound(name.to_string()))?
            .spec;
        spec.state = state;
        self.change(name, Some(spec), if_version, false)
    }

    /// A change made here. It stores the record (an fsync), so it runs as blocking code:
    /// called on an async worker, the worker's other tasks move to another thread first.
    fn change(
        &self,
        name: &str,
        spec: Option<TaskSpec>,
        if_version: Option<u64>,
        create_only: bool,
    ) -> Result<TaskRecord, ChangeError> {
        let shared = &self.shared;
        blocking(|| {
            let record = {
                // Held across the store: changes are serialized, and a change is in effect
                // (published) only once it is stored. Readers do not take this lock.
                let mut catalog = shared.catalog.lock().expect("catalog lock");
                let record = catalog.prepare(
                    name,
                    spec,
                    if_version,
                    create_only,
                    &shared.region,
                    &shared.topology,
                )?;
                persist(&shared.broker, &record).map_err(|e| ChangeError::Meta(e.to_string()))?;
                catalog.apply(record.clone(), &shared.topology);
                shared.publish(&catalog);
                record
            };
            tracing::info!(task = name, version = record.version, deleted = record.deleted, state = ?record.spec.state, "task changed here");
            tasks_changed(shared, std::slice::from_ref(&record), None);
            Ok(record)
        })
    }

    /// Stops pulling and serving, closes the links, and saves checkpoints.
    pub async fn shut_down(&self) {
        self.shared.stop.cancel();
        self.endpoint
            .close(close::SHUTDOWN, b"region shutting down");
        self.shared.tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), self.shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("replication tasks did not stop within 10 s");
        }
        let shared = self.shared.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || save_checkpoints(&shared)).await {
            tracing::error!(error = %e, "saving replication checkpoints failed");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Concurrent sub-log streams per link and direction. quinn sets up per-stream state for
/// the whole allowance at connection start (1 << 20 made every link take about a second
/// to come up), so this stays moderate; sub-logs beyond it wait for a stream.
const MAX_SUB_LOGS_PER_LINK: u32 = 16_384;

/// BBR's congestion window before it has measured the path (see ARCHITECTURE.md, "Links").
const INITIAL_WINDOW: u64 = 1 << 20;

fn transport_config(settings: &LinkSettings) -> quinn::TransportConfig {
    let var = |v: u64| VarInt::from_u64(v).unwrap_or(VarInt::MAX);
    let mut bbr = quinn::congestion::BbrConfig::default();
    bbr.initial_window(INITIAL_WINDOW);
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(var(settings.stream_window_bytes))
        .receive_window(var(settings.connection_window_bytes))
        .send_window(settings.send_window_bytes)
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_SUB_LOGS_PER_LINK))
        .max_idle_timeout(IdleTimeout::try_from(settings.idle_timeout).ok())
        .keep_alive_interval(Some(settings.idle_timeout / 4))
        // BBR: Cubic's slow ramp and loss response collapse catch-up over long links
        // (ARCHITECTURE.md, "Links").
        .congestion_controller_factory(Arc::new(bbr));
    transport
}

async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shared.stop.cancelled() => return,
        };
        let Some(incoming) = incoming else { return };
        let shared2 = shared.clone();
        shared.tracker.spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(error) => {
                    let reason = tls::refusal_reason(&error);
                    tracing::warn!(%remote, reason, %error, "replication link refused");
                    shared2.metrics.link_refused(reason);
                    return;
                }
            };
            let Some(peer) = tls::region_of(&connection, &shared2.peers) else {
                tracing::warn!(%remote, "replication link refused: the certificate names no configured peer region");
                shared2.metrics.link_refused("unknown_region");
                connection.close(close::UNKNOWN_REGION, b"not a peer of this region");
                return;
            };
            link::run(shared2, connection, peer, Role::Acceptor).await;
        });
    }
}

async fn dial_loop(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    peer: String,
    address: SocketAddr,
) {
    let settings = &shared.settings;
    let mut backoff = settings.reconnect_min;
    loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let connected = match endpoint.connect(address, &peer) {
            Ok(connecting) => tokio::select! {
                c = tokio::time::timeout(settings.idle_timeout, connecting) => c.map_err(|_| "timed out".to_string()).and_then(|c| c.map_err(|e| {
                    let reason = tls::refusal_reason(&e);
                    shared.metrics.link_refused(reason);
                    format!("{reason}: {e}")
                })),
                () = shared.stop.cancelled() => return,
            },
            Err(e) => Err(e.to_string()),
        };
        match connected {
            Ok(connection) => {
                let since = Instant::now();
                link::run(shared.clone(), connection, peer.clone(), Role::Dialer).await;
                if since.elapsed() > Duration::from_secs(10) {
                    backoff = settings.reconnect_min;
                }
            }
            Err(error) => {
                tracing::warn!(%peer, %address, %error, retry_in = ?backoff, "cannot reach peer");
            }
        }
        let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
        tokio::select! {
            () = tokio::time::sleep(backoff + jitter) => {}
            () = shared.stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(settings.reconnect_max);
    }
}

async fn checkpoint_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.settings.checkpoint_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.stop.cancelled() => return,
        }
        let s = shared.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || save_checkpoints(&s)).await {
            tracing::error!(error = %e, "saving replication checkpoints failed");
        }
        prune(&shared);
        let status = shared.status_now();
        let stalled = status.iter().filter(|s| s.stalled).count();
        shared.metrics.stalled_sub_logs.set(stalled as i64);
        for o in crate::dr::rpo_by_origin(&status) {
            let labels = crate::metrics::OriginLabels { origin: o.origin };
            let m = &shared.metrics;
            m.rpo_records.get_or_create(&labels).set(o.records as i64);
            m.rpo_bytes.get_or_create(&labels).set(o.bytes as i64);
            m.rpo_seconds.get_or_create(&labels).set(o.seconds);
        }
        for s in status {
            let labels = crate::metrics::SubLogLabels {
                task: s.task,
                topic: s.topic,
                partition: s.partition,
                origin: s.origin,
            };
            shared
                .metrics
                .lag_records
                .get_or_create(&labels)
                .set(s.lag_records as i64);
            shared
                .metrics
                .lag_seconds
                .get_or_create(&labels)
                .set(s.lag_seconds);
        }
        let up = shared
            .links
            .lock()
            .expect("links lock")
            .values()
            .filter(|l| l.health_now().0)
            .count();
        shared.metrics.links_up.set(up as i64);
        routing::publish_link_metrics(&shared);
    }
}

/// Forgets what belongs to tasks and topics that no longer exist here: status entries,
/// hop paths and their metric label sets (lag per sub-log, replicated totals per task), so
/// that none of them grows with every topic or task ever seen.
fn prune(shared: &Shared) {
    let snapshot = shared.snapshot.load();
    let task_exists = |task: &str| snapshot.record(task).is_some();
    let topics: std::collections::HashSet<String> =
        shared.broker.topics().into_iter().map(|t| t.name).collect();
    let removed = shared
        .status
        .retain(|task, key| task_exists(task) && topics.contains(&key.topic));
    for (task, key) in removed {
        let labels = crate::metrics::SubLogLabels {
            task,
            topic: key.topic,
            partition: key.partition,
            origin: key.origin,
        };
        shared.metrics.lag_records.remove(&labels);
        shared.metrics.lag_seconds.remove(&labels);
    }
    shared
        .paths
        .lock()
        .expect("paths lock")
        .retain(|key, _| topics.contains(&key.topic));
    shared.metrics.retain_tasks(task_exists);
}

/// Every this many routing ticks (5 heartbeat intervals) the whole task catalog is sent to
/// every neighbour again.
const CATALOG_REFRESH_TICKS: u64 = 20;

/// Checks link health four times per heartbeat interval (a silent link is down within
/// `down_after` intervals and a quarter), and floods this region's link state once per
/// interval.
async fn routing_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.settings.heartbeat_interval / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.stop.cancelled() => return,
        }
        n += 1;
        if routing::check_health(&shared) || n % 4 == 0 {
            routing::links_changed(&shared);
        }
        if n % CATALOG_REFRESH_TICKS == 0 {
            // Task frames dropped on a full control queue are repaired by this refresh.
            let records = shared.snapshot.load().records();
            routing::flood(&shared, &tasks_frame(&records), None);
        }
    }
}

fn save_checkpoints(shared: &Shared) {
    let meta = shared.broker.meta();
    for (task, key, offset) in shared.status.checkpoints_to_save() {
        let Ok(partition) = shared.broker.partition(&key.topic, key.partition) else {
            continue;
        };
        let checkpoint = TaskCheckpoint {
            task,
            incarnation: partition.incarnation_of(&key.origin),
            target_incarnation: partition.incarnation(),
            topic: key.topic,
            partition: key.partition,
            origin: key.origin,
            offset,
        };
        if let Err(e) = meta.put_checkpoint(&checkpoint) {
            tracing::error!(error = %e, "saving a replication checkpoint failed");
        }
    }
}

/// Runs `f`, blocking I/O called from synchronous code, without holding up an async
/// worker: on a multi-threaded runtime's worker the worker's other tasks move to another
/// thread first (`block_in_place`); elsewhere `f` just runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Stores a task record in the region's metadata.
fn persist(broker: &Broker, record: &TaskRecord) -> Result<(), broker::meta::MetaError> {
    let bytes = serde_json::to_vec(record).expect("a task record encodes");
    broker.meta().put_task_record(&record.spec.name, &bytes)
}

/// After tasks changed (here, or taken from `from`): new tasks' start times, routes, the
/// pulls, serving streams, and the change passed on to the other neighbours.
pub(crate) fn tasks_changed(shared: &Shared, records: &[TaskRecord], from: Option<&str>) {
    for record in records
        .iter()
        .filter(|r| !r.deleted && r.spec.state == TaskState::Running)
    {
        if let Err(e) = shared
            .broker
            .meta()
            .task_started(&record.spec.name, broker::record::now_ms())
        {
            tracing::error!(task = %record.spec.name, error = %e, "recording a task's start failed");
        }
    }
    shared.task_generation.send_modify(|g| *g += 1);
    routing::tasks_changed(shared);
    routing::flood(shared, &tasks_frame(records), from);
}

/// A Tasks frame carrying `records`.
pub(crate) fn tasks_frame(records: &[TaskRecord]) -> Frame {
    Frame::Tasks(pb::Tasks {
        records: records
            .iter()
            .map(|r| serde_json::to_string(r).expect("a task record encodes"))
            .collect(),
    })
}

/// A Tasks frame from neighbour `from`: newer records are taken, stored and passed on, on
/// the blocking pool through a bounded inbox (storing is an fsync; this is called from a
/// link's control reader).
pub(crate) fn on_tasks(shared: &Arc<Shared>, from: &str, tasks: pb::Tasks) {
    let mut incoming = Vec::new();
    for text in tasks.records {
        match serde_json::from_str::<TaskRecord>(&text) {
            Ok(r) => incoming.push(r),
            Err(e) => {
                shared.metrics.frame_refused("malformed");
                tracing::warn!(peer = %from, error = %e, "a task record from a neighbour does not decode; ignored");
            }
        }
    }
    if incoming.is_empty() {
        return;
    }
    if !shared
        .tasks_inbox
        .offer((shared.clone(), from.to_string(), incoming))
    {
        shared.metrics.control_frames_dropped("tasks");
        tracing::warn!(peer = %from, "task records dropped: too many queued (the periodic catalog resend repairs this)");
    }
}

/// Tasks queued for storing (see [`Inbox`]); the periodic catalog resend repairs drops.
const TASKS_INBOX: usize = 64;

/// Task records from neighbour `from`, taken from the inbox on the blocking pool.
fn merge_tasks(shared: &Arc<Shared>, from: &str, incoming: Vec<TaskRecord>) {
    {
        let taken = {
            let mut catalog = shared.catalog.lock().expect("catalog lock");
            let taken = catalog.merge(incoming, &shared.topology);
            for record in &taken {
                if let Err(e) = persist(&shared.broker, record) {
                    tracing::error!(task = %record.spec.name, error = %e, "storing a task record failed");
                }
            }
            if !taken.is_empty() {
                shared.publish(&catalog);
            }
            taken
        };
        if !taken.is_empty() {
            for r in &taken {
                tracing::info!(task = %r.spec.name, version = r.version, by = %r.changed_by, deleted = r.deleted, "task changed in another region");
            }
            tasks_changed(shared, &taken, Some(from));
        }
    }
}

impl crate::dr::Catalog for Replicator {
    fn region(&self) -> &str {
        &self.shared.region
    }

    fn record(&self, task: &str) -> Option<TaskRecord> {
        self.task(task)
    }

    fn put(&self, spec: TaskSpec, version: u64) -> Result<TaskRecord, ChangeError> {
        self.put_task(spec, Some(version))
    }

    fn lag_of(&self, task: &str) -> Vec<SubLogStatus> {
        self.status()
            .into_iter()
            .filter(|s| s.task == task && s.origin != self.shared.region)
            .collect()
    }

    fn quiet_period(&self) -> Duration {
        // An advertisement round or three, and a round trip or two on the slowest link.
        let rtt = self
            .links()
            .iter()
            .filter_map(|l| l.rtt_ms)
            .fold(0.0_f64, f64::max);
        self.shared.settings.advertise_interval * 3 + Duration::from_secs_f64(rtt * 2.0 / 1000.0)
    }

    fn reachable(&self, region: &str) -> bool {
        self.routes()
            .iter()
            .any(|r| r.region == region && !r.via.is_empty())
    }
}
