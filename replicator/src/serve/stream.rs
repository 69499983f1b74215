//! The serving side of a sub-log stream: checks the peer's Subscribe against the tasks
//! and the hop path (`authorize`), answers Subscribed with the first offset it will send
//! (or, on a stream this region opened, `serve::push`, announces it with Push), then sends
//! Batches frames as the sub-log's durable end moves, bounded by QUIC flow control.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::budget::{ByteBudget, Held};
use crate::wire::message as msg;
use crate::wire::message::StartFrom;
use broker::batch::Batch;
use broker::storage::{PartitionStore, SubLogRead};

use super::admission::{Here, admit, alone_may_serve, may_serve, relays_without_storing};
use super::filter::filter_for;
use super::relay;
use super::send::send_batches;
use crate::node::{LinkCtx, Node};
use crate::observe::SubLogKey;
use crate::tasks::Task;
use crate::wire::{BatchesFrame, Frame, LinkCode, Refusal, io};

/// A subscription this region may serve: from its stored copy, or relayed without
/// storing (a pass-through relay).
pub(crate) enum Authorized {
    Stored(Served),
    Relayed(Arc<Task>),
}

/// Whether `peer` may pull what `subscribe` asks for from this region, and from where.
pub(crate) fn authorize(
    node: &Node,
    peer: &str,
    subscribe: &msg::Subscribe,
) -> Result<Authorized, Refusal> {
    let view = node.view();
    let here = Here {
        region: &node.region,
        hop_limit: node.settings.hop_limit,
        view: &view,
        pass_through: node.pass_through(),
    };
    let task = admit(&here, node.tasks.task(&subscribe.task), peer, subscribe)?;
    if relays_without_storing(&here, &task, &subscribe.origin) {
        return Ok(Authorized::Relayed(task));
    }
    let (partition, key) = held(node, &here, peer, subscribe)?;
    Ok(Authorized::Stored(Served {
        task,
        partition,
        key,
        from: subscribe.from,
        incarnation: subscribe.incarnation,
    }))
}

/// Serves the peer's `subscribe` (the first frame of a stream it opened) on `send`.
pub(crate) async fn serve_subscription(
    node: Arc<Node>,
    link: Arc<LinkCtx>,
    subscribe: msg::Subscribe,
    mut send: quinn::SendStream,
) {
    let alone = if link.alone {
        alone_may_serve(&node.region, &subscribe)
    } else {
        Ok(())
    };
    match alone.and_then(|()| authorize(&node, &link.peer, &subscribe)) {
        Ok(Authorized::Stored(served)) => {
            serve(node, link, served, send, Frame::Subscribed).await;
        }
        Ok(Authorized::Relayed(task)) => relay::relay(node, link, task, subscribe, send).await,
        Err(refusal) => {
            tracing::warn!(event = "subscription_refused", peer = %link.peer, topic = %subscribe.topic, partition = subscribe.partition, origin = %subscribe.origin, code = %refusal.code, message = %refusal.message, "refused a subscription");
            send_error(&mut send, refusal).await;
        }
    }
}

/// What one stream serves: a stored sub-log, from where the peer holds it (of
/// `incarnation`, 0: none or unknown).
pub(crate) struct Served {
    pub task: Arc<Task>,
    pub partition: Arc<dyn PartitionStore>,
    pub key: SubLogKey,
    pub from: Option<StartFrom>,
    pub incarnation: u64,
}

