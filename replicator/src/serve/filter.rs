//! What a neighbour may receive of a batch: the records a task's filters (tags, SQL) pass and the
//! residency rules allow into that region. A filtered batch keeps its offsets (the dropped
//! records leave intended gaps), so identity is the same in every region.

use broker::batch::Batch;

use crate::node::Node;
use crate::tasks::Task;

/// The batches as `peer` may receive them: without the records the task's tag filter
/// drops or a residency rule keeps out of `peer`. A batch keeps its offsets (the dropped
/// records leave intended gaps).
pub(crate) fn filter_for(node: &Node, task: &Task, peer: &str, batches: Vec<Batch>) -> Vec<Batch> {
    let residency = &node.topology.residency;
    if !task.filters() && !residency.has_rules() {
        return batches;
    }
    let mut withheld = 0u64;
    let batches = batches
        .into_iter()
        .map(|batch| {
            batch.retain(|r| {
                if !task.passes(r) {
                    return false;
                }
                let allowed = residency.allows(r.tag.as_deref(), &r.properties, peer);
                withheld += u64::from(!allowed);
                allowed
            })
        })
        .collect();
    if withheld > 0 {
        node.metrics.residency_withheld_records.inc_by(withheld);
    }
    batches
}
