//! One pull: subscribe to a sub-log from the held end, receive Batches frames ahead of
//! applying them (pipelined), check their hop path, and apply them with
//! `append_replicated_run` (one fsync per run). On an error the stream is re-opened from the
//! held end after a backoff; errors that the link will keep giving end the pull, and the
//! planner tries another source.

use std::sync::Arc;
use std::time::Duration;

use crate::wire::message as msg;
use crate::wire::message::StartFrom;
use broker::storage::GapPolicy;
use broker::trace::{TraceEvent, TraceKind};
use broker::{BrokerError, batch::Batch};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::adopt::adopts;
use super::error::PullError;
use crate::budget::Held;
use crate::node::{LinkCtx, Node, PlanEvent};
use crate::observe::SubLogKey;
use crate::routing::HopPath;
use crate::tasks::{Start, Task};
use crate::wire::{BatchesFrame, Frame, LinkCode, Refusal, close, io};

const SUBSCRIBED_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames received ahead of the applier.
const RECEIVE_AHEAD: usize = 4;
/// An applier run takes queued frames up to about this many bytes (one fsync).
const RUN_BYTES: usize = 4 << 20;

/// What one pull pulls.
pub(crate) struct PullSpec {
    /// The planner's id of this pull.
    pub id: u64,
    pub task: Arc<Task>,
    pub source_topic: String,
    pub key: SubLogKey,
    /// This region relays the sub-log (store-and-forward) rather than being its target.
    pub relay: bool,
    /// A stream the source pushed (`serve::push`), taken instead of subscribing when it
    /// serves what the subscription would ask for (`adopt`).
    pub pushed: Option<(msg::Push, quinn::RecvStream)>,
}