/// Serves a stored sub-log on `send` until the task changes, the peer stops the stream or
/// the link ends. `announce` makes the stream's first frame from where it really starts
/// (`Subscribed` for a subscription, `Push` for a stream this region opened).
pub(crate) async fn serve(
    node: Arc<Node>,
    link: Arc<LinkCtx>,
    served: Served,
    mut send: quinn::SendStream,
    announce: impl FnOnce(msg::Subscribed) -> Frame,
) {
    let Served {
        task,
        partition,
        key,
        from,
        incarnation: held_incarnation,
    } = served;
    // Records of another incarnation than the puller's: its offsets mean nothing here, so
    // this region's incarnation is served from its start.
    let incarnation = partition.incarnation_of(&key.origin);
    let from = if held_incarnation != 0 && incarnation != 0 && held_incarnation != incarnation {
        Some(StartFrom::Earliest)
    } else {
        from
    };
    let start = match start_offset(partition.as_ref(), &key.origin, from) {
        Ok(start) => start,
        Err(e) => {
            send_error(&mut send, Refusal::from_storage(&e)).await;
            return;
        }
    };
    let frame_target = node.settings.frame_target_bytes;
    let reader = partition.clone().sub_log_reader(&key.origin, start);
    let mut read_from = Source {
        node: &node,
        budget: &link.send_budget,
        partition,
        key: &key,
        // At the start a region may have lost records to retention (its own, when it is
        // the origin) or begin past them (a start position): `Subscribed` announces that.
        mid_stream: false,
        incarnation,
        short_since: None,
    };
    let Some((mut reader, mut pending, held)) =
        read_from.read(reader, frame_target, &mut send).await
    else {
        return;
    };
    // The share of the link's send budget that `pending` holds.
    let mut held = Some(held);
    read_from.mid_stream = true;
    // Announce where the data really starts: past the requested offset when this region
    // holds a gap there (retention, or a late start of its own).
    let start = pending
        .first()
        .map_or(start, |b| start.max(b.header().base_offset));
    let announced = announce(msg::Subscribed {
        start_offset: start,
        path: node.path_of(&key),
        incarnation,
    });
    if io::write_frame(&mut send, &announced).await.is_err() {
        return;
    }
    tracing::debug!(peer = %link.peer, topic = %key.topic, partition = key.partition, origin = %key.origin, start, "serving sub-log");
    let mut tasks = node.tasks.subscribe();
    // The catalog is looked at only when it changed (and once at the start).
    let mut look = true;
    loop {
        let news = std::mem::take(&mut look) || tasks.has_changed().unwrap_or(false);
        if news && {
            tasks.mark_unchanged();
            !node.tasks.is_live(&task)
        } {
            // Paused, deleted or changed: stop shipping; the puller re-plans.
            send_error(
                &mut send,
                Refusal::new(
                    LinkCode::NotAllowed,
                    format!("task \"{}\" changed", task.name()),
                ),
            )
            .await;
            return;
        }
        if pending.is_empty() {
            drop(held.take());
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
            let batches = filter_for(&node, &task, &link.peer, std::mem::take(&mut pending));
            let frame = BatchesFrame::new(batches, node.path_of(&key));
            let written = tokio::select! {
                w = send_batches(&node, &link, &mut send, frame) => w,
                () = link.stop.cancelled() => return,
            };
            if written.is_err() {
                return;
            }
            // Written to QUIC: its share of the budget goes back before the next read.
            drop(held.take());
        }
        let Some((next_reader, batches, share)) =
            read_from.read(reader, frame_target, &mut send).await
        else {
            return;
        };
        (reader, pending) = (next_reader, batches);
        held.replace(share);
    }
}

/// How long a stream waits before it reads this region's own sub-log again after a read
/// came back short of its known end, and for how long it does so before it takes the
/// missing records for a hole after all.
const SHORT_READ_PAUSE: Duration = Duration::from_millis(20);
const SHORT_READS_FOR: Duration = Duration::from_secs(10);

/// The sub-log a stream serves, read batch run by batch run.
struct Source<'a> {
    node: &'a Node,
    /// The link's send budget: a read takes its share first.
    budget: &'a ByteBudget,
    partition: Arc<dyn PartitionStore>,
    key: &'a SubLogKey,
    /// Past the first read: records must follow on from what was sent.
    mid_stream: bool,
    /// The incarnation announced in `Subscribed`: when the sub-log held here is replaced
    /// by another (a relay that took a re-created topic), the stream ends, since its
    /// offsets would continue another incarnation's.
    incarnation: u64,
    /// Since when reads have come back short of the sub-log's known end.
    short_since: Option<Instant>,
}

