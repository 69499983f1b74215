//! Frame layout of the link protocol (all integers little-endian):
//!
//! ```text
//! frame   := length u32 | kind u8 | body            (length counts kind + body)
//! body    := prost message                           (every kind but Batches)
//! Batches := header_length u32 | BatchesHeader (prost) | batch*
//! batch   := a stored record batch, byte for byte (its own length prefix and CRC-32C)
//! PackedBatches := header_length u32 | BatchesHeader (prost) | codec u8 | raw_length u32
//!                  | packed                          (packed: batch* compressed by codec)
//! ```
//!
//! PackedBatches is sent only to a peer whose Hello accepts the codec (`codec`); it decodes
//! to the same Batches frame, its batches byte for byte what the sender stored.
//!
//! Decoding checks everything before anything is applied: the length against the
//! receiver's limit, the kind, the prost body, and for Batches every batch's length and
//! CRC, that the batches are consecutive and that they match the header's range and count.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;
use proto::link::v1 as pb;

use super::codec::Codec;
use super::message::{
    Advertise, BatchesHeader, ErrorFrame, GroupCursors, Heartbeat, Hello, LinkState, Push,
    Subscribe, Subscribed, Tasks,
};
use broker::batch::{Batch, BatchFormatError};

/// Bytes before a frame's body: the length and the kind.
pub const FRAME_HEAD_LEN: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Hello = 1,
    Advertise = 2,
    Heartbeat = 3,
    HeartbeatAck = 4,
    Subscribe = 5,
    Subscribed = 6,
    Batches = 7,
    Error = 8,
    LinkState = 9,
    Tasks = 10,
    GroupCursors = 11,
    PackedBatches = 12,
    Push = 13,
}

