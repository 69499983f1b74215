//! The node's periodic work: link health checked four times per heartbeat interval and
//! this region's link state flooded once per interval (`routing_loop`, which also resends
//! the whole task catalog); checkpoints saved, status pruned and gauges published every
//! checkpoint interval (`checkpoint_loop`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use broker::meta::TaskCheckpoint;

use super::Node;
use crate::observe::metrics::{OriginLabels, PeerLabels, SubLogLabels};

/// Every this many routing ticks (5 heartbeat intervals) the whole task catalog is sent to
/// every neighbour again.
const CATALOG_REFRESH_TICKS: u64 = 20;

pub(crate) async fn routing_loop(node: Arc<Node>) {
    let mut tick = tokio::time::interval(node.settings.heartbeat_interval / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = node.stop.cancelled() => return,
        }
        n += 1;
        if node.check_health() || n.is_multiple_of(4) {
            node.links_changed();
        }
        if n.is_multiple_of(CATALOG_REFRESH_TICKS) {
            // Task frames dropped on a full control queue are repaired by this refresh.
            node.links.flood(&node.full_catalog_frame(), None);
        }
    }
}

/// Samples lag, throughput and RPO into the console's history every interval.
pub(crate) async fn history_loop(node: Arc<Node>) {
    let mut tick = tokio::time::interval(node.settings.history_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = node.stop.cancelled() => return,
        }
        let status = node.status_now();
        let rpo = crate::observe::rpo_by_origin(&status);
        node.history.sample(broker::record::now_ms(), &status, rpo);
    }
}

pub(crate) async fn checkpoint_loop(node: Arc<Node>) {
    let mut tick = tokio::time::interval(node.settings.checkpoint_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = node.stop.cancelled() => return,
        }
        let n = node.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || save_checkpoints(&n)).await {
            tracing::error!(event = "checkpoints_save_failed", error = %e, "saving replication checkpoints failed");
        }
        prune(&node);
        publish_gauges(&node);
    }
}

/// Saves every checkpoint that moved (on a blocking thread: metadata writes).
pub(crate) fn save_checkpoints(node: &Node) {
    let meta = node.broker.meta();
    for (task, key, offset) in node.status.checkpoints_to_save() {
        let Ok(partition) = node.broker.partition(&key.topic, key.partition) else {
            continue;
        };
        let checkpoint = TaskCheckpoint {
            task,
            incarnation: partition.incarnation_of(&key.origin),
            target_incarnation: partition.incarnation(),
            topic: key.topic,
            partition: key.partition,
            origin: key.origin,
            offset,
        };
        if let Err(e) = meta.put_checkpoint(&checkpoint) {
            tracing::error!(event = "checkpoint_save_failed", error = %e, "saving a replication checkpoint failed");
        }
    }
}

/// Forgets what belongs to tasks and topics that no longer exist here: status entries,
/// hop paths and their metric label sets (lag per sub-log, replicated totals per task), so
/// that none of them grows with every topic or task ever seen.
fn prune(node: &Node) {
    let snapshot = node.tasks.snapshot();
    let task_exists = |task: &str| snapshot.record(task).is_some();
    let topics: HashSet<String> = node.broker.topics().into_iter().map(|t| t.name).collect();
    let removed = node
        .status
        .retain(|task, key| task_exists(task) && topics.contains(&key.topic));
    for (task, key) in removed {
        let labels = SubLogLabels {
            task,
            topic: key.topic,
            partition: key.partition,
            origin: key.origin,
        };
        node.metrics.lag_records.remove(&labels);
        node.metrics.lag_seconds.remove(&labels);
    }
    node.paths.retain(|topic| topics.contains(topic));
    node.metrics.retain_tasks(task_exists);
}

/// Lag, RPO, stalled sub-logs and link gauges.
fn publish_gauges(node: &Node) {
    let m = &node.metrics;
    let status = node.status_now();
    let stalled = status.iter().filter(|s| s.stalled).count();
    m.stalled_sub_logs.set(stalled as i64);
    for o in crate::observe::rpo_by_origin(&status) {
        let labels = OriginLabels { origin: o.origin };
        m.rpo_records.get_or_create(&labels).set(o.records as i64);
        m.rpo_bytes.get_or_create(&labels).set(o.bytes as i64);
        m.rpo_seconds.get_or_create(&labels).set(o.seconds);
    }
    for s in status {
        let labels = SubLogLabels {
            task: s.task,
            topic: s.topic,
            partition: s.partition,
            origin: s.origin,
        };
        m.lag_records
            .get_or_create(&labels)
            .set(s.lag_records as i64);
        m.lag_seconds.get_or_create(&labels).set(s.lag_seconds);
    }
    let links = node.links.load();
    let up = links.values().filter(|l| l.health_now().0).count();
    m.links_up.set(up as i64);
    for n in node.topology.neighbours(&node.region) {
        let labels = PeerLabels {
            peer: n.region.clone(),
        };
        let link = links.get(&n.region);
        let (up, srtt) = link.map_or((false, None), |l| l.health_now());
        m.link_up.get_or_create(&labels).set(i64::from(up));
        m.link_rtt_seconds
            .get_or_create(&labels)
            .set(srtt.map_or(0.0, |d| d.as_secs_f64()));
        if let Some(l) = link {
            let stats = l.ctx.connection.stats();
            let (tx, rx) = (stats.udp_tx.bytes, stats.udp_rx.bytes);
            let sent = l.counted_tx.swap(tx, Ordering::Relaxed);
            let received = l.counted_rx.swap(rx, Ordering::Relaxed);
            m.link_sent_bytes
                .get_or_create(&labels)
                .inc_by(tx.saturating_sub(sent));
            m.link_received_bytes
                .get_or_create(&labels)
                .inc_by(rx.saturating_sub(received));
        }
    }
}
