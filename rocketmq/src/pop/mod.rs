//! PoP consumption: groups receive messages from any readable queue of a topic, each
//! invisible to the group for a while, and acknowledge them; an unacknowledged message
//! comes back with its attempt raised, and after the group's last attempt moves to the
//! dead-letter topic `%DLQ%<group>`. A group's state (`state`) is durable: it is stored
//! (and flushed) in the region's metadata before any receive, acknowledgement or change
//! of invisibility is answered, so after a crash nothing acknowledged comes back and
//! nothing unacknowledged is lost; only messages in flight come back, after their
//! invisibility. A group's state is per region; its progress (the frontier) is shared with
//! the regions of tasks that sync the group (`shared`).

mod dead_letters;
pub mod deliver;
pub mod filter;
pub mod handle;
pub mod owner;
mod redeliver;
pub mod shared;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::storage::PartitionStore;
use broker::trace::TraceKind;
use broker::{Broker, BrokerError, Record};
use proto::rocketmq::v2::Code;

use crate::status::Refusal;
pub use dead_letters::dead_letter_topic;
use deliver::Delivery;
use filter::Filter;
use handle::Handle;
use state::PartitionState;

/// Bytes read at a time when looking for fresh messages.
const READ_BYTES: usize = 1 << 20;
/// Bytes of a sub-log one look reads at most, past messages in flight or acknowledged out
/// of order: fresh messages further on wait until the oldest unacknowledged ones are done.
const MAX_READ_PER_LOOK: usize = 64 << 20;

/// One group's state on one topic, by partition.
#[derive(Default)]
struct GroupTopic {
    /// The topic's incarnation this state is of: a topic deleted and created again starts
    /// with a fresh state (the stored one was removed with the topic).
    incarnation: u64,
    /// Each partition's state under its own lock: a long look at one partition does not
    /// hold up acknowledgements of another.
    partitions: BTreeMap<u32, Arc<Mutex<PartitionState>>>,
}

/// How long a message whose move to the dead-letter topic failed waits for the next try.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(30);

/// `(group, topic)`.
type GroupKey = (String, String);

/// What a receive asks for.
pub struct Receive<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub filter: &'a Filter,
    pub batch: usize,
    pub invisible: Duration,
    /// The queue the client named: looked at first.
    pub hint: Option<u32>,
    /// Deliveries before a message is dead-lettered.
    pub max_attempts: u32,
    /// The group consumes FIFO topics in order (each message group one at a time).
    pub fifo: bool,
}

/// What a receive handed out, and the type of messages of the topic.
pub struct Taken {
    pub deliveries: Vec<Delivery>,
    pub message_type: broker::meta::MessageType,
}

/// The consumption state of every group of a region.
pub struct Consumption {
    broker: Arc<Broker>,
    groups: Mutex<HashMap<GroupKey, Arc<Mutex<GroupTopic>>>>,
    nonce: AtomicU64,
    ownership: owner::Ownership,
}

fn now_ms() -> i64 {
    broker::record::now_ms()
}

fn storage(e: BrokerError) -> Refusal {
    Refusal::from(e)
}

/// A metadata failure while `doing` (what, of which group, topic and partition).
fn meta_error(doing: String) -> impl FnOnce(broker::meta::MetaError) -> Refusal {
    move |e| Refusal::new(Code::InternalError, format!("{doing}: {e}"))
}

impl Consumption {
    /// Who delivers which origin's messages of active-active groups (`owner.rs`).
    pub fn ownership(&self) -> &owner::Ownership {
        &self.ownership
    }

    pub fn new(broker: Arc<Broker>) -> Self {
        Consumption {
            ownership: owner::Ownership::new(broker.region()),
            broker,
            groups: Mutex::new(HashMap::new()),
            // A random start: nonces of two runs do not meet.
            nonce: AtomicU64::new(rand::random::<u64>() >> 1),
        }
    }

    fn next_nonce(&self) -> u64 {
        self.nonce.fetch_add(1, Ordering::Relaxed)
    }

