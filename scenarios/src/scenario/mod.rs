//! The named scenarios and what they share: options, a [`Run`] (cluster, producers,
//! followers, progress line, catch-up waits, the final checks) and the report.

mod active_active;
mod compliance_mirror;
mod consumer_failover;
mod dr_failover;
mod options;
mod partition_heal;
mod vpc_relay;

pub use options::Options;
pub(crate) use options::REGION_NAMES;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterPlan};
use crate::launch::Launcher;
use crate::observe::{Observer, lag_histogram};
use crate::report::{LagMs, LinkReport, PairReport, Report, Wan};
use crate::verify::{self, Expectation, Holdings};
use crate::wan::Impairment;
use crate::workload::{self, Acked, Labels, Load, Tally};

pub const NAMES: [&str; 6] = [
    "active-active",
    "dr-failover",
    "consumer-failover",
    "compliance-mirror",
    "vpc-relay",
    "partition-heal",
];

/// How long replication may take to settle after the producers stop.
const SETTLE_WITHIN: Duration = Duration::from_secs(180);

/// Runs scenario `name`; the report says whether the invariants held.
/// `on_ready` is called once the regions serve (the demo prints the consoles there).
pub async fn run(
    name: &str,
    options: &Options,
    launcher: &dyn Launcher,
    on_ready: &(dyn Fn(&Cluster) + Sync),
) -> Result<(Report, Cluster)> {
    options.check()?;
    match name {
        "active-active" => active_active::run(options, launcher, on_ready).await,
        "dr-failover" => dr_failover::run(options, launcher, on_ready).await,
        "consumer-failover" => consumer_failover::run(options, launcher, on_ready).await,
        "compliance-mirror" => compliance_mirror::run(options, launcher, on_ready).await,
        "vpc-relay" => vpc_relay::run(options, launcher, on_ready).await,
        "partition-heal" => partition_heal::run(options, launcher, on_ready).await,
        other => bail!(
            "unknown scenario {other:?}; the scenarios are {}",
            NAMES.join(", ")
        ),
    }
}

/// A full mesh of `regions` with one two-way task over every topic: what active-active
/// and partition-heal run on.
pub(crate) fn mesh_spec(
    name: &'static str,
    regions: &[&str],
    topics: &[&str],
    heartbeat_ms: u64,
) -> Spec {
    let mut task = replicator::TaskSpec::new(name, regions, regions, "*");
    task.direction = replicator::Direction::TwoWay;
    Spec {
        name,
        plan: ClusterPlan {
            topology: topology::TopologySpec::mesh(regions),
            residency: topology::ResidencySpec::default(),
            tasks: vec![task],
            impairment: Impairment::default(),
            direct_links: false,
            heartbeat_ms,
            node_settings: serde_json::Value::Null,
            engine: Default::default(),
            nodes_per_region: 1,
        },
        topics: topics.iter().map(|t| t.to_string()).collect(),
        labels: workload::unlabelled(),
        expect: verify::everywhere(),
    }
}

/// What a scenario declares before it starts.
pub(crate) struct Spec {
    pub name: &'static str,
    pub plan: ClusterPlan,
    pub topics: Vec<String>,
    pub labels: Labels,
    pub expect: Expectation,
}

/// A scenario in progress.
pub(crate) struct Run<'a> {
    pub spec: Spec,
    pub options: &'a Options,
    pub cluster: Cluster,
    pub observer: Arc<Observer>,
    pub tallies: BTreeMap<String, Arc<Tally>>,
    pub started: Instant,
    pub events: Vec<String>,
    pub killed: Vec<String>,
    /// Producer tasks still running.
    producing: Arc<std::sync::atomic::AtomicUsize>,
    progress_stop: CancellationToken,
}

