//! A region's metadata in a JetStream KV bucket (keys: `crate::meta_keys`), replicated by
//! the cluster and shared by every node of the region. The bucket keeps one revision per
//! key and is read from its stream's leader, never from a replica that may lag (direct
//! gets are turned off), so a node reads what any node of the region wrote before. A value
//! that must be written once (when a task first ran) is written with compare-and-swap:
//! the first writer creates it, every later one reads it. Every write is acknowledged by a
//! quorum that has it on disk (the cluster runs with `sync_interval: always`), so `flush`
//! has nothing left to do.
//!
//! Writes of several entries at once (`put_pop_states`, `write_timers`) are durable one by
//! one, not all or nothing: timers are written before those they replace are removed, so
//! a crash between the two keeps a message held twice (fired once: `broker::timer`) rather
//! than losing it.

use std::future::Future;
use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use broker::cursor::Cursor;
use broker::meta::{MetaError, MetaStore, SharedKind, TaskCheckpoint, TimerKey, TopicConfig};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::engine::{Engine, EngineError};
use crate::listing;
use crate::meta_keys as keys;
use crate::names;

pub struct JetStreamMetaStore {
    engine: Arc<Engine>,
    store: kv::Store,
}

impl JetStreamMetaStore {
    /// Opens region `region`'s bucket, creating it the first time (any node may: the
    /// first creation wins and the others use it).
    pub fn open(engine: Arc<Engine>, region: &str) -> Result<Self, EngineError> {
        let bucket = names::meta_bucket(region);
        let context = engine.context().clone();
        let replicas = engine.settings().replicas;
        let store = engine.run_retrying(move || {
            let (context, bucket) = (context.clone(), bucket.clone());
            async move { open_bucket(&context, &bucket, replicas).await }
        })?;
        Ok(JetStreamMetaStore { engine, store })
    }

