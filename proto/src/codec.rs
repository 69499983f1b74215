//! The client API's codec: prost, with the element counts of a request bounded *before* it
//! is decoded. A protobuf message can be tiny on the wire and huge in memory (an empty
//! `Record` is 2 bytes encoded and over a hundred decoded; a property entry likewise), so a
//! message-size limit alone lets a client make the server allocate many times the request.
//! [`DecodeBound::check`] walks the encoded bytes (no allocation) and refuses a message
//! past its limits with `INVALID_ARGUMENT` and the code `request-too-large`.

use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint};
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Most records one produce request may carry.
pub const MAX_PRODUCE_RECORDS: usize = 100_000;
/// Most record properties (over all its records) one produce request may carry.
pub const MAX_PRODUCE_PROPERTIES: usize = 400_000;

/// Metadata key of the stable error code (the broker's errors use the same key).
pub const ERROR_CODE_KEY: &str = "georouter-error-code";

/// A message type's check of its encoded form before decoding.
pub trait DecodeBound {
    /// Refuses `encoded` when decoding it would allocate past this type's limits.
    fn check(_encoded: &[u8]) -> Result<(), Status> {
        Ok(())
    }
}

/// prost's codec with [`DecodeBound::check`] run on every message decoded.
#[derive(Debug, Clone)]
pub struct BoundedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        BoundedCodec(PhantomData)
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + DecodeBound + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder(ProstDecoder::default())
    }
}

#[derive(Debug, Clone)]
pub struct BoundedDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default + DecodeBound> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // tonic hands over a whole message in one contiguous buffer.
        if buf.chunk().len() == buf.remaining() {
            U::check(buf.chunk())?;
        }
        self.0.decode(buf)
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        self.0.buffer_settings()
    }
}

fn too_large(message: String) -> Status {
    let mut status = Status::new(Code::InvalidArgument, message);
    status.metadata_mut().insert(
        ERROR_CODE_KEY,
        crate::error_code::ErrorCode::RequestTooLarge
            .as_str()
            .parse()
            .expect("ASCII"),
    );
    status
}

/// Calls `visit(field, body)` for each length-delimited field of the message in `buf` and
/// skips the others. Stops quietly at malformed bytes: prost's decode reports those.
fn each_delimited(
    mut buf: &[u8],
    mut visit: impl FnMut(u32, &[u8]) -> Result<(), Status>,
) -> Result<(), Status> {
    while buf.has_remaining() {
        let Ok((field, wire)) = decode_key(&mut buf) else {
            return Ok(());
        };
        let skip = match wire {
            WireType::Varint => match decode_varint(&mut buf) {
                Ok(_) => 0,
                Err(_) => return Ok(()),
            },
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => {
                let Ok(len) = decode_varint(&mut buf) else {
                    return Ok(());
                };
                let Some(body) = usize::try_from(len).ok().and_then(|n| buf.get(..n)) else {
                    return Ok(());
                };
                visit(field, body)?;
                body.len()
            }
            WireType::StartGroup | WireType::EndGroup => return Ok(()),
        };
        if buf.len() < skip {
            return Ok(());
        }
        buf.advance(skip);
    }
    Ok(())
}

impl DecodeBound for crate::v1::ProduceRequest {
    fn check(encoded: &[u8]) -> Result<(), Status> {
        const RECORDS: u32 = 2;
        const PROPERTIES: u32 = 3;
        let (mut records, mut properties) = (0usize, 0usize);
        each_delimited(encoded, |field, record| {
            if field != RECORDS {
                return Ok(());
            }
            records += 1;
            if records > MAX_PRODUCE_RECORDS {
                return Err(too_large(format!(
                    "produce request holds more than {MAX_PRODUCE_RECORDS} records (the limit per request); split it"
                )));
            }
            each_delimited(record, |field, _| {
                if field == PROPERTIES {
                    properties += 1;
                    if properties > MAX_PRODUCE_PROPERTIES {
                        return Err(too_large(format!(
                            "produce request holds more than {MAX_PRODUCE_PROPERTIES} record properties (the limit per request, record {}); split it",
                            records - 1
                        )));
                    }
                }
                Ok(())
            })
        })
    }
}

/// Messages whose decoded size stays proportional to their encoded size.
macro_rules! unbounded {
    ($($t:ident),* $(,)?) => { $(impl DecodeBound for crate::v1::$t {})* };
}

unbounded!(
    CreateTopicRequest,
    TopicInfo,
    DeleteTopicRequest,
    DeleteTopicResponse,
    ListTopicsRequest,
    ListTopicsResponse,
    DescribeTopicRequest,
    TopicDescription,
    ProduceResponse,
    FetchRequest,
    FetchResponse,
    CommitCursorRequest,
    CommitCursorResponse,
    GroupCursorsRequest,
    GroupCursorsResponse,
    RecallRequest,
    RecallResponse,
    EndTransactionRequest,
    EndTransactionResponse,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{ProduceRequest, Record};

    fn request(records: usize, properties_each: usize) -> Vec<u8> {
        let record = Record {
            properties: (0..properties_each)
                .map(|i| (i.to_string(), String::new()))
                .collect(),
            ..Record::default()
        };
        ProduceRequest {
            topic: "orders".into(),
            records: vec![record; records],
            ..ProduceRequest::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn counts_records_and_properties_without_decoding() {
        assert!(ProduceRequest::check(&request(MAX_PRODUCE_RECORDS, 0)).is_ok());
        let err = ProduceRequest::check(&request(MAX_PRODUCE_RECORDS + 1, 0)).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("records"), "{}", err.message());
        assert_eq!(
            err.metadata().get(ERROR_CODE_KEY).unwrap(),
            "request-too-large"
        );
        let err = ProduceRequest::check(&request(10, MAX_PRODUCE_PROPERTIES / 10 + 1)).unwrap_err();
        assert!(err.message().contains("properties"), "{}", err.message());
        assert!(ProduceRequest::check(&request(10, 3)).is_ok());
    }

    #[test]
    fn malformed_bytes_are_left_to_prost() {
        for bytes in [&[0xff_u8][..], &[0x12, 0x7f], &[0x12], &[0x0b]] {
            assert!(ProduceRequest::check(bytes).is_ok());
        }
    }
}
