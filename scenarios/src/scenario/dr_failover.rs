//! `dr-failover`: a primary (`east`) and a standby (`west`) joined by a DR task whose
//! consumer group `billing` syncs. A producer writes in the primary; a consumer of the
//! group reads there and commits after each response it processed. Half-way, the primary
//! is killed (its links cut, then SIGKILL, or its runtime dropped in-process). Then, as an
//! operator would: a forced failover promotes the standby (its report gives the RPO per
//! origin), the consumer restarts in the standby from the group's cursor there (synced
//! from the primary's commits), and a producer carries on writing in the standby.
//!
//! Reported: the RPO (acknowledged records that had not reached the standby) beside the
//! failover's own figure (a lower bound: the standby knows the primary's ends from its
//! last advertisement, so writes of the last moment before the failure are not counted),
//! records lost beyond it, records the consumer got
//! twice (processed after its last commit that reached the standby before the kill) and
//! records the standby holds that the consumer never got (counted as lost).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use client::pb;
use replicator::FailoverMode;
use tokio_util::sync::CancellationToken;
use topology::{ResidencySpec, TopologySpec};

use super::{Options, Run, Spec, join_producers};
use crate::cluster::{Cluster, ClusterPlan};
use crate::launch::Launcher;
use crate::report::{ConsumerReport, Report};
use crate::workload::{Stream, header};

const PRIMARY: &str = "east";
const STANDBY: &str = "west";
pub(super) const TOPIC: &str = "orders";
pub(super) const GROUP: &str = "billing";

/// How the scenario's consumer reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Consumers {
    /// georouter's own API: fetch, and commit the group's cursor after each response.
    OwnApi,
    /// The RocketMQ access point: PoP receive and acknowledge (`consumer_failover`).
    RocketMq,
}

pub async fn run(
    options: &Options,
    launcher: &dyn Launcher,
    on_ready: &(dyn Fn(&Cluster) + Sync),
) -> Result<(Report, Cluster)> {
    run_with(options, launcher, on_ready, Consumers::OwnApi).await
}

