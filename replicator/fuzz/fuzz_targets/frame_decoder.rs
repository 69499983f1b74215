//! Feeds arbitrary bytes to the link frame decoder, as a peer's stream would deliver them.
//! The decoder must return frames or errors, never panic, loop or allocate past its limits;
//! every frame it accepts must re-encode to the bytes it came from.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use replicator::wire::frame;

const MAX_FRAME: usize = 1 << 20;
const MAX_BATCH: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut buf = Bytes::copy_from_slice(data);
    loop {
        let before = buf.clone();
        match frame::decode_from(&mut buf, MAX_FRAME, MAX_BATCH) {
            Ok(Some(decoded)) => {
                let consumed = before.len() - buf.len();
                if let frame::Frame::Batches(_) = &decoded {
                    // Batches frames carry their bytes verbatim: the encoding is exact.
                    assert_eq!(decoded.to_bytes(), before.slice(..consumed));
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
});
