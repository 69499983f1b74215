//! Replication tasks: what they are (`spec`: specs, validation, rate limits), the
//! versioned catalog every region shares (`catalog`), and the task set as the rest of the
//! node sees it (`book`).

pub mod book;
pub mod catalog;
pub mod spec;

pub use book::TaskBook;

use std::sync::Arc;

/// The regions of the running tasks that share consumer group `group`'s progress on
/// `topic` (active-active group ownership), sorted.
pub fn group_regions(tasks: &[Arc<Task>], group: &str, topic: &str) -> Vec<String> {
    let mut regions: Vec<String> = tasks
        .iter()
        .filter(|t| t.running() && t.syncs_group(group) && t.matches(topic))
        .flat_map(|t| t.spec.regions().cloned().collect::<Vec<_>>())
        .collect();
    regions.sort();
    regions.dedup();
    regions
}

/// The primary of a running DR task that shares `group`'s progress on `topic`.
pub fn group_primary(tasks: &[Arc<Task>], group: &str, topic: &str) -> Option<String> {
    tasks
        .iter()
        .filter(|t| t.running() && t.syncs_group(group) && t.matches(topic))
        .find_map(|t| t.spec.dr.as_ref().map(|dr| dr.primary.clone()))
}
pub use catalog::{ChangeError, TaskRecord};
pub use spec::{Direction, Dr, Start, Task, TaskError, TaskSpec, TaskState};
