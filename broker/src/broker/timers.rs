//! Scheduling, recalling and firing delayed messages (`crate::timer` has the store and the
//! rule that fires each exactly once).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Broker, Partitioning, blocking_here, held};
use crate::error::{BrokerError, Result};
use crate::meta::TimerKey;
use crate::record::{Record, now_ms};
use crate::storage::RecordFilter;
use crate::timer::{self, Entry, Header, TIMER_PROPERTY};
use crate::trace::TraceKind;

/// A half message due for an orphan check: the access point asks a producer of its topic
/// whether to commit it (`Broker::set_orphan_checker`).
#[derive(Clone, Debug)]
pub struct OrphanCheck {
    pub topic: String,
    pub partition: u32,
    pub transaction_id: String,
    pub message_id: String,
    pub record: Record,
}

/// What asks about orphaned half messages.
pub type OrphanChecker = Arc<dyn Fn(OrphanCheck) + Send + Sync>;

/// A message to hold until `due_ms`.
#[derive(Clone, Debug)]
pub struct Scheduled {
    pub partition: u32,
    pub message_id: String,
    pub due_ms: u64,
    pub record: Record,
}

/// How a produce's records are held instead of stored at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Delay messages, due at this time (ms since the epoch).
    Until(i64),
    /// Half messages of transactions.
    Transaction,
}

/// Entries fired per round.
const ROUND: usize = 512;
/// The longest the timer loop sleeps without looking (a schedule sooner wakes it).
const IDLE: Duration = Duration::from_secs(60);

fn unsigned_now() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}

impl Broker {
    /// Holds `held` messages of `topic` until each is due; durable when this returns (a
    /// copy in the held topic, then one flush of the timers: `broker/held.rs`). Returns
    /// each one's recall handle. A message keeps the held id it carries (adopted), or gets
    /// a new one.
    pub async fn schedule(&self, topic: &str, mut held: Vec<Scheduled>) -> Result<Vec<String>> {
        if let Some(reason) = self.gate.get().and_then(|g| g.refuses(topic)) {
            return Err(BrokerError::ReadOnly {
                topic: topic.to_string(),
                reason,
            });
        }
        for s in &mut held {
            if !s.record.properties.contains_key(held::HELD_ID_PROPERTY) {
                let id = self.new_held_id();
                s.record
                    .properties
                    .insert(held::HELD_ID_PROPERTY.to_string(), id);
            }
        }
        self.copy_held(topic, &held).await?;
        blocking_here(|| self.hold(topic, held, false))
    }

    /// Holds `held` half messages of `topic` (their `due_ms` is ignored: they are checked
    /// after `CHECK_INTERVAL_MS`) until their transaction ends; durable when this returns.
    /// Returns each one's transaction id.
    pub fn hold_half(&self, topic: &str, held: Vec<Scheduled>) -> Result<Vec<String>> {
        self.hold(topic, held, true)
    }

    /// Counters of delayed and half messages (for `/metrics`).
    pub fn timer_metrics(&self) -> &crate::timer_metrics::TimerMetrics {
        &self.timer_metrics
    }

    /// Who is asked about orphaned half messages (the access point, once).
    pub fn set_orphan_checker(&self, checker: OrphanChecker) {
        let _ = self.orphan_checker.set(checker);
    }

    /// Ends the transaction of half message `transaction_id` of `topic`: a commit holds it
    /// as a message due now (appended within moments, exactly once), a rollback drops it.
    /// Returns its message id (`None`: not held, ended already, or of another topic).
    pub fn end_transaction(
        &self,
        topic: &str,
        transaction_id: &str,
        commit: bool,
    ) -> Result<Option<String>> {
        let Some(index) = timer::parse_key(transaction_id).filter(|k| timer::due_ms(k) == u64::MAX)
        else {
            return Ok(None);
        };
        let _halves = self.timer_halves.lock().expect("half messages lock");
        let Some(current) = self
            .meta
            .timer(index)?
            .and_then(|b| TimerKey::try_from(b.as_slice()).ok())
        else {
            return Ok(None);
        };
        let Some(mut entry) = self
            .meta
            .timer(current)?
            .and_then(|b| Entry::decode(&b).ok())
            .filter(|e| e.header.topic == topic && e.header.transaction.is_some())
        else {
            return Ok(None);
        };
        let mut changes = vec![(current, None), (index, None)];
        if commit {
            entry.header.transaction = None;
            let now = timer::key(unsigned_now(), self.timer_seq.next());
            changes.push((now, Some(entry.encode())));
        }
        self.meta.write_timers(&changes)?;
        if commit {
            self.timer_wake.notify_one();
        }
        Ok(Some(entry.header.message_id))
    }