    /// The group's state on `topic`, loaded from the metadata at first use.
    fn group(&self, group: &str, topic: &str) -> Result<Arc<Mutex<GroupTopic>>, Refusal> {
        let key = (group.to_string(), topic.to_string());
        let incarnation = self
            .broker
            .topic(topic)
            .map_err(storage)?
            .config
            .incarnation;
        if let Some(g) = self.groups.lock().expect("groups lock").get(&key)
            && g.lock().expect("group state lock").incarnation == incarnation
        {
            return Ok(g.clone());
        }
        let mut loaded = GroupTopic {
            incarnation,
            ..GroupTopic::default()
        };
        for (partition, bytes) in
            self.broker
                .meta()
                .pop_states(group, topic)
                .map_err(meta_error(format!(
                    "loading the consumption state of group {group} on {topic}"
                )))?
        {
            let state = PartitionState::from_bytes(&bytes).map_err(|e| {
                Refusal::new(
                    Code::InternalError,
                    format!("the stored state of group {group} on {topic}/{partition} does not decode: {e}"),
                )
            })?;
            loaded
                .partitions
                .insert(partition, Arc::new(Mutex::new(state)));
        }
        // Progress made in other regions (or here, and synced) since it was stored.
        let cursors = self
            .broker
            .meta()
            .cursors(group, topic)
            .map_err(meta_error(format!(
                "loading the cursor of group {group} on {topic}"
            )))?;
        for (partition, cursor) in cursors {
            let state = loaded.partitions.entry(partition).or_default();
            Self::catch_up(&mut state.lock().expect("partition state lock"), &cursor);
        }
        let mut groups = self.groups.lock().expect("groups lock");
        let entry = groups
            .entry(key)
            .or_insert_with(|| Arc::new(Mutex::new(GroupTopic::default())));
        {
            let mut current = entry.lock().expect("group state lock");
            if current.incarnation != incarnation {
                *current = loaded;
            }
        }
        Ok(entry.clone())
    }

    /// The state of `partition` in `group`'s state (the group's lock is held only to find
    /// it: lock order is group, then partition, never both at once).
    fn partition_state(group: &Mutex<GroupTopic>, partition: u32) -> Arc<Mutex<PartitionState>> {
        group
            .lock()
            .expect("group state lock")
            .partitions
            .entry(partition)
            .or_default()
            .clone()
    }

    /// Stores the states of some partitions of `group` on `topic`, with one flush.
    fn persist<'s>(
        &self,
        group: &str,
        topic: &str,
        states: impl IntoIterator<Item = (u32, &'s PartitionState)>,
    ) -> Result<(), Refusal> {
        let states: Vec<(u32, Vec<u8>)> = states
            .into_iter()
            .map(|(partition, state)| (partition, state.to_bytes()))
            .collect();
        self.broker
            .meta()
            .put_pop_states(group, topic, &states)
            .map_err(meta_error(format!(
                "storing the consumption state of group {group} on {topic}"
            )))
    }

    /// Hands out up to `batch` messages now (blocking: reads and a metadata flush).
    pub fn take(&self, receive: &Receive<'_>) -> Result<Taken, Refusal> {
        let topic = self.broker.topic(receive.topic).map_err(storage)?;
        let count = topic.config.partitions;
        let message_type = topic.config.message_type;
        let group = self.group(receive.group, receive.topic)?;
        let now = now_ms();
        let start = receive.hint.filter(|h| *h < count).unwrap_or(0);
        let parts: Vec<_> = (0..count)
            .map(|p| Self::partition_state(&group, p))
            .collect();
        // The partitions this look changed, still locked, with their state before: they
        // are stored together (one flush) and released after, so a change is seen only
        // once it is stored. Only the first lock is waited for; later ones are tried, and a
        // partition busy with another request is left for the next look (this never waits
        // while holding a lock, so it cannot deadlock with an acknowledgement, which locks
        // in ascending order).
        let mut changed = Vec::new();
        let mut out = Vec::new();
        for partition in (0..count).map(|i| (start + i) % count) {
            if out.len() >= receive.batch {
                break;
            }
            let part = &parts[partition as usize];
            let mut state = if changed.is_empty() {
                part.lock().expect("partition state lock")
            } else {
                match part.try_lock() {
                    Ok(state) => state,
                    Err(std::sync::TryLockError::WouldBlock) => continue,
                    Err(std::sync::TryLockError::Poisoned(p)) => {
                        panic!("partition state lock: {p}")
                    }
                }
            };
            let log = match self.broker.partition(receive.topic, partition) {
                Ok(log) => log,
                Err(e) => {
                    restore(&mut changed);
                    return Err(storage(e));
                }
            };
            let before = state.clone();
            let mut look = Look {
                consumption: self,
                receive,
                partition: log,
                index: partition,
                now,
                visible_at: now + receive.invisible.as_millis() as i64,
                fifo: receive.fifo && message_type == broker::meta::MessageType::Fifo,
                out: &mut out,
            };
            let looked = look.at(&mut state);
            if *state != before {
                changed.push((partition, state, before));
            }
            if let Err(refusal) = looked {
                restore(&mut changed);
                return Err(refusal);
            }
        }
        let stored = self.persist(
            receive.group,
            receive.topic,
            changed.iter().map(|(p, state, _)| (*p, &**state)),
        );
        if let Err(refusal) = stored {
            // Not stored: nothing of this look was handed out.
            restore(&mut changed);
            return Err(refusal);
        }
        Ok(Taken {
            deliveries: out,
            message_type,
        })
    }

