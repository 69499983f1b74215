//! An in-memory [`MetaStore`], for tests and embedded use.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{MetaError, MetaStore, SharedKind, TaskCheckpoint, TimerKey, TopicConfig};
use crate::cursor::Cursor;

#[derive(Default)]
pub struct MemoryMetaStore {
    topics: Mutex<BTreeMap<String, TopicConfig>>,
    cursors: Mutex<BTreeMap<(String, String, u32), Cursor>>,
    checkpoints: Mutex<BTreeMap<CheckpointKey, TaskCheckpoint>>,
    task_starts: Mutex<BTreeMap<String, i64>>,
    task_records: Mutex<BTreeMap<String, Vec<u8>>>,
    shared_records: Mutex<BTreeMap<(SharedKind, String), Vec<u8>>>,
    pop_states: Mutex<BTreeMap<(String, String, u32), Vec<u8>>>,
    timers: Mutex<BTreeMap<TimerKey, Vec<u8>>>,
}

/// `(task, topic, partition, origin)`: the key of a checkpoint.
type CheckpointKey = (String, String, u32, String);

fn checkpoint_key(task: &str, topic: &str, partition: u32, origin: &str) -> CheckpointKey {
    (
        task.to_string(),
        topic.to_string(),
        partition,
        origin.to_string(),
    )
}

impl MetaStore for MemoryMetaStore {
    fn put_topic(&self, topic: &TopicConfig) -> Result<(), MetaError> {
        self.topics
            .lock()
            .expect("lock")
            .insert(topic.name.clone(), topic.clone());
        Ok(())
    }

    fn delete_topic(&self, name: &str) -> Result<(), MetaError> {
        self.topics.lock().expect("lock").remove(name);
        self.cursors
            .lock()
            .expect("lock")
            .retain(|(_, topic, _), _| topic != name);
        self.pop_states
            .lock()
            .expect("lock")
            .retain(|(_, topic, _), _| topic != name);
        Ok(())
    }

    fn topics(&self) -> Result<Vec<TopicConfig>, MetaError> {
        Ok(self
            .topics
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .collect())
    }

    fn put_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        cursor: &Cursor,
    ) -> Result<(), MetaError> {
        let key = (group.to_string(), topic.to_string(), partition);
        self.cursors
            .lock()
            .expect("lock")
            .insert(key, cursor.clone());
        Ok(())
    }

    fn cursors(&self, group: &str, topic: &str) -> Result<Vec<(u32, Cursor)>, MetaError> {
        let cursors = self.cursors.lock().expect("lock");
        Ok(cursors
            .iter()
            .filter(|((g, t, _), _)| g == group && t == topic)
            .map(|((_, _, p), c)| (*p, c.clone()))
            .collect())
    }

    fn all_cursors(&self) -> Result<Vec<(String, String, u32, Cursor)>, MetaError> {
        let cursors = self.cursors.lock().expect("lock");
        Ok(cursors
            .iter()
            .map(|((g, t, p), c)| (g.clone(), t.clone(), *p, c.clone()))
            .collect())
    }

    fn put_checkpoint(&self, checkpoint: &TaskCheckpoint) -> Result<(), MetaError> {
        let key = checkpoint_key(
            &checkpoint.task,
            &checkpoint.topic,
            checkpoint.partition,
            &checkpoint.origin,
        );
        self.checkpoints
            .lock()
            .expect("lock")
            .insert(key, checkpoint.clone());
        Ok(())
    }

    fn checkpoints(&self, task: &str) -> Result<Vec<TaskCheckpoint>, MetaError> {
        let checkpoints = self.checkpoints.lock().expect("lock");
        Ok(checkpoints
            .values()
            .filter(|c| c.task == task)
            .cloned()
            .collect())
    }

    fn checkpoint(
        &self,
        task: &str,
        topic: &str,
        partition: u32,
        origin: &str,
    ) -> Result<Option<TaskCheckpoint>, MetaError> {
        let key = checkpoint_key(task, topic, partition, origin);
        Ok(self.checkpoints.lock().expect("lock").get(&key).cloned())
    }

    fn put_task_record(&self, name: &str, record: &[u8]) -> Result<(), MetaError> {
        put_named(&self.task_records, name, record);
        Ok(())
    }

    fn task_records(&self) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        Ok(named(&self.task_records))
    }

    fn put_shared_record(
        &self,
        kind: SharedKind,
        name: &str,
        record: &[u8],
    ) -> Result<(), MetaError> {
        self.shared_records
            .lock()
            .expect("lock")
            .insert((kind, name.to_string()), record.to_vec());
        Ok(())
    }

    fn shared_records(&self, kind: SharedKind) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        Ok(self
            .shared_records
            .lock()
            .expect("lock")
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, name), v)| (name.clone(), v.clone()))
            .collect())
    }

    fn put_pop_states(
        &self,
        group: &str,
        topic: &str,
        states: &[(u32, Vec<u8>)],
    ) -> Result<(), MetaError> {
        let mut held = self.pop_states.lock().expect("lock");
        for (partition, state) in states {
            held.insert(
                (group.to_string(), topic.to_string(), *partition),
                state.clone(),
            );
        }
        Ok(())
    }

    fn pop_states(&self, group: &str, topic: &str) -> Result<Vec<(u32, Vec<u8>)>, MetaError> {
        Ok(self
            .pop_states
            .lock()
            .expect("lock")
            .iter()
            .filter(|((g, t, _), _)| g == group && t == topic)
            .map(|((_, _, p), v)| (*p, v.clone()))
            .collect())
    }

    fn task_started(&self, task: &str, now_ms: i64) -> Result<i64, MetaError> {
        Ok(*self
            .task_starts
            .lock()
            .expect("lock")
            .entry(task.to_string())
            .or_insert(now_ms))
    }

    fn write_timers(&self, changes: &[(TimerKey, Option<Vec<u8>>)]) -> Result<(), MetaError> {
        let mut timers = self.timers.lock().expect("lock");
        for (key, value) in changes {
            match value {
                Some(bytes) => timers.insert(*key, bytes.clone()),
                None => timers.remove(key),
            };
        }
        Ok(())
    }

    fn timers_from(
        &self,
        from: TimerKey,
        limit: usize,
    ) -> Result<Vec<(TimerKey, Vec<u8>)>, MetaError> {
        Ok(self
            .timers
            .lock()
            .expect("lock")
            .range(from..)
            .take(limit)
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }

    fn timer(&self, key: TimerKey) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(self.timers.lock().expect("lock").get(&key).cloned())
    }

    fn flush(&self) -> Result<(), MetaError> {
        Ok(())
    }
}

fn put_named(map: &Mutex<BTreeMap<String, Vec<u8>>>, name: &str, value: &[u8]) {
    map.lock()
        .expect("lock")
        .insert(name.to_string(), value.to_vec());
}

fn named(map: &Mutex<BTreeMap<String, Vec<u8>>>) -> Vec<(String, Vec<u8>)> {
    map.lock()
        .expect("lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