impl FrameKind {
    fn from_u8(kind: u8) -> Option<Self> {
        Some(match kind {
            1 => Self::Hello,
            2 => Self::Advertise,
            3 => Self::Heartbeat,
            4 => Self::HeartbeatAck,
            5 => Self::Subscribe,
            6 => Self::Subscribed,
            7 => Self::Batches,
            8 => Self::Error,
            9 => Self::LinkState,
            10 => Self::Tasks,
            11 => Self::GroupCursors,
            12 => Self::PackedBatches,
            13 => Self::Push,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
pub enum Frame {
    Hello(Hello),
    Advertise(Advertise),
    Heartbeat(Heartbeat),
    HeartbeatAck(Heartbeat),
    Subscribe(Subscribe),
    Subscribed(Subscribed),
    Push(Push),
    Batches(BatchesFrame),
    LinkState(LinkState),
    Tasks(Tasks),
    GroupCursors(GroupCursors),
    Error(ErrorFrame),
}

/// A run of consecutive stored batches of one sub-log.
#[derive(Clone, Debug)]
pub struct BatchesFrame {
    pub header: BatchesHeader,
    pub batches: Vec<Batch>,
}

impl BatchesFrame {
    /// A frame for `batches` (consecutive, non-empty) that passed `hop_path`.
    pub fn new(batches: Vec<Batch>, hop_path: Vec<String>) -> Self {
        let first = batches.first().expect("a Batches frame holds a batch");
        let last = batches.last().expect("a Batches frame holds a batch");
        BatchesFrame {
            header: BatchesHeader {
                base_offset: first.header().base_offset,
                last_offset: last.header().last_offset(),
                batch_count: batches.len() as u32,
                hop_path,
            },
            batches,
        }
    }

    pub fn bytes(&self) -> usize {
        self.batches.iter().map(|b| b.bytes().len()).sum()
    }

    pub fn records(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| u64::from(b.header().record_count))
            .sum()
    }

    /// The frame as a PackedBatches frame, its batches compressed by `codec`.
    pub fn encode_packed(&self, codec: Codec) -> Bytes {
        let mut raw = Vec::with_capacity(self.bytes());
        for batch in &self.batches {
            raw.extend_from_slice(batch.bytes());
        }
        let packed = codec.pack(&raw);
        let header = pb::BatchesHeader::from(self.header.clone());
        let header_len = header.encoded_len();
        let len = 1 + 4 + header_len + 1 + 4 + packed.len();
        let mut buf = BytesMut::with_capacity(4 + len);
        buf.put_u32_le(len as u32);
        buf.put_u8(FrameKind::PackedBatches as u8);
        buf.put_u32_le(header_len as u32);
        header.encode(&mut buf).expect("buffer has capacity");
        buf.put_u8(codec as u8);
        buf.put_u32_le(raw.len() as u32);
        buf.extend_from_slice(&packed);
        buf.freeze()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized { len: usize, max: usize },
    #[error("empty frame (no kind byte)")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame truncated: {need} bytes needed, {have} present")]
    Truncated { need: usize, have: usize },
    #[error("{kind:?} frame body does not decode: {source}")]
    Body {
        kind: FrameKind,
        #[source]
        source: prost::DecodeError,
    },
    #[error("batch {index} of the frame: {source}")]
    Batch {
        index: usize,
        #[source]
        source: BatchFormatError,
    },
    #[error("Batches frame inconsistent: {0}")]
    Inconsistent(String),
    #[error("PackedBatches frame: {0}")]
    Packed(String),
}

impl FrameError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::Oversized { .. } => "oversized",
            FrameError::Batch {
                source: BatchFormatError::Crc { .. },
                ..
            } => "crc",
            _ => "malformed",
        }
    }
}

impl Frame {
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Hello(_) => FrameKind::Hello,
            Frame::Advertise(_) => FrameKind::Advertise,
            Frame::Heartbeat(_) => FrameKind::Heartbeat,
            Frame::HeartbeatAck(_) => FrameKind::HeartbeatAck,
            Frame::Subscribe(_) => FrameKind::Subscribe,
            Frame::Subscribed(_) => FrameKind::Subscribed,
            Frame::Push(_) => FrameKind::Push,
            Frame::Batches(_) => FrameKind::Batches,
            Frame::Error(_) => FrameKind::Error,
            Frame::LinkState(_) => FrameKind::LinkState,
            Frame::Tasks(_) => FrameKind::Tasks,
            Frame::GroupCursors(_) => FrameKind::GroupCursors,
        }
    }

    /// The frame as chunks to write in order (batches are not copied).
    pub fn encode(&self) -> Vec<Bytes> {
        let message: Box<dyn ErasedMessage> = match self {
            Frame::Hello(m) => Box::new(pb::Hello::from(m.clone())),
            Frame::Advertise(m) => Box::new(pb::Advertise::from(m.clone())),
            Frame::Heartbeat(m) | Frame::HeartbeatAck(m) => Box::new(pb::Heartbeat::from(*m)),
            Frame::Subscribe(m) => Box::new(pb::Subscribe::from(m.clone())),
            Frame::Subscribed(m) => Box::new(pb::Subscribed::from(m.clone())),
            Frame::Push(m) => Box::new(pb::Push::from(m.clone())),
            Frame::Error(m) => Box::new(pb::Error::from(m.clone())),
            Frame::LinkState(m) => Box::new(pb::LinkState::from(m.clone())),
            Frame::Tasks(m) => Box::new(pb::Tasks::from(m.clone())),
            Frame::GroupCursors(m) => Box::new(pb::GroupCursors::from(m.clone())),
            Frame::Batches(frame) => {
                let header = pb::BatchesHeader::from(frame.header.clone());
                let header_len = header.encoded_len();
                let len = 1 + 4 + header_len + frame.bytes();
                let mut head = BytesMut::with_capacity(FRAME_HEAD_LEN + 4 + header_len);
                head.put_u32_le(len as u32);
                head.put_u8(FrameKind::Batches as u8);
                head.put_u32_le(header_len as u32);
                header.encode(&mut head).expect("buffer has capacity");
                let mut chunks = Vec::with_capacity(1 + frame.batches.len());
                chunks.push(head.freeze());
                chunks.extend(frame.batches.iter().map(|b| b.bytes().clone()));
                return chunks;
            }
        };
        let body_len = message.len();
        let mut buf = BytesMut::with_capacity(FRAME_HEAD_LEN + body_len);
        buf.put_u32_le((1 + body_len) as u32);
        buf.put_u8(self.kind() as u8);
        message.put(&mut buf);
        vec![buf.freeze()]
    }

    /// The frame as one buffer (control frames, tests).
    pub fn to_bytes(&self) -> Bytes {
        let chunks = self.encode();
        if chunks.len() == 1 {
            return chunks.into_iter().next().expect("one chunk");
        }
        let mut buf = BytesMut::new();
        for chunk in chunks {
            buf.extend_from_slice(&chunk);
        }
        buf.freeze()
    }
}

