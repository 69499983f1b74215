//! PoP consumption: groups receive messages from any readable queue of a topic, each
//! invisible to the group for a while, and acknowledge them; an unacknowledged message
//! comes back with its attempt raised, and after the group's last attempt moves to the
//! dead-letter topic `%DLQ%<group>`. A group's state (`state`) is durable: it is stored
//! (and flushed) in the region's metadata before any receive, acknowledgement or change
//! of invisibility is answered, so after a crash nothing acknowledged comes back and
//! nothing unacknowledged is lost; only messages in flight come back, after their
//! invisibility. Groups are per region.

pub mod deliver;
pub mod filter;
pub mod handle;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::storage::SubLogReader;
use broker::{Broker, BrokerError, Partitioning, Record};
use proto::rocketmq::v2::Code;

use crate::status::Refusal;
use deliver::Delivery;
use filter::Filter;
use handle::Handle;
use state::PartitionState;

/// Bytes read per sub-log per look for fresh messages.
const READ_BYTES: usize = 1 << 20;

/// One group's state on one topic, by partition.
#[derive(Default)]
struct GroupTopic {
    partitions: BTreeMap<u32, PartitionState>,
}

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
}

fn now_ms() -> i64 {
    broker::record::now_ms()
}

fn storage(e: BrokerError) -> Refusal {
    Refusal::from(e)
}

fn meta_error(e: broker::meta::MetaError) -> Refusal {
    Refusal::new(
        Code::InternalError,
        format!("storing the group's consumption state: {e}"),
    )
}

impl Consumption {
    pub fn new(broker: Arc<Broker>) -> Self {
        Consumption {
            broker,
            groups: Mutex::new(HashMap::new()),
            // Nonces differ across restarts: handles from before a restart are stale.
            nonce: AtomicU64::new(u64::from(rand_seed())),
        }
    }

    fn next_nonce(&self) -> u64 {
        self.nonce.fetch_add(1, Ordering::Relaxed)
    }

    /// The group's state on `topic`, loaded from the metadata at first use.
    fn group(&self, group: &str, topic: &str) -> Result<Arc<Mutex<GroupTopic>>, Refusal> {
        let key = (group.to_string(), topic.to_string());
        if let Some(g) = self.groups.lock().expect("groups lock").get(&key) {
            return Ok(g.clone());
        }
        let mut loaded = GroupTopic::default();
        for (partition, bytes) in self
            .broker
            .meta()
            .pop_states(group, topic)
            .map_err(meta_error)?
        {
            let state = PartitionState::from_bytes(&bytes).map_err(|e| {
                Refusal::new(
                    Code::InternalError,
                    format!("the stored state of group {group} on {topic}/{partition} does not decode: {e}"),
                )
            })?;
            loaded.partitions.insert(partition, state);
        }
        let mut groups = self.groups.lock().expect("groups lock");
        Ok(groups
            .entry(key)
            .or_insert_with(|| Arc::new(Mutex::new(loaded)))
            .clone())
    }

    fn persist(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        state: &PartitionState,
    ) -> Result<(), Refusal> {
        let bytes = state.to_bytes();
        self.broker
            .meta()
            .put_pop_state(group, topic, partition, &bytes)
            .map_err(meta_error)
    }

