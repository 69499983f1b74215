//! The serving side of a sub-log stream: checks the peer's Subscribe against the tasks
//! and the hop path, answers Subscribed with the first offset it will send, then pushes
//! Batches frames as the sub-log's durable end moves, bounded by QUIC flow control.

use std::sync::Arc;
use std::time::Duration;

use broker::batch::{Batch, PendingBatch};
use broker::storage::{Partition, SubLogReader};
use proto::link::v1 as pb;
use proto::link::v1::subscribe::From as SubscribeFrom;

use crate::io;
use crate::link::LinkCtx;
use crate::protocol::{BatchesFrame, Frame, codes};
use crate::proxy;
use crate::routing::Need;
use crate::service::Shared;
use crate::status::SubLogKey;
use crate::task::Task;

const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Refusal {
    code: &'static str,
    message: String,
}

pub(crate) fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

pub(crate) async fn serve_stream(
    shared: Arc<Shared>,
    link: Arc<LinkCtx>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    // The first frame of a stream is read under the control limit (64 KiB): a peer cannot
    // make this region buffer a full-size frame per stream before it is authorized.
    let subscribe = match io::read_frame_within(
        &mut recv,
        shared.limits.control(),
        SUBSCRIBE_TIMEOUT,
    )
    .await
    {
        Ok(Some(Frame::Subscribe(s))) => s,
        Ok(Some(other)) => {
            shared.metrics.frame_refused("protocol");
            let message = format!("expected Subscribe, got {:?}", other.kind());
            tracing::warn!(peer = %link.peer, %message, "refused a sub-log stream");
            send_error(&mut send, refuse(codes::PROTOCOL, message)).await;
            return;
        }
        Ok(None) => return,
        Err(e) => {
            let mut code = codes::MALFORMED;
            if let io::StreamError::Frame(f) = &e {
                shared.metrics.frame_refused(f.reason());
                if f.reason() == "oversized" {
                    code = codes::OVERSIZED;
                }
            }
            tracing::warn!(peer = %link.peer, error = %e, "refused a sub-log stream: bad Subscribe");
            send_error(&mut send, refuse(code, e.to_string())).await;
            return;
        }
    };
    let authorized = authorize(&shared, &link.peer, &subscribe).and_then(|task| {
        if relays_without_storing(&shared, &task, &subscribe.origin) {
            return Ok((task, None));
        }
        let (partition, key) = held(&shared, &link.peer, &subscribe)?;
        Ok((task, Some((partition, key))))
    });
    let (task, partition, key) = match authorized {
        Ok((task, Some((partition, key)))) => (task, partition, key),
        Ok((task, None)) => {
            proxy::relay(shared, link, task, subscribe, send).await;
            return;
        }
        Err(refusal) => {
            tracing::warn!(peer = %link.peer, topic = %subscribe.topic, partition = subscribe.partition, origin = %subscribe.origin, code = refusal.code, message = %refusal.message, "refused a subscription");
            send_error(&mut send, refusal).await;
            return;
        }
    };
    // Records of another incarnation than the puller's: its offsets mean nothing here, so
    // this region's incarnation is served from its start.
    let incarnation = partition.incarnation_of(&key.origin);
    let from =
        if subscribe.incarnation != 0 && incarnation != 0 && subscribe.incarnation != incarnation {
            Some(SubscribeFrom::Earliest(true))
        } else {
            subscribe.from
        };
    let start = match start_offset(&partition, &key.origin, from) {
        Ok(start) => start,
        Err(e) => {
            send_error(&mut send, refuse(codes::STORAGE, e.to_string())).await;
            return;
        }
    };
    let frame_target = shared.settings.frame_target_bytes;
    let reader = SubLogReader::new(partition.clone(), &key.origin, start);
    let mut read_from = Source {
        shared: &shared,
        partition,
        key: &key,
        // At the start a region may have lost records to retention (its own, when it is
        // the origin) or begin past them (a start position): `Subscribed` announces that.
        mid_stream: false,
        incarnation,
    };
    let Some((mut reader, mut pending)) = read_from.read(reader, frame_target, &mut send).await
    else {
        return;
    };
    read_from.mid_stream = true;
    // Announce where the data really starts: past the requested offset when this region
    // holds a gap there (retention, or a late start of its own).
    let start = pending
        .first()
        .map_or(start, |b| start.max(b.header().base_offset));
    let subscribed = Frame::Subscribed(pb::Subscribed {
        start_offset: start,
        path: shared.path_of(&key),
        incarnation,
    });
    if io::write_frame(&mut send, &subscribed).await.is_err() {
        return;
    }
    tracing::debug!(peer = %link.peer, topic = %key.topic, partition = key.partition, origin = %key.origin, start, "serving sub-log");
    let mut tasks = shared.task_generation.subscribe();
    // The catalog is looked at only when it changed (and once at the start).
    let mut look = true;
    loop {
        let news = std::mem::take(&mut look) || tasks.has_changed().unwrap_or(false);
        if news && {
            tasks.mark_unchanged();
            changed(&shared, &task)
        } {
            // Paused, deleted or changed: stop shipping; the puller re-plans.
            send_error(
                &mut send,
                refuse(
                    codes::NOT_ALLOWED,
                    format!("task \"{}\" changed", task.name()),
                ),
            )
            .await;
            return;
        }
        if pending.is_empty() {
            tokio::select! {
                waited = reader.wait_for_data() => if waited.is_err() {
                    let _ = send.finish();
                    return;
                },
                // `changed()` marks the change seen: look at the catalog explicitly.
                _ = tasks.changed() => {
                    look = true;
                    continue;
                }
                _ = send.stopped() => return,
                () = link.stop.cancelled() => return,
            }
        } else {
            let batches = filter_for(&shared, &task, &link.peer, std::mem::take(&mut pending));
            let frame = Frame::Batches(BatchesFrame::new(batches, shared.path_of(&key)));
            let written = tokio::select! {
                w = io::write_frame(&mut send, &frame) => w,
                () = link.stop.cancelled() => return,
            };
            if written.is_err() {
                return;
            }
        }
        let Some(next) = read_from.read(reader, frame_target, &mut send).await else {
            return;
        };
        (reader, pending) = next;
    }
}

