//! The sled [`MetaStore`]. Trees: `topics` (name -> JSON [`TopicConfig`]) and `cursors`
//! (`group \0 topic \0 partition as u32 big-endian` -> JSON [`Cursor`]); names cannot hold
//! `\0`, so prefixes never collide. `checkpoints`: (`task \0 topic \0 partition
//! big-endian origin` -> JSON [`TaskCheckpoint`]); `task_starts`: (`task` -> ms since
//! the epoch, i64 big-endian); `task_records`: (`task` -> the replicator's bytes);
//! `group_records`, `principal_records`: (`name` -> JSON of a shared record);
//! `pop_states`: (`group \0 topic \0 partition big-endian` -> the access point's bytes);
//! `timers`: (due ms and sequence, big-endian -> a delayed message, `crate::timer`).

use std::path::Path;

use serde::de::DeserializeOwned;

use super::{MetaError, MetaStore, SharedKind, TaskCheckpoint, TimerKey, TopicConfig};
use crate::cursor::Cursor;

/// How long opening waits for another handle of this process to let the lock go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct SledMetaStore {
    db: sled::Db,
    topics: sled::Tree,
    cursors: sled::Tree,
    checkpoints: sled::Tree,
    task_starts: sled::Tree,
    task_records: sled::Tree,
    group_records: sled::Tree,
    principal_records: sled::Tree,
    pop_states: sled::Tree,
    timers: sled::Tree,
}

impl SledMetaStore {
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        // A store of this directory closed a moment ago in this process (a node stopped and
        // started again) may still hold sled's file lock while its flusher thread ends: wait
        // for it, a little.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::Config::new().path(dir).open() {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                opened => break opened?,
            }
        };
        Ok(SledMetaStore {
            topics: db.open_tree("topics")?,
            cursors: db.open_tree("cursors")?,
            checkpoints: db.open_tree("checkpoints")?,
            task_starts: db.open_tree("task_starts")?,
            task_records: db.open_tree("task_records")?,
            group_records: db.open_tree(SharedKind::Groups.tree())?,
            principal_records: db.open_tree(SharedKind::Principals.tree())?,
            pop_states: db.open_tree("pop_states")?,
            timers: db.open_tree("timers")?,
            db,
        })
    }
}

impl SledMetaStore {
    fn shared(&self, kind: SharedKind) -> &sled::Tree {
        match kind {
            SharedKind::Groups => &self.group_records,
            SharedKind::Principals => &self.principal_records,
        }
    }

    /// Stores `value` under `name` in `tree`, durably.
    fn put_named(&self, tree: &sled::Tree, name: &str, value: &[u8]) -> Result<(), MetaError> {
        tree.insert(name.as_bytes(), value)?;
        self.db.flush()?;
        Ok(())
    }
}

/// Every `(name, value)` of `tree`.
fn named(tree: &sled::Tree) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
    tree.iter()
        .map(|item| {
            let (key, value) = item?;
            Ok((String::from_utf8_lossy(&key).into_owned(), value.to_vec()))
        })
        .collect()
}

fn group_prefix(group: &str, topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(group.len() + topic.len() + 2);
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key
}

/// The entries of `tree` keyed `prefix` + a big-endian partition: `(partition, key, value)`.
fn by_partition(
    tree: &sled::Tree,
    prefix: &[u8],
) -> Result<Vec<(u32, sled::IVec, sled::IVec)>, MetaError> {
    tree.scan_prefix(prefix)
        .filter(|item| {
            item.as_ref()
                .map_or(true, |(key, _)| key.len() == prefix.len() + 4)
        })
        .map(|item| {
            let (key, value) = item?;
            let partition = u32::from_be_bytes(key[prefix.len()..].try_into().expect("4 bytes"));
            Ok((partition, key, value))
        })
        .collect()
}

fn task_prefix(task: &str) -> Vec<u8> {
    let mut key = task.as_bytes().to_vec();
    key.push(0);
    key
}

