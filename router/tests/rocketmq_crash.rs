//! The RocketMQ access point's consumption state survives SIGKILL of the `georouter serve`
//! process: after the restart nothing acknowledged is delivered again, nothing
//! unacknowledged is lost, and messages that were in flight come back only once their
//! invisibility has ended.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use proto::rocketmq::v2 as pb;
use proto::rocketmq::v2::messaging_service_client::MessagingServiceClient;

type Client = MessagingServiceClient<tonic::transport::Channel>;

fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

/// Receives up to `batch` with the given invisibility and long polling; the messages' bodies, attempts
/// and handles.
async fn receive(
    client: &mut Client,
    batch: i32,
    invisible: i64,
    polling: i64,
) -> Vec<(String, i32, String)> {
    let request = pb::ReceiveMessageRequest {
        group: resource("billing"),
        message_queue: Some(pb::MessageQueue {
            topic: resource("orders"),
            ..Default::default()
        }),
        batch_size: batch,
        invisible_duration: seconds(invisible),
        long_polling_timeout: seconds(polling),
        ..Default::default()
    };
    let mut stream = client.receive_message(request).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(answer) = stream.message().await.unwrap() {
        if let Some(pb::receive_message_response::Content::Message(m)) = answer.content {
            let s = m.system_properties.unwrap();
            out.push((
                String::from_utf8(m.body).unwrap(),
                s.delivery_attempt.unwrap(),
                s.receipt_handle.unwrap(),
            ));
        }
    }
    out
}

async fn ack(client: &mut Client, handle: &str) {
    let answer = client
        .ack_message(pb::AckMessageRequest {
            group: resource("billing"),
            topic: resource("orders"),
            entries: vec![pb::AckMessageEntry {
                message_id: String::new(),
                receipt_handle: handle.into(),
                lite_topic: None,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status.unwrap().code, pb::Code::Ok as i32);
}

fn bodies(received: &[(String, i32, String)]) -> Vec<String> {
    let mut b: Vec<String> = received.iter().map(|(b, _, _)| b.clone()).collect();
    b.sort();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumption_state_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("eu");
    let node = support::spawn("eu", &data);
    let producer = client::Client::connect(&node.grpc).await.unwrap();
    producer.create_topic("orders", 1, None).await.unwrap();
    let records = (0..10)
        .map(|i| client::pb::Record {
            body: format!("m{i}").into_bytes(),
            ..Default::default()
        })
        .collect();
    producer
        .produce("orders", records, client::Partitioning::Partition(0))
        .await
        .unwrap();
    let mut consumer = Client::connect(format!("http://{}", node.rocketmq))
        .await
        .unwrap();

    // Take four, acknowledge two, leave two in flight for 6 s; then the process dies.
    let first = receive(&mut consumer, 4, 6, 0).await;
    assert_eq!(first.len(), 4);
    let in_flight_until = Instant::now() + Duration::from_secs(6);
    let (acked, in_flight) = first.split_at(2);
    for (_, _, handle) in acked {
        ack(&mut consumer, handle).await;
    }
    node.signal(Signal::SIGKILL);
    drop(node);

    let node = support::spawn("eu", &data);
    let mut consumer = Client::connect(format!("http://{}", node.rocketmq))
        .await
        .unwrap();
    // Everything never handed out is there; nothing acknowledged, nothing in flight.
    let fresh = receive(&mut consumer, 32, 60, 0).await;
    let handed_out: Vec<String> = first.iter().map(|(b, _, _)| b.clone()).collect();
    let all: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let mut expected: Vec<String> = all
        .iter()
        .filter(|b| !handed_out.contains(b))
        .cloned()
        .collect();
    expected.sort();
    assert!(
        Instant::now() < in_flight_until,
        "the restart outlasted the invisibility: the check below would not hold"
    );
    assert_eq!(bodies(&fresh), expected, "the fresh messages, and no other");
    assert!(fresh.iter().all(|(_, attempt, _)| *attempt == 1));
    for (_, _, handle) in &fresh {
        ack(&mut consumer, handle).await;
    }
    // The two in flight come back once their invisibility ends, as a second attempt.
    let mut again = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while again.len() < 2 && Instant::now() < deadline {
        again.extend(receive(&mut consumer, 32, 60, 5).await);
    }
    assert!(
        Instant::now() >= in_flight_until,
        "not before their invisibility ended"
    );
    assert_eq!(bodies(&again), bodies(in_flight));
    assert!(
        again.iter().all(|(_, attempt, _)| *attempt == 2),
        "{again:?}"
    );
    for (_, _, handle) in &again {
        ack(&mut consumer, handle).await;
    }
    assert!(
        receive(&mut consumer, 32, 60, 0).await.is_empty(),
        "nothing acknowledged comes back"
    );
}