/// Object-safe encoding of the prost messages above.
trait ErasedMessage {
    fn len(&self) -> usize;
    fn put(&self, buf: &mut BytesMut);
}

impl<M: Message> ErasedMessage for M {
    fn len(&self) -> usize {
        self.encoded_len()
    }
    fn put(&self, buf: &mut BytesMut) {
        self.encode(buf).expect("buffer has capacity");
    }
}

/// The length of the frame whose first 4 bytes are `head`, checked against `max`
/// (kind and body; the 4 length bytes are not counted).
pub fn frame_len(head: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(head) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max {
        return Err(FrameError::Oversized { len, max });
    }
    Ok(len)
}

/// Decodes a frame's kind and body (`frame` holds exactly what the length announced).
/// `max_batch` bounds each batch's length, and a packed frame's batches unpack to at most
/// `max_frame` bytes, the limit an unpacked frame has.
pub fn decode(mut frame: Bytes, max_frame: usize, max_batch: usize) -> Result<Frame, FrameError> {
    if frame.is_empty() {
        return Err(FrameError::Empty);
    }
    let raw_kind = frame.get_u8();
    let kind = FrameKind::from_u8(raw_kind).ok_or(FrameError::UnknownKind(raw_kind))?;
    let body = |source| FrameError::Body { kind, source };
    Ok(match kind {
        FrameKind::Hello => Frame::Hello(pb::Hello::decode(frame).map_err(body)?.into()),
        FrameKind::Advertise => {
            Frame::Advertise(pb::Advertise::decode(frame).map_err(body)?.into())
        }
        FrameKind::Heartbeat => {
            Frame::Heartbeat(pb::Heartbeat::decode(frame).map_err(body)?.into())
        }
        FrameKind::HeartbeatAck => {
            Frame::HeartbeatAck(pb::Heartbeat::decode(frame).map_err(body)?.into())
        }
        FrameKind::Subscribe => {
            Frame::Subscribe(pb::Subscribe::decode(frame).map_err(body)?.into())
        }
        FrameKind::Subscribed => {
            Frame::Subscribed(pb::Subscribed::decode(frame).map_err(body)?.into())
        }
        FrameKind::Push => Frame::Push(pb::Push::decode(frame).map_err(body)?.into()),
        FrameKind::Error => Frame::Error(pb::Error::decode(frame).map_err(body)?.into()),
        FrameKind::LinkState => {
            Frame::LinkState(pb::LinkState::decode(frame).map_err(body)?.into())
        }
        FrameKind::Tasks => Frame::Tasks(pb::Tasks::decode(frame).map_err(body)?.into()),
        FrameKind::GroupCursors => {
            Frame::GroupCursors(pb::GroupCursors::decode(frame).map_err(body)?.into())
        }
        FrameKind::Batches => {
            let (header, batches) = batches_header(frame, kind)?;
            Frame::Batches(decode_batches(header, batches, max_batch)?)
        }
        FrameKind::PackedBatches => {
            let (header, packed) = batches_header(frame, kind)?;
            let batches = unpack(packed, max_frame)?;
            Frame::Batches(decode_batches(header, batches, max_batch)?)
        }
    })
}

/// Bytes a check needs that `body` lacks, as an error.
fn need(body: &Bytes, need: usize) -> Result<(), FrameError> {
    if body.len() < need {
        return Err(FrameError::Truncated {
            need,
            have: body.len(),
        });
    }
    Ok(())
}

