//! Routing on a node: the link-state database fed by this region's own links and by the
//! LinkState frames of others, the routes computed from it (topology crate), and what
//! they mean for this region: which origins each task needs here and whether this region
//! stores them (a target, or a store-and-forward relay) or passes them through.
//!
//! Each region floods its own link state every heartbeat interval and at once when a link
//! changes; a received state newer than the one held is stored and passed on to the other
//! neighbours. Every change of routes re-plans the pulls (`pull::reconcile`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use proto::link::v1 as pb;
use topology::{LinkState, LinkStates, Routes};

use crate::protocol::Frame;
use crate::pull;
use crate::service::Shared;
use crate::task::Task;

/// Why a region should hold an origin's sub-logs of a task's topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// The region is a target of the task for that origin.
    Store,
    /// The region is on the route from the origin to a target.
    Relay,
}

/// The routes and what follows from them, swapped whole on every change.
#[derive(Default, PartialEq, Eq)]
pub(crate) struct RouteView {
    pub routes: Routes,
    /// (task, origin, region): `region` relays `origin`'s data of `task`.
    duties: BTreeSet<(String, String, String)>,
}

impl RouteView {
    fn compute(shared: &Shared, states: &LinkStates) -> Self {
        let routes = Routes::compute(&shared.topology, states);
        let regions: Vec<&str> = shared.topology.regions().collect();
        let mut duties = BTreeSet::new();
        for task in shared.tasks().iter().filter(|t| t.running()) {
            for &origin in &regions {
                for &target in &regions {
                    if !task.flows(origin, target) {
                        continue;
                    }
                    let Some(path) = routes.path(origin, target) else {
                        continue;
                    };
                    for relay in &path[1..path.len() - 1] {
                        duties.insert((task.name().to_string(), origin.to_string(), relay.clone()));
                    }
                }
            }
        }
        RouteView { routes, duties }
    }

    /// Whether and why `region` should hold `origin`'s sub-logs of `task`'s topics.
    /// Whether `region` takes part in `task`: one of its regions, or a relay on a route
    /// between two of them.
    pub fn takes_part(&self, task: &Task, region: &str) -> bool {
        task.spec.involves(region)
            || self
                .duties
                .iter()
                .any(|(t, _, r)| t == task.name() && r == region)
    }

    pub fn need(&self, task: &Task, origin: &str, region: &str) -> Option<Need> {
        if origin == region || !task.running() {
            return None;
        }
        if task.flows(origin, region) {
            return Some(Need::Store);
        }
        self.duties
            .contains(&(
                task.name().to_string(),
                origin.to_string(),
                region.to_string(),
            ))
            .then_some(Need::Relay)
    }

    /// Where `region` pulls `origin`'s data from, cheapest first.
    pub fn candidates(&self, region: &str, origin: &str) -> &[(String, u64)] {
        self.routes.candidates(region, origin)
    }
}

/// The link-state database and this region's sequence number.
pub(crate) struct Routing {
    pub states: LinkStates,
    seq: u64,
}

impl Routing {
    pub fn new() -> Self {
        Routing {
            states: LinkStates::default(),
            seq: broker::record::now_ms().max(0) as u64,
        }
    }
}

/// The state of this region's links now, as the heartbeats say.
fn own_links(shared: &Shared) -> LinkState {
    let links = shared.links.lock().expect("links lock");
    let states = shared
        .topology
        .neighbours(&shared.region)
        .into_iter()
        .map(|n| {
            let (up, srtt) = links
                .get(&n.region)
                .map_or((false, None), |l| l.health_now());
            (n.region, (up, srtt.map_or(0, |d| d.as_micros() as u64)))
        })
        .collect();
    LinkState {
        seq: 0,
        links: states,
    }
}

fn to_frame(region: &str, state: &LinkState) -> Frame {
    Frame::LinkState(pb::LinkState {
        region: region.to_string(),
        seq: state.seq,
        links: state
            .links
            .iter()
            .map(|(peer, (up, srtt))| pb::LinkHealth {
                peer: peer.clone(),
                up: *up,
                srtt_us: *srtt,
            })
            .collect(),
    })
}

/// Publishes this region's link state (a link went up or down, or the periodic refresh)
/// and re-plans if routes changed.
pub(crate) fn links_changed(shared: &Arc<Shared>) {
    let frame = {
        // Own state, its sequence number and the routes are made under one lock, so a
        // newer state never gets an older number and an older view never replaces a newer.
        let mut routing = shared.routing.lock().expect("routing lock");
        let mut own = own_links(shared);
        routing.seq = (routing.seq + 1).max(broker::record::now_ms().max(0) as u64);
        own.seq = routing.seq;
        let frame = to_frame(&shared.region, &own);
        routing.states.update(&shared.region, own);
        recompute(shared, &routing);
        frame
    };
    flood(shared, &frame, None);
}

