//! `active-active`: N regions in a full mesh, a producer in each writing the same topics,
//! one two-way task among all of them. Every region must end with every record, each
//! exactly once, at the offsets its origin acknowledged.

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
    let n = options.regions_or("active-active", 3, false)?;
    let regions: Vec<&str> = REGION_NAMES[..n].to_vec();
    let mut task = replicator::TaskSpec::new("active-active", &regions, &regions, "*");
    task.direction = replicator::Direction::TwoWay;
    let spec = Spec {
        name: "active-active",
        plan: ClusterPlan {
            topology: TopologySpec::mesh(&regions),
            residency: ResidencySpec::default(),
            tasks: vec![task],
            impairment: Default::default(),
            heartbeat_ms: 500,
        },
        topics: vec!["orders".into(), "payments".into()],
        labels: crate::workload::unlabelled(),
        expect: crate::verify::everywhere(),
    };
    let mut run = Run::start(spec, options, launcher, on_ready).await?;
    run.event(format!("{n} regions up, every link up; producing in each"));
    let load = run.load(options.records);
    let cancel = CancellationToken::new();
    let handles = regions
        .iter()
        .map(|r| run.produce(r, load.clone(), cancel.clone()))
        .collect();
    let acked = join_producers(handles).await?;
    let produce_s = run.started.elapsed().as_secs_f64();
    run.event("producers done");
    let report = run.finish(acked, produce_s).await?.report;
    Ok((report, run.into_cluster()))
}
