//! Replication on a node. On the embedded engine a node replicates from its start to its
//! stop. On shared storage a region of several nodes plans its replication on one node at
//! a time: the holder of the region's `replication` lease runs the replicator on its
//! `[listen] replication` socket and plans; every other node pulls and serves the share of
//! the region's sub-logs the holder's division gives it on its own socket, which takes
//! data-only connections alone, so that a neighbour dialling a link there moves on to the
//! region's next address (`[[regions]] other_addresses`). When the holder dies, another
//! node takes the lease within about a lease time and starts from what the shared storage
//! holds: the sub-logs' ends are the checkpoints, the tasks and their records are in the
//! shared metadata.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use broker::Broker;
use jetstream_engine::lease::StepDown;
use replicator::crew::{Assignment, Crew};
use replicator::dr::StoredTasks;
use replicator::observe::Metrics;
use replicator::{CrewWorker, Replicator, ReplicatorConfig, Running};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::NodeConfig;
use crate::crew::CrewIo;

/// The lease duty of planning the region's replication (links, routes, the division of
/// the pulls).
pub const REPLICATION_DUTY: &str = "replication";

/// How long a node holds its region's replication without renewing: another node takes
/// over within about this (plus a renewal period) after the holder's death.
pub const REPLICATION_LEASE: Duration = Duration::from_secs(3);

/// How long a node whose replicator could not start stays away from the lease.
const START_FAILED_PAUSE: Duration = Duration::from_secs(30);

/// How often a node that does not replicate reads the region's tasks again: the longest a
/// planned failover's fence takes to reach it, within the failover's quiet period (three
/// advertisement rounds, 300 ms by default), so that what it still accepted is advertised
/// before the new primary switches.
const FENCE_REFRESH: Duration = Duration::from_millis(250);

/// The produce fence on a node of a region of several (see
/// [`Plan::fence_while_leased`]).
struct LeasedGate {
    running: Running,
    stored: Arc<StoredTasks>,
    /// The broker the gate is installed in (weak: the broker holds the gate).
    broker: std::sync::Weak<Broker>,
    /// When the stored tasks were last read again because they refused a produce.
    reread: std::sync::Mutex<Option<std::time::Instant>>,
}

/// A refusal by the stored tasks is checked against the shared metadata again first, at
/// most this often: a failover that made this region the primary a moment ago must not
/// refuse its clients until the next periodic read.
const REREAD_ON_REFUSAL: Duration = Duration::from_millis(100);

impl LeasedGate {
    /// Reads the stored tasks again now, unless that was done within
    /// [`REREAD_ON_REFUSAL`] (blocking, off the async workers).
    fn reread(&self) {
        {
            let mut last = self.reread.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < REREAD_ON_REFUSAL) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        if let Some(broker) = self.broker.upgrade() {
            broker::broker::blocking_here(|| refresh(&self.stored, &broker));
        }
    }
}

/// Reads the region's tasks again (blocking I/O); a failure keeps what was read last.
fn refresh(stored: &StoredTasks, broker: &Broker) {
    if let Err(e) = stored.refresh(broker) {
        tracing::warn!(event = "dr_fence_refresh_failed", error = %e, "could not read the region's tasks from the shared metadata; the fence and group ownership stay as last read");
    }
}

impl broker::broker::WriteGate for LeasedGate {
    fn refuses(&self, topic: &str) -> Option<String> {
        if let Some(replicator) = self.running.get() {
            return replicator.refuses_produce(topic);
        }
        self.stored.refuses(topic)?;
        self.reread();
        self.stored.refuses(topic)
    }
}

/// What a node needs to start replicating, as often as it takes the lease.
pub struct Plan {
    config: NodeConfig,
    pub metrics: Arc<Metrics>,
}

impl Plan {
    /// `None` when `[replication]` names no certificates (the node only serves clients).
    pub fn from_config(config: &NodeConfig) -> Result<Option<Plan>> {
        let Some((_, _, key)) = config.replication.certificate_files() else {
            return Ok(None);
        };
        auth::admin::check_private(key).context("[replication] key")?;
        let plan = Plan {
            config: config.clone(),
            metrics: Arc::default(),
        };
        // Refused at start, not at the first lease.
        plan.replicator_config(None)?;
        Ok(Some(plan))
    }

    /// The region's replication identity, its certificate files read now (so that a node
    /// taking the lease later uses the files as they are then).
    fn identity(&self) -> Result<replicator::tls::Identity> {
        let (ca, cert, key) = self
            .config
            .replication
            .certificate_files()
            .expect("checked in from_config");
        replicator::tls::Identity::load(ca, cert, key).context("[replication] certificates")
    }

    /// The replicator's configuration, with the [`identity`](Self::identity) read now.
    fn replicator_config(&self, crew: Option<Crew>) -> Result<ReplicatorConfig> {
        let config = &self.config;
        Ok(ReplicatorConfig {
            region: config.region.id.clone(),
            identity: self.identity()?,
            topology: config.topology()?,
            tasks: config.tasks.clone(),
            settings: config.replication.link_settings(),
            config_digest: config.shared_digest(),
            metrics: self.metrics.clone(),
            crew,
        })
    }

