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

/// A metadata failure while `doing` (what, of which group, topic and partition).
fn meta_error(doing: String) -> impl FnOnce(broker::meta::MetaError) -> Refusal {
    move |e| Refusal::new(Code::InternalError, format!("{doing}: {e}"))
}

impl Consumption {
    pub fn new(broker: Arc<Broker>) -> Self {
        Consumption {
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
            .map_err(meta_error(format!(
                "storing the consumption state of group {group} on {topic}/{partition}"
            )))
    }

    /// Hands out up to `batch` messages now (blocking: reads and a metadata flush).
    pub fn take(&self, receive: &Receive<'_>) -> Result<Taken, Refusal> {
        let topic = self.broker.topic(receive.topic).map_err(storage)?;
        let count = topic.config.partitions;
        let message_type = topic.config.message_type;
        let fifo = message_type == broker::meta::MessageType::Fifo;
        let group = self.group(receive.group, receive.topic)?;
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
            let part = Self::partition_state(&group, partition);
            let mut guard = part.lock().expect("partition state lock");
            let state = &mut *guard;
            let before = state.clone();
            // A sub-log replaced by a new incarnation is consumed from its start.
            let sub_logs = p.sub_logs();
            for sub_log in &sub_logs {
                state.follow(&sub_log.origin, sub_log.incarnation);
            }
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
                    match self.dead_letter(receive.group, record) {
                        Ok(()) => state.finish(&origin, offset),
                        Err(refusal) => {
                            // The group goes on; this message is tried again later.
                            tracing::error!(group = receive.group, topic = receive.topic, partition, %origin, offset, %refusal, "moving a message to the dead-letter topic failed");
                            let later = now + DEAD_LETTER_RETRY.as_millis() as i64;
                            state.hand_out_in(
                                &origin,
                                offset,
                                later,
                                flight.attempt,
                                flight.nonce,
                                flight.group.clone(),
                            );
                        }
                    }
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
            for sub_log in sub_logs {
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
                let mut reached = false;
                // Read on past what is in flight or acknowledged out of order, up to a
                // bound per look: fresh messages behind them are still found.
                let mut looked = 0;
                'batches: loop {
                    if looked >= MAX_READ_PER_LOOK {
                        break;
                    }
                    let batches = reader.read(READ_BYTES).map_err(|e| {
                        Refusal::new(
                            Code::InternalError,
                            format!(
                                "reading {}/{partition}@{origin} for group {}: {e}",
                                receive.topic, receive.group
                            ),
                        )
                    })?;
                    if batches.is_empty() {
                        break;
                    }
                    looked += batches.iter().map(|b| b.bytes().len()).sum::<usize>();
                    for batch in batches {
                        for (offset, record) in batch.records() {
                            // The first record at or past the frontier: nothing exists between
                            // the frontier and it (a gap in the sub-log), so the frontier passes.
                            if !reached && offset >= state.frontier(&origin) {
                                reached = true;
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
            }
            if *state != before
                && let Err(refusal) = self.persist(receive.group, receive.topic, partition, state)
            {
                // Not stored: nothing of this look was handed out.
                *state = before;
                return Err(refusal);
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
        for (partition, acks) in by_partition {
            let part = Self::partition_state(&state, partition);
            let mut current = part.lock().expect("partition state lock");
            let mut copy = current.clone();
            for (index, handle) in &acks {
                results[*index] = copy
                    .ack(&handle.origin, handle.offset, handle.nonce)
                    .map_err(|e| Refusal::new(Code::InvalidReceiptHandle, e.to_string()));
            }
            match self.persist(group, topic, partition, &copy) {
                Ok(()) => *current = copy,
                Err(refusal) => {
                    // Not stored: not acknowledged (it comes back after its invisibility).
                    for (index, _) in &acks {
                        if results[*index].is_ok() {
                            results[*index] = Err(refusal.clone());
                        }
                    }
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
        self.persist(group, topic, handle.partition, &copy)?;
        *current = copy;
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
        let part = Self::partition_state(&*self.group(group, topic)?, handle.partition);
        let mut guard = part.lock().expect("partition state lock");
        let partition = &mut *guard;
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

#[cfg(test)]
mod tests {
    use super::*;
    use broker::batch::PendingBatch;
    use broker::meta::{MemoryMetaStore, Retention};
    use broker::storage::{GapPolicy, StorageConfig};

    fn broker(dir: &std::path::Path) -> Arc<Broker> {
        let config = broker::BrokerConfig {
            region: "eu".into(),
            data_dir: dir.to_path_buf(),
            storage: StorageConfig::default(),
            default_retention: Retention::default(),
        };
        Arc::new(Broker::open(config, Arc::new(MemoryMetaStore::default())).unwrap())
    }

    fn receive() -> Receive<'static> {
        Receive {
            group: "billing",
            topic: "orders",
            filter: &Filter::All,
            batch: 10,
            invisible: Duration::from_secs(30),
            hint: None,
            max_attempts: 16,
        }
    }

    fn record(body: &'static str) -> Record {
        Record {
            key: None,
            tag: None,
            properties: Default::default(),
            body: bytes::Bytes::from_static(body.as_bytes()),
            timestamp_ms: 1_000,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gap_inside_a_replicated_batch_does_not_pin_the_frontier() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path());
        broker.create_topic("orders", 1, None).unwrap();
        // Origin us's batch covers offsets 0..=2 but holds 0 and 2 (a filter removed 1).
        let (a, c) = (record("a"), record("c"));
        let bytes = PendingBatch::covering(2, [(0, &a), (2, &c)]).seal(0);
        broker
            .append_replicated("orders", 0, "us", bytes, GapPolicy::Refuse)
            .await
            .unwrap();
        let consumption = Consumption::new(broker.clone());
        let receive = receive();
        let taken = tokio::task::block_in_place(|| consumption.take(&receive)).unwrap();
        let offsets: Vec<u64> = taken.deliveries.iter().map(|d| d.offset).collect();
        assert_eq!(offsets, [0, 2]);
        let handles: Vec<String> = taken.deliveries.iter().map(|d| d.handle.clone()).collect();
        let acked = tokio::task::block_in_place(|| consumption.ack("billing", "orders", &handles));
        assert!(acked.iter().all(Result::is_ok), "{acked:?}");
        let again = tokio::task::block_in_place(|| consumption.take(&receive)).unwrap();
        assert!(again.deliveries.is_empty());
        let group = consumption.group("billing", "orders").unwrap();
        let part = Consumption::partition_state(&group, 0);
        let partition = part.lock().unwrap();
        assert_eq!(partition.frontier("us"), 3, "past the gap");
        assert!(partition.done.is_empty(), "nothing left out of order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_topic_created_again_is_consumed_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path());
        let consumption = Consumption::new(broker.clone());
        let receive = receive();
        for round in ["first", "second"] {
            broker.create_topic("orders", 1, None).unwrap();
            broker
                .produce("orders", vec![record("m")], Partitioning::Explicit(0))
                .await
                .unwrap();
            let taken = tokio::task::block_in_place(|| consumption.take(&receive)).unwrap();
            let offsets: Vec<u64> = taken.deliveries.iter().map(|d| d.offset).collect();
            assert_eq!(offsets, [0], "{round} incarnation");
            let handles: Vec<String> = taken.deliveries.iter().map(|d| d.handle.clone()).collect();
            let acked =
                tokio::task::block_in_place(|| consumption.ack("billing", "orders", &handles));
            assert!(acked.iter().all(Result::is_ok));
            broker.delete_topic("orders").unwrap();
        }
        assert!(
            broker
                .meta()
                .pop_states("billing", "orders")
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_origin_topic_created_again_is_consumed_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path());
        broker.create_topic("orders", 1, None).unwrap();
        let batch = |bodies: &[&'static str]| {
            let records: Vec<Record> = bodies.iter().map(|b| record(b)).collect();
            let bytes = PendingBatch::consecutive(&records).seal(0);
            broker::batch::Batch::from_bytes(bytes, usize::MAX).unwrap()
        };
        let old = broker::incarnation::new_incarnation();
        broker
            .append_replicated_run_in(
                "orders",
                0,
                "us",
                old,
                vec![batch(&["a", "b", "c"])],
                GapPolicy::Refuse,
            )
            .await
            .unwrap();
        let consumption = Consumption::new(broker.clone());
        let taken = tokio::task::block_in_place(|| consumption.take(&receive())).unwrap();
        assert_eq!(taken.deliveries.len(), 3);
        let handles: Vec<String> = taken.deliveries.iter().map(|d| d.handle.clone()).collect();
        tokio::task::block_in_place(|| consumption.ack("billing", "orders", &handles));
        // The origin deleted and created its topic: a newer incarnation replaces the old.
        let new = old + (1 << 16);
        let run = broker
            .append_replicated_run_in(
                "orders",
                0,
                "us",
                new,
                vec![batch(&["x", "y"])],
                GapPolicy::Allow,
            )
            .await
            .unwrap();
        assert_eq!(run.replaced, Some(old));
        let taken = tokio::task::block_in_place(|| consumption.take(&receive())).unwrap();
        let bodies: Vec<&[u8]> = taken
            .deliveries
            .iter()
            .map(|d| d.record.body.as_ref())
            .collect();
        assert_eq!(bodies, [b"x".as_slice(), b"y"]);
    }
}