/// `task \0 topic \0 partition (u32, big-endian) origin`: a task's checkpoints share its
/// prefix.
fn checkpoint_key(task: &str, topic: &str, partition: u32, origin: &str) -> Vec<u8> {
    let mut key = task_prefix(task);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key.extend_from_slice(origin.as_bytes());
    key
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(value).map_err(|source| MetaError::Decode {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("metadata types serialize")
}

impl MetaStore for SledMetaStore {
    fn put_topic(&self, topic: &TopicConfig) -> Result<(), MetaError> {
        self.topics.insert(topic.name.as_bytes(), encode(topic))?;
        Ok(())
    }

    fn delete_topic(&self, name: &str) -> Result<(), MetaError> {
        self.topics.remove(name.as_bytes())?;
        let suffix = {
            let mut s = vec![0];
            s.extend_from_slice(name.as_bytes());
            s.push(0);
            s
        };
        for tree in [&self.cursors, &self.pop_states] {
            for item in tree.iter() {
                let (key, _) = item?;
                if key.len() >= suffix.len() + 4 && key[..key.len() - 4].ends_with(&suffix) {
                    tree.remove(key)?;
                }
            }
        }
        Ok(())
    }

    fn topics(&self) -> Result<Vec<TopicConfig>, MetaError> {
        self.topics
            .iter()
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }

    fn put_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        cursor: &Cursor,
    ) -> Result<(), MetaError> {
        let mut key = group_prefix(group, topic);
        key.extend_from_slice(&partition.to_be_bytes());
        self.cursors.insert(key, encode(cursor))?;
        Ok(())
    }

    fn cursors(&self, group: &str, topic: &str) -> Result<Vec<(u32, Cursor)>, MetaError> {
        by_partition(&self.cursors, &group_prefix(group, topic))?
            .into_iter()
            .map(|(partition, key, value)| Ok((partition, decode(&key, &value)?)))
            .collect()
    }

    fn all_cursors(&self) -> Result<Vec<(String, String, u32, Cursor)>, MetaError> {
        self.cursors
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let cursor = decode(&key, &value)?;
                // group \0 topic \0 partition (4 bytes, big-endian)
                let bad = || MetaError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason: "not a group cursor key".into(),
                };
                let (names, partition) = key.split_at(key.len().checked_sub(4).ok_or_else(bad)?);
                let mut parts = names.split(|b| *b == 0);
                let group = parts.next().ok_or_else(bad)?;
                let topic = parts.next().ok_or_else(bad)?;
                let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
                Ok((
                    text(group)?,
                    text(topic)?,
                    u32::from_be_bytes(partition.try_into().expect("4 bytes")),
                    cursor,
                ))
            })
            .collect()
    }

    fn put_checkpoint(&self, checkpoint: &TaskCheckpoint) -> Result<(), MetaError> {
        let key = checkpoint_key(
            &checkpoint.task,
            &checkpoint.topic,
            checkpoint.partition,
            &checkpoint.origin,
        );
        self.checkpoints.insert(key, encode(checkpoint))?;
        Ok(())
    }

    fn checkpoint(
        &self,
        task: &str,
        topic: &str,
        partition: u32,
        origin: &str,
    ) -> Result<Option<TaskCheckpoint>, MetaError> {
        let key = checkpoint_key(task, topic, partition, origin);
        self.checkpoints
            .get(&key)?
            .map(|value| decode(&key, &value))
            .transpose()
    }

    fn checkpoints(&self, task: &str) -> Result<Vec<TaskCheckpoint>, MetaError> {
        self.checkpoints
            .scan_prefix(task_prefix(task))
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }

    fn task_started(&self, task: &str, now_ms: i64) -> Result<i64, MetaError> {
        let recorded = self.task_starts.compare_and_swap(
            task.as_bytes(),
            None as Option<&[u8]>,
            Some(&now_ms.to_be_bytes()[..]),
        )?;
        match recorded {
            Ok(()) => {
                self.db.flush()?;
                Ok(now_ms)
            }
            Err(existing) => {
                let bytes = existing
                    .current
                    .expect("compare_and_swap failed on a present key");
                Ok(i64::from_be_bytes(bytes.as_ref().try_into().map_err(
                    |_| MetaError::Decode {
                        key: format!("task_starts/{task}"),
                        source: serde::de::Error::custom("not 8 bytes"),
                    },
                )?))
            }
        }
    }

    fn put_task_record(&self, name: &str, record: &[u8]) -> Result<(), MetaError> {
        self.put_named(&self.task_records, name, record)
    }

    fn task_records(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        named(&self.task_records)
    }

    fn put_shared_record(
        &self,
        kind: SharedKind,
        name: &str,
        record: &[u8],
    ) -> Result<(), MetaError> {
        self.put_named(self.shared(kind), name, record)
    }

    fn shared_records(&self, kind: SharedKind) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        named(self.shared(kind))
    }

    fn put_pop_states(
        &self,
        group: &str,
        topic: &str,
        states: &[(u32, Vec<u8>)],
    ) -> Result<(), MetaError> {
        let mut batch = sled::Batch::default();
        for (partition, state) in states {
            let mut key = group_prefix(group, topic);
            key.extend_from_slice(&partition.to_be_bytes());
            batch.insert(key, state.as_slice());
        }
        self.pop_states.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn pop_states(&self, group: &str, topic: &str) -> Result<Vec<(u32, Vec<u8>)>, MetaError> {
        Ok(by_partition(&self.pop_states, &group_prefix(group, topic))?
            .into_iter()
            .map(|(partition, _, value)| (partition, value.to_vec()))
            .collect())
    }

    fn write_timers(&self, changes: &[(TimerKey, Option<Vec<u8>>)]) -> Result<(), MetaError> {
        let mut batch = sled::Batch::default();
        for (key, value) in changes {
            match value {
                Some(bytes) => batch.insert(key.as_slice(), bytes.as_slice()),
                None => batch.remove(key.as_slice()),
            }
        }
        self.timers.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn timers_from(
        &self,
        from: TimerKey,
        limit: usize,
    ) -> Result<Vec<(TimerKey, Vec<u8>)>, MetaError> {
        let mut out = Vec::new();
        for entry in self.timers.range(from.as_slice()..).take(limit) {
            let (key, value) = entry?;
            let key: TimerKey = key.as_ref().try_into().map_err(|_| MetaError::Corrupt {
                key: format!("timers/{key:?}"),
                reason: "a timer key is not 16 bytes".into(),
            })?;
            out.push((key, value.to_vec()));
        }
        Ok(out)
    }

    fn timer(&self, key: TimerKey) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(self.timers.get(key.as_slice())?.map(|v| v.to_vec()))
    }

    fn flush(&self) -> Result<(), MetaError> {
        self.db.flush()?;
        Ok(())
    }
}