    /// Starts replicating on `socket` now, dividing the pulls with `crew` (a region of
    /// several nodes) or alone.
    pub fn start(
        &self,
        broker: Arc<Broker>,
        socket: std::net::UdpSocket,
        crew: Option<Crew>,
    ) -> Result<Replicator> {
        Replicator::start(self.replicator_config(crew)?, broker, socket)
            .context("starting replication")
    }

    /// The region's tasks as its shared metadata holds them (with this node's `[[tasks]]`
    /// until they are stored there), read now: what a node that does not replicate fences
    /// produce and owns consumer groups by (`fence_while_leased`, `node.rs`'s group peers).
    pub async fn stored_tasks(&self, broker: &Arc<Broker>) -> Result<Arc<StoredTasks>> {
        let stored = Arc::new(StoredTasks::new(
            &self.config.region.id,
            self.config.topology()?,
            self.config.tasks.clone(),
        ));
        let (b, s) = (broker.clone(), stored.clone());
        tokio::task::spawn_blocking(move || s.refresh(&b))
            .await?
            .context("reading the region's tasks from the shared metadata")?;
        Ok(stored)
    }

    /// Fences produce by the region's DR tasks on a node that replicates only while it
    /// holds the lease: through the running replicator, or (another node replicating)
    /// through `stored`, read again every [`FENCE_REFRESH`] by the returned loop. Installed before
    /// any replicator starts here (the broker keeps the first gate it is given).
    pub fn fence_while_leased(
        broker: &Arc<Broker>,
        running: Running,
        stored: Arc<StoredTasks>,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + use<> {
        broker.set_write_gate(Arc::new(LeasedGate {
            running,
            stored: stored.clone(),
            broker: Arc::downgrade(broker),
            reread: Default::default(),
        }));
        let broker = broker.clone();
        async move {
            let mut tick = tokio::time::interval(FENCE_REFRESH);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => return,
                }
                let (b, s) = (broker.clone(), stored.clone());
                let _ = tokio::task::spawn_blocking(move || refresh(&s, &b)).await;
            }
        }
    }

    /// Replicates while `held` says this node holds the region's replication lease,
    /// dividing the pulls among the region's nodes alive (`crew`), and pulls its share of
    /// another holder's division the rest of the time (taking no links), until `stop`.
    /// `running` shows the replicator while it runs. On `stop` the replicator stops first
    /// and the leases (held until `lease_stop`) are released after it, so that another
    /// node takes over at once and never while this one still replicates.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_while_held(
        self,
        (mut held, step_down): (watch::Receiver<bool>, StepDown),
        crew: CrewIo,
        broker: Arc<Broker>,
        socket: std::net::UdpSocket,
        running: Running,
        stop: CancellationToken,
        lease_stop: CancellationToken,
    ) {
        let duty = Duty {
            crew,
            broker,
            socket,
            running,
        };
        self.replicate_while_held(&mut held, &step_down, &duty, &stop)
            .await;
        lease_stop.cancel();
        // The lease loop closes the channel once it has released the lease.
        let released = async { while held.changed().await.is_ok() {} };
        let _ = tokio::time::timeout(REPLICATION_LEASE, released).await;
    }

    async fn replicate_while_held(
        &self,
        held: &mut watch::Receiver<bool>,
        step_down: &StepDown,
        duty: &Duty,
        stop: &CancellationToken,
    ) {
        loop {
            if !self.pull_share_until_held(held, duty, stop).await {
                return;
            }
            let planning = CancellationToken::new();
            let (divisions, divided) = watch::channel(Assignment::default());
            let crew = Crew {
                me: duty.crew.me.clone(),
                members: duty.crew.members(planning.clone()),
                assignment: divisions,
            };
            let started = duty
                .socket
                .try_clone()
                .context("replication socket")
                .and_then(|s| self.start(duty.broker.clone(), s, Some(crew)));
            let replicator = match started {
                Ok(r) => Arc::new(r),
                Err(e) => {
                    planning.cancel();
                    // Another node of the region may well be able to: hand the lease over
                    // and refuse links meanwhile, so that neighbours find that node.
                    tracing::error!(event = "replication_start_failed", error = %format!("{e:#}"), pause = ?START_FAILED_PAUSE, "holding the region's replication lease but could not start replicating; giving the lease up for a while");
                    step_down.step_down(START_FAILED_PAUSE);
                    continue;
                }
            };
            tokio::spawn(duty.crew.clone().store_divisions(divided, planning.clone()));
            tracing::info!(
                event = "replication_taken",
                "this node replicates for the region now"
            );
            duty.running.set(Some(replicator.clone()));
            loop {
                if !*held.borrow_and_update() {
                    break;
                }
                tokio::select! {
                    changed = held.changed() => if changed.is_err() { break },
                    () = stop.cancelled() => break,
                }
            }
            duty.running.set(None);
            replicator.shut_down().await;
            planning.cancel();
            if stop.is_cancelled() {
                return;
            }
            tracing::warn!(
                event = "replication_given_up",
                "this node no longer holds the region's replication lease; another node replicates"
            );
        }
    }

    /// Pulls and serves this node's share of the holder's division, taking no links on
    /// the socket, until `held` or `stop`; whether the lease is held. While it pulls, the
    /// node holds its own member lease (the planning node divides among those); a node
    /// whose pulling side cannot start holds none and refuses every connection.
    async fn pull_share_until_held(
        &self,
        held: &mut watch::Receiver<bool>,
        duty: &Duty,
        stop: &CancellationToken,
    ) -> bool {
        let pulling = CancellationToken::new();
        let share = duty
            .crew
            .follow(duty.crew.membership(pulling.clone()), pulling.clone());
        let worker = duty
            .socket
            .try_clone()
            .context("replication socket")
            .and_then(|socket| {
                CrewWorker::start(
                    self.replicator_config(None)?,
                    duty.broker.clone(),
                    socket,
                    share,
                )
                .context("starting to pull this node's share")
            });
        let worker = match worker {
            Ok(worker) => Some(worker),
            Err(e) => {
                pulling.cancel();
                tracing::error!(event = "replication_refuser_failed", error = %format!("{e:#}"), "cannot pull a share of the region's sub-logs while another node replicates; refusing links only");
                None
            }
        };
        let refusing = CancellationToken::new();
        let refuser = match (&worker, duty.socket.try_clone(), self.identity()) {
            (Some(_), _, _) => None,
            (None, Ok(socket), Ok(identity)) => {
                let until = refusing.clone();
                Some(tokio::spawn(async move {
                    Replicator::refuse_links(&identity, socket, until).await
                }))
            }
            (None, Err(e), _) => {
                tracing::error!(event = "replication_refuser_failed", error = %e, "cannot refuse links while another node replicates");
                None
            }
            (None, _, Err(e)) => {
                tracing::error!(event = "replication_refuser_failed", error = %format!("{e:#}"), "cannot refuse links while another node replicates");
                None
            }
        };
        let taken = loop {
            if *held.borrow_and_update() {
                break true;
            }
            tokio::select! {
                changed = held.changed() => if changed.is_err() { break false },
                () = stop.cancelled() => break false,
            }
        };
        if let Some(worker) = worker {
            worker.shut_down().await;
        }
        // Released once the pulls have stopped.
        pulling.cancel();
        refusing.cancel();
        if let Some(refuser) = refuser
            && let Ok(Err(e)) = refuser.await
        {
            tracing::error!(event = "replication_refuser_failed", error = %e, "cannot refuse links while another node replicates");
        }
        taken
    }
}

