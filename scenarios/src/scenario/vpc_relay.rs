//! `vpc-relay`: `edge` sits in a private network: it has no address anyone can dial and
//! opens its only link, a VPC link, to `hub`; `hub` has a public link to `core`. A two-way
//! task between `core` and `edge` must flow through `hub`, which is a pass-through relay:
//! it forwards without writing the relayed records to its disk. Producers in `core` and
//! `edge`.
//!
//! Expected: `core` and `edge` hold each other's records exactly; `hub` holds none.

use std::sync::Arc;

use anyhow::Result;
use topology::{LinkKind, LinkSpec, RegionSpec, ResidencySpec, TopologySpec};

use super::{Options, Run, Spec};
use crate::cluster::{Cluster, ClusterPlan};
use crate::launch::Launcher;
use crate::report::Report;
use crate::workload::Stream;

pub async fn run(
    options: &Options,
    launcher: &dyn Launcher,
    on_ready: &(dyn Fn(&Cluster) + Sync),
) -> Result<(Report, Cluster)> {
    options.regions_or("vpc-relay", 3, true)?;
    let region = |name: &str| RegionSpec {
        name: name.to_string(),
        address: None,
        other_addresses: Vec::new(),
    };
    let mut vpc = LinkSpec::new("hub", "edge", 10);
    vpc.kind = LinkKind::Vpc;
    vpc.dial = Some("edge".into());
    let topology = TopologySpec {
        regions: vec![region("core"), region("hub"), region("edge")],
        links: vec![LinkSpec::new("core", "hub", 10), vpc],
    };
    let mut task = replicator::TaskSpec::new("telemetry", &["core"], &["edge"], "telemetry");
    task.direction = replicator::Direction::TwoWay;
    let spec = Spec {
        name: "vpc-relay",
        plan: ClusterPlan {
            topology,
            residency: ResidencySpec {
                pass_through: vec!["hub".into()],
                rules: Vec::new(),
            },
            tasks: vec![task],
            impairment: Default::default(),
            direct_links: false,
            heartbeat_ms: 500,
            node_settings: serde_json::Value::Null,
            engine: Default::default(),
            nodes_per_region: 1,
        },
        topics: vec!["telemetry".into()],
        labels: crate::workload::unlabelled(),
        expect: Arc::new(|region: &str, _: &Stream, _| region != "hub"),
    };
    let mut run = Run::start(spec, options, launcher, on_ready).await?;
    run.event("core, hub and edge up (edge dialled out to hub); producing in core and edge");
    let report = run.produce_and_finish(&["core", "edge"]).await?.report;
    Ok((report, run.into_cluster()))
}