pub(super) async fn run_with(
    options: &Options,
    launcher: &dyn Launcher,
    on_ready: &(dyn Fn(&Cluster) + Sync),
    consumers: Consumers,
) -> Result<(Report, Cluster)> {
    let name = match consumers {
        Consumers::OwnApi => "dr-failover",
        Consumers::RocketMq => "consumer-failover",
    };
    options.regions_or(name, 2, true)?;
    let mut task = replicator::TaskSpec::new("dr", &[PRIMARY], &[STANDBY], TOPIC);
    task.dr = Some(replicator::Dr {
        primary: PRIMARY.into(),
        epoch: 0,
        promoting: None,
    });
    task.groups = Some(GROUP.into());
    let spec = Spec {
        name,
        plan: ClusterPlan {
            topology: TopologySpec::mesh(&[PRIMARY, STANDBY]),
            residency: ResidencySpec::default(),
            tasks: vec![task],
            impairment: Default::default(),
            direct_links: false,
            heartbeat_ms: 300,
            node_settings: serde_json::Value::Null,
            engine: Default::default(),
            nodes_per_region: 1,
        },
        topics: vec![TOPIC.into()],
        labels: crate::workload::unlabelled(),
        expect: crate::verify::everywhere(),
    };
    let mut run = Run::start(spec, options, launcher, on_ready).await?;
    let consumer = Arc::new(Mutex::new(Consumer::default()));
    let primary_down = CancellationToken::new();
    let stop_consumer = CancellationToken::new();
    let consuming = match consumers {
        Consumers::OwnApi => tokio::spawn(consume(
            run.cluster.region(PRIMARY).client.clone(),
            run.cluster.region(STANDBY).client.clone(),
            consumer.clone(),
            primary_down.clone(),
            stop_consumer.clone(),
        )),
        Consumers::RocketMq => tokio::spawn(super::consumer_failover::consume(
            [
                run.cluster.region(PRIMARY).bound.rocketmq,
                run.cluster.region(STANDBY).bound.rocketmq,
            ],
            consumer.clone(),
            primary_down.clone(),
            stop_consumer.clone(),
        )),
    };
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
    consumer.lock().expect("consumer").killed_at = Some(std::time::Instant::now());
    let failover = run
        .cluster
        .region(STANDBY)
        .console(&run.cluster.token)
        .failover("dr", FailoverMode::Forced, Duration::from_secs(30))
        .await?;
    let of_primary = || failover.rpo.iter().filter(|o| o.origin == PRIMARY);
    let reported_rpo: u64 = of_primary().map(|o| o.records).sum();
    let held_then: u64 = of_primary().map(|o| o.held).sum();
    primary_down.cancel();
    let acked_before = run.produced(PRIMARY);
    run.event(format!(
        "forced failover: {STANDBY} is the primary (epoch {}), reporting {reported_rpo} records of {PRIMARY} missing; the consumer restarts there from the group's cursor, a producer starts there ({acked_before} records were acknowledged in {PRIMARY})",
        failover.epoch
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
    report.invariants.lost += never_delivered;
    report.passed &= never_delivered == 0;
    report.rpo_records = Some(settled.verdict.rpo_records);
    report.rpo_reported_records = Some(reported_rpo);
    report.rpo_reported_held = Some(held_then);
    report.consumer = Some(ConsumerReport {
        before_failover: c.before,
        after_failover: c.after,
        delivered_twice: c.twice,
        never_delivered,
        resumed_in: STANDBY.into(),
        takeover_ms: c
            .killed_at
            .zip(c.first_in_standby)
            .map(|(k, f)| f.saturating_duration_since(k).as_secs_f64() * 1000.0),
    });
    drop(c);
    Ok((report, run.into_cluster()))
}

#[derive(Default)]
pub(super) struct Consumer {
    delivered: HashMap<Stream, HashSet<u64>>,
    twice: u64,
    before: u64,
    after: u64,
    killed_at: Option<std::time::Instant>,
    first_in_standby: Option<std::time::Instant>,
}

impl Consumer {
    fn take(&mut self, response: &pb::FetchResponse, in_standby: bool) {
        for fetched in &response.records {
            let Some((seq, _)) = fetched.record.as_ref().and_then(|r| header(&r.body)) else {
                continue;
            };
            self.take_one(fetched.partition, &fetched.origin, seq, in_standby);
        }
    }

    /// The record `seq` of `origin`'s stream in `partition` was delivered.
    pub(super) fn take_one(&mut self, partition: u32, origin: &str, seq: u64, in_standby: bool) {
        let stream = Stream {
            topic: TOPIC.into(),
            partition,
            origin: origin.to_string(),
        };
        if !self.delivered.entry(stream).or_default().insert(seq) {
            self.twice += 1;
        }
        if in_standby {
            self.after += 1;
            self.first_in_standby
                .get_or_insert_with(std::time::Instant::now);
        } else {
            self.before += 1;
        }
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

/// Reads in the primary, committing after each response, until it fails; then in the
/// standby from the group's cursor there.
async fn consume(
    primary: client::Client,
    standby: client::Client,
    state: Arc<Mutex<Consumer>>,
    primary_down: CancellationToken,
    stop: CancellationToken,
) {
    let mut in_standby = false;
    while !stop.is_cancelled() {
        in_standby |= primary_down.is_cancelled();
        let client = if in_standby { &standby } else { &primary };
        // Where the group stands in this region (nothing committed: from the start).
        let Ok(cursors) = client.group_cursors(GROUP, TOPIC).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let request = pb::FetchRequest {
            topic: TOPIC.into(),
            start: Some(client::earliest()),
            cursors,
            follow: true,
            ..Default::default()
        };
        let down = primary_down.clone();
        let reading = async {
            let mut stream = client.fetch(request).await?;
            while let Some(response) = stream.message().await? {
                state.lock().expect("consumer").take(&response, in_standby);
                client.commit(GROUP, TOPIC, response.cursors).await?;
            }
            anyhow::Ok(())
        };
        tokio::select! {
            _ = reading => {}
            () = down.cancelled(), if !in_standby => continue,
            () = stop.cancelled() => return,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