    /// Acknowledges the messages of `handles` for good, each answered on its own; the
    /// state of every partition touched is stored once, before any answer.
    pub fn ack(&self, group: &str, topic: &str, handles: &[String]) -> Vec<Result<(), Refusal>> {
        let state = match self.group(group, topic) {
            Ok(state) => state,
            Err(refusal) => return handles.iter().map(|_| Err(refusal.clone())).collect(),
        };
        // Grouped by partition; each partition's changes are made on a copy, stored, and
        // take effect only then.
        let mut results: Vec<Result<(), Refusal>> = Vec::with_capacity(handles.len());
        let mut by_partition: BTreeMap<u32, Vec<(usize, Handle)>> = BTreeMap::new();
        for (index, text) in handles.iter().enumerate() {
            match Handle::parse(text) {
                Ok(h) => {
                    by_partition
                        .entry(h.partition)
                        .or_default()
                        .push((index, h));
                    results.push(Ok(()));
                }
                Err(m) => results.push(Err(Refusal::new(Code::InvalidReceiptHandle, m))),
            }
        }
        // Every partition touched is locked in ascending order (the map's), changed on a
        // copy, and the copies stored together (one flush); they take effect only then.
        let parts: Vec<_> = by_partition
            .keys()
            .map(|p| Self::partition_state(&state, *p))
            .collect();
        let mut current: Vec<_> = parts
            .iter()
            .map(|part| part.lock().expect("partition state lock"))
            .collect();
        let mut copies: Vec<PartitionState> = current.iter().map(|s| (**s).clone()).collect();
        for (copy, acks) in copies.iter_mut().zip(by_partition.values()) {
            for (index, handle) in acks {
                results[*index] = copy
                    .ack(&handle.origin, handle.offset, handle.nonce)
                    .map_err(|e| Refusal::new(Code::InvalidReceiptHandle, e.to_string()));
            }
        }
        match self.persist(group, topic, by_partition.keys().copied().zip(&copies)) {
            Ok(()) => {
                for (held, copy) in current.iter_mut().zip(copies) {
                    **held = copy;
                }
                let acked = by_partition
                    .values()
                    .flatten()
                    .filter(|(index, _)| results[*index].is_ok());
                self.trace(TraceKind::Acked, group, topic, acked.map(|(_, h)| h));
            }
            Err(refusal) => {
                // Not stored: not acknowledged (each comes back after its invisibility).
                for result in results.iter_mut().filter(|r| r.is_ok()) {
                    *result = Err(refusal.clone());
                }
            }
        }
        results
    }

    /// Makes the message of `handle` invisible for `invisible` from now; returns the new
    /// handle (the old one is no longer valid).
    pub fn change_invisible(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
        invisible: Duration,
    ) -> Result<String, Refusal> {
        let handle =
            Handle::parse(handle).map_err(|m| Refusal::new(Code::InvalidReceiptHandle, m))?;
        let part = Self::partition_state(&*self.group(group, topic)?, handle.partition);
        let mut current = part.lock().expect("partition state lock");
        let mut copy = current.clone();
        let nonce = self.next_nonce();
        copy.change_invisible(
            &handle.origin,
            handle.offset,
            handle.nonce,
            now_ms() + invisible.as_millis() as i64,
            nonce,
        )
        .map_err(|e| Refusal::new(Code::InvalidReceiptHandle, e.to_string()))?;
        // In effect only once stored: the old handle stays valid if storing fails.
        self.persist(group, topic, [(handle.partition, &copy)])?;
        *current = copy;
        Ok(Handle { nonce, ..handle }.encode())
    }

