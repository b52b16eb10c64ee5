//! The plugin WebSocket's msgpack envelopes, both directions: any frame decodes or is refused
//! with an error, never a panic; what decodes re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcd::ws::codec;

fuzz_target!(|data: &[u8]| {
    let _ = codec::decode_client(data);
    if let Ok(codec::ServerMessage::Rtc(msg)) = codec::decode_server(data) {
        let _ = codec::decode_server(&codec::encode_rtc(&msg));
    }
});