    /// Holds the region's lease on `duty` for node `me` whenever it can (`crate::lease`),
    /// until `stop`: the receiver says whether this node holds it now.
    pub fn hold_lease(
        &self,
        duty: &str,
        me: &str,
        time: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::sync::watch::Receiver<bool> {
        crate::lease::hold_yielding(&self.engine, self.store.clone(), duty, me, time, stop).0
    }

    /// [`hold_lease`](Self::hold_lease), with the means to give the lease up for a while
    /// (a node that cannot do the duty).
    pub fn hold_lease_yielding(
        &self,
        duty: &str,
        me: &str,
        time: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> (tokio::sync::watch::Receiver<bool>, crate::lease::StepDown) {
        crate::lease::hold_yielding(&self.engine, self.store.clone(), duty, me, time, stop)
    }

    /// The live holders of the leases whose duty starts with `prefix`: the nodes alive, when
    /// each holds a lease of its own (`member-<id>`).
    pub fn lease_holders(&self, prefix: &str) -> Result<Vec<String>, MetaError> {
        let start = crate::lease::key(prefix);
        let now = crate::lease::now_ms();
        Ok(self
            .list(keys::LEASES.to_string())?
            .into_iter()
            .filter(|(key, _)| key.starts_with(&start))
            .filter_map(|(_, value)| serde_json::from_slice(&value).ok())
            .filter_map(|record| crate::lease::live_holder(record, now))
            .collect())
    }

    /// Removes the records of leases whose duty starts with `prefix` and whose time ended
    /// more than `lapsed_for` ago (released, or their holder dead): each node's own lease
    /// has a key of its own, so without this every start of a node would leave one behind
    /// for every listing to read. Returns how many were removed.
    pub fn prune_lapsed_leases(
        &self,
        prefix: &str,
        lapsed_for: std::time::Duration,
    ) -> Result<usize, MetaError> {
        let start = crate::lease::key(prefix);
        let before = crate::lease::now_ms()
            .saturating_sub(u64::try_from(lapsed_for.as_millis()).unwrap_or(u64::MAX));
        let doomed: Vec<String> = self
            .list(keys::LEASES.to_string())?
            .into_iter()
            .filter(|(key, _)| key.starts_with(&start))
            .filter(|(_, value)| {
                serde_json::from_slice::<crate::lease::LeaseRecord>(value)
                    .is_ok_and(|r| r.until_ms < before)
            })
            .map(|(key, _)| key)
            .collect();
        let removed = doomed.len();
        if removed > 0 {
            self.remove(doomed)?;
        }
        Ok(removed)
    }

    /// The node holding lease `duty` now, if any.
    pub fn lease_holder(&self, duty: &str) -> Result<Option<String>, MetaError> {
        let now = crate::lease::now_ms();
        Ok(self
            .get(crate::lease::key(duty))?
            .and_then(|value| serde_json::from_slice(&value).ok())
            .and_then(|record| crate::lease::live_holder(record, now)))
    }

    /// Stores the division of the region's pulls among its nodes (the lease holder's).
    pub fn put_replication_division(&self, division: Vec<u8>) -> Result<(), MetaError> {
        self.put(keys::REPLICATION_DIVISION.to_string(), division)
    }

    /// The division of the region's pulls as last stored.
    pub fn replication_division(&self) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(self
            .get(keys::REPLICATION_DIVISION.to_string())?
            .map(|b| b.to_vec()))
    }

    /// Runs the work `attempt` makes with the bucket on the engine's runtime, again while
    /// it fails transiently, and waits for it. Every attempt here is safe to repeat: puts
    /// and removals write the same value again, a create finds its own value.
    fn call<T, F, A>(&self, attempt: A) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, EngineError>> + Send + 'static,
        A: Fn(kv::Store, async_nats::Client) -> F + Send + 'static,
    {
        let (store, client) = (self.store.clone(), self.engine.client().clone());
        self.engine
            .run_retrying(move || attempt(store.clone(), client.clone()))
            .map_err(|e| MetaError::Engine(Box::new(e)))
    }

    fn put(&self, key: String, value: Vec<u8>) -> Result<(), MetaError> {
        let value = Bytes::from(value);
        self.call(move |store, _| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                store
                    .put(key.as_str(), value)
                    .await
                    .map(drop)
                    .map_err(|e| EngineError::request(format!("putting {key}"), e))
            }
        })
    }

    /// Creates `key` with `value` unless it exists; whether this call created it.
    fn create(&self, key: String, value: Bytes) -> Result<bool, MetaError> {
        self.call(move |store, _| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                match store.create(key.as_str(), value).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(EngineError::request(format!("creating {key}"), e)),
                }
            }
        })
    }

    /// The value of `key`, which a [`create`](Self::create) just found there.
    fn read_after_create(&self, key: &str) -> Result<Bytes, MetaError> {
        self.get(key.to_string())?
            .ok_or_else(|| MetaError::Corrupt {
                key: key.to_string(),
                reason: "exists for a create and is missing for the read after it".into(),
            })
    }

    fn get(&self, key: String) -> Result<Option<Bytes>, MetaError> {
        self.call(move |store, _| {
            let key = key.clone();
            async move {
                store
                    .get(key.as_str())
                    .await
                    .map_err(|e| EngineError::request(format!("reading {key}"), e))
            }
        })
    }

    /// Removes every key of `keys`, history and all.
    fn remove(&self, keys: Vec<String>) -> Result<(), MetaError> {
        self.call(move |store, _| {
            let keys = keys.clone();
            async move {
                for key in keys {
                    store
                        .purge(key.as_str())
                        .await
                        .map_err(|e| EngineError::request(format!("removing {key}"), e))?;
                }
                Ok(())
            }
        })
    }

    /// Every live `(key, value)` matching `filter`, sorted by key.
    fn list(&self, filter: String) -> Result<Vec<(String, Bytes)>, MetaError> {
        let timeout = self.engine.settings().request_timeout;
        let mut entries = self.call(move |store, client| {
            let filter = filter.clone();
            async move { listing::latest(&client, &store, &filter, timeout).await }
        })?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    /// The names in `key` after its family, or why they cannot be read.
    fn parts(key: &str, count: usize) -> Result<Vec<String>, MetaError> {
        keys::parts(key)
            .filter(|p| p.len() == count)
            .ok_or_else(|| MetaError::Corrupt {
                key: key.to_string(),
                reason: format!("expected {count} escaped names after the key's family"),
            })
    }

    /// The entries matching `filter` whose key holds a partition as its `index`-th name,
    /// by partition, each value read by `value`.
    fn by_partition<T>(
        &self,
        filter: String,
        index: usize,
        value: impl Fn(&str, Bytes) -> Result<T, MetaError>,
    ) -> Result<Vec<(u32, T)>, MetaError> {
        let mut out = self
            .list(filter)?
            .into_iter()
            .map(|(key, bytes)| {
                let parts = Self::parts(&key, index + 1)?;
                Ok((partition(&key, &parts, index)?, value(&key, bytes)?))
            })
            .collect::<Result<Vec<_>, MetaError>>()?;
        out.sort_by_key(|(p, _)| *p);
        Ok(out)
    }

    fn named(&self, filter: String) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.list(filter)?
            .into_iter()
            .map(|(key, value)| {
                let mut parts = Self::parts(&key, 1)?;
                Ok((parts.remove(0), value.to_vec()))
            })
            .collect()
    }
}

