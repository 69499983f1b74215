//! The pulling side: from the neighbours' advertisements and the routes, decide which
//! sub-logs to pull and over which link (one link per sub-log at a time, the cheapest
//! healthy path that offers it), then for each: subscribe from
//! the held end, receive Batches frames ahead of applying them (pipelined), check them,
//! and apply them with `append_replicated_run` (one fsync per run). On any refusal the
//! stream is dropped and re-opened from the held end after a backoff.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use broker::storage::GapPolicy;
use broker::{BrokerError, batch::Batch};
use proto::link::v1 as pb;
use proto::link::v1::subscribe::From as SubscribeFrom;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::io::{self, StreamError};
use crate::link::LinkCtx;
use crate::protocol::{BatchesFrame, Frame, close, codes};
use crate::routing::Need;
use crate::service::{Shared, Slot};
use crate::status::SubLogKey;
use crate::task::{Start, Task};

const SUBSCRIBED_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames received ahead of the applier.
const RECEIVE_AHEAD: usize = 4;
/// An applier run takes queued frames up to about this many bytes (one fsync).
const RUN_BYTES: usize = 4 << 20;
/// How long a link that gave a sub-log up (loop, hop limit, missing records) is passed
/// over for it, in heartbeat intervals: long enough for routes to settle after a change.
pub(crate) const REFUSAL_HOLD_HEARTBEATS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("opening the stream: {0}")]
    Open(#[from] quinn::ConnectionError),
    #[error("peer refused: {code}: {message}")]
    Remote { code: String, message: String },
    #[error("{0}")]
    Loop(String),
    #[error("{0}")]
    HopLimit(String),
    #[error("{0}")]
    Protocol(String),
    #[error(transparent)]
    Storage(#[from] BrokerError),
    #[error(
        "the relay does not hold offsets {held}..{start} of this sub-log (only the origin may skip them); pull them from another region"
    )]
    RelayGap { held: u64, start: u64 },
    /// The server does not hold records this region needs (a hole in a relay's copy).
    #[error("{0}")]
    Missing(String),
}

impl PullError {
    /// Errors that this link will keep giving: the sub-log is left to another link.
    fn gives_up_the_link(&self) -> bool {
        matches!(
            self,
            PullError::Loop(_)
                | PullError::HopLimit(_)
                | PullError::RelayGap { .. }
                | PullError::Missing(_)
                | PullError::Storage(BrokerError::StaleIncarnation { .. })
        )
    }

    /// The refusal reason for metrics, or `None` for errors that are not bad input.
    fn refusal(&self) -> Option<&'static str> {
        match self {
            PullError::Stream(StreamError::Frame(e)) => Some(e.reason()),
            PullError::Stream(StreamError::EndedInFrame) => Some("malformed"),
            PullError::Loop(_) => Some("loop"),
            PullError::HopLimit(_) => Some("hop_limit"),
            PullError::Protocol(_) => Some("protocol"),
            PullError::Storage(BrokerError::OffsetGap { .. }) => Some("gap"),
            PullError::Storage(BrokerError::OverlappingBatch { .. }) => Some("overlap"),
            PullError::Storage(BrokerError::MalformedBatch(_)) => Some("malformed"),
            PullError::Storage(BrokerError::OwnOrigin { .. }) => Some("loop"),
            PullError::Storage(BrokerError::StaleIncarnation { .. }) => Some("stale_incarnation"),
            _ => None,
        }
    }
}

/// Stores a neighbour's advertisement and asks for a re-plan of what to pull.
pub(crate) fn on_advertise(shared: &Arc<Shared>, link: &Arc<LinkCtx>, advertise: pb::Advertise) {
    shared
        .heard
        .lock()
        .expect("heard lock")
        .insert(link.peer.clone(), Arc::new(advertise));
    request_reconcile(shared);
}

/// Asks the planner to run; requests made while it runs are coalesced into one more run.
pub(crate) fn request_reconcile(shared: &Shared) {
    shared.replan.notify_one();
}

/// Runs `reconcile` whenever asked, on the blocking pool (it may create topics), one run
/// at a time, off the links' control readers.
pub(crate) async fn reconcile_loop(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.replan.notified() => {}
            () = shared.stop.cancelled() => return,
        }
        let s = shared.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || reconcile(&s)).await {
            tracing::error!(error = %e, "planning the pulls failed");
        }
    }
}

