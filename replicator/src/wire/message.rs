//! The link's messages as the rest of the replicator sees them. The generated protobuf
//! types (`proto::link::v1`) stay in this layer: `frame.rs` converts with the `From`
//! implementations below, field for field (docs/link-protocol.md has the meaning of each).

use std::collections::BTreeMap;

use proto::link::v1 as pb;
use proto::link::v1::subscribe::From as PbFrom;

/// The first frame on a link's control stream, both ways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub protocol_version: u32,
    pub region: String,
    /// Random per start of the region.
    pub epoch: u64,
    pub features: Vec<String>,
    /// The largest frame this region accepts.
    pub max_frame_bytes: u64,
    /// A digest of the configuration every region must share.
    pub config_digest: String,
}

/// What a region offers a neighbour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advertise {
    pub topics: Vec<TopicOffer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicOffer {
    pub topic: String,
    pub partitions: u32,
    pub sub_logs: Vec<SubLogOffer>,
    /// normal, fifo, delay or transaction (empty: normal).
    pub message_type: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubLogOffer {
    pub partition: u32,
    pub origin: String,
    pub start_offset: u64,
    /// The durable end.
    pub end_offset: u64,
    pub bytes: u64,
    /// The regions that stored the data, origin first.
    pub path: Vec<String>,
    pub incarnation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The sender's monotonic clock, echoed by the answer.
    pub sent_at_ms: i64,
}

/// A region's view of its own links, flooded to every region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub region: String,
    pub seq: u64,
    pub links: Vec<LinkHealth>,
    /// The region's seal over the rest (`identity::seal`); none from an older peer.
    pub seal: Option<LinkSeal>,
}

/// A region's signature over its link state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSeal {
    /// The TLS signature scheme (IANA code).
    pub scheme: u16,
    pub signature: Vec<u8>,
    /// The region's certificate, DER.
    pub certificate: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkHealth {
    pub peer: String,
    pub up: bool,
    pub srtt_us: u64,
}

/// Shared records, each as JSON: replication tasks and consumer groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tasks {
    pub records: Vec<String>,
    pub groups: Vec<String>,
    pub principals: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupCursors {
    pub cursors: Vec<GroupCursor>,
}

/// A group's committed vector cursor of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCursor {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub next: BTreeMap<String, u64>,
    pub incarnations: BTreeMap<String, u64>,
    /// The rewind epoch (`broker::Cursor`).
    pub epoch: u64,
}

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The puller holds everything below this offset.
    Offset(u64),
    /// The puller holds nothing: from the first record held.
    Earliest,
    Latest,
    TimestampMs(i64),
}

/// The first frame of a sub-log stream, from the puller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    pub task: String,
    pub topic: String,
    pub partition: u32,
    pub origin: String,
    pub from: Option<StartFrom>,
    /// Pass-through relays the request passed.
    pub via: Vec<String>,
    /// The incarnation `from` is of (0: none or unknown).
    pub incarnation: u64,
}

/// The server's answer to `Subscribe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribed {
    pub start_offset: u64,
    pub path: Vec<String>,
    pub incarnation: u64,
}

/// The first frame of a stream the serving side opens: a sub-log served before the peer
/// asked (see `serve::push`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// The subscription served, as if the peer had sent it.
    pub subscription: Subscribe,
    /// What `Subscribed` would have answered.
    pub subscribed: Subscribed,
    pub partitions: u32,
    pub message_type: String,
    /// The sender's clock when the sub-log was seen empty: every record pushed is newer.
    pub empty_at_ms: i64,
}

/// A refusal as it arrived: the code is text, since a peer of a later version may send a
/// code this one does not know (`Refusal` is the typed form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    pub code: String,
    pub message: String,
}

/// The header of a Batches frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchesHeader {
    pub base_offset: u64,
    pub last_offset: u64,
    pub batch_count: u32,
    /// The regions that stored the data, origin first.
    pub hop_path: Vec<String>,
}

impl From<pb::Hello> for Hello {
    fn from(m: pb::Hello) -> Self {
        Hello {
            protocol_version: m.protocol_version,
            region: m.region,
            epoch: m.epoch,
            features: m.features,
            max_frame_bytes: m.max_frame_bytes,
            config_digest: m.config_digest,
        }
    }
}

