//! Keeping the node's routes current: this region's own link state flooded when a link
//! changes (and every heartbeat interval), neighbours' states taken and passed on, and the
//! route view recomputed and published under the routing lock whenever either, or the
//! tasks, change. A changed view asks the planner for a new plan.

use crate::wire::message as msg;
use tokio::sync::mpsc;
use topology::LinkState;

use super::Node;
use crate::routing::{LinkStateDb, RouteView};
use crate::wire::Frame;

/// Milliseconds of a monotonic clock (since the first call): heartbeat times and link
/// health, which a wall-clock step must not disturb.
pub(crate) fn mono_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

fn now_ms() -> u64 {
    broker::record::now_ms().max(0) as u64
}

/// Heartbeat intervals without an answer before a link is closed and dialled afresh: one
/// more than it takes to call the link down, so the down transition (and the routes that
/// follow it) come first.
pub(crate) const CLOSE_AFTER_INTERVALS: u32 = 3;

impl Node {
    /// The state of this region's links now, as the heartbeats say.
    fn own_links(&self) -> LinkState {
        let links = self.links.load();
        let states = self
            .topology
            .neighbours(&self.region)
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

    /// Publishes this region's link state (a link went up or down, or the periodic
    /// refresh) and re-plans if routes changed.
    pub fn links_changed(&self) {
        let frame = {
            // Own state, its sequence number and the routes are made under one lock, so a
            // newer state never gets an older number and an older view never replaces a
            // newer one.
            let mut db = self.routing.lock().expect("routing lock");
            let frame = db.own(&self.region, self.own_links(), now_ms(), |state| {
                self.sealer.seal_link_state(state)
            });
            self.recompute(&db);
            frame
        };
        self.links.flood(&frame, None);
    }

    /// The tasks changed: relay duties follow them, and the pulls are re-planned.
    pub fn routes_for_tasks(&self) {
        let db = self.routing.lock().expect("routing lock");
        self.recompute(&db);
        self.planner.replan();
    }

    /// A LinkState frame from neighbour `from`: taken only with its region's seal
    /// (`trust`).
    pub fn on_link_state(&self, from: &str, state: msg::LinkState) {
        if state.region == self.region || !self.topology.contains(&state.region) {
            return;
        }
        if let Err(refusal) = super::trust::judge_link_state(&state, now_ms(), &self.verifier) {
            self.metrics.control_refused("link_state", refusal.reason());
            tracing::warn!(event = "link_state_refused", peer = %from, region = %state.region, seq = state.seq, error = %refusal, "a link state from a neighbour refused");
            return;
        }
        let newer = {
            let mut db = self.routing.lock().expect("routing lock");
            let newer = db.heard(&state);
            if newer {
                self.recompute(&db);
            }
            newer
        };
        if newer {
            self.links.flood(&Frame::LinkState(state), Some(from));
        }
    }

    /// Sends every known link state to a neighbour whose link just came up.
    pub fn sync_link_states_to(&self, control: &mpsc::Sender<Frame>) {
        let frames = self.routing.lock().expect("routing lock").frames();
        for frame in frames {
            let _ = control.try_send(frame);
        }
    }

    /// Recomputes the routes from the link states (the caller holds the routing lock) and,
    /// if they changed, publishes them and asks for a re-plan of the pulls.
    fn recompute(&self, db: &LinkStateDb) {
        let view = RouteView::compute(&self.topology, &self.active_tasks(), &db.states);
        if *self.routes.load() == view {
            return;
        }
        self.routes.publish(view);
        self.metrics.route_changes.inc();
        let view = self.view();
        let summary: Vec<String> = self
            .topology
            .regions()
            .filter(|r| *r != self.region)
            .map(|r| match view.candidates(&self.region, r).first() {
                Some((via, cost)) => format!("{r} via {via} ({cost})"),
                None => format!("{r} unreachable"),
            })
            .collect();
        tracing::info!(routes = %summary.join(", "), "routes changed");
        self.planner.replan();
    }

    /// Marks links down whose heartbeats went unanswered; returns whether any changed.
    pub fn check_health(&self) -> bool {
        let now = mono_ms();
        let mut changed = false;
        for (peer, link) in self.links.load().iter() {
            let (transition, silent) = {
                let mut health = link.health.lock().expect("link health lock");
                (
                    health.on_tick(now),
                    health.silent_for(CLOSE_AFTER_INTERVALS, now),
                )
            };
            if let Some(t) = transition {
                tracing::warn!(event = "link_health_changed", %peer, ?t, "link health changed: no heartbeat answered");
                changed = true;
            }
            if silent && link.ctx.connection.close_reason().is_none() {
                tracing::warn!(event = "link_closed_silent", %peer, intervals = CLOSE_AFTER_INTERVALS, "no heartbeat answered; closing the link to dial it afresh");
                self.metrics.link_closed_silent.inc();
                link.ctx
                    .connection
                    .close(crate::wire::close::SILENT, b"no heartbeat answered");
            }
        }
        changed
    }
}