/// Runs the pull until it is cancelled, its task changes, or the link gives the sub-log
/// up; then tells the planner.
pub(crate) async fn run(
    node: Arc<Node>,
    link: Arc<LinkCtx>,
    pull: PullSpec,
    cancel: CancellationToken,
) {
    let PullSpec {
        id,
        task,
        source_topic,
        key,
        relay,
        mut pushed,
    } = pull;
    let mut backoff = node.settings.reconnect_min;
    let mut gave_up = None;
    loop {
        if !node.tasks.is_live(&task) {
            // The task was paused, changed or deleted: the planner starts what is needed.
            break;
        }
        let result = tokio::select! {
            r = subscription(&node, &link, &task, &source_topic, &key, relay, pushed.take()) => r,
            () = cancel.cancelled() => break,
        };
        match result {
            Ok(()) => backoff = node.settings.reconnect_min,
            Err(error) => {
                let refusal = error.refusal();
                if let Some(reason) = refusal {
                    node.metrics.frame_refused(reason);
                }
                node.status.error(task.name(), &key, error.to_string());
                if error.gives_up_the_link() {
                    tracing::warn!(event = "pull_backing_off", peer = %link.peer, topic = %key.topic, partition = key.partition, origin = %key.origin, %error, "not pulling this sub-log over this link for a while");
                    gave_up = Some(link.id);
                    break;
                }
                match refusal {
                    Some(reason) => {
                        tracing::warn!(event = "replicated_data_refused", peer = %link.peer, topic = %key.topic, partition = key.partition, origin = %key.origin, reason, %error, "refused replicated data; re-subscribing from the held end")
                    }
                    None => {
                        tracing::info!(peer = %link.peer, topic = %key.topic, partition = key.partition, origin = %key.origin, %error, "sub-log stream ended")
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cancel.cancelled() => break,
        }
        backoff = (backoff * 2).min(node.settings.reconnect_max);
    }
    node.planner
        .send(PlanEvent::PullEnded {
            key,
            pull_id: id,
            gave_up,
        })
        .await;
}

/// Where to ask the source to start: the held end, else the task's checkpoint (a start
/// position resolved before), else the task's start position; a relay starts from the
/// earliest record, so that it can serve whatever its downstream still lacks.
/// Where to subscribe from, and the incarnation of the origin's topic that position is of
/// (0: none or unknown).
fn subscribe_from(
    node: &Node,
    task: &Task,
    key: &SubLogKey,
    relay: bool,
) -> Result<(StartFrom, u64), PullError> {
    let partition = node.broker.partition(&key.topic, key.partition)?;
    if let Some(held) = partition.sub_log(&key.origin).filter(|s| s.end_offset > 0) {
        return Ok((StartFrom::Offset(held.end_offset), held.incarnation));
    }
    // A checkpoint saved for another incarnation of this target topic (deleted and created
    // again here since) says nothing about what the new one holds.
    let target = partition.incarnation();
    let checkpoint = node
        .broker
        .meta()
        .checkpoint(task.name(), &key.topic, key.partition, &key.origin)
        .map_err(BrokerError::from)?
        .filter(|c| c.target_incarnation == 0 || c.target_incarnation == target);
    if let Some(checkpoint) = checkpoint {
        return Ok((StartFrom::Offset(checkpoint.offset), checkpoint.incarnation));
    }
    Ok((start_position(node, task, relay)?, 0))
}

/// The task's start position, for a sub-log this region holds nothing of.
fn start_position(node: &Node, task: &Task, relay: bool) -> Result<StartFrom, PullError> {
    Ok(match task.start {
        _ if relay => StartFrom::Earliest,
        Start::Earliest => StartFrom::Earliest,
        // "latest" means from when the task first ran here, for every sub-log: one that
        // appears later (a new topic, a new origin) is pulled from its first record, not
        // from wherever it had got to when this region first heard of it.
        Start::Latest => StartFrom::TimestampMs(
            node.broker
                .meta()
                .task_started(task.name(), broker::record::now_ms())
                .map_err(BrokerError::from)?,
        ),
        Start::Timestamp(ms) => StartFrom::TimestampMs(ms),
    })
}

async fn subscription(
    node: &Arc<Node>,
    link: &Arc<LinkCtx>,
    task: &Arc<Task>,
    source_topic: &str,
    key: &SubLogKey,
    relay: bool,
    pushed: Option<(msg::Push, quinn::RecvStream)>,
) -> Result<(), PullError> {
    // Metadata reads, and a write when `latest` is resolved: off the async workers.
    let (mut from, held_incarnation) = {
        let (n, t, k) = (node.clone(), task.clone(), key.clone());
        tokio::task::spawn_blocking(move || subscribe_from(&n, &t, &k, relay))
            .await
            .expect("resolving where to subscribe from")?
    };
    let adopted = pushed.and_then(|(push, mut stream)| {
        let adopted = adopts(from, held_incarnation, &push);
        node.metrics.push_received(adopted);
        if adopted {
            return Some((push.subscribed, stream));
        }
        let _ = stream.stop(close::NOT_ADOPTED);
        None
    });
    // The subscription's send half stays open while the stream is served.
    let (_send, mut recv, start, path, incarnation) = match adopted {
        Some((s, recv)) => {
            // What the pushed stream serves, taken as if subscribed from its start: no
            // start position to resolve and save.
            from = StartFrom::Offset(s.start_offset);
            (None, recv, s.start_offset, s.path, s.incarnation)
        }
        None => {
            let (mut send, mut recv) = link.connection.open_bi().await?;
            let subscribe = Frame::Subscribe(msg::Subscribe {
                task: task.name().to_string(),
                topic: source_topic.to_string(),
                partition: key.partition,
                origin: key.origin.clone(),
                from: Some(from),
                via: Vec::new(),
                incarnation: held_incarnation,
            });
            io::write_frame(&mut send, &subscribe).await?;
            let read = io::read_frame_within(&mut recv, node.limits.control(), SUBSCRIBED_TIMEOUT);
            let s = match read.await? {
                Some(Frame::Subscribed(s)) => s,
                Some(other) => return Err(unexpected(other, "Subscribed")),
                None => return Err(PullError::Protocol("stream ended before Subscribed".into())),
            };
            (Some(send), recv, s.start_offset, s.path, s.incarnation)
        }
    };
    // Records the source's retention removed before this region pulled them; counted once
    // the first batch past them is stored (not on every retry).
    // Only the origin decides that records are gone; a relay that lacks them is the wrong
    // source. A store-and-forward server's path ends with itself (it stored the data);
    // pass-through relays hold nothing and pass the origin's answer on unchanged, so a
    // path of the origin alone means the origin answered, however many relays it passed.
    let from_origin = link.peer == key.origin || path == [key.origin.as_str()];
    if held_incarnation != 0 && incarnation != 0 && held_incarnation != incarnation {
        // The origin deleted and created the topic again (or this region holds the newer
        // one): the server sends its incarnation from the start; storage decides (a newer
        // one replaces what is held, an older one is refused).
        tracing::warn!(event = "source_incarnation_differs", topic = %key.topic, partition = key.partition, origin = %key.origin, held = held_incarnation, offered = incarnation, "the source serves another incarnation of the origin's topic");
        from = StartFrom::Earliest;
    }
    let skipped = match from {
        StartFrom::Offset(held) if start > held && !from_origin => {
            return Err(PullError::RelayGap { held, start });
        }
        StartFrom::Offset(held) if start > held => Some((held, start)),
        _ => None,
    };
    match from {
        StartFrom::Offset(_) => {}
        _ => {
            // Resolve the start position once: a restart before any record arrives must
            // not resolve `latest` again and skip what was produced meanwhile.
            let checkpoint = broker::meta::TaskCheckpoint {
                task: task.name().to_string(),
                topic: key.topic.clone(),
                partition: key.partition,
                origin: key.origin.clone(),
                offset: start,
                incarnation,
                target_incarnation: node
                    .broker
                    .partition(&key.topic, key.partition)
                    .map_or(0, |p| p.incarnation()),
            };
            let meta = node.broker.meta().clone();
            tokio::task::spawn_blocking(move || {
                meta.put_checkpoint(&checkpoint).and_then(|()| meta.flush())
            })
            .await
            .expect("saving a start position")
            .map_err(BrokerError::from)?;
        }
    }
    let held = match from {
        StartFrom::Offset(n) => n,
        _ => 0,
    };
    node.status.pulling(task.name(), key, &link.peer, held);

    let (frames_tx, frames_rx) = mpsc::channel(RECEIVE_AHEAD);
    let receive = receive(node, link, &mut recv, frames_tx);
    let apply = apply(node, task, key, incarnation, start, skipped, frames_rx);
    let result = tokio::try_join!(receive, apply).and_then(|(ended, ())| ended.map_or(Ok(()), Err));
    if matches!(&result, Err(e) if e.refusal().is_some()) {
        let _ = recv.stop(close::BAD_FRAME);
    }
    result
}

/// The error for a frame other than the `expected` kind: the peer's refusal when it is an
/// Error frame, a protocol error otherwise.
fn unexpected(frame: Frame, expected: &str) -> PullError {
    match frame {
        Frame::Error(e) => match LinkCode::parse(&e.code) {
            Some(code) => PullError::Refused(Refusal::new(code, e.message)),
            None => PullError::RefusedUnknown {
                code: e.code,
                message: e.message,
            },
        },
        other => PullError::Protocol(format!(
            "expected {expected} on a sub-log stream, got {:?}",
            other.kind()
        )),
    }
}

/// Reads frames and checks their hop path, handing them to the applier. The server's
/// `Error` frame ends the stream after the applier stored what came before it (returned
/// as `Ok(Some(error))`: a relay that reached a gap has sent good records up to it).
async fn receive(
    node: &Node,
    link: &LinkCtx,
    recv: &mut quinn::RecvStream,
    frames: mpsc::Sender<(BatchesFrame, Held)>,
) -> Result<Option<PullError>, PullError> {
    loop {
        // The frame holds its share of the link's receive budget until it is applied.
        let (frame, held) = match io::read_frame_held(recv, link.limits, &link.receive_budget)
            .await?
        {
            None => return Ok(None),
            Some((Frame::Batches(frame), held)) => (frame, held),
            Some((error @ Frame::Error(_), _)) => return Ok(Some(unexpected(error, "Batches"))),
            Some((other, _)) => return Err(unexpected(other, "Batches")),
        };
        HopPath(&frame.header.hop_path)
            .admits(&node.region, node.settings.hop_limit)
            .map_err(|error| PullError::Hop {
                offset: frame.header.base_offset,
                error,
            })?;
        if frames.send((frame, held)).await.is_err() {
            return Ok(None);
        }
    }
}

/// Applies received frames in runs. Only the first batch of the stream may start past the
/// held end, and only at the start the source announced (retention, start position).
async fn apply(
    node: &Node,
    task: &Task,
    key: &SubLogKey,
    incarnation: u64,
    announced_start: u64,
    skipped: Option<(u64, u64)>,
    mut frames: mpsc::Receiver<(BatchesFrame, Held)>,
) -> Result<(), PullError> {
    let mut first = true;
    while let Some((frame, mut held)) = frames.recv().await {
        let mut bytes = frame.bytes();
        let mut path = frame.header.hop_path.clone();
        let mut batches: Vec<Batch> = frame.batches;
        while bytes < RUN_BYTES {
            let Ok((more, more_held)) = frames.try_recv() else {
                break;
            };
            bytes += more.bytes();
            path = more.header.hop_path.clone();
            batches.extend(more.batches);
            held.merge(more_held);
        }
        // A rate-limited task applies batch by batch as the limiter admits them, so the
        // records arrive at the limited rate instead of in one late burst.
        let runs: Vec<Vec<Batch>> = if task.limited() {
            batches.into_iter().map(|b| vec![b]).collect()
        } else {
            vec![batches]
        };
        for run in runs {
            let mut run = admit(node, key, run);
            let traced = traced(node, key, &path, &run);
            let records: u64 = run.iter().map(|b| u64::from(b.header().record_count)).sum();
            let bytes: u64 = run.iter().map(|b| b.bytes().len() as u64).sum();
            task.throttle(records, bytes).await;
            if first {
                first = false;
                if run[0].header().base_offset <= announced_start {
                    let head = run.remove(0);
                    apply_run(node, task, key, incarnation, vec![head], GapPolicy::Allow).await?;
                    if let Some((held, start)) = skipped {
                        node.metrics
                            .records_skipped_by_retention
                            .inc_by(start - held);
                        tracing::warn!(event = "records_skipped_by_retention", topic = %key.topic, partition = key.partition, origin = %key.origin, from = held, to = start, "the source no longer held these records (retention); replication continues after them");
                    }
                }
            }
            if !run.is_empty() {
                apply_run(node, task, key, incarnation, run, GapPolicy::Refuse).await?;
            }
            let tracer = node.broker.tracer();
            traced.into_iter().for_each(|event| tracer.record(event));
        }
        drop(held);
        path.push(node.region.clone());
        node.paths.learnt(key, path);
    }
    Ok(())
}

/// The trace events of applying `run` (received along `path`, this region not on it yet),
/// when tracing: one per batch, from the previous hop.
fn traced(node: &Node, key: &SubLogKey, path: &[String], run: &[Batch]) -> Vec<TraceEvent> {
    if !node.broker.tracer().enabled() {
        return Vec::new();
    }
    let mut hops = path.to_vec();
    hops.push(node.region.clone());
    let from = path.last().cloned().unwrap_or_default();
    let at_ms = broker::record::now_ms();
    run.iter()
        .filter(|b| b.header().record_count > 0)
        .map(|b| TraceEvent {
            kind: TraceKind::Replicated,
            region: node.region.clone(),
            at_ms,
            topic: key.topic.clone(),
            origin: key.origin.clone(),
            partition: key.partition,
            first: b.header().base_offset,
            last: b.header().last_offset(),
            detail: [
                ("from".to_string(), from.clone()),
                ("path".to_string(), hops.join(">")),
                (
                    "produced_ms".to_string(),
                    b.header().max_timestamp_ms.to_string(),
                ),
            ]
            .into(),
        })
        .collect()
}

/// The records of `batches` this region may hold: a record a residency rule keeps out of
/// this region (a sender whose configuration drifted, or that means harm, sent it) is
/// refused: left out, its offset an intended gap, and counted and logged. The sender's own
/// filter (`serve::filter`) should have withheld it; this check does not trust it to.
fn admit(node: &Node, key: &SubLogKey, batches: Vec<Batch>) -> Vec<Batch> {
    let residency = &node.topology.residency;
    if !residency.has_rules() {
        return batches;
    }
    let mut refused = 0u64;
    let batches = batches
        .into_iter()
        .map(|batch| {
            batch.retain(|r| {
                let allowed = residency.allows(r.tag.as_deref(), &r.properties, &node.region);
                refused += u64::from(!allowed);
                allowed
            })
        })
        .collect();
    if refused > 0 {
        node.metrics.residency_refused_records.inc_by(refused);
        tracing::warn!(event = "residency_refused_records", topic = %key.topic, partition = key.partition, origin = %key.origin, refused, "records a residency rule keeps out of this region were received and refused (is the sender's configuration the same?)");
    }
    batches
}

async fn apply_run(
    node: &Node,
    task: &Task,
    key: &SubLogKey,
    incarnation: u64,
    batches: Vec<Batch>,
    gap: GapPolicy,
) -> Result<(), PullError> {
    let run = node
        .broker
        .append_replicated_run_in(
            &key.topic,
            key.partition,
            &key.origin,
            incarnation,
            batches,
            gap,
        )
        .await?;
    if let Some(old) = run.replaced {
        node.metrics.incarnations_replaced.inc();
        node.status.restarted(task.name(), key);
        tracing::warn!(event = "incarnation_replaced", task = task.name(), topic = %key.topic, partition = key.partition, origin = %key.origin, old, new = incarnation, "the origin re-created the topic: the old incarnation held here was dropped, the new one replicates from its start");
    }
    node.status
        .applied(task.name(), key, run.end_offset, run.records, run.bytes);
    let (records, bytes) = node.metrics.replicated(task.name());
    records.inc_by(run.records);
    bytes.inc_by(run.bytes);
    Ok(())
}
