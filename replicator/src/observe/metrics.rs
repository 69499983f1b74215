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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControlRefusalLabels {
    pub kind: String,
    pub reason: String,
}

#[derive(Default)]
pub struct Metrics {
    /// Control state refused from a neighbour, by kind (task, group, principal,
    /// link_state) and reason (unsigned, bad_signature, wrong_region, not_entitled, …).
    pub control_refused: Family<ControlRefusalLabels, Counter>,
    /// Connections refused at the handshake (certificate, region, version).
    pub links_refused: Family<ReasonLabels, Counter>,
    /// Links closed because no heartbeat was answered, to be dialled afresh.
    pub link_closed_silent: Counter,
    /// Replicated data refused (malformed, crc, oversized, gap, overlap, loop, hop_limit).
    pub frames_refused: Family<ReasonLabels, Counter>,
    /// Records lost to retention at a source before they could be pulled.
    pub records_skipped_by_retention: Counter,
    /// Sub-logs dropped here because their origin re-created the topic (a newer
    /// incarnation replaced the copy held).
    pub incarnations_replaced: Counter,
    pub records_replicated: Family<TaskLabels, Counter>,
    pub bytes_replicated: Family<TaskLabels, Counter>,
    pub lag_records: Family<SubLogLabels, Gauge>,
    pub lag_seconds: Family<SubLogLabels, Gauge<f64, AtomicU64>>,
    /// Sub-logs of running tasks that lag and applied nothing for a while (their status
    /// has `stalled` and, in `last_error`, why).
    pub stalled_sub_logs: Gauge,
    pub links_up: Gauge,
    /// Per configured neighbour: 1 when the link is up by its heartbeats, else 0.
    pub link_up: Family<PeerLabels, Gauge>,
    pub link_rtt_seconds: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    pub link_sent_bytes: Family<PeerLabels, Counter>,
    pub link_received_bytes: Family<PeerLabels, Counter>,
    /// Batch bytes sent on a link as stored (raw) and as written to the stream (wire:
    /// smaller when the link packs them).
    pub link_batch_raw_bytes: Family<PeerLabels, Counter>,
    pub link_batch_wire_bytes: Family<PeerLabels, Counter>,
    /// New sub-logs this region served to a neighbour before it asked (`serve::push`).
    pub pushes_sent: Counter,
    /// Such streams received, by outcome: `adopted` as the sub-log's pull, or `declined`
    /// (the sub-log is pulled elsewhere or from another position; subscribed as usual).
    pub pushes_received: Family<OutcomeLabels, Counter>,
    /// Times this region's routes changed (a link went down or came back).
    pub route_changes: Counter,
    /// Batch bytes forwarded by this region as a pass-through relay (not stored).
    pub relayed_bytes: Counter,
    /// Records withheld from a region by a residency rule.
    pub residency_withheld_records: Counter,
    /// Records received that a residency rule keeps out of this region (the sender's
    /// configuration drifted): not stored.
    pub residency_refused_records: Counter,
    /// 1 while a neighbour's configuration digest differs from this region's.
    pub config_drift: Family<PeerLabels, Gauge>,
    /// Consumer-group cursors sent to neighbours, merged here (changed a cursor), and
    /// refused (no task syncs them with that neighbour, or invalid).
    pub group_cursors_sent: Counter,
    pub group_cursors_merged: Counter,
    pub group_cursors_refused: Counter,
    /// Control frames whose metadata writes were dropped on a full queue, by kind
    /// (`tasks`, `group_cursors`); the periodic resend repairs them.
    pub control_dropped: Family<KindLabels, Counter>,
    /// Tasks with label sets in the per-task families (pruned with the tasks).
    tasks_seen: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Per origin: what this region has not yet received of it — the RPO if that origin's
    /// region were lost now.
    pub rpo_records: Family<OriginLabels, Gauge>,
    pub rpo_bytes: Family<OriginLabels, Gauge>,
    pub rpo_seconds: Family<OriginLabels, Gauge<f64, AtomicU64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabels {
    pub origin: String,
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
            "pushes_sent",
            "New sub-logs served to a neighbour before it asked",
            self.pushes_sent.clone(),
        );
        r.register(
            "pushes_received",
            "Sub-log streams a neighbour pushed, by outcome (adopted, declined)",
            self.pushes_received.clone(),
        );
        r.register(
            "link_closed_silent",
            "Links closed because no heartbeat was answered, to be dialled afresh",
            self.link_closed_silent.clone(),
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
            "replication_incarnations_replaced",
            "Sub-logs replaced by a newer incarnation of their origin's topic (the origin deleted and re-created it); refusals of an older one count in replication_refused{reason=\"stale_incarnation\"}",
            self.incarnations_replaced.clone(),
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
        r.register(
            "replication_stalled_sub_logs",
            "Sub-logs of running tasks that lag and applied nothing for a while (see last_error in the replication status)",
            self.stalled_sub_logs.clone(),
        );
        r.register("links_up", "Replication links up", self.links_up.clone());
        r.register(
            "link_up",
            "Whether the link to a neighbour is up by its heartbeats (1) or not (0)",
            self.link_up.clone(),
        );
        r.register(
            "link_rtt_seconds",
            "Smoothed round-trip time of a link, from its heartbeats",
            self.link_rtt_seconds.clone(),
        );
        r.register(
            "link_sent_bytes",
            "UDP bytes sent on a link",
            self.link_sent_bytes.clone(),
        );
        r.register(
            "link_received_bytes",
            "UDP bytes received on a link",
            self.link_received_bytes.clone(),
        );
        r.register(
            "link_batch_raw_bytes",
            "Batch bytes sent on a link, as stored",
            self.link_batch_raw_bytes.clone(),
        );
        r.register(
            "link_batch_wire_bytes",
            "Batch bytes sent on a link, as written to the stream (packed when the link compresses)",
            self.link_batch_wire_bytes.clone(),
        );
        r.register(
            "route_changes",
            "Times this region's routes changed",
            self.route_changes.clone(),
        );
        r.register(
            "relayed_bytes",
            "Batch bytes forwarded as a pass-through relay, kept nowhere at rest",
            self.relayed_bytes.clone(),
        );
        r.register(
            "residency_withheld_records",
            "Records withheld from a region by a residency rule",
            self.residency_withheld_records.clone(),
        );
        r.register(
            "config_drift",
            "1 while a neighbour's configuration digest (residency, region names, config principals) differs from this region's",
            self.config_drift.clone(),
        );
        r.register(
            "control_refused",
            "Control state from neighbours refused (a seal that does not check, an author not entitled, a version jump, a sequence ahead of the clock), by kind and reason",
            self.control_refused.clone(),
        );
        r.register(
            "residency_refused_records",
            "Records received that a residency rule of this region keeps out of it, refused (not stored)",
            self.residency_refused_records.clone(),
        );
        r.register(
            "group_cursors_sent",
            "Consumer-group cursors sent to neighbours by group sync",
            self.group_cursors_sent.clone(),
        );
        r.register(
            "group_cursors_merged",
            "Synced consumer-group cursors that moved a cursor here",
            self.group_cursors_merged.clone(),
        );
        r.register(
            "group_cursors_refused",
            "Synced consumer-group cursors refused (no task syncs them, or invalid)",
            self.group_cursors_refused.clone(),
        );
        r.register(
            "replication_control_dropped",
            "Control frames (tasks, group_cursors) dropped on a full metadata-write queue; the periodic resend repairs them",
            self.control_dropped.clone(),
        );
        r.register(
            "rpo_records",
            "Records of an origin this region has not yet received (the RPO if the origin were lost now)",
            self.rpo_records.clone(),
        );
        r.register(
            "rpo_bytes",
            "Bytes of an origin this region has not yet received",
            self.rpo_bytes.clone(),
        );
        r.register(
            "rpo_seconds",
            "Age of the oldest record of an origin this region has not yet received (time since last caught up)",
            self.rpo_seconds.clone(),
        );
    }

