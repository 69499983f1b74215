//! Compression of Batches frames on the link: the codecs, their Hello feature names, and
//! packing and unpacking a frame's batches. What is stored never changes: the receiver
//! unpacks the exact bytes the sender read from its sub-log (each batch still carries its
//! own CRC-32C, checked after unpacking), so compression is a property of one link.
//!
//! Unpacking is bounded before it allocates: the packed frame announces its unpacked
//! length, which must be within the receiver's frame limit, and a codec's output past that
//! length is an error, not a larger buffer.

use bytes::Bytes;

/// A compression codec of the link protocol; the discriminant is its byte on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Codec {
    /// LZ4 block format: cheap on CPU, a modest ratio.
    Lz4 = 1,
    /// Zstandard at a fast level: about twice LZ4's ratio on text for more CPU.
    Zstd = 2,
}

/// zstd's level on the link: its fastest regular level, since compression pays only while
/// it keeps up with the link.
const ZSTD_LEVEL: i32 = 1;

impl Codec {
    pub const ALL: [Codec; 2] = [Codec::Lz4, Codec::Zstd];

    pub fn from_u8(byte: u8) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| *c as u8 == byte)
    }

    /// Its name in settings, metrics and the console.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    pub fn from_name(name: &str) -> Option<Codec> {
        Codec::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The Hello feature that says "send me frames packed with this codec".
    pub fn feature(self) -> String {
        format!("compress:{}", self.name())
    }

    /// The codecs a peer's Hello features accept.
    pub fn accepted_by(features: &[String]) -> Vec<Codec> {
        Codec::ALL
            .into_iter()
            .filter(|c| features.iter().any(|f| *f == c.feature()))
            .collect()
    }

    /// `raw` packed.
    pub fn pack(self, raw: &[u8]) -> Vec<u8> {
        match self {
            Codec::Lz4 => lz4_flex::block::compress(raw),
            Codec::Zstd => {
                zstd::bulk::compress(raw, ZSTD_LEVEL).expect("zstd compresses any input in memory")
            }
        }
    }

    /// `packed` unpacked, which must come to exactly `raw_len` bytes.
    pub fn unpack(self, packed: &[u8], raw_len: usize) -> Result<Bytes, String> {
        let raw = match self {
            Codec::Lz4 => {
                lz4_flex::block::decompress(packed, raw_len).map_err(|e| e.to_string())?
            }
            Codec::Zstd => zstd::bulk::decompress(packed, raw_len).map_err(|e| e.to_string())?,
        };
        if raw.len() != raw_len {
            return Err(format!(
                "unpacked to {} bytes, the frame announced {raw_len}",
                raw.len()
            ));
        }
        Ok(Bytes::from(raw))
    }
}

/// How a region sends batches, from `[replication] compression`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CompressionSetting {
    Off,
    /// Pack when the measured link is the bottleneck (`compression` in the crate).
    #[default]
    Auto,
    /// Always pack with this codec when the peer unpacks it.
    Always(Codec),
}

impl std::str::FromStr for CompressionSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(CompressionSetting::Off),
            "auto" => Ok(CompressionSetting::Auto),
            other => Codec::from_name(other)
                .map(CompressionSetting::Always)
                .ok_or_else(|| {
                    format!("compression \"{other}\" is not one of off, auto, lz4, zstd")
                }),
        }
    }
}

impl TryFrom<String> for CompressionSetting {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::fmt::Display for CompressionSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from(*self))
    }
}

impl From<CompressionSetting> for String {
    fn from(setting: CompressionSetting) -> String {
        match setting {
            CompressionSetting::Off => "off".into(),
            CompressionSetting::Auto => "auto".into(),
            CompressionSetting::Always(codec) => codec.name().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> Vec<u8> {
        let words = b"order shipped customer region payment pending ";
        words.iter().copied().cycle().take(len).collect()
    }

    #[test]
    fn every_codec_round_trips_and_shrinks_text() {
        let raw = text(100_000);
        for codec in Codec::ALL {
            let packed = codec.pack(&raw);
            assert!(packed.len() < raw.len() / 4, "{codec:?}: {}", packed.len());
            assert_eq!(&codec.unpack(&packed, raw.len()).unwrap()[..], &raw[..]);
            assert_eq!(Codec::from_u8(codec as u8), Some(codec));
            assert_eq!(Codec::from_name(codec.name()), Some(codec));
        }
    }

    #[test]
    fn unpacking_past_the_announced_length_is_refused() {
        let raw = text(10_000);
        for codec in Codec::ALL {
            let packed = codec.pack(&raw);
            assert!(codec.unpack(&packed, raw.len() - 1).is_err(), "{codec:?}");
            assert!(codec.unpack(&packed, raw.len() + 1).is_err(), "{codec:?}");
            assert!(
                codec
                    .unpack(&packed[..packed.len() / 2], raw.len())
                    .is_err()
            );
        }
    }

    #[test]
    fn settings_parse_with_a_clear_error() {
        assert_eq!("zstd".parse(), Ok(CompressionSetting::Always(Codec::Zstd)));
        assert_eq!("off".parse(), Ok(CompressionSetting::Off));
        let err = "gzip".parse::<CompressionSetting>().unwrap_err();
        assert!(
            err.contains("\"gzip\" is not one of off, auto, lz4, zstd"),
            "{err}"
        );
    }

    #[test]
    fn features_name_the_codecs_a_peer_accepts() {
        let features = vec!["compress:zstd".to_string(), "something-else".to_string()];
        assert_eq!(Codec::accepted_by(&features), [Codec::Zstd]);
        assert!(Codec::accepted_by(&[]).is_empty());
    }
}
