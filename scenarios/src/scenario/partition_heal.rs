//! `partition-heal`: N regions (2 by default) in a full mesh with a two-way task and a
//! producer in each. When a quarter of the load is written, the first region is cut off
//! from all others; at three quarters its links heal. The report gives the backlog that
//! built up across the cut, how long the regions took to catch up after the heal, and
//! the catch-up rate.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use tokio_util::sync::CancellationToken;
use topology::{ResidencySpec, TopologySpec};

use super::{Options, REGION_NAMES, Run, Spec, join_producers};
use crate::cluster::{Cluster, ClusterPlan};
use crate::launch::Launcher;
use crate::report::Report;

pub async fn run(
    options: &Options,
    launcher: &dyn Launcher,
    on_ready: &(dyn Fn(&Cluster) + Sync),
) -> Result<(Report, Cluster)> {
    let n = options.regions_or("partition-heal", 2, false)?;
    let regions: Vec<&str> = REGION_NAMES[..n].to_vec();
    let mut task = replicator::TaskSpec::new("mesh", &regions, &regions, "*");
    task.direction = replicator::Direction::TwoWay;
    let spec = Spec {
        name: "partition-heal",
        plan: ClusterPlan {
            topology: TopologySpec::mesh(&regions),
            residency: ResidencySpec::default(),
            tasks: vec![task],
            impairment: Default::default(),
            heartbeat_ms: 300,
        },
        topics: vec!["events".into()],
        labels: crate::workload::unlabelled(),
        expect: crate::verify::everywhere(),
    };
    let mut run = Run::start(spec, options, launcher, on_ready).await?;
    let cut_off = regions[0];
    let load = run.load(options.records);
    let cancel = CancellationToken::new();
    let handles = regions
        .iter()
        .map(|r| run.produce(r, load.clone(), cancel.clone()))
        .collect();

    run.wait_progress(&regions, options.records, 0.25).await;
    run.cluster.isolate(cut_off);
    run.event(format!("{cut_off} cut off from every other region"));
    run.wait_progress(&regions, options.records, 0.75).await;
    // What each side must receive to have caught up: everything written before the heal.
    let mut owed = BTreeMap::new();
    for origin in &regions {
        for target in &regions {
            if origin != target && (*origin == cut_off || *target == cut_off) {
                owed.insert((origin.to_string(), target.to_string()), run.produced(origin));
            }
        }
    }
    let backlog: u64 = owed
        .iter()
        .map(|((o, t), n)| n.saturating_sub(run.observer.received(o, t)))
        .sum();
    for link in run.cluster.links.iter().filter(|l| l.spec.joins(cut_off)) {
        link.wan.heal();
    }
    run.event(format!("{cut_off} healed; backlog across the cut: {backlog} records"));
    let catchup = run.wait_received(&owed, Duration::from_secs(300)).await;
    match catchup {
        Some(d) => run.event(format!("backlog caught up in {:.2} s", d.as_secs_f64())),
        None => run.event("backlog NOT caught up within 300 s"),
    }
    let acked = join_producers(handles).await?;
    let produce_s = run.started.elapsed().as_secs_f64();
    run.event("producers done");
    let mut report = run.finish(acked, produce_s).await?.report;
    let backlog_bytes = backlog * options.size as u64;
    report.backlog_records = Some(backlog);
    report.backlog_bytes = Some(backlog_bytes);
    report.catchup_s = catchup.map(|d| d.as_secs_f64());
    report.catchup_mb_per_s = catchup
        .filter(|d| !d.is_zero())
        .map(|d| backlog_bytes as f64 / 1e6 / d.as_secs_f64());
    report.passed &= catchup.is_some();
    Ok((report, run.into_cluster()))
}
