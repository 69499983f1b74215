//! A crew node's pulls (`crate::crew`): a node of a region of several that does not plan
//! pulls the sub-logs the planning node's division gives it, each over a data-only
//! connection to the sub-log's neighbour (`data`), applying what arrives exactly as the
//! planning node would (`pull::stream`: fenced, idempotent appends into the shared
//! storage). It follows the division as it changes: a pull no longer given to it, of a
//! task changed since, or into a target topic created again is stopped, and a missing one
//! started; a neighbour that cannot be reached is dialled again with a backoff, and a pull
//! that gave its sub-log up (loop, hop limit, missing records) rests for the planner's
//! refusal hold before it starts again.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::data;
use super::endpoint::attempt_timeout;
use crate::crew::{Assigned, Share, dial_order};
use crate::node::{LinkCtx, Node, PlanEvent};
use crate::observe::SubLogKey;
use crate::pull::{PullSpec, REFUSAL_HOLD_HEARTBEATS, run_pull};
use crate::tasks::Task;

/// How often the worker looks again even when nothing happened: a neighbour to dial again,
/// a rest to end, a target topic created again.
const TICK: Duration = Duration::from_millis(250);

/// How long this node keeps a data-only connection to a neighbour's node other than the
/// first in its dial order before it tries that one again (back after a restart, say), so
/// that serving spreads out again.
const PREFERRED_AGAIN: Duration = Duration::from_secs(30);

/// A data-only connection that ends sooner than this after it opened counts as a failed
/// dial (the neighbour is dialled again after a backoff).
const SHORT_LIVED: Duration = Duration::from_secs(2);

struct Running {
    id: u64,
    assigned: Assigned,
    task: Arc<Task>,
    target_incarnation: u64,
    cancel: CancellationToken,
}

/// When a neighbour may be dialled again, and the wait after the next failure.
struct Redial {
    at: Instant,
    backoff: Duration,
}

/// An open data-only connection, and when the node first in the dial order was last
/// tried (or this connection opened).
struct Open {
    ctx: Arc<LinkCtx>,
    opened: Instant,
    tried: Instant,
}

struct Worker {
    node: Arc<Node>,
    endpoint: quinn::Endpoint,
    pulls: HashMap<SubLogKey, Running>,
    connections: HashMap<String, Open>,
    redial: HashMap<String, Redial>,
    /// Sub-logs whose pull gave them up, since when.
    resting: HashMap<SubLogKey, Instant>,
    /// Each neighbour's node holding the link with this region (dialled last).
    linked: BTreeMap<String, SocketAddr>,
    /// Each neighbour's node whose connection ended last (dialled after every other: it
    /// is likely gone).
    lost: HashMap<String, SocketAddr>,
}

/// Pulls what `assigned` gives this node until the node stops; `ended` takes the pulls'
/// ends (`PlanEvent::PullEnded`, sent to the node's planner channel).
pub(crate) async fn run(
    node: Arc<Node>,
    endpoint: quinn::Endpoint,
    mut assigned: watch::Receiver<Share>,
    mut ended: mpsc::Receiver<PlanEvent>,
) {
    let mut worker = Worker {
        node: node.clone(),
        endpoint,
        pulls: HashMap::new(),
        connections: HashMap::new(),
        redial: HashMap::new(),
        resting: HashMap::new(),
        linked: BTreeMap::new(),
        lost: HashMap::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = assigned.changed() => if changed.is_err() { break },
            Some(event) = ended.recv() => worker.take(event),
            _ = tick.tick() => {}
            () = node.stop.cancelled() => break,
        }
        // Every pull that ended meanwhile (a connection's end ends all of its pulls).
        while let Ok(event) = ended.try_recv() {
            worker.take(event);
        }
        let Share { pulls, linked } = assigned.borrow_and_update().clone();
        worker.linked = linked;
        worker.reconcile(pulls).await;
    }
    for pull in worker.pulls.values() {
        pull.cancel.cancel();
    }
}