/// The header of a (Packed)Batches body, and the rest of the body.
fn batches_header(mut body: Bytes, kind: FrameKind) -> Result<(BatchesHeader, Bytes), FrameError> {
    need(&body, 4)?;
    let header_len = body.get_u32_le() as usize;
    need(&body, header_len)?;
    let header: BatchesHeader = pb::BatchesHeader::decode(body.split_to(header_len))
        .map_err(|source| FrameError::Body { kind, source })?
        .into();
    Ok((header, body))
}

/// A PackedBatches frame's batches unpacked: at most `max` bytes, and exactly the length
/// the frame announced.
fn unpack(mut packed: Bytes, max: usize) -> Result<Bytes, FrameError> {
    need(&packed, 5)?;
    let raw_codec = packed.get_u8();
    let codec = Codec::from_u8(raw_codec)
        .ok_or_else(|| FrameError::Packed(format!("unknown codec {raw_codec}")))?;
    let raw_len = packed.get_u32_le() as usize;
    if raw_len > max {
        return Err(FrameError::Packed(format!(
            "announces {raw_len} unpacked bytes, more than the limit of {max}"
        )));
    }
    codec
        .unpack(&packed, raw_len)
        .map_err(|e| FrameError::Packed(format!("{}: {e}", codec.name())))
}

fn decode_batches(
    header: BatchesHeader,
    mut body: Bytes,
    max_batch: usize,
) -> Result<BatchesFrame, FrameError> {
    let mut batches = Vec::new();
    while !body.is_empty() {
        let index = batches.len();
        let batch_error = |source| FrameError::Batch { index, source };
        let parsed = broker::batch::BatchHeader::parse(&body, max_batch).map_err(batch_error)?;
        if parsed.total_len > body.len() {
            return Err(batch_error(BatchFormatError::Truncated {
                need: parsed.total_len,
                have: body.len(),
            }));
        }
        let batch =
            Batch::from_bytes(body.split_to(parsed.total_len), max_batch).map_err(batch_error)?;
        if let Some(previous) = batches.last().map(|b: &Batch| b.header().last_offset())
            && batch.header().base_offset != previous + 1
        {
            return Err(FrameError::Inconsistent(format!(
                "batch {index} starts at offset {} after a batch ending at {previous}",
                batch.header().base_offset
            )));
        }
        batches.push(batch);
    }
    let (Some(first), Some(last)) = (batches.first(), batches.last()) else {
        return Err(FrameError::Inconsistent("no batch".into()));
    };
    if header.batch_count as usize != batches.len()
        || header.base_offset != first.header().base_offset
        || header.last_offset != last.header().last_offset()
    {
        return Err(FrameError::Inconsistent(format!(
            "header says {} batches over [{}, {}], the frame holds {} over [{}, {}]",
            header.batch_count,
            header.base_offset,
            header.last_offset,
            batches.len(),
            first.header().base_offset,
            last.header().last_offset()
        )));
    }
    if header.hop_path.is_empty() {
        return Err(FrameError::Inconsistent("empty hop path".into()));
    }
    Ok(BatchesFrame { header, batches })
}