/// One neighbour's offer of a sub-log this region needs.
struct Offer {
    link: Arc<LinkCtx>,
    task: Arc<Task>,
    source_topic: String,
    need: Need,
    partitions: u32,
    /// Path cost through the neighbour, its name and the task's index: lowest wins.
    rank: (u64, String, usize),
    start: u64,
    end: u64,
    bytes: u64,
}

/// Plans, from every neighbour's latest advertisement and the routes, which link pulls each
/// sub-log this region needs: the neighbour on the cheapest healthy path that offers it
/// (not one that refused it a moment ago). Then stops the pulls that no longer match the
/// plan and starts the missing ones, creating target topics as needed.
fn reconcile(shared: &Arc<Shared>) {
    let me = &shared.region;
    let view = shared.view();
    let heard: Vec<(String, Arc<pb::Advertise>)> = shared
        .heard
        .lock()
        .expect("heard lock")
        .iter()
        .map(|(p, a)| (p.clone(), a.clone()))
        .collect();
    let links: HashMap<String, Arc<LinkCtx>> = shared
        .links
        .lock()
        .expect("links lock")
        .iter()
        .map(|(p, l)| (p.clone(), l.ctx.clone()))
        .collect();
    let refused: HashSet<(SubLogKey, u64)> = {
        let mut refused = shared.refused.lock().expect("refused lock");
        let hold = shared.settings.heartbeat_interval * REFUSAL_HOLD_HEARTBEATS;
        refused.retain(|_, at| at.elapsed() < hold);
        refused.keys().cloned().collect()
    };
    let pass_through = shared.pass_through();
    let tasks = shared.tasks();
    let mut plan: HashMap<SubLogKey, Offer> = HashMap::new();
    for (peer, advertise) in &heard {
        let Some(link) = links.get(peer) else {
            continue;
        };
        for entry in &advertise.topics {
            for (index, task) in tasks.iter().enumerate() {
                if !task.running() || !task.matches(&entry.topic) {
                    continue;
                }
                if view.need(task, peer, me) == Some(Need::Store) {
                    // Topics a neighbour writes to appear here before their first record.
                    let target = task.target_topic(&entry.topic);
                    if let Err(e) = shared.broker.ensure_topic(&target, entry.partitions) {
                        tracing::warn!(task = task.name(), topic = %target, error = %e, "cannot create the target topic");
                    }
                }
                for s in &entry.sub_logs {
                    let Some(need) = view.need(task, &s.origin, me) else {
                        continue;
                    };
                    if (need == Need::Relay && pass_through)
                        || s.path.contains(me)
                        || s.path.len() >= shared.settings.hop_limit
                    {
                        continue;
                    }
                    let Some((_, cost)) = view
                        .candidates(me, &s.origin)
                        .iter()
                        .find(|(n, _)| n == peer)
                    else {
                        continue;
                    };
                    let key = SubLogKey {
                        topic: match need {
                            Need::Store => task.target_topic(&entry.topic),
                            // A relay keeps the source's name; the target renames.
                            Need::Relay => entry.topic.clone(),
                        },
                        partition: s.partition,
                        origin: s.origin.clone(),
                    };
                    if refused.contains(&(key.clone(), link.id)) {
                        continue;
                    }
                    let offer = Offer {
                        link: link.clone(),
                        task: task.clone(),
                        source_topic: entry.topic.clone(),
                        need,
                        partitions: entry.partitions,
                        rank: (*cost, peer.clone(), index),
                        start: s.start_offset,
                        end: s.end_offset,
                        bytes: s.bytes,
                    };
                    match plan.get(&key) {
                        Some(held) if held.source_topic != offer.source_topic => {
                            // Two source topics would land in one target sub-log at the
                            // same offsets.
                            let message = format!(
                                "target topic {} already receives topic {} (task {}); topic {} of task {} would mix into it",
                                key.topic,
                                held.source_topic,
                                held.task.name(),
                                offer.source_topic,
                                task.name()
                            );
                            if shared.status.error(task.name(), &key, message.clone()) {
                                tracing::error!(task = task.name(), %message, "rename collision; not replicated");
                            }
                        }
                        Some(held) if held.rank <= offer.rank => {}
                        _ => {
                            plan.insert(key, offer);
                        }
                    }
                }
            }
        }
    }
    let mut slots = shared.slots.lock().expect("slots lock");
    let incarnation_here = |key: &SubLogKey| {
        shared
            .broker
            .partition(&key.topic, key.partition)
            .map_or(0, |p| p.incarnation())
    };
    slots.retain(|key, slot| {
        let keep = plan
            .get(key)
            .is_some_and(|o| o.link.id == slot.link_id && Arc::ptr_eq(&o.task, &slot.task))
            && incarnation_here(key) == slot.target_incarnation;
        if !keep {
            slot.cancel.cancel();
        }
        keep
    });
    for (key, offer) in plan {
        let task = &offer.task;
        if !slots.contains_key(&key) {
            let partitions = match shared.broker.ensure_topic(&key.topic, offer.partitions) {
                Ok(config) => config.partitions,
                Err(e) => {
                    tracing::warn!(task = task.name(), topic = %key.topic, error = %e, "cannot create the target topic");
                    continue;
                }
            };
            if key.partition >= partitions {
                let message = format!(
                    "target topic {} has {partitions} partitions; the source's has {}: partition {} is not replicated",
                    key.topic, offer.partitions, key.partition
                );
                if shared.status.error(task.name(), &key, message.clone()) {
                    tracing::warn!(task = task.name(), %message, "sub-log not replicated");
                }
                continue;
            }
            let cancel = offer.link.stop.child_token();
            let id = shared.next_id();
            slots.insert(
                key.clone(),
                Slot {
                    id,
                    link_id: offer.link.id,
                    task: task.clone(),
                    target_incarnation: incarnation_here(&key),
                    cancel: cancel.clone(),
                },
            );
            shared.tracker.spawn(run(
                shared.clone(),
                offer.link.clone(),
                task.clone(),
                offer.source_topic.clone(),
                key.clone(),
                offer.need == Need::Relay,
                cancel,
                id,
            ));
        }
        shared.status.advertised(
            task.name(),
            &key,
            &offer.link.peer,
            offer.start,
            offer.end,
            offer.bytes,
        );
    }
}

