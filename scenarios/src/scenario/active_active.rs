//! `active-active`: N regions in a full mesh, a producer in each writing the same topics,
//! one two-way task among all of them. Every region must end with every record, each
//! exactly once, at the offsets its origin acknowledged.

use anyhow::Result;

use super::{Options, REGION_NAMES, Run, mesh_spec};
use crate::cluster::Cluster;
use crate::launch::Launcher;
use crate::report::Report;

pub async fn run(
    options: &Options,
    launcher: &dyn Launcher,
    on_ready: &(dyn Fn(&Cluster) + Sync),
) -> Result<(Report, Cluster)> {
    let n = options.regions_or("active-active", 3, false)?;
    let regions: Vec<&str> = REGION_NAMES[..n].to_vec();
    let spec = mesh_spec("active-active", &regions, &["orders", "payments"], 500);
    let mut run = Run::start(spec, options, launcher, on_ready).await?;
    run.event(format!("{n} regions up, every link up; producing in each"));
    let report = run.produce_and_finish(&regions).await?.report;
    Ok((report, run.into_cluster()))
}