/// Splits the next whole frame off `buf` and decodes it; `Ok(None)` when `buf` holds only
/// part of a frame. The fuzz target drives this.
pub fn decode_from(
    buf: &mut Bytes,
    max_frame: usize,
    max_batch: usize,
) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = frame_len(buf[..4].try_into().expect("4 bytes"), max_frame)?;
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    decode(buf.split_to(len), max_frame, max_batch).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker::Record;

    fn batch(base: u64, n: usize) -> Batch {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                body: Bytes::from(format!("r{i}")),
                ..Default::default()
            })
            .collect();
        Batch::from_bytes(PendingBatch::consecutive(&records).seal(base), usize::MAX).unwrap()
    }

    use broker::batch::PendingBatch;

    fn batches_frame() -> Bytes {
        Frame::Batches(BatchesFrame::new(
            vec![batch(10, 3), batch(13, 2)],
            vec!["eu".into()],
        ))
        .to_bytes()
    }

    fn decode_all(bytes: Bytes) -> Result<Option<Frame>, FrameError> {
        let mut buf = bytes;
        decode_from(&mut buf, 1 << 20, 1 << 20)
    }

    #[test]
    fn frames_round_trip() {
        let hello = Frame::Hello(Hello {
            protocol_version: 1,
            region: "eu".into(),
            epoch: 7,
            features: vec![],
            max_frame_bytes: 9 << 20,
            config_digest: "ab12".into(),
        });
        let Some(Frame::Hello(back)) = decode_all(hello.to_bytes()).unwrap() else {
            panic!("a Hello")
        };
        assert_eq!(back.region, "eu");
        let Some(Frame::Batches(back)) = decode_all(batches_frame()).unwrap() else {
            panic!("a Batches frame")
        };
        assert_eq!((back.header.base_offset, back.header.last_offset), (10, 14));
        assert_eq!(back.records(), 5);
    }

    #[test]
    fn every_control_message_round_trips_field_for_field() {
        use crate::wire::message::*;
        let frames = [
            Frame::Advertise(Advertise {
                topics: vec![TopicOffer {
                    topic: "orders".into(),
                    partitions: 4,
                    message_type: "fifo".into(),
                    sub_logs: vec![SubLogOffer {
                        partition: 3,
                        origin: "eu".into(),
                        start_offset: 5,
                        end_offset: 9,
                        bytes: 100,
                        path: vec!["eu".into(), "us".into()],
                        incarnation: 77,
                    }],
                }],
            }),
            Frame::Heartbeat(Heartbeat { sent_at_ms: -3 }),
            Frame::HeartbeatAck(Heartbeat { sent_at_ms: 8 }),
            Frame::LinkState(LinkState {
                region: "eu".into(),
                seq: 12,
                links: vec![LinkHealth {
                    peer: "us".into(),
                    up: true,
                    srtt_us: 900,
                }],
                seal: Some(crate::wire::message::LinkSeal {
                    scheme: 0x0403,
                    signature: vec![1, 2, 3],
                    certificate: vec![4, 5],
                }),
            }),
            Frame::Tasks(Tasks {
                records: vec!["{}".into()],
                groups: vec!["{\"g\":1}".into()],
                principals: vec!["{\"p\":1}".into()],
            }),
            Frame::GroupCursors(GroupCursors {
                cursors: vec![GroupCursor {
                    group: "g".into(),
                    topic: "orders".into(),
                    partition: 1,
                    next: [("eu".to_string(), 4)].into(),
                    incarnations: [("eu".to_string(), 77)].into(),
                    epoch: 1_700_000_000_000,
                }],
            }),
            Frame::Subscribed(Subscribed {
                start_offset: 3,
                path: vec!["eu".into()],
                incarnation: 77,
            }),
            Frame::Push(Push {
                partitions: 4,
                message_type: "fifo".into(),
                ..Push::sample(0, 77, 1_700_000_000_000)
            }),
            Frame::Error(ErrorFrame {
                code: "LOOP".into(),
                message: "m".into(),
            }),
        ];
        let froms = [
            None,
            Some(StartFrom::Offset(4)),
            Some(StartFrom::Earliest),
            Some(StartFrom::Latest),
            Some(StartFrom::TimestampMs(-1)),
        ];
        let subscribes = froms.map(|from| {
            Frame::Subscribe(Subscribe {
                task: "t".into(),
                topic: "orders".into(),
                partition: 2,
                origin: "eu".into(),
                from,
                via: vec!["r".into()],
                incarnation: 77,
            })
        });
        for frame in frames.iter().chain(&subscribes) {
            let back = decode_all(frame.to_bytes()).unwrap().unwrap();
            assert_eq!(format!("{back:?}"), format!("{frame:?}"));
        }
    }

    #[test]
    fn packed_frames_decode_to_the_same_batches() {
        let frame = BatchesFrame::new(vec![batch(10, 3), batch(13, 2)], vec!["eu".into()]);
        for codec in Codec::ALL {
            let Some(Frame::Batches(back)) = decode_all(frame.encode_packed(codec)).unwrap() else {
                panic!("a Batches frame")
            };
            assert_eq!(back.header.hop_path, ["eu"]);
            let bytes = |f: &BatchesFrame| -> Vec<Bytes> {
                f.batches.iter().map(|b| b.bytes().clone()).collect()
            };
            assert_eq!(bytes(&back), bytes(&frame), "{codec:?}");
        }
    }

    #[test]
    fn bad_packed_frames_are_refused_with_a_reason() {
        let frame = BatchesFrame::new(vec![batch(10, 3)], vec!["eu".into()]);
        let packed = frame.encode_packed(Codec::Lz4);
        // The codec byte and the unpacked length follow the header.
        let header_len = u32::from_le_bytes(packed[5..9].try_into().unwrap()) as usize;
        let codec_at = 9 + header_len;
        let mut unknown = BytesMut::from(&packed[..]);
        unknown[codec_at] = 9;
        let err = decode_all(unknown.freeze()).unwrap_err();
        assert!(err.to_string().contains("unknown codec 9"), "{err}");
        let mut huge = BytesMut::from(&packed[..]);
        huge[codec_at + 1..codec_at + 5].copy_from_slice(&(64u32 << 20).to_le_bytes());
        let err = decode_all(huge.freeze()).unwrap_err();
        assert!(err.to_string().contains("more than the limit"), "{err}");
        let mut short = BytesMut::from(&packed[..]);
        short[codec_at + 1..codec_at + 5].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(
            decode_all(short.freeze()).unwrap_err(),
            FrameError::Packed(_)
        ));
        // A batch corrupted before packing still fails its CRC after unpacking.
        let mut raw = frame.batches[0].bytes().to_vec();
        let last = raw.len() - 1;
        raw[last] ^= 0x40;
        let body = Codec::Lz4.pack(&raw);
        let mut corrupt = BytesMut::from(&packed[..codec_at]);
        corrupt.put_u8(Codec::Lz4 as u8);
        corrupt.put_u32_le(raw.len() as u32);
        corrupt.extend_from_slice(&body);
        let len = (corrupt.len() - 4) as u32;
        corrupt[..4].copy_from_slice(&len.to_le_bytes());
        let err = decode_all(corrupt.freeze()).unwrap_err();
        assert_eq!(err.reason(), "crc", "{err}");
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let whole = batches_frame();
        for cut in [0, 3, 4, 10, whole.len() - 1] {
            assert!(
                decode_all(whole.slice(..cut)).unwrap().is_none(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        // Oversized.
        let mut big = BytesMut::new();
        big.put_u32_le(2 << 20);
        big.put_u8(7);
        let err = decode_all(big.freeze()).unwrap_err();
        assert_eq!(err.reason(), "oversized");
        // Unknown kind.
        let err = decode_all(Bytes::from_static(&[1, 0, 0, 0, 99])).unwrap_err();
        assert!(matches!(err, FrameError::UnknownKind(99)));
        // A flipped byte inside a batch's records: CRC.
        let mut corrupt = BytesMut::from(&batches_frame()[..]);
        let last = corrupt.len() - 2;
        corrupt[last] ^= 0x40;
        let err = decode_all(corrupt.freeze()).unwrap_err();
        assert_eq!(err.reason(), "crc", "{err}");
        // A header that does not match its batches.
        let mut frame = BatchesFrame::new(vec![batch(10, 3)], vec!["eu".into()]);
        frame.header.last_offset = 20;
        let err = decode_all(Frame::Batches(frame).to_bytes()).unwrap_err();
        assert!(matches!(err, FrameError::Inconsistent(_)), "{err}");
        // Batches that are not consecutive.
        let frame = BatchesFrame::new(vec![batch(10, 3), batch(20, 1)], vec!["eu".into()]);
        let err = decode_all(Frame::Batches(frame).to_bytes()).unwrap_err();
        assert!(matches!(err, FrameError::Inconsistent(_)), "{err}");
        // A control body that is not protobuf.
        let err = decode_all(Bytes::from_static(&[3, 0, 0, 0, 1, 0xff, 0xff])).unwrap_err();
        assert!(matches!(err, FrameError::Body { .. }), "{err}");
    }
}