/// The tasks changed: relay duties follow them, and the pulls are re-planned.
pub(crate) fn tasks_changed(shared: &Shared) {
    let routing = shared.routing.lock().expect("routing lock");
    recompute(shared, &routing);
    pull::request_reconcile(shared);
}

/// A LinkState frame from neighbour `from`.
pub(crate) fn on_link_state(shared: &Arc<Shared>, from: &str, state: pb::LinkState) {
    if state.region == shared.region || !shared.topology.contains(&state.region) {
        return;
    }
    let region = state.region.clone();
    let parsed = LinkState {
        seq: state.seq,
        links: state
            .links
            .iter()
            .map(|l| (l.peer.clone(), (l.up, l.srtt_us)))
            .collect(),
    };
    let newer = {
        let mut routing = shared.routing.lock().expect("routing lock");
        let newer = routing.states.update(&region, parsed);
        if newer {
            recompute(shared, &routing);
        }
        newer
    };
    if newer {
        flood(shared, &Frame::LinkState(state), Some(from));
    }
}

/// Sends every known link state to a neighbour whose link just came up.
pub(crate) fn sync_to(shared: &Shared, control: &tokio::sync::mpsc::Sender<Frame>) {
    let routing = shared.routing.lock().expect("routing lock");
    for (region, state) in routing.states.iter() {
        let _ = control.try_send(to_frame(region, state));
    }
}

/// Sends `frame` on every link's control stream but `except`'s. A full control queue drops
/// it: link states and the task catalog are both re-sent periodically.
pub(crate) fn flood(shared: &Shared, frame: &Frame, except: Option<&str>) {
    let links = shared.links.lock().expect("links lock");
    for (peer, link) in links.iter() {
        if Some(peer.as_str()) != except {
            let _ = link.control.try_send(frame.clone());
        }
    }
}

/// Recomputes the routes from the link states (the caller holds the routing lock) and, if
/// they changed, publishes them and asks for a re-plan of the pulls.
fn recompute(shared: &Shared, routing: &Routing) {
    let view = RouteView::compute(shared, &routing.states);
    {
        let mut current = shared.view.lock().expect("route view lock");
        if **current == view {
            return;
        }
        *current = Arc::new(view);
    }
    shared.metrics.route_changes.inc();
    shared.route_generation.send_modify(|g| *g += 1);
    let view = shared.view();
    let summary: Vec<String> = shared
        .topology
        .regions()
        .filter(|r| *r != shared.region)
        .map(
            |r| match view.routes.candidates(&shared.region, r).first() {
                Some((via, cost)) => format!("{r} via {via} ({cost})"),
                None => format!("{r} unreachable"),
            },
        )
        .collect();
    tracing::info!(routes = %summary.join(", "), "routes changed");
    pull::request_reconcile(shared);
}

/// Milliseconds of a monotonic clock (since the first call): heartbeat times and link
/// health, which a wall-clock step must not disturb.
pub(crate) fn mono_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

/// Marks links down whose heartbeats went unanswered; returns whether any changed.
pub(crate) fn check_health(shared: &Shared) -> bool {
    let now = mono_ms();
    let links = shared.links.lock().expect("links lock");
    let mut changed = false;
    for (peer, link) in links.iter() {
        let transition = link.health.lock().expect("health lock").on_tick(now);
        if let Some(t) = transition {
            tracing::warn!(%peer, ?t, "link health changed: no heartbeat answered");
            changed = true;
        }
    }
    changed
}

/// Publishes link gauges and byte counters.
pub(crate) fn publish_link_metrics(shared: &Shared) {
    let links = shared.links.lock().expect("links lock");
    for n in shared.topology.neighbours(&shared.region) {
        let labels = crate::metrics::PeerLabels {
            peer: n.region.clone(),
        };
        let (up, srtt) = links
            .get(&n.region)
            .map_or((false, None), |l| l.health_now());
        let rtt = srtt.map_or(0.0, |d| d.as_secs_f64());
        shared
            .metrics
            .link_up
            .get_or_create(&labels)
            .set(i64::from(up));
        shared
            .metrics
            .link_rtt_seconds
            .get_or_create(&labels)
            .set(rtt);
        if let Some(l) = links.get(&n.region) {
            let stats = l.connection.stats();
            let (tx, rx) = (stats.udp_tx.bytes, stats.udp_rx.bytes);
            let sent = l.counted_tx.swap(tx, Ordering::Relaxed);
            let received = l.counted_rx.swap(rx, Ordering::Relaxed);
            shared
                .metrics
                .link_sent_bytes
                .get_or_create(&labels)
                .inc_by(tx.saturating_sub(sent));
            shared
                .metrics
                .link_received_bytes
                .get_or_create(&labels)
                .inc_by(rx.saturating_sub(received));
        }
    }
}
