//! Disaster recovery across two regions `a` (primary) and `b` (standby) of a DR task:
//! consumer-group cursor sync, its merge rule and an administrator's rewind that spreads, a forced failover after SIGKILL of the
//! primary's process (the group resumes exactly; the RPO reported is the real one), a
//! planned failover with producers running (nothing lost or duplicated, the old primary
//! fenced), and a failback after writes on the promoted side.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::process::Command;

use client::{Partitioning, pb};
use router::launch::{InProcess, Processes};
use scenarios::cluster::{Cluster, ClusterPlan};
use scenarios::launch::Launcher;
use topology::{ResidencySpec, TopologySpec};

const TOPIC: &str = "orders";
const GROUP: &str = "billing";

/// DR task "dr" from `primary` to `standby`, syncing the `billing*` groups.
fn dr_task(primary: &str, standby: &str) -> replicator::TaskSpec {
    let mut task = replicator::TaskSpec::new("dr", &[primary], &[standby], TOPIC);
    task.dr = Some(replicator::Dr {
        primary: primary.into(),
        epoch: 0,
        promoting: None,
    });
    task.groups = Some("billing*".into());
    task
}

fn plan(max_records_per_s: Option<u32>) -> ClusterPlan {
    let mut task = dr_task("a", "b");
    task.max_records_per_s = max_records_per_s;
    ClusterPlan {
        topology: TopologySpec::mesh(&["a", "b"]),
        residency: ResidencySpec::default(),
        tasks: vec![task],
        impairment: Default::default(),
        direct_links: false,
        heartbeat_ms: 300,
        node_settings: serde_json::Value::Null,
        engine: Default::default(),
        nodes_per_region: 1,
    }
}

async fn start(plan: &ClusterPlan, launcher: &dyn Launcher) -> Cluster {
    let cluster = Cluster::start(plan, launcher).await.expect("regions start");
    for region in &cluster.regions {
        // Replication may have created it already: a new topic is advertised at once.
        match region.client.create_topic(TOPIC, 1, None).await {
            Ok(_) => {}
            Err(e) if e.code() == Some("topic-exists") => {}
            Err(e) => panic!("creating {TOPIC} in {}: {e}", region.name),
        }
    }
    cluster
}

async fn eventually<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record(body: String) -> pb::Record {
    pb::Record {
        body: body.into_bytes(),
        ..Default::default()
    }
}

/// Produces records `<prefix>-<i>` for i in `range`, in batches of 100.
async fn produce(client: &client::Client, prefix: &str, range: std::ops::Range<u64>) {
    let all: Vec<u64> = range.collect();
    for chunk in all.chunks(100) {
        let records = chunk
            .iter()
            .map(|i| record(format!("{prefix}-{i}")))
            .collect();
        client
            .produce(TOPIC, records, Partitioning::Partition(0))
            .await
            .unwrap();
    }
}

/// Every record a region holds: (origin, offset, body).
async fn held(client: &client::Client) -> Vec<(String, u64, String)> {
    let fetched = client
        .fetch_all(TOPIC, client::earliest(), vec![])
        .await
        .unwrap();
    fetched
        .records
        .into_iter()
        .map(|r| {
            let body = String::from_utf8(r.record.unwrap().body).unwrap();
            (r.origin, r.offset, body)
        })
        .collect()
}

/// End offset per origin in a region.
async fn ends(client: &client::Client) -> BTreeMap<String, u64> {
    let description = client.describe_topic(TOPIC).await.unwrap();
    description.partitions[0]
        .sub_logs
        .iter()
        .map(|s| (s.origin.clone(), s.end_offset))
        .collect()
}

fn cursor(next: &[(&str, u64)]) -> pb::PartitionCursor {
    pb::PartitionCursor {
        partition: 0,
        cursor: Some(pb::Cursor {
            next: next.iter().map(|(o, n)| (o.to_string(), *n)).collect(),
            ..Default::default()
        }),
    }
}

async fn group_cursor(client: &client::Client, group: &str) -> BTreeMap<String, u64> {
    client
        .group_cursors(group, TOPIC)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.partition == 0)
        .and_then(|c| c.cursor)
        .map(|c| c.next.into_iter().collect())
        .unwrap_or_default()
}

/// Runs `georouter failover|failback` against `region`'s console and returns its JSON.
async fn cli(cluster: &Cluster, region: &str, args: &[&str]) -> Result<serde_json::Value, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_georouter"))
        .args(args)
        .args(["--json", "--console"])
        .arg(cluster.region(region).bound.console.to_string())
        .args(["--token", &cluster.token])
        .output()
        .await
        .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).unwrap())
}

