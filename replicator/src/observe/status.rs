//! Per task and sub-log replication status: source end (from advertisements), local end,
//! lag in records, bytes and seconds, throughput, last error.
//!
//! Lag in seconds is the time since this region last knew it held everything the source
//! held: while a link is down it keeps growing (never 0), because nothing is known to be
//! caught up. It bounds the age of the oldest record not yet applied from above.
//!
//! A sub-log is *stalled* when it lags and nothing was applied to it for the board's
//! `stall_after` (its source lacks the records, its link is down, every source refused):
//! `last_error` says why, and the caller counts stalled sub-logs of running tasks in
//! `georouter_replication_stalled_sub_logs`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubLogKey {
    pub topic: String,
    pub partition: u32,
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubLogStatus {
    pub task: String,
    pub topic: String,
    pub partition: u32,
    pub origin: String,
    /// The region this sub-log is pulled from now.
    pub source: Option<String>,
    pub link_up: bool,
    pub source_end: Option<u64>,
    pub local_end: u64,
    pub lag_records: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub records_per_s: f64,
    pub applied_records: u64,
    pub applied_bytes: u64,
    pub last_error: Option<String>,
    /// Lags, and nothing was applied for a while (see the module doc).
    pub stalled: bool,
}

struct Entry {
    source: Option<String>,
    source_end: Option<u64>,
    /// Source bytes per offset held, to turn lag in records into bytes.
    bytes_per_offset: f64,
    local_end: u64,
    applied_records: u64,
    applied_bytes: u64,
    caught_up_at: Instant,
    /// When records were last applied or the sub-log was last caught up.
    progress_at: Instant,
    last_error: Option<String>,
    window_start: Instant,
    window_records: u64,
    records_per_s: f64,
    saved_checkpoint: Option<u64>,
}

impl Entry {
    fn new() -> Self {
        let now = Instant::now();
        Entry {
            source: None,
            source_end: None,
            bytes_per_offset: 0.0,
            local_end: 0,
            applied_records: 0,
            applied_bytes: 0,
            caught_up_at: now,
            progress_at: now,
            last_error: None,
            window_start: now,
            window_records: 0,
            records_per_s: 0.0,
            saved_checkpoint: None,
        }
    }

    fn note_caught_up(&mut self) {
        if self.source_end.is_some_and(|end| self.local_end >= end) {
            self.caught_up_at = Instant::now();
            self.progress_at = self.caught_up_at;
        }
    }
}

const RATE_WINDOW: Duration = Duration::from_secs(1);

pub struct StatusBoard {
    entries: Mutex<BTreeMap<(String, SubLogKey), Entry>>,
    /// How long a lagging sub-log may apply nothing before it counts as stalled.
    stall_after: Duration,
}

impl StatusBoard {
    pub fn new(stall_after: Duration) -> Self {
        StatusBoard {
            entries: Mutex::default(),
            stall_after,
        }
    }

    fn with<T>(&self, task: &str, key: &SubLogKey, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut entries = self.entries.lock().expect("status lock");
        let entry = entries
            .entry((task.to_string(), key.clone()))
            .or_insert_with(Entry::new);
        f(entry)
    }

    /// A sub-log known from a saved checkpoint (after a restart): it shows, with its lag
    /// growing, before any link is up.
    pub fn restored(&self, task: &str, key: &SubLogKey, local_end: u64) {
        self.with(task, key, |e| {
            e.local_end = local_end;
            e.saved_checkpoint = Some(local_end);
        });
    }

    /// A source advertised what it holds of a sub-log.
    pub fn advertised(
        &self,
        task: &str,
        key: &SubLogKey,
        source: &str,
        start: u64,
        end: u64,
        bytes: u64,
    ) {
        self.with(task, key, |e| {
            e.source_end = Some(e.source_end.map_or(end, |old| old.max(end)));
            if end > start {
                e.bytes_per_offset = bytes as f64 / (end - start) as f64;
            }
            if e.source.is_none() {
                e.source = Some(source.to_string());
            }
            e.note_caught_up();
        });
    }

