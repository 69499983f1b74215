//! Every scenario at small scale with in-process regions, on each storage engine (the
//! embedded one, and a JetStream cluster per region), and active-active and dr-failover
//! once through the CLI with each region a `georouter serve` process.

use std::process::Command;

use router::launch::InProcess;
use scenarios::cluster::Engine;
use scenarios::report::Report;
use scenarios::scenario::{Options, run};

fn small() -> Options {
    Options {
        records: 1_500,
        size: 512,
        rate: Some(3_000),
        delay_ms: 5,
        jitter_ms: 2,
        ..Options::default()
    }
}

/// [`small`] with each region's data on `engine` (on JetStream: a cluster of three
/// nats-server processes per region, started by the harness).
fn small_on(engine: Engine) -> Options {
    Options { engine, ..small() }
}

/// [`small_on`] JetStream with each region two georouter nodes on its cluster: one
/// replicates, producers write through both.
fn two_nodes_per_region() -> Options {
    Options {
        nodes_per_region: 2,
        ..small_on(Engine::JetStream)
    }
}

async fn scenario(name: &str, options: Options) -> Report {
    let (report, cluster) = run(name, &options, &InProcess, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    cluster.stop().await.expect("regions stop");
    let i = &report.invariants;
    assert!(report.passed, "{name} failed:\n{}", report.human());
    assert_eq!(
        (i.lost, i.duplicated, i.order_violations, i.unexpected),
        (0, 0, 0, 0)
    );
    assert!(i.converged);
    assert_eq!(report.scenario, name);
    report
}

/// Every region received every other region's records.
fn assert_all_pairs(report: &Report, per_origin: u64) {
    let n = report.regions;
    assert_eq!(report.pairs.len(), n * (n - 1), "{:?}", report.pairs);
    for pair in &report.pairs {
        assert_eq!(
            pair.records, per_origin,
            "{} → {}",
            pair.origin, pair.target
        );
        assert!(pair.lag_ms.p50 > 0.0 && pair.lag_ms.max >= pair.lag_ms.p99);
    }
}

async fn active_active_three_regions_converge_on(engine: Engine) {
    active_active_three_regions_converge_with(small_on(engine)).await;
}

async fn active_active_three_regions_converge_with(options: Options) {
    // Sent as stored, so that the bytes on the links count every copy (packed, the
    // scenario's filler records shrink a hundredfold).
    let options = Options {
        compression: replicator::CompressionSetting::Off,
        ..options
    };
    let report = scenario("active-active", options).await;
    assert_eq!(report.regions, 3);
    assert_eq!(report.records_produced, 3 * 1_500);
    assert_all_pairs(&report, 1_500);
    // Replication crossed the emulated links: every copy of every record at least once
    // (routes may move between links when a loaded machine delays heartbeats).
    assert_eq!(report.links.len(), 3);
    assert!(report.links.iter().all(|l| l.bytes > 0));
    assert!(report.wan_bytes >= 6 * 1_500 * 512, "{}", report.wan_bytes);
}

async fn dr_failover_resumes_the_consumer_in_the_standby_on(engine: Engine) {
    let report = scenario("dr-failover", small_on(engine)).await;
    let consumer = report.consumer.as_ref().expect("consumer report");
    assert_eq!(consumer.never_delivered, 0);
    assert!(consumer.before_failover > 0, "{consumer:?}");
    // After the failover the consumer got the standby's own records at least.
    assert!(consumer.after_failover >= 750, "{consumer:?}");
    // The primary was killed while its records were flowing to the standby.
    let replicated = report
        .pairs
        .iter()
        .find(|p| p.origin == "east")
        .unwrap()
        .records;
    assert!(replicated > 0);
    let rpo = report.rpo_records.expect("an RPO figure");
    // The failover's own figure counts what the standby knew the primary held (its last
    // advertisement): never more than was really missing then. Records the primary sent
    // before it died may still arrive after the report (they count as replicated in the
    // end), so "then" is the final RPO plus those late arrivals.
    let arrived_late = replicated.saturating_sub(report.rpo_reported_held.unwrap());
    assert!(
        report.rpo_reported_records.unwrap() <= rpo + arrived_late,
        "{} ({arrived_late} arrived after the report)",
        report.human()
    );
    let acked_in_east = 1_500 / 2..=1_500;
    assert!(
        acked_in_east.contains(&(replicated + rpo)),
        "replicated {replicated} + RPO {rpo}"
    );
    assert!(report.events.iter().any(|e| e.contains("east killed")));
}

async fn consumer_failover_continues_a_rocketmq_group_in_the_standby_on(engine: Engine) {
    let report = scenario("consumer-failover", small_on(engine)).await;
    assert!(report.passed, "{}", report.human());
    let consumer = report.consumer.as_ref().expect("consumer report");
    assert_eq!(consumer.never_delivered, 0, "{}", report.human());
    assert!(consumer.before_failover > 0, "{consumer:?}");
    assert!(consumer.after_failover > 0, "{consumer:?}");
    assert!(consumer.takeover_ms.is_some(), "{consumer:?}");
    assert!(report.human().contains("takeover:"), "{}", report.human());
}

async fn compliance_mirror_holds_exactly_the_audited_records_on(engine: Engine) {
    let report = scenario("compliance-mirror", small_on(engine)).await;
    // Even sequence numbers are audited, multiples of 3 personal: 1500 records per origin
    // (two streams of 750) leave 250 per stream for audit.
    let to_audit: Vec<u64> = report
        .pairs
        .iter()
        .filter(|p| p.target == "audit")
        .map(|p| p.records)
        .collect();
    assert_eq!(to_audit, vec![500, 500]);
    let eu_to_us = report
        .pairs
        .iter()
        .find(|p| p.origin == "eu" && p.target == "us")
        .unwrap();
    assert_eq!(eu_to_us.records, 1_000);
}

async fn vpc_relay_reaches_the_dial_out_region_through_a_pass_through_hub_on(engine: Engine) {
    let report = scenario("vpc-relay", small_on(engine)).await;
    let pairs: Vec<(&str, &str, u64)> = report
        .pairs
        .iter()
        .map(|p| (p.origin.as_str(), p.target.as_str(), p.records))
        .collect();
    assert_eq!(
        pairs,
        vec![("core", "edge", 1_500), ("edge", "core", 1_500)]
    );
}

async fn partition_heal_catches_up_after_the_cut_on(engine: Engine) {
    partition_heal_catches_up_after_the_cut_with(small_on(engine)).await;
}

async fn partition_heal_catches_up_after_the_cut_with(options: Options) {
    // 5 % random loss: a run on JetStream carries a few hundred datagrams (its batches
    // pack well), and at 1 % one run in ten lost none of them.
    let options = Options {
        records: 4_000,
        loss: 5.0,
        ..options
    };
    let report = scenario("partition-heal", options).await;
    assert!(report.backlog_records.unwrap() > 0, "{}", report.human());
    assert!(report.catchup_s.unwrap() > 0.0, "{}", report.human());
    assert!(report.links[0].dropped_while_cut > 0, "{}", report.human());
    assert!(
        report.links[0].lost > 0,
        "{:?}\n{}",
        report.links,
        report.human()
    );
    assert_all_pairs(&report, 4_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_three_regions_converge() {
    active_active_three_regions_converge_on(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_three_regions_converge_on_jetstream() {
    active_active_three_regions_converge_on(Engine::JetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_three_regions_converge_with_two_nodes_per_region() {
    active_active_three_regions_converge_with(two_nodes_per_region()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heal_catches_up_after_the_cut_with_two_nodes_per_region() {
    partition_heal_catches_up_after_the_cut_with(two_nodes_per_region()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_failover_resumes_the_consumer_in_the_standby_with_two_nodes_per_region() {
    // The producer after the failover writes through both nodes of the new primary: the
    // one not replicating must not refuse it on a fence it read before the failover.
    let report = scenario("dr-failover", two_nodes_per_region()).await;
    assert_eq!(report.invariants.lost, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_failover_resumes_the_consumer_in_the_standby() {
    dr_failover_resumes_the_consumer_in_the_standby_on(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_failover_resumes_the_consumer_in_the_standby_on_jetstream() {
    dr_failover_resumes_the_consumer_in_the_standby_on(Engine::JetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_failover_continues_a_rocketmq_group_in_the_standby() {
    consumer_failover_continues_a_rocketmq_group_in_the_standby_on(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_failover_continues_a_rocketmq_group_in_the_standby_on_jetstream() {
    consumer_failover_continues_a_rocketmq_group_in_the_standby_on(Engine::JetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_mirror_holds_exactly_the_audited_records() {
    compliance_mirror_holds_exactly_the_audited_records_on(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_mirror_holds_exactly_the_audited_records_on_jetstream() {
    compliance_mirror_holds_exactly_the_audited_records_on(Engine::JetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_relay_reaches_the_dial_out_region_through_a_pass_through_hub() {
    vpc_relay_reaches_the_dial_out_region_through_a_pass_through_hub_on(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_relay_reaches_the_dial_out_region_through_a_pass_through_hub_on_jetstream() {
    vpc_relay_reaches_the_dial_out_region_through_a_pass_through_hub_on(Engine::JetStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heal_catches_up_after_the_cut() {
    partition_heal_catches_up_after_the_cut_on(Engine::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heal_catches_up_after_the_cut_on_jetstream() {
    partition_heal_catches_up_after_the_cut_on(Engine::JetStream).await;
}

#[tokio::test]
async fn fixed_shape_scenarios_refuse_another_region_count() {
    let options = Options {
        regions: Some(4),
        ..small()
    };
    let e = run("dr-failover", &options, &InProcess, &|_| {})
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("--regions 4"), "{e}");
    let options = Options { size: 8, ..small() };
    let e = run("active-active", &options, &InProcess, &|_| {})
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("--size 8"), "{e}");
}

/// Runs `georouter scenario NAME --processes` and returns the JSON report.
fn cli_scenario(name: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_georouter"))
        .args([
            "scenario",
            name,
            "--processes",
            "--quiet",
            "--records",
            "1000",
        ])
        .args([
            "--size",
            "512",
            "--rate",
            "2000",
            "--delay-ms",
            "5",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{name}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("PASSED"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["scenario"], name);
    assert_eq!(report["mode"], "processes");
    let i = &report["invariants"];
    for count in ["lost", "duplicated", "order_violations"] {
        assert_eq!(i[count], 0, "{count}");
    }
    assert_eq!(i["converged"], true);
    for q in ["p50", "p99", "p999", "max"] {
        assert!(report["lag_ms"][q].as_f64().unwrap() > 0.0, "lag {q}");
    }
    report
}

#[test]
fn active_active_with_region_processes() {
    let report = cli_scenario("active-active");
    assert_eq!(report["regions"], 3);
    assert_eq!(report["records_produced"], 3_000);
}

#[test]
fn dr_failover_with_region_processes_sigkills_the_primary() {
    let report = cli_scenario("dr-failover");
    assert!(report["rpo_records"].is_u64());
    assert!(report["rpo_reported_records"].is_u64());
    assert_eq!(report["consumer"]["never_delivered"], 0);
    assert!(
        report["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("SIGKILL"))
    );
}

/// The CI-sized soak: topic re-creation, link cuts, kills and restarts of in-process
/// regions for 12 s, then every region converges on each origin's current incarnation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_converges_after_recreations_cuts_and_kills() {
    let options = scenarios::soak::SoakOptions {
        duration: std::time::Duration::from_secs(12),
        delay: std::time::Duration::from_millis(5),
        seed: 7,
        every: std::time::Duration::from_millis(1500),
        quiet: true,
    };
    let report = scenarios::soak::run(&options, &InProcess)
        .await
        .expect("the soak runs");
    assert!(report.passed, "{report:#?}");
    assert!(
        report.recreated + report.cuts + report.kills >= 3,
        "{report:#?}"
    );
    assert!(
        report.records_compared > 0 && report.sub_logs_checked == 12,
        "{report:#?}"
    );
}
