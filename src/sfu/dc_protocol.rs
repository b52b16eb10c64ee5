//! The browser ↔ SFU data-channel protocol (spec control-plane §11.2–§11.3): one or two
//! concatenated MessagePack objects, a type code and an optional payload; SDP payloads are
//! zlib-compressed JSON.
//!
//! Owns: decoding what clients send (any integer width for the type, any number for stats)
//! and encoding what the SFU sends (upstream's `0xcc NN` type encoding, bool Lock replies,
//! bin SDP, MediaMap). Pure functions over bytes; no I/O.

use std::io::{Read as _, Write as _};

use rmpv::Value;

/// Message type codes.
pub mod code {
    pub const PING: u64 = 1;
    pub const PONG: u64 = 2;
    pub const SDP: u64 = 3;
    pub const LOSS_RATE: u64 = 4;
    pub const ROUND_TRIP_TIME: u64 = 5;
    pub const JITTER: u64 = 6;
    pub const LOCK: u64 = 7;
    pub const UNLOCK: u64 = 8;
    pub const MEDIA_MAP: u64 = 9;
}

/// Largest decompressed SDP accepted from a client (a guard against zlib bombs).
pub const MAX_SDP_BYTES: usize = 256 * 1024;

/// A message received from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientDcMessage {
    Ping,
    /// Legacy text `ping` (answered with text `pong`).
    LegacyPing,
    /// Session description JSON (`{"type":…,"sdp":…}`), inflated.
    Sdp(String),
    LossRate(f64),
    RoundTripTime(f64),
    Jitter(f64),
    Lock,
    Unlock,
    /// A type the SFU ignores (logged).
    Other(u64),
}

/// Why a data-channel message was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcError {
    #[error("undecodable message: {0}")]
    Malformed(String),
    #[error("bad SDP payload: {0}")]
    Sdp(String),
}

/// Decodes one data-channel message.
pub fn decode(data: &[u8]) -> Result<ClientDcMessage, DcError> {
    if data == b"ping" {
        return Ok(ClientDcMessage::LegacyPing);
    }
    let mut rd = data;
    let kind = match rmpv::decode::read_value_with_max_depth(&mut rd, 4) {
        Ok(Value::Integer(n)) => n
            .as_u64()
            .ok_or_else(|| DcError::Malformed("negative type".into()))?,
        Ok(other) => {
            return Err(DcError::Malformed(format!(
                "type is not an integer: {other}"
            )));
        }
        Err(e) => return Err(DcError::Malformed(e.to_string())),
    };
    let mut payload = || {
        rmpv::decode::read_value_with_max_depth(&mut rd, 4)
            .map_err(|e| DcError::Malformed(format!("payload: {e}")))
    };
    let number = |v: Value| -> Result<f64, DcError> {
        match v {
            Value::F64(f) => Ok(f),
            Value::F32(f) => Ok(f64::from(f)),
            Value::Integer(n) => n
                .as_f64()
                .ok_or_else(|| DcError::Malformed("bad number".into())),
            other => Err(DcError::Malformed(format!(
                "expected a number, got {other}"
            ))),
        }
    };
    Ok(match kind {
        code::PING => ClientDcMessage::Ping,
        code::SDP => {
            let compressed = match payload()? {
                Value::Binary(b) => b,
                Value::String(s) => s.into_bytes(),
                other => return Err(DcError::Sdp(format!("expected bin, got {other}"))),
            };
            ClientDcMessage::Sdp(inflate(&compressed)?)
        }
        code::LOSS_RATE => ClientDcMessage::LossRate(number(payload()?)?),
        code::ROUND_TRIP_TIME => ClientDcMessage::RoundTripTime(number(payload()?)?),
        code::JITTER => ClientDcMessage::Jitter(number(payload()?)?),
        code::LOCK => ClientDcMessage::Lock,
        code::UNLOCK => ClientDcMessage::Unlock,
        other => ClientDcMessage::Other(other),
    })
}

/// Inflates a zlib stream into UTF-8 text, bounded by [`MAX_SDP_BYTES`].
pub fn inflate(compressed: &[u8]) -> Result<String, DcError> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_SDP_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DcError::Sdp(e.to_string()))?;
    if out.len() > MAX_SDP_BYTES {
        return Err(DcError::Sdp(format!("larger than {MAX_SDP_BYTES} bytes")));
    }
    String::from_utf8(out).map_err(|_| DcError::Sdp("not UTF-8".into()))
}

