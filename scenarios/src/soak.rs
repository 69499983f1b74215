//! `georouter soak`: a long randomized run of ordinary operations across three regions,
//! checking identity and liveness at the end.
//!
//! Three regions in a mesh over the WAN emulator, one two-way task over `soak.*`, small
//! segments and a byte retention per topic so that retention fires all the time. A
//! producer per region writes to every topic. A chaos loop picks, every couple of seconds,
//! one of: delete and re-create a topic in a region (a new incarnation), cut a link for a
//! moment (traffic reroutes through the third region), or kill a region (in-process: its
//! runtime dropped; with `--processes`: SIGKILL) and start it again on its data.
//!
//! At the end the links heal, the producers stop, and every region must converge: for
//! each topic and each origin, every region holds the origin's *current* incarnation of
//! its sub-log, up to the origin's end, and where both hold an offset they hold the same
//! record. A region that never converges (a stalled sub-log) fails the run. Records of an
//! incarnation the chaos loop deleted are gone on purpose; records retention removed are a
//! front gap, reported as such.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterPlan};
use crate::launch::Launcher;
use crate::wan::Impairment;

const REGIONS: [&str; 3] = ["a", "b", "c"];
const TOPICS: [&str; 2] = ["soak.0", "soak.1"];
/// Retention per sub-log: small, so that it removes segments during the run.
const RETENTION_BYTES: u64 = 256 << 10;
const SETTLE_WITHIN: Duration = Duration::from_secs(120);

