//! The plugin ↔ rtcd WebSocket envelope (spec control-plane §8): two concatenated
//! MessagePack objects per binary frame, a `type` str and its `data`.
//!
//! Owns: decoding what plugins send (`join`, `leave`, `reconnect`, `rtc`) with upstream's strict
//! type rules, and encoding what rtcd sends (`hello`, `close`, `rtc`, `vad`) with upstream's
//! encoder choices (fixstr/str8…, bin8/16/32, fixmap, positive fixint). The plugin-side
//! directions are here too, for our client library. Pure functions over bytes.

use rmpv::Value;

/// Deepest nesting accepted in an inbound envelope (plugins send flat maps).
const MAX_DEPTH: usize = 16;

/// An RTC message (`data` of `rtc` and `vad` envelopes, §8.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtcMessage {
    pub group_id: String,
    pub user_id: String,
    pub session_id: String,
    pub call_id: String,
    /// RTC message type (1 ICE, 2 SDP, 3 Mute, … 10 VideoOff).
    pub msg_type: u64,
    pub data: Option<Vec<u8>>,
}

/// RTC message types of §8.4.
pub mod rtc_type {
    pub const ICE: u64 = 1;
    pub const SDP: u64 = 2;
    pub const MUTE: u64 = 3;
    pub const UNMUTE: u64 = 4;
    pub const SCREEN_ON: u64 = 5;
    pub const SCREEN_OFF: u64 = 6;
    pub const VOICE_ON: u64 = 7;
    pub const VOICE_OFF: u64 = 8;
    pub const VIDEO_ON: u64 = 9;
    pub const VIDEO_OFF: u64 = 10;
}

/// `join` data (§8.3). Props are kept as JSON values exactly as received.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinData {
    pub call_id: String,
    pub user_id: String,
    pub session_id: String,
    pub channel_id: serde_json::Value,
    pub av1_support: serde_json::Value,
    pub dc_signaling: serde_json::Value,
}

/// A message a plugin sends to rtcd.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Join(JoinData),
    Leave { session_id: String },
    Reconnect { session_id: String },
    Rtc(RtcMessage),
}

/// Every envelope type name counted in `rtcd_ws_messages_total` (either direction).
pub const ENVELOPE_TYPES: &[&str] = &["join", "leave", "reconnect", "rtc", "vad", "close", "hello"];

impl ClientMessage {
    /// Envelope type string (metric label).
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Join(_) => "join",
            ClientMessage::Leave { .. } => "leave",
            ClientMessage::Reconnect { .. } => "reconnect",
            ClientMessage::Rtc(_) => "rtc",
        }
    }
}

/// A message rtcd sends to a plugin.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Hello { client_id: String, conn_id: String },
    Close { session_id: String },
    Rtc(RtcMessage),
    Vad(RtcMessage),
}

/// Why an inbound envelope was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unexpected message type {0:?}")]
    UnexpectedType(String),
    #[error("invalid {kind} message: {reason}")]
    Invalid { kind: &'static str, reason: String },
}

fn invalid(kind: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Invalid {
        kind,
        reason: reason.into(),
    }
}

/// Splits a frame into its type string and data object.
fn decode_envelope(frame: &[u8]) -> Result<(String, Value), DecodeError> {
    let mut rd = frame;
    let read = |rd: &mut &[u8], what: &str| {
        rmpv::decode::read_value_with_max_depth(rd, MAX_DEPTH)
            .map_err(|e| DecodeError::Malformed(format!("{what}: {e}")))
    };
    let kind = match read(&mut rd, "type")? {
        Value::String(s) => s
            .into_str()
            .ok_or_else(|| DecodeError::Malformed("type: invalid UTF-8".into()))?,
        other => {
            return Err(DecodeError::Malformed(format!(
                "type: expected a string, got {}",
                value_kind(&other)
            )));
        }
    };
    // Upstream ignores bytes after the data object.
    let data = read(&mut rd, "data")?;
    Ok((kind, data))
}