async fn open_bucket(
    context: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<kv::Store, EngineError> {
    let what = || format!("opening the metadata bucket {bucket}");
    if context.get_key_value(bucket).await.is_err() {
        let made = context
            .create_key_value(kv::Config {
                bucket: bucket.to_string(),
                description: "georouter region metadata".to_string(),
                history: 1,
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await;
        // Another node may have made it a moment ago, with reads from replicas already
        // turned off (a configuration that no longer equals the one asked for here).
        if let Err(e) = made
            && context.get_key_value(bucket).await.is_err()
        {
            return Err(EngineError::request(what(), e));
        }
    }
    let mut stream = context
        .get_stream(format!("KV_{bucket}"))
        .await
        .map_err(|e| EngineError::request(what(), e))?;
    let mut config = stream
        .info()
        .await
        .map_err(|e| EngineError::request(what(), e))?
        .config
        .clone();
    if config.allow_direct {
        config.allow_direct = false;
        context
            .update_stream(config)
            .await
            .map_err(|e| EngineError::request(what(), e))?;
    }
    // A handle made now reads through the leader: it sees direct gets are off.
    context
        .get_key_value(bucket)
        .await
        .map_err(|e| EngineError::request(what(), e))
}

/// The partition a key holds as its `index`-th name.
fn partition(key: &str, parts: &[String], index: usize) -> Result<u32, MetaError> {
    keys::partition_at(parts, index).ok_or_else(|| MetaError::Corrupt {
        key: key.to_string(),
        reason: "the partition is not a number".into(),
    })
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(value).map_err(|source| MetaError::Decode {
        key: key.to_string(),
        source,
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("metadata types serialize")
}

impl MetaStore for JetStreamMetaStore {
    fn put_topic(&self, topic: &TopicConfig) -> Result<(), MetaError> {
        self.put(keys::topic(&topic.name), encode(topic))
    }

    fn create_topic(&self, topic: &TopicConfig) -> Result<Option<TopicConfig>, MetaError> {
        let key = keys::topic(&topic.name);
        let value = Bytes::from(encode(topic));
        // A create retried after its answer was lost finds its own value: same outcome.
        if self.create(key.clone(), value)? {
            return Ok(None);
        }
        let stored = self.read_after_create(&key)?;
        let stored: TopicConfig = decode(&key, &stored)?;
        // Our own create, whose answer was lost and which was made again.
        Ok((stored != *topic).then_some(stored))
    }

    fn delete_topic(&self, name: &str) -> Result<(), MetaError> {
        let mut doomed = vec![keys::topic(name)];
        for filter in [keys::cursors_of_topic(name), keys::pops_of_topic(name)] {
            doomed.extend(self.list(filter)?.into_iter().map(|(key, _)| key));
        }
        self.remove(doomed)
    }

    fn topics(&self) -> Result<Vec<TopicConfig>, MetaError> {
        let mut topics = self
            .list(keys::TOPICS.to_string())?
            .into_iter()
            .map(|(key, value)| decode::<TopicConfig>(&key, &value))
            .collect::<Result<Vec<_>, _>>()?;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    fn put_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        cursor: &Cursor,
    ) -> Result<(), MetaError> {
        self.put(keys::cursor(group, topic, partition), encode(cursor))
    }

    fn cursors(&self, group: &str, topic: &str) -> Result<Vec<(u32, Cursor)>, MetaError> {
        self.by_partition(keys::cursors_of(group, topic), 2, |key, value| {
            decode(key, &value)
        })
    }

    fn all_cursors(&self) -> Result<Vec<(String, String, u32, Cursor)>, MetaError> {
        let mut out = self
            .list(keys::CURSORS.to_string())?
            .into_iter()
            .map(|(key, value)| {
                let mut parts = Self::parts(&key, 3)?;
                let partition = partition(&key, &parts, 2)?;
                let topic = parts.remove(1);
                let group = parts.remove(0);
                Ok((group, topic, partition, decode(&key, &value)?))
            })
            .collect::<Result<Vec<_>, MetaError>>()?;
        out.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
        Ok(out)
    }

    fn put_checkpoint(&self, checkpoint: &TaskCheckpoint) -> Result<(), MetaError> {
        let key = keys::checkpoint(
            &checkpoint.task,
            &checkpoint.topic,
            checkpoint.partition,
            &checkpoint.origin,
        );
        self.put(key, encode(checkpoint))
    }

    fn checkpoints(&self, task: &str) -> Result<Vec<TaskCheckpoint>, MetaError> {
        let mut out = self
            .list(keys::checkpoints_of(task))?
            .into_iter()
            .map(|(key, value)| decode::<TaskCheckpoint>(&key, &value))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| {
            (&a.topic, a.partition, &a.origin).cmp(&(&b.topic, b.partition, &b.origin))
        });
        Ok(out)
    }

    fn checkpoint(
        &self,
        task: &str,
        topic: &str,
        partition: u32,
        origin: &str,
    ) -> Result<Option<TaskCheckpoint>, MetaError> {
        let key = keys::checkpoint(task, topic, partition, origin);
        self.get(key.clone())?
            .map(|value| decode(&key, &value))
            .transpose()
    }

    fn task_started(&self, task: &str, now_ms: i64) -> Result<i64, MetaError> {
        let key = keys::task_start(task);
        // A create retried after its answer was lost finds its own value: same outcome.
        if self.create(key.clone(), now_ms.to_string().into())? {
            return Ok(now_ms);
        }
        let value = self.read_after_create(&key)?;
        std::str::from_utf8(&value)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(MetaError::Corrupt {
                key,
                reason: "not a time in ms".into(),
            })
    }

    fn put_task_record(&self, name: &str, record: &[u8]) -> Result<(), MetaError> {
        self.put(keys::task_record(name), record.to_vec())
    }

    fn task_records(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.named(keys::TASK_RECORDS.to_string())
    }

    fn put_shared_record(
        &self,
        kind: SharedKind,
        name: &str,
        record: &[u8],
    ) -> Result<(), MetaError> {
        self.put(keys::shared(kind, name), record.to_vec())
    }

    fn shared_records(&self, kind: SharedKind) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.named(keys::shared_all(kind))
    }

    fn put_pop_states(
        &self,
        group: &str,
        topic: &str,
        states: &[(u32, Vec<u8>)],
    ) -> Result<(), MetaError> {
        for (partition, state) in states {
            self.put(keys::pop(group, topic, *partition), state.clone())?;
        }
        Ok(())
    }

    fn pop_states(&self, group: &str, topic: &str) -> Result<Vec<(u32, Vec<u8>)>, MetaError> {
        self.by_partition(
            keys::pops_of(group, topic),
            2,
            |_, value| Ok(value.to_vec()),
        )
    }

    fn write_timers(&self, changes: &[(TimerKey, Option<Vec<u8>>)]) -> Result<(), MetaError> {
        for (key, value) in changes {
            if let Some(value) = value {
                self.put(keys::timer(key), value.clone())?;
            }
        }
        let removed = changes
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| keys::timer(k))
            .collect();
        self.remove(removed)
    }

    fn timers_from(
        &self,
        from: TimerKey,
        limit: usize,
    ) -> Result<Vec<(TimerKey, Vec<u8>)>, MetaError> {
        // Sorted by key, and a key's hex digits sort as the timer key does.
        self.list(keys::TIMERS.to_string())?
            .into_iter()
            .filter_map(|(key, value)| {
                let timer = match keys::parse_timer(&key) {
                    Some(t) => t,
                    None => {
                        return Some(Err(MetaError::Corrupt {
                            key,
                            reason: "not 32 hex digits".into(),
                        }));
                    }
                };
                (timer >= from).then(|| Ok((timer, value.to_vec())))
            })
            .take(limit)
            .collect()
    }

    fn timer(&self, key: TimerKey) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(self.get(keys::timer(&key))?.map(|v| v.to_vec()))
    }

    fn flush(&self) -> Result<(), MetaError> {
        Ok(())
    }
}
