//! Bad input on a replication link, over real QUIC with mutual TLS on loopback.
//!
//! A node "eu" pulls topic `orders` from a scripted fake peer "zz" (the node dials it: "eu"
//! sorts first). The fake serves good records, then bad data on a sub-log stream:
//! malformed frames, a batch with a wrong CRC, an offset gap, an oversized frame. Each
//! time the node must count the refusal under the right reason, log it, keep exactly
//! the records it held before, re-subscribe from its held end on a new stream of the same
//! connection after a backoff, and catch up once the fake behaves.
//!
//! Peers with bad certificates (another CA, expired, a region that is not a peer) dialing
//! the node are refused at the handshake and counted by reason, and do not disturb the
//! link that is up.

// The scripted fake region; forged_control.rs uses it too, each file a part of it.
#[allow(dead_code)]
#[path = "link_bad_input/fake_peer.rs"]
mod fake_peer;
#[path = "link_bad_input/logs.rs"]
mod logs;
mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use broker::batch::{Batch, PendingBatch};
use replicator::tls::Identity;
use replicator::wire::io::{self as link_io, FrameLimits};
use replicator::wire::message as msg;
use replicator::wire::message::StartFrom;
use replicator::wire::{BatchesFrame, Frame, FrameKind, close};
use support::*;

use fake_peer::{FakePeer, Subscription, batches_frame, deployment_ca, identity, raw_frame};
use logs::{capture_logs, warnings};

/// The node under test. It sorts before the fake, so it dials.
const NODE: &str = "eu";
/// The fake peer, origin of the replicated sub-log.
const FAKE: &str = "zz";
const TOPIC: &str = "orders";
/// Records the node holds before any bad input arrives.
const GOOD: u64 = 10;

/// Every reason `frames_refused` knows (replicator/src/pull/error.rs, link/session.rs).
const FRAME_REASONS: &[&str] = &[
    "malformed",
    "crc",
    "oversized",
    "gap",
    "overlap",
    "loop",
    "hop_limit",
    "protocol",
];

/// Every reason `links_refused` knows (replicator/src/tls.rs, service.rs).
const LINK_REASONS: &[&str] = &[
    "certificate_expired",
    "unknown_ca",
    "wrong_region",
    "bad_certificate",
    "protocol_version",
    "handshake",
    "unknown_region",
];

/// What the fake accepts when reading frames (it trusts the node).
const FAKE_LIMITS: FrameLimits = FrameLimits {
    max_frame: 64 << 20,
    max_batch: 64 << 20,
};

/// Waits at most this long for the node to open a sub-log stream.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The node and checks.

/// The node "eu" with the task pulling `orders` from "zz", and the fake it dials.
struct Setup {
    deployment: Deployment,
    fake: FakePeer,
    node: TestNode,
}

impl Setup {
    async fn start() -> Self {
        capture_logs();
        let deployment = Deployment::new(&[NODE, FAKE]);
        let fake = FakePeer::start(&deployment);
        let dir = tempfile::tempdir().unwrap();
        let tasks = [task("t", &[FAKE], &[NODE], TOPIC)];
        let mut topology = TopologySpec::mesh(&[NODE, FAKE]);
        topology.set_address(FAKE, fake.address);
        let config = deployment.config(NODE, dir.path(), &topology, &tasks);
        let node = start_with(config, dir).await;
        Setup {
            deployment,
            fake,
            node,
        }
    }

    /// Starts, and serves the first `GOOD` records on the node's first subscription,
    /// which is returned still open.
    async fn start_with_good_records() -> (Self, Subscription) {
        let mut setup = Self::start().await;
        let mut first = setup.fake.next_subscription().await;
        assert_eq!(
            (
                first.request.task.as_str(),
                first.request.topic.as_str(),
                first.request.partition,
                first.request.origin.as_str()
            ),
            ("t", TOPIC, 0, FAKE)
        );
        assert_eq!(
            first.request.from,
            Some(StartFrom::Earliest),
            "a node holding nothing starts where the task says"
        );
        first.subscribed(0).await;
        first.send_records(0..GOOD).await;
        setup.wait_held(GOOD).await;
        setup.assert_holds_exactly(GOOD).await;
        (setup, first)
    }

