//! Peers speak only for themselves, over real QUIC with mutual TLS on loopback: a region
//! "zz" holding a certificate of the deployment CA sends the node "eu" control state it is
//! not entitled to author (a task record in eu's name, a change of a task zz is not part
//! of, a principal made without an administrator, a version jump, another region's link
//! state). Each is refused and counted by reason, nothing of it is taken, and a record zz
//! may author, sent after them on the same stream, is taken.

// The scripted fake region of link_bad_input; each test file uses part of it.
#[allow(dead_code)]
#[path = "link_bad_input/fake_peer.rs"]
mod fake_peer;
mod support;

use std::time::Duration;

use broker::batch::{Batch, PendingBatch};
use broker::catalog::GroupSpec;
use broker::catalog::record::{Author, MAX_VERSION_STEP};
use replicator::identity::seal::Sealer;
use replicator::tls::Identity;
use replicator::wire::io::{self as link_io, FrameLimits};
use replicator::wire::message as msg;
use replicator::wire::{BatchesFrame, Frame};
use support::*;

use fake_peer::{FakePeer, identity, read_pem};

const NODE: &str = "eu";
const FAKE: &str = "zz";
const TOPIC: &str = "orders";
const FAKE_LIMITS: FrameLimits = FrameLimits {
    max_frame: 64 << 20,
    max_batch: 64 << 20,
};
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(30);

/// A record of `spec` at `version`, authored by zz in `region`'s name and sealed with
/// zz's key.
fn sealed<S: serde::Serialize + Clone>(
    sealer: &Sealer,
    kind: &str,
    spec: S,
    version: u64,
    region: &str,
    admin: bool,
) -> String {
    let seal = |bytes: &[u8]| sealer.seal(bytes);
    let author = Author {
        region,
        principal: admin.then_some("root"),
        admin,
        sealer: Some(&seal),
    };
    serde_json::to_string(&author.record(kind, spec, version, false)).unwrap()
}

fn refusals(metrics: &str, kind: &str, reason: &str) -> u64 {
    let line = format!("georouter_control_refused_total{{kind=\"{kind}\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_state_a_ca_holding_region_may_not_author_is_refused() {
    let deployment = Deployment::new(&[NODE, "us", FAKE]);
    let fake = FakePeer::start(&deployment);
    let dir = tempfile::tempdir().unwrap();
    let tasks = [
        task("from-zz", &[FAKE], &[NODE], TOPIC),
        task("eu-us", &[NODE], &["us"], "audit"),
    ];
    let mut topology = TopologySpec::mesh(&[NODE, "us", FAKE]);
    topology.set_address(FAKE, fake.address);
    // us never answers: a bound socket nobody reads.
    let us = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    topology.set_address("us", us.local_addr().unwrap());
    let config = deployment.config(NODE, dir.path(), &topology, &tasks);
    let node = start_with(config, dir).await;
    let replicator = node.node.replicator().unwrap();
    eventually("the link to zz to be up", || async {
        fake.latest.lock().unwrap().is_some() && fake.control.lock().unwrap().is_some()
    })
    .await;

    let zz = identity(
        &deployment,
        &replicator::certs::RegionCert {
            region: FAKE.into(),
            cert_pem: read_pem(&deployment, &format!("{FAKE}.pem")),
            key_pem: read_pem(&deployment, &format!("{FAKE}.key")),
        },
    );
    let sealer = Sealer::new(&zz).unwrap();
    let mut paused = replicator.task("eu-us").unwrap().spec;
    paused.state = replicator::TaskState::Paused;
    let mut from_zz = replicator.task("from-zz").unwrap().spec;
    from_zz.max_records_per_s = Some(1);
    let intruder = auth::PrincipalSpec {
        name: "intruder".into(),
        access_key: "intruder".into(),
        secret: "intruder-secret-long".into(),
        grants: vec![],
    };
    // In eu's name; a task zz is not part of; zz's own task at a version nothing could
    // supersede; a principal no administrator asked for.
    fake.send_control(Frame::Tasks(msg::Tasks {
        records: vec![
            sealed(&sealer, "task", paused.clone(), 2, NODE, true),
            sealed(&sealer, "task", paused, 2, FAKE, false),
            sealed(&sealer, "task", from_zz, 2 + MAX_VERSION_STEP, FAKE, false),
        ],
        groups: vec![],
        principals: vec![sealed(&sealer, "principal", intruder, 1, FAKE, false)],
    }));
    // us's link state, sealed by zz.
    let mut us_state = msg::LinkState {
        region: "us".into(),
        seq: broker::record::now_ms() as u64,
        links: vec![msg::LinkHealth {
            peer: NODE.into(),
            up: false,
            srtt_us: 0,
        }],
        seal: None,
    };
    sealer.seal_link_state(&mut us_state);
    fake.send_control(Frame::LinkState(us_state));
    // What zz may author: a group's settings, sealed by zz in its own name.
    let group = GroupSpec {
        name: "billing".into(),
        fifo: false,
        max_attempts: 5,
    };
    fake.send_control(Frame::Tasks(msg::Tasks {
        records: vec![],
        groups: vec![sealed(&sealer, "group", group, 1, FAKE, false)],
        principals: vec![],
    }));
    eventually("eu to take zz's group", || async {
        node.node.broker.groups().get("billing").is_some()
    })
    .await;

    let metrics = console_api::client::ConsoleClient::new(node.node.bound.console, None)
        .metrics()
        .await
        .unwrap();
    for (kind, reason) in [
        ("task", "wrong_region"),
        ("task", "not_entitled"),
        ("task", "version_jump"),
        ("principal", "not_entitled"),
        ("link_state", "wrong_region"),
    ] {
        assert_eq!(
            refusals(&metrics, kind, reason),
            1,
            "{kind} {reason}\n{metrics}"
        );
    }
    for name in ["eu-us", "from-zz"] {
        let held = replicator.task(name).unwrap();
        assert_eq!(
            (held.version, held.changed_by.as_str()),
            (1, NODE),
            "{name}"
        );
    }
    assert!(node.node.broker.principals().get("intruder").is_none());
    let group = node.node.broker.groups().any_record("billing").unwrap();
    assert_eq!(group.changed_by, FAKE);
    node.node.shut_down().await.unwrap();
}
