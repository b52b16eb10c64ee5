//! What the media port reads from anyone: STUN demux (USERNAME, ufrag), MESSAGE-INTEGRITY
//! checks, and RFC 4571 framing of ICE-TCP streams fed in arbitrary chunks.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rtcd::net::{stun, tcp};

fuzz_target!(|data: &[u8]| {
    let _ = stun::is_stun(data);
    let _ = stun::username(data);
    if stun::local_ufrag(data).is_some() {
        let _ = stun::authenticated(data, "fuzz-password");
    }
    // The same bytes as a TCP stream arriving in chunks of the first byte's size.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut buf = BytesMut::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match tcp::split_frame(&mut buf) {
                Ok(Some(frame)) => {
                    let _ = stun::local_ufrag(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
