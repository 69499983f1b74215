//! Followers: one live fetch per region and topic, from the start, that count what arrives
//! from each origin and measure end-to-end lag (arrival time at the follower minus the
//! produce time carried in the record) into an HDR histogram per (origin, target) pair,
//! kept apart for the records produced in the first second of the run (what a new
//! sub-log's discovery, connection start-up and congestion window cost) and for the rest
//! (the steady state).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::workload::{header, now_micros};

/// Records produced within this long of the followers' start count as first records.
pub const FIRST_RECORDS_WINDOW_US: u64 = 1_000_000;

/// What one target region received from one origin.
#[derive(Clone)]
pub struct PairStats {
    pub records: u64,
    pub bytes: u64,
    pub first_at: Option<Instant>,
    pub last_at: Option<Instant>,
    /// End-to-end lag in microseconds.
    pub lag_us: Histogram<u64>,
    /// The same, of the records produced in the first second only.
    pub first_lag_us: Histogram<u64>,
    /// The same, of the records produced after the first second.
    pub steady_lag_us: Histogram<u64>,
}

impl PairStats {
    fn new() -> Self {
        PairStats {
            records: 0,
            bytes: 0,
            first_at: None,
            last_at: None,
            lag_us: lag_histogram(),
            first_lag_us: lag_histogram(),
            steady_lag_us: lag_histogram(),
        }
    }

    /// Received bytes per second between the first and the last arrival.
    pub fn mb_per_s(&self) -> f64 {
        match (self.first_at, self.last_at) {
            (Some(a), Some(b)) if b > a => self.bytes as f64 / 1e6 / (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Microseconds from 1 µs to an hour, 3 significant digits.
pub fn lag_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// `(origin, target)` → stats.
pub type Pairs = BTreeMap<(String, String), PairStats>;

pub struct Observer {
    pairs: Mutex<Pairs>,
    /// Wall-clock microseconds when the followers started.
    started_us: u64,
    /// Followers that ended with an error (a region that was killed, for one).
    ended: Mutex<Vec<String>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Observer {
    /// Follows every topic of `topics` in each `(region, client)`.
    pub fn start(regions: &[(String, client::Client)], topics: &[String]) -> Arc<Observer> {
        let observer = Arc::new(Observer {
            pairs: Mutex::new(BTreeMap::new()),
            started_us: now_micros(),
            ended: Mutex::new(Vec::new()),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        for (region, client) in regions {
            for topic in topics {
                observer.tracker.spawn(follow(
                    observer.clone(),
                    region.clone(),
                    client.clone(),
                    topic.clone(),
                ));
            }
        }
        observer
    }

    /// Records from `origin` that `target` has received so far.
    pub fn received(&self, origin: &str, target: &str) -> u64 {
        self.pairs
            .lock()
            .expect("observer lock")
            .get(&(origin.to_string(), target.to_string()))
            .map_or(0, |p| p.records)
    }

    pub fn snapshot(&self) -> Pairs {
        self.pairs.lock().expect("observer lock").clone()
    }

    pub fn ended(&self) -> Vec<String> {
        self.ended.lock().expect("observer lock").clone()
    }

    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

async fn follow(observer: Arc<Observer>, region: String, client: client::Client, topic: String) {
    let request = client::pb::FetchRequest {
        topic: topic.clone(),
        start: Some(client::earliest()),
        follow: true,
        ..Default::default()
    };
    let end = tokio::select! {
        end = receive(&observer, &region, &client, request) => end,
        () = observer.cancel.cancelled() => return,
    };
    if let Err(e) = end {
        observer
            .ended
            .lock()
            .expect("observer lock")
            .push(format!("{region}/{topic}: {e}"));
    }
}

async fn receive(
    observer: &Observer,
    region: &str,
    client: &client::Client,
    request: client::pb::FetchRequest,
) -> anyhow::Result<()> {
    let mut stream = client.fetch(request).await?;
    while let Some(response) = stream.message().await? {
        let now = Instant::now();
        let now_us = now_micros();
        let mut pairs = observer.pairs.lock().expect("observer lock");
        for fetched in &response.records {
            let Some(record) = &fetched.record else {
                continue;
            };
            let pair = pairs
                .entry((fetched.origin.clone(), region.to_string()))
                .or_insert_with(PairStats::new);
            pair.records += 1;
            pair.bytes += record.body.len() as u64;
            pair.first_at.get_or_insert(now);
            pair.last_at = Some(now);
            if fetched.origin != region
                && let Some((_, produced_at)) = header(&record.body)
            {
                let lag = now_us.saturating_sub(produced_at).max(1);
                let _ = pair.lag_us.record(lag);
                let first = produced_at < observer.started_us + FIRST_RECORDS_WINDOW_US;
                let phase = if first {
                    &mut pair.first_lag_us
                } else {
                    &mut pair.steady_lag_us
                };
                let _ = phase.record(lag);
            }
        }
    }
    Ok(())
}
