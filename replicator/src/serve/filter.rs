//! What a neighbour may receive of a batch: the records a task's tag filter passes and the
//! residency rules allow into that region. A filtered batch keeps its offsets (the dropped
//! records leave intended gaps), so identity is the same in every region.

use broker::batch::{Batch, PendingBatch};

use crate::node::Node;
use crate::tasks::Task;

/// The batches as `peer` may receive them: without the records the task's tag filter
/// drops or a residency rule keeps out of `peer`. A batch keeps its offsets (the dropped
/// records leave intended gaps).
pub(crate) fn filter_for(node: &Node, task: &Task, peer: &str, batches: Vec<Batch>) -> Vec<Batch> {
    let residency = &node.topology.residency;
    if task.spec.tags.is_empty() && !residency.has_rules() {
        return batches;
    }
    let mut withheld = 0u64;
    let batches = batches
        .into_iter()
        .map(|batch| {
            filter(batch, |r| {
                if !task.passes(r.tag.as_deref()) {
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

/// The batch with only the records `keep` accepts, covering the same offsets. Unchanged
/// when every record is kept.
fn filter(batch: Batch, mut keep: impl FnMut(&broker::record::Record) -> bool) -> Batch {
    let kept: Vec<bool> = batch.records().map(|(_, r)| keep(&r)).collect();
    if kept.iter().all(|k| *k) {
        return batch;
    }
    let base = batch.header().base_offset;
    let records: Vec<_> = batch
        .records()
        .zip(kept)
        .filter(|(_, k)| *k)
        .map(|((offset, r), _)| ((offset - base) as u32, r))
        .collect();
    let bytes = PendingBatch::covering(
        batch.header().last_offset_delta,
        records.iter().map(|(delta, r)| (*delta, r)),
    )
    .seal(base);
    Batch::from_bytes(bytes, usize::MAX).expect("a batch just encoded is well formed")
}