impl Worker {
    fn take(&mut self, event: PlanEvent) {
        if let PlanEvent::PullEnded {
            key,
            pull_id,
            gave_up,
        } = event
        {
            if gave_up.is_some() {
                self.resting.insert(key.clone(), Instant::now());
            }
            if self.pulls.get(&key).is_some_and(|p| p.id == pull_id) {
                self.pulls.remove(&key);
            }
        }
    }

    /// The incarnation of each of `keys`' target topic here (0: the topic or the partition
    /// is not there), read off the async workers (a topic this node does not know yet is
    /// looked up in the metadata). Never created here: the planning node creates them.
    async fn incarnations(&self, keys: Vec<SubLogKey>) -> HashMap<SubLogKey, u64> {
        if keys.is_empty() {
            return HashMap::new();
        }
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            keys.into_iter()
                .map(|key| {
                    let incarnation = node
                        .broker
                        .partition(&key.topic, key.partition)
                        .map_or(0, |p| p.incarnation());
                    (key, incarnation)
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    async fn reconcile(&mut self, want: Vec<Assigned>) {
        let want: HashMap<SubLogKey, Assigned> = want.into_iter().map(|a| (a.key(), a)).collect();
        let node = self.node.clone();
        let incarnations = self
            .incarnations(self.pulls.keys().cloned().collect())
            .await;
        self.pulls.retain(|key, pull| {
            let keep = want.get(key) == Some(&pull.assigned)
                && node.tasks.is_live(&pull.task)
                && incarnations.get(key) == Some(&pull.target_incarnation)
                && !pull.cancel.is_cancelled();
            if !keep {
                pull.cancel.cancel();
            }
            keep
        });
        let mut ended = Vec::new();
        self.connections.retain(|peer, c| {
            let open = !c.ctx.stop.is_cancelled();
            if !open {
                ended.push((peer.clone(), c.ctx.connection.remote_address(), c.opened));
            }
            open
        });
        for (peer, address, opened) in ended {
            self.lost.insert(peer.clone(), address);
            // Closed as soon as it opened (the neighbour's planning node holds no link with
            // this region now, or cannot judge subscriptions): dialled again after a
            // backoff, not at the next tick.
            if opened.elapsed() < SHORT_LIVED {
                self.back_off(&peer);
            } else {
                self.redial.remove(&peer);
            }
        }
        self.prefer_again(&want).await;
        let hold = node.settings.heartbeat_interval * REFUSAL_HOLD_HEARTBEATS;
        self.resting.retain(|_, at| at.elapsed() < hold);
        let mut starting = Vec::new();
        for (key, assigned) in want {
            if self.pulls.contains_key(&key) || self.resting.contains_key(&key) {
                continue;
            }
            let Some(task) = node.tasks.task(&assigned.task).filter(|t| t.running()) else {
                // Not known here yet (the task records are read again every second).
                continue;
            };
            let Some(link) = self.connection(&assigned.node, &assigned.peer).await else {
                continue;
            };
            starting.push((key, assigned, task, link));
        }
        // The planning node creates target topics; this node takes them up, all looked up
        // at once.
        let keys = starting.iter().map(|(key, ..)| key.clone()).collect();
        let incarnations = self.incarnations(keys).await;
        for (key, assigned, task, link) in starting {
            let Some(&target_incarnation) = incarnations.get(&key).filter(|i| **i != 0) else {
                continue;
            };
            let id = node.next_id();
            let cancel = link.stop.child_token();
            self.pulls.insert(
                key.clone(),
                Running {
                    id,
                    assigned: assigned.clone(),
                    task: task.clone(),
                    target_incarnation,
                    cancel: cancel.clone(),
                },
            );
            node.tracker.spawn(run_pull(
                node.clone(),
                link,
                PullSpec {
                    id,
                    task,
                    source_topic: assigned.source_topic,
                    key,
                    // Only sub-logs stored here are given away (`pull::planner`).
                    relay: false,
                    pushed: None,
                },
                cancel,
            ));
        }
    }

    /// The open data-only connection to `peer`, dialled now (by node `me`, see
    /// [`dial_order`]) when there is none and its backoff allows.
    async fn connection(&mut self, me: &str, peer: &str) -> Option<Arc<LinkCtx>> {
        if let Some(c) = self.connections.get(peer) {
            return Some(c.ctx.clone());
        }
        let node = &self.node;
        if self.redial.get(peer).is_some_and(|r| Instant::now() < r.at) {
            return None;
        }
        let addresses = self.dial_order(me, peer, self.lost.get(peer).copied());
        match data::dial(node, &self.endpoint, peer, &addresses, self.dial_bound()).await {
            Ok(ctx) => {
                let open = Open {
                    ctx: ctx.clone(),
                    opened: Instant::now(),
                    tried: Instant::now(),
                };
                self.connections.insert(peer.to_string(), open);
                Some(ctx)
            }
            Err(error) => {
                if self.back_off(peer) {
                    tracing::warn!(event = "data_connection_failed", %peer, %error, "cannot open a data-only connection to pull this node's share; dialling again");
                }
                None
            }
        }
    }

    /// Dials `peer` again only after a backoff, doubled at each failure in a row; whether
    /// this is the first.
    fn back_off(&mut self, peer: &str) -> bool {
        let settings = &self.node.settings;
        let backoff = self.redial.get(peer).map_or(settings.reconnect_min, |r| {
            (r.backoff * 2).min(settings.reconnect_max)
        });
        let first = !self.redial.contains_key(peer);
        let at = Instant::now() + backoff;
        self.redial.insert(peer.to_string(), Redial { at, backoff });
        first
    }

    /// `peer`'s addresses in the order node `me` dials them.
    fn dial_order(&self, me: &str, peer: &str, lost: Option<SocketAddr>) -> Vec<SocketAddr> {
        let node = &self.node;
        node.topology
            .neighbours(&node.region)
            .into_iter()
            .find(|n| n.region == peer)
            .map(|n| dial_order(me, &n.addresses, self.linked.get(peer).copied(), lost))
            .unwrap_or_default()
    }

    fn dial_bound(&self) -> Duration {
        let settings = &self.node.settings;
        attempt_timeout(settings, None).min(settings.heartbeat_interval * 3)
    }

    /// Every [`PREFERRED_AGAIN`], a connection open to a node other than the first in this
    /// node's dial order tries that one again; when it answers, the pulls move to it (they
    /// end with the old connection and start again on the new one from the held end).
    async fn prefer_again(&mut self, want: &HashMap<SubLogKey, Assigned>) {
        let due: Vec<(String, String)> = self
            .connections
            .iter()
            .filter(|(_, open)| open.tried.elapsed() >= PREFERRED_AGAIN)
            .filter_map(|(peer, _)| {
                let me = want.values().find(|a| &a.peer == peer)?.node.clone();
                Some((peer.clone(), me))
            })
            .collect();
        for (peer, me) in due {
            let Some(&first) = self.dial_order(&me, &peer, None).first() else {
                continue;
            };
            let Some(open) = self.connections.get_mut(&peer) else {
                continue;
            };
            open.tried = Instant::now();
            if open.ctx.connection.remote_address() == first {
                continue;
            }
            let bound = self.dial_bound();
            if let Ok(ctx) = data::dial(&self.node, &self.endpoint, &peer, &[first], bound).await {
                tracing::info!(%peer, address = %first, "a neighbour's node this node prefers serves again; its pulls move there");
                let replaced = self.connections.insert(
                    peer,
                    Open {
                        ctx,
                        opened: Instant::now(),
                        tried: Instant::now(),
                    },
                );
                if let Some(old) = replaced {
                    old.ctx.stop.cancel();
                }
            }
        }
    }
}