    fn replicator(&self) -> std::sync::Arc<replicator::Replicator> {
        self.node.node.replicator().unwrap()
    }

    async fn wait_held(&self, end: u64) {
        eventually(&format!("the node to hold {FAKE} up to {end}"), || async {
            held_end(&self.node.node, TOPIC, 0, FAKE) == end
        })
        .await;
    }

    /// The node holds the fake's records `0..end`, each once, nothing else.
    async fn assert_holds_exactly(&self, end: u64) {
        assert_eq!(held_end(&self.node.node, TOPIC, 0, FAKE), end);
        let expected: Vec<(u32, String, u64, String)> = (0..end)
            .map(|offset| (0, FAKE.to_string(), offset, format!("{FAKE}-{offset}")))
            .collect();
        assert_eq!(all_records(&self.node.client, TOPIC).await, expected);
    }

    /// Waits until `reason` was counted `count` times in `frames_refused`, checks that no
    /// other reason was counted and that the refusal was logged, and that the stored
    /// records are exactly the `held` good ones.
    async fn assert_refused(&self, reason: &str, count: u64, held: u64) {
        let metrics = self.replicator().metrics().clone();
        let logged = || {
            warnings(&["refused replicated data", &format!("reason=\"{reason}\"")])
                + warnings(&["refused replicated data", &format!("reason={reason} ")])
        };
        eventually(&format!("{count} refusal(s) for {reason}"), || async {
            metrics.frame_refusals(reason) >= count && logged() >= count as usize
        })
        .await;
        for other in FRAME_REASONS {
            let want = if *other == reason { count } else { 0 };
            assert_eq!(
                metrics.frame_refusals(other),
                want,
                "frames refused for {other}"
            );
        }
        assert_eq!(logged(), count as usize, "warnings logged for {reason}");
        self.assert_holds_exactly(held).await;
    }

    /// The next subscription, which must come from the held end `held` on the link that
    /// is up (no new connection), at least `backoff` after `refused_at`.
    async fn resubscription(
        &mut self,
        held: u64,
        refused_at: Instant,
        backoff: Duration,
    ) -> Subscription {
        let next = self.fake.next_subscription().await;
        assert!(
            refused_at.elapsed() >= backoff,
            "re-subscribed {:?} after the refusal, before the backoff of {backoff:?}",
            refused_at.elapsed()
        );
        assert_eq!(
            next.request.from,
            Some(StartFrom::Offset(held)),
            "re-subscribes from the held end"
        );
        self.assert_same_link();
        next
    }

    /// The node's only link is the one it dialled to the fake at the start.
    fn assert_same_link(&self) {
        let links = self.replicator().links();
        assert_eq!(links.len(), 1, "links: {links:?}");
        assert_eq!(
            (links[0].peer.as_str(), links[0].remote),
            (FAKE, Some(self.fake.address))
        );
        assert_eq!(self.fake.connections.load(Ordering::SeqCst), 1);
    }

    /// The fake behaves on `subscription` (from the held end `held`): the node catches up
    /// to `end` and holds exactly `0..end`.
    async fn recover(&self, subscription: &mut Subscription, held: u64, end: u64) {
        subscription.subscribed(held).await;
        subscription.send_records(held..end).await;
        self.wait_held(end).await;
        self.assert_holds_exactly(end).await;
        self.assert_same_link();
    }

