//! `compliance-mirror`: `eu` and `us` replicate `payments` both ways; a filtered one-way
//! task mirrors the records tagged `audit` from both into the `audit` region; a residency
//! rule keeps records with the property `pii = "true"` in `eu` only. Producers in `eu` and
//! `us` write a mix: even records are tagged `audit` (odd ones `ops`), every third record
//! carries `pii = "true"`.
//!
//! Expected: `audit` holds exactly the `audit`-tagged records without personal data;
//! `us` holds everything of `eu` except the personal data; `eu` holds everything.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use topology::{ResidencyRule, ResidencySpec, TopologySpec};

use super::{Options, Run, Spec};
use crate::cluster::{Cluster, ClusterPlan};
use crate::launch::Launcher;
use crate::report::Report;
use crate::workload::Stream;

fn audited(seq: u64) -> bool {
    seq.is_multiple_of(2)
}

fn personal(seq: u64) -> bool {
    seq.is_multiple_of(3)
}

pub async fn run(
    options: &Options,
    launcher: &dyn Launcher,
    on_ready: &(dyn Fn(&Cluster) + Sync),
) -> Result<(Report, Cluster)> {
    options.regions_or("compliance-mirror", 3, true)?;
    let mut payments = replicator::TaskSpec::new("payments", &["eu"], &["us"], "payments");
    payments.direction = replicator::Direction::TwoWay;
    let mut audit = replicator::TaskSpec::new("audit", &["eu", "us"], &["audit"], "payments");
    audit.tags = vec!["audit".into()];
    let residency = ResidencySpec {
        pass_through: Vec::new(),
        rules: vec![ResidencyRule {
            name: "eu-personal-data".into(),
            tags: Vec::new(),
            properties: BTreeMap::from([("pii".to_string(), "true".to_string())]),
            regions: vec!["eu".into()],
        }],
    };
    let spec = Spec {
        name: "compliance-mirror",
        plan: ClusterPlan {
            topology: TopologySpec::mesh(&["audit", "eu", "us"]),
            residency,
            tasks: vec![payments, audit],
            impairment: Default::default(),
            direct_links: false,
            heartbeat_ms: 500,
            node_settings: serde_json::Value::Null,
            engine: Default::default(),
            nodes_per_region: 1,
        },
        topics: vec!["payments".into()],
        labels: Arc::new(|seq| {
            let tag = if audited(seq) { "audit" } else { "ops" };
            let mut properties = BTreeMap::new();
            if personal(seq) {
                properties.insert("pii".to_string(), "true".to_string());
            }
            (Some(tag.to_string()), properties)
        }),
        expect: Arc::new(|region: &str, stream: &Stream, seq: u64| match region {
            r if r == stream.origin => true,
            "eu" => true,
            "us" => !personal(seq),
            "audit" => audited(seq) && !personal(seq),
            _ => false,
        }),
    };
    let mut run = Run::start(spec, options, launcher, on_ready).await?;
    run.event("eu, us and audit up; producing in eu and us");
    let report = run.produce_and_finish(&["eu", "us"]).await?.report;
    Ok((report, run.into_cluster()))
}
