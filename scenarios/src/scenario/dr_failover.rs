//! `dr-failover`: a primary (`east`) and a standby (`west`) with a two-way task. A producer
//! writes in the primary and a consumer reads there, committing its vector cursor as it
//! goes. Half-way, the primary is killed (its links cut, then SIGKILL, or its runtime
//! dropped in-process). The consumer resumes in the standby from its cursor — a vector
//! cursor names exact positions in each origin's sub-log, so it means the same in every
//! region — and a producer carries on writing in the standby.
//!
//! The consumer keeps the cursor of the last response it processed together with what it
//! processed (as an exactly-once sink does) and also commits it to its group in the
//! primary, best effort. Until consumer-group cursors are synchronised between regions,
//! the committed group cursor is not readable in the standby, so the consumer resumes from
//! the cursor it kept.
//!
//! Reported: the RPO (acknowledged records that had not reached the standby), records lost
//! beyond it (holes), records the consumer got twice, and records the standby holds that the
//! consumer never got.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use client::pb;
use tokio_util::sync::CancellationToken;
use topology::{ResidencySpec, TopologySpec};

use super::{Options, Run, Spec, join_producers};
use crate::cluster::{Cluster, ClusterPlan};
use crate::launch::Launcher;
use crate::report::{ConsumerReport, Report};
use crate::workload::{Stream, header};

const PRIMARY: &str = "east";
const STANDBY: &str = "west";
const TOPIC: &str = "orders";
const GROUP: &str = "billing";

pub async fn run(
    options: &Options,
    launcher: &dyn Launcher,
    on_ready: &(dyn Fn(&Cluster) + Sync),
) -> Result<(Report, Cluster)> {
    options.regions_or("dr-failover", 2, true)?;
    let mut task = replicator::TaskSpec::new("dr", &[PRIMARY], &[STANDBY], TOPIC);
    task.direction = replicator::Direction::TwoWay;
    let spec = Spec {
        name: "dr-failover",
        plan: ClusterPlan {
            topology: TopologySpec::mesh(&[PRIMARY, STANDBY]),
            residency: ResidencySpec::default(),
            tasks: vec![task],
            impairment: Default::default(),
            heartbeat_ms: 300,
        },
        topics: vec![TOPIC.into()],
        labels: crate::workload::unlabelled(),
        expect: crate::verify::everywhere(),
    };
    let mut run = Run::start(spec, options, launcher, on_ready).await?;
    let consumer = Arc::new(Mutex::new(Consumer::default()));
    let primary_down = CancellationToken::new();
    let stop_consumer = CancellationToken::new();
    let consuming = tokio::spawn(consume(
        run.cluster.region(PRIMARY).client.clone(),
        run.cluster.region(STANDBY).client.clone(),
        consumer.clone(),
        primary_down.clone(),
        stop_consumer.clone(),
    ));
    run.event(format!(
        "{PRIMARY} (primary) and {STANDBY} (standby) up; producing and consuming in {PRIMARY}"
    ));
    let cancel = CancellationToken::new();
    let mut handles = vec![run.produce(PRIMARY, run.load(options.records), cancel.clone())];

    run.wait_progress(&[PRIMARY], options.records, 0.5).await;
    // The failure strikes while replication flows, not before its first record.
    let flowing =
        std::collections::BTreeMap::from([((PRIMARY.to_string(), STANDBY.to_string()), 1)]);
    run.wait_received(&flowing, Duration::from_secs(60)).await;
    run.kill(PRIMARY).await?;
    primary_down.cancel();
    let acked_before = run.produced(PRIMARY);
    run.event(format!(
        "failover: the consumer moves to {STANDBY}, a producer starts there ({acked_before} records were acknowledged in {PRIMARY})"
    ));
    handles.push(run.produce(STANDBY, run.load(options.records / 2), cancel.clone()));
    let acked = join_producers(handles).await?;
    let produce_s = run.started.elapsed().as_secs_f64();
    run.event("producers done");
    let settled = run.finish(acked, produce_s).await?;

    // The consumer must end with everything the standby holds.
    let standby = settled.held.get(STANDBY).cloned().unwrap_or_default();
    let held_total: usize = standby.values().map(Vec::len).sum();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while consumer
        .lock()
        .expect("consumer")
        .distinct_in_standby(&standby)
        < held_total
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_consumer.cancel();
    let _ = consuming.await;
    let c = consumer.lock().expect("consumer");
    let never_delivered = (held_total - c.distinct_in_standby(&standby)) as u64;
    let mut report = settled.report;
    report.invariants.duplicated += c.twice;
    report.invariants.lost += never_delivered;
    report.passed &= c.twice == 0 && never_delivered == 0;
    report.rpo_records = Some(settled.verdict.rpo_records);
    report.consumer = Some(ConsumerReport {
        before_failover: c.before,
        after_failover: c.after,
        delivered_twice: c.twice,
        never_delivered,
        resumed_in: STANDBY.into(),
    });
    drop(c);
    Ok((report, run.into_cluster()))
}

