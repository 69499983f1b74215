//! `partition-heal`: N regions (2 by default) in a full mesh with a two-way task and a
//! producer in each. When a quarter of the load is written, the first region is cut off
//! from all others; at three quarters its links heal. The report gives the backlog that
//! built up across the cut, how long after the heal replication resumed (link detection
//! and reconnect) and the regions had caught up, and the catch-up rate: the backlog's bytes
//! over the time from the resume to caught up.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Result;
use tokio_util::sync::CancellationToken;

use super::{Options, REGION_NAMES, Run, join_producers, mesh_spec};

/// How long the backlog may take to drain after the heal.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(300);
use crate::cluster::Cluster;
use crate::launch::Launcher;
use crate::report::Report;

pub async fn run(
    options: &Options,
    launcher: &dyn Launcher,
    on_ready: &(dyn Fn(&Cluster) + Sync),
) -> Result<(Report, Cluster)> {
    let n = options.regions_or("partition-heal", 2, false)?;
    let regions: Vec<&str> = REGION_NAMES[..n].to_vec();
    let spec = mesh_spec("partition-heal", &regions, &["events"], 300);
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
    tracing::debug!(region = cut_off, "cut off");
    run.event(format!("{cut_off} cut off from every other region"));
    run.wait_progress(&regions, options.records, 0.75).await;
    // What each side must receive to have caught up: everything written before the heal.
    let mut owed = BTreeMap::new();
    for origin in &regions {
        for target in &regions {
            if origin != target && (*origin == cut_off || *target == cut_off) {
                owed.insert(
                    (origin.to_string(), target.to_string()),
                    run.produced(origin),
                );
            }
        }
    }
    let at_heal: BTreeMap<(String, String), u64> = owed
        .keys()
        .map(|(o, t)| ((o.clone(), t.clone()), run.observer.received(o, t)))
        .collect();
    let backlog: u64 = owed
        .iter()
        .map(|(pair, n)| n.saturating_sub(at_heal[pair]))
        .sum();
    for link in run.cluster.links.iter().filter(|l| l.spec.joins(cut_off)) {
        link.heal();
        tracing::debug!(link = %link.name(), "healed");
    }
    run.event(format!(
        "{cut_off} healed; backlog across the cut: {backlog} records"
    ));
    let catchup = catch_up(&run, &owed, &at_heal).await;
    match catchup {
        Some(c) => run.event(format!(
            "replication resumed {:.2} s after the heal; backlog caught up {:.2} s after it",
            c.resumed.as_secs_f64(),
            c.done.as_secs_f64()
        )),
        None => run.event(format!("backlog NOT caught up within {CATCH_UP_WITHIN:?}")),
    }
    let acked = join_producers(handles).await?;
    let produce_s = run.started.elapsed().as_secs_f64();
    run.event("producers done");
    let mut report = run.finish(acked, produce_s).await?.report;
    let backlog_bytes = backlog * options.size as u64;
    report.backlog_records = Some(backlog);
    report.backlog_bytes = Some(backlog_bytes);
    report.catchup_s = catchup.map(|c| c.done.as_secs_f64());
    report.resume_s = catchup.map(|c| c.resumed.as_secs_f64());
    report.catchup_mb_per_s = catchup
        .map(|c| c.done - c.resumed)
        .filter(|d| !d.is_zero())
        .map(|d| backlog_bytes as f64 / 1e6 / d.as_secs_f64());
    report.passed &= catchup.is_some();
    Ok((report, run.into_cluster()))
}

#[derive(Clone, Copy)]
struct CatchUp {
    /// From the heal until the first backlog record arrived.
    resumed: Duration,
    /// From the heal until every pair across the cut had received what was owed.
    done: Duration,
}

/// Watches the pairs across the cut from the heal on.
async fn catch_up(
    run: &Run<'_>,
    owed: &BTreeMap<(String, String), u64>,
    at_heal: &BTreeMap<(String, String), u64>,
) -> Option<CatchUp> {
    let healed = Instant::now();
    let mut resumed = None;
    while healed.elapsed() < CATCH_UP_WITHIN {
        let received: Vec<u64> = owed
            .keys()
            .map(|(o, t)| run.observer.received(o, t))
            .collect();
        if resumed.is_none()
            && received
                .iter()
                .zip(at_heal.values())
                .any(|(now, then)| now > then)
        {
            resumed = Some(healed.elapsed());
        }
        if received.iter().zip(owed.values()).all(|(now, n)| now >= n) {
            let done = healed.elapsed();
            return Some(CatchUp {
                resumed: resumed.unwrap_or(done),
                done,
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}
