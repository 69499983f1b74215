//! Metrics of delayed and half messages (`crate::timer`), registered by the node into the
//! console's `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Default)]
pub struct TimerMetrics {
    /// Held messages appended to their topic when due (committed transactions included).
    pub fired: Counter,
    /// Orphan checks sent about half messages whose transaction had not ended.
    pub orphan_checks: Counter,
    /// Half messages rolled back after the last unanswered check.
    pub orphans_rolled_back: Counter,
    /// Delay messages due in a region a DR task fenced, dropped there (the promoted
    /// region adopted them).
    pub dropped_fenced: Counter,
}

impl TimerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("georouter");
        r.register(
            "delayed_messages_fired",
            "Delay messages (and committed transaction messages) appended to their topic when due",
            self.fired.clone(),
        );
        r.register(
            "transaction_orphan_checks",
            "Orphan checks of half messages whose transaction had not ended",
            self.orphan_checks.clone(),
        );
        r.register(
            "transaction_orphans_rolled_back",
            "Half messages rolled back after their last unanswered check",
            self.orphans_rolled_back.clone(),
        );
        r.register(
            "delayed_messages_dropped_fenced",
            "Delay messages due in a region a DR task fenced, dropped there: the promoted region adopted them",
            self.dropped_fenced.clone(),
        );
    }
}