impl<'a> Run<'a> {
    /// Starts the regions, creates the topics everywhere and starts the followers.
    pub async fn start(
        spec: Spec,
        options: &'a Options,
        launcher: &dyn Launcher,
        on_ready: &(dyn Fn(&Cluster) + Sync),
    ) -> Result<Run<'a>> {
        let mut plan = spec.plan.clone();
        plan.impairment = options.impairment();
        crate::deploy::merge(&mut plan.node_settings, &options.node_settings());
        plan.engine = options.engine;
        plan.nodes_per_region = options.nodes_per_region;
        let cluster = Cluster::start(&plan, launcher).await?;
        let clients: Vec<&client::Client> = cluster.regions.iter().map(|r| &r.client).collect();
        workload::create_topics(&clients, &spec.topics).await?;
        let followed: Vec<(String, client::Client)> = cluster
            .regions
            .iter()
            .map(|r| (r.name.clone(), r.client.clone()))
            .collect();
        let observer = Observer::start(&followed, &spec.topics);
        on_ready(&cluster);
        let tallies = cluster
            .names()
            .into_iter()
            .map(|n| (n, Arc::new(Tally::default())))
            .collect();
        let mut run = Run {
            spec,
            options,
            cluster,
            observer,
            tallies,
            started: Instant::now(),
            events: Vec::new(),
            killed: Vec::new(),
            producing: Arc::default(),
            progress_stop: CancellationToken::new(),
        };
        if !options.quiet {
            run.spawn_progress();
        }
        Ok(run)
    }

    /// The load each producing region writes.
    pub fn load(&self, records: u64) -> Load {
        Load {
            records: if self.options.duration.is_some() {
                u64::MAX
            } else {
                records
            },
            size: self.options.size,
            payload: self.options.payload,
            rate: self.options.rate,
            until: self
                .options
                .duration
                .map(|d| self.started + Duration::from_secs_f64(d)),
            labels: self.spec.labels.clone(),
        }
    }

    /// Starts a producer in `region`; its acknowledged records come back when it stops.
    pub fn produce(
        &self,
        region: &str,
        load: Load,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<Vec<Acked>> {
        // Through every node of the region, spread over its streams.
        let clients = self.cluster.region(region).clients();
        let topics = self.spec.topics.clone();
        let tally = self.tallies[region].clone();
        let region = region.to_string();
        let producing = ProducerCount::enter(&self.producing);
        tokio::spawn(async move {
            let _running = producing;
            workload::produce(&clients, &region, &topics, &load, tally, cancel).await
        })
    }

    pub fn event(&mut self, text: impl Into<String>) {
        let line = format!(
            "{:>7.2} s  {}",
            self.started.elapsed().as_secs_f64(),
            text.into()
        );
        if !self.options.quiet {
            eprintln!("\r{line:<100}");
        }
        self.events.push(line);
    }

    /// Records acknowledged so far by `region`'s producers.
    pub fn produced(&self, region: &str) -> u64 {
        self.tallies[region].records.load(Ordering::Relaxed)
    }

    /// Waits until the producers of `regions` have written `fraction` of `records` each
    /// (or, with --duration, until that fraction of the time has passed), or until no
    /// producer runs any more (one that stopped early is reported by `finish`).
    pub async fn wait_progress(&self, regions: &[&str], records: u64, fraction: f64) {
        if let Some(d) = self.options.duration {
            tokio::time::sleep_until(self.started + Duration::from_secs_f64(d * fraction)).await;
            return;
        }
        let goal = (records as f64 * fraction) as u64;
        while regions.iter().any(|r| self.produced(r) < goal)
            && self.producing.load(Ordering::SeqCst) > 0
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until every target in `expected` has received at least that many records
    /// from the origin: `(origin, target) → records`. Returns the time it took, or
    /// `None` when it did not happen within `within`.
    pub async fn wait_received(
        &self,
        expected: &BTreeMap<(String, String), u64>,
        within: Duration,
    ) -> Option<Duration> {
        let each = self.wait_received_each(expected, within).await;
        each.values()
            .copied()
            .try_fold(Duration::ZERO, |all, one| Some(all.max(one?)))
    }

    /// Like [`Run::wait_received`], with the time each pair took (`None`: not within
    /// `within`).
    pub async fn wait_received_each(
        &self,
        expected: &BTreeMap<(String, String), u64>,
        within: Duration,
    ) -> BTreeMap<(String, String), Option<Duration>> {
        let start = Instant::now();
        let mut done: BTreeMap<(String, String), Option<Duration>> =
            expected.keys().map(|k| (k.clone(), None)).collect();
        loop {
            for ((o, t), n) in expected {
                let slot = done.get_mut(&(o.clone(), t.clone())).expect("pair");
                if slot.is_none() && self.observer.received(o, t) >= *n {
                    *slot = Some(start.elapsed());
                }
            }
            if done.values().all(Option::is_some) || start.elapsed() >= within {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `(origin, target) → records` each running target should end with, from what was
    /// acknowledged (the killed regions' records excepted: their tail is the RPO).
    pub fn expected_counts(&self, acked: &[Acked]) -> BTreeMap<(String, String), u64> {
        let mut expected = BTreeMap::new();
        for target in self.running() {
            for a in acked {
                if a.stream.origin == target || self.killed.contains(&a.stream.origin) {
                    continue;
                }
                let n = (0..a.offsets.len() as u64)
                    .filter(|seq| (self.spec.expect)(&target, &a.stream, *seq))
                    .count() as u64;
                *expected
                    .entry((a.stream.origin.clone(), target.clone()))
                    .or_insert(0) += n;
            }
        }
        expected
    }

    pub fn running(&self) -> Vec<String> {
        self.cluster
            .regions
            .iter()
            .filter(|r| r.running())
            .map(|r| r.name.clone())
            .collect()
    }

    /// Produces `--records` (or for `--duration`) in each of `regions` until done, then
    /// settles and checks (see [`Run::finish`]).
    pub async fn produce_and_finish(&mut self, regions: &[&str]) -> Result<Settled> {
        let load = self.load(self.options.records);
        let cancel = CancellationToken::new();
        let handles = regions
            .iter()
            .map(|r| self.produce(r, load.clone(), cancel.clone()))
            .collect();
        let acked = join_producers(handles).await?;
        let produce_s = self.started.elapsed().as_secs_f64();
        self.event("producers done");
        self.finish(acked, produce_s).await
    }

    /// Kills `region` the way a region fails: its links are cut first (nothing more leaves
    /// it from that instant), then the node ends without shutting down.
    pub async fn kill(&mut self, region: &str) -> Result<()> {
        self.cluster.isolate(region);
        self.cluster.kill(region).await?;
        self.killed.push(region.to_string());
        let how = if self.cluster.mode == "processes" {
            "SIGKILL"
        } else {
            "runtime dropped"
        };
        self.event(format!("{region} killed ({how}), its links cut"));
        Ok(())
    }

    /// Waits for replication to settle, reads every running region, checks the
    /// invariants and builds the report.
    pub async fn finish(&mut self, acked: Vec<Acked>, produce_s: f64) -> Result<Settled> {
        let expected = self.expected_counts(&acked);
        let backlog: u64 = expected
            .iter()
            .map(|((o, t), n)| n.saturating_sub(self.observer.received(o, t)))
            .sum();
        let settled_each = self.wait_received_each(&expected, SETTLE_WITHIN).await;
        let settle = settled_each
            .values()
            .copied()
            .try_fold(Duration::ZERO, |all, one| Some(all.max(one?)));
        match settle {
            Some(d) => self.event(format!(
                "replication settled {:.2} s after the producers stopped",
                d.as_secs_f64()
            )),
            None => self.event(format!(
                "replication did NOT settle within {SETTLE_WITHIN:?}; checking what is held"
            )),
        }
        self.progress_stop.cancel();
        let mut held: BTreeMap<String, Holdings> = BTreeMap::new();
        for region in self.running() {
            let holdings =
                verify::read_region(&self.cluster.region(&region).client, &self.spec.topics)
                    .await
                    .with_context(|| format!("reading what {region} holds"))?;
            held.insert(region, holdings);
        }
        self.observer.stop().await;
        let mut verdict = verify::check(&acked, &held, &self.spec.expect, &self.killed);
        // A producer that stopped early (other than in a region the scenario killed) leaves
        // the run short of what it claims to test.
        let mut producers_ok = true;
        for a in &acked {
            if let Some(why) = &a.stopped_by
                && !self.killed.contains(&a.stream.origin)
            {
                producers_ok = false;
                verdict.invariants.problems.push(format!(
                    "the producer of {}/{} in {} stopped after {} records: {why}",
                    a.stream.topic,
                    a.stream.partition,
                    a.stream.origin,
                    a.offsets.len()
                ));
            }
        }
        let backlog_bytes = backlog * self.options.size as u64;
        let pairs = self.observer.snapshot();
        let (mut all, mut first, mut steady) = (lag_histogram(), lag_histogram(), lag_histogram());
        let mut pair_reports = Vec::new();
        for ((origin, target), stats) in &pairs {
            if origin == target {
                continue;
            }
            let _ = all.add(&stats.lag_us);
            let _ = first.add(&stats.first_lag_us);
            let _ = steady.add(&stats.steady_lag_us);
            pair_reports.push(PairReport {
                origin: origin.clone(),
                target: target.clone(),
                catchup_s: settled_each
                    .get(&(origin.clone(), target.clone()))
                    .copied()
                    .flatten()
                    .map(|d| d.as_secs_f64()),
                records: stats.records,
                mb_per_s: stats.mb_per_s(),
                lag_ms: LagMs::of(&stats.lag_us),
            });
        }
        let links = self
            .cluster
            .links
            .iter()
            .map(|l| {
                let c = l.counts();
                LinkReport {
                    link: l.name(),
                    bytes: c.bytes,
                    datagrams: c.forwarded,
                    lost: c.lost,
                    dropped_while_cut: c.cut,
                    overflow: c.overflow,
                }
            })
            .collect();
        let records_produced: u64 = acked.iter().map(|a| a.offsets.len() as u64).sum();
        let bytes_produced: u64 = acked.iter().map(|a| a.bytes).sum();
        let invariants = verdict.invariants.clone();
        let report = Report {
            scenario: self.spec.name.to_string(),
            mode: self.cluster.mode.to_string(),
            storage: storage(self.options),
            regions: self.cluster.regions.len(),
            region_names: self.cluster.names(),
            records_produced,
            bytes_produced,
            record_bytes: self.options.size,
            produce_s,
            wan: Wan {
                delay_ms: self.options.delay_ms,
                jitter_ms: self.options.jitter_ms,
                loss_pct: self.options.loss,
                bandwidth_mbps: self.options.bandwidth_mbps,
            },
            passed: invariants.hold() && settle.is_some() && producers_ok,
            invariants,
            lag_ms: LagMs::of(&all),
            first_lag_ms: LagMs::of(&first),
            steady_lag_ms: LagMs::of(&steady),
            pairs: pair_reports,
            links,
            wan_bytes: self.cluster.wan_counts().bytes,
            rpo_records: (!self.killed.is_empty()).then_some(verdict.rpo_records),
            rpo_reported_records: None,
            rpo_reported_held: None,
            backlog_records: Some(backlog),
            backlog_bytes: Some(backlog_bytes),
            catchup_s: settle.map(|d| d.as_secs_f64()),
            resume_s: None,
            catchup_mb_per_s: settle
                .filter(|d| !d.is_zero() && backlog > 0)
                .map(|d| backlog_bytes as f64 / 1e6 / d.as_secs_f64()),
            consumer: None,
            events: std::mem::take(&mut self.events),
        };
        if self.options.keep
            && let Some(dir) = self.cluster.keep_dir()
        {
            eprintln!("data kept in {}", dir.display());
        }
        // Followers that ended because their region was killed are expected.
        for ended in self.observer.ended() {
            let region = ended.split('/').next().unwrap_or_default();
            if !self.killed.iter().any(|k| k == region) {
                tracing::warn!(event = "follower_ended_early", follower = %ended, "a follower ended early");
            }
        }
        Ok(Settled {
            report,
            verdict,
            held,
        })
    }

    pub fn into_cluster(self) -> Cluster {
        self.progress_stop.cancel();
        self.cluster
    }

    fn spawn_progress(&mut self) {
        let tallies = self.tallies.clone();
        let observer = self.observer.clone();
        let stop = self.progress_stop.clone();
        let started = self.started;
        let tty = std::io::stderr().is_terminal();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                let produced: u64 = tallies
                    .values()
                    .map(|t| t.records.load(Ordering::Relaxed))
                    .sum();
                let pairs = observer.snapshot();
                let received: u64 = pairs
                    .iter()
                    .filter(|((o, t), _)| o != t)
                    .map(|(_, s)| s.records)
                    .sum();
                let line = format!(
                    "{:>7.1} s  produced {produced} · replicated {received} record copies",
                    started.elapsed().as_secs_f64()
                );
                if tty {
                    eprint!("\r{line:<100}");
                } else {
                    eprintln!("{line}");
                }
            }
            if tty {
                eprint!("\r{:<100}\r", "");
            }
        });
    }
}

/// Counts a running producer until dropped (also when its task panics).
struct ProducerCount(Arc<std::sync::atomic::AtomicUsize>);

impl ProducerCount {
    fn enter(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        ProducerCount(count.clone())
    }
}

impl Drop for ProducerCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What [`Run::finish`] found.
pub(crate) struct Settled {
    pub report: Report,
    pub verdict: verify::Verdict,
    /// What each running region holds.
    pub held: BTreeMap<String, Holdings>,
}

/// Joins producer tasks and flattens what they acknowledged.
pub(crate) async fn join_producers(
    handles: Vec<tokio::task::JoinHandle<Vec<Acked>>>,
) -> Result<Vec<Acked>> {
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.context("a producer task failed")?);
    }
    Ok(acked)
}

/// The report's `storage`: the engine, and the nodes per region when more than one.
fn storage(options: &Options) -> String {
    let engine = match options.engine {
        crate::cluster::Engine::Embedded => "embedded",
        crate::cluster::Engine::JetStream => "jetstream",
    };
    match options.nodes_per_region {
        0 | 1 => engine.to_string(),
        n => format!("{engine}, {n} nodes per region"),
    }
}