    async fn shut_down(self) {
        self.node.node.shut_down().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Bad data on a sub-log stream.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_refused_and_the_link_recovers() {
    let (mut setup, mut first) = Setup::start_with_good_records().await;

    // A frame of a kind that does not exist, after good data on the same stream.
    first.send_raw(&raw_frame(99, b"what is this")).await;
    let refused_at = Instant::now();
    setup.assert_refused("malformed", 1, GOOD).await;

    // On the re-subscription: a Batches frame whose body is garbage.
    let mut second = setup
        .resubscription(GOOD, refused_at, Duration::from_millis(100))
        .await;
    second.subscribed(GOOD).await;
    second
        .send_raw(&raw_frame(
            FrameKind::Batches as u8,
            b"\x05\x00\x00\x00garbage that is no batch at all",
        ))
        .await;
    let refused_at = Instant::now();
    setup.assert_refused("malformed", 2, GOOD).await;

    // Then a stream that ends inside a frame.
    let mut third = setup
        .resubscription(GOOD, refused_at, Duration::from_millis(200))
        .await;
    third.subscribed(GOOD).await;
    let whole = batches_frame(GOOD..GOOD + 5).to_bytes();
    third.send_raw(&whole[..whole.len() / 2]).await;
    third.send.finish().unwrap();
    let refused_at = Instant::now();
    setup.assert_refused("malformed", 3, GOOD).await;

    let mut fourth = setup
        .resubscription(GOOD, refused_at, Duration::from_millis(400))
        .await;
    setup.recover(&mut fourth, GOOD, 25).await;
    setup.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_wrong_crc_is_refused_and_the_link_recovers() {
    let (mut setup, mut first) = Setup::start_with_good_records().await;

    // Two batches in one frame, [10, 15) intact and [15, 20) with a flipped bit in its
    // last record's body: the whole frame is refused, the good batch in it not applied.
    let mut bytes = batches_frame(GOOD..GOOD + 10).to_bytes().to_vec();
    *bytes.last_mut().unwrap() ^= 0x01;
    first.send_raw(&bytes).await;
    let refused_at = Instant::now();
    setup.assert_refused("crc", 1, GOOD).await;

    let mut second = setup
        .resubscription(GOOD, refused_at, Duration::from_millis(100))
        .await;
    setup.recover(&mut second, GOOD, 30).await;
    setup.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_gaps_are_refused_and_the_link_recovers() {
    let (mut setup, mut first) = Setup::start_with_good_records().await;

    // In the middle of a stream: the node holds [0, 10), the next batch starts at 15.
    first.send_records(GOOD + 5..GOOD + 10).await;
    let refused_at = Instant::now();
    setup.assert_refused("gap", 1, GOOD).await;

    // The first batch of a stream: Subscribed announces the requested offset S, the first
    // batch starts at S + 10. Only a start the source announced may skip records.
    let mut second = setup
        .resubscription(GOOD, refused_at, Duration::from_millis(100))
        .await;
    second.subscribed(GOOD).await;
    second.send_records(GOOD + 10..GOOD + 15).await;
    let refused_at = Instant::now();
    setup.assert_refused("gap", 2, GOOD).await;

    let mut third = setup
        .resubscription(GOOD, refused_at, Duration::from_millis(200))
        .await;
    setup.recover(&mut third, GOOD, 40).await;
    setup.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_refused_and_the_link_recovers() {
    let (mut setup, mut first) = Setup::start_with_good_records().await;

    // The node's limit: the configured frame size, but never less than its largest
    // stored batch plus 64 KiB (replicator/src/replicator.rs).
    let config = &setup.node.node.config;
    let max_stored_batch = config.storage.max_batch_bytes + broker::batch::HEADER_LEN;
    let limit = config
        .replication
        .max_frame_bytes
        .max(max_stored_batch + (64 << 10));
    // Only the length prefix and the kind: the node must refuse before reading a body.
    let mut head = ((limit + 1) as u32).to_le_bytes().to_vec();
    head.push(FrameKind::Batches as u8);
    first.send_raw(&head).await;
    let refused_at = Instant::now();
    setup.assert_refused("oversized", 1, GOOD).await;

    let mut second = setup
        .resubscription(GOOD, refused_at, Duration::from_millis(100))
        .await;
    setup.recover(&mut second, GOOD, 20).await;
    setup.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_first_frame_of_a_stream_to_the_node_is_refused() {
    let (setup, _first) = Setup::start_with_good_records().await;
    // The fake opens a sub-log stream towards the node, as a puller would, and announces
    // a first frame just over the 64 KiB limit of a stream's first frame (far under the
    // link's frame limit). Only the head is sent: the node must refuse before the body.
    let (mut send, mut recv) = setup.fake.connection().open_bi().await.unwrap();
    let mut head = (((64 << 10) + 1) as u32).to_le_bytes().to_vec();
    head.push(FrameKind::Subscribe as u8);
    send.write_all(&head).await.unwrap();
    match link_io::read_frame(&mut recv, FAKE_LIMITS).await.unwrap() {
        Some(Frame::Error(e)) => assert_eq!(
            e.code,
            replicator::wire::LinkCode::Oversized.as_str(),
            "the node's answer: {}",
            e.message
        ),
        other => panic!("expected an Error frame, got {other:?}"),
    }
    let metrics = setup.replicator().metrics().clone();
    assert_eq!(metrics.frame_refusals("oversized"), 1);
    // The link is untouched.
    setup.assert_same_link();
    setup.shut_down().await;
}

// ---------------------------------------------------------------------------------------
// Peers with bad certificates.

/// Dials the node with `identity` as a client and waits for the node to end the
/// connection; returns how it ended.
async fn dial_node(node: &TestNode, identity: &Identity) -> quinn::ConnectionError {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let crypto = identity.client_config().unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connecting = endpoint.connect(node.node.bound.replication, NODE).unwrap();
    let ended = async {
        match connecting.await {
            // In TLS 1.3 the client may finish its side before the node checks its
            // certificate; the node then closes the connection.
            Ok(connection) => connection.closed().await,
            Err(error) => error,
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ended)
        .await
        .expect("the node to end the connection")
}

/// With good data flowing on the link to the fake, a peer presenting `identity` dials
/// the node: it is refused and counted under `reason` (only), the link to the fake is
/// untouched and keeps delivering. Returns how the bad connection ended.
async fn assert_link_refused(
    identity: impl FnOnce(&Deployment) -> Identity,
    reason: &str,
) -> quinn::ConnectionError {
    let (setup, mut first) = Setup::start_with_good_records().await;
    let identity = identity(&setup.deployment);
    let ended = dial_node(&setup.node, &identity).await;
    let metrics = setup.replicator().metrics().clone();
    let logged = || warnings(&["replication link refused"]);
    eventually(&format!("a link refusal for {reason}"), || async {
        LINK_REASONS.iter().any(|r| metrics.link_refusals(r) > 0) && logged() > 0
    })
    .await;
    let counted: Vec<(&str, u64)> = LINK_REASONS
        .iter()
        .map(|r| (*r, metrics.link_refusals(r)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(counted, vec![(reason, 1)], "link refusals by reason");
    assert_eq!(logged(), 1, "warnings logged for the refused link");
    // The refused peer replaced nothing: the same link still carries data.
    setup.assert_same_link();
    first.send_records(GOOD..GOOD + 5).await;
    setup.wait_held(GOOD + 5).await;
    setup.assert_holds_exactly(GOOD + 5).await;
    for r in FRAME_REASONS {
        assert_eq!(metrics.frame_refusals(r), 0, "frames refused for {r}");
    }
    setup.shut_down().await;
    ended
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let ended = assert_link_refused(
        |deployment| {
            // A certificate for a configured peer, signed by a CA the node does not trust.
            let other = replicator::certs::Ca::generate().unwrap();
            identity(deployment, &other.issue(FAKE, 30).unwrap())
        },
        "unknown_ca",
    )
    .await;
    assert!(
        !matches!(ended, quinn::ConnectionError::ApplicationClosed(_)),
        "refused in the handshake, not after: {ended}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused() {
    let ended = assert_link_refused(
        |deployment| {
            let expired = deployment_ca(deployment)
                .issue_between(
                    FAKE,
                    replicator::certs::date_time_ymd(2025, 1, 1),
                    replicator::certs::date_time_ymd(2025, 6, 1),
                )
                .unwrap();
            identity(deployment, &expired)
        },
        "certificate_expired",
    )
    .await;
    assert!(
        !matches!(ended, quinn::ConnectionError::ApplicationClosed(_)),
        "refused in the handshake, not after: {ended}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_of_a_region_that_is_not_a_peer_is_refused() {
    let ended = assert_link_refused(
        |deployment| {
            // Signed by the deployment's CA, so the handshake passes, but "mars" is not in
            // the node's [[regions]].
            identity(
                deployment,
                &deployment_ca(deployment).issue("mars", 30).unwrap(),
            )
        },
        "unknown_region",
    )
    .await;
    match ended {
        quinn::ConnectionError::ApplicationClosed(closed) => {
            assert_eq!(closed.error_code, close::UNKNOWN_REGION)
        }
        other => panic!("expected the node to close with UNKNOWN_REGION, got {other}"),
    }
}
