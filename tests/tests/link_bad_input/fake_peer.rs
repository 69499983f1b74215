//! The fake region "zz" the node under test dials, scripted by the tests: its certificates
//! from the test deployment, the link's control stream, and the sub-log streams the node
//! opens, on which a test writes good or bad frames.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::support::Deployment;
use crate::{
    Batch, BatchesFrame, FAKE, FAKE_LIMITS, Frame, Identity, NODE, PendingBatch, SUBSCRIBE_WAIT,
    TOPIC, link_io, msg,
};

pub fn read_pem(deployment: &Deployment, file: &str) -> String {
    std::fs::read_to_string(deployment.certs.dir().join(file)).unwrap()
}

/// The deployment's CA (it can sign more certificates).
pub fn deployment_ca(deployment: &Deployment) -> replicator::certs::Ca {
    replicator::certs::Ca {
        cert_pem: read_pem(deployment, "ca.pem"),
        key_pem: read_pem(deployment, "ca.key"),
    }
}

/// An identity trusting the deployment's CA and presenting `cert`.
pub fn identity(deployment: &Deployment, cert: &replicator::certs::RegionCert) -> Identity {
    Identity::from_pem(
        &read_pem(deployment, "ca.pem"),
        &cert.cert_pem,
        &cert.key_pem,
    )
    .unwrap()
}

/// The fake region "zz": accepts the node's link, does the Hello exchange, advertises one
/// sub-log of `orders`, answers heartbeats, and hands every sub-log stream the node opens
/// to the test, which scripts what is sent on it.
pub struct FakePeer {
    pub address: SocketAddr,
    pub subscriptions: mpsc::UnboundedReceiver<Subscription>,
    /// Connections accepted (the node's link), to check it is never re-dialled.
    pub connections: Arc<AtomicUsize>,
    /// The latest of them, for streams the fake opens towards the node.
    pub latest: Arc<Mutex<Option<quinn::Connection>>>,
    /// Frames for the latest link's control stream (after Hello and Advertise).
    pub control: Arc<Mutex<Option<mpsc::UnboundedSender<Frame>>>>,
    pub _endpoint: quinn::Endpoint,
}

impl FakePeer {
    pub fn start(deployment: &Deployment) -> Self {
        let cert = replicator::certs::RegionCert {
            region: FAKE.into(),
            cert_pem: read_pem(deployment, &format!("{FAKE}.pem")),
            key_pem: read_pem(deployment, &format!("{FAKE}.key")),
        };
        let crypto = identity(deployment, &cert).server_config().unwrap();
        let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        let (tx, subscriptions) = mpsc::unbounded_channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let latest = Arc::new(Mutex::new(None));
        let control = Arc::new(Mutex::new(None));
        tokio::spawn(accept_links(
            endpoint.clone(),
            tx,
            connections.clone(),
            latest.clone(),
            control.clone(),
        ));
        FakePeer {
            address: endpoint.local_addr().unwrap(),
            subscriptions,
            connections,
            latest,
            control,
            _endpoint: endpoint,
        }
    }

    /// The node's link, as accepted by the fake.
    pub fn connection(&self) -> quinn::Connection {
        self.latest
            .lock()
            .unwrap()
            .clone()
            .expect("the node's link")
    }

    /// Sends `frame` on the control stream of the node's link.
    pub fn send_control(&self, frame: Frame) {
        self.control
            .lock()
            .unwrap()
            .as_ref()
            .expect("the node's link")
            .send(frame)
            .expect("the control stream to be open");
    }

    /// The next sub-log stream the node opens (its Subscribe already read).
    pub async fn next_subscription(&mut self) -> Subscription {
        tokio::time::timeout(SUBSCRIBE_WAIT, self.subscriptions.recv())
            .await
            .expect("the node to subscribe")
            .expect("the fake peer to be running")
    }
}

pub async fn accept_links(
    endpoint: quinn::Endpoint,
    subscriptions: mpsc::UnboundedSender<Subscription>,
    connections: Arc<AtomicUsize>,
    latest: Arc<Mutex<Option<quinn::Connection>>>,
    control: Arc<Mutex<Option<mpsc::UnboundedSender<Frame>>>>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let Ok(connection) = incoming.await else {
            continue;
        };
        connections.fetch_add(1, Ordering::SeqCst);
        *latest.lock().unwrap() = Some(connection.clone());
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        *control.lock().unwrap() = Some(control_tx);
        tokio::spawn(serve_link(connection, subscriptions.clone(), control_rx));
    }
}