async fn run(
    shared: Arc<Shared>,
    link: Arc<LinkCtx>,
    task: Arc<Task>,
    source_topic: String,
    key: SubLogKey,
    relay: bool,
    cancel: CancellationToken,
    slot_id: u64,
) {
    let mut backoff = shared.settings.reconnect_min;
    let mut gave_up = false;
    loop {
        if crate::serve::changed(&shared, &task) {
            // The task was paused, changed or deleted: the planner starts what is needed.
            break;
        }
        let result = tokio::select! {
            r = subscription(&shared, &link, &task, &source_topic, &key, relay) => r,
            () = cancel.cancelled() => break,
        };
        match result {
            Ok(()) => backoff = shared.settings.reconnect_min,
            Err(error) => {
                let refusal = error.refusal();
                if let Some(reason) = refusal {
                    shared.metrics.frame_refused(reason);
                }
                shared.status.error(task.name(), &key, error.to_string());
                if error.gives_up_the_link() {
                    tracing::warn!(peer = %link.peer, topic = %key.topic, partition = key.partition, origin = %key.origin, %error, "not pulling this sub-log over this link for a while");
                    shared
                        .refused
                        .lock()
                        .expect("refused lock")
                        .insert((key.clone(), link.id), std::time::Instant::now());
                    gave_up = true;
                    break;
                }
                match refusal {
                    Some(reason) => {
                        tracing::warn!(peer = %link.peer, topic = %key.topic, partition = key.partition, origin = %key.origin, reason, %error, "refused replicated data; re-subscribing from the held end")
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
        backoff = (backoff * 2).min(shared.settings.reconnect_max);
    }
    {
        let mut slots = shared.slots.lock().expect("slots lock");
        if slots.get(&key).is_some_and(|s| s.id == slot_id) {
            slots.remove(&key);
        }
    }
    if gave_up {
        // Another neighbour may offer this sub-log.
        request_reconcile(&shared);
    }
}

/// Where to ask the source to start: the held end, else the task's checkpoint (a start
/// position resolved before), else the task's start position; a relay starts from the
/// earliest record, so that it can serve whatever its downstream still lacks.
/// Where to subscribe from, and the incarnation of the origin's topic that position is of
/// (0: none or unknown).
fn subscribe_from(
    shared: &Shared,
    task: &Task,
    key: &SubLogKey,
    relay: bool,
) -> Result<(SubscribeFrom, u64), PullError> {
    let partition = shared.broker.partition(&key.topic, key.partition)?;
    if let Some(held) = partition.sub_log(&key.origin).filter(|s| s.end_offset > 0) {
        return Ok((SubscribeFrom::Offset(held.end_offset), held.incarnation));
    }
    // A checkpoint saved for another incarnation of this target topic (deleted and created
    // again here since) says nothing about what the new one holds.
    let target = partition.incarnation();
    let checkpoint = shared
        .broker
        .meta()
        .checkpoints(task.name())
        .map_err(BrokerError::from)?
        .into_iter()
        .find(|c| {
            c.topic == key.topic
                && c.partition == key.partition
                && c.origin == key.origin
                && (c.target_incarnation == 0 || c.target_incarnation == target)
        });
    if let Some(checkpoint) = checkpoint {
        return Ok((
            SubscribeFrom::Offset(checkpoint.offset),
            checkpoint.incarnation,
        ));
    }
    Ok((start_position(shared, task, relay)?, 0))
}

/// The task's start position, for a sub-log this region holds nothing of.
fn start_position(shared: &Shared, task: &Task, relay: bool) -> Result<SubscribeFrom, PullError> {
    Ok(match task.start {
        _ if relay => SubscribeFrom::Earliest(true),
        Start::Earliest => SubscribeFrom::Earliest(true),
        // "latest" means from when the task first ran here, for every sub-log: one that
        // appears later (a new topic, a new origin) is pulled from its first record, not
        // from wherever it had got to when this region first heard of it.
        Start::Latest => SubscribeFrom::TimestampMs(
            shared
                .broker
                .meta()
                .task_started(task.name(), broker::record::now_ms())
                .map_err(BrokerError::from)?,
        ),
        Start::Timestamp(ms) => SubscribeFrom::TimestampMs(ms),
    })
}

async fn subscription(
    shared: &Arc<Shared>,
    link: &Arc<LinkCtx>,
    task: &Arc<Task>,
    source_topic: &str,
    key: &SubLogKey,
    relay: bool,
) -> Result<(), PullError> {
    // Metadata reads, and a write when `latest` is resolved: off the async workers.
    let (mut from, held_incarnation) = {
        let (s, t, k) = (shared.clone(), task.clone(), key.clone());
        tokio::task::spawn_blocking(move || subscribe_from(&s, &t, &k, relay))
            .await
            .expect("resolving where to subscribe from")?
    };
    let (mut send, mut recv) = link.connection.open_bi().await?;
    let subscribe = Frame::Subscribe(pb::Subscribe {
        task: task.name().to_string(),
        topic: source_topic.to_string(),
        partition: key.partition,
        origin: key.origin.clone(),
        from: Some(from),
        via: Vec::new(),
        incarnation: held_incarnation,
    });
    io::write_frame(&mut send, &subscribe).await?;
    let (start, path, incarnation) = match io::read_frame_within(
        &mut recv,
        shared.limits.control(),
        SUBSCRIBED_TIMEOUT,
    )
    .await?
    {
        Some(Frame::Subscribed(s)) => (s.start_offset, s.path, s.incarnation),
        Some(other) => return Err(unexpected(other, "Subscribed")),
        None => return Err(PullError::Protocol("stream ended before Subscribed".into())),
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
        tracing::warn!(topic = %key.topic, partition = key.partition, origin = %key.origin, held = held_incarnation, offered = incarnation, "the source serves another incarnation of the origin's topic");
        from = SubscribeFrom::Earliest(true);
    }
    let skipped = match from {
        SubscribeFrom::Offset(held) if start > held && !from_origin => {
            return Err(PullError::RelayGap { held, start });
        }
        SubscribeFrom::Offset(held) if start > held => Some((held, start)),
        _ => None,
    };
    match from {
        SubscribeFrom::Offset(_) => {}
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
                target_incarnation: shared
                    .broker
                    .partition(&key.topic, key.partition)
                    .map_or(0, |p| p.incarnation()),
            };
            let meta = shared.broker.meta().clone();
            tokio::task::spawn_blocking(move || {
                meta.put_checkpoint(&checkpoint).and_then(|()| meta.flush())
            })
            .await
            .expect("saving a start position")
            .map_err(BrokerError::from)?;
        }
    }
    let held = match from {
        SubscribeFrom::Offset(n) => n,
        _ => 0,
    };
    shared.status.pulling(task.name(), key, &link.peer, held);

    let (frames_tx, frames_rx) = mpsc::channel(RECEIVE_AHEAD);
    let receive = receive(shared, link.limits, &mut recv, frames_tx);
    let apply = apply(shared, task, key, incarnation, start, skipped, frames_rx);
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
        Frame::Error(e) if e.code == codes::MISSING_RECORDS => PullError::Missing(e.message),
        Frame::Error(e) => PullError::Remote {
            code: e.code,
            message: e.message,
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
    shared: &Shared,
    limits: io::FrameLimits,
    recv: &mut quinn::RecvStream,
    frames: mpsc::Sender<BatchesFrame>,
) -> Result<Option<PullError>, PullError> {
    loop {
        let frame = match io::read_frame(recv, limits).await? {
            None => return Ok(None),
            Some(Frame::Batches(frame)) => frame,
            Some(error @ Frame::Error(_)) => return Ok(Some(unexpected(error, "Batches"))),
            Some(other) => return Err(unexpected(other, "Batches")),
        };
        let path = &frame.header.hop_path;
        if path.contains(&shared.region) {
            return Err(PullError::Loop(format!(
                "batch at offset {} already passed this region (path {})",
                frame.header.base_offset,
                path.join(" > ")
            )));
        }
        if path.len() >= shared.settings.hop_limit {
            return Err(PullError::HopLimit(format!(
                "batch at offset {} passed {} regions, the hop limit is {}",
                frame.header.base_offset,
                path.len(),
                shared.settings.hop_limit
            )));
        }
        if frames.send(frame).await.is_err() {
            return Ok(None);
        }
    }
}

/// Applies received frames in runs. Only the first batch of the stream may start past the
/// held end, and only at the start the source announced (retention, start position).
async fn apply(
    shared: &Shared,
    task: &Task,
    key: &SubLogKey,
    incarnation: u64,
    announced_start: u64,
    skipped: Option<(u64, u64)>,
    mut frames: mpsc::Receiver<BatchesFrame>,
) -> Result<(), PullError> {
    let mut first = true;
    while let Some(frame) = frames.recv().await {
        let mut bytes = frame.bytes();
        let mut path = frame.header.hop_path.clone();
        let mut batches: Vec<Batch> = frame.batches;
        while bytes < RUN_BYTES {
            let Ok(more) = frames.try_recv() else { break };
            bytes += more.bytes();
            path = more.header.hop_path.clone();
            batches.extend(more.batches);
        }
        // A rate-limited task applies batch by batch as the limiter admits them, so the
        // records arrive at the limited rate instead of in one late burst.
        let runs: Vec<Vec<Batch>> = if task.limited() {
            batches.into_iter().map(|b| vec![b]).collect()
        } else {
            vec![batches]
        };
        for mut run in runs {
            let records: u64 = run.iter().map(|b| u64::from(b.header().record_count)).sum();
            let bytes: u64 = run.iter().map(|b| b.bytes().len() as u64).sum();
            task.throttle(records, bytes).await;
            if first {
                first = false;
                if run[0].header().base_offset <= announced_start {
                    let head = run.remove(0);
                    apply_run(shared, task, key, incarnation, vec![head], GapPolicy::Allow).await?;
                    if let Some((held, start)) = skipped {
                        shared
                            .metrics
                            .records_skipped_by_retention
                            .inc_by(start - held);
                        tracing::warn!(topic = %key.topic, partition = key.partition, origin = %key.origin, from = held, to = start, "the source no longer held these records (retention); replication continues after them");
                    }
                }
            }
            if !run.is_empty() {
                apply_run(shared, task, key, incarnation, run, GapPolicy::Refuse).await?;
            }
        }
        path.push(shared.region.clone());
        shared
            .paths
            .lock()
            .expect("paths lock")
            .insert(key.clone(), path);
    }
    Ok(())
}

async fn apply_run(
    shared: &Shared,
    task: &Task,
    key: &SubLogKey,
    incarnation: u64,
    batches: Vec<Batch>,
    gap: GapPolicy,
) -> Result<(), PullError> {
    let run = shared
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
        shared.metrics.incarnations_replaced.inc();
        shared.status.restarted(task.name(), key);
        tracing::warn!(task = task.name(), topic = %key.topic, partition = key.partition, origin = %key.origin, old, new = incarnation, "the origin re-created the topic: the old incarnation held here was dropped, the new one replicates from its start");
    }
    shared
        .status
        .applied(task.name(), key, run.end_offset, run.records, run.bytes);
    let (records, bytes) = shared.metrics.replicated(task.name());
    records.inc_by(run.records);
    bytes.inc_by(run.bytes);
    Ok(())
}
