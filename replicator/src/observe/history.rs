//! A bounded in-memory history of replication, for the console's charts: every interval,
//! one point per task and origin (the region pair origin → this region) with lag in
//! records, bytes and seconds and the throughput since the previous point, and the RPO per
//! origin. At most `capacity` points are kept (an hour at the default interval); nothing
//! is stored on disk and no external database is needed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{OriginRpo, SubLogStatus};

/// One task's replication from one origin at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairPoint {
    pub task: String,
    pub origin: String,
    pub lag_records: u64,
    pub lag_bytes: u64,
    /// The largest lag in seconds among the pair's sub-logs.
    pub lag_seconds: f64,
    pub records_per_s: f64,
    pub bytes_per_s: f64,
}

/// Everything sampled at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at_ms: i64,
    pub pairs: Vec<PairPoint>,
    pub rpo: Vec<OriginRpo>,
}

/// Applied totals per (task, origin) at the previous sample.
type Totals = BTreeMap<(String, String), (u64, u64)>;

pub struct History {
    capacity: usize,
    inner: Mutex<(VecDeque<Sample>, Totals, Option<i64>)>,
}

/// The pair points of `status` at `at_ms`, with throughput from `previous` totals taken
/// `elapsed_s` before; returns the new totals too.
pub fn points(
    status: &[SubLogStatus],
    previous: &Totals,
    elapsed_s: f64,
) -> (Vec<PairPoint>, Totals) {
    let mut pairs: BTreeMap<(String, String), PairPoint> = BTreeMap::new();
    let mut totals: Totals = BTreeMap::new();
    for s in status {
        let key = (s.task.clone(), s.origin.clone());
        let p = pairs.entry(key.clone()).or_insert_with(|| PairPoint {
            task: s.task.clone(),
            origin: s.origin.clone(),
            lag_records: 0,
            lag_bytes: 0,
            lag_seconds: 0.0,
            records_per_s: 0.0,
            bytes_per_s: 0.0,
        });
        p.lag_records += s.lag_records;
        p.lag_bytes += s.lag_bytes;
        p.lag_seconds = p.lag_seconds.max(s.lag_seconds);
        let t = totals.entry(key).or_default();
        t.0 += s.applied_records;
        t.1 += s.applied_bytes;
    }
    for (key, p) in &mut pairs {
        if let (Some(before), Some(now)) = (previous.get(key), totals.get(key))
            && elapsed_s > 0.0
        {
            p.records_per_s = now.0.saturating_sub(before.0) as f64 / elapsed_s;
            p.bytes_per_s = now.1.saturating_sub(before.1) as f64 / elapsed_s;
        }
    }
    (pairs.into_values().collect(), totals)
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History {
            capacity: capacity.max(1),
            inner: Mutex::new((VecDeque::new(), BTreeMap::new(), None)),
        }
    }

    /// Records a sample of `status` and `rpo` taken at `at_ms`.
    pub fn sample(&self, at_ms: i64, status: &[SubLogStatus], rpo: Vec<OriginRpo>) {
        let mut inner = self.inner.lock().expect("history lock");
        let (samples, totals, last) = &mut *inner;
        let elapsed_s = last.map_or(0.0, |l| (at_ms - l).max(0) as f64 / 1000.0);
        let (pairs, now) = points(status, totals, elapsed_s);
        *totals = now;
        *last = Some(at_ms);
        if samples.len() == self.capacity {
            samples.pop_front();
        }
        samples.push_back(Sample { at_ms, pairs, rpo });
    }

    /// The samples held, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.inner
            .lock()
            .expect("history lock")
            .0
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub_log(task: &str, origin: &str, partition: u32, lag: u64, applied: u64) -> SubLogStatus {
        SubLogStatus {
            task: task.into(),
            topic: "orders".into(),
            partition,
            origin: origin.into(),
            source: Some(origin.into()),
            link_up: true,
            source_end: Some(applied + lag),
            local_end: applied,
            lag_records: lag,
            lag_bytes: lag * 100,
            lag_seconds: lag as f64 / 10.0,
            records_per_s: 0.0,
            applied_records: applied,
            applied_bytes: applied * 100,
            last_error: None,
            stalled: false,
        }
    }

    #[test]
    fn points_sum_a_pair_and_rate_it_since_the_last_sample() {
        let history = History::new(2);
        history.sample(
            0,
            &[sub_log("t", "eu", 0, 5, 100), sub_log("t", "eu", 1, 7, 50)],
            Vec::new(),
        );
        history.sample(
            2_000,
            &[
                sub_log("t", "eu", 0, 0, 300),
                sub_log("t", "eu", 1, 2, 150),
                sub_log("t", "us", 0, 1, 10),
            ],
            Vec::new(),
        );
        let samples = history.samples();
        let first = &samples[0].pairs[0];
        assert_eq!(
            (first.lag_records, first.lag_bytes, first.records_per_s),
            (12, 1200, 0.0)
        );
        assert_eq!(first.lag_seconds, 0.7, "the largest");
        let eu = &samples[1].pairs[0];
        assert_eq!((eu.origin.as_str(), eu.lag_records), ("eu", 2));
        assert_eq!(eu.records_per_s, 150.0, "300 more records in 2 s");
        assert_eq!(eu.bytes_per_s, 15_000.0);
        assert_eq!(
            samples[1].pairs[1].records_per_s, 0.0,
            "a new pair has no rate yet"
        );
        history.sample(4_000, &[], Vec::new());
        let kept: Vec<i64> = history.samples().iter().map(|s| s.at_ms).collect();
        assert_eq!(kept, [2_000, 4_000], "bounded: the oldest goes");
    }
}