    /// The sub-log is now pulled from `source`; `local_end` is what is held.
    pub fn pulling(&self, task: &str, key: &SubLogKey, source: &str, local_end: u64) {
        self.with(task, key, |e| {
            e.source = Some(source.to_string());
            e.local_end = local_end;
        });
    }

    /// The sub-log was replaced by a newer incarnation: its end starts again.
    pub fn restarted(&self, task: &str, key: &SubLogKey) {
        self.with(task, key, |e| {
            e.local_end = 0;
            e.saved_checkpoint = None;
        });
    }

    pub fn applied(&self, task: &str, key: &SubLogKey, end: u64, records: u64, bytes: u64) {
        self.with(task, key, |e| {
            if end > e.local_end {
                e.progress_at = Instant::now();
            }
            e.local_end = e.local_end.max(end);
            e.applied_records += records;
            e.applied_bytes += bytes;
            e.window_records += records;
            let elapsed = e.window_start.elapsed();
            if elapsed >= RATE_WINDOW {
                e.records_per_s = e.window_records as f64 / elapsed.as_secs_f64();
                e.window_start = Instant::now();
                e.window_records = 0;
            }
            e.last_error = None;
            e.note_caught_up();
        });
    }

    /// Records an error; returns whether it differs from the last one (worth logging).
    pub fn error(&self, task: &str, key: &SubLogKey, error: String) -> bool {
        self.with(task, key, |e| {
            let changed = e.last_error.as_deref() != Some(error.as_str());
            e.last_error = Some(error);
            changed
        })
    }

    /// Every entry, with lag computed now. `link_up` says whether a region's link is up.
    pub fn snapshot(&self, link_up: impl Fn(&str) -> bool) -> Vec<SubLogStatus> {
        let entries = self.entries.lock().expect("status lock");
        entries
            .iter()
            .map(|((task, key), e)| {
                let up = e.source.as_deref().is_some_and(&link_up);
                let lag_records = e
                    .source_end
                    .map_or(0, |end| end.saturating_sub(e.local_end));
                let lag_seconds = if up && lag_records == 0 && e.source_end.is_some() {
                    0.0
                } else {
                    e.caught_up_at.elapsed().as_secs_f64()
                };
                let records_per_s = if e.window_start.elapsed() > 2 * RATE_WINDOW {
                    0.0
                } else {
                    e.records_per_s
                };
                SubLogStatus {
                    task: task.clone(),
                    topic: key.topic.clone(),
                    partition: key.partition,
                    origin: key.origin.clone(),
                    source: e.source.clone(),
                    link_up: up,
                    source_end: e.source_end,
                    local_end: e.local_end,
                    lag_records,
                    lag_bytes: (lag_records as f64 * e.bytes_per_offset) as u64,
                    lag_seconds,
                    records_per_s,
                    applied_records: e.applied_records,
                    applied_bytes: e.applied_bytes,
                    last_error: e.last_error.clone(),
                    stalled: lag_records > 0 && e.progress_at.elapsed() >= self.stall_after,
                }
            })
            .collect()
    }

    /// Drops the entries `keep` rejects (a deleted task's, a deleted topic's) and returns
    /// their `(task, key)`.
    pub fn retain(
        &self,
        mut keep: impl FnMut(&str, &SubLogKey) -> bool,
    ) -> Vec<(String, SubLogKey)> {
        let mut entries = self.entries.lock().expect("status lock");
        let mut removed = Vec::new();
        entries.retain(|(task, key), _| {
            let kept = keep(task, key);
            if !kept {
                removed.push((task.clone(), key.clone()));
            }
            kept
        });
        removed
    }

    /// Entries whose local end moved since the last call: `(task, key, local_end)`.
    pub fn checkpoints_to_save(&self) -> Vec<(String, SubLogKey, u64)> {
        let mut entries = self.entries.lock().expect("status lock");
        entries
            .iter_mut()
            .filter(|(_, e)| e.local_end > 0 && e.saved_checkpoint != Some(e.local_end))
            .map(|((task, key), e)| {
                e.saved_checkpoint = Some(e.local_end);
                (task.clone(), key.clone(), e.local_end)
            })
            .collect()
    }
}