/// The sub-log a stream serves, read batch run by batch run.
struct Source<'a> {
    shared: &'a Shared,
    partition: Arc<Partition>,
    key: &'a SubLogKey,
    /// Past the first read: records must follow on from what was sent.
    mid_stream: bool,
    /// The incarnation announced in `Subscribed`: when the sub-log held here is replaced
    /// by another (a relay that took a re-created topic), the stream ends, since its
    /// offsets would continue another incarnation's.
    incarnation: u64,
}

impl Source<'_> {
    /// One read of the sub-log on the blocking pool (page-cache reads). Ends the stream
    /// (`None`) after telling the peer why: a failed read (logged, `STORAGE`), or records
    /// this region does not hold (`MISSING_RECORDS`) — a hole in its copy, which a reader
    /// cannot pass (at a segment boundary it would find nothing to send while the durable
    /// end says there is more, and the stream would spin), and which only the origin may
    /// announce as gone. The puller then takes the sub-log from another region.
    async fn read(
        &self,
        mut reader: SubLogReader,
        max_bytes: usize,
        send: &mut quinn::SendStream,
    ) -> Option<(SubLogReader, Vec<Batch>)> {
        let partition = self.partition.clone();
        let origin = self.key.origin.clone();
        if self.partition.incarnation_of(&self.key.origin) != self.incarnation {
            tracing::info!(topic = %self.key.topic, partition = self.key.partition, origin = %self.key.origin, "the served sub-log was replaced by another incarnation; ending the stream");
            let _ = send.finish();
            return None;
        }
        let read = tokio::task::spawn_blocking(move || {
            let from = reader.next_offset();
            // Sampled before the read: everything below it is durable and readable then.
            let durable_end = partition.sub_log(&origin).map_or(0, |s| s.durable_end);
            let batches = reader.read(max_bytes);
            (reader, from, durable_end, batches)
        })
        .await;
        // Cancelled: the node's runtime is going away.
        let Ok((reader, from, durable_end, read)) = read else {
            return None;
        };
        let key = self.key;
        let batches = match read {
            Ok(batches) => batches,
            Err(e) => {
                tracing::error!(topic = %key.topic, partition = key.partition, origin = %key.origin, error = %e, "reading a sub-log to serve failed");
                send_error(send, refuse(codes::STORAGE, e.to_string())).await;
                return None;
            }
        };
        let me = &self.shared.region;
        let missing = match batches.first() {
            None if reader.next_offset() < durable_end => Some(format!(
                "{me} does not hold offsets from {} of sub-log {}/{}@{} (it holds records up to {durable_end} past a gap there); pull them from another region",
                reader.next_offset(),
                key.topic,
                key.partition,
                key.origin
            )),
            Some(first)
                if self.mid_stream && *me != key.origin && first.header().base_offset > from =>
            {
                Some(format!(
                    "{me} does not hold offsets {from}..{} of sub-log {}/{}@{}; pull them from another region",
                    first.header().base_offset,
                    key.topic,
                    key.partition,
                    key.origin
                ))
            }
            _ => None,
        };
        if let Some(message) = missing {
            tracing::info!(topic = %key.topic, partition = key.partition, origin = %key.origin, %message, "cannot serve a sub-log past a gap");
            send_error(send, refuse(codes::MISSING_RECORDS, message)).await;
            return None;
        }
        Some((reader, batches))
    }
}

