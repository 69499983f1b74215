//! Prometheus metrics of replication. Refusals are counted by reason so that every kind of
//! bad input on a link shows up in `/metrics` as well as in the log.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubLogLabels {
    pub task: String,
    pub topic: String,
    pub partition: u32,
    pub origin: String,
}

#[derive(Default)]
pub struct Metrics {
    /// Connections refused at the handshake (certificate, region, version).
    pub links_refused: Family<ReasonLabels, Counter>,
    /// Replicated data refused (malformed, crc, oversized, gap, overlap, loop, hop_limit).
    pub frames_refused: Family<ReasonLabels, Counter>,
    /// Records lost to retention at a source before they could be pulled.
    pub records_skipped_by_retention: Counter,
    pub records_replicated: Family<TaskLabels, Counter>,
    pub bytes_replicated: Family<TaskLabels, Counter>,
    pub lag_records: Family<SubLogLabels, Gauge>,
    pub lag_seconds: Family<SubLogLabels, Gauge<f64, AtomicU64>>,
    pub links_up: Gauge,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("georouter");
        r.register(
            "link_refused",
            "Replication connections refused at the handshake, by reason",
            self.links_refused.clone(),
        );
        r.register(
            "replication_refused",
            "Replicated frames or batches refused, by reason",
            self.frames_refused.clone(),
        );
        r.register(
            "replication_retention_skipped_records",
            "Records removed by retention at a source before a target pulled them",
            self.records_skipped_by_retention.clone(),
        );
        r.register(
            "replicated_records",
            "Records applied by replication, by task",
            self.records_replicated.clone(),
        );
        r.register(
            "replicated_bytes",
            "Batch bytes applied by replication, by task",
            self.bytes_replicated.clone(),
        );
        r.register(
            "replication_lag_records",
            "Records the source holds that this region has not applied",
            self.lag_records.clone(),
        );
        r.register(
            "replication_lag_seconds",
            "Age of the oldest record not yet applied (time since last caught up)",
            self.lag_seconds.clone(),
        );
        r.register("links_up", "Replication links up", self.links_up.clone());
    }

    pub fn link_refused(&self, reason: &str) {
        by_reason(&self.links_refused, reason).inc();
    }

    pub fn frame_refused(&self, reason: &str) {
        by_reason(&self.frames_refused, reason).inc();
    }

    pub fn link_refusals(&self, reason: &str) -> u64 {
        by_reason(&self.links_refused, reason).get()
    }

    pub fn frame_refusals(&self, reason: &str) -> u64 {
        by_reason(&self.frames_refused, reason).get()
    }
}

fn by_reason(family: &Family<ReasonLabels, Counter>, reason: &str) -> Counter {
    family
        .get_or_create(&ReasonLabels {
            reason: reason.to_string(),
        })
        .clone()
}
