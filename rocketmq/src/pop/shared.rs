//! Consumer progress shared across regions. A group's PoP state is kept per region, but
//! its frontier in a partition (per origin, everything below is done: acknowledged,
//! dead-lettered, or not for the group's subscription) is a vector cursor, valid in every
//! region because a message's identity is.
//!
//! - Every `SYNC_INTERVAL`, the frontiers that moved are merged into the group's cursor
//!   (`Broker::merge_cursors`, never back); replication sends it to the regions of each task
//!   whose `groups` pattern names the group, where it is merged too.
//! - A cursor merged here (from another region, or a commit) moves this region's frontier up
//!   to it (`PartitionState::done_to`): in memory at once, in the stored state with its
//!   next write; a state loaded from the metadata starts from the group's cursor.
//!
//! So after a DR failover the group in the new primary receives every message that was not
//! done before the failure, and none that was done and synced. What may come again:
//! messages acknowledged out of order above the frontier (at most the group's messages in
//! flight at the time) and those done within the last interval before the failure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use broker::{Cursor, CursorChange};
use tokio_util::sync::CancellationToken;

use super::{Consumption, PartitionState};

/// How often moved frontiers are merged into the groups' cursors.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// `(group, topic, partition)`.
type Key = (String, String, u32);

impl Consumption {
    /// Moves `state`'s frontier up to the group's cursor `cursor`.
    pub(super) fn catch_up(state: &mut PartitionState, cursor: &Cursor) -> bool {
        let mut changed = false;
        for (origin, next) in &cursor.next {
            changed |= state.done_to(origin, *next, cursor.incarnation(origin));
        }
        changed
    }

    /// A group cursor changed here: the group's state, when loaded, follows it.
    fn absorb(&self, change: &CursorChange) {
        let key = (change.group.clone(), change.topic.clone());
        let Some(group) = self.groups.lock().expect("groups lock").get(&key).cloned() else {
            return;
        };
        let state = Self::partition_state(&group, change.partition);
        let mut state = state.lock().expect("partition state lock");
        for (origin, next) in &change.cursor.next {
            // Progress made elsewhere (or committed): an active-active group's origin is
            // not waiting on a lost consumer (`owner.rs`).
            if state.done_to(origin, *next, change.cursor.incarnation(origin)) {
                self.ownership
                    .progressed(&change.group, &change.topic, change.partition, origin);
            }
        }
    }

    /// Merges every frontier that moved since `published` into its group's cursor.
    fn publish(&self, published: &mut HashMap<Key, Cursor>) {
        let groups: Vec<_> = self
            .groups
            .lock()
            .expect("groups lock")
            .iter()
            .map(|(k, g)| (k.clone(), g.clone()))
            .collect();
        for ((group, topic), state) in groups {
            let partitions: Vec<_> = state
                .lock()
                .expect("group state lock")
                .partitions
                .iter()
                .map(|(p, s)| (*p, s.clone()))
                .collect();
            let mut moved = Vec::new();
            for (partition, state) in partitions {
                let cursor = state.lock().expect("partition state lock").cursor();
                let key = (group.clone(), topic.clone(), partition);
                if !cursor.next.is_empty() && published.get(&key) != Some(&cursor) {
                    moved.push((partition, cursor));
                }
            }
            if moved.is_empty() {
                continue;
            }
            let held_end =
                |partition: u32, origin: &str| self.broker.held_end(&topic, partition, origin);
            match self.broker.merge_cursors(&group, &topic, &moved, &held_end) {
                Ok(_) => {
                    for (partition, cursor) in moved {
                        published.insert((group.clone(), topic.clone(), partition), cursor);
                    }
                }
                Err(e) => {
                    tracing::warn!(event = "group_progress_share_failed", %group, %topic, error = %e, "sharing a group's progress failed; retried at the next interval");
                }
            }
        }
    }
}

/// Shares the groups' progress until `stop` (see the module documentation).
pub async fn run(consumption: Arc<Consumption>, stop: CancellationToken) {
    let mut changes = consumption.broker.cursor_changes();
    let mut every = tokio::time::interval(SYNC_INTERVAL);
    let mut published = HashMap::new();
    loop {
        tokio::select! {
            _ = every.tick() => {
                let c = consumption.clone();
                let mut p = std::mem::take(&mut published);
                published = tokio::task::spawn_blocking(move || {
                    c.publish(&mut p);
                    p
                })
                .await
                .unwrap_or_default();
            }
            change = changes.recv() => match change {
                Ok(change) => consumption.absorb(&change),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            () = stop.cancelled() => return,
        }
    }
}
