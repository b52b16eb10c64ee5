//! The data-channel protocol: any message from a client decodes or is refused, and SDP
//! payloads inflate (zlib, bounded) or are refused, never a panic or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcd::sfu::dc_protocol;

fuzz_target!(|data: &[u8]| {
    let _ = dc_protocol::decode(data);
    let _ = dc_protocol::inflate(data);
});
