//! Reading and writing frames on QUIC streams.

use bytes::BytesMut;
use quinn::{ReadExactError, RecvStream, SendStream};

use crate::budget::{ByteBudget, Held};
use crate::wire::frame::{self, Frame, FrameError};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("reading: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("writing: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream ended inside a frame")]
    EndedInFrame,
    #[error("no frame within {0:?}")]
    Timeout(std::time::Duration),
}

/// Limits a reader applies to frames.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    pub max_frame: usize,
    pub max_batch: usize,
}

/// Largest first frame of a sub-log stream (Subscribe, Subscribed, Error): small, so a peer
/// cannot make this region buffer megabytes per stream before it is authorized.
const MAX_STREAM_HEAD: usize = 64 << 10;

impl FrameLimits {
    /// This region's limits on a link to a peer that announced `peer_max_frame` in its
    /// Hello: frames up to the larger of the two (never past the format's largest batch
    /// plus the frame overhead).
    pub fn for_link(self, peer_max_frame: u64) -> Self {
        let ceiling = broker::batch::MAX_BATCH_ON_DISK + MAX_STREAM_HEAD;
        let peer = usize::try_from(peer_max_frame).unwrap_or(usize::MAX);
        FrameLimits {
            max_frame: self.max_frame.max(peer.min(ceiling)),
            ..self
        }
    }

    /// The limits for the first frame of a sub-log stream.
    pub fn control(self) -> Self {
        FrameLimits {
            max_frame: MAX_STREAM_HEAD.min(self.max_frame),
            ..self
        }
    }
}

/// The next frame, or `None` when the sender finished the stream between frames.
pub async fn read_frame(
    recv: &mut RecvStream,
    limits: FrameLimits,
) -> Result<Option<Frame>, StreamError> {
    let Some(len) = read_len(recv, limits).await? else {
        return Ok(None);
    };
    read_body(recv, limits, len).await.map(Some)
}

/// `read_frame` under a link's byte budget: the frame's length is taken from `budget`
/// before the frame is read, and a share of what its batches unpack to (when more) before
/// they are handed on; the share comes with the frame and is given back when dropped.
pub async fn read_frame_held(
    recv: &mut RecvStream,
    limits: FrameLimits,
    budget: &ByteBudget,
) -> Result<Option<(Frame, Held)>, StreamError> {
    let Some(len) = read_len(recv, limits).await? else {
        return Ok(None);
    };
    let held = budget.take(len).await;
    let frame = read_body(recv, limits, len).await?;
    let bytes = match &frame {
        Frame::Batches(b) => b.bytes(),
        _ => len,
    };
    Ok(Some((frame, budget.retake(held, bytes).await)))
}

/// A frame's length, or `None` when the stream finished between frames.
async fn read_len(
    recv: &mut RecvStream,
    limits: FrameLimits,
) -> Result<Option<usize>, StreamError> {
    let mut head = [0u8; 4];
    match recv.read_exact(&mut head).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(_)) => return Err(StreamError::EndedInFrame),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    Ok(Some(frame::frame_len(head, limits.max_frame)?))
}

async fn read_body(
    recv: &mut RecvStream,
    limits: FrameLimits,
    len: usize,
) -> Result<Frame, StreamError> {
    let mut body = BytesMut::zeroed(len);
    match recv.read_exact(&mut body).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(_)) => return Err(StreamError::EndedInFrame),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    Ok(frame::decode(
        body.freeze(),
        limits.max_frame,
        limits.max_batch,
    )?)
}

/// `read_frame` with a deadline (handshakes and first frames).
pub async fn read_frame_within(
    recv: &mut RecvStream,
    limits: FrameLimits,
    within: std::time::Duration,
) -> Result<Option<Frame>, StreamError> {
    tokio::time::timeout(within, read_frame(recv, limits))
        .await
        .map_err(|_| StreamError::Timeout(within))?
}

pub async fn write_frame(send: &mut SendStream, frame: &Frame) -> Result<(), StreamError> {
    let mut chunks = frame.encode();
    send.write_all_chunks(&mut chunks).await?;
    Ok(())
}
