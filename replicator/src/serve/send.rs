//! Sending a Batches frame on a sub-log stream, packed when the link's compression says so
//! (`link::compression`), with what packing measured fed back to it.

use std::time::{Duration, Instant};

use crate::node::{LinkCtx, Node};
use crate::wire::{BatchesFrame, Codec, Frame, StreamError, io};

/// Frames up to this size are packed on the async thread (tens of microseconds); larger
/// ones on the blocking pool.
const PACK_INLINE: usize = 64 << 10;

/// Writes `frame` to `send`, packed or not.
pub(crate) async fn send_batches(
    node: &Node,
    link: &LinkCtx,
    send: &mut quinn::SendStream,
    frame: BatchesFrame,
) -> Result<(), StreamError> {
    let raw = frame.bytes();
    if let Some(codec) = link.compression.codec_for_next() {
        let Some((frame, packed, took)) = pack(frame, codec).await else {
            // The runtime is going away.
            return Ok(());
        };
        link.compression.measured(codec, raw, packed.len(), took);
        if packed.len() < raw {
            node.metrics.batches_sent(&link.peer, raw, packed.len());
            send.write_chunk(packed).await?;
            return Ok(());
        }
        // Sampled and not smaller: sent as stored.
        return send_plain(node, link, send, frame).await;
    }
    send_plain(node, link, send, frame).await
}

async fn send_plain(
    node: &Node,
    link: &LinkCtx,
    send: &mut quinn::SendStream,
    frame: BatchesFrame,
) -> Result<(), StreamError> {
    let raw = frame.bytes();
    node.metrics.batches_sent(&link.peer, raw, raw);
    io::write_frame(send, &Frame::Batches(frame)).await
}

/// `frame` packed with `codec`, and how long packing took.
async fn pack(frame: BatchesFrame, codec: Codec) -> Option<(BatchesFrame, bytes::Bytes, Duration)> {
    let inline = frame.bytes() <= PACK_INLINE;
    let timed = move || {
        let started = Instant::now();
        let packed = frame.encode_packed(codec);
        (frame, packed, started.elapsed())
    };
    if inline {
        return Some(timed());
    }
    tokio::task::spawn_blocking(timed).await.ok()
}