/// Decodes a frame sent by a plugin.
pub fn decode_client(frame: &[u8]) -> Result<ClientMessage, DecodeError> {
    let (kind, data) = decode_envelope(frame)?;
    match kind.as_str() {
        "join" => decode_join(&data).map(ClientMessage::Join),
        "leave" => {
            session_id_map(&data, "leave").map(|session_id| ClientMessage::Leave { session_id })
        }
        "reconnect" => session_id_map(&data, "reconnect")
            .map(|session_id| ClientMessage::Reconnect { session_id }),
        "rtc" => {
            let msg = decode_rtc(&data, "rtc")?;
            if msg.session_id.is_empty() {
                return Err(invalid("rtc", "missing session_id"));
            }
            if msg.msg_type == 0 {
                return Err(invalid("rtc", "missing or zero type"));
            }
            Ok(ClientMessage::Rtc(msg))
        }
        _ => Err(DecodeError::UnexpectedType(kind)),
    }
}

/// Decodes a frame sent by rtcd (used by our client library).
pub fn decode_server(frame: &[u8]) -> Result<ServerMessage, DecodeError> {
    let (kind, data) = decode_envelope(frame)?;
    match kind.as_str() {
        "hello" => {
            let map = string_map(&data, "hello")?;
            let get = |k: &str| map.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            Ok(ServerMessage::Hello {
                client_id: get("clientID").unwrap_or_default(),
                conn_id: get("connID").ok_or_else(|| invalid("hello", "missing connID"))?,
            })
        }
        "close" => {
            session_id_map(&data, "close").map(|session_id| ServerMessage::Close { session_id })
        }
        "rtc" => decode_rtc(&data, "rtc").map(ServerMessage::Rtc),
        "vad" => decode_rtc(&data, "vad").map(ServerMessage::Vad),
        _ => Err(DecodeError::UnexpectedType(kind)),
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "integer",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "ext",
    }
}

fn map_entries<'a>(
    data: &'a Value,
    kind: &'static str,
) -> Result<&'a [(Value, Value)], DecodeError> {
    match data {
        Value::Map(entries) => Ok(entries),
        other => Err(invalid(
            kind,
            format!("data must be a map, got {}", value_kind(other)),
        )),
    }
}

/// A `map[string]string` as the plugin's typed decoder requires: non-empty, str → str.
fn string_map(data: &Value, kind: &'static str) -> Result<Vec<(String, String)>, DecodeError> {
    let entries = map_entries(data, kind)?;
    if entries.is_empty() {
        return Err(invalid(kind, "empty data"));
    }
    entries
        .iter()
        .map(|(k, v)| match (k.as_str(), v.as_str()) {
            (Some(k), Some(v)) => Ok((k.to_owned(), v.to_owned())),
            _ => Err(invalid(kind, "data must map strings to strings")),
        })
        .collect()
}

fn session_id_map(data: &Value, kind: &'static str) -> Result<String, DecodeError> {
    let map = string_map(data, kind)?;
    match map.into_iter().find(|(k, _)| k == "sessionID") {
        Some((_, id)) if !id.is_empty() => Ok(id),
        _ => Err(invalid(kind, "missing sessionID")),
    }
}

fn lookup<'a>(entries: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn decode_join(data: &Value) -> Result<JoinData, DecodeError> {
    let entries = map_entries(data, "join")?;
    // Upstream's strict reads: a non-str value counts as empty (validation rejects it later).
    let text = |key| {
        lookup(entries, key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let prop = |key| lookup(entries, key).map_or(serde_json::Value::Null, to_json);
    Ok(JoinData {
        call_id: text("callID"),
        user_id: text("userID"),
        session_id: text("sessionID"),
        channel_id: prop("channelID"),
        av1_support: prop("av1Support"),
        dc_signaling: prop("dcSignaling"),
    })
}

fn decode_rtc(data: &Value, kind: &'static str) -> Result<RtcMessage, DecodeError> {
    let entries = map_entries(data, kind)?;
    let text = |key| {
        lookup(entries, key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let msg_type = match lookup(entries, "type") {
        None | Some(Value::Nil) => 0,
        Some(Value::Integer(n)) => n
            .as_u64()
            .ok_or_else(|| invalid(kind, "type must be a non-negative integer"))?,
        Some(other) => {
            return Err(invalid(
                kind,
                format!("type must be an integer, got {}", value_kind(other)),
            ));
        }
    };
    let data = match lookup(entries, "data") {
        None | Some(Value::Nil) => None,
        Some(Value::Binary(b)) => Some(b.clone()),
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(other) => {
            return Err(invalid(
                kind,
                format!("data must be bin or str, got {}", value_kind(other)),
            ));
        }
    };
    Ok(RtcMessage {
        group_id: text("group_id"),
        user_id: text("user_id"),
        session_id: text("session_id"),
        call_id: text("call_id"),
        msg_type,
        data,
    })
}

/// MessagePack → JSON for props echoed by the sessions API.
fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil | Value::Ext(..) => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(n) => n
            .as_i64()
            .map(J::from)
            .or_else(|| n.as_u64().map(J::from))
            .unwrap_or(J::Null),
        Value::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number),
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().map_or_else(|| k.to_string(), str::to_owned),
                        to_json(v),
                    )
                })
                .collect(),
        ),
    }
}