#[derive(Clone, Debug)]
pub struct SoakOptions {
    pub duration: Duration,
    pub delay: Duration,
    pub seed: u64,
    /// Seconds between chaos actions.
    pub every: Duration,
    pub quiet: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct SoakReport {
    pub seconds: f64,
    pub seed: u64,
    pub records_acknowledged: u64,
    pub produce_errors: u64,
    pub recreated: u64,
    pub cuts: u64,
    pub kills: u64,
    pub settle_seconds: f64,
    /// Sub-logs compared (topic × origin × region).
    pub sub_logs_checked: u64,
    /// Records compared between a region and the origin.
    pub records_compared: u64,
    /// Offsets at the front of a sub-log the origin's retention removed before a region
    /// pulled them (reported gaps, not loss).
    pub retention_gaps: u64,
    /// What did not hold; empty when the run passed.
    pub problems: Vec<String>,
    pub passed: bool,
}

/// Per region, topic and origin: incarnation, start, end and the records' bodies.
type Holdings = BTreeMap<(String, String, String), (u64, u64, u64, BTreeMap<u64, Vec<u8>>)>;

pub async fn run(options: &SoakOptions, launcher: &dyn Launcher) -> Result<SoakReport> {
    let mut task = replicator::TaskSpec::new("soak", &REGIONS, &REGIONS, "soak.*");
    task.direction = replicator::Direction::TwoWay;
    let plan = ClusterPlan {
        topology: topology::TopologySpec::mesh(&REGIONS),
        residency: topology::ResidencySpec::default(),
        tasks: vec![task],
        impairment: Impairment {
            delay: options.delay,
            ..Impairment::default()
        },
        direct_links: false,
        heartbeat_ms: 300,
        node_settings: serde_json::json!({
            "storage": { "segment_bytes": 64 << 10 },
            "retention": { "check_interval_ms": 500 },
        }),
        engine: Default::default(),
        nodes_per_region: 1,
    };
    let mut cluster = Cluster::start(&plan, launcher).await?;
    let mut report = SoakReport {
        seed: options.seed,
        ..SoakReport::default()
    };
    for region in &cluster.regions {
        for topic in TOPICS {
            create(&region.client, topic).await?;
        }
    }
    let started = Instant::now();
    let stop = CancellationToken::new();
    let producers: Vec<_> = cluster
        .regions
        .iter()
        .map(|r| tokio::spawn(produce(r.name.clone(), r.client.clone(), stop.clone())))
        .collect();
    let mut rng = StdRng::seed_from_u64(options.seed);
    while started.elapsed() < options.duration {
        tokio::time::sleep(options.every).await;
        let region = REGIONS[rng.random_range(0..REGIONS.len())];
        match rng.random_range(0..3) {
            0 => {
                let topic = TOPICS[rng.random_range(0..TOPICS.len())];
                let client = cluster.region(region).client.clone();
                let _ = client.delete_topic(topic).await;
                create(&client, topic).await?;
                report.recreated += 1;
                note(
                    options,
                    started,
                    &format!("{topic} deleted and created again in {region}"),
                );
            }
            1 => {
                let other = REGIONS[(REGIONS.iter().position(|r| *r == region).unwrap() + 1) % 3];
                let link = cluster.link(region, other);
                link.cut();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                link.heal();
                report.cuts += 1;
                note(
                    options,
                    started,
                    &format!("link {region}-{other} cut for 1.5 s"),
                );
            }
            _ => {
                cluster.kill(region).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                cluster.restart(region, launcher).await?;
                report.kills += 1;
                note(
                    options,
                    started,
                    &format!("{region} killed and started again"),
                );
            }
        }
    }
    stop.cancel();
    for producer in producers {
        let (acked, errors) = producer.await?;
        report.records_acknowledged += acked;
        report.produce_errors += errors;
    }
    report.seconds = started.elapsed().as_secs_f64();
    // Settle: every region holds each origin's current incarnation up to its end.
    let settling = Instant::now();
    loop {
        let holdings = read_all(&cluster).await?;
        let (problems, checked, compared, gaps) = compare(&holdings);
        if problems.is_empty() || settling.elapsed() > SETTLE_WITHIN {
            report.problems = problems;
            report.sub_logs_checked = checked;
            report.records_compared = compared;
            report.retention_gaps = gaps;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    report.settle_seconds = settling.elapsed().as_secs_f64();
    report.passed = report.problems.is_empty()
        && report.records_acknowledged > 0
        && (report.recreated + report.cuts + report.kills > 0 || options.duration < options.every);
    cluster.stop().await?;
    Ok(report)
}

fn note(options: &SoakOptions, started: Instant, what: &str) {
    if !options.quiet {
        eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    }
}

async fn create(client: &client::Client, topic: &str) -> Result<()> {
    let retention = client::pb::RetentionPolicy {
        max_bytes: RETENTION_BYTES,
        max_age_ms: 0,
    };
    match client.create_topic(topic, 1, Some(retention)).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("topic-exists") => Ok(()),
        Err(e) => bail!("creating {topic}: {e}"),
    }
}

/// Writes batches of 20 records of 512 bytes to every topic in turn until stopped;
/// returns the records acknowledged and the requests that failed (a topic being
/// re-created, the region being killed).
async fn produce(region: String, client: client::Client, stop: CancellationToken) -> (u64, u64) {
    let (mut acked, mut errors, mut seq) = (0u64, 0u64, 0u64);
    while !stop.is_cancelled() {
        for topic in TOPICS {
            let records = (0..20)
                .map(|i| client::pb::Record {
                    body: format!("{region}-{}-{:>500}", seq + i, "").into_bytes(),
                    ..Default::default()
                })
                .collect();
            seq += 20;
            match client
                .produce(topic, records, client::Partitioning::Partition(0))
                .await
            {
                Ok(ids) => acked += ids.len() as u64,
                Err(e) => {
                    errors += 1;
                    if e.code() == Some("unknown-topic") {
                        let _ = create(&client, topic).await;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    (acked, errors)
}

/// Everything every region holds.
async fn read_all(cluster: &Cluster) -> Result<Holdings> {
    let mut out = Holdings::new();
    for region in &cluster.regions {
        for topic in TOPICS {
            let described = match region.client.describe_topic(topic).await {
                Ok(d) => d,
                Err(e) if e.code() == Some("unknown-topic") => continue,
                Err(e) => return Err(e.into()),
            };
            let fetched = region
                .client
                .fetch_all(topic, client::earliest(), vec![])
                .await?;
            for p in &described.partitions {
                for s in &p.sub_logs {
                    let records = fetched
                        .records
                        .iter()
                        .filter(|r| r.origin == s.origin)
                        .map(|r| (r.offset, r.record.clone().unwrap_or_default().body))
                        .collect();
                    out.insert(
                        (region.name.clone(), topic.to_string(), s.origin.clone()),
                        (s.incarnation, s.start_offset, s.end_offset, records),
                    );
                }
            }
        }
    }
    Ok(out)
}

/// The checks; returns (problems, sub-logs checked, records compared, retention gaps).
fn compare(holdings: &Holdings) -> (Vec<String>, u64, u64, u64) {
    let mut problems = Vec::new();
    let (mut checked, mut compared, mut gaps) = (0, 0, 0);
    for topic in TOPICS {
        for origin in REGIONS {
            let Some((incarnation, start, end, records)) =
                holdings.get(&(origin.to_string(), topic.to_string(), origin.to_string()))
            else {
                continue;
            };
            for region in REGIONS.iter().filter(|r| **r != origin) {
                checked += 1;
                let key = (region.to_string(), topic.to_string(), origin.to_string());
                let Some((held_incarnation, held_start, held_end, held)) = holdings.get(&key)
                else {
                    if end > start {
                        problems.push(format!("{region} holds nothing of {topic}@{origin}"));
                    }
                    continue;
                };
                if held_incarnation != incarnation {
                    problems.push(format!(
                        "{region} holds incarnation {held_incarnation} of {topic}@{origin}, the origin {incarnation}"
                    ));
                    continue;
                }
                if held_end != end {
                    problems.push(format!(
                        "{region} holds {topic}@{origin} up to {held_end}, the origin up to {end}"
                    ));
                    continue;
                }
                gaps += held_start.saturating_sub(*start);
                for (offset, body) in held {
                    match records.get(offset) {
                        Some(theirs) if theirs == body => compared += 1,
                        Some(_) => problems.push(format!(
                            "{region} holds another record at {topic}@{origin} offset {offset}"
                        )),
                        // The origin's retention removed it since: nothing to compare.
                        None if offset < start => {}
                        None => problems.push(format!(
                            "{region} holds {topic}@{origin} offset {offset}, which the origin does not"
                        )),
                    }
                }
                let overlap = (*start).max(*held_start);
                let missing = records
                    .keys()
                    .filter(|o| **o >= overlap && !held.contains_key(o))
                    .count();
                if missing > 0 {
                    problems.push(format!(
                        "{region} lacks {missing} records of {topic}@{origin} that the origin holds"
                    ));
                }
            }
        }
    }
    (problems, checked, compared, gaps)
}