impl From<Hello> for pb::Hello {
    fn from(m: Hello) -> Self {
        pb::Hello {
            protocol_version: m.protocol_version,
            region: m.region,
            epoch: m.epoch,
            features: m.features,
            max_frame_bytes: m.max_frame_bytes,
            config_digest: m.config_digest,
        }
    }
}

impl From<pb::Advertise> for Advertise {
    fn from(m: pb::Advertise) -> Self {
        Advertise {
            topics: m
                .topics
                .into_iter()
                .map(|t| TopicOffer {
                    topic: t.topic,
                    partitions: t.partitions,
                    message_type: t.message_type,
                    sub_logs: t
                        .sub_logs
                        .into_iter()
                        .map(|s| SubLogOffer {
                            partition: s.partition,
                            origin: s.origin,
                            start_offset: s.start_offset,
                            end_offset: s.end_offset,
                            bytes: s.bytes,
                            path: s.path,
                            incarnation: s.incarnation,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<Advertise> for pb::Advertise {
    fn from(m: Advertise) -> Self {
        pb::Advertise {
            topics: m
                .topics
                .into_iter()
                .map(|t| pb::TopicEntry {
                    topic: t.topic,
                    partitions: t.partitions,
                    message_type: t.message_type,
                    sub_logs: t
                        .sub_logs
                        .into_iter()
                        .map(|s| pb::SubLogEntry {
                            partition: s.partition,
                            origin: s.origin,
                            start_offset: s.start_offset,
                            end_offset: s.end_offset,
                            bytes: s.bytes,
                            path: s.path,
                            incarnation: s.incarnation,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<pb::Heartbeat> for Heartbeat {
    fn from(m: pb::Heartbeat) -> Self {
        Heartbeat {
            sent_at_ms: m.sent_at_ms,
        }
    }
}

impl From<Heartbeat> for pb::Heartbeat {
    fn from(m: Heartbeat) -> Self {
        pb::Heartbeat {
            sent_at_ms: m.sent_at_ms,
        }
    }
}

impl From<pb::LinkState> for LinkState {
    fn from(m: pb::LinkState) -> Self {
        LinkState {
            region: m.region,
            seq: m.seq,
            links: m
                .links
                .into_iter()
                .map(|l| LinkHealth {
                    peer: l.peer,
                    up: l.up,
                    srtt_us: l.srtt_us,
                })
                .collect(),
            seal: (!m.signature.is_empty()).then(|| LinkSeal {
                scheme: u16::try_from(m.seal_scheme).unwrap_or(0),
                signature: m.signature,
                certificate: m.certificate,
            }),
        }
    }
}

impl From<LinkState> for pb::LinkState {
    fn from(m: LinkState) -> Self {
        pb::LinkState {
            region: m.region,
            seq: m.seq,
            links: m
                .links
                .into_iter()
                .map(|l| pb::LinkHealth {
                    peer: l.peer,
                    up: l.up,
                    srtt_us: l.srtt_us,
                })
                .collect(),
            seal_scheme: m.seal.as_ref().map_or(0, |s| u32::from(s.scheme)),
            signature: m
                .seal
                .as_ref()
                .map(|s| s.signature.clone())
                .unwrap_or_default(),
            certificate: m.seal.map(|s| s.certificate).unwrap_or_default(),
        }
    }
}

impl From<pb::Tasks> for Tasks {
    fn from(m: pb::Tasks) -> Self {
        Tasks {
            records: m.records,
            groups: m.groups,
            principals: m.principals,
        }
    }
}

impl From<Tasks> for pb::Tasks {
    fn from(m: Tasks) -> Self {
        pb::Tasks {
            records: m.records,
            groups: m.groups,
            principals: m.principals,
        }
    }
}

impl From<pb::GroupCursors> for GroupCursors {
    fn from(m: pb::GroupCursors) -> Self {
        GroupCursors {
            cursors: m
                .cursors
                .into_iter()
                .map(|c| GroupCursor {
                    group: c.group,
                    topic: c.topic,
                    partition: c.partition,
                    next: c.next.into_iter().collect(),
                    incarnations: c.incarnations.into_iter().collect(),
                    epoch: c.epoch,
                })
                .collect(),
        }
    }
}

impl From<GroupCursors> for pb::GroupCursors {
    fn from(m: GroupCursors) -> Self {
        pb::GroupCursors {
            cursors: m
                .cursors
                .into_iter()
                .map(|c| pb::GroupCursor {
                    group: c.group,
                    topic: c.topic,
                    partition: c.partition,
                    next: c.next.into_iter().collect(),
                    incarnations: c.incarnations.into_iter().collect(),
                    epoch: c.epoch,
                })
                .collect(),
        }
    }
}

impl From<PbFrom> for StartFrom {
    fn from(from: PbFrom) -> Self {
        match from {
            PbFrom::Offset(n) => StartFrom::Offset(n),
            PbFrom::Earliest(_) => StartFrom::Earliest,
            PbFrom::Latest(_) => StartFrom::Latest,
            PbFrom::TimestampMs(ms) => StartFrom::TimestampMs(ms),
        }
    }
}

impl From<StartFrom> for PbFrom {
    fn from(from: StartFrom) -> Self {
        match from {
            StartFrom::Offset(n) => PbFrom::Offset(n),
            StartFrom::Earliest => PbFrom::Earliest(true),
            StartFrom::Latest => PbFrom::Latest(true),
            StartFrom::TimestampMs(ms) => PbFrom::TimestampMs(ms),
        }
    }
}

impl From<pb::Subscribe> for Subscribe {
    fn from(m: pb::Subscribe) -> Self {
        Subscribe {
            task: m.task,
            topic: m.topic,
            partition: m.partition,
            origin: m.origin,
            from: m.from.map(StartFrom::from),
            via: m.via,
            incarnation: m.incarnation,
        }
    }
}

impl From<Subscribe> for pb::Subscribe {
    fn from(m: Subscribe) -> Self {
        pb::Subscribe {
            task: m.task,
            topic: m.topic,
            partition: m.partition,
            origin: m.origin,
            from: m.from.map(PbFrom::from),
            via: m.via,
            incarnation: m.incarnation,
        }
    }
}

impl From<pb::Subscribed> for Subscribed {
    fn from(m: pb::Subscribed) -> Self {
        Subscribed {
            start_offset: m.start_offset,
            path: m.path,
            incarnation: m.incarnation,
        }
    }
}

impl From<Subscribed> for pb::Subscribed {
    fn from(m: Subscribed) -> Self {
        pb::Subscribed {
            start_offset: m.start_offset,
            path: m.path,
            incarnation: m.incarnation,
        }
    }
}

#[cfg(test)]
impl Push {
    /// A push of eu's sub-log `orders/1` from `start`, for tests.
    pub(crate) fn sample(start: u64, incarnation: u64, empty_at_ms: i64) -> Push {
        Push {
            subscription: Subscribe {
                task: "t".into(),
                topic: "orders".into(),
                partition: 1,
                origin: "eu".into(),
                from: Some(StartFrom::Offset(0)),
                via: Vec::new(),
                incarnation,
            },
            subscribed: Subscribed {
                start_offset: start,
                path: vec!["eu".into()],
                incarnation,
            },
            partitions: 2,
            message_type: String::new(),
            empty_at_ms,
        }
    }
}

impl From<pb::Push> for Push {
    fn from(m: pb::Push) -> Self {
        Push {
            subscription: m.subscription.unwrap_or_default().into(),
            subscribed: m.subscribed.unwrap_or_default().into(),
            partitions: m.partitions,
            message_type: m.message_type,
            empty_at_ms: m.empty_at_ms,
        }
    }
}

impl From<Push> for pb::Push {
    fn from(m: Push) -> Self {
        pb::Push {
            subscription: Some(m.subscription.into()),
            subscribed: Some(m.subscribed.into()),
            partitions: m.partitions,
            message_type: m.message_type,
            empty_at_ms: m.empty_at_ms,
        }
    }
}

impl From<pb::Error> for ErrorFrame {
    fn from(m: pb::Error) -> Self {
        ErrorFrame {
            code: m.code,
            message: m.message,
        }
    }
}

impl From<ErrorFrame> for pb::Error {
    fn from(m: ErrorFrame) -> Self {
        pb::Error {
            code: m.code,
            message: m.message,
        }
    }
}

impl From<pb::BatchesHeader> for BatchesHeader {
    fn from(m: pb::BatchesHeader) -> Self {
        BatchesHeader {
            base_offset: m.base_offset,
            last_offset: m.last_offset,
            batch_count: m.batch_count,
            hop_path: m.hop_path,
        }
    }
}

impl From<BatchesHeader> for pb::BatchesHeader {
    fn from(m: BatchesHeader) -> Self {
        pb::BatchesHeader {
            base_offset: m.base_offset,
            last_offset: m.last_offset,
            batch_count: m.batch_count,
            hop_path: m.hop_path,
        }
    }
}