    /// Keeps each message of `wanted` (a handle in `partition`, and the time it should
    /// stay invisible until) in flight under the same handle; returns for each whether it
    /// still was in flight under that handle. Stored once, before it takes effect.
    pub fn renew(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        wanted: &[(Handle, i64)],
    ) -> Result<Vec<bool>, Refusal> {
        let part = Self::partition_state(&*self.group(group, topic)?, partition);
        let mut current = part.lock().expect("partition state lock");
        let mut copy = current.clone();
        let renewed: Vec<bool> = wanted
            .iter()
            .map(|(h, until)| {
                copy.change_invisible(&h.origin, h.offset, h.nonce, *until, h.nonce)
                    .is_ok()
            })
            .collect();
        if renewed.contains(&true) {
            self.persist(group, topic, [(partition, &copy)])?;
            *current = copy;
        }
        Ok(renewed)
    }
}

/// Puts each partition of `changed` back as it was before.
fn restore(
    changed: &mut [(
        u32,
        std::sync::MutexGuard<'_, PartitionState>,
        PartitionState,
    )],
) {
    for (_, state, before) in changed {
        **state = std::mem::take(before);
    }
}

/// One look at a group's partition: hands out what has become visible again, then fresh
/// messages, into `out`.
struct Look<'a> {
    consumption: &'a Consumption,
    receive: &'a Receive<'a>,
    partition: Arc<dyn PartitionStore>,
    index: u32,
    now: i64,
    /// When what this look hands out becomes visible again.
    visible_at: i64,
    /// A FIFO topic: one message per message group in flight.
    fifo: bool,
    out: &'a mut Vec<Delivery>,
}