pub(crate) async fn send_error(send: &mut quinn::SendStream, refusal: Refusal) {
    let frame = Frame::Error(pb::Error {
        code: refusal.code.to_string(),
        message: refusal.message,
    });
    let _ = io::write_frame(send, &frame).await;
    let _ = send.finish();
}

/// Checks that a running task lets `peer` pull this origin's data of this topic from this
/// region: the peer is a target of the task for that origin, or a relay on its route.
fn authorize(shared: &Shared, peer: &str, subscribe: &pb::Subscribe) -> Result<Arc<Task>, Refusal> {
    let task = shared.task(&subscribe.task).ok_or_else(|| {
        refuse(
            codes::NOT_ALLOWED,
            format!("no task \"{}\" here", subscribe.task),
        )
    })?;
    if !task.running() {
        return Err(refuse(
            codes::NOT_ALLOWED,
            format!("task \"{}\" is paused", task.name()),
        ));
    }
    if subscribe.origin == peer {
        return Err(refuse(
            codes::LOOP,
            format!("{peer} is the origin of these records"),
        ));
    }
    if subscribe.via.iter().any(|r| *r == shared.region)
        || subscribe.via.len() >= shared.settings.hop_limit
    {
        return Err(refuse(
            codes::LOOP,
            format!(
                "the request already passed {} or too many relays (via {})",
                shared.region,
                subscribe.via.join(" > ")
            ),
        ));
    }
    if !task.matches(&subscribe.topic)
        || shared.view().need(&task, &subscribe.origin, peer).is_none()
    {
        return Err(refuse(
            codes::NOT_ALLOWED,
            format!(
                "task \"{}\" does not carry topic \"{}\" of origin {} to {peer} (it is neither a target nor a relay on the route)",
                task.name(),
                subscribe.topic,
                subscribe.origin,
            ),
        ));
    }
    Ok(task)
}

/// Whether `task` is no longer the live, running version of itself.
pub(crate) fn changed(shared: &Shared, task: &Arc<Task>) -> bool {
    !shared
        .task(task.name())
        .is_some_and(|live| Arc::ptr_eq(&live, task) && live.running())
}

/// Whether this region relays `origin`'s data of `task` without storing it.
fn relays_without_storing(shared: &Shared, task: &Task, origin: &str) -> bool {
    shared.pass_through()
        && origin != shared.region
        && shared.view().need(task, origin, &shared.region) != Some(Need::Store)
}

/// The stored sub-log to serve, checked against the hop path of the data held.
fn held(
    shared: &Shared,
    peer: &str,
    subscribe: &pb::Subscribe,
) -> Result<(Arc<Partition>, SubLogKey), Refusal> {
    let partition = shared
        .broker
        .partition(&subscribe.topic, subscribe.partition)
        .map_err(|e| refuse(codes::UNKNOWN_TOPIC, e.to_string()))?;
    let key = SubLogKey {
        topic: subscribe.topic.clone(),
        partition: subscribe.partition,
        origin: subscribe.origin.clone(),
    };
    let path = shared.path_of(&key);
    if path.iter().any(|r| r == peer) {
        return Err(refuse(
            codes::LOOP,
            format!(
                "these records already passed {peer} (path {})",
                path.join(" > ")
            ),
        ));
    }
    if path.len() >= shared.settings.hop_limit {
        return Err(refuse(
            codes::LOOP,
            format!(
                "hop path {} is at the hop limit {}",
                path.join(" > "),
                shared.settings.hop_limit
            ),
        ));
    }
    Ok((partition, key))
}

/// The first offset to send: a requested offset (moved up past what retention removed),
/// or the task's start position resolved here.
fn start_offset(
    partition: &Partition,
    origin: &str,
    from: Option<SubscribeFrom>,
) -> broker::Result<u64> {
    let held = partition.sub_log(origin);
    let start = held.as_ref().map_or(0, |s| s.start_offset);
    Ok(match from {
        Some(SubscribeFrom::Offset(n)) => n.max(start),
        None | Some(SubscribeFrom::Earliest(_)) => start,
        Some(SubscribeFrom::Latest(_)) => held.map_or(0, |s| s.durable_end),
        Some(SubscribeFrom::TimestampMs(ms)) => {
            partition.sub_log_offset_for_time(origin, ms)?.unwrap_or(0)
        }
    })
}

/// The batches as `peer` may receive them: without the records the task's tag filter
/// drops or a residency rule keeps out of `peer`. A batch keeps its offsets (the dropped
/// records leave intended gaps).
pub(crate) fn filter_for(
    shared: &Shared,
    task: &Task,
    peer: &str,
    batches: Vec<Batch>,
) -> Vec<Batch> {
    let residency = &shared.topology.residency;
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
        shared.metrics.residency_withheld_records.inc_by(withheld);
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
