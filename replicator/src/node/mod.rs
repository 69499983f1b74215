//! What every part of a running replication node shares: the [`Node`] context.
//!
//! It holds no bag of locks. Values many tasks read are published snapshots read without
//! a lock (`tasks`, `routes`, `links`, `heard`); what only planning touches belongs to the
//! planner task (`pull::planner`), reached through `planner` events; what still needs a
//! lock sits behind methods, in the lock order ARCHITECTURE.md gives:
//!
//! 1. the task book's writer lock (`tasks::book`, held across storing a record; taken only
//!    on blocking threads);
//! 2. the routing lock (`routes.rs`: the link-state database; the route view is computed
//!    and published under it);
//! 3. leaf locks, never held while another is taken: a link's health, the link table's
//!    writer lock, hop paths, the status board, the failovers set of the facade.

mod catalog_frames;
mod events;
mod links;
mod paths;
mod routes;
mod task_changes;
mod trust;
pub(crate) mod upkeep;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::wire::message as msg;
use broker::Broker;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use topology::Topology;

pub use catalog_frames::Carried;
pub(crate) use events::{PlanEvent, Planner, Pushed};
pub(crate) use links::{LinkCtx, LinkHandle, LinkTable};
pub(crate) use paths::HopPaths;
pub(crate) use routes::mono_ms;
pub(crate) use task_changes::persist;
pub use trust::Authorship;

use crate::identity::seal::{Sealer, Verifier};
use crate::inbox::Inbox;
use crate::observe::{Metrics, StatusBoard, SubLogKey, SubLogStatus};
use crate::published::Published;
use crate::routing::{LinkStateDb, RouteView};
use crate::settings::LinkSettings;
use crate::tasks::{Task, TaskBook};
use crate::wire::FrameLimits;

/// The latest advertisement of each neighbour whose link is open, with the link's id.
pub(crate) type Heard = HashMap<String, (u64, Arc<msg::Advertise>)>;

pub(crate) struct Node {
    pub region: String,
    /// Random per start: tells a peer this is a new run of the region.
    pub epoch: u64,
    pub broker: Arc<Broker>,
    pub settings: LinkSettings,
    pub limits: FrameLimits,
    pub topology: Topology,
    /// The regions this one has links with.
    pub peers: Vec<String>,
    pub metrics: Arc<Metrics>,
    pub status: StatusBoard,
    /// The console's charts: lag and throughput over the last hour (`upkeep::history_loop`).
    pub history: crate::observe::history::History,
    pub tasks: TaskBook,
    /// Seals what this region authors; checks what others sealed.
    pub sealer: Sealer,
    verifier: Verifier,
    /// A digest of the configuration every region must share, and each neighbour's.
    config_digest: String,
    peer_digests: Mutex<HashMap<String, String>>,
    /// The routes now (written under the routing lock).
    pub routes: Published<RouteView>,
    routing: Mutex<LinkStateDb>,
    pub links: LinkTable,
    pub paths: HopPaths,
    /// Neighbours' advertisements, written only by the planner (pass-through relays read
    /// them to advertise what they relay).
    pub heard: Published<Heard>,
    pub planner: Planner,
    /// On a region of several nodes, whom this node divides its pulls among.
    pub crew: Option<crate::crew::Crew>,
    /// Shared records from neighbours, waiting to be merged and stored.
    tasks_inbox: Inbox<(String, catalog_frames::Incoming)>,
    next_id: AtomicU64,
    pub stop: CancellationToken,
    pub tracker: TaskTracker,
}

/// What a node is made of, besides what it builds itself.
pub(crate) struct Parts {
    pub region: String,
    pub config_digest: String,
    pub broker: Arc<Broker>,
    pub settings: LinkSettings,
    pub limits: FrameLimits,
    pub topology: Topology,
    pub tasks: TaskBook,
    pub status: StatusBoard,
    pub planner: Planner,
    pub sealer: Sealer,
    pub verifier: Verifier,
    pub metrics: Arc<Metrics>,
    pub crew: Option<crate::crew::Crew>,
}

/// Task frames queued for storing (see [`Inbox`]); the periodic catalog resend repairs
/// drops.
const TASKS_INBOX: usize = 64;

impl Node {
    /// The digest of the configuration every region must share.
    pub fn config_digest(&self) -> &str {
        &self.config_digest
    }