    fn hold(&self, topic: &str, held: Vec<Scheduled>, half: bool) -> Result<Vec<String>> {
        let t = self.topic(topic)?;
        if let Some(reason) = self.gate.get().and_then(|g| g.refuses(topic)) {
            return Err(BrokerError::ReadOnly {
                topic: topic.to_string(),
                reason,
            });
        }
        let mut changes = Vec::with_capacity(held.len());
        let mut handles = Vec::with_capacity(held.len());
        for s in held {
            if s.partition >= t.config.partitions {
                return Err(BrokerError::UnknownPartition {
                    topic: topic.to_string(),
                    partition: s.partition,
                    partitions: t.config.partitions,
                });
            }
            let due = if half {
                unsigned_now() + timer::CHECK_INTERVAL_MS
            } else {
                s.due_ms
            };
            let key = timer::key(due, self.timer_seq.next());
            let entry = Entry {
                header: Header {
                    topic: topic.to_string(),
                    partition: s.partition,
                    message_id: s.message_id,
                    firing_from: None,
                    transaction: half.then_some(0),
                },
                record: s.record,
            };
            changes.push((key, Some(entry.encode())));
            if half {
                let index = timer::index_of(&key);
                changes.push((index, Some(key.to_vec())));
                handles.push(timer::key_text(&index));
            } else {
                handles.push(timer::key_text(&key));
            }
        }
        self.meta.write_timers(&changes)?;
        self.timer_wake.notify_one();
        Ok(handles)
    }

    /// Holds `records` of `topic` as `hold` says, checked and spread over partitions like a
    /// produce; durable when this returns. Returns each one's recall handle (delay) or
    /// transaction id, in request order.
    pub async fn hold_records(
        &self,
        topic: &str,
        mut records: Vec<Record>,
        partitioning: Partitioning,
        hold: Hold,
    ) -> Result<Vec<String>> {
        let t = self.topic(topic)?;
        let now = unsigned_now();
        let due = match hold {
            Hold::Until(at) => {
                let at = u64::try_from(at).unwrap_or(0).max(now);
                if at > now + timer::MAX_DELAY_MS {
                    return Err(BrokerError::InvalidHold {
                        reason: format!(
                            "deliver_at_ms {at} is more than {} days ahead (now {now})",
                            timer::MAX_DELAY_MS / 86_400_000
                        ),
                    });
                }
                at
            }
            Hold::Transaction => 0,
        };
        let partitions = self.admit(&t, &mut records, partitioning)?;
        let held = records
            .into_iter()
            .zip(partitions)
            .map(|(record, partition)| Scheduled {
                partition,
                message_id: record
                    .properties
                    .get(crate::broker::query::MESSAGE_ID_PROPERTY)
                    .cloned()
                    .unwrap_or_default(),
                due_ms: due,
                record,
            })
            .collect();
        match hold {
            Hold::Until(_) => self.schedule(topic, held).await,
            Hold::Transaction => blocking_here(|| self.hold(topic, held, true)),
        }
    }

    /// Cancels the held message of recall handle `handle` of `topic`; its message id, if
    /// it was held (`None`: unknown, fired, or of another topic). The cancel is copied to
    /// the held topic, so a region that adopts the topic's delay messages skips it.
    pub async fn recall(&self, topic: &str, handle: &str) -> Result<Option<String>> {
        let Some((message_id, partition, held_id)) = blocking_here(|| self.forget(topic, handle))?
        else {
            return Ok(None);
        };
        if let Some(held_id) = held_id {
            self.cancel_held(topic, partition, &held_id).await?;
        }
        Ok(Some(message_id))
    }

    /// Removes the held delay message of `handle`: its message id, partition and held id.
    fn forget(&self, topic: &str, handle: &str) -> Result<Option<(String, u32, Option<String>)>> {
        let Some(key) = timer::parse_key(handle) else {
            return Ok(None);
        };
        let held = self.meta.timer(key)?.and_then(|b| Entry::decode(&b).ok());
        let Some(entry) =
            held.filter(|e| e.header.topic == topic && e.header.transaction.is_none())
        else {
            return Ok(None);
        };
        self.meta.write_timers(&[(key, None)])?;
        let held_id = entry.record.properties.get(held::HELD_ID_PROPERTY).cloned();
        Ok(Some((
            entry.header.message_id,
            entry.header.partition,
            held_id,
        )))
    }