/// What replicating on a node of a region of several works with.
struct Duty {
    crew: CrewIo,
    broker: Arc<Broker>,
    socket: std::net::UdpSocket,
    running: Running,
}

/// The replicator's view for active-active groups' ownership (`rocketmq::pop::owner`).
/// While replication runs on another node of the region, the groups' regions and primary
/// come from the stored tasks, and every region counts as reachable: such a node never
/// takes another region's messages over (the replicating node may), so nothing is
/// delivered twice.
pub struct GroupPeers {
    pub running: Running,
    pub stored: Option<Arc<StoredTasks>>,
}

impl rocketmq::pop::owner::Peers for GroupPeers {
    fn regions(&self, group: &str, topic: &str) -> Vec<String> {
        match (self.running.get(), &self.stored) {
            (Some(r), _) => r.group_regions(group, topic),
            (None, Some(stored)) => stored.group_regions(group, topic),
            (None, None) => Vec::new(),
        }
    }

    fn reachable(&self, region: &str) -> bool {
        match self.running.get() {
            Some(r) => r.has_route(region),
            None => self.stored.is_some(),
        }
    }

    fn primary(&self, group: &str, topic: &str) -> Option<String> {
        match (self.running.get(), &self.stored) {
            (Some(r), _) => r.group_primary(group, topic),
            (None, Some(stored)) => stored.group_primary(group, topic),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketmq::pop::owner::Peers;

    #[test]
    fn a_node_not_replicating_owns_groups_by_the_stored_tasks_and_takes_nothing_over() {
        let mut spec = topology::TopologySpec::mesh(&["a", "b"]);
        spec.set_address("b", "127.0.0.1:1".parse().unwrap());
        let topology = topology::Topology::new(&spec, &Default::default(), "a").unwrap();
        let mut task = replicator::TaskSpec::new("aa", &["a", "b"], &["a", "b"], "orders");
        task.direction = replicator::Direction::TwoWay;
        task.groups = Some("billing*".into());
        let peers = GroupPeers {
            running: Running::leased(),
            stored: Some(Arc::new(StoredTasks::new("a", topology, vec![task]))),
        };
        assert_eq!(peers.regions("billing-1", "orders"), ["a", "b"]);
        assert!(peers.regions("other", "orders").is_empty());
        assert!(
            peers.reachable("b"),
            "another node replicates: never take b's messages over from here"
        );
        assert_eq!(peers.primary("billing-1", "orders"), None);
    }
}
