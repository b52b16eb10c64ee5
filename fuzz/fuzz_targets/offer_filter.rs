//! The SDP offer filter every client offer passes: any text is filtered or left alone, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rtcd::sfu::offer_filter::without_publisher_rtx(text);
    }
});