    /// When the next held message is due (none held: `None`).
    pub fn next_due(&self) -> Result<Option<u64>> {
        Ok(self
            .meta
            .timers_from([0; 16], 1)?
            .first()
            .map(|(k, _)| timer::due_ms(k)))
    }

    /// Fires every message due at `now_ms`; returns how many were appended.
    pub async fn fire_due(&self, now_ms: u64) -> Result<usize> {
        Ok(self.fire_until(now_ms).await?.0)
    }

    /// Fires every message due at `now_ms`: how many were appended, and whether some due
    /// could not be (a read-only topic).
    async fn fire_until(&self, now_ms: u64) -> Result<(usize, bool)> {
        let mut fired = 0;
        loop {
            let due: Vec<(TimerKey, Vec<u8>)> = self
                .meta
                .timers_from([0; 16], ROUND)?
                .into_iter()
                .take_while(|(k, _)| timer::due_ms(k) <= now_ms)
                .collect();
            if due.is_empty() {
                return Ok((fired, false));
            }
            let due = self.check_halves(due, now_ms)?;
            if due.is_empty() {
                continue;
            }
            let (n, stuck) = self.fire_round(due).await?;
            fired += n;
            if stuck {
                return Ok((fired, true));
            }
        }
    }

    /// Takes the half messages out of `due`: each is held again until its next check and
    /// checked (or rolled back after `MAX_CHECKS`). Returns the other entries.
    fn check_halves(
        &self,
        due: Vec<(TimerKey, Vec<u8>)>,
        now_ms: u64,
    ) -> Result<Vec<(TimerKey, Vec<u8>)>> {
        let mut rest = Vec::with_capacity(due.len());
        let mut changes = Vec::new();
        let mut checks = Vec::new();
        let _halves = self.timer_halves.lock().expect("half messages lock");
        for (key, bytes) in due {
            let Some(mut entry) = Entry::decode(&bytes)
                .ok()
                .filter(|e| e.header.transaction.is_some())
            else {
                rest.push((key, bytes));
                continue;
            };
            let index = timer::index_of(&key);
            let made = entry.header.transaction.unwrap_or(0);
            changes.push((key, None));
            if made >= timer::MAX_CHECKS {
                self.timer_metrics.orphans_rolled_back.inc();
                tracing::warn!(event = "transaction_rolled_back", topic = %entry.header.topic, message_id = %entry.header.message_id, checks = made, "a half message's transaction never ended; rolled back");
                changes.push((index, None));
                continue;
            }
            entry.header.transaction = Some(made + 1);
            let next = timer::moved(&key, now_ms + timer::CHECK_INTERVAL_MS);
            changes.push((next, Some(entry.encode())));
            changes.push((index, Some(next.to_vec())));
            checks.push(OrphanCheck {
                topic: entry.header.topic,
                partition: entry.header.partition,
                transaction_id: timer::key_text(&index),
                message_id: entry.header.message_id,
                record: entry.record,
            });
        }
        if !changes.is_empty() {
            self.meta.write_timers(&changes)?;
        }
        self.timer_metrics.orphan_checks.inc_by(checks.len() as u64);
        if let Some(checker) = self.orphan_checker.get() {
            for check in checks {
                checker(check);
            }
        }
        Ok(rest)
    }