    /// Neighbour `peer`'s configuration digest, from its Hello: a difference is drift,
    /// reported (logged, `config_drift{peer}`, link status), not refused.
    pub fn peer_config(&self, peer: &str, digest: String) {
        let drift = !digest.is_empty() && digest != self.config_digest;
        if drift {
            tracing::warn!(event = "config_drift", %peer, ours = %self.config_digest, theirs = %digest, "configuration drift: residency, region names or config principals differ from this region's");
        }
        self.metrics
            .config_drift
            .get_or_create(&crate::observe::metrics::PeerLabels {
                peer: peer.to_string(),
            })
            .set(i64::from(drift));
        self.peer_digests
            .lock()
            .expect("peer digests")
            .insert(peer.to_string(), digest);
    }

    /// Whether neighbour `peer`'s configuration digest differs from this region's (`None`:
    /// not known yet).
    pub fn config_drift(&self, peer: &str) -> Option<bool> {
        self.peer_digests
            .lock()
            .expect("peer digests")
            .get(peer)
            .filter(|d| !d.is_empty())
            .map(|d| *d != self.config_digest)
    }

    pub fn new(parts: Parts) -> Arc<Self> {
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let peers = parts
            .topology
            .neighbours(&parts.region)
            .into_iter()
            .map(|n| n.region)
            .collect();
        Arc::new_cyclic(|node: &std::sync::Weak<Node>| {
            let weak = node.clone();
            let tasks_inbox = Inbox::start(
                &tracker,
                stop.clone(),
                TASKS_INBOX,
                move |(from, incoming): (String, catalog_frames::Incoming)| {
                    if let Some(node) = weak.upgrade() {
                        node.merge_shared(&from, incoming);
                    }
                },
            );
            // An hour of samples.
            let history = crate::observe::history::History::new(
                (3_600_000 / parts.settings.history_interval.as_millis().max(1)) as usize,
            );
            Node {
                region: parts.region,
                epoch: rand::random(),
                broker: parts.broker,
                settings: parts.settings,
                limits: parts.limits,
                topology: parts.topology,
                peers,
                metrics: parts.metrics,
                status: parts.status,
                history,
                tasks: parts.tasks,
                sealer: parts.sealer,
                verifier: parts.verifier,
                config_digest: parts.config_digest,
                peer_digests: Mutex::new(HashMap::new()),
                routes: Published::new(RouteView::default()),
                routing: Mutex::new(LinkStateDb::new(broker::record::now_ms().max(0) as u64)),
                links: LinkTable::new(HashMap::new()),
                paths: HopPaths::default(),
                heard: Published::new(Heard::new()),
                planner: parts.planner,
                crew: parts.crew,
                tasks_inbox,
                next_id: AtomicU64::new(1),
                stop,
                tracker,
            }
        })
    }

    /// Every region's latest link state, this one's included.
    pub fn link_states(&self) -> topology::LinkStates {
        self.routing.lock().expect("routing lock").states.clone()
    }

    /// A number unique in this run (link and pull ids).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The live tasks now.
    pub fn active_tasks(&self) -> Arc<Vec<Arc<Task>>> {
        self.tasks.active()
    }

    /// The routes now.
    pub fn view(&self) -> Arc<RouteView> {
        self.routes.load()
    }

    /// The hop path of what this region holds of a sub-log.
    pub fn path_of(&self, key: &SubLogKey) -> Vec<String> {
        self.paths.of(key, &self.region)
    }

    /// Whether this region relays without storing.
    pub fn pass_through(&self) -> bool {
        self.topology.residency.pass_through(&self.region)
    }

    /// Every task's sub-log status, with lag computed now; only sub-logs of running tasks
    /// count as stalled (a paused one stands still on purpose).
    pub fn status_now(&self) -> Vec<SubLogStatus> {
        let tasks = self.active_tasks();
        // Link states are read before the status board's lock is taken: it is a leaf.
        let up: HashMap<String, bool> = self
            .links
            .load()
            .iter()
            .map(|(peer, link)| (peer.clone(), link.health_now().0))
            .collect();
        let mut status = self
            .status
            .snapshot(|r| up.get(r).copied().unwrap_or(false));
        for s in &mut status {
            s.stalled &= tasks.iter().any(|t| t.name() == s.task && t.running());
        }
        status
    }
}