/// Appends MessagePack to a buffer. Writing to a `Vec` cannot fail, so errors are dropped here
/// once instead of at every call site.
struct Writer(Vec<u8>);

impl Writer {
    fn with_type(kind: &str) -> Self {
        let mut w = Writer(Vec::with_capacity(64));
        w.str(kind);
        w
    }
    fn str(&mut self, s: &str) {
        let _ = rmp::encode::write_str(&mut self.0, s);
    }
    fn bin(&mut self, b: &[u8]) {
        let _ = rmp::encode::write_bin(&mut self.0, b);
    }
    fn map_len(&mut self, n: u32) {
        let _ = rmp::encode::write_map_len(&mut self.0, n);
    }
    fn uint(&mut self, n: u64) {
        let _ = rmp::encode::write_uint(&mut self.0, n);
    }
    fn bool_or_nil(&mut self, v: &serde_json::Value) {
        let _ = match v {
            serde_json::Value::Bool(b) => rmp::encode::write_bool(&mut self.0, *b),
            _ => rmp::encode::write_nil(&mut self.0),
        };
    }
    fn str_map(mut self, entries: &[(&str, &str)]) -> Vec<u8> {
        self.map_len(entries.len() as u32);
        for (k, v) in entries {
            self.str(k);
            self.str(v);
        }
        self.0
    }
    fn rtc(mut self, msg: &RtcMessage) -> Vec<u8> {
        self.map_len(if msg.data.is_some() { 6 } else { 5 });
        for (k, v) in [
            ("group_id", &msg.group_id),
            ("user_id", &msg.user_id),
            ("session_id", &msg.session_id),
            ("call_id", &msg.call_id),
        ] {
            self.str(k);
            self.str(v);
        }
        self.str("type");
        self.uint(msg.msg_type);
        if let Some(data) = &msg.data {
            self.str("data");
            self.bin(data);
        }
        self.0
    }
}

/// `hello` with the connection's clientID and connID.
pub fn encode_hello(client_id: &str, conn_id: &str) -> Vec<u8> {
    Writer::with_type("hello").str_map(&[("clientID", client_id), ("connID", conn_id)])
}

/// `close` for a session.
pub fn encode_close(session_id: &str) -> Vec<u8> {
    Writer::with_type("close").str_map(&[("sessionID", session_id)])
}

/// `rtc` envelope (rtcd → plugin ICE/SDP, or plugin → rtcd any type).
pub fn encode_rtc(msg: &RtcMessage) -> Vec<u8> {
    Writer::with_type("rtc").rtc(msg)
}

/// `vad` envelope (VoiceOn/VoiceOff).
pub fn encode_vad(msg: &RtcMessage) -> Vec<u8> {
    Writer::with_type("vad").rtc(msg)
}

/// `leave` (plugin → rtcd).
pub fn encode_leave(session_id: &str) -> Vec<u8> {
    Writer::with_type("leave").str_map(&[("sessionID", session_id)])
}

/// `reconnect` (plugin → rtcd).
pub fn encode_reconnect(session_id: &str) -> Vec<u8> {
    Writer::with_type("reconnect").str_map(&[("sessionID", session_id)])
}

