//! `consumer-failover`: `dr-failover` with the group consuming through the RocketMQ 5
//! access point (PoP receive and acknowledge, as the SDKs do) instead of the own API. The
//! group's progress reaches the standby through the shared frontier (every second, then
//! the task's cursor sync). Half-way the primary is killed, a forced failover promotes the
//! standby, and the consumer carries on there. Reported: messages processed once, those
//! delivered twice (acknowledged in the primary after the last progress that reached the
//! standby, or in flight), those the standby holds that never came, and the takeover time
//! (from the kill to the first message in the standby).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use proto::rocketmq::v2 as pb;
use proto::rocketmq::v2::messaging_service_client::MessagingServiceClient;
use tokio_util::sync::CancellationToken;

use super::Options;
use super::dr_failover::{Consumer, Consumers, GROUP, TOPIC, run_with};
use crate::cluster::Cluster;
use crate::launch::Launcher;
use crate::report::Report;
use crate::workload::header;

type Rmq = MessagingServiceClient<tonic::transport::Channel>;

pub async fn run(
    options: &Options,
    launcher: &dyn Launcher,
    on_ready: &(dyn Fn(&Cluster) + Sync),
) -> Result<(Report, Cluster)> {
    run_with(options, launcher, on_ready, Consumers::RocketMq).await
}

fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        name: name.into(),
        ..Default::default()
    })
}

/// `origin-partition-offset`: the message id the access point gives a record produced
/// through the own API.
fn identity(message_id: &str) -> Option<(String, u32)> {
    let (rest, _offset) = message_id.rsplit_once('-')?;
    let (origin, partition) = rest.rsplit_once('-')?;
    Some((origin.to_string(), partition.parse().ok()?))
}

/// One receive (long-polling a second) and one acknowledgement of what came.
async fn round(client: &mut Rmq, state: &Mutex<Consumer>, in_standby: bool) -> Result<()> {
    let request = pb::ReceiveMessageRequest {
        group: resource(GROUP),
        message_queue: Some(pb::MessageQueue {
            topic: resource(TOPIC),
            ..Default::default()
        }),
        batch_size: 32,
        invisible_duration: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        long_polling_timeout: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let mut stream = client.receive_message(request).await?.into_inner();
    let mut entries = Vec::new();
    while let Some(answer) = stream.message().await? {
        let Some(pb::receive_message_response::Content::Message(m)) = answer.content else {
            continue;
        };
        let system = m.system_properties.unwrap_or_default();
        if let (Some((origin, partition)), Some((seq, _))) =
            (identity(&system.message_id), header(&m.body))
        {
            state
                .lock()
                .expect("consumer")
                .take_one(partition, &origin, seq, in_standby);
        }
        entries.push(pb::AckMessageEntry {
            message_id: system.message_id,
            receipt_handle: system.receipt_handle.unwrap_or_default(),
            lite_topic: None,
        });
    }
    if !entries.is_empty() {
        client
            .ack_message(pb::AckMessageRequest {
                group: resource(GROUP),
                topic: resource(TOPIC),
                entries,
            })
            .await?;
    }
    Ok(())
}

/// Receives and acknowledges in the primary (`access_points[0]`) until it fails, then in
/// the standby.
pub(super) async fn consume(
    access_points: [SocketAddr; 2],
    state: Arc<Mutex<Consumer>>,
    primary_down: CancellationToken,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let in_standby = primary_down.is_cancelled();
        let address = access_points[usize::from(in_standby)];
        let Ok(mut client) = Rmq::connect(format!("http://{address}")).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        loop {
            tokio::select! {
                done = round(&mut client, &state, in_standby) => if done.is_err() { break },
                () = primary_down.cancelled(), if !in_standby => break,
                () = stop.cancelled() => return,
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
