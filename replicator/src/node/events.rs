//! The events the pull planner takes (`pull::planner`), and the handle that sends them.
//!
//! The channel is bounded ([`PLANNER_QUEUE`]). Events that must not be lost (a link that
//! ended, a pull that ended: its place must be freed) are sent with `send().await`: the
//! sender waits while the planner is busy. An advertisement is offered (`try_send`): a
//! link's control reader never waits on planning (heartbeats would go unanswered), and an
//! advertisement dropped on a full queue is repaired by the next one, within a second. A
//! bare request to plan again is offered too: when the queue is full it is dropped, which
//! is safe because the planner plans after taking every queued event, from the latest
//! tasks and routes.

use std::sync::Arc;

use crate::wire::message as msg;
use tokio::sync::mpsc;

use crate::observe::SubLogKey;

/// Events queued for the planner.
pub(crate) const PLANNER_QUEUE: usize = 1024;

#[derive(Debug)]
pub(crate) enum PlanEvent {
    /// Tasks or routes changed.
    Replan,
    /// A neighbour's advertisement, on link `link_id`.
    Heard {
        peer: String,
        link_id: u64,
        advertise: Arc<msg::Advertise>,
    },
    /// Link `link_id` to `peer` ended.
    LinkEnded { peer: String, link_id: u64 },
    /// A neighbour opened a stream serving one of its new sub-logs (`serve::push`).
    Pushed(Box<Pushed>),
    /// The pull of `key` started as `pull_id` ended; `gave_up` names the link it gave up
    /// (loop, hop limit, missing records): another source is preferred for a while.
    PullEnded {
        key: SubLogKey,
        pull_id: u64,
        gave_up: Option<u64>,
    },
}

/// A sub-log stream a neighbour opened and announced with `Push`: the planner adopts it
/// as the sub-log's pull when it would pull the sub-log from that link, or stops it.
#[derive(Debug)]
pub(crate) struct Pushed {
    pub peer: String,
    pub link_id: u64,
    pub push: msg::Push,
    pub stream: quinn::RecvStream,
}

#[derive(Clone)]
pub(crate) struct Planner {
    tx: mpsc::Sender<PlanEvent>,
}

impl Planner {
    pub fn channel() -> (Self, mpsc::Receiver<PlanEvent>) {
        let (tx, rx) = mpsc::channel(PLANNER_QUEUE);
        (Planner { tx }, rx)
    }

    /// Asks for a plan; dropped when the queue is full (see the module documentation).
    pub fn replan(&self) {
        let _ = self.tx.try_send(PlanEvent::Replan);
    }

    /// Offers an event that a later one repairs; `false` when the queue was full and the
    /// event was dropped.
    pub fn offer(&self, event: PlanEvent) -> bool {
        self.tx.try_send(event).is_ok()
    }

    /// Sends an event that must not be lost, waiting for room. Fails only once the
    /// planner has stopped (the node is shutting down).
    pub async fn send(&self, event: PlanEvent) {
        let _ = self.tx.send(event).await;
    }
}