/// zlib-compresses text.
pub fn deflate(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(text.as_bytes());
    encoder.finish().unwrap_or_default()
}

fn with_type(code: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    // Upstream writes the type as uint8 (0xcc NN).
    let _ = rmp::encode::write_u8(&mut out, code as u8);
    out
}

/// Pong.
pub fn encode_pong() -> Vec<u8> {
    with_type(code::PONG)
}

/// Lock reply: always carries the bool.
pub fn encode_lock_reply(acquired: bool) -> Vec<u8> {
    let mut out = with_type(code::LOCK);
    let _ = rmp::encode::write_bool(&mut out, acquired);
    out
}

/// SDP (offer or answer JSON), zlib-compressed, as bin.
pub fn encode_sdp(json: &str) -> Vec<u8> {
    let mut out = with_type(code::SDP);
    let _ = rmp::encode::write_bin(&mut out, &deflate(json));
    out
}

/// One MediaMap entry: the transceiver MID → track type and sender session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaMapEntry {
    pub mid: String,
    pub kind: &'static str,
    pub sender_id: String,
}

/// MediaMap (type 9).
pub fn encode_media_map(entries: &[MediaMapEntry]) -> Vec<u8> {
    let mut out = with_type(code::MEDIA_MAP);
    let _ = rmp::encode::write_map_len(&mut out, entries.len() as u32);
    for entry in entries {
        let _ = rmp::encode::write_str(&mut out, &entry.mid);
        let _ = rmp::encode::write_map_len(&mut out, 2);
        let _ = rmp::encode::write_str(&mut out, "type");
        let _ = rmp::encode::write_str(&mut out, entry.kind);
        let _ = rmp::encode::write_str(&mut out, "sender_id");
        let _ = rmp::encode::write_str(&mut out, &entry.sender_id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn spec_byte_examples() {
        assert_eq!(decode(&hex("01")), Ok(ClientDcMessage::Ping));
        assert_eq!(decode(&hex("cc 01")), Ok(ClientDcMessage::Ping));
        assert_eq!(encode_pong(), hex("cc 02"));
        assert_eq!(decode(&hex("07")), Ok(ClientDcMessage::Lock));
        assert_eq!(encode_lock_reply(true), hex("cc 07 c3"));
        assert_eq!(encode_lock_reply(false), hex("cc 07 c2"));
        assert_eq!(decode(&hex("08")), Ok(ClientDcMessage::Unlock));
        assert_eq!(
            decode(&hex("04 cb 3f a9 99 99 99 99 99 9a")),
            Ok(ClientDcMessage::LossRate(0.05))
        );
        assert_eq!(decode(&hex("04 00")), Ok(ClientDcMessage::LossRate(0.0)));
        assert_eq!(decode(b"ping"), Ok(ClientDcMessage::LegacyPing));
        assert_eq!(decode(&hex("0a")), Ok(ClientDcMessage::Other(10)));
    }

    #[test]
    fn sdp_round_trip_and_media_map_bytes() {
        let json = r#"{"type":"offer","sdp":"v=0\r\n"}"#;
        let bytes = encode_sdp(json);
        assert_eq!(&bytes[..3], &hex("cc 03 c4")[..]);
        assert_eq!(decode(&bytes), Ok(ClientDcMessage::Sdp(json.into())));
        let id = "abcdefghijklmnopqrstuvwxyz";
        let map = encode_media_map(&[MediaMapEntry {
            mid: "0".into(),
            kind: "voice",
            sender_id: id.into(),
        }]);
        let mut expected = hex(
            "cc 09 81 a1 30 82 a4 74 79 70 65 a5 76 6f 69 63 65 a9 73 65 6e 64 65 72 5f 69 64 ba",
        );
        expected.extend_from_slice(id.as_bytes());
        assert_eq!(map, expected);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(decode(&[]).is_err());
        assert!(decode(&hex("c1")).is_err());
        assert!(decode(&hex("03")).is_err()); // SDP without payload
        assert!(decode(&hex("03 c4 03 01 02 03")).is_err()); // not zlib
        assert!(decode(&hex("04 a1 78")).is_err()); // loss rate as a string
        // A zlib bomb is cut off.
        let bomb = deflate(&"a".repeat(MAX_SDP_BYTES + 10));
        let mut msg = hex("03");
        let _ = rmp::encode::write_bin(&mut msg, &bomb);
        assert!(matches!(decode(&msg), Err(DcError::Sdp(_))));
    }
}