    /// Hands out up to `batch` messages now (blocking: reads and a metadata flush).
    pub fn take(&self, receive: &Receive<'_>) -> Result<Taken, Refusal> {
        let topic = self.broker.topic(receive.topic).map_err(storage)?;
        let count = topic.config.partitions;
        let message_type = topic.config.message_type;
        let fifo = message_type == broker::meta::MessageType::Fifo;
        let group = self.group(receive.group, receive.topic)?;
        let mut group = group.lock().expect("group state lock");
        let now = now_ms();
        let visible_at = now + receive.invisible.as_millis() as i64;
        let start = receive.hint.filter(|h| *h < count).unwrap_or(0);
        let mut out = Vec::new();
        for partition in (0..count).map(|i| (start + i) % count) {
            if out.len() >= receive.batch {
                break;
            }
            let p = self
                .broker
                .partition(receive.topic, partition)
                .map_err(storage)?;
            let state = group.partitions.entry(partition).or_default();
            let before = state.clone();
            // Messages whose invisibility ended come back first.
            for ((origin, offset), flight) in state.expired(now) {
                if out.len() >= receive.batch {
                    break;
                }
                let Some(record) = read_one(&p, &origin, offset)? else {
                    // Gone (retention): nothing to deliver any more.
                    state.finish(&origin, offset);
                    continue;
                };
                let attempt = flight.attempt + 1;
                if attempt > receive.max_attempts {
                    self.dead_letter(receive.group, record)?;
                    state.finish(&origin, offset);
                    continue;
                }
                let nonce = self.next_nonce();
                let group = flight.group.clone();
                state.hand_out_in(&origin, offset, visible_at, attempt, nonce, group);
                out.push(delivery(
                    partition,
                    &origin,
                    offset,
                    record,
                    attempt,
                    nonce,
                    receive.invisible,
                ));
            }
            // Then fresh ones, origin by origin.
            for sub_log in p.sub_logs() {
                let origin = sub_log.origin;
                if out.len() >= receive.batch {
                    break;
                }
                let front = state.frontier(&origin);
                if front >= sub_log.durable_end {
                    continue;
                }
                // FIFO: a message group with a message in flight waits for it.
                let mut busy = if fifo {
                    state.busy_groups(&origin)
                } else {
                    Default::default()
                };
                let mut reader = SubLogReader::new(p.clone(), &origin, front);
                let batches = reader.read(READ_BYTES).map_err(storage)?;
                let mut first = true;
                'batches: for batch in batches {
                    for (offset, record) in batch.records() {
                        if first {
                            first = false;
                            state.skip_to(&origin, offset);
                        }
                        if out.len() >= receive.batch {
                            break 'batches;
                        }
                        if !state.is_fresh(&origin, offset) {
                            continue;
                        }
                        if !receive.filter.takes(record.tag.as_deref()) {
                            // Not for this group's subscription: done for it.
                            state.finish(&origin, offset);
                            continue;
                        }
                        let group = fifo
                            .then(|| record.properties.get(crate::send::MESSAGE_GROUP).cloned())
                            .flatten();
                        if let Some(g) = &group
                            && !busy.insert(g.clone())
                        {
                            // An earlier message of its group is in flight.
                            continue;
                        }
                        let nonce = self.next_nonce();
                        state.hand_out_in(&origin, offset, visible_at, 1, nonce, group);
                        out.push(delivery(
                            partition,
                            &origin,
                            offset,
                            record,
                            1,
                            nonce,
                            receive.invisible,
                        ));
                    }
                }
            }
            if *state != before {
                self.persist(receive.group, receive.topic, partition, state)?;
            }
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
        let mut state = state.lock().expect("group state lock");
        let mut touched = std::collections::BTreeSet::new();
        let mut results: Vec<Result<(), Refusal>> = handles
            .iter()
            .map(|text| {
                let handle =
                    Handle::parse(text).map_err(|m| Refusal::new(Code::InvalidReceiptHandle, m))?;
                let partition = state.partitions.entry(handle.partition).or_default();
                partition
                    .ack(&handle.origin, handle.offset, handle.nonce)
                    .map_err(|e| Refusal::new(Code::InvalidReceiptHandle, e.to_string()))?;
                touched.insert(handle.partition);
                Ok(())
            })
            .collect();
        for partition in touched {
            let stored = self.persist(group, topic, partition, &state.partitions[&partition]);
            if let Err(refusal) = stored {
                // Not stored: not acknowledged (it comes back after its invisibility).
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
        let state = self.group(group, topic)?;
        let mut state = state.lock().expect("group state lock");
        let partition = state.partitions.entry(handle.partition).or_default();
        let nonce = self.next_nonce();
        partition
            .change_invisible(
                &handle.origin,
                handle.offset,
                handle.nonce,
                now_ms() + invisible.as_millis() as i64,
                nonce,
            )
            .map_err(|e| Refusal::new(Code::InvalidReceiptHandle, e.to_string()))?;
        self.persist(group, topic, handle.partition, partition)?;
        Ok(Handle { nonce, ..handle }.encode())
    }

    /// Moves the in-flight message of `handle` to the group's dead-letter topic now (a
    /// client that gave up on it, as FIFO push consumers do after their last attempt).
    pub fn forward_to_dead_letters(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
    ) -> Result<(), Refusal> {
        let handle =
            Handle::parse(handle).map_err(|m| Refusal::new(Code::InvalidReceiptHandle, m))?;
        let state = self.group(group, topic)?;
        let mut state = state.lock().expect("group state lock");
        let partition = state.partitions.entry(handle.partition).or_default();
        let flight = partition
            .in_flight
            .get(&(handle.origin.clone(), handle.offset))
            .filter(|f| f.nonce == handle.nonce)
            .cloned();
        if flight.is_none() {
            // The same check an acknowledgement makes, for its error.
            let mut probe = partition.clone();
            probe
                .ack(&handle.origin, handle.offset, handle.nonce)
                .map_err(|e| Refusal::new(Code::InvalidReceiptHandle, e.to_string()))?;
        }
        let p = self
            .broker
            .partition(topic, handle.partition)
            .map_err(storage)?;
        if let Some(record) = read_one(&p, &handle.origin, handle.offset)? {
            self.dead_letter(group, record)?;
        }
        partition.finish(&handle.origin, handle.offset);
        self.persist(group, topic, handle.partition, partition)
    }

    /// Stores `record` in the group's dead-letter topic, which is an ordinary topic.
    fn dead_letter(&self, group: &str, record: Record) -> Result<(), Refusal> {
        let topic = dead_letter_topic(group);
        self.broker.ensure_topic(&topic, 1).map_err(storage)?;
        let handle = tokio::runtime::Handle::current();
        handle
            .block_on(
                self.broker
                    .produce(&topic, vec![record], Partitioning::Explicit(0)),
            )
            .map_err(storage)?;
        Ok(())
    }
}

/// The dead-letter topic of `group`.
pub fn dead_letter_topic(group: &str) -> String {
    format!("%DLQ%{group}")
}

fn delivery(
    partition: u32,
    origin: &str,
    offset: u64,
    record: Record,
    attempt: u32,
    nonce: u64,
    invisible: Duration,
) -> Delivery {
    let handle = Handle {
        partition,
        origin: origin.to_string(),
        offset,
        nonce,
    };
    Delivery {
        partition,
        origin: origin.to_string(),
        offset,
        record,
        attempt,
        handle: handle.encode(),
        invisible,
    }
}

/// The record at `offset` of `origin`'s sub-log, if it is still held.
fn read_one(
    partition: &Arc<broker::storage::Partition>,
    origin: &str,
    offset: u64,
) -> Result<Option<Record>, Refusal> {
    let mut reader = SubLogReader::new(partition.clone(), origin, offset);
    for batch in reader.read(1).map_err(storage)? {
        if let Some((_, record)) = batch.records().find(|(o, _)| *o == offset) {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

fn rand_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id()
}