fn read_only_error(e: client::ClientError) -> String {
    assert_eq!(e.code(), Some("read-only"), "{e}");
    e.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_cursors_sync_both_ways_and_merge_by_maximum() {
    let cluster = start(&plan(None), &InProcess).await;
    let (a, b) = (&cluster.region("a").client, &cluster.region("b").client);
    // Cursors name positions that exist: the standby holds the primary's 50 records.
    produce(a, "r", 0..50).await;
    eventually("b to hold a's records", || async {
        ends(b).await.get("a") == Some(&50)
    })
    .await;
    a.commit(GROUP, TOPIC, vec![cursor(&[("a", 40)])])
        .await
        .unwrap();
    eventually("a's commit in b", || async {
        group_cursor(b, GROUP).await == BTreeMap::from([("a".into(), 40)])
    })
    .await;
    // Active in both regions at once: the larger offset wins, on both sides.
    b.commit(GROUP, TOPIC, vec![cursor(&[("a", 45)])])
        .await
        .unwrap();
    let merged = BTreeMap::from([("a".to_string(), 45)]);
    eventually("the merge in a", || async {
        group_cursor(a, GROUP).await == merged
    })
    .await;
    // A position past what exists is refused, where it is committed.
    let past = a
        .commit(GROUP, TOPIC, vec![cursor(&[("a", 1_000_000)])])
        .await
        .unwrap_err();
    assert_eq!(past.code(), Some("invalid-cursor"), "{past}");
    // A rewind does not spread; a group the task does not name is not synced.
    a.commit(GROUP, TOPIC, vec![cursor(&[("a", 5)])])
        .await
        .unwrap();
    a.commit("audit", TOPIC, vec![cursor(&[("a", 9)])])
        .await
        .unwrap();
    a.commit("billing-eu", TOPIC, vec![cursor(&[("a", 3)])])
        .await
        .unwrap();
    eventually("billing-eu in b", || async {
        group_cursor(b, "billing-eu").await == BTreeMap::from([("a".into(), 3)])
    })
    .await;
    assert_eq!(group_cursor(b, GROUP).await, merged, "never moved back");
    assert!(group_cursor(b, "audit").await.is_empty());

    // An administrator's rewind does spread: its new epoch replaces the larger position.
    let console = cluster.region("a").console(&cluster.token);
    let to = |offset: u64| BTreeMap::from([("a".to_string(), offset)]);
    let rewound = console.rewind_group(GROUP, TOPIC, 0, &to(5)).await.unwrap();
    assert!(rewound.epoch > 0 && rewound.next == to(5), "{rewound:?}");
    eventually("the rewind in b", || async {
        group_cursor(b, GROUP).await == to(5)
    })
    .await;
    // Within the new epoch, commits in either region merge by maximum again.
    b.commit(GROUP, TOPIC, vec![cursor(&[("a", 7)])])
        .await
        .unwrap();
    eventually("b's commit in a", || async {
        group_cursor(a, GROUP).await == to(7)
    })
    .await;
    // A rewind past what exists is refused: a conflict with what this region holds.
    let past = console
        .rewind_group(GROUP, TOPIC, 0, &to(1_000_000))
        .await
        .unwrap_err();
    assert_eq!(past.status(), Some(409), "{past}");
    assert!(past.to_string().contains("CONFLICT"), "{past}");
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_cursors_sync_through_a_relay_with_a_dial_out_region() {
    use topology::{LinkKind, LinkSpec, RegionSpec};
    // edge (in a VPC, dials out) - hub (pass-through relay) - core; the DR task joins
    // core and edge only.
    let region = |name: &str| RegionSpec {
        name: name.into(),
        address: None,
        other_addresses: Vec::new(),
    };
    let mut vpc = LinkSpec::new("hub", "edge", 10);
    vpc.kind = LinkKind::Vpc;
    vpc.dial = Some("edge".into());
    let task = dr_task("core", "edge");
    let plan = ClusterPlan {
        topology: TopologySpec {
            regions: vec![region("core"), region("hub"), region("edge")],
            links: vec![LinkSpec::new("core", "hub", 10), vpc],
        },
        residency: ResidencySpec {
            pass_through: vec!["hub".into()],
            rules: Vec::new(),
        },
        tasks: vec![task],
        impairment: Default::default(),
        direct_links: false,
        heartbeat_ms: 300,
        node_settings: serde_json::Value::Null,
        engine: Default::default(),
        nodes_per_region: 1,
    };
    let cluster = start(&plan, &InProcess).await;
    let (core, edge) = (
        &cluster.region("core").client,
        &cluster.region("edge").client,
    );
    produce(core, "r", 0..25).await;
    eventually("edge to hold core's records", || async {
        ends(edge).await.get("core") == Some(&25)
    })
    .await;
    core.commit(GROUP, TOPIC, vec![cursor(&[("core", 12)])])
        .await
        .unwrap();
    eventually("core's commit in edge", || async {
        group_cursor(edge, GROUP).await == BTreeMap::from([("core".into(), 12)])
    })
    .await;
    edge.commit(GROUP, TOPIC, vec![cursor(&[("core", 20)])])
        .await
        .unwrap();
    eventually("edge's commit in core", || async {
        group_cursor(core, GROUP).await == BTreeMap::from([("core".into(), 20)])
    })
    .await;
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_resumes_exactly_in_the_standby_after_sigkill_and_the_rpo_is_exact() {
    let launcher = Processes {
        binary: env!("CARGO_BIN_EXE_georouter").into(),
    };
    // Replication limited to 400 records/s, so the standby is behind when the primary dies.
    let mut cluster = start(&plan(Some(400)), &launcher).await;
    const WRITTEN: u64 = 4000;
    let (a, b) = (
        cluster.region("a").client.clone(),
        cluster.region("b").client.clone(),
    );
    let err = b
        .produce(TOPIC, vec![record("x".into())], Partitioning::Partition(0))
        .await
        .unwrap_err();
    assert!(read_only_error(err).contains("the primary, region a"));
    produce(&a, "a", 0..WRITTEN).await;

    // The group reads half of the topic in a and commits.
    let half: Vec<_> = held(&a).await.into_iter().take(1000).collect();
    assert_eq!(half.last().unwrap().1, 999);
    a.commit(GROUP, TOPIC, vec![cursor(&[("a", 1000)])])
        .await
        .unwrap();
    eventually("the group's cursor in b", || async {
        group_cursor(&b, GROUP).await == BTreeMap::from([("a".into(), 1000)])
    })
    .await;
    eventually("b past the group's position", || async {
        ends(&b).await.get("a").copied().unwrap_or(0) >= 1200
    })
    .await;

    cluster.kill("a").await.unwrap();
    let report = cli(&cluster, "b", &["failover", "--task", "dr", "--forced"])
        .await
        .unwrap();
    assert_eq!(report["promoted"], "b");
    assert_eq!(report["previous"], "a");
    assert_eq!(report["epoch"], 1);
    let rpo = &report["rpo"][0];
    assert_eq!(rpo["origin"], "a");
    // b knew a's end exactly; the RPO is what b did not hold when it took over (batches
    // a rate limit still held back land afterwards, so b may hold more by now).
    assert_eq!(rpo["known_end"], WRITTEN, "{report}");
    let held_at_failover = rpo["held"].as_u64().unwrap();
    assert!(
        held_at_failover < WRITTEN,
        "the standby was behind: {report}"
    );
    assert_eq!(rpo["records"], WRITTEN - held_at_failover, "{report}");
    assert!(rpo["bytes"].as_u64().unwrap() > 0);
    // The group resumes in b from its synced cursor: exactly the records after it.
    let cursors = b.group_cursors(GROUP, TOPIC).await.unwrap();
    let resumed = b
        .fetch_all(TOPIC, client::earliest(), cursors)
        .await
        .unwrap();
    // From exactly after the commit, without a gap, through at least what b held when
    // it took over (more may have landed since).
    let offsets: Vec<u64> = resumed.records.iter().map(|r| r.offset).collect();
    let end = offsets.last().map_or(1000, |o| o + 1);
    assert_eq!(offsets, (1000..end).collect::<Vec<_>>());
    assert!(end >= held_at_failover, "{end} < {held_at_failover}");
    // b is the primary now.
    b.produce(
        TOPIC,
        vec![record("b-0".into())],
        Partitioning::Partition(0),
    )
    .await
    .unwrap();
    cluster.stop().await.unwrap();
}

/// Writes batches to whichever region accepts them, moving to the other on a refusal,
/// until `total` records are acknowledged; returns the acknowledged bodies.
async fn produce_through_switches(cluster: &Cluster, total: u64) -> Vec<String> {
    let clients = [
        cluster.region("a").client.clone(),
        cluster.region("b").client.clone(),
    ];
    let mut at = 0;
    let mut acked = Vec::new();
    let mut seq = 0u64;
    while (acked.len() as u64) < total {
        let bodies: Vec<String> = (seq..seq + 20).map(|i| format!("p-{i}")).collect();
        let records = bodies.iter().map(|b| record(b.clone())).collect();
        match clients[at]
            .produce(TOPIC, records, Partitioning::Partition(0))
            .await
        {
            Ok(_) => {
                acked.extend(bodies);
                seq += 20;
            }
            Err(e) => {
                read_only_error(e);
                at = 1 - at;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    acked
}

/// Both regions hold the same records at the same positions, each body once, and exactly
/// the acknowledged ones.
async fn assert_converged(cluster: &Cluster, acked: &[String]) {
    let (a, b) = (&cluster.region("a").client, &cluster.region("b").client);
    // Arrival order differs between regions; each sub-log's (offset, body) must not. A
    // read may trail the sub-logs' ends for a moment, so this waits for equal contents.
    let deadline = Instant::now() + Duration::from_secs(60);
    let in_a = loop {
        let mut in_a = held(a).await;
        let mut in_b = held(b).await;
        in_a.sort();
        in_b.sort();
        if in_a == in_b && in_a.len() == acked.len() {
            break in_a;
        }
        if Instant::now() > deadline {
            let first = in_a.iter().zip(&in_b).position(|(x, y)| x != y);
            panic!(
                "a holds {} records, b {}, {} acknowledged; first difference at {first:?}: {:?} / {:?}",
                in_a.len(),
                in_b.len(),
                acked.len(),
                first.map(|i| &in_a[i]),
                first.map(|i| &in_b[i])
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let bodies: Vec<&str> = in_a.iter().map(|(_, _, body)| body.as_str()).collect();
    let unique: BTreeSet<&str> = bodies.iter().copied().collect();
    assert_eq!(unique.len(), bodies.len(), "a record held twice");
    let expected: BTreeSet<&str> = acked.iter().map(String::as_str).collect();
    assert_eq!(
        unique, expected,
        "held records differ from the acknowledged ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_failover_with_producers_running_loses_nothing_and_fences_the_old_primary() {
    let cluster = start(&plan(None), &InProcess).await;
    let producing = produce_through_switches(&cluster, 3000);
    let switching = async {
        eventually("some writes in a", || async {
            ends(&cluster.region("a").client)
                .await
                .get("a")
                .is_some_and(|n| *n >= 500)
        })
        .await;
        cli(&cluster, "b", &["failover", "--task", "dr"])
            .await
            .unwrap()
    };
    let (acked, report) = tokio::join!(producing, switching);
    assert_eq!(report["mode"], "planned");
    assert_eq!(report["promoted"], "b");
    assert!(
        report["rpo"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["records"] == 0)
    );
    let err = cluster
        .region("a")
        .client
        .produce(
            TOPIC,
            vec![record("late".into())],
            Partitioning::Partition(0),
        )
        .await
        .unwrap_err();
    let message = read_only_error(err);
    assert!(
        message.contains("the primary, region b") && message.contains("epoch 1"),
        "{message}"
    );
    let ends_b = ends(&cluster.region("b").client).await;
    assert!(
        ends_b.get("b").is_some_and(|n| *n > 0),
        "writes moved to b: {ends_b:?}"
    );
    assert_converged(&cluster, &acked).await;
    // Failing over to the primary itself is refused.
    let refused = cli(&cluster, "b", &["failover", "--task", "dr"])
        .await
        .unwrap_err();
    assert!(refused.contains("already the primary"), "{refused}");
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_after_writes_on_the_promoted_side_converges_and_returns_the_primary() {
    let cluster = start(&plan(None), &InProcess).await;
    let (a, b) = (&cluster.region("a").client, &cluster.region("b").client);
    produce(a, "a", 0..500).await;
    cli(&cluster, "b", &["failover", "--task", "dr", "--forced"])
        .await
        .unwrap();
    // An empty produce meets the fence before anything else and writes nothing.
    eventually("a to learn it is fenced", || async {
        a.produce(TOPIC, vec![], Partitioning::Partition(0))
            .await
            .is_err_and(|e| e.code() == Some("read-only"))
    })
    .await;
    produce(b, "b", 0..700).await;
    // Failback runs in the first source; the standby cannot ask for it.
    let refused = cli(&cluster, "b", &["failback", "--task", "dr"])
        .await
        .unwrap_err();
    assert!(refused.contains("run it there"), "{refused}");
    let report = cli(&cluster, "a", &["failback", "--task", "dr"])
        .await
        .unwrap();
    assert_eq!(report["promoted"], "a");
    assert_eq!(report["epoch"], 2);
    // a holds everything b wrote before it took over again.
    assert_eq!(ends(a).await.get("b"), Some(&700));
    produce(a, "a", 500..600).await;
    let err = b
        .produce(TOPIC, vec![record("y".into())], Partitioning::Partition(0))
        .await
        .unwrap_err();
    assert!(read_only_error(err).contains("the primary, region a"));
    let acked: Vec<String> = (0..600)
        .map(|i| format!("a-{i}"))
        .chain((0..700).map(|i| format!("b-{i}")))
        .collect();
    assert_converged(&cluster, &acked).await;
    cluster.stop().await.unwrap();
}