pub async fn serve_link(
    connection: quinn::Connection,
    subscriptions: mpsc::UnboundedSender<Subscription>,
    mut control: mpsc::UnboundedReceiver<Frame>,
) {
    // The dialer opens the control stream and sends Hello first.
    let Ok((mut send, mut recv)) = connection.accept_bi().await else {
        return;
    };
    match link_io::read_frame(&mut recv, FAKE_LIMITS).await {
        Ok(Some(Frame::Hello(hello))) if hello.region == NODE => {}
        other => {
            eprintln!("fake peer: expected the node's Hello, got {other:?}");
            return;
        }
    }
    let hello = Frame::Hello(msg::Hello {
        protocol_version: replicator::wire::PROTOCOL_VERSION,
        region: FAKE.into(),
        epoch: 1,
        features: vec![],
        // Announces no larger frames: the node's own limit applies to what it sends.
        max_frame_bytes: 0,
        // Says nothing of its configuration, as an older peer.
        config_digest: String::new(),
    });
    let advertise = Frame::Advertise(msg::Advertise {
        topics: vec![msg::TopicOffer {
            topic: TOPIC.into(),
            partitions: 1,
            message_type: String::new(),
            sub_logs: vec![msg::SubLogOffer {
                partition: 0,
                origin: FAKE.into(),
                start_offset: 0,
                end_offset: 100,
                bytes: 0,
                path: vec![FAKE.into()],
                incarnation: 0,
            }],
        }],
    });
    for frame in [hello, advertise] {
        if link_io::write_frame(&mut send, &frame).await.is_err() {
            return;
        }
    }
    tokio::spawn(async move {
        // Keep the control stream going: answer heartbeats, send what the test asks,
        // ignore the rest.
        loop {
            tokio::select! {
                read = link_io::read_frame(&mut recv, FAKE_LIMITS) => match read {
                    Ok(Some(Frame::Heartbeat(h))) => {
                        let _ = link_io::write_frame(&mut send, &Frame::HeartbeatAck(h)).await;
                    }
                    Ok(Some(_)) => {}
                    _ => return,
                },
                Some(frame) = control.recv() => {
                    let _ = link_io::write_frame(&mut send, &frame).await;
                }
            }
        }
    });
    // Sub-log streams, each read in its own task (see link.rs on flow control).
    while let Ok((send, mut recv)) = connection.accept_bi().await {
        let subscriptions = subscriptions.clone();
        tokio::spawn(async move {
            match link_io::read_frame(&mut recv, FAKE_LIMITS).await {
                Ok(Some(Frame::Subscribe(request))) => {
                    let _ = subscriptions.send(Subscription {
                        request,
                        send,
                        _recv: recv,
                    });
                }
                other => eprintln!("fake peer: expected Subscribe, got {other:?}"),
            }
        });
    }
}

/// One sub-log stream the node opened to the fake; the test writes the answers.
pub struct Subscription {
    pub request: msg::Subscribe,
    pub send: quinn::SendStream,
    pub _recv: quinn::RecvStream,
}

impl Subscription {
    pub async fn subscribed(&mut self, start_offset: u64) {
        let frame = Frame::Subscribed(msg::Subscribed {
            start_offset,
            path: vec![FAKE.into()],
            incarnation: 0,
        });
        link_io::write_frame(&mut self.send, &frame).await.unwrap();
    }

    /// One good Batches frame holding the fake's records at `offsets`.
    pub async fn send_records(&mut self, offsets: Range<u64>) {
        link_io::write_frame(&mut self.send, &batches_frame(offsets))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.unwrap();
    }
}

/// The fake's record at `offset` of its sub-log.
pub fn fake_record(offset: u64) -> broker::Record {
    broker::Record {
        body: format!("{FAKE}-{offset}").into_bytes().into(),
        timestamp_ms: 1_700_000_000_000 + offset as i64,
        ..Default::default()
    }
}

pub fn batch(offsets: Range<u64>) -> Batch {
    let records: Vec<broker::Record> = offsets.clone().map(fake_record).collect();
    let bytes = PendingBatch::consecutive(&records).seal(offsets.start);
    Batch::from_bytes(bytes, usize::MAX).unwrap()
}

/// A Batches frame of the fake's records at `offsets`, in batches of up to 5 records.
pub fn batches_frame(offsets: Range<u64>) -> Frame {
    let batches = offsets
        .clone()
        .step_by(5)
        .map(|base| batch(base..(base + 5).min(offsets.end)))
        .collect();
    Frame::Batches(BatchesFrame::new(batches, vec![FAKE.into()]))
}

/// A frame with an arbitrary kind byte and body.
pub fn raw_frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = ((1 + body.len()) as u32).to_le_bytes().to_vec();
    bytes.push(kind);
    bytes.extend_from_slice(body);
    bytes
}