    /// One round of due entries: marked, appended, removed. Returns how many were appended
    /// and whether some could not be (a read-only topic): the loop then waits.
    async fn fire_round(&self, due: Vec<(TimerKey, Vec<u8>)>) -> Result<(usize, bool)> {
        let mut groups: BTreeMap<(String, u32), Vec<(TimerKey, Entry)>> = BTreeMap::new();
        let mut removals = Vec::new();
        for (key, bytes) in due {
            match Entry::decode(&bytes) {
                Ok(e) => groups
                    .entry((e.header.topic.clone(), e.header.partition))
                    .or_default()
                    .push((key, e)),
                Err(e) => {
                    tracing::error!(event = "held_message_unreadable", key = %timer::key_text(&key), error = %e, "a held delayed message is unreadable; dropped");
                    removals.push((key, None));
                }
            }
        }
        // Mark what is not marked yet, all at once; find what a crash left marked.
        let mut marks = Vec::new();
        let mut already: BTreeSet<String> = BTreeSet::new();
        for ((topic, partition), entries) in &mut groups {
            let end = self.held_end(topic, *partition, self.region());
            let mut from = None::<u64>;
            for (key, entry) in entries.iter_mut() {
                match entry.header.firing_from {
                    Some(f) => from = Some(from.map_or(f, |m| m.min(f))),
                    None => {
                        entry.header.firing_from = Some(end);
                        marks.push((*key, Some(entry.encode())));
                    }
                }
            }
            if let Some(from) = from {
                already.extend(self.timer_keys_since(topic, *partition, from)?);
            }
        }
        if !marks.is_empty() {
            self.meta.write_timers(&marks)?;
        }
        let mut fired = 0;
        let mut stuck = false;
        for ((topic, partition), entries) in groups {
            let mut records = Vec::new();
            for (key, entry) in &entries {
                let text = timer::key_text(key);
                if !already.contains(&text) {
                    let mut record = entry.record.clone();
                    record.properties.insert(TIMER_PROPERTY.into(), text);
                    // Stamped with the time it is appended.
                    record.timestamp_ms = 0;
                    records.push(record);
                }
            }
            let n = records.len();
            let outcome = if records.is_empty() {
                Ok(Vec::new())
            } else {
                self.produce(&topic, records, Partitioning::Explicit(partition))
                    .await
            };
            match outcome {
                Ok(ids) => {
                    self.tracer().stored(TraceKind::Fired, &topic, &ids, &[]);
                    fired += n;
                    self.timer_metrics.fired.inc_by(n as u64);
                }
                Err(
                    e @ (BrokerError::UnknownTopic { .. }
                    | BrokerError::TopicDeleted { .. }
                    | BrokerError::UnknownPartition { .. }),
                ) => {
                    tracing::warn!(event = "held_messages_of_deleted_topic_dropped", %topic, partition, error = %e, "delayed messages of a topic that no longer exists; dropped");
                }
                // Fenced by a DR task: the promoted region adopted the delay messages
                // (their copies); committed transactions have no copy and wait.
                Err(e @ BrokerError::ReadOnly { .. }) => {
                    let (copied, waiting): (Vec<_>, Vec<_>) =
                        entries.into_iter().partition(|(_, e)| {
                            e.record.properties.contains_key(held::HELD_ID_PROPERTY)
                        });
                    if !copied.is_empty() {
                        tracing::warn!(event = "delay_messages_dropped_fenced", %topic, partition, dropped = copied.len(), error = %e, "delay messages due in a region a DR task fenced: dropped, the promoted region fires them");
                        self.timer_metrics
                            .dropped_fenced
                            .inc_by(copied.len() as u64);
                        removals.extend(copied.into_iter().map(|(key, _)| (key, None)));
                    }
                    if !waiting.is_empty() {
                        tracing::warn!(event = "committed_transactions_fenced", %topic, partition, error = %e, "committed transactions due in a fenced region; they stay held");
                        stuck = true;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(event = "delay_firing_failed", %topic, partition, error = %e, "firing delayed messages failed; they stay held");
                    stuck = true;
                    continue;
                }
            }
            removals.extend(entries.into_iter().map(|(key, _)| (key, None)));
        }
        if !removals.is_empty() {
            self.meta.write_timers(&removals)?;
        }
        Ok((fired, stuck))
    }

    /// The timer keys of messages appended to `topic`'s `partition` in this region from
    /// offset `from` on (after a crash while firing).
    fn timer_keys_since(&self, topic: &str, partition: u32, from: u64) -> Result<Vec<String>> {
        let Ok(p) = self.partition(topic, partition) else {
            return Ok(Vec::new());
        };
        let mut cursor = p.latest_cursor();
        cursor.next.insert(self.region().to_string(), from);
        let mut reader = p.reader(cursor, RecordFilter::default());
        let mut keys = Vec::new();
        loop {
            let read = reader.read(1 << 20)?;
            keys.extend(
                read.records
                    .iter()
                    .filter(|r| r.origin == self.region())
                    .filter_map(|r| r.record.properties.get(TIMER_PROPERTY).cloned()),
            );
            if read.caught_up || read.records.is_empty() {
                return Ok(keys);
            }
        }
    }

    /// Fires delayed messages as they come due until `stop`: wakes at the next due time
    /// (at least every minute), and at once when a message is scheduled.
    pub async fn run_timers(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let stuck = match self.fire_until(unsigned_now()).await {
                Ok((_, stuck)) => stuck,
                Err(e) => {
                    tracing::warn!(event = "timer_round_failed", error = %e, "firing delayed messages failed; retrying");
                    true
                }
            };
            let now = unsigned_now();
            let wait = match self.next_due() {
                // Some could not be appended (a read-only copy), or the store failed: look
                // again in a second.
                _ if stuck => Duration::from_secs(1),
                Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now)).min(IDLE),
                Ok(None) => IDLE,
                Err(_) => Duration::from_secs(1),
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.timer_wake.notified() => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
#[path = "timers_tests.rs"]
mod tests;