    pub fn link_refused(&self, reason: &str) {
        by_reason(&self.links_refused, reason).inc();
    }

    /// A Batches frame of `raw` stored bytes went to `peer` as `wire` bytes.
    pub fn batches_sent(&self, peer: &str, raw: usize, wire: usize) {
        let labels = PeerLabels {
            peer: peer.to_string(),
        };
        self.link_batch_raw_bytes
            .get_or_create(&labels)
            .inc_by(raw as u64);
        self.link_batch_wire_bytes
            .get_or_create(&labels)
            .inc_by(wire as u64);
    }

    pub fn push_received(&self, adopted: bool) {
        let outcome = if adopted { "adopted" } else { "declined" };
        self.pushes_received
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn frame_refused(&self, reason: &str) {
        by_reason(&self.frames_refused, reason).inc();
    }

    pub fn control_refused(&self, kind: &str, reason: &str) {
        self.control_refused
            .get_or_create(&ControlRefusalLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn control_refusals(&self, kind: &str, reason: &str) -> u64 {
        self.control_refused
            .get_or_create(&ControlRefusalLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .get()
    }

    pub fn control_frames_dropped(&self, kind: &str) {
        self.control_dropped
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Drops the per-task label sets of tasks `exists` rejects (deleted tasks).
    pub fn retain_tasks(&self, exists: impl Fn(&str) -> bool) {
        let mut seen = self.tasks_seen.lock().expect("tasks seen lock");
        seen.retain(|task| {
            let keep = exists(task);
            if !keep {
                let labels = TaskLabels { task: task.clone() };
                self.records_replicated.remove(&labels);
                self.bytes_replicated.remove(&labels);
            }
            keep
        });
    }

    /// The counters of records and bytes replicated for `task`.
    pub fn replicated(&self, task: &str) -> (Counter, Counter) {
        let labels = TaskLabels {
            task: task.to_string(),
        };
        self.tasks_seen
            .lock()
            .expect("tasks seen lock")
            .insert(task.to_string());
        (
            self.records_replicated.get_or_create(&labels).clone(),
            self.bytes_replicated.get_or_create(&labels).clone(),
        )
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