impl Source<'_> {
    /// One read of the sub-log on the blocking pool (page-cache reads). Ends the stream
    /// (`None`) after telling the peer why: a failed read (logged, `STORAGE`), or records
    /// this region does not hold (`MISSING_RECORDS`) — a hole in its copy, which a reader
    /// cannot pass (at a segment boundary it would find nothing to send while the durable
    /// end says there is more, and the stream would spin), and which only the origin may
    /// announce as gone. The puller then takes the sub-log from another region.
    async fn read(
        &mut self,
        mut reader: Box<dyn SubLogRead>,
        max_bytes: usize,
        send: &mut quinn::SendStream,
    ) -> Option<(Box<dyn SubLogRead>, Vec<Batch>, Held)> {
        let partition = self.partition.clone();
        let origin = self.key.origin.clone();
        if self.partition.incarnation_of(&self.key.origin) != self.incarnation {
            tracing::info!(topic = %self.key.topic, partition = self.key.partition, origin = %self.key.origin, "the served sub-log was replaced by another incarnation; ending the stream");
            let _ = send.finish();
            return None;
        }
        let held = self.budget.take(max_bytes).await;
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
                tracing::error!(event = "sub_log_read_failed", topic = %key.topic, partition = key.partition, origin = %key.origin, error = %e, "reading a sub-log to serve failed");
                send_error(send, Refusal::from_storage(&e)).await;
                return None;
            }
        };
        let me = &self.node.region;
        let short = batches.is_empty() && reader.next_offset() < durable_end;
        let short_since = if short {
            *self.short_since.get_or_insert_with(Instant::now)
        } else {
            self.short_since = None;
            Instant::now()
        };
        if short && *me == key.origin && short_since.elapsed() < SHORT_READS_FOR {
            // This region's own sub-log has no holes: on shared storage a read right after
            // another node's append was learnt here can come back short (seen on JetStream
            // with two nodes per region every few seconds: likely the follower's consumer
            // delivering a message before the stream leader, which answers reads, has
            // applied it). Read again soon.
            tracing::debug!(topic = %key.topic, partition = key.partition, next = reader.next_offset(), durable_end, "a read of this region's own sub-log came back short; reading again");
            tokio::time::sleep(SHORT_READ_PAUSE).await;
            return Some((reader, batches, held));
        }
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
            send_error(send, Refusal::new(LinkCode::MissingRecords, message)).await;
            return None;
        }
        // A read returns at least one batch, whole, even one larger than the share asked
        // for (a stream must make progress): a share of its size is taken before it goes
        // on (see `ByteBudget::retake`).
        let bytes: usize = batches.iter().map(|b| b.bytes().len()).sum();
        let held = self.budget.retake(held, bytes).await;
        Some((reader, batches, held))
    }
}

/// Ends a stream with `refusal`.
pub(crate) async fn send_error(send: &mut quinn::SendStream, refusal: Refusal) {
    let _ = io::write_frame(send, &refusal.to_frame()).await;
    let _ = send.finish();
}

/// The first offset to send: a requested offset (moved up past what retention removed),
/// or the task's start position resolved here.
fn start_offset(
    partition: &dyn PartitionStore,
    origin: &str,
    from: Option<StartFrom>,
) -> broker::Result<u64> {
    let held = partition.sub_log(origin);
    let start = held.as_ref().map_or(0, |s| s.start_offset);
    Ok(match from {
        Some(StartFrom::Offset(n)) => n.max(start),
        None | Some(StartFrom::Earliest) => start,
        Some(StartFrom::Latest) => held.map_or(0, |s| s.durable_end),
        Some(StartFrom::TimestampMs(ms)) => {
            partition.sub_log_offset_for_time(origin, ms)?.unwrap_or(0)
        }
    })
}

/// The stored sub-log to serve, checked against the hop path of the data held.
fn held(
    node: &Node,
    here: &Here<'_>,
    peer: &str,
    subscribe: &msg::Subscribe,
) -> Result<(Arc<dyn PartitionStore>, SubLogKey), Refusal> {
    let partition = node
        .broker
        .partition(&subscribe.topic, subscribe.partition)
        .map_err(|e| Refusal::from_storage(&e))?;
    let key = SubLogKey {
        topic: subscribe.topic.clone(),
        partition: subscribe.partition,
        origin: subscribe.origin.clone(),
    };
    may_serve(here, &node.path_of(&key), peer)?;
    Ok((partition, key))
}