/// `join` (plugin → rtcd), with the six keys the plugin sends.
pub fn encode_join(join: &JoinData) -> Vec<u8> {
    let mut w = Writer::with_type("join");
    w.map_len(6);
    for (k, v) in [
        ("callID", &join.call_id),
        ("userID", &join.user_id),
        ("sessionID", &join.session_id),
    ] {
        w.str(k);
        w.str(v);
    }
    w.str("channelID");
    w.str(join.channel_id.as_str().unwrap_or(""));
    w.str("av1Support");
    w.bool_or_nil(&join.av1_support);
    w.str("dcSignaling");
    w.bool_or_nil(&join.dc_signaling);
    w.0
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
    fn leave_bytes_of_spec_8_5() {
        let bytes = hex("a5 6c 65 61 76 65 81 a9 73 65 73 73 69 6f 6e 49 44 a2 73 31");
        assert_eq!(encode_leave("s1"), bytes);
        assert_eq!(
            decode_client(&bytes),
            Ok(ClientMessage::Leave {
                session_id: "s1".into()
            })
        );
    }

    #[test]
    fn hello_bytes_of_spec_8_5() {
        let conn_id = "ybndrfg8ejkmcpqxot1uwisza3";
        let mut expected = hex(
            "a5 68 65 6c 6c 6f 82 a8 63 6c 69 65 6e 74 49 44 a4 6d 6d 2d 31 a6 63 6f 6e 6e 49 44 ba",
        );
        expected.extend_from_slice(conn_id.as_bytes());
        assert_eq!(encode_hello("mm-1", conn_id), expected);
        assert_eq!(
            decode_server(&expected),
            Ok(ServerMessage::Hello {
                client_id: "mm-1".into(),
                conn_id: conn_id.into()
            })
        );
    }

    #[test]
    fn mute_bytes_of_spec_8_5() {
        let bytes = hex(
            "a3 72 74 63 85 a8 67 72 6f 75 70 5f 69 64 a0 a7 75 73 65 72 5f 69 64 a0 \
             aa 73 65 73 73 69 6f 6e 5f 69 64 a2 73 31 a7 63 61 6c 6c 5f 69 64 a0 a4 74 79 70 65 03",
        );
        let msg = RtcMessage {
            session_id: "s1".into(),
            msg_type: rtc_type::MUTE,
            ..RtcMessage::default()
        };
        assert_eq!(encode_rtc(&msg), bytes);
        assert_eq!(decode_client(&bytes), Ok(ClientMessage::Rtc(msg)));
    }

    #[test]
    fn sdp_answer_uses_bin16_and_six_entries() {
        let sdp = format!(
            "{{\"type\":\"answer\",\"sdp\":\"{}\"}}",
            "v=0\\r\\n".repeat(60)
        );
        let msg = RtcMessage {
            group_id: "g".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            call_id: "c".into(),
            msg_type: rtc_type::SDP,
            data: Some(sdp.clone().into_bytes()),
        };
        let bytes = encode_rtc(&msg);
        assert_eq!(bytes[4], 0x86);
        let data_key = hex("a4 64 61 74 61 c5");
        let at = bytes
            .windows(6)
            .position(|w| w == data_key)
            .expect("bin16 data");
        let len = u16::from_be_bytes([bytes[at + 6], bytes[at + 7]]) as usize;
        assert_eq!(len, sdp.len());
        assert_eq!(decode_server(&bytes), Ok(ServerMessage::Rtc(msg)));
    }

    #[test]
    fn join_round_trip_and_strict_types() {
        let join = JoinData {
            call_id: "call".into(),
            user_id: "user".into(),
            session_id: "sess".into(),
            channel_id: "chan".into(),
            av1_support: serde_json::Value::Bool(false),
            dc_signaling: serde_json::Value::Bool(true),
        };
        assert_eq!(
            decode_client(&encode_join(&join)),
            Ok(ClientMessage::Join(join))
        );

        // callID as an integer counts as empty; absent props are null.
        let mut w = Writer::with_type("join");
        w.map_len(2);
        w.str("callID");
        w.uint(5);
        w.str("sessionID");
        w.str("s");
        let ClientMessage::Join(parsed) = decode_client(&w.0).unwrap() else {
            panic!()
        };
        assert_eq!(parsed.call_id, "");
        assert_eq!(parsed.dc_signaling, serde_json::Value::Null);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(decode_client(&[]), Err(DecodeError::Malformed(_))));
        assert!(matches!(
            decode_client(&[0xc1, 0x00]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_client(&[0x05, 0xc0]),
            Err(DecodeError::Malformed(_))
        ));
        // Truncated: type only.
        assert!(matches!(
            decode_client(&hex("a5 6c 65 61 76 65")),
            Err(DecodeError::Malformed(_))
        ));
        // Declared length far beyond the frame.
        assert!(matches!(
            decode_client(&hex("a3 72 74 63 c6 ff ff ff ff")),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            decode_client(&hex("a5 68 65 6c 6c 6f c0")),
            Err(DecodeError::UnexpectedType("hello".into()))
        );
        assert!(matches!(
            decode_client(&hex("a5 6c 65 61 76 65 c0")),
            Err(DecodeError::Invalid { kind: "leave", .. })
        ));
        assert!(matches!(
            decode_client(&hex("a5 6c 65 61 76 65 80")),
            Err(DecodeError::Invalid { kind: "leave", .. })
        ));
        // rtc without session_id / with type 0.
        let no_session = encode_rtc(&RtcMessage {
            msg_type: 2,
            ..RtcMessage::default()
        });
        assert!(matches!(
            decode_client(&no_session),
            Err(DecodeError::Invalid { .. })
        ));
        let zero_type = encode_rtc(&RtcMessage {
            session_id: "s".into(),
            ..RtcMessage::default()
        });
        assert!(matches!(
            decode_client(&zero_type),
            Err(DecodeError::Invalid { .. })
        ));
        // Deep nesting is refused, not recursed into.
        let mut deep = hex("a4 6a 6f 69 6e");
        deep.extend(std::iter::repeat_n(0x91, 10_000));
        deep.push(0xc0);
        assert!(matches!(
            decode_client(&deep),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn rtc_accepts_str_data_and_wide_ints() {
        let mut w = Writer::with_type("rtc");
        w.map_len(3);
        w.str("session_id");
        w.str("s");
        w.str("type");
        let _ = rmp::encode::write_u64(&mut w.0, 2);
        w.str("data");
        w.str("{}");
        let ClientMessage::Rtc(msg) = decode_client(&w.0).unwrap() else {
            panic!()
        };
        assert_eq!((msg.msg_type, msg.data.as_deref()), (2, Some(&b"{}"[..])));
    }
}

/// Robustness of the decoders against arbitrary bytes (a deterministic stand-in for a fuzz
/// target: mutations of valid frames plus random frames must never panic).
#[cfg(test)]
mod robustness {
    use super::*;

    /// xorshift64*: deterministic pseudo-random bytes without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn decoders_never_panic() {
        let seeds = [
            encode_join(&JoinData {
                call_id: "c".into(),
                user_id: "u".into(),
                session_id: "s".into(),
                channel_id: "ch".into(),
                av1_support: serde_json::Value::Bool(true),
                dc_signaling: serde_json::Value::Null,
            }),
            encode_rtc(&RtcMessage {
                session_id: "s".into(),
                msg_type: 2,
                data: Some(vec![b'x'; 300]),
                ..RtcMessage::default()
            }),
            encode_hello("id", "conn"),
            encode_leave("s"),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..50_000 {
            let mut frame = seeds[round % seeds.len()].clone();
            match rng.next() % 4 {
                0 => {
                    let at = rng.next() as usize % frame.len();
                    frame[at] = rng.next() as u8;
                }
                1 => frame.truncate(rng.next() as usize % frame.len()),
                2 => frame.insert(rng.next() as usize % frame.len(), rng.next() as u8),
                _ => frame = (0..rng.next() % 64).map(|_| rng.next() as u8).collect(),
            }
            let _ = decode_client(&frame);
            let _ = decode_server(&frame);
        }
    }
}