impl Look<'_> {
    fn full(&self) -> bool {
        self.out.len() >= self.receive.batch
    }

    fn at(&mut self, state: &mut PartitionState) -> Result<(), Refusal> {
        // A sub-log replaced by a new incarnation is consumed from its start.
        let sub_logs = self.partition.sub_logs();
        for sub_log in &sub_logs {
            state.follow(&sub_log.origin, sub_log.incarnation);
        }
        // Active-active groups: only the origins this region delivers now (`owner.rs`).
        let owned: Vec<_> = sub_logs
            .into_iter()
            .filter(|s| {
                let waiting = state.frontier(&s.origin) < s.durable_end;
                self.consumption.ownership.owns(
                    self.receive.group,
                    self.receive.topic,
                    self.index,
                    &s.origin,
                    waiting,
                    self.now,
                )
            })
            .collect();
        self.expired(state, |origin| owned.iter().any(|s| s.origin == origin))?;
        for sub_log in owned {
            if self.full() {
                break;
            }
            if state.frontier(&sub_log.origin) < sub_log.durable_end {
                self.fresh(state, &sub_log.origin)?;
            }
        }
        Ok(())
    }

    /// Hands `record` at `(origin, offset)` out as delivery `attempt`.
    fn give(
        &mut self,
        state: &mut PartitionState,
        origin: &str,
        offset: u64,
        record: Record,
        attempt: u32,
        group: Option<String>,
    ) {
        let nonce = self.consumption.next_nonce();
        self.consumption.ownership.delivered(
            self.receive.group,
            self.receive.topic,
            self.index,
            origin,
        );
        let flight = state::InFlight {
            visible_at_ms: self.visible_at,
            attempt,
            nonce,
            group,
        };
        state.hand_out(origin, offset, flight);
        let handle = Handle {
            partition: self.index,
            origin: origin.to_string(),
            offset,
            nonce,
        };
        self.out.push(Delivery {
            partition: self.index,
            origin: origin.to_string(),
            offset,
            record,
            attempt,
            handle: handle.encode(),
            invisible: self.receive.invisible,
        });
    }

    /// Messages whose invisibility ended come back first, as their next attempt; after the
    /// last attempt they move to the dead-letter topic.
    /// Messages of origins not `owned` here now stay in flight, untouched: they are the
    /// origin's to deliver again.
    fn expired(
        &mut self,
        state: &mut PartitionState,
        owned: impl Fn(&str) -> bool,
    ) -> Result<(), Refusal> {
        let receive = self.receive;
        for ((origin, offset), flight) in state.expired(self.now) {
            if self.full() {
                break;
            }
            if !owned(&origin) {
                continue;
            }
            let Some(record) = read_one(&self.partition, &origin, offset)? else {
                // Gone (retention): nothing to deliver any more.
                state.finish(&origin, offset);
                continue;
            };
            if flight.attempt < receive.max_attempts {
                self.give(
                    state,
                    &origin,
                    offset,
                    record,
                    flight.attempt + 1,
                    flight.group,
                );
                continue;
            }
            let handle = Handle {
                partition: self.index,
                origin: origin.clone(),
                offset,
                nonce: 0,
            };
            match self
                .consumption
                .dead_letter(receive.group, receive.topic, &handle, record)
            {
                Ok(()) => state.finish(&origin, offset),
                Err(refusal) => {
                    // The group goes on; this message is tried again later.
                    tracing::error!(event = "dead_letter_failed", group = receive.group, topic = receive.topic, partition = self.index, %origin, offset, %refusal, "moving a message to the dead-letter topic failed");
                    let later = state::InFlight {
                        visible_at_ms: self.now + DEAD_LETTER_RETRY.as_millis() as i64,
                        ..flight
                    };
                    state.hand_out(&origin, offset, later);
                }
            }
        }
        Ok(())
    }

    /// Fresh messages of `origin`'s sub-log, in offset order from the group's frontier.
    fn fresh(&mut self, state: &mut PartitionState, origin: &str) -> Result<(), Refusal> {
        let receive = self.receive;
        // FIFO: a message group with a message in flight waits for it.
        let mut busy = if self.fifo {
            state.busy_groups(origin)
        } else {
            Default::default()
        };
        let mut reader = self
            .partition
            .clone()
            .sub_log_reader(origin, state.frontier(origin));
        let mut reached = false;
        // Read on past what is in flight or acknowledged out of order, up to a bound per
        // look: fresh messages behind them are still found.
        let mut looked = 0;
        while looked < MAX_READ_PER_LOOK && !self.full() {
            let batches = reader.read(READ_BYTES).map_err(|e| {
                Refusal::new(
                    Code::InternalError,
                    format!(
                        "reading {}/{}@{origin} for group {}: {e}",
                        receive.topic, self.index, receive.group
                    ),
                )
            })?;
            if batches.is_empty() {
                break;
            }
            looked += batches.iter().map(|b| b.bytes().len()).sum::<usize>();
            for (offset, record) in batches.iter().flat_map(|b| b.records()) {
                // The first record at or past the frontier: nothing exists between the
                // frontier and it (a gap in the sub-log), so the frontier passes.
                if !reached && offset >= state.frontier(origin) {
                    reached = true;
                    state.skip_to(origin, offset);
                }
                if self.full() {
                    break;
                }
                if !state.is_fresh(origin, offset) {
                    continue;
                }
                if !receive.filter.takes(&record) {
                    // Not for this group's subscription: done for it.
                    state.finish(origin, offset);
                    continue;
                }
                let group = self
                    .fifo
                    .then(|| record.properties.get(crate::send::MESSAGE_GROUP).cloned())
                    .flatten();
                if let Some(g) = &group
                    && !busy.insert(g.clone())
                {
                    // An earlier message of its group is in flight.
                    continue;
                }
                self.give(state, origin, offset, record, 1, group);
            }
        }
        Ok(())
    }
}

/// The record at `offset` of `origin`'s sub-log, if it is still held.
fn read_one(
    partition: &Arc<dyn PartitionStore>,
    origin: &str,
    offset: u64,
) -> Result<Option<Record>, Refusal> {
    let mut reader = partition.clone().sub_log_reader(origin, offset);
    for batch in reader.read(1).map_err(storage)? {
        if let Some((_, record)) = batch.records().find(|(o, _)| *o == offset) {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