#[derive(Default)]
struct Consumer {
    delivered: HashMap<Stream, HashSet<u64>>,
    twice: u64,
    before: u64,
    after: u64,
    /// The position after the last response processed, per partition.
    position: BTreeMap<u32, pb::Cursor>,
}

impl Consumer {
    fn take(&mut self, response: &pb::FetchResponse, in_standby: bool) {
        for fetched in &response.records {
            let Some((seq, _)) = fetched.record.as_ref().and_then(|r| header(&r.body)) else {
                continue;
            };
            let stream = Stream {
                topic: TOPIC.into(),
                partition: fetched.partition,
                origin: fetched.origin.clone(),
            };
            if !self.delivered.entry(stream).or_default().insert(seq) {
                self.twice += 1;
            }
            if in_standby {
                self.after += 1;
            } else {
                self.before += 1;
            }
        }
        for pc in &response.cursors {
            self.position
                .insert(pc.partition, pc.cursor.clone().unwrap_or_default());
        }
    }

    fn cursors(&self) -> Vec<pb::PartitionCursor> {
        self.position
            .iter()
            .map(|(p, c)| pb::PartitionCursor {
                partition: *p,
                cursor: Some(c.clone()),
            })
            .collect()
    }

    /// How many of the records `standby` holds the consumer has received.
    fn distinct_in_standby(&self, standby: &crate::verify::Holdings) -> usize {
        standby
            .iter()
            .map(|(stream, held)| {
                self.delivered.get(stream).map_or(0, |seqs| {
                    held.iter().filter(|h| seqs.contains(&h.seq)).count()
                })
            })
            .sum()
    }
}

/// Reads in the primary until it fails, then in the standby from the position it kept.
async fn consume(
    primary: client::Client,
    standby: client::Client,
    state: Arc<Mutex<Consumer>>,
    primary_down: CancellationToken,
    stop: CancellationToken,
) {
    let mut in_standby = false;
    loop {
        let client = if in_standby { &standby } else { &primary };
        let request = pb::FetchRequest {
            topic: TOPIC.into(),
            start: Some(client::earliest()),
            cursors: state.lock().expect("consumer").cursors(),
            follow: true,
            ..Default::default()
        };
        let down = primary_down.clone();
        let reading = async {
            let mut stream = client.fetch(request).await?;
            while let Some(response) = stream.message().await? {
                state.lock().expect("consumer").take(&response, in_standby);
                // Best effort: a failed commit does not move the kept position.
                let _ = client.commit(GROUP, TOPIC, response.cursors).await;
            }
            anyhow::Ok(())
        };
        tokio::select! {
            _ = reading => {}
            () = down.cancelled(), if !in_standby => {}
            () = stop.cancelled() => return,
        }
        if stop.is_cancelled() {
            return;
        }
        if !in_standby && primary_down.is_cancelled() {
            in_standby = true;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
